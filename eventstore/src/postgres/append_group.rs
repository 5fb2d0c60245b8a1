//! Group appends: concurrent [`append`](crate::EventStore::append) calls to different streams share one
//! statement and one commit.
//!
//! Every standalone append is its own transaction, and under concurrency the cost of a transaction
//! (a statement to plan and run, a commit to flush, a backend to wake) outweighs the rows it writes. So
//! a few appends run at once, each in a *lane*; an append that finds every lane busy queues, and the
//! next lane to come free takes everything queued (one append per stream) as one group: one statement
//! (`append_group_existing.sql`, or `append_group_any.sql` when it creates streams or touches claims) in
//! which each append is still its own compare-and-set. A lone writer never waits
//! for a group: it takes a free lane and runs alone, exactly as without grouping.
//!
//! Only small appends (up to [`MAX_GROUPED_APPEND_EVENTS`] events) go into a group: to a stream whose head
//! is known (an exact expected revision matching the head cache) or to a new stream (`NoStream`), with
//! their claims. An append whose expectation fails in the group, or any append of a group whose statement
//! failed (an event id or a claim already taken, a lock timeout), goes back to its caller to run alone,
//! which classifies the failure (conflict, idempotent retry, duplicate, claim taken) as before.
//!
//! Nothing waits on a group for long. The group statement skips stream rows locked by other transactions
//! (their appends run alone), so a caller holding a stream's lock in a unit of work cannot deadlock with
//! a group that holds its own next append; an insert that waits (a new stream or a claim another
//! transaction is inserting) gives up after the group connections' lock timeout. An append still queued after `queue_deadline` (every lane
//! stuck behind a lock) leaves the queue and runs alone. Groups are run by spawned tasks, so a caller that
//! gives up waiting cancels nothing but its own wait (its append may still be written, as when a
//! response is lost).

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::oneshot;
use uuid::Uuid;

use super::append::PreparedAppend;
use super::pg_event_store::PgEventStore;
use crate::content_hash::{GENESIS, Hash, chain};
use crate::{AppendResult, ExpectedRevision, Position};

/// Most events in one group statement.
const MAX_GROUP_EVENTS: usize = 512;

/// Largest append that joins groups. A larger one amortizes its own transaction, and measured slower when
/// lanes held it back (`bench eventstore`, 16 writers of 100 events: 0.53× against 0.63× ungrouped).
const MAX_GROUPED_APPEND_EVENTS: usize = 16;

/// The queue of appends waiting for a lane, shared by the clones of one store.
pub(crate) struct AppendGroups {
    lanes: usize,
    queue_deadline: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Queued>,
    /// Number of the next queued append.
    next_ticket: u64,
    /// Lanes taken: appends running alone plus tasks running groups.
    busy: usize,
}

struct Queued {
    ticket: u64,
    append: PreparedAppend,
    /// The stream's head (revision and link) the append continues from; `None` for a new stream.
    head: Option<(u64, Hash)>,
    reply: oneshot::Sender<Completion>,
}

/// How a grouped append ended.
pub(crate) enum Completion {
    /// Written by a group.
    Done(AppendResult),
    /// Not written: run it alone.
    Alone(Box<PreparedAppend>),
}

/// What [`AppendGroups::enter`] decided.
pub(crate) enum Entry {
    /// A lane was free: run the append alone, holding the lane until it is done.
    Lane(Lane, Box<PreparedAppend>),
    /// Queued: a group will run it; [`AppendGroups::wait`] waits for the answer.
    Queued(Ticket),
}

/// A queued append's claim on its answer.
pub(crate) struct Ticket {
    number: u64,
    reply: oneshot::Receiver<Completion>,
}

/// A taken lane. Dropping it frees the lane, or hands it to a new group task when appends are waiting.
pub(crate) struct Lane {
    store: PgEventStore,
}

impl Drop for Lane {
    fn drop(&mut self) {
        let groups = &self.store.groups;
        let mut state = groups.lock();
        if state.queue.is_empty() {
            state.busy -= 1;
        } else {
            drop(state);
            spawn_group_task(self.store.clone());
        }
    }
}

impl AppendGroups {
    /// `lanes` appends or groups run at once (0 turns grouping off); an append queued for longer than
    /// `queue_deadline` runs alone.
    pub(crate) fn new(lanes: usize, queue_deadline: Duration) -> Self {
        Self { lanes, queue_deadline, state: Mutex::default() }
    }

    /// The head a grouped `append` would continue from (`Some(None)` for a new stream), or `None` when it
    /// must run alone.
    pub(crate) fn groupable(&self, store: &PgEventStore, append: &PreparedAppend) -> Option<Option<(u64, Hash)>> {
        if self.lanes == 0 || append.ids.len() > MAX_GROUPED_APPEND_EVENTS {
            return None;
        }
        match append.expected {
            ExpectedRevision::Exact(n) => {
                store.heads.get(append.stream.as_str()).filter(|(revision, _)| *revision == n).map(Some)
            }
            ExpectedRevision::NoStream => Some(None),
            // These read the head in their own statement: they run alone.
            ExpectedRevision::Any | ExpectedRevision::StreamExists => None,
        }
    }

    /// Takes a free lane for `append`, or queues it for the next group.
    pub(crate) fn enter(store: &PgEventStore, append: PreparedAppend, head: Option<(u64, Hash)>) -> Entry {
        let groups = &store.groups;
        let mut state = groups.lock();
        if state.busy < groups.lanes && state.queue.is_empty() {
            state.busy += 1;
            return Entry::Lane(Lane { store: store.clone() }, Box::new(append));
        }
        let (reply, receiver) = oneshot::channel();
        let ticket = state.next_ticket;
        state.next_ticket += 1;
        state.queue.push_back(Queued { ticket, append, head, reply });
        if state.busy < groups.lanes {
            state.busy += 1;
            drop(state);
            spawn_group_task(store.clone());
        }
        Entry::Queued(Ticket { number: ticket, reply: receiver })
    }

    /// The answer to a queued append; after `queue_deadline` still in the queue, it leaves the queue and
    /// comes back to run alone. `None` when the task running its group died without answering.
    pub(crate) async fn wait(store: &PgEventStore, mut ticket: Ticket) -> Option<Completion> {
        if let Ok(answer) = tokio::time::timeout(store.groups.queue_deadline, &mut ticket.reply).await {
            return answer.ok();
        }
        let withdrawn = {
            let mut state = store.groups.lock();
            let index = state.queue.iter().position(|q| q.ticket == ticket.number);
            index.and_then(|i| state.queue.remove(i))
        };
        if let Some(queued) = withdrawn {
            return Some(Completion::Alone(Box::new(queued.append)));
        }
        // A group took it: its statement waits on no lock, so the answer comes.
        ticket.reply.await.ok()
    }

    /// Appends queued for a group.
    pub(crate) fn waiting(&self) -> usize {
        self.lock().queue.len()
    }

    /// The next group: queued appends in order, one per stream, up to [`MAX_GROUP_EVENTS`] events (at least
    /// one append). Appends to a stream already in the group wait for the next one.
    fn next_group(&self) -> Vec<Queued> {
        let mut state = self.lock();
        let mut group = Vec::new();
        let mut streams = HashSet::new();
        let mut events = 0;
        let mut later = VecDeque::new();
        while let Some(q) = state.queue.pop_front() {
            let size = q.append.ids.len();
            if !group.is_empty() && events + size > MAX_GROUP_EVENTS {
                state.queue.push_front(q);
                break;
            }
            if streams.insert(q.append.stream.as_str().to_owned()) {
                events += size;
                group.push(q);
            } else {
                later.push_back(q);
            }
        }
        while let Some(q) = later.pop_back() {
            state.queue.push_front(q);
        }
        group
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent under every early return; a panic elsewhere does not void it.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Starts a task that runs groups while appends are queued; it holds the lane taken for it.
fn spawn_group_task(store: PgEventStore) {
    let unstarted = Unstarted(Some(store));
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return; // no runtime left: dropping `unstarted` frees the lane and the queue
    };
    runtime.spawn(async move {
        let Some(lane) = unstarted.start() else { return };
        loop {
            let group = lane.store.groups.next_group();
            if group.is_empty() {
                break;
            }
            run_group(&lane.store, group).await;
        }
        // Dropping the lane frees it, or hands it on if appends queued meanwhile.
        drop(lane);
    });
}

/// A lane handed to a task that has not run yet. A runtime shutting down drops such tasks unpolled:
/// then the lane is freed and the queue emptied (its callers learn that their group was abandoned),
/// instead of handing the lane to yet another task that would never run.
struct Unstarted(Option<PgEventStore>);

impl Unstarted {
    fn start(mut self) -> Option<Lane> {
        self.0.take().map(|store| Lane { store })
    }
}

impl Drop for Unstarted {
    fn drop(&mut self) {
        if let Some(store) = self.0.take() {
            let mut state = store.groups.lock();
            state.busy -= 1;
            state.queue.clear();
        }
    }
}

/// Runs one group and answers every append in it.
async fn run_group(store: &PgEventStore, mut group: Vec<Queued>) {
    if group.len() == 1 {
        // Nothing to share: the caller's own path is as fast and classifies failures itself.
        answer_alone(group);
        return;
    }
    group.sort_by(|a, b| a.append.stream.as_str().cmp(b.append.stream.as_str()));
    let params = GroupParams::new(group.iter().map(|q| (&q.append, q.head)));
    // Only the general statement inserts, and so may wait for a lock: it runs on the connections that give
    // up after a lock timeout.
    let pool = if params.general() { &store.group_pool } else { &store.pool };
    let rows = match pool.acquire().await {
        Ok(mut conn) => params.run(&mut conn).await,
        Err(e) => Err(e),
    };
    let rows = match rows {
        Ok(rows) => rows,
        Err(e) => {
            tracing::debug!(error = %e, appends = group.len(), "group append failed; each append runs alone");
            answer_alone(group);
            return;
        }
    };
    // (first revision, first position, last position, transaction) per stream written.
    let mut written: HashMap<&str, (i64, i64, i64, i64)> = HashMap::with_capacity(group.len());
    for (stream, revision, position, tx) in &rows {
        let entry = written.entry(stream.as_str()).or_insert((*revision, *position, *position, *tx));
        entry.0 = entry.0.min(*revision);
        entry.1 = entry.1.min(*position);
        entry.2 = entry.2.max(*position);
    }
    let mut any = false;
    let mut outcomes = Vec::with_capacity(group.len());
    for (q, last_link) in group.iter().zip(&params.head_links) {
        let stream = q.append.stream.as_str();
        match written.get(stream) {
            Some(&(first_revision, first, last, tx)) => {
                any = true;
                let first_revision = first_revision as u64;
                let last_revision = first_revision + q.append.ids.len() as u64 - 1;
                store.heads.put(stream, last_revision, *last_link);
                outcomes.push(Some(AppendResult {
                    first_revision,
                    last_revision,
                    first_position: Position { transaction_id: tx as u64, global_position: first as u64 },
                    position: Position { transaction_id: tx as u64, global_position: last as u64 },
                    idempotent: false,
                }));
            }
            None => {
                store.heads.forget(stream);
                outcomes.push(None);
            }
        }
    }
    drop(written);
    if any {
        store.signal_appended();
    }
    for (q, outcome) in group.into_iter().zip(outcomes) {
        let completion = match outcome {
            Some(result) => Completion::Done(result),
            None => Completion::Alone(Box::new(q.append)),
        };
        // A caller that stopped waiting has nobody to tell.
        let _ = q.reply.send(completion);
    }
}

fn answer_alone(group: Vec<Queued>) {
    for q in group {
        let _ = q.reply.send(Completion::Alone(Box::new(q.append)));
    }
}

/// One row per event written by a group statement: stream, revision, position, transaction.
pub(super) type GroupRow = (String, i64, i64, i64);

/// The parameters of the group statements, in their order (the claims last, for the general one).
pub(super) struct GroupParams<'a> {
    streams: Vec<&'a str>,
    /// `None` for a new stream.
    expected: Vec<Option<i64>>,
    previous_links: Vec<Hash>,
    /// Per append, the link its last event will have.
    pub(super) head_links: Vec<Hash>,
    counts: Vec<i32>,
    append_index: Vec<i32>,
    revisions: Vec<i64>,
    ids: Vec<Uuid>,
    types: Vec<&'a str>,
    versions: Vec<i16>,
    data: Vec<&'a str>,
    metadata: Vec<&'a str>,
    correlation: Vec<Uuid>,
    causation: Vec<Option<Uuid>>,
    links: Vec<Hash>,
    claim_index: Vec<i32>,
    claim_scopes: Vec<&'a str>,
    claim_values: Vec<&'a str>,
    release_index: Vec<i32>,
    release_scopes: Vec<&'a str>,
    release_values: Vec<&'a str>,
}

impl<'a> GroupParams<'a> {
    /// The parameters for `appends`, each with the head it continues from (`None`: a new stream), in the
    /// order given (sorted by stream, so that concurrent groups lock in one order).
    pub(super) fn new(appends: impl Iterator<Item = (&'a PreparedAppend, Option<(u64, Hash)>)>) -> Self {
        let group: Vec<(&'a PreparedAppend, Option<(u64, Hash)>)> = appends.collect();
        let events: usize = group.iter().map(|(a, _)| a.ids.len()).sum();
        let mut p = Self {
            streams: Vec::with_capacity(group.len()),
            expected: Vec::with_capacity(group.len()),
            previous_links: Vec::with_capacity(group.len()),
            head_links: Vec::with_capacity(group.len()),
            counts: Vec::with_capacity(group.len()),
            append_index: Vec::with_capacity(events),
            revisions: Vec::with_capacity(events),
            ids: Vec::with_capacity(events),
            types: Vec::with_capacity(events),
            versions: Vec::with_capacity(events),
            data: Vec::with_capacity(events),
            metadata: Vec::with_capacity(events),
            correlation: Vec::with_capacity(events),
            causation: Vec::with_capacity(events),
            links: Vec::with_capacity(events),
            claim_index: Vec::new(),
            claim_scopes: Vec::new(),
            claim_values: Vec::new(),
            release_index: Vec::new(),
            release_scopes: Vec::new(),
            release_values: Vec::new(),
        };
        for (index, (a, head)) in (1..).zip(group) {
            let after = head.map(|(revision, _)| revision);
            let previous = head.as_ref().map_or(&GENESIS, |(_, link)| link);
            let links = chain(previous, after, &a.content);
            p.streams.push(a.stream.as_str());
            p.expected.push(after.map(|r| i64::try_from(r).unwrap_or(i64::MAX)));
            p.previous_links.push(*previous);
            p.head_links.push(links.last().copied().unwrap_or(*previous));
            p.counts.push(i32::try_from(a.ids.len()).unwrap_or(i32::MAX));
            for claim in &a.claims.take {
                p.claim_index.push(index);
                p.claim_scopes.push(&claim.scope);
                p.claim_values.push(&claim.value);
            }
            for claim in &a.claims.release {
                p.release_index.push(index);
                p.release_scopes.push(&claim.scope);
                p.release_values.push(&claim.value);
            }
            let first = after.map_or(0, |r| r + 1);
            for n in 0..a.ids.len() {
                p.append_index.push(index);
                p.revisions.push(i64::try_from(first + n as u64).unwrap_or(i64::MAX));
            }
            p.ids.extend(&a.ids);
            p.types.extend(a.types.iter().map(String::as_str));
            p.versions.extend(&a.versions);
            p.data.extend(a.data.iter().map(String::as_str));
            p.metadata.extend(a.metadata.iter().map(String::as_str));
            p.correlation.extend(&a.correlation);
            p.causation.extend(&a.causation);
            p.links.extend(links);
        }
        p
    }

    /// True when some append creates its stream or touches claims: then the general statement
    /// (`append_group_any.sql`) runs; otherwise the cheaper one for existing streams
    /// (`append_group_existing.sql`), whose cached plan serves the most common group.
    pub(super) fn general(&self) -> bool {
        self.expected.iter().any(Option::is_none) || !self.claim_index.is_empty() || !self.release_index.is_empty()
    }

    /// Runs the statement: the rows written, none for an append that was refused.
    pub(super) async fn run(&self, conn: &mut sqlx::PgConnection) -> Result<Vec<GroupRow>, sqlx::Error> {
        if self.general() {
            self.bind(sqlx::query_as(include_str!("append_group_any.sql")))
                .bind(&self.claim_index)
                .bind(&self.claim_scopes)
                .bind(&self.claim_values)
                .bind(&self.release_index)
                .bind(&self.release_scopes)
                .bind(&self.release_values)
                .fetch_all(conn)
                .await
        } else {
            self.bind(sqlx::query_as(include_str!("append_group_existing.sql"))).fetch_all(conn).await
        }
    }

    fn bind<'q, O>(
        &'q self,
        query: sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, O, sqlx::postgres::PgArguments> {
        let previous_links: Vec<&[u8]> = self.previous_links.iter().map(|l| l.as_slice()).collect();
        let head_links: Vec<&[u8]> = self.head_links.iter().map(|l| l.as_slice()).collect();
        let links: Vec<&[u8]> = self.links.iter().map(|l| l.as_slice()).collect();
        query
            .bind(&self.streams)
            .bind(&self.expected)
            .bind(previous_links)
            .bind(head_links)
            .bind(&self.counts)
            .bind(&self.append_index)
            .bind(&self.revisions)
            .bind(&self.ids)
            .bind(&self.types)
            .bind(&self.versions)
            .bind(&self.data)
            .bind(&self.metadata)
            .bind(&self.correlation)
            .bind(&self.causation)
            .bind(links)
    }
}
