//! Access decisions and reads of the audit trail, recorded as events so that they reach the audit trail
//! like every change. Stream `access-<principal id>`: a log, not an aggregate (nothing is decided on it).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Stream category of access records.
pub const ACCESS_CATEGORY: &str = "access";

/// A refused request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessDenied {
    /// Who was refused.
    pub principal_id: Uuid,
    /// What they tried (the authorization action).
    pub action: String,
    /// On what (a route or resource id).
    pub resource: String,
    /// The decision's reason.
    pub reason: String,
}

/// A read of the audit trail (compliance: reading the trail is itself audited).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditTrailRead {
    /// Who read.
    pub principal_id: Uuid,
    /// What they asked for (the query string, or `verify`).
    pub query: String,
}

/// Access events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessEvent {
    /// `AccessDenied`.
    Denied(AccessDenied),
    /// `AuditTrailRead`.
    AuditRead(AuditTrailRead),
}

impl AccessEvent {
    /// Every type name.
    pub const TYPES: [&'static str; 2] = ["AccessDenied", "AuditTrailRead"];

    /// The stored type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            AccessEvent::Denied(_) => Self::TYPES[0],
            AccessEvent::AuditRead(_) => Self::TYPES[1],
        }
    }

    /// The payload as JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        match self {
            AccessEvent::Denied(e) => serde_json::to_string(e),
            AccessEvent::AuditRead(e) => serde_json::to_string(e),
        }
    }

    /// Reads a stored event back; `None` for another type.
    pub fn from_json(event_type: &str, data: &str) -> Option<Result<Self, serde_json::Error>> {
        Some(match event_type {
            "AccessDenied" => serde_json::from_str(data).map(AccessEvent::Denied),
            "AuditTrailRead" => serde_json::from_str(data).map(AccessEvent::AuditRead),
            _ => return None,
        })
    }
}
