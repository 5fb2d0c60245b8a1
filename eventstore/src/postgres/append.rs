//! One append to one stream: validation, parameters, the `es.append` call and its errors.

use std::collections::HashSet;

use serde_json::value::RawValue;
use sqlx::PgConnection;
use sqlx::postgres::PgDatabaseError;
use uuid::Uuid;

use crate::content_hash::content_hash;
use crate::error::from_sqlx;
use crate::{AppendResult, Error, EventData, ExpectedRevision, Position, StreamAppend, StreamName};

/// Longest event type name accepted.
const MAX_EVENT_TYPE_BYTES: usize = 128;

/// An append checked and turned into the columns of `es.append`.
pub(crate) struct PreparedAppend {
    pub(crate) stream: StreamName,
    pub(crate) expected: ExpectedRevision,
    ids: Vec<Uuid>,
    types: Vec<String>,
    versions: Vec<i16>,
    data: Vec<String>,
    metadata: Vec<String>,
    correlation: Vec<Uuid>,
    causation: Vec<Option<Uuid>>,
    content: Vec<Vec<u8>>,
}

impl PreparedAppend {
    /// Validates `events` and computes their content digests.
    pub(crate) fn new(
        stream: &StreamName,
        expected: ExpectedRevision,
        events: &[EventData],
        max_event_bytes: usize,
    ) -> Result<Self, Error> {
        if events.is_empty() {
            return Err(Error::EmptyAppend);
        }
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
            prepared.content.push(content.to_vec());
        }
        Ok(prepared)
    }
}

/// Why an append did not happen, before it is turned into an [`Error`].
#[derive(Debug)]
pub(crate) enum AppendFailure {
    /// An identical append committed between our duplicate check and our insert: run it again and
    /// it will take the idempotent path.
    Raced,
    /// Anything else.
    Failed(Error),
}

impl AppendFailure {
    pub(crate) fn into_error(self, prepared: &PreparedAppend) -> Error {
        match self {
            Self::Raced => Error::DuplicateEventId { stream: prepared.stream.clone() },
            Self::Failed(e) => e,
        }
    }

    pub(crate) fn into_error_multi(self, appends: &[StreamAppend]) -> Error {
        match self {
            Self::Raced => match appends.first() {
                Some(first) => Error::DuplicateEventId { stream: first.stream.clone() },
                None => Error::EmptyAppend,
            },
            Self::Failed(e) => e,
        }
    }
}

impl From<Error> for AppendFailure {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}

type Row = (i64, i64, i64, i64, i64, bool);

/// Calls `es.append` on `conn` (a pooled connection in autocommit, or the caller's transaction).
pub(crate) async fn append_prepared(
    conn: &mut PgConnection,
    p: &PreparedAppend,
) -> Result<AppendResult, AppendFailure> {
    let row: Result<Row, sqlx::Error> =
        sqlx::query_as("SELECT * FROM es.append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)")
            .bind(p.stream.as_str())
            .bind(p.expected.as_wire())
            .bind(&p.ids)
            .bind(&p.types)
            .bind(&p.versions)
            .bind(&p.data)
            .bind(&p.metadata)
            .bind(&p.correlation)
            .bind(&p.causation)
            .bind(&p.content)
            .fetch_one(&mut *conn)
            .await;
    match row {
        Ok((first_revision, last_revision, tx, first_position, last_position, idempotent)) => Ok(AppendResult {
            first_revision: first_revision as u64,
            last_revision: last_revision as u64,
            first_position: Position { transaction_id: tx as u64, global_position: first_position as u64 },
            position: Position { transaction_id: tx as u64, global_position: last_position as u64 },
            idempotent,
        }),
        Err(e) => Err(classify(e, p)),
    }
}

/// Maps the codes raised by `es.append` and the constraints of `es.events` to typed errors.
fn classify(err: sqlx::Error, p: &PreparedAppend) -> AppendFailure {
    let Some(db) = err.as_database_error() else {
        return AppendFailure::Failed(from_sqlx(err));
    };
    let stream = p.stream.clone();
    match db.code().as_deref() {
        Some("ES409") => {
            let actual = db
                .try_downcast_ref::<PgDatabaseError>()
                .and_then(|pg| pg.detail())
                .and_then(|detail| detail.parse::<u64>().ok());
            AppendFailure::Failed(Error::WrongExpectedRevision { stream, expected: p.expected, actual })
        }
        Some("ES422") => AppendFailure::Failed(Error::PartialDuplicate { stream }),
        Some("ES423") => AppendFailure::Failed(Error::DuplicateEventId { stream }),
        Some("23505") if db.constraint() == Some("events_event_id_key") => AppendFailure::Raced,
        _ => AppendFailure::Failed(from_sqlx(err)),
    }
}
