//! Identity commands of this step: bootstrapping the first owner and issuing API keys.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use domain::Role;
use domain::identity::{
    API_KEY_CATEGORY, API_KEY_PREFIX, ApiKeyIssued, IdentityEvent, OWNERS_STREAM, OwnersChanged, PRINCIPAL_CATEGORY,
    PrincipalCreated, PrincipalKind,
};
use eventstore::{EventData, EventStore, ExpectedRevision, StreamAppend, StreamName};
use rand::Rng;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::servers::CommandContext;
use crate::{CommandError, Secret};

/// The stream whose first event marks an installation as bootstrapped: a second bootstrap finds it.
pub(crate) const BOOTSTRAP_STREAM: &str = "system-bootstrap";

/// The result of a bootstrap: the owner and the key, shown once.
#[derive(Debug)]
pub struct Bootstrapped {
    /// The owner principal.
    pub principal_id: Uuid,
    /// The API key, in plaintext: print it once, it is stored nowhere.
    pub api_key: Secret,
}

/// A new API key and the digest to store.
pub fn new_api_key() -> (Secret, String) {
    let mut random = [0u8; 32];
    rand::rng().fill_bytes(&mut random);
    let key = format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(random));
    let digest = api_key_digest(&key);
    (Secret::new(key), digest)
}

/// SHA-256 of a presented key, hex: what the read model keys on.
pub fn api_key_digest(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// Creates the first owner with an API key. Refused once the installation is bootstrapped.
pub async fn bootstrap(
    store: &dyn EventStore,
    display_name: &str,
    context: &CommandContext,
) -> Result<Bootstrapped, CommandError> {
    let principal_id = Uuid::now_v7();
    let key_id = Uuid::now_v7();
    let (api_key, sha256) = new_api_key();
    let prefix: String = api_key.expose().chars().take(API_KEY_PREFIX.len() + 6).collect();
    let created = IdentityEvent::PrincipalCreated(PrincipalCreated {
        principal_id,
        kind: PrincipalKind::User,
        display_name: display_name.to_owned(),
        roles: vec![Role::Owner],
    });
    let issued = IdentityEvent::ApiKeyIssued(ApiKeyIssued {
        key_id,
        principal_id,
        prefix,
        sha256,
        name: None,
        expires_at: None,
        scopes: vec![],
    });
    let owners = IdentityEvent::OwnersChanged(OwnersChanged { owners: vec![principal_id] });
    // Whoever bootstraps has local access to the store: the first owner may enrol a second factor
    // without an MFA login (there may be no identity provider yet), within a day; later, the operator
    // approves again (`admin approve-mfa`).
    let approved = IdentityEvent::TotpEnrolmentApproved(domain::identity::TotpEnrolmentApproved {
        principal_id,
        approved_by: "local-operator".to_owned(),
        expires_at: Some(context.metadata.occurred_at + domain::identity::ENROLMENT_APPROVAL_LIFETIME),
    });
    let stream = |category: &str, id: &dyn std::fmt::Display| {
        StreamName::from_parts(category, id).map_err(|e| CommandError::Invalid { field: "id", message: e.to_string() })
    };
    let data = |index: u32, event: &IdentityEvent| -> Result<EventData, CommandError> {
        Ok(EventData {
            event_id: EventData::deterministic_id(context.command_id, index),
            event_type: event.event_type().to_owned(),
            schema_version: 1,
            data: event.to_json().map_err(|e| CommandError::Invalid { field: "event", message: e.to_string() })?,
            metadata: context.metadata.clone(),
        })
    };
    let marker = EventData {
        event_id: EventData::deterministic_id(context.command_id, 2),
        event_type: "GatewayBootstrapped".into(),
        schema_version: 1,
        data: serde_json::json!({ "principal_id": principal_id }).to_string(),
        metadata: context.metadata.clone(),
    };
    let appends = vec![
        StreamAppend {
            stream: StreamName::parse(BOOTSTRAP_STREAM)
                .map_err(|e| CommandError::Invalid { field: "id", message: e.to_string() })?,
            expected: ExpectedRevision::NoStream,
            events: vec![marker],
        },
        StreamAppend {
            stream: stream(PRINCIPAL_CATEGORY, &principal_id)?,
            expected: ExpectedRevision::NoStream,
            events: vec![data(0, &created)?, data(4, &approved)?],
        },
        StreamAppend {
            stream: stream(API_KEY_CATEGORY, &key_id)?,
            expected: ExpectedRevision::NoStream,
            events: vec![data(1, &issued)?],
        },
        StreamAppend {
            stream: StreamName::parse(OWNERS_STREAM)
                .map_err(|e| CommandError::Invalid { field: "id", message: e.to_string() })?,
            expected: ExpectedRevision::NoStream,
            events: vec![data(3, &owners)?],
        },
    ];
    match store.append_multi(appends).await {
        Ok(_) => Ok(Bootstrapped { principal_id, api_key }),
        Err(e) if e.is_conflict() => Err(CommandError::AlreadyBootstrapped),
        Err(e) => Err(e.into()),
    }
}
