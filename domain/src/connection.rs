//! A person's own account at an upstream server that acts on it (`oauth_per_person`): connected once
//! through that server's authorization server, its tokens kept sealed and refreshed. Stream
//! `connection-<id>`, one per person and server ([`connection_id`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::Sealed;

/// Stream category of connections.
pub const CONNECTION_CATEGORY: &str = "connection";

/// The id of the connection of `principal` to `server`: the same on every instance, without a lookup.
pub fn connection_id(principal: Uuid, server: Uuid) -> Uuid {
    let mut name = Vec::with_capacity(32);
    name.extend_from_slice(principal.as_bytes());
    name.extend_from_slice(server.as_bytes());
    Uuid::new_v5(&CONNECTIONS_NAMESPACE, &name)
}

/// The UUID namespace of connection ids.
const CONNECTIONS_NAMESPACE: Uuid = Uuid::from_u128(0x6d67_7763_6f6e_6e65_6374_696f_6e73_0001);

/// Tokens the upstream's authorization server issued for one person (sealed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeldTokens {
    /// The access token, sealed.
    pub access_token: Sealed,
    /// The refresh token, sealed, if one was issued.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<Sealed>,
    /// When the access token expires, if the server said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The scope granted, if the server said.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// The person connected their account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConnected {
    /// The person.
    pub principal_id: Uuid,
    /// The server.
    pub server_id: Uuid,
    /// The tokens.
    pub tokens: HeldTokens,
}

/// The gateway refreshed the tokens (a rotated refresh token is kept in place of the old).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountTokensRefreshed {
    /// The new tokens.
    pub tokens: HeldTokens,
}

/// The connection ended; the tokens are forgotten.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountDisconnected {
    /// Why.
    pub reason: String,
}

/// Connection events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionEvent {
    /// `AccountConnected`.
    Connected(AccountConnected),
    /// `AccountTokensRefreshed`.
    Refreshed(AccountTokensRefreshed),
    /// `AccountDisconnected`.
    Disconnected(AccountDisconnected),
}

impl ConnectionEvent {
    /// Every type name.
    pub const TYPES: [&'static str; 3] = ["AccountConnected", "AccountTokensRefreshed", "AccountDisconnected"];

    /// The stored type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            ConnectionEvent::Connected(_) => Self::TYPES[0],
            ConnectionEvent::Refreshed(_) => Self::TYPES[1],
            ConnectionEvent::Disconnected(_) => Self::TYPES[2],
        }
    }

    /// The payload as JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        match self {
            ConnectionEvent::Connected(e) => serde_json::to_string(e),
            ConnectionEvent::Refreshed(e) => serde_json::to_string(e),
            ConnectionEvent::Disconnected(e) => serde_json::to_string(e),
        }
    }

    /// Reads a stored event back; `None` for a type that is not a connection event.
    pub fn from_json(event_type: &str, data: &str) -> Option<Result<Self, serde_json::Error>> {
        Some(match event_type {
            "AccountConnected" => serde_json::from_str(data).map(ConnectionEvent::Connected),
            "AccountTokensRefreshed" => serde_json::from_str(data).map(ConnectionEvent::Refreshed),
            "AccountDisconnected" => serde_json::from_str(data).map(ConnectionEvent::Disconnected),
            _ => return None,
        })
    }
}

/// A connection's state: the tokens held, if any.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Connection {
    /// The person and the server, once connected.
    pub parties: Option<(Uuid, Uuid)>,
    /// The tokens held (none before connecting and after disconnecting).
    pub tokens: Option<HeldTokens>,
}

impl Connection {
    /// The state after `event`.
    pub fn evolve(mut self, event: &ConnectionEvent) -> Self {
        match event {
            ConnectionEvent::Connected(c) => {
                self.parties = Some((c.principal_id, c.server_id));
                self.tokens = Some(c.tokens.clone());
            }
            ConnectionEvent::Refreshed(r) => {
                if self.tokens.is_some() {
                    self.tokens = Some(r.tokens.clone());
                }
            }
            ConnectionEvent::Disconnected(_) => self.tokens = None,
        }
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed(c: &str) -> Sealed {
        Sealed { key_id: "k1".into(), nonce: "n".into(), ciphertext: c.into(), fingerprint: None }
    }

    #[test]
    fn ids_are_stable_per_pair_and_tokens_follow_the_events() {
        let (p, s) = (Uuid::now_v7(), Uuid::now_v7());
        assert_eq!(connection_id(p, s), connection_id(p, s));
        assert_ne!(connection_id(p, s), connection_id(s, p));
        let tokens =
            |c: &str| HeldTokens { access_token: sealed(c), refresh_token: None, expires_at: None, scope: None };
        let connected =
            ConnectionEvent::Connected(AccountConnected { principal_id: p, server_id: s, tokens: tokens("a") });
        let refreshed = ConnectionEvent::Refreshed(AccountTokensRefreshed { tokens: tokens("b") });
        let state = Connection::default().evolve(&connected).evolve(&refreshed);
        assert_eq!(state.tokens.as_ref().unwrap().access_token.ciphertext, "b");
        let json = connected.to_json().unwrap();
        assert_eq!(ConnectionEvent::from_json("AccountConnected", &json).unwrap().unwrap(), connected);
        let gone = state.evolve(&ConnectionEvent::Disconnected(AccountDisconnected { reason: "r".into() }));
        assert!(gone.tokens.is_none());
    }
}
