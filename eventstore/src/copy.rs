//! Moving an installation between backends (the embedded SQLite file to PostgreSQL, say): every event of
//! one store appended to another, empty one, with its id, stream, revision, type, stored schema version,
//! data and metadata, in `$all` order, and the claims held at the end. The content hash covers exactly
//! those, so the copy's chains link to the same hashes as the source's; [`verify_copy`] proves it event by
//! event. Positions are the target's own: `$all` order is kept, the numbers are not.
//!
//! Open the source without upcasters: the copy must carry the events as stored, not as read today.

use std::collections::{HashMap, HashSet};

use crate::{Claim, Claims, Error, EventData, EventStore, ExpectedRevision, Position, RecordedEvent, StreamName};

/// Events read from the source per page.
const PAGE: usize = 1000;

/// Events collected before they are written (and progress is reported).
const BATCH_EVENTS: usize = 500;

/// What a copy moved.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// Events.
    pub events: u64,
    /// Streams.
    pub streams: u64,
    /// Claims.
    pub claims: u64,
}

/// Why a copy or its verification failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// The target is not empty: a copy never merges two logs.
    #[error("the target store already holds events: copy into an empty store")]
    TargetNotEmpty,
    /// A store failed.
    #[error(transparent)]
    Store(#[from] Error),
    /// Events below the head stayed invisible: a transaction left open holds the readers back.
    #[error("events below the head stayed invisible for a minute: is a transaction left open on the store?")]
    HeldBack,
    /// The source holds no events.
    #[error("the source store holds no events: check its URL")]
    EmptySource,
    /// The copy is not the source.
    #[error("the copy differs from the source at event #{index} of $all: {what}")]
    Differs {
        /// The event's place in `$all`, from 1.
        index: u64,
        /// What differs.
        what: String,
    },
}

/// One stream's consecutive events of one source transaction, appended together.
struct Part {
    stream: StreamName,
    transaction_id: u64,
    first_revision: u64,
    events: Vec<EventData>,
    claims: Vec<Claim>,
}

impl Part {
    fn continues(&self, event: &RecordedEvent) -> bool {
        self.stream == event.stream
            && self.transaction_id == event.position.transaction_id
            && self.first_revision + self.events.len() as u64 == event.revision
    }

    fn expected(&self) -> ExpectedRevision {
        ExpectedRevision::after(self.first_revision.checked_sub(1))
    }
}

fn as_written(event: RecordedEvent) -> EventData {
    EventData {
        event_id: event.event_id,
        event_type: event.event_type,
        schema_version: event.schema_version,
        data: event.data,
        metadata: event.metadata,
    }
}

/// Copies `source` into the empty `target`; `progress` hears the number of events copied so far after
/// each batch. The source must not change meanwhile (stop the gateway).
pub async fn copy_events(
    source: &dyn EventStore,
    target: &dyn EventStore,
    mut progress: impl FnMut(u64),
) -> Result<CopyReport, CopyError> {
    if target.committed_head().await?.is_some() {
        return Err(CopyError::TargetNotEmpty);
    }
    if source.committed_head().await?.is_none() {
        return Err(CopyError::EmptySource);
    }
    let mut claims: HashMap<StreamName, Vec<Claim>> = HashMap::new();
    let held = source.held_claims().await?;
    let mut report = CopyReport { claims: held.len() as u64, ..CopyReport::default() };
    for (claim, stream) in held {
        claims.entry(stream).or_default().push(claim);
    }
    let end = source.committed_head().await?;
    let mut after: Option<Position> = None;
    let mut batch: Vec<Part> = Vec::new();
    while after < end {
        let page = read_page(source, after, end).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.position);
        for event in page {
            report.events += 1;
            if event.revision == 0 {
                report.streams += 1;
            }
            match batch.last_mut() {
                Some(part) if part.continues(&event) => part.events.push(as_written(event)),
                _ => {
                    let pending: usize = batch.iter().map(|p| p.events.len()).sum();
                    // A stream appears once per transaction; a full batch is written before more join it.
                    if pending >= BATCH_EVENTS || batch.iter().any(|p| p.stream == event.stream) {
                        write(target, std::mem::take(&mut batch)).await?;
                        progress(report.events - 1);
                    }
                    // A stream takes the claims it holds at the end with its first event.
                    let taken = if event.revision == 0 { claims.remove(&event.stream) } else { None };
                    batch.push(Part {
                        stream: event.stream.clone(),
                        transaction_id: event.position.transaction_id,
                        first_revision: event.revision,
                        claims: taken.unwrap_or_default(),
                        events: vec![as_written(event)],
                    });
                }
            }
        }
    }
    write(target, batch).await?;
    progress(report.events);
    Ok(report)
}

/// Writes `parts` in order, each in a transaction of its own: a multi-stream append may order its parts
/// by stream name (Postgres takes their locks in that order), and the copy must keep `$all` order exactly.
async fn write(target: &dyn EventStore, parts: Vec<Part>) -> Result<(), CopyError> {
    for part in parts {
        let expected = part.expected();
        let claims = Claims { take: part.claims, release: Vec::new() };
        target.append_claiming(&part.stream, expected, part.events, claims).await?;
    }
    Ok(())
}

/// Proves that `target` holds `source`'s log: the same events in the same `$all` order, each with the
/// same stream, revision, type, schema version, data, metadata and chain link; the same claims; and an
/// intact chain in the target. Returns the number of events compared.
pub async fn verify_copy(source: &dyn EventStore, target: &dyn EventStore) -> Result<u64, CopyError> {
    let (mut from_source, mut from_target) = (None, None);
    let (end_source, end_target) = (source.committed_head().await?, target.committed_head().await?);
    let mut index = 0u64;
    let mut streams: HashSet<StreamName> = HashSet::new();
    loop {
        let theirs = read_page(source, from_source, end_source).await?;
        let ours = read_page(target, from_target, end_target).await?;
        if theirs.is_empty() && ours.is_empty() {
            break;
        }
        let compared = theirs.len().min(ours.len()).max(1);
        for i in 0..compared {
            index += 1;
            let differs = |what: String| CopyError::Differs { index, what };
            let (Some(a), Some(b)) = (theirs.get(i), ours.get(i)) else {
                return Err(differs(format!("only one store has it ({} against {})", theirs.len(), ours.len())));
            };
            if (a.event_id, &a.stream, a.revision) != (b.event_id, &b.stream, b.revision) {
                return Err(differs(format!(
                    "{} {}@{} against {} {}@{}",
                    a.event_id, a.stream, a.revision, b.event_id, b.stream, b.revision
                )));
            }
            if (&a.event_type, a.schema_version, &a.data, &a.metadata)
                != (&b.event_type, b.schema_version, &b.data, &b.metadata)
            {
                return Err(differs(format!("event {} has other content", a.event_id)));
            }
            if a.hash != b.hash {
                return Err(differs(format!("event {} links to another hash", a.event_id)));
            }
            streams.insert(a.stream.clone());
            from_source = Some(a.position);
            from_target = Some(b.position);
        }
    }
    let (mut theirs, mut ours) = (source.held_claims().await?, target.held_claims().await?);
    // Each backend sorts text its own way (a collation, or bytes): compare as sets.
    theirs.sort();
    ours.sort();
    if theirs != ours {
        return Err(CopyError::Differs { index, what: format!("claims: {} against {}", theirs.len(), ours.len()) });
    }
    let report = target.verify_all().await?;
    if let Some(violation) = report.first() {
        return Err(CopyError::Differs { index, what: format!("the copy's chain: {violation}") });
    }
    Ok(index)
}

/// How long a read of `$all` may find nothing before the head before the copy gives up: on Postgres, a
/// transaction left open anywhere in the cluster holds every reader back.
const HELD_BACK_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// A page of `$all` after `after`, waiting out readers held back (for a while), up to `end`.
async fn read_page(
    store: &dyn EventStore,
    after: Option<Position>,
    end: Option<Position>,
) -> Result<Vec<RecordedEvent>, CopyError> {
    let started = std::time::Instant::now();
    loop {
        if after >= end {
            return Ok(Vec::new());
        }
        let page = store.read_all(after, PAGE).await?;
        if !page.is_empty() {
            return Ok(page);
        }
        if started.elapsed() > HELD_BACK_LIMIT {
            return Err(CopyError::HeldBack);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
}
