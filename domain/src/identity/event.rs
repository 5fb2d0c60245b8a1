//! Identity events.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Role;

/// Who a principal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A person.
    User,
    /// A machine client.
    Service,
}

/// A principal was created with its first roles (the bootstrap owner, a service account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalCreated {
    /// Id.
    pub principal_id: Uuid,
    /// Kind.
    pub kind: PrincipalKind,
    /// Display name.
    pub display_name: String,
    /// Roles.
    pub roles: Vec<Role>,
}

/// An API key was issued; only its digest and a display prefix are recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyIssued {
    /// Key id.
    pub key_id: Uuid,
    /// Owner principal.
    pub principal_id: Uuid,
    /// `mgw_` and the first characters, to tell keys apart in lists.
    pub prefix: String,
    /// SHA-256 of the key, hex.
    pub sha256: String,
}

/// Identity events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityEvent {
    /// `PrincipalCreated`.
    PrincipalCreated(PrincipalCreated),
    /// `ApiKeyIssued`.
    ApiKeyIssued(ApiKeyIssued),
}

impl IdentityEvent {
    /// Every type name.
    pub const TYPES: [&'static str; 2] = ["PrincipalCreated", "ApiKeyIssued"];

    /// The stored type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            IdentityEvent::PrincipalCreated(_) => Self::TYPES[0],
            IdentityEvent::ApiKeyIssued(_) => Self::TYPES[1],
        }
    }

    /// The payload as JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        match self {
            IdentityEvent::PrincipalCreated(e) => serde_json::to_string(e),
            IdentityEvent::ApiKeyIssued(e) => serde_json::to_string(e),
        }
    }

    /// Reads a stored event back; `None` for another type.
    pub fn from_json(event_type: &str, data: &str) -> Option<Result<Self, serde_json::Error>> {
        Some(match event_type {
            "PrincipalCreated" => serde_json::from_str(data).map(IdentityEvent::PrincipalCreated),
            "ApiKeyIssued" => serde_json::from_str(data).map(IdentityEvent::ApiKeyIssued),
            _ => return None,
        })
    }
}
