//! The gateway as an OAuth 2.1 authorization server for MCP clients: its clients (registered
//! dynamically, RFC 7591, or configured), their redirect URIs, and the events of their streams.

mod client;
mod flow;
mod metadata_document;
mod redirect;

pub use client::{
    ClientEvent, ClientKind, ClientMetadata, ClientRegistered, ClientRevoked, ClientState, GrantType,
    MAX_CLIENT_NAME_CHARS, MAX_SCOPE_CHARS, RegisteredMetadata, RegistrationError, TokenEndpointAuthMethod,
    evolve_client,
};
pub use flow::{
    AUTHORIZATION_CATEGORY, AuthorizationCodeIssued, AuthorizationCodeReplayed, AuthorizationEvent,
    AuthorizationRejected, AuthorizationStarted, ConsentGiven, RefreshTokenReuseDetected, TokenIssued,
};
pub use metadata_document::{
    MAX_DOCUMENT_BYTES, MetadataDocumentError, check_client_id_url, is_document_client_id, read_document,
};
pub use redirect::{ApplicationType, MAX_REDIRECT_URI_BYTES, MAX_REDIRECT_URIS, RedirectUri, RedirectUriError};

/// Stream category of OAuth clients (`client-<id>`).
pub const CLIENT_CATEGORY: &str = "client";

/// The UUID that names `client_id`'s stream and its audit entries: the id itself for the ids the gateway
/// issues, a name-based UUID for a configured client's chosen id or a metadata document's URL.
pub fn client_uuid(client_id: &str) -> uuid::Uuid {
    client_id.parse().unwrap_or_else(|_| uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_URL, client_id.as_bytes()))
}

/// The scope that lets a token call a server's tools: the one scope of this step, named in every
/// challenge and metadata document.
pub const MCP_SCOPE: &str = "mcp:tools";
