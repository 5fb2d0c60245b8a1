//! Server commands: load the stream, check inputs (SSRF guard included), seal secrets, decide, append.

use std::sync::Arc;

use domain::server::{
    self, Description, Endpoint, NetworkPolicy, Packages, RegisterServer, ServerCommand, ServerEvent, ServerName,
    ServerState, ServerVersion, Tags, Title, UpdateServer, UpstreamAuth,
};
use eventstore::{
    Claim, Claims, Direction, EventData, EventStore, ExpectedRevision, Metadata, Position, StreamCursor, StreamName,
};
use uuid::Uuid;

use super::input::{RegisterInput, UpdateInput, UpstreamAuthInput};
use crate::{CommandError, HostResolver, Keyring};

/// Attempts of a command without an expected revision before it reports [`CommandError::Contended`].
const ATTEMPTS: usize = 3;

/// The most events one server command writes (an update and an access change).
const MAX_EVENTS_PER_COMMAND: u32 = 4;

/// Events read per page when loading a server.
const PAGE: usize = 500;

/// The scope of the claims that keep server names unique among live servers.
const NAME_SCOPE: &str = "server-name";

/// Who asks, and the id that makes a retry of the same request write nothing new.
#[derive(Debug, Clone)]
pub struct CommandContext {
    /// The command's id; event ids derive from it.
    pub command_id: Uuid,
    /// Metadata stored with every event.
    pub metadata: Metadata,
}

/// What a command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// The server.
    pub server_id: Uuid,
    /// The stream's revision after the command (the `ETag`).
    pub revision: u64,
    /// The `$all` position of the last event written; `None` when the command changed nothing.
    pub position: Option<Position>,
}

/// The server command handlers.
#[derive(Clone)]
pub struct ServerCommands {
    store: Arc<dyn EventStore>,
    keyring: Arc<Keyring>,
    network: NetworkPolicy,
    resolver: Arc<dyn HostResolver>,
}

impl ServerCommands {
    /// Handlers writing to `store`, sealing with `keyring`, checking URLs against `network` with names
    /// resolved by `resolver`.
    pub fn new(
        store: Arc<dyn EventStore>,
        keyring: Arc<Keyring>,
        network: NetworkPolicy,
        resolver: Arc<dyn HostResolver>,
    ) -> Self {
        Self { store, keyring, network, resolver }
    }

    /// The stream of server `id`.
    pub fn stream(id: Uuid) -> Result<StreamName, CommandError> {
        StreamName::from_parts(server::CATEGORY, id).map_err(|e| invalid("id", e))
    }

    /// The server's state and revision (`None`: no stream).
    pub async fn load(&self, id: Uuid) -> Result<(ServerState, Option<u64>), CommandError> {
        let (state, revision, _) = self.load_for(id, None).await?;
        Ok((state, revision))
    }

    /// [`load`](Self::load), also finding the last event `command_id` wrote, if it already ran: its
    /// revision and position.
    async fn load_for(
        &self,
        id: Uuid,
        command_id: Option<Uuid>,
    ) -> Result<(ServerState, Option<u64>, Option<(u64, Position)>), CommandError> {
        let stream = Self::stream(id)?;
        let ours: Vec<Uuid> = command_id
            .map(|c| (0..MAX_EVENTS_PER_COMMAND).map(|i| EventData::deterministic_id(c, i)).collect())
            .unwrap_or_default();
        let (mut state, mut revision, mut applied) = (ServerState::New, None, None);
        let mut cursor = StreamCursor::Start;
        loop {
            let page = self.store.read_stream(&stream, Direction::Forwards, cursor, PAGE).await?;
            for event in &page {
                if ours.contains(&event.event_id) {
                    applied = Some((event.revision, event.position));
                }
                let decoded = ServerEvent::from_json(&event.event_type, &event.data)
                    .and_then(Result::ok)
                    .ok_or_else(|| CommandError::Corrupt(event.event_id.to_string()))?;
                state = server::evolve(state, &decoded);
                revision = Some(event.revision);
            }
            match (page.len() == PAGE, revision) {
                (true, Some(last)) => cursor = StreamCursor::Revision(last + 1),
                _ => return Ok((state, revision, applied)),
            }
        }
    }

    /// Registers a new server with id `server_id`, owned by `owner`. The append claims the name: both are
    /// written, or neither.
    pub async fn register(
        &self,
        server_id: Uuid,
        input: RegisterInput,
        owner: &str,
        context: &CommandContext,
    ) -> Result<Outcome, CommandError> {
        let name = ServerName::parse(input.name).map_err(|e| invalid("name", e))?;
        let version = match input.version.as_deref() {
            Some(version) => ServerVersion::parse(version).map_err(|e| invalid("version", e))?,
            None => ServerVersion::unversioned(),
        };
        let packages = Packages::parse(input.packages).map_err(server::ServerError::from)?;
        let title = input.title.as_deref().map(Title::parse).transpose().map_err(|e| invalid("title", e))?;
        let description = Description::parse(&input.description).map_err(|e| invalid("description", e))?;
        let tags = Tags::parse(&input.tags).map_err(|e| invalid("tags", e))?;
        let endpoint = self.endpoint("url", &input.url).await?;
        let upstream_auth = self.seal(server_id, input.upstream_auth).await?;
        let command = ServerCommand::Register(Box::new(RegisterServer {
            server_id,
            name: name.clone(),
            version,
            title,
            description,
            tags,
            repository: input.repository,
            packages,
            transport: input.transport,
            endpoint,
            upstream_auth,
            access: input.access,
            owner: owner.to_owned(),
        }));
        let events = server::decide(&ServerState::New, command)?;
        let data = event_data(&events, context)?;
        let claims = Claims::take(Claim::new(NAME_SCOPE, name.as_str()));
        let written =
            match self.store.append_claiming(&Self::stream(server_id)?, ExpectedRevision::NoStream, data, claims).await
            {
                Ok(written) => written,
                Err(eventstore::Error::ClaimTaken { .. }) => return Err(CommandError::NameTaken(name.to_string())),
                Err(e) if e.is_conflict() => return Err(server::ServerError::AlreadyExists.into()),
                Err(e) => return Err(e.into()),
            };
        Ok(Outcome { server_id, revision: written.last_revision, position: Some(written.position) })
    }

    /// Changes catalogue fields and, when given, the access policy.
    pub async fn update(
        &self,
        id: Uuid,
        expected: Option<u64>,
        input: UpdateInput,
        context: &CommandContext,
    ) -> Result<Outcome, CommandError> {
        let update = UpdateServer {
            version: input
                .version
                .as_deref()
                .map(ServerVersion::parse)
                .transpose()
                .map_err(|e| invalid("version", e))?,
            repository: input.repository,
            packages: input.packages.map(Packages::parse).transpose().map_err(server::ServerError::from)?,
            title: input.title.as_deref().map(Title::parse).transpose().map_err(|e| invalid("title", e))?,
            description: input
                .description
                .as_deref()
                .map(Description::parse)
                .transpose()
                .map_err(|e| invalid("description", e))?,
            tags: input.tags.as_ref().map(Tags::parse).transpose().map_err(|e| invalid("tags", e))?,
            transport: input.transport,
            endpoint: match &input.url {
                Some(url) => Some(self.endpoint("url", url).await?),
                None => None,
            },
        };
        let access = input.access;
        self.execute(id, expected, context, move |state| {
            let mut events = server::decide(state, ServerCommand::Update(update.clone()))?;
            if let Some(access) = &access {
                let after = events.iter().fold(state.clone(), server::evolve);
                events.extend(server::decide(&after, ServerCommand::ChangeAccess(access.clone()))?);
            }
            Ok(events)
        })
        .await
    }

    /// Replaces the access policy's tool rules, keeping who is admitted.
    pub async fn change_tool_rules(
        &self,
        id: Uuid,
        expected: Option<u64>,
        rules: server::ToolRules,
        context: &CommandContext,
    ) -> Result<Outcome, CommandError> {
        self.execute(id, expected, context, move |state| {
            server::decide(state, ServerCommand::ChangeToolRules(rules.clone()))
        })
        .await
    }

    /// Records what a connection check found: its health, when a check changed its result, and the tools
    /// listed, when they changed (both in one append; nothing when neither changed).
    pub async fn record_check(
        &self,
        id: Uuid,
        health: server::ServerHealth,
        tools: Option<server::DiscoveredTools>,
        context: &CommandContext,
    ) -> Result<Outcome, CommandError> {
        self.execute(id, None, context, move |state| {
            let mut events = server::decide(state, ServerCommand::RecordHealth(health.clone()))?;
            if let Some(tools) = &tools {
                let after = events.iter().fold(state.clone(), server::evolve);
                events.extend(server::decide(&after, ServerCommand::RecordTools(tools.clone()))?);
            }
            Ok(events)
        })
        .await
    }

    /// Replaces the upstream credential (or its mode).
    pub async fn rotate_credential(
        &self,
        id: Uuid,
        expected: Option<u64>,
        auth: UpstreamAuthInput,
        context: &CommandContext,
    ) -> Result<Outcome, CommandError> {
        let auth = self.seal(id, auth).await?;
        self.execute(id, expected, context, move |state| {
            server::decide(state, ServerCommand::RotateCredential(auth.clone()))
        })
        .await
    }

    /// Suspends a server.
    pub async fn suspend(
        &self,
        id: Uuid,
        expected: Option<u64>,
        reason: String,
        context: &CommandContext,
    ) -> Result<Outcome, CommandError> {
        self.execute(id, expected, context, move |state| {
            server::decide(state, ServerCommand::Suspend { reason: reason.clone() })
        })
        .await
    }

    /// Resumes a suspended server.
    pub async fn resume(
        &self,
        id: Uuid,
        expected: Option<u64>,
        context: &CommandContext,
    ) -> Result<Outcome, CommandError> {
        self.execute(id, expected, context, |state| server::decide(state, ServerCommand::Resume)).await
    }

    /// Deregisters a server and frees its name, in one append.
    pub async fn deregister(
        &self,
        id: Uuid,
        expected: Option<u64>,
        reason: String,
        context: &CommandContext,
    ) -> Result<Outcome, CommandError> {
        self.execute(id, expected, context, move |state| {
            server::decide(state, ServerCommand::Deregister { reason: reason.clone() })
        })
        .await
    }

    /// Load → decide → append with the loaded revision. With an `expected` revision from the caller a
    /// conflict is the caller's to resolve; without one the command is decided again on the new state, a
    /// few times.
    async fn execute(
        &self,
        id: Uuid,
        expected: Option<u64>,
        context: &CommandContext,
        decide: impl Fn(&ServerState) -> Result<Vec<ServerEvent>, server::ServerError>,
    ) -> Result<Outcome, CommandError> {
        for _ in 0..ATTEMPTS {
            let (state, revision, applied) = self.load_for(id, Some(context.command_id)).await?;
            // A retry of a command that already ran (its response was lost): answer as it did.
            if let Some((revision, position)) = applied {
                return Ok(Outcome { server_id: id, revision, position: Some(position) });
            }
            let Some(current) = revision else { return Err(server::ServerError::NotFound.into()) };
            if let Some(expected) = expected
                && expected != current
            {
                return Err(CommandError::RevisionMismatch { expected, actual: current });
            }
            let events = decide(&state)?;
            if events.is_empty() {
                return Ok(Outcome { server_id: id, revision: current, position: None });
            }
            // Deregistration frees the name with the same append.
            let claims = events
                .iter()
                .find_map(|e| match e {
                    ServerEvent::Deregistered { name, .. } => {
                        Some(Claims::release(Claim::new(NAME_SCOPE, name.as_str())))
                    }
                    _ => None,
                })
                .unwrap_or_default();
            let data = event_data(&events, context)?;
            match self.store.append_claiming(&Self::stream(id)?, ExpectedRevision::Exact(current), data, claims).await {
                Ok(written) => {
                    return Ok(Outcome {
                        server_id: id,
                        revision: written.last_revision,
                        position: Some(written.position),
                    });
                }
                Err(e) if e.is_conflict() => match expected {
                    Some(expected) => {
                        let (_, actual) = self.load(id).await?;
                        return Err(CommandError::RevisionMismatch { expected, actual: actual.unwrap_or(expected) });
                    }
                    None => continue,
                },
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Contended)
    }

    /// Parses `url` and checks it, and every address its host resolves to, against the network policy.
    async fn endpoint(&self, field: &'static str, url: &str) -> Result<Endpoint, CommandError> {
        let endpoint =
            Endpoint::parse(url, &self.network).map_err(|source| CommandError::Endpoint { field, source })?;
        if let Some(domain) = endpoint.domain()
            && !self.network.allows(&endpoint.host().unwrap_or_default())
        {
            let addresses = self.resolver.resolve(domain, endpoint.port()).await;
            endpoint
                .check_resolved(&self.network, &addresses)
                .map_err(|source| CommandError::Endpoint { field, source })?;
        }
        Ok(endpoint)
    }

    /// Seals the secrets of `auth` for server `id`.
    async fn seal(&self, id: Uuid, auth: UpstreamAuthInput) -> Result<UpstreamAuth, CommandError> {
        let context = |field: &str| format!("server:{id}:{field}");
        let auth = match auth {
            UpstreamAuthInput::None => UpstreamAuth::None,
            UpstreamAuthInput::Bearer { token } => {
                UpstreamAuth::Bearer { token: self.keyring.seal(&token, &context("bearer"))? }
            }
            UpstreamAuthInput::Header { name, value } => {
                UpstreamAuth::Header { value: self.keyring.seal(&value, &context("header"))?, name }
            }
            UpstreamAuthInput::OauthClientCredentials { token_url, client_id, client_secret, scopes } => {
                UpstreamAuth::OauthClientCredentials {
                    token_url: self.endpoint("upstream_auth.token_url", &token_url).await?,
                    client_id,
                    client_secret: self.keyring.seal(&client_secret, &context("client_secret"))?,
                    scopes,
                }
            }
            UpstreamAuthInput::OauthPerPerson { authorization_url, token_url, client_id, client_secret, scopes } => {
                UpstreamAuth::OauthPerPerson {
                    authorization_url: self.endpoint("upstream_auth.authorization_url", &authorization_url).await?,
                    token_url: self.endpoint("upstream_auth.token_url", &token_url).await?,
                    client_id,
                    client_secret: client_secret
                        .map(|secret| self.keyring.seal(&secret, &context("client_secret")))
                        .transpose()?,
                    scopes,
                }
            }
        };
        auth.validate().map_err(|e| invalid("upstream_auth", e))?;
        Ok(auth)
    }

    /// Opens a sealed secret of server `id` (for the proxy; never for API reads).
    pub fn open(&self, id: Uuid, field: &str, sealed: &domain::Sealed) -> Result<crate::Secret, CommandError> {
        Ok(self.keyring.open(sealed, &format!("server:{id}:{field}"))?)
    }
}

fn invalid(field: &'static str, error: impl std::fmt::Display) -> CommandError {
    CommandError::Invalid { field, message: error.to_string() }
}

/// The events as store records, ids derived from the command id.
fn event_data(events: &[ServerEvent], context: &CommandContext) -> Result<Vec<EventData>, CommandError> {
    events
        .iter()
        .enumerate()
        .map(|(index, event)| {
            let data = event.to_json().map_err(|e| invalid("event", e))?;
            Ok(EventData {
                event_id: EventData::deterministic_id(context.command_id, index as u32),
                event_type: event.event_type().to_owned(),
                schema_version: server::SCHEMA_VERSION,
                data,
                metadata: context.metadata.clone(),
            })
        })
        .collect()
}
