//! Server command inputs as callers send them: plain strings and plaintext secrets, checked and sealed
//! by the handler.

use domain::server::{AccessPolicy, Package, Repository, Transport};
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
    /// OAuth on each person's own account: people connect once (`GET /api/v1/servers/{id}/connect`).
    OauthPerPerson {
        /// The authorization endpoint people are sent to.
        authorization_url: String,
        /// The token endpoint.
        token_url: String,
        /// The gateway's client id there.
        client_id: String,
        /// Its client secret (none: a public client).
        #[serde(default)]
        #[schema(value_type = Option<String>, format = Password)]
        client_secret: Option<Secret>,
        /// Scopes requested.
        #[serde(default)]
        scopes: Vec<String>,
    },
}

/// Registers a server.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterInput {
    /// Unique name: a reverse-DNS namespace and a name (`io.example/weather`).
    pub name: String,
    /// Release version (SemVer); `0.0.0` when not given.
    #[serde(default)]
    pub version: Option<String>,
    /// Display title.
    #[serde(default)]
    pub title: Option<String>,
    /// What it does: one line of 1 to 100 characters.
    pub description: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Source repository, as in the official `server.json`.
    #[serde(default)]
    pub repository: Option<Repository>,
    /// Packages to install it from, as in the official `server.json`.
    #[serde(default)]
    pub packages: Vec<Package>,
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
    /// A new release version, newer than the current one.
    #[serde(default)]
    pub version: Option<String>,
    /// New title.
    #[serde(default)]
    pub title: Option<String>,
    /// New description.
    #[serde(default)]
    pub description: Option<String>,
    /// New tags.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// New source repository.
    #[serde(default)]
    pub repository: Option<Repository>,
    /// New packages (replacing the old).
    #[serde(default)]
    pub packages: Option<Vec<Package>>,
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
