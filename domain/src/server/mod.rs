//! The Server aggregate: one MCP server in the registry, stream `server-<id>`.

mod access;
mod address_guard;
mod command;
mod decide;
mod distribution;
mod endpoint;
mod error;
mod event;
mod health;
mod name;
mod profile;
mod state;
mod upstream_auth;
mod version;

pub use access::{AccessPolicy, AccessPolicyError, MAX_ENTRIES, MAX_ENTRY_BYTES, RoleToolRules, ToolRules};
pub use address_guard::{BlockedRange, blocked_range};
pub use command::{RegisterServer, ServerCommand, UpdateServer};
pub use decide::decide;
pub use distribution::{
    Argument, ArgumentKind, DistributionError, InputFormat, KeyValueInput, MAX_INPUTS, MAX_PACKAGES, Package,
    PackageTransport, Packages, Repository, Variable,
};
pub use endpoint::{Endpoint, EndpointError, MAX_URL_BYTES, NetworkPolicy, Transport};
pub use error::{MAX_REASON_CHARS, ServerError};
pub use event::{SCHEMA_VERSION, ServerChanges, ServerEvent, ServerRegistered};
pub use health::{
    DiscoveredTool, DiscoveredTools, MAX_DISCOVERED_TOOLS, MAX_HEALTH_DETAIL_CHARS, MAX_TOOL_DESCRIPTION_CHARS,
    ServerHealth,
};
pub use name::{MAX_NAME_BYTES, ServerName, ServerNameError};
pub use profile::{
    Description, MAX_DESCRIPTION_CHARS, MAX_TAG_BYTES, MAX_TAGS, MAX_TITLE_CHARS, ProfileError, Tags, Title,
};
pub use state::{Server, ServerState, ServerStatus, evolve};
pub use upstream_auth::{UpstreamAuth, UpstreamAuthError, UpstreamAuthKind};
pub use version::{MAX_VERSION_BYTES, ServerVersion, ServerVersionError};

/// The stream category of servers.
pub const CATEGORY: &str = "server";
