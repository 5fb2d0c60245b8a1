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
            // The id reaches events and the audit trail: one line of at most 200 characters.
            let one_line =
                domain::text::clean_line(&client.client_id, 200).as_deref() == Some(client.client_id.as_str());
            if !one_line || domain::oauth::is_document_client_id(&client.client_id) {
                return Err(format!(
                    "oauth client {:?}: the id is a name of at most 200 characters on one line, not a URL",
                    client.client_id
                ));
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
    // The authorization model has every recording and revocation; a client it does not know yet (new,
    // or recorded through another instance a moment ago) is read from, or recorded in, the store.
    let recorded =
        state.authz.read().ok().and_then(|model| model.client(client_id).map(|c| (c.revoked, c.registration.clone())));
    // A configured or document client: its source's metadata, recorded the first time only.
    let sourced = |kind: ClientKind, metadata: RegisteredMetadata, secret: Option<String>| {
        let current = ClientRegistered { client_id: client_id.to_owned(), kind, metadata, secret_sha256: secret };
        let recorded = recorded.clone();
        async move {
            match recorded {
                Some((false, _)) => Ok(ClientState::Active(Box::new(current))),
                Some((true, _)) => Ok(ClientState::Revoked(Box::new(current))),
                None => {
                    let ClientRegistered { kind, metadata, secret_sha256, .. } = current;
                    state.oauth_clients.known(client_id, kind, metadata, secret_sha256, &context()).await
                }
            }
        }
    };
    let found = if let Some((metadata, secret)) = state.configured_clients.0.get(client_id) {
        sourced(ClientKind::Configured, metadata.clone(), secret.clone()).await
    } else if domain::oauth::is_document_client_id(client_id) && fetch_documents {
        match state.client_documents.metadata(client_id).await {
            Ok(metadata) => sourced(ClientKind::MetadataDocument, metadata, None).await,
            Err(error) => {
                tracing::info!(client_id, %error, "a client's metadata document was refused");
                return Lookup::Refused(error.to_string());
            }
        }
    } else {
        match recorded {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn client(id: &str) -> ConfiguredClient {
        ConfiguredClient {
            client_id: id.to_owned(),
            client_name: Some("VS Code".into()),
            redirect_uris: vec!["http://127.0.0.1/callback".into()],
            application_type: None,
            client_secret_sha256: None,
        }
    }

    #[test]
    fn a_configured_client_is_a_one_line_name_checked_by_the_registration_rules() {
        assert!(ConfiguredClients::new(&[client("vscode")]).is_ok());
        let long = "x".repeat(201);
        for bad in ["", " vscode", "vs\ncode", "vs\u{202E}code", "https://app.example/c.json", long.as_str()] {
            assert!(ConfiguredClients::new(&[client(bad)]).is_err(), "{bad:?}");
        }
        assert!(ConfiguredClients::new(&[client("vscode"), client("vscode")]).is_err(), "configured twice");
        let mut secret = client("web");
        secret.client_secret_sha256 = Some("not hex".into());
        assert!(ConfiguredClients::new(&[secret]).is_err());
        let mut redirect = client("web");
        redirect.redirect_uris = vec!["http://evil.example/cb".into()];
        assert!(ConfiguredClients::new(&[redirect]).is_err(), "the registration rules apply");
    }
}
