//! The integration-test harness.
//!
//! It starts real servers from installed binaries, each on a free loopback port with its data in a
//! temporary directory: a throwaway PostgreSQL cluster ([`PostgresServer`], `initdb` + `postgres`)
//! a throwaway `nats-server -js` ([`NatsServer`]), the certified OpenID provider `oidc-provider`
//! ([`OidcProvider`]) and the official MCP server `server-everything` ([`McpServer`]). Tests get a fresh database each
//! ([`PostgresServer::create_database`]); fault tests start their own servers and kill or restart
//! them. It never uses the services the machine may already run.
//!
//! Cleanup does not depend on the test finishing: every server has a watchdog process holding a pipe
//! from the test process. When the test process exits for any reason (a panic, an abort, a kill), the
//! pipe closes and the watchdog kills the server and removes its directory.
//!
//! Polling for asynchronous effects goes through [`eventually`], never through fixed sleeps.

mod binaries;
mod error;
mod eventually;
mod free_port;
mod mcp_server;
mod nats;
mod oidc_provider;
mod postgres;
mod server_process;
mod smtp_server;
mod watchdog;

pub use error::HarnessError;
pub use eventually::{eventually, eventually_ok};
pub use free_port::free_port;
pub use mcp_server::McpServer;
pub use nats::NatsServer;
pub use oidc_provider::{OidcProvider, installed_peers};
pub use postgres::{PostgresOptions, PostgresServer, TestDatabase};
pub use smtp_server::SmtpServer;
