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

/// A tool call the gateway forwarded to a server, and how it ended. Its arguments are never recorded,
/// only their keyed hash (they may carry anything the person typed).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ToolCalled {
    /// The call's own id.
    pub call_id: Uuid,
    /// Who called.
    pub principal_id: Uuid,
    /// The API key or session (an OAuth client's grant lives in one) the credential belongs to.
    pub credential_id: Uuid,
    /// The OAuth client whose token made the call, if one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// The server.
    pub server_id: Uuid,
    /// The tool.
    pub tool: String,
    /// How it ended.
    pub outcome: CallOutcome,
    /// From the request's arrival to the end of the answer, in milliseconds.
    pub latency_ms: f64,
    /// The upstream's HTTP status, when it answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream_status: Option<u16>,
    /// `hmac-sha256:<key id>:<hex>` of the arguments' JSON.
    pub arguments_hash: String,
}

/// The break-glass credential was presented and accepted: an owner acting while every identity
/// provider may be down. Recorded before the request is served (no record, no request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassUsed {
    /// The request it was used for: method and path (never the query or the body).
    pub request: String,
}

/// The break-glass credential was presented, right, while break-glass is not enabled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakGlassRefused {
    /// The request it was presented with: method and path.
    pub request: String,
    /// Why it was refused.
    pub reason: String,
}

/// The principal id the break-glass credential acts as (the same on every instance and in every
/// deployment, so that its entries are found together).
pub fn break_glass_principal() -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, b"urn:mcp-gateway:break-glass")
}

/// How a forwarded tool call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    /// The server answered with a result.
    Answered,
    /// The server answered that the tool failed (`isError`).
    ToolError,
    /// The server answered with a JSON-RPC error.
    Error,
    /// The server could not be reached, failed or refused the gateway.
    UpstreamFailed,
    /// The server broke off its answer.
    Broken,
    /// The client went away before the answer ended.
    Abandoned,
    /// The gateway stopped (was killed) while the call ran: the server may have run it. Recorded from
    /// the call journal by the gateway's next start.
    Interrupted,
}

impl CallOutcome {
    /// The name recorded.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Answered => "answered",
            CallOutcome::ToolError => "tool_error",
            CallOutcome::Error => "error",
            CallOutcome::UpstreamFailed => "upstream_failed",
            CallOutcome::Broken => "broken",
            CallOutcome::Abandoned => "abandoned",
            CallOutcome::Interrupted => "interrupted",
        }
    }
}

/// Access events.
#[derive(Debug, Clone, PartialEq)]
pub enum AccessEvent {
    /// `AccessDenied`.
    Denied(AccessDenied),
    /// `AuditTrailRead`.
    AuditRead(AuditTrailRead),
    /// `ToolCalled`.
    ToolCalled(ToolCalled),
    /// `BreakGlassUsed`.
    BreakGlassUsed(BreakGlassUsed),
    /// `BreakGlassRefused`.
    BreakGlassRefused(BreakGlassRefused),
}

impl AccessEvent {
    /// Every type name.
    pub const TYPES: [&'static str; 5] =
        ["AccessDenied", "AuditTrailRead", "ToolCalled", "BreakGlassUsed", "BreakGlassRefused"];

    /// The stored type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            AccessEvent::Denied(_) => Self::TYPES[0],
            AccessEvent::AuditRead(_) => Self::TYPES[1],
            AccessEvent::ToolCalled(_) => Self::TYPES[2],
            AccessEvent::BreakGlassUsed(_) => Self::TYPES[3],
            AccessEvent::BreakGlassRefused(_) => Self::TYPES[4],
        }
    }

    /// The payload as JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        match self {
            AccessEvent::Denied(e) => serde_json::to_string(e),
            AccessEvent::AuditRead(e) => serde_json::to_string(e),
            AccessEvent::ToolCalled(e) => serde_json::to_string(e),
            AccessEvent::BreakGlassUsed(e) => serde_json::to_string(e),
            AccessEvent::BreakGlassRefused(e) => serde_json::to_string(e),
        }
    }

    /// Reads a stored event back; `None` for another type.
    pub fn from_json(event_type: &str, data: &str) -> Option<Result<Self, serde_json::Error>> {
        Some(match event_type {
            "AccessDenied" => serde_json::from_str(data).map(AccessEvent::Denied),
            "AuditTrailRead" => serde_json::from_str(data).map(AccessEvent::AuditRead),
            "ToolCalled" => serde_json::from_str(data).map(AccessEvent::ToolCalled),
            "BreakGlassUsed" => serde_json::from_str(data).map(AccessEvent::BreakGlassUsed),
            "BreakGlassRefused" => serde_json::from_str(data).map(AccessEvent::BreakGlassRefused),
            _ => return None,
        })
    }
}
