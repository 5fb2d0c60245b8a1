//! People's own accounts at upstream servers (`oauth_per_person`): tokens sealed before any event holds
//! them (bound to their connection and kind as associated data), read back for the proxy, refreshed with
//! the revision read (two instances refreshing at once: one wins, the other reads the winner's tokens).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use domain::connection::{
    AccountConnected, AccountDisconnected, AccountTokensRefreshed, CONNECTION_CATEGORY, ConnectionEvent, HeldTokens,
    connection_id,
};
use eventstore::{Direction, EventData, EventStore, ExpectedRevision, StreamCursor, StreamName};
use uuid::Uuid;

use crate::servers::CommandContext;
use crate::{CommandError, Keyring, Secret};

/// Tokens as the authorization server answered them, in plaintext (only here, on their way in or out).
#[derive(Debug, Clone)]
pub struct TokenSet {
    /// The access token.
    pub access_token: Secret,
    /// The refresh token.
    pub refresh_token: Option<Secret>,
    /// When the access token expires.
    pub expires_at: Option<DateTime<Utc>>,
    /// The scope granted.
    pub scope: Option<String>,
}

/// The tokens held for one person at one server, and the stream's revision they were read at.
#[derive(Debug, Clone)]
pub struct Held {
    /// The tokens, opened.
    pub tokens: TokenSet,
    /// The revision to refresh from.
    pub revision: u64,
}

/// The connection command handlers.
#[derive(Clone)]
pub struct Connections {
    store: Arc<dyn EventStore>,
    keyring: Arc<Keyring>,
}

impl Connections {
    /// Handlers writing to `store`, sealing with `keyring`.
    pub fn new(store: Arc<dyn EventStore>, keyring: Arc<Keyring>) -> Self {
        Self { store, keyring }
    }

    fn stream(principal: Uuid, server: Uuid) -> Result<StreamName, CommandError> {
        StreamName::from_parts(CONNECTION_CATEGORY, connection_id(principal, server))
            .map_err(|e| CommandError::Invalid { field: "connection", message: e.to_string() })
    }

    fn context(principal: Uuid, server: Uuid, kind: &str) -> String {
        format!("connection:{}:{kind}", connection_id(principal, server))
    }

    fn seal(&self, principal: Uuid, server: Uuid, tokens: &TokenSet) -> Result<HeldTokens, CommandError> {
        Ok(HeldTokens {
            access_token: self.keyring.seal(&tokens.access_token, &Self::context(principal, server, "access"))?,
            refresh_token: tokens
                .refresh_token
                .as_ref()
                .map(|r| self.keyring.seal(r, &Self::context(principal, server, "refresh")))
                .transpose()?,
            expires_at: tokens.expires_at,
            scope: tokens.scope.clone(),
        })
    }

    fn open(&self, principal: Uuid, server: Uuid, held: &HeldTokens) -> Result<TokenSet, CommandError> {
        Ok(TokenSet {
            access_token: self.keyring.open(&held.access_token, &Self::context(principal, server, "access"))?,
            refresh_token: held
                .refresh_token
                .as_ref()
                .map(|r| self.keyring.open(r, &Self::context(principal, server, "refresh")))
                .transpose()?,
            expires_at: held.expires_at,
            scope: held.scope.clone(),
        })
    }

    /// The tokens held for `principal` at `server`, opened; `None` when none are.
    pub async fn held(&self, principal: Uuid, server: Uuid) -> Result<Option<Held>, CommandError> {
        let stream = Self::stream(principal, server)?;
        let last = self.store.read_stream(&stream, Direction::Backwards, StreamCursor::End, 1).await?;
        let Some(last) = last.first() else { return Ok(None) };
        let event = ConnectionEvent::from_json(&last.event_type, &last.data)
            .ok_or_else(|| CommandError::Corrupt(last.event_id.to_string()))?
            .map_err(|_| CommandError::Corrupt(last.event_id.to_string()))?;
        let held = match event {
            ConnectionEvent::Connected(c) => c.tokens,
            ConnectionEvent::Refreshed(r) => r.tokens,
            ConnectionEvent::Disconnected(_) => return Ok(None),
        };
        Ok(Some(Held { tokens: self.open(principal, server, &held)?, revision: last.revision }))
    }

    /// Records a new connection (replacing any earlier one).
    pub async fn connect(
        &self,
        principal: Uuid,
        server: Uuid,
        tokens: &TokenSet,
        context: &CommandContext,
    ) -> Result<(), CommandError> {
        let tokens = self.seal(principal, server, tokens)?;
        let event = ConnectionEvent::Connected(AccountConnected { principal_id: principal, server_id: server, tokens });
        self.append(principal, server, ExpectedRevision::Any, &event, context).await
    }

    /// Records refreshed tokens, if the connection is still at `revision`: `Ok(false)` when another
    /// writer moved it first (read the tokens again).
    pub async fn refreshed(
        &self,
        principal: Uuid,
        server: Uuid,
        revision: u64,
        tokens: &TokenSet,
        context: &CommandContext,
    ) -> Result<bool, CommandError> {
        let tokens = self.seal(principal, server, tokens)?;
        let event = ConnectionEvent::Refreshed(AccountTokensRefreshed { tokens });
        match self.append(principal, server, ExpectedRevision::Exact(revision), &event, context).await {
            Ok(()) => Ok(true),
            Err(CommandError::Store(e)) if e.is_conflict() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Forgets the tokens; `Ok(false)` when none were held.
    pub async fn disconnect(
        &self,
        principal: Uuid,
        server: Uuid,
        reason: String,
        context: &CommandContext,
    ) -> Result<bool, CommandError> {
        let Some(held) = self.held(principal, server).await? else { return Ok(false) };
        let reason = domain::text::reason(&reason)
            .map_err(|e| CommandError::Invalid { field: "reason", message: e.to_string() })?;
        let event = ConnectionEvent::Disconnected(AccountDisconnected { reason });
        self.append(principal, server, ExpectedRevision::Exact(held.revision), &event, context).await?;
        Ok(true)
    }

    async fn append(
        &self,
        principal: Uuid,
        server: Uuid,
        expected: ExpectedRevision,
        event: &ConnectionEvent,
        context: &CommandContext,
    ) -> Result<(), CommandError> {
        let data = event.to_json().map_err(|e| CommandError::Invalid { field: "event", message: e.to_string() })?;
        let record = EventData {
            event_id: EventData::deterministic_id(context.command_id, 0),
            event_type: event.event_type().to_owned(),
            schema_version: 1,
            data,
            metadata: context.metadata.clone(),
        };
        self.store.append(&Self::stream(principal, server)?, expected, vec![record]).await?;
        Ok(())
    }
}
