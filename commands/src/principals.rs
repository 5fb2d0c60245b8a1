//! Principal commands: service principals, role grants and revocations, disabling, API keys, and the
//! TOTP step-up that sensitive grants require.
//!
//! Each loads the streams it decides on and appends at their exact revisions; a role change that
//! touches ownership also appends the new set of owners to `system-owners` at its revision, in the same
//! transaction, so that two concurrent revocations cannot leave the gateway without an owner.

use std::collections::BTreeSet;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use domain::Role;
use domain::authz::Action;
use domain::identity::{
    API_KEY_CATEGORY, API_KEY_PREFIX, ApiKeyIssued, ApiKeyRevoked, IdentityEvent, OWNERS_STREAM, OwnersChanged,
    PRINCIPAL_CATEGORY, PrincipalCreated, PrincipalKind, PrincipalState, RoleActor, RoleChange, TotpEnrolled,
    TotpVerified, decide_disable, decide_role_change,
};
use domain::text;
use eventstore::{
    AppendResult, Direction, EventData, EventStore, ExpectedRevision, StreamAppend, StreamCursor, StreamName,
};
use uuid::Uuid;

use crate::identity::new_api_key;
use crate::servers::CommandContext;
use crate::{CommandError, Keyring, Secret};

/// Attempts of a command whose streams keep moving under it.
const ATTEMPTS: usize = 4;
/// Events read per page when loading a stream.
const PAGE: usize = 500;
/// Longest display name or key name.
const MAX_NAME_CHARS: usize = text::MAX_NAME_CHARS;
/// Longest email kept from an identity provider (RFC 5321's path limit).
const MAX_EMAIL_CHARS: usize = 254;
/// TOTP: 6 digits, 30-second steps, one step of clock skew either way (RFC 6238's defaults).
const TOTP_STEP_SECONDS: u64 = 30;

/// Who acts, and with which credential: the session or API key a request came with (an access token
/// counts as the key or session it was minted from). A second factor proven is the credential's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Credential {
    /// The principal.
    pub principal: Uuid,
    /// The session or API key.
    pub credential: Uuid,
}

/// An API key just issued: shown once.
#[derive(Debug)]
pub struct IssuedKey {
    /// Its id.
    pub key_id: Uuid,
    /// The key; stored nowhere.
    pub key: Secret,
    /// Its display prefix.
    pub prefix: String,
    /// When it stops working.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A TOTP enrolment: the secret to put in an authenticator app, shown once.
#[derive(Debug)]
pub struct TotpEnrolment {
    /// Base32 secret.
    pub secret_base32: Secret,
    /// `otpauth://` URI with the same secret (for a QR code).
    pub otpauth_uri: Secret,
}

/// A role change asked of [`PrincipalCommands::change_role`].
#[derive(Debug, Clone, Copy)]
pub struct RoleRequest<'a> {
    /// Whose role.
    pub target: Uuid,
    /// Grant or revoke.
    pub change: RoleChange,
    /// Which role.
    pub role: Role,
    /// Why (required).
    pub reason: &'a str,
}

/// The input of an API key.
#[derive(Debug, Clone, Default)]
pub struct KeyInput {
    /// What it is for.
    pub name: Option<String>,
    /// When it stops working (`None`: never).
    pub expires_at: Option<DateTime<Utc>>,
    /// The actions it may be used for (empty: whatever its principal's roles allow).
    pub scopes: Vec<Action>,
}

/// The principal command handlers.
#[derive(Clone)]
pub struct PrincipalCommands {
    store: Arc<dyn EventStore>,
    keyring: Arc<Keyring>,
}

fn invalid(field: &'static str, message: impl std::fmt::Display) -> CommandError {
    CommandError::Invalid { field, message: message.to_string() }
}

fn stream(category: &str, id: Uuid) -> Result<StreamName, CommandError> {
    StreamName::from_parts(category, id).map_err(|e| invalid("id", e))
}

fn expected(revision: Option<u64>) -> ExpectedRevision {
    revision.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact)
}

impl PrincipalCommands {
    /// Handlers over `store`, sealing TOTP secrets with `keyring`.
    pub fn new(store: Arc<dyn EventStore>, keyring: Arc<Keyring>) -> Self {
        Self { store, keyring }
    }

    async fn read_all_of(&self, stream: &StreamName) -> Result<Vec<eventstore::RecordedEvent>, CommandError> {
        let mut events = Vec::new();
        let mut cursor = StreamCursor::Start;
        loop {
            let page = self.store.read_stream(stream, Direction::Forwards, cursor, PAGE).await?;
            let full = page.len() == PAGE;
            let last = page.last().map(|e| e.revision);
            events.extend(page);
            match (full, last) {
                (true, Some(last)) => cursor = StreamCursor::Revision(last + 1),
                _ => return Ok(events),
            }
        }
    }

    async fn identity_events(&self, stream: &StreamName) -> Result<(Vec<IdentityEvent>, Option<u64>), CommandError> {
        let recorded = self.read_all_of(stream).await?;
        let revision = recorded.last().map(|e| e.revision);
        let events = recorded
            .iter()
            .map(|e| {
                IdentityEvent::from_json(&e.event_type, &e.data)
                    .and_then(Result::ok)
                    .ok_or_else(|| CommandError::Corrupt(e.event_id.to_string()))
            })
            .collect::<Result<_, _>>()?;
        Ok((events, revision))
    }

    /// A principal's state and revision; `NotFound` when there is none.
    pub async fn load(&self, id: Uuid) -> Result<(PrincipalState, u64), CommandError> {
        let (events, revision) = self.identity_events(&stream(PRINCIPAL_CATEGORY, id)?).await?;
        let state = events.iter().fold(None, PrincipalState::evolve);
        match (state, revision) {
            (Some(state), Some(revision)) => Ok((state, revision)),
            _ => Err(CommandError::PrincipalNotFound),
        }
    }

    /// The actor's state, refused when it is disabled (a request decided on a credential that was good a
    /// moment ago must not act for a principal disabled since).
    async fn enabled_actor(&self, actor: Uuid) -> Result<PrincipalState, CommandError> {
        let (state, _) = self.load(actor).await?;
        if state.disabled {
            return Err(CommandError::PrincipalDisabled);
        }
        Ok(state)
    }

    /// Acting on somebody else's keys: only a principal whose roles reach the target's, and (for issuing)
    /// only on service principals: a person's keys are that person's to make.
    async fn check_acting_on_keys(
        &self,
        actor: Uuid,
        target: &PrincipalState,
        issuing: bool,
    ) -> Result<(), CommandError> {
        if actor == target.id {
            return Ok(());
        }
        let actor_state = self.enabled_actor(actor).await?;
        if !domain::identity::outranks_or_equals(&actor_state.roles, &target.roles) {
            return Err(CommandError::NotYours("the principal holds a role above yours"));
        }
        if issuing && target.kind != PrincipalKind::Service {
            return Err(CommandError::NotYours("keys are issued to people by themselves, and to service principals"));
        }
        Ok(())
    }

    /// Gateways bootstrapped before owners had their own stream: their only owner is the bootstrap's.
    pub async fn ensure_owners_stream(&self, context: &CommandContext) -> Result<(), CommandError> {
        if self.owners().await?.1.is_some() {
            return Ok(());
        }
        let bootstrap = StreamName::parse(crate::identity::BOOTSTRAP_STREAM).map_err(|e| invalid("id", e))?;
        let marker = self.read_all_of(&bootstrap).await?;
        let Some(first) = marker.first() else { return Ok(()) };
        let data: serde_json::Value = serde_json::from_str(&first.data).map_err(|e| invalid("bootstrap", e))?;
        let owner = data["principal_id"]
            .as_str()
            .and_then(|id| Uuid::parse_str(id).ok())
            .ok_or_else(|| CommandError::Corrupt(first.event_id.to_string()))?;
        let changed = IdentityEvent::OwnersChanged(OwnersChanged { owners: vec![owner] });
        let owners_stream = StreamName::parse(OWNERS_STREAM).map_err(|e| invalid("id", e))?;
        match self
            .store
            .append(&owners_stream, ExpectedRevision::NoStream, vec![self.data(context, 0, &changed)?])
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.is_conflict() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// The enabled owners and the revision of their stream.
    pub async fn owners(&self) -> Result<(BTreeSet<Uuid>, Option<u64>), CommandError> {
        let owners_stream = StreamName::parse(OWNERS_STREAM).map_err(|e| invalid("id", e))?;
        let (events, revision) = self.identity_events(&owners_stream).await?;
        let owners = events
            .into_iter()
            .rev()
            .find_map(|e| match e {
                IdentityEvent::OwnersChanged(o) => Some(o.owners.into_iter().collect()),
                _ => None,
            })
            .unwrap_or_default();
        Ok((owners, revision))
    }

    fn data(&self, context: &CommandContext, index: u32, event: &IdentityEvent) -> Result<EventData, CommandError> {
        Ok(EventData {
            event_id: EventData::deterministic_id(context.command_id, index),
            event_type: event.event_type().to_owned(),
            schema_version: 1,
            data: event.to_json().map_err(|e| invalid("event", e))?,
            metadata: context.metadata.clone(),
        })
    }

    /// Appends `event` to the principal's stream at `revision`, and the new set of owners when it changed.
    async fn append_principal_event(
        &self,
        context: &CommandContext,
        target: Uuid,
        revision: u64,
        event: &IdentityEvent,
        owners: Option<(BTreeSet<Uuid>, Option<u64>)>,
    ) -> Result<AppendResult, CommandError> {
        let mut appends = vec![StreamAppend {
            stream: stream(PRINCIPAL_CATEGORY, target)?,
            expected: ExpectedRevision::Exact(revision),
            events: vec![self.data(context, 0, event)?],
        }];
        if let Some((owners, owners_revision)) = owners {
            let changed = IdentityEvent::OwnersChanged(OwnersChanged { owners: owners.into_iter().collect() });
            appends.push(StreamAppend {
                stream: StreamName::parse(OWNERS_STREAM).map_err(|e| invalid("id", e))?,
                expected: expected(owners_revision),
                events: vec![self.data(context, 1, &changed)?],
            });
        }
        let mut results = self.store.append_multi(appends).await?;
        Ok(results.remove(0))
    }

    /// Makes sure the break-glass principal `id` exists: a service principal holding `owner`, so that
    /// commands made with the break-glass credential have an actor like any other (and the trail a name
    /// for it). It is not one of the owners the last-owner rule counts: it is there only while
    /// configured; disabled or stripped of owner by an ordinary command, it is restored at its next use.
    /// Idempotent across instances.
    pub async fn ensure_break_glass(&self, id: Uuid, context: &CommandContext) -> Result<(), CommandError> {
        let (state, revision) = match self.load(id).await {
            Ok(loaded) => loaded,
            Err(CommandError::PrincipalNotFound) => {
                let created = IdentityEvent::PrincipalCreated(PrincipalCreated {
                    principal_id: id,
                    kind: PrincipalKind::Service,
                    display_name: "break-glass".to_owned(),
                    roles: vec![Role::Owner],
                });
                let appended = self
                    .store
                    .append(
                        &stream(PRINCIPAL_CATEGORY, id)?,
                        ExpectedRevision::NoStream,
                        vec![self.data(context, 0, &created)?],
                    )
                    .await;
                return match appended {
                    Ok(_) => Ok(()),
                    Err(e) if e.is_conflict() => Ok(()),
                    Err(e) => Err(e.into()),
                };
            }
            Err(error) => return Err(error),
        };
        // Disabled, or its owner role taken away, by an ordinary command: the configuration decides
        // whether break-glass works, so it is restored (and the trail shows both).
        let mut restore = Vec::new();
        if state.disabled {
            restore.push(IdentityEvent::UserEnabled(domain::identity::UserEnabled { principal_id: id }));
        }
        if !state.roles.contains(&Role::Owner) {
            restore.push(IdentityEvent::RoleGranted(domain::identity::RoleGranted {
                principal_id: id,
                role: Role::Owner,
                source: domain::identity::RoleSource::Admin,
                reason: "break-glass is configured: its principal holds owner".to_owned(),
            }));
        }
        if restore.is_empty() {
            return Ok(());
        }
        let data = restore
            .iter()
            .enumerate()
            .map(|(i, event)| self.data(context, i as u32, event))
            .collect::<Result<Vec<_>, _>>()?;
        match self.store.append(&stream(PRINCIPAL_CATEGORY, id)?, ExpectedRevision::Exact(revision), data).await {
            Ok(_) => Ok(()),
            Err(e) if e.is_conflict() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates a principal with no roles (a service account, or a person before their first grant).
    pub async fn create(
        &self,
        principal_id: Uuid,
        kind: PrincipalKind,
        display_name: &str,
        context: &CommandContext,
    ) -> Result<AppendResult, CommandError> {
        let display_name = text::line(display_name, MAX_NAME_CHARS).map_err(|e| invalid("display_name", e))?;
        let created =
            IdentityEvent::PrincipalCreated(PrincipalCreated { principal_id, kind, display_name, roles: vec![] });
        let result = self
            .store
            .append(
                &stream(PRINCIPAL_CATEGORY, principal_id)?,
                ExpectedRevision::NoStream,
                vec![self.data(context, 0, &created)?],
            )
            .await;
        match result {
            Ok(result) => Ok(result),
            Err(e) if e.is_conflict() => Err(CommandError::PrincipalExists),
            Err(e) => Err(e.into()),
        }
    }

    /// Grants or revokes `role` on `target`, as `actor` (whose roles and second factor are read from its
    /// own stream, not from a read model).
    pub async fn change_role(
        &self,
        actor: Credential,
        request: RoleRequest<'_>,
        now: DateTime<Utc>,
        context: &CommandContext,
    ) -> Result<AppendResult, CommandError> {
        let RoleRequest { target, change, role, reason } = request;
        for _ in 0..ATTEMPTS {
            let actor_state = self.enabled_actor(actor.principal).await?;
            let (target_state, revision) = self.load(target).await?;
            let (owners, owners_revision) = self.owners().await?;
            let mfa_fresh = actor_state.mfa_fresh(now, actor.credential);
            let acting = RoleActor { id: actor.principal, roles: &actor_state.roles, mfa_fresh };
            let event = decide_role_change(acting, &target_state, change, role, reason, &owners)?;
            let owners_after = (role == Role::Owner && !target_state.disabled).then(|| {
                let mut after = owners.clone();
                match change {
                    RoleChange::Grant => after.insert(target),
                    RoleChange::Revoke => after.remove(&target),
                };
                (after, owners_revision)
            });
            match self.append_principal_event(context, target, revision, &event, owners_after).await {
                Ok(result) => return Ok(result),
                Err(CommandError::Store(e)) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(CommandError::Contended)
    }

    /// Disables (`disable`) or enables `target`. `None` when it already was so.
    pub async fn set_disabled(
        &self,
        actor: Uuid,
        target: Uuid,
        disable: bool,
        reason: &str,
        context: &CommandContext,
    ) -> Result<Option<AppendResult>, CommandError> {
        for _ in 0..ATTEMPTS {
            let actor_state = self.enabled_actor(actor).await?;
            let (target_state, revision) = self.load(target).await?;
            let (owners, owners_revision) = self.owners().await?;
            let acting = RoleActor { id: actor, roles: &actor_state.roles, mfa_fresh: false };
            let Some(event) = decide_disable(acting, &target_state, disable, reason, &owners)? else {
                return Ok(None);
            };
            let owners_after = target_state.roles.contains(&Role::Owner).then(|| {
                let mut after = owners.clone();
                if disable {
                    after.remove(&target);
                } else {
                    after.insert(target);
                }
                (after, owners_revision)
            });
            match self.append_principal_event(context, target, revision, &event, owners_after).await {
                Ok(result) => return Ok(Some(result)),
                Err(CommandError::Store(e)) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(CommandError::Contended)
    }

    /// Issues an API key to `principal_id`, as `actor`: the key is returned once, its digest recorded.
    pub async fn issue_key(
        &self,
        actor: Uuid,
        principal_id: Uuid,
        key_id: Uuid,
        input: KeyInput,
        now: DateTime<Utc>,
        context: &CommandContext,
    ) -> Result<IssuedKey, CommandError> {
        let (principal, _) = self.load(principal_id).await?;
        if principal.disabled {
            return Err(CommandError::PrincipalDisabled);
        }
        self.check_acting_on_keys(actor, &principal, true).await?;
        self.append_key(principal_id, key_id, input, now, context).await
    }

    /// A new API key for an owner, issued by the operator through local access to the store (the owner
    /// of an embedded installation who lost the key printed at the first start): `principal`, or the
    /// first owner when `None`. The key is returned once; the trail records it as the local operator's.
    pub async fn local_owner_key(
        &self,
        principal: Option<Uuid>,
        now: DateTime<Utc>,
        context: &CommandContext,
    ) -> Result<(Uuid, IssuedKey), CommandError> {
        let (owners, _) = self.owners().await?;
        let owner = match principal {
            Some(p) if owners.contains(&p) => p,
            Some(_) => return Err(CommandError::NotYours("the principal is not an enabled owner")),
            None => owners.iter().next().copied().ok_or(CommandError::PrincipalNotFound)?,
        };
        let input = KeyInput { name: Some("issued by the local operator".into()), ..KeyInput::default() };
        let issued = self.append_key(owner, Uuid::now_v7(), input, now, context).await?;
        Ok((owner, issued))
    }

    async fn append_key(
        &self,
        principal_id: Uuid,
        key_id: Uuid,
        input: KeyInput,
        now: DateTime<Utc>,
        context: &CommandContext,
    ) -> Result<IssuedKey, CommandError> {
        if input.expires_at.is_some_and(|at| at <= now) {
            return Err(invalid("expires_at", "must be in the future"));
        }
        let name = text::optional_line(input.name.as_deref(), MAX_NAME_CHARS).map_err(|e| invalid("name", e))?;
        let (key, sha256) = new_api_key();
        let prefix: String = key.expose().chars().take(API_KEY_PREFIX.len() + 6).collect();
        let mut scopes: Vec<String> = input.scopes.iter().map(|s| s.as_str().to_owned()).collect();
        scopes.sort();
        scopes.dedup();
        let issued = IdentityEvent::ApiKeyIssued(ApiKeyIssued {
            key_id,
            principal_id,
            prefix: prefix.clone(),
            sha256,
            name,
            expires_at: input.expires_at,
            scopes,
        });
        self.store
            .append(
                &stream(API_KEY_CATEGORY, key_id)?,
                ExpectedRevision::NoStream,
                vec![self.data(context, 0, &issued)?],
            )
            .await
            .map_err(|e| if e.is_conflict() { CommandError::PrincipalExists } else { e.into() })?;
        Ok(IssuedKey { key_id, key, prefix, expires_at: input.expires_at })
    }

    /// Revokes key `key_id` of `principal_id`, as `actor`. `None` when it already was revoked.
    pub async fn revoke_key(
        &self,
        actor: Uuid,
        principal_id: Uuid,
        key_id: Uuid,
        reason: &str,
        context: &CommandContext,
    ) -> Result<Option<AppendResult>, CommandError> {
        let key_stream = stream(API_KEY_CATEGORY, key_id)?;
        let (events, revision) = self.identity_events(&key_stream).await?;
        let owner = events.iter().find_map(|e| match e {
            IdentityEvent::ApiKeyIssued(k) => Some(k.principal_id),
            _ => None,
        });
        let (Some(revision), Some(owner)) = (revision, owner) else { return Err(CommandError::KeyNotFound) };
        if owner != principal_id {
            return Err(CommandError::KeyNotFound);
        }
        let (principal, _) = self.load(principal_id).await?;
        self.check_acting_on_keys(actor, &principal, false).await?;
        if events.iter().any(|e| matches!(e, IdentityEvent::ApiKeyRevoked(_))) {
            return Ok(None);
        }
        let reason = text::reason(reason).map_err(|e| invalid("reason", e))?;
        let revoked = IdentityEvent::ApiKeyRevoked(ApiKeyRevoked { key_id, principal_id, reason });
        let result = self
            .store
            .append(&key_stream, ExpectedRevision::Exact(revision), vec![self.data(context, 0, &revoked)?])
            .await;
        match result {
            Ok(result) => Ok(Some(result)),
            // Revoked concurrently: the key is revoked either way.
            Err(e) if e.is_conflict() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    fn totp(secret: Vec<u8>, account: &str) -> Result<totp_rs::Totp, CommandError> {
        totp_rs::Builder::new()
            .with_secret(totp_rs::Secret::from(secret))
            .with_step_duration(TOTP_STEP_SECONDS)
            .with_skew(1)
            .with_issuer(Some("MCP Registry Gateway"))
            .with_account_name(account)
            .build()
            .map_err(|e| invalid("totp", e))
    }

    fn totp_context(principal_id: Uuid) -> String {
        format!("principal:{principal_id}:totp")
    }

    /// Enrols a new TOTP secret for `by.principal`. A first one needs [`PrincipalState::may_enrol_first_factor`]
    /// (an MFA login of this session, or an approval); replacing one needs a current `code` from it: a
    /// stolen API key must not be able to put the second factor in its own hands.
    pub async fn enroll_totp(
        &self,
        by: Credential,
        code: Option<&str>,
        now: DateTime<Utc>,
        context: &CommandContext,
    ) -> Result<TotpEnrolment, CommandError> {
        use rand::Rng;
        let principal_id = by.principal;
        for _ in 0..ATTEMPTS {
            let (principal, revision) = self.load(principal_id).await?;
            if principal.kind == PrincipalKind::Service {
                return Err(CommandError::EnrolmentRefused(
                    "service principals do not step up by TOTP: their keys are their only factor",
                ));
            }
            if principal.totp.is_some() {
                let code = code.ok_or(CommandError::TotpCodeRequired)?;
                match self.check_code(&principal, revision, by.credential, code, now, context).await {
                    Ok(_) => {}
                    Err(CommandError::Store(e)) if e.is_conflict() => continue,
                    Err(e) => return Err(e),
                }
            } else if !principal.may_enrol_first_factor(now, by.credential) {
                return Err(CommandError::EnrolmentRefused(
                    "a first second factor needs a login whose identity provider reported MFA, or an owner's approval",
                ));
            }
            let mut secret = vec![0u8; 20];
            rand::rng().fill_bytes(&mut secret);
            let totp = Self::totp(secret.clone(), &principal.display_name.replace(':', " "))?;
            let base32 = Secret::new(totp_rs::Secret::from(secret).to_base32());
            let uri = Secret::new(totp.to_url().map_err(|e| invalid("totp", e))?);
            let sealed = self.keyring.seal(&base32, &Self::totp_context(principal_id))?;
            let enrolled = IdentityEvent::TotpEnrolled(TotpEnrolled { principal_id, secret: sealed });
            match self.append_principal_event(context, principal_id, revision, &enrolled, None).await {
                Ok(_) => return Ok(TotpEnrolment { secret_base32: base32, otpauth_uri: uri }),
                Err(CommandError::Store(e)) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            }
        }
        Err(CommandError::Contended)
    }

    /// Lets person `target` enrol a first TOTP secret without an MFA login, as `actor`: an owner (not
    /// the person) whose credential proved a second factor in the last minutes (an approval leads to a
    /// factor that passes every step-up, so it is a step-up itself), or `None` for the operator acting by
    /// local access to the store. Good for a day.
    pub async fn approve_enrolment(
        &self,
        actor: Option<Credential>,
        target: Uuid,
        now: DateTime<Utc>,
        context: &CommandContext,
    ) -> Result<AppendResult, CommandError> {
        use domain::identity::TotpEnrolmentApproved;
        for _ in 0..ATTEMPTS {
            let approved_by = match actor {
                Some(actor) => {
                    let actor_state = self.enabled_actor(actor.principal).await?;
                    if actor.principal == target {
                        return Err(CommandError::NotYours("nobody approves their own second factor"));
                    }
                    if !actor_state.roles.contains(&Role::Owner) {
                        return Err(CommandError::NotYours("only owners approve a second factor"));
                    }
                    if !actor_state.mfa_fresh(now, actor.credential) {
                        return Err(CommandError::RoleChange(domain::identity::RoleChangeRefused::MfaRequired(
                            "an approval of a second factor",
                        )));
                    }
                    actor.principal.to_string()
                }
                None => "local-operator".to_owned(),
            };
            let (target_state, revision) = self.load(target).await?;
            if target_state.kind == PrincipalKind::Service {
                return Err(CommandError::EnrolmentRefused(
                    "service principals do not step up by TOTP: their keys are their only factor",
                ));
            }
            let approved = IdentityEvent::TotpEnrolmentApproved(TotpEnrolmentApproved {
                principal_id: target,
                approved_by,
                expires_at: Some(now + domain::identity::ENROLMENT_APPROVAL_LIFETIME),
            });
            match self.append_principal_event(context, target, revision, &approved, None).await {
                Err(CommandError::Store(e)) if e.is_conflict() => continue,
                done => return done,
            }
        }
        Err(CommandError::Contended)
    }

    /// The TOTP step `code` proves for `principal` at `now`, newer than the last one accepted. A wrong
    /// code is recorded (`TotpRejected`) and refused; past [`domain::identity::MAX_CODE_FAILURES`] in the
    /// window nothing is checked. The count lives in the log, so every instance and a restarted one
    /// share it. The rejection is recorded at `revision`, the revision the count was read at, as the
    /// caller records a success: of guesses sent at once, one outcome lands per revision and the others
    /// conflict, reload and are counted against the new total (a conflict: the caller tries again).
    async fn check_code(
        &self,
        principal: &PrincipalState,
        revision: u64,
        credential: Uuid,
        code: &str,
        now: DateTime<Utc>,
        context: &CommandContext,
    ) -> Result<u64, CommandError> {
        use domain::identity::TotpRejected;
        if principal.code_attempts_exhausted(now) {
            return Err(CommandError::TooManyAttempts);
        }
        let sealed = principal.totp.as_ref().ok_or(CommandError::TotpNotEnrolled)?;
        let base32 = self.keyring.open(sealed, &Self::totp_context(principal.id))?;
        let secret = totp_rs::Secret::try_from_base32(base32.expose()).map_err(|e| invalid("totp", e))?;
        let totp = Self::totp(secret.as_bytes().to_vec(), "principal")?;
        let seconds = u64::try_from(now.timestamp()).unwrap_or(0);
        let last = principal.mfa.map(|(_, step, _)| step);
        if let Some(step) = totp.check(code.trim(), seconds).filter(|step| last.is_none_or(|last| *step > last)) {
            return Ok(step);
        }
        let rejected = IdentityEvent::TotpRejected(TotpRejected { principal_id: principal.id, at: now, credential });
        self.append_principal_event(context, principal.id, revision, &rejected, None).await?;
        Err(CommandError::TotpRejected)
    }

    /// Checks a TOTP `code` of `by.principal` at `now`; records the step-up, for `by.credential` alone,
    /// when it is right and newer than the last accepted one (a code is good once).
    pub async fn verify_totp(
        &self,
        by: Credential,
        code: &str,
        now: DateTime<Utc>,
        context: &CommandContext,
    ) -> Result<AppendResult, CommandError> {
        let principal_id = by.principal;
        for _ in 0..ATTEMPTS {
            let (principal, revision) = self.load(principal_id).await?;
            let step = match self.check_code(&principal, revision, by.credential, code, now, context).await {
                Ok(step) => step,
                Err(CommandError::Store(e)) if e.is_conflict() => continue,
                Err(e) => return Err(e),
            };
            let verified = IdentityEvent::TotpVerified(TotpVerified {
                principal_id,
                at: now,
                step,
                credential: Some(by.credential),
            });
            match self.append_principal_event(context, principal_id, revision, &verified, None).await {
                // Another event landed first: look again (the same code is refused once its step is in).
                Err(CommandError::Store(e)) if e.is_conflict() => continue,
                done => return done,
            }
        }
        Err(CommandError::Contended)
    }
}

/// A successful login through an identity provider, as the callback verified it.
#[derive(Debug, Clone)]
pub struct ExternalLogin {
    /// The configured IdP's name.
    pub idp: String,
    /// Its issuer.
    pub issuer: String,
    /// The immutable subject (Entra: `tid` and `oid`).
    pub subject: String,
    /// A name to show.
    pub display_name: String,
    /// The email the IdP reported (never used to match).
    pub email: Option<String>,
    /// `amr` of the ID token.
    pub amr: Vec<String>,
    /// The roles the IdP's claims map to.
    pub roles: BTreeSet<Role>,
    /// Whether the claims were complete (no groups overage): only then are IdP roles taken away.
    pub claims_complete: bool,
    /// The browser's user agent.
    pub user_agent: Option<String>,
    /// Its address.
    pub ip: Option<String>,
    /// Its device cookie.
    pub device_id: Uuid,
}

/// A session just started: the cookie secret is returned once.
#[derive(Debug)]
pub struct StartedSession {
    /// The person.
    pub principal_id: Uuid,
    /// The session.
    pub session_id: Uuid,
    /// The cookie's secret; stored only as its SHA-256.
    pub secret: Secret,
    /// When it ends.
    pub expires_at: DateTime<Utc>,
    /// The person's roles after the login.
    pub roles: BTreeSet<Role>,
    /// Where the session's start sits in `$all` (to wait for a read model).
    pub position: eventstore::Position,
}

/// The principal of `subject` at `issuer`: the same for every login, never derived from an email.
pub fn principal_for(issuer: &str, subject: &str) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_URL, format!("oidc\n{issuer}\n{subject}").as_bytes())
}

impl PrincipalCommands {
    /// Provisions the person at their first login, brings their IdP-granted roles in line with the
    /// claims, records the login and starts a session of `lifetime`, in one transaction.
    pub async fn login(
        &self,
        login: ExternalLogin,
        lifetime: chrono::Duration,
        now: DateTime<Utc>,
        context: &CommandContext,
    ) -> Result<StartedSession, CommandError> {
        use domain::identity::{SESSION_CATEGORY, SessionStarted, UserLoggedIn, UserProvisioned};
        let principal_id = principal_for(&login.issuer, &login.subject);
        if login.subject.chars().any(text::is_forbidden) {
            return Err(invalid("sub", "the identity provider sent a subject with control characters"));
        }
        // What the IdP says of the person is shown and stored, so it is cleaned, not trusted.
        let display_name = text::clean_line(&login.display_name, MAX_NAME_CHARS)
            .or_else(|| login.email.as_deref().and_then(|e| text::clean_line(e, MAX_NAME_CHARS)))
            .unwrap_or_else(|| "unnamed".to_owned());
        let email = login.email.as_deref().and_then(|e| text::clean_line(e, MAX_EMAIL_CHARS));
        let amr: Vec<String> = login.amr.iter().filter_map(|m| text::clean_line(m, 32)).collect();
        for _ in 0..ATTEMPTS {
            let (events, revision) = self.identity_events(&stream(PRINCIPAL_CATEGORY, principal_id)?).await?;
            let mut new_events = Vec::new();
            if events.is_empty() {
                new_events.push(IdentityEvent::PrincipalCreated(PrincipalCreated {
                    principal_id,
                    kind: PrincipalKind::User,
                    display_name: display_name.clone(),
                    roles: vec![],
                }));
                new_events.push(IdentityEvent::UserProvisioned(UserProvisioned {
                    principal_id,
                    idp: login.idp.clone(),
                    issuer: login.issuer.clone(),
                    subject: login.subject.clone(),
                    email: email.clone(),
                }));
            }
            let state = events.iter().chain(new_events.iter()).fold(None, PrincipalState::evolve);
            let state = state.ok_or(CommandError::PrincipalNotFound)?;
            if state.disabled {
                return Err(CommandError::PrincipalDisabled);
            }
            new_events.extend(state.profile_update(&display_name, email.as_deref()));
            new_events.extend(state.sync_idp_roles(&login.roles, &login.idp, login.claims_complete));
            let session_id = Uuid::now_v7();
            new_events.push(IdentityEvent::UserLoggedIn(UserLoggedIn {
                principal_id,
                idp: login.idp.clone(),
                amr: amr.clone(),
                at: now,
                session_id: Some(session_id),
            }));
            let roles =
                new_events.iter().fold(Some(state), PrincipalState::evolve).map(|s| s.roles).unwrap_or_default();

            let secret = session_secret(session_id);
            let expires_at = now + lifetime;
            let started = IdentityEvent::SessionStarted(SessionStarted {
                session_id,
                principal_id,
                method: format!("oidc:{}", login.idp),
                secret_sha256: secret_digest(secret.expose()),
                device_id: login.device_id,
                user_agent: login.user_agent.as_deref().and_then(|u| text::clean_line(u, 512)),
                ip: login.ip.clone(),
                expires_at,
            });
            let data = |offset: usize, events: &[IdentityEvent]| {
                events
                    .iter()
                    .enumerate()
                    .map(|(i, e)| self.data(context, (offset + i) as u32, e))
                    .collect::<Result<Vec<_>, _>>()
            };
            // A login that changes nothing about the person (no provisioning, profile or role change)
            // decides nothing on the stream's state, so it needs no revision: concurrent sign-ins of one
            // person (several MCP clients authorizing at once) must not fail one another. A person
            // disabled meanwhile is refused by the authorization model whatever this login recorded.
            let only_the_login = new_events.len() == 1;
            let appends = vec![
                StreamAppend {
                    stream: stream(PRINCIPAL_CATEGORY, principal_id)?,
                    expected: if only_the_login { ExpectedRevision::Any } else { expected(revision) },
                    events: data(0, &new_events)?,
                },
                StreamAppend {
                    stream: stream(SESSION_CATEGORY, session_id)?,
                    expected: ExpectedRevision::NoStream,
                    events: data(new_events.len(), std::slice::from_ref(&started))?,
                },
            ];
            match self.store.append_multi(appends).await {
                Ok(results) => {
                    let position = results.iter().map(|r| r.position).max().ok_or(CommandError::Contended)?;
                    return Ok(StartedSession { principal_id, session_id, secret, expires_at, roles, position });
                }
                Err(e) if e.is_conflict() => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(CommandError::Contended)
    }

    /// Records that session `session_id` of `principal_id` is in use (an MCP client refreshed the grant
    /// it lives in), so that its idle clock starts again. A session started for an authorization has no
    /// cookie: the secret it records is one nobody holds. `false` when the session has ended.
    pub async fn mark_session_active(
        &self,
        principal_id: Uuid,
        session_id: Uuid,
        now: DateTime<Utc>,
        context: &CommandContext,
    ) -> Result<bool, CommandError> {
        use domain::identity::{SESSION_CATEGORY, SessionRefreshed};
        use rand::Rng;
        use sha2::Digest;
        let session_stream = stream(SESSION_CATEGORY, session_id)?;
        let (events, revision) = self.identity_events(&session_stream).await?;
        let owner = events.iter().find_map(|e| match e {
            IdentityEvent::SessionStarted(s) => Some(s.principal_id),
            _ => None,
        });
        let ended =
            events.iter().any(|e| matches!(e, IdentityEvent::SessionRevoked(_) | IdentityEvent::SessionExpired(_)));
        let Some(revision) = revision.filter(|_| owner == Some(principal_id) && !ended) else { return Ok(false) };
        let mut unheld = [0u8; 32];
        rand::rng().fill_bytes(&mut unheld);
        let refreshed = IdentityEvent::SessionRefreshed(SessionRefreshed {
            session_id,
            principal_id,
            secret_sha256: hex::encode(sha2::Sha256::digest(unheld)),
            at: now,
        });
        let data = vec![self.data(context, 0, &refreshed)?];
        match self.store.append(&session_stream, ExpectedRevision::Exact(revision), data).await {
            Ok(_) => Ok(true),
            // Refreshed or ended meanwhile: active either way, or ended and refused next time.
            Err(e) if e.is_conflict() => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// Ends session `session_id` of `principal_id`, as `actor` (the holder, or somebody whose rank
    /// reaches the holder's). `None` when it had ended already.
    pub async fn revoke_session(
        &self,
        actor: Uuid,
        principal_id: Uuid,
        session_id: Uuid,
        reason: &str,
        context: &CommandContext,
    ) -> Result<Option<AppendResult>, CommandError> {
        use domain::identity::{SESSION_CATEGORY, SessionRevoked};
        let session_stream = stream(SESSION_CATEGORY, session_id)?;
        let (events, revision) = self.identity_events(&session_stream).await?;
        let owner = events.iter().find_map(|e| match e {
            IdentityEvent::SessionStarted(s) => Some(s.principal_id),
            _ => None,
        });
        let (Some(revision), Some(owner)) = (revision, owner) else { return Err(CommandError::KeyNotFound) };
        if owner != principal_id {
            return Err(CommandError::KeyNotFound);
        }
        if events.iter().any(|e| matches!(e, IdentityEvent::SessionRevoked(_))) {
            return Ok(None);
        }
        let (principal, _) = self.load(principal_id).await?;
        self.check_acting_on_keys(actor, &principal, false).await?;
        let reason = text::optional_line(Some(reason), text::MAX_REASON_CHARS)
            .map_err(|e| invalid("reason", e))?
            .unwrap_or_else(|| "ended".to_owned());
        let revoked = IdentityEvent::SessionRevoked(SessionRevoked { session_id, principal_id, by: actor, reason });
        match self
            .store
            .append(&session_stream, ExpectedRevision::Exact(revision), vec![self.data(context, 0, &revoked)?])
            .await
        {
            Ok(result) => Ok(Some(result)),
            Err(e) if e.is_conflict() => Ok(None),
            Err(e) => Err(e.into()),
        }
    }
}

/// A new cookie secret of `session_id`: `<session id>.<256 random bits>`. The id lets a refresh find the
/// session's history (and so tell a rotated-out secret, presented again, from a stranger's).
fn session_secret(session_id: Uuid) -> Secret {
    use rand::Rng;
    let mut random = [0u8; 32];
    rand::rng().fill_bytes(&mut random);
    Secret::new(format!(
        "{session_id}.{}",
        base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, random)
    ))
}

fn secret_digest(secret: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(secret.as_bytes()))
}

/// How long the secret a refresh replaced is answered "retry with the new cookie" rather than treated as
/// stolen (two tabs refreshing at once, an answer lost on the way).
const ROTATION_GRACE: chrono::Duration = chrono::Duration::seconds(30);

/// A refreshed session: its new secret, shown once.
#[derive(Debug)]
pub struct RefreshedSession {
    /// The session.
    pub session_id: Uuid,
    /// The new cookie secret.
    pub secret: Secret,
    /// Where the refresh sits in `$all`.
    pub position: eventstore::Position,
}

impl PrincipalCommands {
    /// Refreshes the session whose cookie is `presented`, from device `device_id`: rotates its secret.
    /// A secret already rotated out (a copy a thief kept), or another device, revokes the session and
    /// records why; an idle or expired session records its expiry.
    pub async fn refresh_session(
        &self,
        presented: &str,
        device_id: Option<Uuid>,
        ip: Option<String>,
        now: DateTime<Utc>,
        context: &CommandContext,
    ) -> Result<RefreshedSession, CommandError> {
        use domain::identity::{
            SESSION_CATEGORY, SessionExpired, SessionRefreshed, SessionRevoked, SuspiciousSessionActivity,
        };
        let session_id =
            presented.split_once('.').and_then(|(id, _)| Uuid::parse_str(id).ok()).ok_or(CommandError::SessionEnded)?;
        let session_stream = stream(SESSION_CATEGORY, session_id)?;
        let started_at = self.read_all_of(&session_stream).await?.first().map(|e| e.metadata.occurred_at);
        let (events, revision) = self.identity_events(&session_stream).await?;
        let (Some(IdentityEvent::SessionStarted(started)), Some(started_at)) = (events.first().cloned(), started_at)
        else {
            return Err(CommandError::SessionEnded);
        };
        let revision = revision.ok_or(CommandError::SessionEnded)?;
        let (mut current, mut previous, mut last_active, mut ended) =
            (started.secret_sha256.clone(), Vec::new(), None::<DateTime<Utc>>, false);
        for event in &events[1..] {
            match event {
                IdentityEvent::SessionRefreshed(r) => {
                    previous.push(std::mem::replace(&mut current, r.secret_sha256.clone()));
                    last_active = Some(r.at);
                }
                IdentityEvent::SessionRevoked(_) | IdentityEvent::SessionExpired(_) => ended = true,
                _ => {}
            }
        }
        if ended {
            return Err(CommandError::SessionEnded);
        }
        let principal_id = started.principal_id;
        let digest = secret_digest(presented);
        let session_stream = &session_stream;
        let append = |events: Vec<IdentityEvent>| async move {
            let data = events
                .iter()
                .enumerate()
                .map(|(i, e)| self.data(context, i as u32, e))
                .collect::<Result<Vec<_>, _>>()?;
            match self.store.append(session_stream, ExpectedRevision::Exact(revision), data).await {
                Ok(result) => Ok(Some(result)),
                // Another request ended or refreshed it first: this one is stale either way.
                Err(e) if e.is_conflict() => Ok(None),
                Err(e) => Err(CommandError::from(e)),
            }
        };
        // A revocation must land whatever else happens to the session meanwhile (a thief refreshing in a
        // loop must not make it lose every race): on a conflict, append again after the new last event.
        // Its event ids are the command's, so a revocation that did land is not written twice.
        let revoke = |events: Vec<IdentityEvent>| async move {
            let data = events
                .iter()
                .enumerate()
                .map(|(i, e)| self.data(context, i as u32, e))
                .collect::<Result<Vec<_>, _>>()?;
            let mut expected = ExpectedRevision::Exact(revision);
            for _ in 0..ATTEMPTS {
                match self.store.append(session_stream, expected, data.clone()).await {
                    Ok(_) => return Ok(()),
                    Err(eventstore::Error::WrongExpectedRevision { actual: Some(actual), .. }) => {
                        expected = ExpectedRevision::Exact(actual)
                    }
                    Err(e) => return Err(CommandError::from(e)),
                }
            }
            Err(CommandError::Contended)
        };
        let suspicious = |kind: &str| {
            vec![
                IdentityEvent::SuspiciousSessionActivity(SuspiciousSessionActivity {
                    session_id,
                    principal_id,
                    kind: kind.to_owned(),
                    ip: ip.clone(),
                }),
                IdentityEvent::SessionRevoked(SessionRevoked {
                    session_id,
                    principal_id,
                    by: principal_id,
                    reason: format!("suspicious: {kind}"),
                }),
            ]
        };
        // The secret this browser held until a moment ago (another tab, a lost answer): not a theft; the
        // browser is told to retry with the cookie it has now.
        let just_rotated = last_active.is_some_and(|at| now - at < ROTATION_GRACE);
        if previous.last() == Some(&digest) && just_rotated && device_id == Some(started.device_id) {
            return Err(CommandError::SessionRotated);
        }
        if previous.contains(&digest) {
            revoke(suspicious("secret_reuse")).await?;
            return Err(CommandError::SessionSuspicious);
        }
        if digest != current {
            return Err(CommandError::SessionEnded);
        }
        if device_id != Some(started.device_id) {
            revoke(suspicious("device_mismatch")).await?;
            return Err(CommandError::SessionSuspicious);
        }
        // A disabled person's session ends here rather than waiting to come back to life.
        let (principal, _) = self.load(principal_id).await?;
        if principal.disabled {
            let ended = IdentityEvent::SessionRevoked(SessionRevoked {
                session_id,
                principal_id,
                by: principal_id,
                reason: "the principal is disabled".into(),
            });
            revoke(vec![ended]).await?;
            return Err(CommandError::SessionEnded);
        }
        // The session's own start is its first activity.
        let active_since = last_active.unwrap_or(started_at);
        let expired = if now >= started.expires_at {
            Some("absolute")
        } else if now - active_since >= domain::identity::SESSION_IDLE {
            Some("idle")
        } else {
            None
        };
        if let Some(reason) = expired {
            let event =
                IdentityEvent::SessionExpired(SessionExpired { session_id, principal_id, reason: reason.to_owned() });
            append(vec![event]).await?;
            return Err(CommandError::SessionEnded);
        }
        let secret = session_secret(session_id);
        let refreshed = IdentityEvent::SessionRefreshed(SessionRefreshed {
            session_id,
            principal_id,
            secret_sha256: secret_digest(secret.expose()),
            at: now,
        });
        match append(vec![refreshed]).await? {
            Some(result) => Ok(RefreshedSession { session_id, secret, position: result.position }),
            // Another refresh of this session won the race: the browser retries with its new cookie.
            None => Err(CommandError::SessionRotated),
        }
    }
}
