//! Recording forwarded tool calls (`ToolCalled`, on the caller's `access-<principal>` stream) through a
//! batching appender: calls queue their records, and one task appends whatever has queued, across
//! streams, in one transaction (`append_multi`), then the next batch. Under load batches grow while the
//! previous one commits, so there is no added delay and one commit carries many calls. The queue is
//! bounded and a call reserves its place before it is forwarded: when no place is free the call is
//! refused (503) rather than run unrecorded, and a reserved place is always filled (the record of a call
//! whose client went away says so).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use domain::access::{ACCESS_CATEGORY, AccessEvent, CallOutcome, ToolCalled};
use eventstore::{EventData, EventStore, ExpectedRevision, Metadata, StreamAppend, StreamName};
use tokio::sync::mpsc;
use uuid::Uuid;

/// Records waiting to be appended, at most.
const QUEUE: usize = 8_192;
/// Records appended in one transaction, at most.
const BATCH: usize = 1_024;
/// The wait before trying a failed append again (the records stay queued meanwhile).
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// A record and the metadata of its event.
pub(crate) struct Record {
    event: ToolCalled,
    metadata: Metadata,
}

/// The appender's queue.
#[derive(Clone)]
pub(crate) struct CallRecorder {
    queue: mpsc::Sender<Record>,
    /// Places reserved whose records are not appended yet (calls running, records queued or being
    /// appended): what a stopping gateway waits for.
    unrecorded: Arc<AtomicUsize>,
}

impl CallRecorder {
    /// A recorder appending to `store`, and its task.
    pub(crate) fn start(store: Arc<dyn EventStore>) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, records) = mpsc::channel(QUEUE);
        let unrecorded = Arc::new(AtomicUsize::new(0));
        (Self { queue, unrecorded: unrecorded.clone() }, tokio::spawn(append_batches(store, records, unrecorded)))
    }

    /// Waits until every call that reserved a place has been appended, for at most `within`: true when
    /// nothing is left. A stopping gateway calls it once it no longer takes requests.
    pub(crate) async fn drain(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.unrecorded.load(Ordering::Acquire) > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// A place in the queue for the record of a call about to run; `None` when the queue is full.
    pub(crate) fn reserve(&self, call: ToolCalled, metadata: Metadata) -> Option<PendingCall> {
        let permit = self.queue.clone().try_reserve_owned().ok()?;
        self.unrecorded.fetch_add(1, Ordering::AcqRel);
        Some(PendingCall {
            permit: Some(permit),
            record: Some(Record { event: call, metadata }),
            started: Instant::now(),
        })
    }
}

/// A call running, whose record has its place in the queue. Finished, it queues its record with the
/// outcome; dropped unfinished (the client went away), it queues it as abandoned.
pub(crate) struct PendingCall {
    permit: Option<mpsc::OwnedPermit<Record>>,
    record: Option<Record>,
    started: Instant,
}

impl PendingCall {
    /// Queues the record: the call ended with `outcome`, the upstream having answered `status`.
    pub(crate) fn finish(mut self, outcome: CallOutcome, status: Option<u16>) {
        self.queue(outcome, status);
    }

    fn queue(&mut self, outcome: CallOutcome, status: Option<u16>) {
        let (Some(permit), Some(mut record)) = (self.permit.take(), self.record.take()) else { return };
        record.event.outcome = outcome;
        record.event.upstream_status = status.or(record.event.upstream_status);
        record.event.latency_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        permit.send(record);
    }

    /// Notes the upstream's status, for a record finished later.
    pub(crate) fn answered(&mut self, status: u16) {
        if let Some(record) = &mut self.record {
            record.event.upstream_status = Some(status);
        }
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        self.queue(CallOutcome::Abandoned, None);
    }
}

/// The appender: each batch is what has queued since the last, appended in one transaction; a failed
/// append is tried again (the queue fills meanwhile, and calls are refused once it is full).
async fn append_batches(store: Arc<dyn EventStore>, mut records: mpsc::Receiver<Record>, unrecorded: Arc<AtomicUsize>) {
    let mut batch = Vec::with_capacity(BATCH);
    while records.recv_many(&mut batch, BATCH).await > 0 {
        let appends = appends(&batch);
        loop {
            match store.append_multi(appends.clone()).await {
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, records = batch.len(), "could not record tool calls; trying again");
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
        }
        metrics::counter!("mgw_tool_calls_recorded_total").increment(batch.len() as u64);
        unrecorded.fetch_sub(batch.len(), Ordering::AcqRel);
        batch.clear();
    }
}

/// One append per caller's stream.
fn appends(batch: &[Record]) -> Vec<StreamAppend> {
    let mut streams: HashMap<Uuid, Vec<EventData>> = HashMap::new();
    for record in batch {
        let event = AccessEvent::ToolCalled(record.event.clone());
        let Ok(data) = event.to_json() else { continue };
        streams.entry(record.event.principal_id).or_default().push(EventData {
            // The call's id: an append tried again after an uncertain failure is not recorded twice.
            event_id: record.event.call_id,
            event_type: event.event_type().to_owned(),
            schema_version: 1,
            data,
            metadata: record.metadata.clone(),
        });
    }
    streams
        .into_iter()
        .filter_map(|(principal, events)| {
            let stream = StreamName::from_parts(ACCESS_CATEGORY, principal).ok()?;
            Some(StreamAppend { stream, expected: ExpectedRevision::Any, events })
        })
        .collect()
}
