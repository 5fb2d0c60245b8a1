//! Server command inputs as callers send them: plain strings and plaintext secrets, checked and sealed
//! by the handler.

use domain::server::{AccessPolicy, Transport};
use serde::Deserialize;

use crate::Secret;

/// Upstream authentication with its secret in plaintext.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(tag = "mode", rename_all = "snake_case", deny_unknown_fields)]
pub enum UpstreamAuthInput {
    /// No credentials.
    #[default]
    None,
    /// A bearer token.
    Bearer {
        /// The token.
        #[schema(value_type = String, format = Password)]
        token: Secret,
    },
    /// A custom header.
    Header {
        /// Header name.
        name: String,
        /// Header value.
        #[schema(value_type = String, format = Password)]
        value: Secret,
    },
    /// OAuth 2.0 client credentials.
    OauthClientCredentials {
        /// Token endpoint.
        token_url: String,
        /// Client id.
        client_id: String,
        /// Client secret.
        #[schema(value_type = String, format = Password)]
        client_secret: Secret,
        /// Scopes.
        #[serde(default)]
        scopes: Vec<String>,
    },
}

/// Registers a server.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterInput {
    /// Unique name.
    pub name: String,
    /// Display title.
    #[serde(default)]
    pub title: Option<String>,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Transport.
    pub transport: Transport,
    /// Upstream URL.
    pub url: String,
    /// Upstream authentication.
    #[serde(default)]
    pub upstream_auth: UpstreamAuthInput,
    /// Access policy.
    #[serde(default)]
    pub access: AccessPolicy,
}

/// Changes catalogue fields; absent fields stay as they are.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateInput {
    /// New title.
    #[serde(default)]
    pub title: Option<String>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
    /// New tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// New transport.
    #[serde(default)]
    pub transport: Option<Transport>,
    /// New URL.
    #[serde(default)]
    pub url: Option<String>,
    /// New access policy.
    #[serde(default)]
    pub access: Option<AccessPolicy>,
}
