//! The workspace's integration tests, one binary: real PostgreSQL and NATS from the harness.

// Test code: a failed set-up step should panic with its cause.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod alerting;
mod analytics;
mod api_login;
mod api_servers;
mod api_tokens;
mod api_users;
mod audit;
mod audit_verification;
mod break_glass;
mod conformance;
mod events_copy;
mod eventstore;
mod harness;
mod mcp_proxy;
mod mcp_resource;
mod nats_feed;
mod oauth_flow;
mod oauth_server;
mod per_person_oauth;
mod projection_faults;
mod projections;
mod rate_limits;
mod readiness;
mod registry_backends;
mod registry_v0;
mod relay;
mod server_commands;
mod snapshots;
mod support;
mod upstream_idp;
