//! Who a `client_id` is, wherever the client came from: registered dynamically (its stream), configured
//! by the operator (the configuration is its metadata), or a URL whose metadata document it publishes
//! (fetched, checked, cached). Configured and document clients are recorded the first time they are
//! seen, so that every client is in the audit trail and an operator can list and revoke any of them.

use std::collections::HashMap;

use domain::oauth::{ClientKind, ClientMetadata, ClientRegistered, ClientState, RegisteredMetadata, RegistrationError};
use eventstore::Actor;
use serde::Deserialize;

use crate::state::AppState;

/// A client configured by the operator (`[[oauth_clients]]` in the configuration file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfiguredClient {
    /// Its id, chosen by the operator.
    pub client_id: String,
    /// Shown on the consent page.
    pub client_name: Option<String>,
    /// Its redirect URIs (the registration rules apply).
    pub redirect_uris: Vec<String>,
    /// `native` [default] or `web`.
    #[serde(default)]
    pub application_type: Option<String>,
    /// SHA-256 of its secret, hex, for a confidential client (`client_secret_basic`); none for a public one.
    #[serde(default)]
    pub client_secret_sha256: Option<String>,
}

/// The configured clients, checked.
#[derive(Debug, Clone, Default)]
pub struct ConfiguredClients(HashMap<String, (RegisteredMetadata, Option<String>)>);

impl ConfiguredClients {
    /// Checks every configured client by the registration rules; the first fault is the error.
    pub fn new(clients: &[ConfiguredClient]) -> Result<Self, String> {
        let mut checked = HashMap::new();
        for client in clients {
            let fault = |e: RegistrationError| format!("oauth client {}: {e}", client.client_id);
            if client.client_id.is_empty() || domain::oauth::is_document_client_id(&client.client_id) {
                return Err(format!("oauth client {:?}: the id is a non-empty name, not a URL", client.client_id));
            }
            let secret = client.client_secret_sha256.as_ref().map(|s| s.to_ascii_lowercase());
            if secret.as_ref().is_some_and(|s| s.len() != 64 || !s.bytes().all(|b| b.is_ascii_hexdigit())) {
                return Err(format!("oauth client {}: client_secret_sha256 is 64 hex digits", client.client_id));
            }
            let metadata = ClientMetadata {
                redirect_uris: client.redirect_uris.clone(),
                token_endpoint_auth_method: Some(
                    if secret.is_some() { "client_secret_basic" } else { "none" }.to_owned(),
                ),
                application_type: client.application_type.clone(),
                client_name: client.client_name.clone(),
                ..ClientMetadata::default()
            }
            .check()
            .map_err(fault)?;
            if checked.insert(client.client_id.clone(), (metadata, secret)).is_some() {
                return Err(format!("oauth client {} is configured twice", client.client_id));
            }
        }
        Ok(Self(checked))
    }
}

/// What looking a client up found.
pub(crate) enum Lookup {
    /// A client that may take part in a flow.
    Active(Box<ClientRegistered>),
    /// Revoked, or its metadata document refused: why, for the error page and the audit trail.
    Refused(String),
    /// No such client. Not recorded: anybody can send any id, and a flood of them must not write the log.
    Unknown,
    /// The store (or the document's host) could not be asked; try again.
    Unavailable,
}

/// The client `client_id`. `fetch_documents`: whether a document client's metadata is fetched (at
/// `/authorize`); elsewhere the recorded metadata is enough (the token endpoint only compares what the
/// code carries).
pub(crate) async fn find(state: &AppState, client_id: &str, fetch_documents: bool) -> Lookup {
    let context = || {
        let command_id = uuid::Uuid::now_v7();
        let metadata = eventstore::Metadata::new(command_id, Actor::system("oauth-clients"), chrono::Utc::now());
        commands::servers::CommandContext { command_id, metadata }
    };
    let found = if let Some((metadata, secret)) = state.configured_clients.0.get(client_id) {
        let (metadata, secret) = (metadata.clone(), secret.clone());
        state.oauth_clients.known(client_id, ClientKind::Configured, metadata, secret, &context()).await
    } else if domain::oauth::is_document_client_id(client_id) && fetch_documents {
        match state.client_documents.metadata(client_id).await {
            Ok(metadata) => {
                let kind = ClientKind::MetadataDocument;
                state.oauth_clients.known(client_id, kind, metadata, None, &context()).await
            }
            Err(error) => {
                tracing::info!(client_id, %error, "a client's metadata document was refused");
                return Lookup::Refused(error.to_string());
            }
        }
    } else {
        // The authorization model has every registration and revocation; a client it does not know yet
        // (registered through another instance a moment ago) is read from the store.
        let known = state
            .authz
            .read()
            .ok()
            .and_then(|model| model.client(client_id).map(|c| (c.revoked, c.registration.clone())));
        match known {
            Some((false, registration)) => Ok(ClientState::Active(registration)),
            Some((true, registration)) => Ok(ClientState::Revoked(registration)),
            None => state.oauth_clients.load(client_id).await,
        }
    };
    // A stream found under another name (a configured id's derived UUID given as the id) is not that
    // client; a configured client the configuration no longer has is gone.
    let found = found.map(|client| match client {
        ClientState::Active(c) | ClientState::Revoked(c) if c.client_id != client_id => ClientState::Unknown,
        ClientState::Active(c)
            if c.kind == ClientKind::Configured && !state.configured_clients.0.contains_key(client_id) =>
        {
            ClientState::Unknown
        }
        other => other,
    });
    match found {
        Ok(ClientState::Active(client)) => Lookup::Active(client),
        Ok(ClientState::Revoked(_)) => Lookup::Refused("the client is revoked".into()),
        Ok(ClientState::Unknown) => Lookup::Unknown,
        Err(_) => Lookup::Unavailable,
    }
}
