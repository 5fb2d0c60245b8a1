//! OAuth clients of the gateway's authorization server: what a client registers (RFC 7591), checked,
//! and the events of its stream (`client-<id>`).

use serde::{Deserialize, Serialize};

use super::redirect::{ApplicationType, MAX_REDIRECT_URIS, RedirectUri, RedirectUriError};

/// Longest client name, in characters.
pub const MAX_CLIENT_NAME_CHARS: usize = 200;
/// Longest registered scope string, in characters.
pub const MAX_SCOPE_CHARS: usize = 1_000;

/// How a client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TokenEndpointAuthMethod {
    /// A public client: no secret, PKCE alone (what MCP clients are).
    #[default]
    None,
    /// A confidential client sending its secret with HTTP Basic.
    ClientSecretBasic,
    /// A confidential client sending its secret in the form.
    ClientSecretPost,
}

impl TokenEndpointAuthMethod {
    /// Whether the client has a secret.
    pub fn is_confidential(self) -> bool {
        self != Self::None
    }
}

/// A grant a client may use: OAuth 2.1 has no implicit or password grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum GrantType {
    /// The authorization code grant, with PKCE.
    AuthorizationCode,
    /// Refreshing a token.
    RefreshToken,
}

/// How a client came to be known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ClientKind {
    /// It registered itself (RFC 7591).
    Dynamic,
    /// An operator configured it.
    Configured,
    /// Its id is the URL of its metadata document (MCP 2025-11-25), fetched when it first authorizes.
    MetadataDocument,
}

/// Why a registration was refused: the RFC 7591 §3.2.2 error code and what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistrationError {
    /// `invalid_redirect_uri`.
    #[error("redirect_uris[{index}]: {rule}")]
    RedirectUri {
        /// Which one.
        index: usize,
        /// The rule it broke.
        rule: RedirectUriError,
    },
    /// `invalid_client_metadata`.
    #[error("{0}")]
    Metadata(String),
}

impl RegistrationError {
    /// The RFC 7591 error code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::RedirectUri { .. } => "invalid_redirect_uri",
            Self::Metadata(_) => "invalid_client_metadata",
        }
    }
}

/// What a client asks to register, as RFC 7591 names it. Metadata the gateway does not use is ignored,
/// as §2 requires.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct ClientMetadata {
    /// Where the authorization server may send the browser back.
    #[serde(default)]
    pub redirect_uris: Vec<String>,
    /// `none` (public) [default], `client_secret_basic` or `client_secret_post`.
    #[serde(default)]
    pub token_endpoint_auth_method: Option<String>,
    /// `authorization_code` [default] and `refresh_token`.
    #[serde(default)]
    pub grant_types: Option<Vec<String>>,
    /// `code` [default].
    #[serde(default)]
    pub response_types: Option<Vec<String>>,
    /// `native` [default] or `web`.
    #[serde(default)]
    pub application_type: Option<String>,
    /// Shown on the consent page.
    #[serde(default)]
    pub client_name: Option<String>,
    /// The client's home page, shown on the consent page.
    #[serde(default)]
    pub client_uri: Option<String>,
    /// Scopes the client expects to ask for (kept, never used to refuse: clients register what they
    /// guess before they learn what a server wants).
    #[serde(default)]
    pub scope: Option<String>,
    /// The software's id.
    #[serde(default)]
    pub software_id: Option<String>,
    /// The software's version.
    #[serde(default)]
    pub software_version: Option<String>,
}

/// A registered client's metadata: what `ClientRegistered` records and the registration answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisteredMetadata {
    /// Redirect URIs, as registered.
    pub redirect_uris: Vec<RedirectUri>,
    /// How it authenticates at the token endpoint.
    pub token_endpoint_auth_method: TokenEndpointAuthMethod,
    /// Its grants.
    pub grant_types: Vec<GrantType>,
    /// Always `["code"]`.
    pub response_types: Vec<String>,
    /// Native or web.
    pub application_type: ApplicationType,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_name: Option<String>,
    /// Its home page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_uri: Option<String>,
    /// The scopes it said it expects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The software's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_id: Option<String>,
    /// The software's version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub software_version: Option<String>,
}

fn metadata_error(message: impl Into<String>) -> RegistrationError {
    RegistrationError::Metadata(message.into())
}

fn optional_text(field: &str, value: Option<&str>, max: usize) -> Result<Option<String>, RegistrationError> {
    crate::text::optional_line(value, max).map_err(|e| metadata_error(format!("{field} {e}")))
}

impl ClientMetadata {
    /// Checks the registration: redirect URIs for the application type, grants and response types of
    /// OAuth 2.1 only, bounded text.
    pub fn check(self) -> Result<RegisteredMetadata, RegistrationError> {
        let application_type = match self.application_type.as_deref() {
            None | Some("native") => ApplicationType::Native,
            Some("web") => ApplicationType::Web,
            Some(other) => return Err(metadata_error(format!("application_type {other:?} is not native or web"))),
        };
        if self.redirect_uris.is_empty() || self.redirect_uris.len() > MAX_REDIRECT_URIS {
            return Err(metadata_error(format!("redirect_uris has 1 to {MAX_REDIRECT_URIS} URIs")));
        }
        let redirect_uris = self
            .redirect_uris
            .iter()
            .enumerate()
            .map(|(index, raw)| {
                RedirectUri::parse(raw, application_type).map_err(|rule| RegistrationError::RedirectUri { index, rule })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let token_endpoint_auth_method = match self.token_endpoint_auth_method.as_deref() {
            None | Some("none") => TokenEndpointAuthMethod::None,
            Some("client_secret_basic") => TokenEndpointAuthMethod::ClientSecretBasic,
            Some("client_secret_post") => TokenEndpointAuthMethod::ClientSecretPost,
            Some(other) => {
                return Err(metadata_error(format!(
                    "token_endpoint_auth_method {other:?} is not none, client_secret_basic or client_secret_post"
                )));
            }
        };
        let mut grant_types = Vec::new();
        for grant in self.grant_types.unwrap_or_else(|| vec!["authorization_code".to_owned()]) {
            grant_types.push(match grant.as_str() {
                "authorization_code" => GrantType::AuthorizationCode,
                "refresh_token" => GrantType::RefreshToken,
                other => {
                    return Err(metadata_error(format!(
                        "grant_types: {other:?} is not authorization_code or refresh_token (OAuth 2.1 has no implicit or password grant)"
                    )));
                }
            });
        }
        grant_types.sort();
        grant_types.dedup();
        if !grant_types.contains(&GrantType::AuthorizationCode) {
            return Err(metadata_error("grant_types includes authorization_code"));
        }
        let response_types = self.response_types.unwrap_or_else(|| vec!["code".to_owned()]);
        if response_types.iter().any(|r| r != "code") || response_types.is_empty() {
            return Err(metadata_error("response_types is [\"code\"]"));
        }
        let client_uri = optional_text("client_uri", self.client_uri.as_deref(), 2_048)?;
        if let Some(uri) = &client_uri
            && url::Url::parse(uri).map_or(true, |u| u.scheme() != "https")
        {
            return Err(metadata_error("client_uri is an https URL"));
        }
        Ok(RegisteredMetadata {
            redirect_uris,
            token_endpoint_auth_method,
            grant_types,
            response_types: vec!["code".to_owned()],
            application_type,
            client_name: optional_text("client_name", self.client_name.as_deref(), MAX_CLIENT_NAME_CHARS)?,
            client_uri,
            scope: optional_text("scope", self.scope.as_deref(), MAX_SCOPE_CHARS)?,
            software_id: optional_text("software_id", self.software_id.as_deref(), 200)?,
            software_version: optional_text("software_version", self.software_version.as_deref(), 200)?,
        })
    }
}

/// A client was registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRegistered {
    /// Its id (public).
    pub client_id: String,
    /// How it came to be known.
    pub kind: ClientKind,
    /// What it registered.
    pub metadata: RegisteredMetadata,
    /// SHA-256 of its secret, hex, for a confidential client (the secret itself is shown once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_sha256: Option<String>,
}

/// A client was revoked: its tokens and grants stop working, and it cannot start a flow again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRevoked {
    /// The client.
    pub client_id: String,
    /// Why.
    pub reason: String,
}

/// Every event of a client's stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientEvent {
    /// `ClientRegistered`.
    Registered(Box<ClientRegistered>),
    /// `ClientRevoked`.
    Revoked(ClientRevoked),
}

impl ClientEvent {
    /// Every type name.
    pub const TYPES: [&'static str; 2] = ["ClientRegistered", "ClientRevoked"];

    /// The stored type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            Self::Registered(_) => Self::TYPES[0],
            Self::Revoked(_) => Self::TYPES[1],
        }
    }

    /// The payload as JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        match self {
            Self::Registered(registered) => serde_json::to_string(registered),
            Self::Revoked(revoked) => serde_json::to_string(revoked),
        }
    }

    /// Reads a stored event back; `None` for another type.
    pub fn from_json(event_type: &str, data: &str) -> Option<Result<Self, serde_json::Error>> {
        match event_type {
            "ClientRegistered" => Some(serde_json::from_str(data).map(|r| Self::Registered(Box::new(r)))),
            "ClientRevoked" => Some(serde_json::from_str(data).map(Self::Revoked)),
            _ => None,
        }
    }
}

/// A client's state, folded from its stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ClientState {
    /// Not registered.
    #[default]
    Unknown,
    /// Registered and usable.
    Active(Box<ClientRegistered>),
    /// Revoked.
    Revoked(Box<ClientRegistered>),
}

/// Folds one event into a client's state.
pub fn evolve_client(state: ClientState, event: &ClientEvent) -> ClientState {
    match (state, event) {
        (ClientState::Unknown, ClientEvent::Registered(r)) => ClientState::Active(r.clone()),
        (ClientState::Active(r), ClientEvent::Revoked(_)) => ClientState::Revoked(r),
        (state, _) => state,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(json: serde_json::Value) -> Result<RegisteredMetadata, RegistrationError> {
        serde_json::from_value::<ClientMetadata>(json).unwrap().check()
    }

    #[test]
    fn what_the_sdk_clients_register_is_accepted_with_defaults_filled_in() {
        let registered = metadata(serde_json::json!({
            "redirect_uris": ["http://127.0.0.1:33418/callback"], "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"], "response_types": ["code"],
            "client_name": "MCP Inspector", "scope": "claudeai", "logo_uri": "https://ignored.example/logo.png",
        }))
        .unwrap();
        assert_eq!(registered.token_endpoint_auth_method, TokenEndpointAuthMethod::None);
        assert_eq!(registered.grant_types, [GrantType::AuthorizationCode, GrantType::RefreshToken]);
        assert_eq!(registered.scope.as_deref(), Some("claudeai"), "kept, not checked");
        let minimal = metadata(serde_json::json!({ "redirect_uris": ["https://app.example/cb"] })).unwrap();
        assert_eq!(
            (minimal.application_type, minimal.response_types),
            (ApplicationType::Native, vec!["code".to_owned()])
        );
    }

    #[test]
    fn grants_outside_oauth_2_1_and_bad_uris_are_refused_with_the_rfc_7591_code() {
        let refused = |json: serde_json::Value| metadata(json).unwrap_err();
        let uri = |u: &str| serde_json::json!({ "redirect_uris": ["https://ok.example/cb", u] });
        assert_eq!(refused(uri("http://evil.com/cb")).code(), "invalid_redirect_uri");
        assert!(refused(uri("http://evil.com/cb")).to_string().starts_with("redirect_uris[1]"));
        for grant in ["implicit", "password", "client_credentials"] {
            let json = serde_json::json!({ "redirect_uris": ["https://a.example/cb"], "grant_types": [grant] });
            assert_eq!(refused(json).code(), "invalid_client_metadata", "{grant}");
        }
        let token = serde_json::json!({ "redirect_uris": ["https://a.example/cb"], "response_types": ["token"] });
        assert_eq!(refused(token).code(), "invalid_client_metadata");
        assert_eq!(refused(serde_json::json!({ "redirect_uris": [] })).code(), "invalid_client_metadata");
        let many: Vec<String> = (0..11).map(|n| format!("https://a.example/{n}")).collect();
        assert_eq!(refused(serde_json::json!({ "redirect_uris": many })).code(), "invalid_client_metadata");
        let web = serde_json::json!({ "redirect_uris": ["http://127.0.0.1/cb"], "application_type": "web" });
        assert_eq!(refused(web).code(), "invalid_redirect_uri");
        let named = serde_json::json!({ "redirect_uris": ["https://a.example/cb"], "client_name": "Evil\u{202E}" });
        assert_eq!(refused(named).code(), "invalid_client_metadata");
    }

    #[test]
    fn a_revoked_client_stays_revoked() {
        let registered = ClientRegistered {
            client_id: "c1".into(),
            kind: ClientKind::Dynamic,
            metadata: metadata(serde_json::json!({ "redirect_uris": ["https://a.example/cb"] })).unwrap(),
            secret_sha256: None,
        };
        let events = [
            ClientEvent::Registered(Box::new(registered.clone())),
            ClientEvent::Revoked(ClientRevoked { client_id: "c1".into(), reason: "lost".into() }),
            ClientEvent::Registered(Box::new(registered)),
        ];
        let state = events.iter().fold(ClientState::Unknown, evolve_client);
        assert!(matches!(state, ClientState::Revoked(_)));
        for event in &events {
            let back = ClientEvent::from_json(event.event_type(), &event.to_json().unwrap()).unwrap().unwrap();
            assert_eq!(&back, event);
        }
    }
}
