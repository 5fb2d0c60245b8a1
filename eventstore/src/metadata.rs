//! Who caused an event, when, from where, and in answer to what.

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest user agent kept; longer ones are cut (PII stays minimal, rows stay small).
pub const MAX_USER_AGENT_CHARS: usize = 256;

/// Metadata carried by every event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// The request or job this event belongs to; shared by everything one request caused.
    pub correlation_id: Uuid,
    /// The message (command or event) that directly caused this event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
    /// Who acted.
    pub actor: Actor,
    /// The client's address, as the gateway saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<IpAddr>,
    /// The client's user agent, cut to [`MAX_USER_AGENT_CHARS`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// When the command handler decided; informational, never used for ordering.
    pub occurred_at: DateTime<Utc>,
}

impl Metadata {
    /// Metadata for `actor` acting now in the request `correlation_id`.
    pub fn new(correlation_id: Uuid, actor: Actor, occurred_at: DateTime<Utc>) -> Self {
        Self { correlation_id, causation_id: None, actor, source_ip: None, user_agent: None, occurred_at }
    }

    /// Sets the causing message.
    pub fn caused_by(mut self, causation_id: Uuid) -> Self {
        self.causation_id = Some(causation_id);
        self
    }

    /// Sets where the request came from; the user agent is cut to [`MAX_USER_AGENT_CHARS`].
    pub fn from_client(mut self, source_ip: Option<IpAddr>, user_agent: Option<&str>) -> Self {
        self.source_ip = source_ip;
        self.user_agent = user_agent.map(|ua| ua.chars().take(MAX_USER_AGENT_CHARS).collect());
        self
    }
}

/// The principal behind an event.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Actor {
    /// The principal's id (user id, API key id, OAuth client id, or a system component's name).
    pub id: String,
    /// What kind of principal it is.
    pub kind: ActorKind,
}

impl Actor {
    /// A system component acting on its own (relay, migration, scheduler).
    pub fn system(component: &str) -> Self {
        Self { id: component.to_owned(), kind: ActorKind::System }
    }
}

/// Kinds of principals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActorKind {
    /// A person, logged in through an identity provider.
    User,
    /// An API client holding an API key.
    ApiKey,
    /// An MCP client holding a gateway-issued token.
    McpClient,
    /// The gateway itself.
    System,
}
