//! The `authz` in-memory read model: who holds which API key and which roles. Every request's
//! authentication and authorization reads it; the identity step adds sessions, revocations and server
//! policies.

use std::collections::HashMap;

use domain::Role;
use domain::identity::{API_KEY_CATEGORY, IdentityEvent, PRINCIPAL_CATEGORY};
use eventstore::RecordedEvent;
use uuid::Uuid;

use crate::{EventFilter, MemoryProjection, ProjectionError};

/// An authenticated principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Id.
    pub id: Uuid,
    /// Display name at the time.
    pub display_name: String,
    /// Roles.
    pub roles: Vec<Role>,
    /// The API key it presented.
    pub key_id: Uuid,
}

#[derive(Debug, Clone)]
struct PrincipalEntry {
    display_name: String,
    roles: Vec<Role>,
}

/// The model.
pub struct Authz {
    filter: EventFilter,
    principals: HashMap<Uuid, PrincipalEntry>,
    keys: HashMap<String, (Uuid, Uuid)>,
}

impl Default for Authz {
    fn default() -> Self {
        Self {
            filter: EventFilter::new([PRINCIPAL_CATEGORY, API_KEY_CATEGORY], IdentityEvent::TYPES),
            principals: HashMap::new(),
            keys: HashMap::new(),
        }
    }
}

impl Authz {
    /// The principal holding the API key whose SHA-256 (hex) is `digest`.
    pub fn by_api_key_digest(&self, digest: &str) -> Option<Principal> {
        let (key_id, principal_id) = self.keys.get(digest)?;
        let principal = self.principals.get(principal_id)?;
        Some(Principal {
            id: *principal_id,
            display_name: principal.display_name.clone(),
            roles: principal.roles.clone(),
            key_id: *key_id,
        })
    }

    /// Number of principals.
    pub fn principal_count(&self) -> usize {
        self.principals.len()
    }
}

impl MemoryProjection for Authz {
    fn name(&self) -> &str {
        "authz"
    }

    fn filter(&self) -> &EventFilter {
        &self.filter
    }

    fn apply(&mut self, recorded: &RecordedEvent) -> Result<(), ProjectionError> {
        let fail =
            |reason: String| ProjectionError::Apply { projection: "authz".into(), position: recorded.position, reason };
        let event = IdentityEvent::from_json(&recorded.event_type, &recorded.data)
            .ok_or_else(|| fail(format!("unknown type {}", recorded.event_type)))?
            .map_err(|e| fail(e.to_string()))?;
        match event {
            IdentityEvent::PrincipalCreated(created) => {
                let entry = PrincipalEntry { display_name: created.display_name, roles: created.roles };
                self.principals.insert(created.principal_id, entry);
            }
            IdentityEvent::ApiKeyIssued(issued) => {
                self.keys.insert(issued.sha256, (issued.key_id, issued.principal_id));
            }
        }
        Ok(())
    }
}
