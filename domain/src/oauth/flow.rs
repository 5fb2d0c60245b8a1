//! What happens in an MCP client's authorization, as events on the client's log stream
//! (`oauth-<client_id>`): the trail of who authorized which client for which server, when, and what was
//! refused. No event carries a code, a token or a secret: codes are named by a digest prefix, tokens by
//! their id (`jti`).

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Stream category of the authorization logs (`oauth-<client_id>`).
pub const AUTHORIZATION_CATEGORY: &str = "oauth";

/// An authorization was begun at `/authorize` and the consent page shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationStarted {
    /// The client.
    pub client_id: String,
    /// Where the code will go.
    pub redirect_uri: String,
    /// The scope asked for, as granted.
    pub scope: String,
    /// The resource the token will be bound to.
    pub resource: String,
    /// Whether the client named no resource (and got the umbrella).
    pub resource_absent: bool,
}

/// `/authorize` refused a request it could answer at all.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationRejected {
    /// The client (as it named itself).
    pub client_id: String,
    /// The OAuth error code.
    pub error: String,
    /// Why.
    pub reason: String,
}

/// The person at the consent page approved or denied the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentGiven {
    /// The client.
    pub client_id: String,
    /// The resource.
    pub resource: String,
    /// The IdP the person went on to (approvals).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idp: Option<String>,
}

/// A code went to the client, for the person who signed in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationCodeIssued {
    /// The client.
    pub client_id: String,
    /// The person.
    pub principal_id: Uuid,
    /// The session the grant lives in.
    pub session_id: Uuid,
    /// The first characters of the code's SHA-256 (to tell codes apart, never to find one).
    pub code_digest: String,
}

/// A code was presented again: whatever it produced is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizationCodeReplayed {
    /// The client that presented it.
    pub client_id: String,
    /// The session it produced, now revoked.
    pub session_id: Uuid,
    /// The code's digest prefix.
    pub code_digest: String,
}

/// Tokens went to the client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenIssued {
    /// The client.
    pub client_id: String,
    /// The person.
    pub principal_id: Uuid,
    /// The session.
    pub session_id: Uuid,
    /// The access token's audience.
    pub resource: String,
    /// Its scope.
    pub scope: String,
    /// Its id.
    pub jti: String,
    /// `authorization_code` or `refresh_token`.
    pub grant_type: String,
}

/// A refresh token was used after it had been replaced: it was copied, and the grant is revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshTokenReuseDetected {
    /// The client.
    pub client_id: String,
    /// The grant, now revoked with its session.
    pub grant_id: Uuid,
    /// The session.
    pub session_id: Uuid,
}

/// Every event of an authorization log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorizationEvent {
    /// `AuthorizationStarted`.
    Started(AuthorizationStarted),
    /// `AuthorizationRejected`.
    Rejected(AuthorizationRejected),
    /// `ConsentGranted`.
    ConsentGranted(ConsentGiven),
    /// `ConsentDenied`.
    ConsentDenied(ConsentGiven),
    /// `AuthorizationCodeIssued`.
    CodeIssued(AuthorizationCodeIssued),
    /// `AuthorizationCodeReplayed`.
    CodeReplayed(AuthorizationCodeReplayed),
    /// `TokenIssued`.
    TokenIssued(TokenIssued),
    /// `TokenRefreshed`.
    TokenRefreshed(TokenIssued),
    /// `RefreshTokenReuseDetected`.
    RefreshTokenReuseDetected(RefreshTokenReuseDetected),
}

impl AuthorizationEvent {
    /// Every type name.
    pub const TYPES: [&'static str; 9] = [
        "AuthorizationStarted",
        "AuthorizationRejected",
        "ConsentGranted",
        "ConsentDenied",
        "AuthorizationCodeIssued",
        "AuthorizationCodeReplayed",
        "TokenIssued",
        "TokenRefreshed",
        "RefreshTokenReuseDetected",
    ];

    /// The stored type name.
    pub fn event_type(&self) -> &'static str {
        let index = match self {
            Self::Started(_) => 0,
            Self::Rejected(_) => 1,
            Self::ConsentGranted(_) => 2,
            Self::ConsentDenied(_) => 3,
            Self::CodeIssued(_) => 4,
            Self::CodeReplayed(_) => 5,
            Self::TokenIssued(_) => 6,
            Self::TokenRefreshed(_) => 7,
            Self::RefreshTokenReuseDetected(_) => 8,
        };
        Self::TYPES[index]
    }

    /// The payload as JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        match self {
            Self::Started(e) => serde_json::to_string(e),
            Self::Rejected(e) => serde_json::to_string(e),
            Self::ConsentGranted(e) | Self::ConsentDenied(e) => serde_json::to_string(e),
            Self::CodeIssued(e) => serde_json::to_string(e),
            Self::CodeReplayed(e) => serde_json::to_string(e),
            Self::TokenIssued(e) | Self::TokenRefreshed(e) => serde_json::to_string(e),
            Self::RefreshTokenReuseDetected(e) => serde_json::to_string(e),
        }
    }

    /// Reads a stored event back; `None` for another type.
    pub fn from_json(event_type: &str, data: &str) -> Option<Result<Self, serde_json::Error>> {
        Some(match event_type {
            "AuthorizationStarted" => serde_json::from_str(data).map(Self::Started),
            "AuthorizationRejected" => serde_json::from_str(data).map(Self::Rejected),
            "ConsentGranted" => serde_json::from_str(data).map(Self::ConsentGranted),
            "ConsentDenied" => serde_json::from_str(data).map(Self::ConsentDenied),
            "AuthorizationCodeIssued" => serde_json::from_str(data).map(Self::CodeIssued),
            "AuthorizationCodeReplayed" => serde_json::from_str(data).map(Self::CodeReplayed),
            "TokenIssued" => serde_json::from_str(data).map(Self::TokenIssued),
            "TokenRefreshed" => serde_json::from_str(data).map(Self::TokenRefreshed),
            "RefreshTokenReuseDetected" => serde_json::from_str(data).map(Self::RefreshTokenReuseDetected),
            _ => return None,
        })
    }

    /// The grant (the session it lives in) the event belongs to, once there is one: its log is
    /// `oauth-<session>`. Events before a sign-in have none and each go to a log of their own. Never one log
    /// per client: every user of a popular client (one client id for everyone who runs it) would append to
    /// it, and appends to one stream are serialized.
    pub fn grant_session(&self) -> Option<Uuid> {
        match self {
            Self::Started(_) | Self::Rejected(_) | Self::ConsentGranted(_) | Self::ConsentDenied(_) => None,
            Self::CodeIssued(e) => Some(e.session_id),
            Self::CodeReplayed(e) => Some(e.session_id),
            Self::TokenIssued(e) | Self::TokenRefreshed(e) => Some(e.session_id),
            Self::RefreshTokenReuseDetected(e) => Some(e.session_id),
        }
    }

    /// The client the event is about.
    pub fn client_id(&self) -> &str {
        match self {
            Self::Started(e) => &e.client_id,
            Self::Rejected(e) => &e.client_id,
            Self::ConsentGranted(e) | Self::ConsentDenied(e) => &e.client_id,
            Self::CodeIssued(e) => &e.client_id,
            Self::CodeReplayed(e) => &e.client_id,
            Self::TokenIssued(e) | Self::TokenRefreshed(e) => &e.client_id,
            Self::RefreshTokenReuseDetected(e) => &e.client_id,
        }
    }
}
