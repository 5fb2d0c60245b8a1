//! Recording forwarded tool calls (`ToolCalled`, on the caller's `access-<principal>` stream) through a
//! batching appender: calls queue their records, and one task appends whatever has queued, across
//! streams, in one transaction (`append_multi`), then the next batch. Under load batches grow while the
//! previous one commits, so there is no added delay and one commit carries many calls. The queue is
//! bounded and a call reserves its place before it is forwarded: when no place is free the call is
//! refused (503) rather than run unrecorded, and a reserved place is always filled (the record of a call
//! whose client went away says so). Before a call is forwarded its record is written to the call
//! journal ([`super::journal`]), and again when it ends; a gateway killed with records queued or calls
//! running has them appended by its next start ([`recover`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use domain::access::{ACCESS_CATEGORY, AccessEvent, CallOutcome, ToolCalled};
use eventstore::{EventData, EventStore, ExpectedRevision, Metadata, StreamAppend, StreamName};
use tokio::sync::mpsc;
use uuid::Uuid;

use super::journal::{Journal, JournalError, JournalMark, Leftover};

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
    /// Its place in the journal, released once the record is in the store.
    mark: Option<JournalMark>,
}

/// The appender's queue.
#[derive(Clone)]
pub(crate) struct CallRecorder {
    queue: mpsc::Sender<Record>,
    /// Places reserved whose records are not appended yet (calls running, records queued or being
    /// appended): what a stopping gateway waits for.
    unrecorded: Arc<AtomicUsize>,
    journal: Option<Arc<Journal>>,
}

impl CallRecorder {
    /// A recorder appending to `store`, writing ahead to `journal` when there is one, and its task.
    pub(crate) fn start(store: Arc<dyn EventStore>, journal: Option<Journal>) -> (Self, tokio::task::JoinHandle<()>) {
        let (queue, records) = mpsc::channel(QUEUE);
        let unrecorded = Arc::new(AtomicUsize::new(0));
        let recorder = Self { queue, unrecorded: unrecorded.clone(), journal: journal.map(Arc::new) };
        (recorder, tokio::spawn(append_batches(store, records, unrecorded)))
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
        if let Some(journal) = &self.journal {
            journal.close();
        }
        true
    }

    /// A place in the queue for the record of a call about to run, written to the journal; `None` when
    /// the queue is full or the journal cannot be written.
    pub(crate) fn reserve(&self, call: ToolCalled, metadata: Metadata) -> Option<PendingCall> {
        let permit = self.queue.clone().try_reserve_owned().ok()?;
        let mut record = Record { event: call, metadata, mark: None };
        if let Some(journal) = &self.journal {
            match journal.begin(&record.event, &record.metadata) {
                Ok(mark) => record.mark = Some(mark),
                Err(error) => {
                    tracing::error!(%error, "could not write a tool call to the journal: refused");
                    return None;
                }
            }
        }
        self.unrecorded.fetch_add(1, Ordering::AcqRel);
        Some(PendingCall { permit: Some(permit), record: Some(record), started: Instant::now() })
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
        if let Some(mark) = &record.mark {
            mark.end(&record.event, &record.metadata);
        }
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
        let lines: Vec<(&ToolCalled, &Metadata)> = batch.iter().map(|r| (&r.event, &r.metadata)).collect();
        append_until_done(&*store, &lines).await;
        metrics::counter!("mgw_tool_calls_recorded_total").increment(batch.len() as u64);
        // The journal's marks first: a stopping gateway that sees nothing unrecorded closes the journal,
        // and its segment goes only once every mark is released.
        let recorded = batch.len();
        for record in batch.drain(..) {
            if let Some(mark) = record.mark {
                mark.release();
            }
        }
        unrecorded.fetch_sub(recorded, Ordering::AcqRel);
    }
}

/// Appends the records, trying again until the store takes them. A record already in the store (a
/// recovered journal's call that the store had after all) is not appended twice: a batch that meets
/// one is appended record by record.
async fn append_until_done(store: &dyn EventStore, records: &[(&ToolCalled, &Metadata)]) {
    loop {
        match store.append_multi(appends(records)).await {
            Ok(_) => return,
            Err(eventstore::Error::PartialDuplicate { .. } | eventstore::Error::DuplicateEventId { .. }) => {
                for record in records {
                    append_one(store, record).await;
                }
                return;
            }
            Err(error) => {
                tracing::warn!(%error, records = records.len(), "could not record tool calls; trying again");
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}

async fn append_one(store: &dyn EventStore, record: &(&ToolCalled, &Metadata)) {
    loop {
        match store.append_multi(appends(std::slice::from_ref(record))).await {
            Ok(_) | Err(eventstore::Error::PartialDuplicate { .. } | eventstore::Error::DuplicateEventId { .. }) => {
                return;
            }
            Err(error) => {
                tracing::warn!(%error, "could not record a tool call; trying again");
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}

/// Appends the calls that the journals of earlier processes in `dir` hold and the store may not (a
/// gateway killed with calls running or records queued), then removes those journals; the number of
/// calls found. Run before the gateway takes requests.
pub(crate) async fn recover(store: &dyn EventStore, dir: &std::path::Path) -> Result<usize, JournalError> {
    let mut recovered = 0;
    for leftover in Leftover::find(dir)? {
        for chunk in leftover.lines.chunks(BATCH) {
            let records: Vec<(&ToolCalled, &Metadata)> = chunk.iter().map(|l| (&l.call, &l.metadata)).collect();
            append_until_done(store, &records).await;
        }
        recovered += leftover.lines.len();
        leftover.remove()?;
    }
    if recovered > 0 {
        tracing::info!(calls = recovered, "tool calls recovered from the call journal");
    }
    Ok(recovered)
}

/// One append per caller's stream.
fn appends(records: &[(&ToolCalled, &Metadata)]) -> Vec<StreamAppend> {
    let mut streams: HashMap<Uuid, Vec<EventData>> = HashMap::new();
    for (call, metadata) in records {
        let event = AccessEvent::ToolCalled((*call).clone());
        let Ok(data) = event.to_json() else { continue };
        streams.entry(call.principal_id).or_default().push(EventData {
            // The call's id: an append tried again after an uncertain failure is not recorded twice.
            event_id: call.call_id,
            event_type: event.event_type().to_owned(),
            schema_version: 1,
            data,
            metadata: (*metadata).clone(),
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
