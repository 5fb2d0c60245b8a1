//! What a caller may ask of a server. Inputs arrive validated (the types check themselves) and with
//! secrets already sealed.

use uuid::Uuid;

use super::access::{AccessPolicy, ToolRules};
use super::distribution::{Packages, Repository};
use super::endpoint::{Endpoint, Transport};
use super::health::{DiscoveredTools, ServerHealth};
use super::name::ServerName;
use super::profile::{Description, Tags, Title};
use super::upstream_auth::UpstreamAuth;
use super::version::ServerVersion;

/// Adds a server to the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisterServer {
    /// The new server's id (the caller chooses it; the stream is `server-<id>`).
    pub server_id: Uuid,
    /// Its unique name.
    pub name: ServerName,
    /// Its release version.
    pub version: ServerVersion,
    /// A display title.
    pub title: Option<Title>,
    /// What it does.
    pub description: Description,
    /// Catalogue tags.
    pub tags: Tags,
    /// Source repository.
    pub repository: Option<Repository>,
    /// Packages to install it from.
    pub packages: Packages,
    /// The MCP transport.
    pub transport: Transport,
    /// Where it listens.
    pub endpoint: Endpoint,
    /// How the gateway authenticates to it.
    pub upstream_auth: UpstreamAuth,
    /// Who may use it.
    pub access: AccessPolicy,
    /// The registering principal, owner of the entry.
    pub owner: String,
}

/// Changes catalogue fields; `None` leaves a field as it is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UpdateServer {
    /// A new release version (newer than the current one).
    pub version: Option<ServerVersion>,
    /// A new title.
    pub title: Option<Title>,
    /// A new description.
    pub description: Option<Description>,
    /// New tags (replacing the old).
    pub tags: Option<Tags>,
    /// A new source repository.
    pub repository: Option<Repository>,
    /// New packages (replacing the old).
    pub packages: Option<Packages>,
    /// A new transport.
    pub transport: Option<Transport>,
    /// A new URL.
    pub endpoint: Option<Endpoint>,
}

/// Every command of the Server aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerCommand {
    /// Register a new server.
    Register(Box<RegisterServer>),
    /// Change catalogue fields.
    Update(UpdateServer),
    /// Replace the access policy.
    ChangeAccess(AccessPolicy),
    /// Replace the access policy's tool rules, keeping who is admitted.
    ChangeToolRules(ToolRules),
    /// Record what a connection check found (an event only when a check changed its result).
    RecordHealth(ServerHealth),
    /// Record the tools the server lists (an event only when they changed).
    RecordTools(DiscoveredTools),
    /// Replace the upstream credential (or its mode).
    RotateCredential(UpstreamAuth),
    /// Stop routing to the server; it stays in the catalogue.
    Suspend {
        /// Why (kept in the audit trail).
        reason: String,
    },
    /// Route to a suspended server again.
    Resume,
    /// Remove the server; its name becomes free.
    Deregister {
        /// Why.
        reason: String,
    },
}
