//! What every request handler shares.

use commands::servers::ServerCommands;
use metrics_exporter_prometheus::PrometheusHandle;
use projections::ProjectionStatus;
use projections::registry::Catalogue;
use tokio::sync::watch;

use crate::auth::SharedAuthz;

/// The application state: one shared allocation, so that the clone every request makes (axum hands each
/// handler and middleware its own `State`) is one reference count, not one per field.
#[derive(Clone)]
pub struct AppState(std::sync::Arc<Shared>);

impl AppState {
    /// The state holding `shared`.
    pub fn new(shared: Shared) -> Self {
        Self(std::sync::Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What every request handler shares.
pub struct Shared {
    /// Server command handlers.
    pub servers: ServerCommands,
    /// People's own accounts at servers that act on them.
    pub connections: commands::connections::Connections,
    /// Principal command handlers (roles, keys, disabling, second factor).
    pub principals: commands::principals::PrincipalCommands,
    /// The gateway's access tokens.
    pub tokens: std::sync::Arc<commands::tokens::TokenService>,
    /// The upstream identity providers people log in through.
    pub idps: std::sync::Arc<crate::oidc::Idps>,
    /// How far the authorization model lags the store (requests are refused past the bound).
    pub authz_lag: crate::authz_lag::AuthzLag,
    /// The last use of each API key (outside the event log).
    pub key_usage: crate::key_usage::KeyUsage,
    /// The names and attributes of the gateway's cookies.
    pub cookies: std::sync::Arc<crate::cookies::Cookies>,
    /// The sealing keys (also key request fingerprints).
    pub keyring: std::sync::Arc<commands::Keyring>,
    /// Catalogue queries.
    pub registry: Catalogue,
    /// The `/v0.1` documents of releases, rendered (see `projections::registry::RenderCache`).
    pub registry_documents: projections::registry::VersionDocuments,
    /// The authorization model.
    pub authz: SharedAuthz,
    /// Its runner's status.
    pub authz_status: watch::Receiver<ProjectionStatus>,
    /// The registry runner's status.
    pub registry_status: watch::Receiver<ProjectionStatus>,
    /// The audit trail runner's status.
    pub audit_status: watch::Receiver<ProjectionStatus>,
    /// Usage analytics.
    pub analytics: projections::analytics::Analytics,
    /// The analytics runner's status.
    pub analytics_status: watch::Receiver<ProjectionStatus>,
    /// The audit trail's signing and verification keys.
    pub audit_keys: std::sync::Arc<projections::audit::AuditKeys>,
    /// The database of the gateway's own tables and read models.
    pub tables: crate::tables::Tables,
    /// The event store.
    pub store: std::sync::Arc<dyn eventstore::EventStore>,
    /// NATS, when configured.
    pub nats: Option<async_nats::Client>,
    /// The JetStream stream the relay publishes to (`/ready` checks it is there).
    pub nats_stream: String,
    /// One audit verification at a time (it reads the whole log and trail).
    pub verifying: std::sync::Arc<tokio::sync::Semaphore>,
    /// The Prometheus exporter, when installed.
    pub metrics: Option<PrometheusHandle>,
    /// The MCP route's metric handles.
    pub(crate) mcp_metrics: crate::proxy::metrics::McpMetrics,
    /// The HTTP layer's and the authorization decisions' metric handles.
    pub(crate) http_metrics: crate::http_metrics::HttpMetrics,
    /// Who may read the `/v0.1` catalogue.
    pub registry_reads: crate::registry_reads::RegistryReads,
    /// OAuth client registration and revocation.
    pub oauth_clients: commands::oauth_clients::OAuthClients,
    /// OAuth clients the operator configured.
    pub configured_clients: std::sync::Arc<crate::oauth::clients::ConfiguredClients>,
    /// Client ID metadata documents, fetched and cached.
    pub client_documents: std::sync::Arc<crate::oauth::metadata_document::DocumentFetcher>,
    /// Set on SIGTERM: `/ready` answers 503 so that load balancers stop sending requests here.
    pub draining: std::sync::atomic::AtomicBool,
    /// Set when the listener closes: streams that answer no request (an MCP session's GET stream) end
    /// between two events, so that they do not hold the exit for the whole shutdown timeout; their
    /// clients resume elsewhere with `Last-Event-ID`.
    pub stopping: tokio::sync::watch::Sender<bool>,
    /// The break-glass credential, when one is configured.
    pub break_glass: Option<crate::break_glass::BreakGlassConfig>,
    /// What readiness probes cost, and the token signing key's life.
    pub readiness: crate::readiness::ReadinessConfig,
    /// Origins allowed to call the REST API from a browser, with credentials.
    pub cors_origins: Vec<axum::http::HeaderValue>,
    /// The rate limits' buckets, per client address and per principal.
    pub rate_limits: std::sync::Arc<crate::rate_limit::RateLimits>,
    /// The MCP proxy: the connection pool to upstream servers, session ids, upstream tokens.
    pub proxy: std::sync::Arc<crate::proxy::Proxy>,
}

impl Shared {
    /// Every projection's status, in the order `/ready` and `/metrics` list them.
    pub fn projections(&self) -> [&watch::Receiver<ProjectionStatus>; 4] {
        [&self.authz_status, &self.registry_status, &self.audit_status, &self.analytics_status]
    }

    /// True once the authorization model has caught up (requests fail closed before).
    pub fn authz_ready(&self) -> bool {
        self.authz_status.borrow().is_ready()
    }
}
