//! The HTTP routes.

pub mod analytics;
pub mod audit;
pub mod connections;
pub mod grants;
pub mod login;
pub mod mcp;
pub mod oauth_clients;
pub mod ops;
pub mod registry_v0;
pub mod servers;
pub mod tokens;
pub mod users;
