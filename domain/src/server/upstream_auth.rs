//! How the gateway authenticates to an upstream server. Secrets arrive here already sealed.

use serde::{Deserialize, Serialize};

use super::endpoint::Endpoint;
use crate::Sealed;

/// Header names the gateway sets itself or that would break the request.
const RESERVED_HEADERS: [&str; 8] =
    ["host", "content-length", "transfer-encoding", "connection", "upgrade", "te", "trailer", "mcp-session-id"];

/// The upstream authentication of a server.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum UpstreamAuth {
    /// No credentials.
    #[default]
    None,
    /// `Authorization: Bearer <token>`.
    Bearer {
        /// The token, sealed.
        token: Sealed,
    },
    /// A custom header, e.g. `X-API-Key`.
    Header {
        /// The header name.
        name: String,
        /// Its value, sealed.
        value: Sealed,
    },
    /// OAuth 2.0 client credentials: the gateway fetches and caches an access token.
    OauthClientCredentials {
        /// The token endpoint.
        token_url: Endpoint,
        /// The client id.
        client_id: String,
        /// The client secret, sealed.
        client_secret: Sealed,
        /// Scopes requested.
        #[serde(default)]
        scopes: Vec<String>,
    },
    /// OAuth on each person's own account: every person connects once (the authorization-code flow
    /// with PKCE at the server's authorization server), and the gateway sends that person's token,
    /// refreshing it, to act as them.
    OauthPerPerson {
        /// The authorization endpoint people are sent to.
        authorization_url: Endpoint,
        /// The token endpoint.
        token_url: Endpoint,
        /// The gateway's client id there.
        client_id: String,
        /// Its client secret, sealed (`None`: a public client).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        client_secret: Option<Sealed>,
        /// Scopes requested.
        #[serde(default)]
        scopes: Vec<String>,
    },
}

/// The mode alone, for reads that must not carry even sealed secrets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamAuthKind {
    /// No credentials.
    None,
    /// A bearer token.
    Bearer,
    /// A custom header.
    Header,
    /// OAuth 2.0 client credentials.
    OauthClientCredentials,
    /// OAuth on each person's own account.
    OauthPerPerson,
}

/// Why an upstream auth setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamAuthError {
    /// Not an HTTP header name, or one the gateway controls.
    #[error("header name {0:?} is not allowed (an HTTP token, not a hop-by-hop or gateway-controlled header)")]
    HeaderName(String),
    /// Client id empty, too long or with control characters.
    #[error("client_id has 1 to 256 printable characters")]
    ClientId,
    /// A scope with spaces or control characters, or too many.
    #[error("scopes: at most 32, each 1 to 128 printable characters without spaces")]
    Scopes,
}

impl UpstreamAuth {
    /// The mode.
    pub fn kind(&self) -> UpstreamAuthKind {
        match self {
            UpstreamAuth::None => UpstreamAuthKind::None,
            UpstreamAuth::Bearer { .. } => UpstreamAuthKind::Bearer,
            UpstreamAuth::Header { .. } => UpstreamAuthKind::Header,
            UpstreamAuth::OauthClientCredentials { .. } => UpstreamAuthKind::OauthClientCredentials,
            UpstreamAuth::OauthPerPerson { .. } => UpstreamAuthKind::OauthPerPerson,
        }
    }

    /// The keyed hash of the secret, when the mode has one and it was recorded.
    pub fn fingerprint(&self) -> Option<&str> {
        match self {
            UpstreamAuth::None => None,
            UpstreamAuth::Bearer { token: sealed }
            | UpstreamAuth::Header { value: sealed, .. }
            | UpstreamAuth::OauthClientCredentials { client_secret: sealed, .. } => sealed.fingerprint.as_deref(),
            UpstreamAuth::OauthPerPerson { client_secret, .. } => client_secret.as_ref()?.fingerprint.as_deref(),
        }
    }

    /// Checks the non-secret fields.
    pub fn validate(&self) -> Result<(), UpstreamAuthError> {
        match self {
            UpstreamAuth::None | UpstreamAuth::Bearer { .. } => Ok(()),
            UpstreamAuth::Header { name, .. } => {
                let token = !name.is_empty()
                    && name.len() <= 128
                    && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
                if !token || RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                    return Err(UpstreamAuthError::HeaderName(name.clone()));
                }
                Ok(())
            }
            UpstreamAuth::OauthClientCredentials { client_id, scopes, .. }
            | UpstreamAuth::OauthPerPerson { client_id, scopes, .. } => {
                let printable = |s: &str| !s.chars().any(char::is_control);
                if client_id.is_empty() || client_id.chars().count() > 256 || !printable(client_id) {
                    return Err(UpstreamAuthError::ClientId);
                }
                let scope_ok = |s: &String| !s.is_empty() && s.len() <= 128 && printable(s) && !s.contains(' ');
                if scopes.len() > 32 || !scopes.iter().all(scope_ok) {
                    return Err(UpstreamAuthError::Scopes);
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sealed() -> Sealed {
        Sealed { key_id: "k1".into(), nonce: "n".into(), ciphertext: "c".into(), fingerprint: None }
    }

    #[test]
    fn header_names_are_http_tokens_the_gateway_does_not_own() {
        let header = |name: &str| UpstreamAuth::Header { name: name.into(), value: sealed() };
        assert!(header("X-API-Key").validate().is_ok());
        assert!(header("Host").validate().is_err());
        assert!(header("Bad Header").validate().is_err());
        assert!(header("").validate().is_err());
    }

    #[test]
    fn the_sealed_secret_is_all_that_serializes() {
        let json = serde_json::to_string(&UpstreamAuth::Bearer { token: sealed() }).unwrap();
        assert_eq!(json, r#"{"mode":"bearer","token":{"key_id":"k1","nonce":"n","ciphertext":"c"}}"#);
    }
}
