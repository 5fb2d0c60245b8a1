//! What happened to a server. Stored as JSON with a stable type name and schema version; never carries a
//! secret in plaintext (only [`crate::Sealed`] values).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::access::{AccessPolicy, ToolRules};
use super::distribution::{Packages, Repository};
use super::endpoint::{Endpoint, Transport};
use super::health::{DiscoveredTools, ServerHealth};
use super::name::ServerName;
use super::profile::{Description, Tags, Title};
use super::upstream_auth::UpstreamAuth;
use super::version::ServerVersion;

/// A server was added.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerRegistered {
    /// Its id.
    pub server_id: Uuid,
    /// Its unique name.
    pub name: ServerName,
    /// Its release version (`0.0.0` in logs written before versions were recorded).
    #[serde(default)]
    pub version: ServerVersion,
    /// Display title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Title>,
    /// Description.
    pub description: Description,
    /// Tags.
    pub tags: Tags,
    /// Source repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<Repository>,
    /// Packages to install it from.
    #[serde(default, skip_serializing_if = "Packages::is_empty")]
    pub packages: Packages,
    /// Transport.
    pub transport: Transport,
    /// URL.
    pub endpoint: Endpoint,
    /// Upstream authentication (secrets sealed).
    pub upstream_auth: UpstreamAuth,
    /// Access policy.
    pub access: AccessPolicy,
    /// Owner principal.
    pub owner: String,
}

/// Catalogue fields that changed, with their new values; absent fields did not change.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ServerChanges {
    /// A new release: newer than every version before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<ServerVersion>,
    /// New title.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<Title>,
    /// New description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<Description>,
    /// New tags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tags: Option<Tags>,
    /// New source repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<Repository>,
    /// New packages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub packages: Option<Packages>,
    /// New transport.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<Transport>,
    /// New URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<Endpoint>,
}

impl ServerChanges {
    /// True when nothing changed.
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Every event of the Server aggregate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// `ServerRegistered`.
    Registered(Box<ServerRegistered>),
    /// `ServerUpdated`.
    Updated(ServerChanges),
    /// `ServerAccessChanged`.
    AccessChanged(AccessPolicy),
    /// `ServerCredentialRotated`.
    CredentialRotated(UpstreamAuth),
    /// `ServerSuspended`.
    Suspended {
        /// Why.
        reason: String,
    },
    /// `ServerResumed`.
    Resumed,
    /// `ServerDeregistered`; carries the name so that its reservation can be released.
    Deregistered {
        /// The name freed.
        name: ServerName,
        /// Why.
        reason: String,
    },
    /// `ServerToolRulesChanged`: the access policy's tool rules were replaced, the rest kept.
    ToolRulesChanged(ToolRules),
    /// `ServerHealthChanged`: a connection check passed where the last failed, or failed where it passed.
    HealthChanged(ServerHealth),
    /// `ServerToolsDiscovered`: the server lists other tools than when last checked.
    ToolsDiscovered(DiscoveredTools),
}

/// The schema version of every server event type today.
pub const SCHEMA_VERSION: u16 = 1;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Access {
    access: AccessPolicy,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Credential {
    upstream_auth: UpstreamAuth,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rules {
    tools: ToolRules,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Health {
    health: ServerHealth,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tools {
    tools: DiscoveredTools,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Reason {
    reason: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Deregistration {
    name: ServerName,
    reason: String,
}

impl ServerEvent {
    /// Every type name, for projections' filters.
    pub const TYPES: [&'static str; 10] = [
        "ServerRegistered",
        "ServerUpdated",
        "ServerAccessChanged",
        "ServerCredentialRotated",
        "ServerSuspended",
        "ServerResumed",
        "ServerDeregistered",
        "ServerToolRulesChanged",
        "ServerHealthChanged",
        "ServerToolsDiscovered",
    ];

    /// The stored type name.
    pub fn event_type(&self) -> &'static str {
        let index = match self {
            ServerEvent::Registered(_) => 0,
            ServerEvent::Updated(_) => 1,
            ServerEvent::AccessChanged(_) => 2,
            ServerEvent::CredentialRotated(_) => 3,
            ServerEvent::Suspended { .. } => 4,
            ServerEvent::Resumed => 5,
            ServerEvent::Deregistered { .. } => 6,
            ServerEvent::ToolRulesChanged(_) => 7,
            ServerEvent::HealthChanged(_) => 8,
            ServerEvent::ToolsDiscovered(_) => 9,
        };
        Self::TYPES[index]
    }

    /// The payload as JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        match self {
            ServerEvent::Registered(registered) => serde_json::to_string(registered),
            ServerEvent::Updated(changes) => serde_json::to_string(changes),
            ServerEvent::AccessChanged(access) => serde_json::to_string(&Access { access: access.clone() }),
            ServerEvent::CredentialRotated(auth) => serde_json::to_string(&Credential { upstream_auth: auth.clone() }),
            ServerEvent::Suspended { reason } => serde_json::to_string(&Reason { reason: reason.clone() }),
            ServerEvent::Resumed => Ok("{}".to_owned()),
            ServerEvent::Deregistered { name, reason } => {
                serde_json::to_string(&Deregistration { name: name.clone(), reason: reason.clone() })
            }
            ServerEvent::ToolRulesChanged(tools) => serde_json::to_string(&Rules { tools: tools.clone() }),
            ServerEvent::HealthChanged(health) => serde_json::to_string(&Health { health: health.clone() }),
            ServerEvent::ToolsDiscovered(tools) => serde_json::to_string(&Tools { tools: tools.clone() }),
        }
    }

    /// Reads a stored event back; `None` for a type that is not a server event.
    pub fn from_json(event_type: &str, data: &str) -> Option<Result<Self, serde_json::Error>> {
        let event = match event_type {
            "ServerRegistered" => serde_json::from_str(data).map(|r| ServerEvent::Registered(Box::new(r))),
            "ServerUpdated" => serde_json::from_str(data).map(ServerEvent::Updated),
            "ServerAccessChanged" => serde_json::from_str::<Access>(data).map(|a| ServerEvent::AccessChanged(a.access)),
            "ServerCredentialRotated" => {
                serde_json::from_str::<Credential>(data).map(|c| ServerEvent::CredentialRotated(c.upstream_auth))
            }
            "ServerSuspended" => {
                serde_json::from_str::<Reason>(data).map(|r| ServerEvent::Suspended { reason: r.reason })
            }
            "ServerResumed" => serde_json::from_str::<serde_json::Value>(data).map(|_| ServerEvent::Resumed),
            "ServerDeregistered" => serde_json::from_str::<Deregistration>(data)
                .map(|d| ServerEvent::Deregistered { name: d.name, reason: d.reason }),
            "ServerToolRulesChanged" => {
                serde_json::from_str::<Rules>(data).map(|r| ServerEvent::ToolRulesChanged(r.tools))
            }
            "ServerHealthChanged" => serde_json::from_str::<Health>(data).map(|h| ServerEvent::HealthChanged(h.health)),
            "ServerToolsDiscovered" => {
                serde_json::from_str::<Tools>(data).map(|t| ServerEvent::ToolsDiscovered(t.tools))
            }
            _ => return None,
        };
        Some(event)
    }
}
