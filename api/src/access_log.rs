//! Recording access decisions and audit-trail reads as events (stream `access-<principal>`), so that they
//! reach the audit trail like every change.

use domain::access::{ACCESS_CATEGORY, AccessEvent};
use eventstore::{EventData, ExpectedRevision, StreamName};
use uuid::Uuid;

use crate::auth::Caller;
use crate::state::AppState;

/// Appends `event` for `caller`. The stream is a log, not an aggregate: nothing is decided on it, so
/// appends do not compete on a revision.
pub async fn record(state: &AppState, caller: &Caller, event: AccessEvent) -> Result<(), eventstore::Error> {
    let id = Uuid::now_v7();
    let stream = StreamName::from_parts(ACCESS_CATEGORY, caller.0.id)
        .map_err(|_| eventstore::Error::InvalidEvent { event_id: id, reason: "invalid access stream" })?;
    let actor = caller.actor();
    let data = EventData {
        event_id: id,
        event_type: event.event_type().to_owned(),
        schema_version: 1,
        data: event
            .to_json()
            .map_err(|_| eventstore::Error::InvalidEvent { event_id: id, reason: "not serializable" })?,
        metadata: caller.1.metadata(actor, id),
    };
    state.store.append(&stream, ExpectedRevision::Any, vec![data]).await.map(drop)
}
