//! The `mcp-gateway` application: the REST API over the registry, operations endpoints, and starting an
//! instance (relay and projections in-process).

pub mod access_log;
pub mod alerting;
pub mod app;
pub mod audit_prune;
pub mod auth;
pub mod authz_lag;
pub mod break_glass;
pub mod client_ip;
pub mod constant_time;
pub mod cookies;
pub mod cursor;
mod denials;
pub mod github;
mod html_page;
pub mod http;
pub mod idempotency;
pub mod json_body;
pub mod key_rotation;
pub mod key_usage;
pub mod metrics_catalog;
pub mod oauth;
pub mod oidc;
pub mod openapi;
pub mod params;
pub mod problem;
pub mod proxy;
pub mod rate_limit;
pub mod readiness;
mod rendered_page;
pub mod resource_auth;
pub mod routes;
pub mod state;
pub mod store_lock;
pub mod store_url;
pub mod tables;
pub mod traces;
pub mod upstream_login;
pub mod verification;

pub use app::{Gateway, GatewayConfig, SnapshotConfig, StartError};
pub use http::router;
pub use oauth::clients::ConfiguredClient;
pub use proxy::limits::ProxyLimits;
pub use rate_limit::RateLimitConfig;
pub use readiness::ReadinessConfig;
pub use routes::registry_v0::RegistryReads;
