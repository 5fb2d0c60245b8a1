//! The tail of `$all` this process read lately, kept in memory for the readers that follow the head.
//!
//! A gateway follows `$all` with several readers at once (the authorization model, the registry, the
//! audit trail, usage analytics, the relay, alerting), each a few milliseconds behind the others. Read
//! from the database, every one of them pays for every event again: about 10 µs of PostgreSQL per event
//! and reader on the proxy bench (`pg_stat_statements`), before decoding. The first reader of a stretch
//! reads it from the database; the others get it from here.
//!
//! What is held is one contiguous stretch of `$all` as the database returned it: the events after
//! `start`, in order, none missing. Pages are only ever added at the stretch's end, and only when read
//! from exactly there, so the stretch stays gap-free. Events a read returns lie below the read horizon
//! and never change: a page from memory is the page the database would return, save for tampering,
//! which verification finds by reading the database itself ([`EventStore::read_all`](crate::EventStore::read_all)).

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::{Position, RecordedEvent, Result};

/// How much of the tail is kept: the oldest events go first when either bound is passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailCacheLimits {
    /// Events held at most (0: nothing is kept).
    pub events: usize,
    /// Bytes held at most, counting each event's payload, metadata and names.
    pub bytes: usize,
}

impl Default for TailCacheLimits {
    /// Room for a few seconds of the proxy's busiest recording (16,384 events, 32 MiB): the slowest
    /// follower (usage analytics, a batch per quarter second) stays inside it.
    fn default() -> Self {
        Self { events: 16_384, bytes: 32 << 20 }
    }
}

/// See the [module docs](self).
pub(crate) struct TailCache {
    limits: TailCacheLimits,
    tail: Mutex<Tail>,
}

#[derive(Default)]
struct Tail {
    /// The position the stretch starts after (`None`: nothing held yet).
    start: Option<Position>,
    events: VecDeque<Arc<RecordedEvent>>,
    bytes: usize,
}

impl Tail {
    /// The position the stretch ends at: its last event's, or its start while it is empty.
    fn end(&self) -> Option<Position> {
        self.events.back().map(|e| e.position).or(self.start)
    }
}

/// What an event costs the cache, roughly: its strings (metadata's too) and a fixed share for the rest.
fn weight(event: &RecordedEvent) -> usize {
    const FIXED: usize = 256;
    let metadata = event.metadata.actor.id.len() + event.metadata.user_agent.as_ref().map_or(0, String::len);
    FIXED + event.data.len() + event.event_type.len() + event.stream.as_str().len() + metadata
}

impl TailCache {
    pub(crate) fn new(limits: TailCacheLimits) -> Self {
        Self { limits, tail: Mutex::new(Tail::default()) }
    }

    /// Up to `limit` events after `after` when the stretch covers `after` (possibly none, when `after`
    /// is its end); `None` when it does not, and the database must be read.
    pub(crate) fn read(&self, after: Position, limit: usize) -> Option<Vec<RecordedEvent>> {
        let held: Vec<Arc<RecordedEvent>> = {
            let tail = self.tail.lock().ok()?;
            if tail.start.is_none_or(|start| after < start) || tail.end().is_none_or(|end| after > end) {
                return None;
            }
            let from = tail.events.partition_point(|e| e.position <= after);
            tail.events.range(from..).take(limit).cloned().collect()
        };
        // Copied outside the lock: a follower's page of thousands does not hold up the others.
        Some(held.iter().map(|event| RecordedEvent::clone(event)).collect())
    }

    /// [`EventStore::read_all_following`](crate::EventStore::read_all_following) over `read_all`, the
    /// database's read: from memory what the stretch holds, then from the database what follows it, so a
    /// short page still means the database had no more.
    pub(crate) async fn read_following<F, Fut>(
        &self,
        after: Option<Position>,
        limit: usize,
        read_all: F,
    ) -> Result<Vec<RecordedEvent>>
    where
        F: Fn(Option<Position>, usize) -> Fut,
        Fut: Future<Output = Result<Vec<RecordedEvent>>>,
    {
        let from = after.unwrap_or(Position::START);
        let Some(mut page) = self.read(from, limit) else {
            let page = read_all(after, limit).await?;
            self.extend(from, &page);
            return Ok(page);
        };
        if page.len() < limit {
            let end = page.last().map_or(from, |e| e.position);
            let more = read_all(Some(end), limit - page.len()).await?;
            self.extend(end, &more);
            page.extend(more);
        }
        Ok(page)
    }

    /// Keeps `page`, read from the database after `after`, when it continues the stretch (or starts a
    /// new one ahead of it); a page from before the stretch's end (a replay, or another reader's read
    /// of a stretch already added) is left out.
    pub(crate) fn extend(&self, after: Position, page: &[RecordedEvent]) {
        if self.limits.events == 0 || page.is_empty() {
            return;
        }
        // A page from before the stretch's end (a follower catching up from an old checkpoint reads many)
        // is not copied only to be left out below.
        if self.tail.lock().map_or(true, |tail| tail.end().is_some_and(|end| after < end)) {
            return;
        }
        // Copied before taking the lock, and only the newest events the limits let stay.
        let mut room = (self.limits.events, self.limits.bytes);
        let kept = page
            .iter()
            .rev()
            .map(weight)
            .take_while(|weight| {
                let fits = room.0 > 0 && *weight <= room.1;
                room = (room.0.saturating_sub(1), room.1.saturating_sub(*weight));
                fits
            })
            .count();
        let (dropped, kept) = page.split_at(page.len() - kept);
        let kept: Vec<Arc<RecordedEvent>> = kept.iter().map(|event| Arc::new(event.clone())).collect();
        let Ok(mut tail) = self.tail.lock() else { return };
        match tail.end() {
            Some(end) if after < end => return,
            Some(end) if after == end => {}
            // Nothing held, or the page starts past what is held: a new stretch from `after`.
            _ => *tail = Tail { start: Some(after), ..Tail::default() },
        }
        if let Some(last_dropped) = dropped.last() {
            // The page's older part did not fit: the stretch starts after it.
            *tail = Tail { start: Some(last_dropped.position), ..Tail::default() };
        }
        for event in kept {
            tail.bytes += weight(&event);
            tail.events.push_back(event);
        }
        while tail.events.len() > self.limits.events || tail.bytes > self.limits.bytes {
            let Some(oldest) = tail.events.pop_front() else { break };
            tail.bytes -= weight(&oldest);
            tail.start = Some(oldest.position);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Actor, Metadata, StreamName};

    fn event(gp: u64) -> RecordedEvent {
        RecordedEvent {
            position: Position { transaction_id: 1, global_position: gp },
            event_id: uuid::Uuid::now_v7(),
            stream: StreamName::parse("test-1".to_owned()).unwrap(),
            revision: gp,
            event_type: "Happened".into(),
            schema_version: 1,
            data: "{}".into(),
            metadata: Metadata::new(uuid::Uuid::now_v7(), Actor::system("test"), chrono::Utc::now()),
            hash: [0; 32],
        }
    }

    fn at(gp: u64) -> Position {
        Position { transaction_id: 1, global_position: gp }
    }

    fn positions(events: &[RecordedEvent]) -> Vec<u64> {
        events.iter().map(|e| e.position.global_position).collect()
    }

    #[test]
    fn serves_what_follows_inside_the_stretch_and_nothing_outside_it() {
        let cache = TailCache::new(TailCacheLimits::default());
        assert!(cache.read(at(0), 10).is_none(), "nothing held yet");
        cache.extend(at(10), &(11..=15).map(event).collect::<Vec<_>>());
        assert_eq!(positions(&cache.read(at(10), 10).unwrap()), vec![11, 12, 13, 14, 15]);
        assert_eq!(positions(&cache.read(at(12), 2).unwrap()), vec![13, 14]);
        assert_eq!(cache.read(at(15), 10).unwrap(), vec![], "at the end: nothing more held");
        assert!(cache.read(at(9), 10).is_none(), "before the stretch");
        assert!(cache.read(at(16), 10).is_none(), "past the stretch");
    }

    #[test]
    fn grows_only_from_its_end_and_drops_the_oldest() {
        let cache = TailCache::new(TailCacheLimits { events: 4, bytes: usize::MAX });
        cache.extend(at(0), &(1..=3).map(event).collect::<Vec<_>>());
        // A replay's page from before the end, and a racing reader's page of a stretch already held.
        cache.extend(at(0), &(1..=2).map(event).collect::<Vec<_>>());
        cache.extend(at(1), &(2..=5).map(event).collect::<Vec<_>>());
        assert_eq!(positions(&cache.read(at(0), 10).unwrap()), vec![1, 2, 3]);
        cache.extend(at(3), &(4..=6).map(event).collect::<Vec<_>>());
        assert!(cache.read(at(1), 10).is_none(), "1 and 2 were dropped: the stretch starts after 2");
        assert_eq!(positions(&cache.read(at(2), 10).unwrap()), vec![3, 4, 5, 6]);
        // A page from past the end starts a new stretch.
        cache.extend(at(20), &[event(21)]);
        assert!(cache.read(at(6), 10).is_none());
        assert_eq!(positions(&cache.read(at(20), 10).unwrap()), vec![21]);
    }

    #[test]
    fn a_page_larger_than_the_limits_keeps_its_newest_events() {
        let cache = TailCache::new(TailCacheLimits { events: 2, bytes: usize::MAX });
        cache.extend(at(0), &(1..=3).map(event).collect::<Vec<_>>());
        assert!(cache.read(at(0), 10).is_none(), "1 was never held");
        assert_eq!(positions(&cache.read(at(1), 10).unwrap()), vec![2, 3]);
        let heavy = TailCache::new(TailCacheLimits { events: 10, bytes: weight(&event(1)) * 2 });
        heavy.extend(at(0), &(1..=3).map(event).collect::<Vec<_>>());
        assert_eq!(positions(&heavy.read(at(1), 10).unwrap()), vec![2, 3]);
    }

    #[test]
    fn keeps_nothing_when_turned_off() {
        let cache = TailCache::new(TailCacheLimits { events: 0, bytes: 0 });
        cache.extend(at(0), &[event(1)]);
        assert!(cache.read(at(0), 10).is_none());
    }
}
