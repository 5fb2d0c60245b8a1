//! A server's state, folded from its events.

use uuid::Uuid;

use super::access::AccessPolicy;
use super::distribution::{Packages, Repository};
use super::endpoint::{Endpoint, Transport};
use super::event::ServerEvent;
use super::health::{DiscoveredTools, ServerHealth};
use super::name::ServerName;
use super::profile::{Description, Tags, Title};
use super::upstream_auth::UpstreamAuth;
use super::version::ServerVersion;

/// Whether the gateway routes to a server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerStatus {
    /// Routed.
    Active,
    /// Not routed, still listed.
    Suspended {
        /// Why.
        reason: String,
    },
}

/// A registered server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Server {
    /// Id.
    pub id: Uuid,
    /// Unique name.
    pub name: ServerName,
    /// Current release version.
    pub version: ServerVersion,
    /// Title.
    pub title: Option<Title>,
    /// Description.
    pub description: Description,
    /// Tags.
    pub tags: Tags,
    /// Source repository.
    pub repository: Option<Repository>,
    /// Packages.
    pub packages: Packages,
    /// Transport.
    pub transport: Transport,
    /// URL.
    pub endpoint: Endpoint,
    /// Upstream authentication (sealed).
    pub upstream_auth: UpstreamAuth,
    /// Access policy.
    pub access: AccessPolicy,
    /// Owner principal.
    pub owner: String,
    /// Routed or not.
    pub status: ServerStatus,
    /// What the last connection check that changed something found.
    pub health: Option<ServerHealth>,
    /// The tools it listed when last checked.
    pub tools: Option<DiscoveredTools>,
}

/// The aggregate's state.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ServerState {
    /// No such server yet.
    #[default]
    New,
    /// In the registry.
    Live(Box<Server>),
    /// Removed; the stream is closed.
    Deregistered(Box<Server>),
}

/// Folds one event into the state. Total: an event that cannot apply (it never is produced by
/// [`decide`](super::decide)) leaves the state as it is.
pub fn evolve(state: ServerState, event: &ServerEvent) -> ServerState {
    match (state, event) {
        (ServerState::New, ServerEvent::Registered(r)) => ServerState::Live(Box::new(Server {
            id: r.server_id,
            name: r.name.clone(),
            version: r.version.clone(),
            title: r.title.clone(),
            description: r.description.clone(),
            tags: r.tags.clone(),
            repository: r.repository.clone(),
            packages: r.packages.clone(),
            transport: r.transport,
            endpoint: r.endpoint.clone(),
            upstream_auth: r.upstream_auth.clone(),
            access: r.access.clone(),
            owner: r.owner.clone(),
            status: ServerStatus::Active,
            health: None,
            tools: None,
        })),
        (ServerState::Live(mut server), event) => {
            match event {
                ServerEvent::Registered(_) => {}
                ServerEvent::Updated(changes) => {
                    if let Some(version) = &changes.version {
                        server.version = version.clone();
                    }
                    if let Some(repository) = &changes.repository {
                        server.repository = Some(repository.clone());
                    }
                    if let Some(packages) = &changes.packages {
                        server.packages = packages.clone();
                    }
                    if let Some(title) = &changes.title {
                        server.title = Some(title.clone());
                    }
                    if let Some(description) = &changes.description {
                        server.description = description.clone();
                    }
                    if let Some(tags) = &changes.tags {
                        server.tags = tags.clone();
                    }
                    if let Some(transport) = changes.transport {
                        server.transport = transport;
                    }
                    if let Some(endpoint) = &changes.endpoint {
                        server.endpoint = endpoint.clone();
                    }
                }
                ServerEvent::AccessChanged(access) => server.access = access.clone(),
                ServerEvent::ToolRulesChanged(tools) => server.access.tools = tools.clone(),
                ServerEvent::HealthChanged(health) => server.health = Some(health.clone()),
                ServerEvent::ToolsDiscovered(tools) => server.tools = Some(tools.clone()),
                ServerEvent::CredentialRotated(auth) => server.upstream_auth = auth.clone(),
                ServerEvent::Suspended { reason } => server.status = ServerStatus::Suspended { reason: reason.clone() },
                ServerEvent::Resumed => server.status = ServerStatus::Active,
                ServerEvent::Deregistered { .. } => return ServerState::Deregistered(server),
            }
            ServerState::Live(server)
        }
        (state, _) => state,
    }
}
