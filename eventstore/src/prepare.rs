//! An append checked before any backend sees it: event ids, types, versions, sizes and claims, with each
//! event's content digest computed (the hash chain links them in the backend, after the stream's head).

use std::collections::HashSet;

use serde_json::value::RawValue;
use uuid::Uuid;

use crate::content_hash::{Hash, content_hash};
use crate::{Claim, Claims, Error, EventData, ExpectedRevision, StreamName};

/// Longest event type name accepted.
const MAX_EVENT_TYPE_BYTES: usize = 128;

/// Longest claim scope accepted.
const MAX_CLAIM_SCOPE_BYTES: usize = 64;

/// Longest claimed value accepted.
const MAX_CLAIM_VALUE_BYTES: usize = 512;

/// An append checked and turned into the parameters of the append statements.
pub(crate) struct PreparedAppend {
    pub(crate) stream: StreamName,
    pub(crate) expected: ExpectedRevision,
    pub(crate) ids: Vec<Uuid>,
    pub(crate) types: Vec<String>,
    pub(crate) versions: Vec<i16>,
    pub(crate) data: Vec<String>,
    pub(crate) metadata: Vec<String>,
    pub(crate) correlation: Vec<Uuid>,
    pub(crate) causation: Vec<Option<Uuid>>,
    pub(crate) content: Vec<Hash>,
    /// Claims taken (sorted, so that concurrent appends lock them in one order) and released.
    pub(crate) claims: Claims,
}

impl PreparedAppend {
    /// Validates `events` and `claims` and computes the events' content digests.
    pub(crate) fn new(
        stream: &StreamName,
        expected: ExpectedRevision,
        events: &[EventData],
        claims: Claims,
        max_event_bytes: usize,
    ) -> Result<Self, Error> {
        if events.is_empty() {
            return Err(Error::EmptyAppend);
        }
        let claims = checked_claims(claims)?;
        let mut seen = HashSet::with_capacity(events.len());
        let mut prepared = Self {
            stream: stream.clone(),
            expected,
            ids: Vec::with_capacity(events.len()),
            types: Vec::with_capacity(events.len()),
            versions: Vec::with_capacity(events.len()),
            data: Vec::with_capacity(events.len()),
            metadata: Vec::with_capacity(events.len()),
            correlation: Vec::with_capacity(events.len()),
            causation: Vec::with_capacity(events.len()),
            content: Vec::with_capacity(events.len()),
            claims,
        };
        for event in events {
            let invalid = |reason| Error::InvalidEvent { event_id: event.event_id, reason };
            if !seen.insert(event.event_id) {
                return Err(Error::RepeatedEventId(event.event_id));
            }
            if event.event_type.is_empty()
                || event.event_type.len() > MAX_EVENT_TYPE_BYTES
                || !event.event_type.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
            {
                return Err(invalid("event type must be 1-128 ASCII letters, digits, `_`, `.` or `-`"));
            }
            let version = i16::try_from(event.schema_version)
                .ok()
                .filter(|v| *v >= 1)
                .ok_or_else(|| invalid("schema version must be between 1 and 32767"))?;
            if serde_json::from_str::<&RawValue>(&event.data).is_err() {
                return Err(invalid("data is not JSON"));
            }
            let metadata =
                serde_json::to_string(&event.metadata).map_err(|_| invalid("metadata cannot be serialized"))?;
            let size = event.data.len() + metadata.len();
            if size > max_event_bytes {
                return Err(Error::EventTooLarge { event_id: event.event_id, size, limit: max_event_bytes });
            }
            let content = content_hash(
                event.event_id,
                stream.as_str(),
                &event.event_type,
                event.schema_version,
                &event.data,
                &metadata,
            );
            prepared.ids.push(event.event_id);
            prepared.types.push(event.event_type.clone());
            prepared.versions.push(version);
            prepared.data.push(event.data.clone());
            prepared.metadata.push(metadata);
            prepared.correlation.push(event.metadata.correlation_id);
            prepared.causation.push(event.metadata.causation_id);
            prepared.content.push(content);
        }
        Ok(prepared)
    }

    /// The error for an append that kept losing races: a conflict, so the caller reloads and decides again.
    pub(crate) fn lost_race(&self) -> Error {
        Error::WrongExpectedRevision { stream: self.stream.clone(), expected: self.expected, actual: None }
    }
}

/// `claims` with the takes sorted and deduplicated, or why they are refused.
fn checked_claims(mut claims: Claims) -> Result<Claims, Error> {
    let malformed = |c: &Claim| {
        c.scope.is_empty()
            || c.scope.len() > MAX_CLAIM_SCOPE_BYTES
            || c.value.is_empty()
            || c.value.len() > MAX_CLAIM_VALUE_BYTES
    };
    if claims.take.iter().chain(&claims.release).any(malformed) {
        return Err(Error::InvalidClaim("scope must be 1-64 bytes and value 1-512 bytes"));
    }
    claims.take.sort();
    claims.take.dedup();
    if claims.release.iter().any(|c| claims.take.binary_search(c).is_ok()) {
        return Err(Error::InvalidClaim("an append cannot take and release the same claim"));
    }
    Ok(claims)
}
