//! OAuth clients of the authorization server: registration (RFC 7591) and revocation, each an event on
//! the client's stream (`client-<id>`). A confidential client's secret is generated here, shown once and
//! stored as its SHA-256 only.

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::oauth::{
    CLIENT_CATEGORY, ClientEvent, ClientKind, ClientMetadata, ClientRegistered, ClientRevoked, ClientState,
    RegisteredMetadata, evolve_client,
};
use eventstore::{Direction, EventData, EventStore, ExpectedRevision, StreamCursor, StreamName};
use rand::Rng;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::servers::CommandContext;
use crate::{CommandError, Secret};

/// The prefix of client secrets, so that a leaked one is recognisable.
pub const CLIENT_SECRET_PREFIX: &str = "mgwcs_";

/// A registration done: the client as recorded, and its secret once.
#[derive(Debug)]
pub struct Registration {
    /// What was recorded.
    pub client: ClientRegistered,
    /// The secret of a confidential client: show it once, it is stored nowhere.
    pub secret: Option<Secret>,
}

/// The client command handlers.
#[derive(Clone)]
pub struct OAuthClients {
    store: Arc<dyn EventStore>,
}

impl OAuthClients {
    /// Handlers writing to `store`.
    pub fn new(store: Arc<dyn EventStore>) -> Self {
        Self { store }
    }

    /// The stream of `client_id` (see [`client_uuid`]).
    fn stream(client_id: &str) -> Option<StreamName> {
        StreamName::from_parts(CLIENT_CATEGORY, client_uuid(client_id)).ok()
    }

    /// A client the gateway did not register itself (configured, or a metadata document's URL), with
    /// `metadata` from its source: recorded (`ClientRegistered`) the first time it is seen, so that it is
    /// in the audit trail and operators can list and revoke it. Its state, with `metadata` as it is now.
    pub async fn known(
        &self,
        client_id: &str,
        kind: ClientKind,
        metadata: RegisteredMetadata,
        secret_sha256: Option<String>,
        context: &CommandContext,
    ) -> Result<ClientState, CommandError> {
        let current = ClientRegistered { client_id: client_id.to_owned(), kind, metadata, secret_sha256 };
        for _ in 0..3 {
            match self.load(client_id).await? {
                ClientState::Unknown => {
                    let event = ClientEvent::Registered(Box::new(current.clone()));
                    let stream = Self::stream(client_id).ok_or(CommandError::ClientNotFound)?;
                    match self.store.append(&stream, ExpectedRevision::NoStream, vec![data(&event, context, 0)?]).await
                    {
                        Ok(_) => return Ok(ClientState::Active(Box::new(current))),
                        // Another request recorded it first: read what it recorded.
                        Err(e) if e.is_conflict() => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                ClientState::Active(_) => return Ok(ClientState::Active(Box::new(current))),
                ClientState::Revoked(_) => return Ok(ClientState::Revoked(Box::new(current))),
            }
        }
        Err(CommandError::Contended)
    }

    /// Registers a client from its metadata (RFC 7591).
    pub async fn register(
        &self,
        metadata: ClientMetadata,
        kind: ClientKind,
        context: &CommandContext,
    ) -> Result<Registration, CommandError> {
        let metadata = metadata.check()?;
        let client_id = Uuid::now_v7().to_string();
        let secret = metadata.token_endpoint_auth_method.is_confidential().then(|| {
            let mut random = [0u8; 32];
            rand::rng().fill_bytes(&mut random);
            Secret::new(format!("{CLIENT_SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(random)))
        });
        let client = ClientRegistered {
            client_id: client_id.clone(),
            kind,
            metadata,
            secret_sha256: secret.as_ref().map(|s| secret_digest(s.expose())),
        };
        let event = ClientEvent::Registered(Box::new(client.clone()));
        let stream = Self::stream(&client_id).ok_or(CommandError::ClientNotFound)?;
        self.store.append(&stream, ExpectedRevision::NoStream, vec![data(&event, context, 0)?]).await?;
        Ok(Registration { client, secret })
    }

    /// The client with `client_id` (unknown for an id that is not one of ours).
    pub async fn load(&self, client_id: &str) -> Result<ClientState, CommandError> {
        Ok(self.load_with_revision(client_id).await?.0)
    }

    async fn load_with_revision(&self, client_id: &str) -> Result<(ClientState, Option<u64>), CommandError> {
        let Some(stream) = Self::stream(client_id) else { return Ok((ClientState::Unknown, None)) };
        let events = self.store.read_stream(&stream, Direction::Forwards, StreamCursor::Start, 100).await?;
        let mut state = ClientState::Unknown;
        for event in &events {
            let decoded = ClientEvent::from_json(&event.event_type, &event.data)
                .and_then(Result::ok)
                .ok_or_else(|| CommandError::Corrupt(event.event_id.to_string()))?;
            state = evolve_client(state, &decoded);
        }
        Ok((state, events.last().map(|e| e.revision)))
    }

    /// Revokes a client: from the next request on, it cannot start a flow or use what it holds.
    pub async fn revoke(&self, client_id: &str, reason: &str, context: &CommandContext) -> Result<(), CommandError> {
        let reason = domain::text::reason(reason)
            .map_err(|e| CommandError::Invalid { field: "reason", message: e.to_string() })?;
        let (state, revision) = self.load_with_revision(client_id).await?;
        let (ClientState::Active(_), Some(revision)) = (state, revision) else {
            return Err(CommandError::ClientNotFound);
        };
        let event = ClientEvent::Revoked(ClientRevoked { client_id: client_id.to_owned(), reason });
        let stream = Self::stream(client_id).ok_or(CommandError::ClientNotFound)?;
        self.store.append(&stream, ExpectedRevision::Exact(revision), vec![data(&event, context, 0)?]).await?;
        Ok(())
    }
}

pub use domain::oauth::client_uuid;

/// SHA-256 of a client secret, hex: what is stored and compared.
pub fn secret_digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn data(event: &ClientEvent, context: &CommandContext, index: u32) -> Result<EventData, CommandError> {
    Ok(EventData {
        event_id: EventData::deterministic_id(context.command_id, index),
        event_type: event.event_type().to_owned(),
        schema_version: 1,
        data: event.to_json().map_err(|e| CommandError::Invalid { field: "event", message: e.to_string() })?,
        metadata: context.metadata.clone(),
    })
}
