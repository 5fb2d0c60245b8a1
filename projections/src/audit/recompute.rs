//! The trail against what its events say: each entry is computed again from the stored event it stands
//! for (the projection's own fold, with names and before-values carried from the start of the log) and
//! compared with the stored entry, field by field.
//!
//! The chain proves that entries were not changed *after* their links were computed. Someone with write
//! access to the database can rewrite an entry newer than the last signed checkpoint and recompute every
//! link after it; the chain then holds, and the next checkpoint signs the forgery. The events are the
//! truth the trail is derived from: an entry that does not say what its event says is named here, however
//! well it chains.

use std::collections::{HashMap, VecDeque};

use eventstore::EventStore;

use super::entry::GENESIS;
use super::mapping::AUDITED_CATEGORIES;
use super::projection::fold;
use super::verify::{AuditReport, AuditViolation, AuditViolationKind};
use super::{AuditEntry, AuditFilter, AuditSource};
use crate::ProjectionError;

/// Events and entries read per page.
const PAGE: usize = 500;

/// Compares every stored entry with the entry its event makes, in number order; names the first that
/// differs. Entries pruned away are not compared (their events still are folded, for the names and
/// values the later entries carry).
pub async fn verify_content(store: &dyn EventStore, trail: &AuditSource) -> Result<AuditReport, ProjectionError> {
    let mut stored = StoredEntries { trail, after: None, page: VecDeque::new(), done: false };
    let (mut seq, mut states, mut checked) = (0i64, HashMap::new(), 0u64);
    let mut after = None;
    loop {
        let events = store.read_all(after, PAGE).await?;
        let Some(last) = events.last() else { return Ok(AuditReport { checked, violation: None }) };
        after = Some(last.position);
        let audited: Vec<_> =
            events.into_iter().filter(|e| AUDITED_CATEGORIES.contains(&e.stream.category())).collect();
        for (expected, _, _) in fold(&audited, seq, GENESIS, &mut states)? {
            seq = expected.seq;
            let Some(entry) = stored.next_at_or_after(seq).await? else {
                return Ok(AuditReport { checked, violation: None });
            };
            if entry.seq != seq {
                // Pruned before this one, or a gap the chain check names: nothing to compare here.
                continue;
            }
            // A trail written before U+0000 was escaped (SQLite stored it raw) says the same thing.
            if entry.storable() != expected {
                let position = Some(eventstore::Position {
                    transaction_id: expected.tx as u64,
                    global_position: expected.gp as u64,
                });
                let violation = AuditViolation { seq, position, kind: AuditViolationKind::Rewritten };
                return Ok(AuditReport { checked, violation: Some(violation) });
            }
            stored.page.pop_front();
            checked += 1;
        }
    }
}

/// The stored entries, page by page in number order.
struct StoredEntries<'a> {
    trail: &'a AuditSource,
    after: Option<i64>,
    page: VecDeque<AuditEntry>,
    done: bool,
}

impl StoredEntries<'_> {
    /// The first stored entry numbered `seq` or later, left in place; `None` when the trail ends first.
    async fn next_at_or_after(&mut self, seq: i64) -> Result<Option<AuditEntry>, ProjectionError> {
        loop {
            while self.page.front().is_some_and(|e| e.seq < seq) {
                self.page.pop_front();
            }
            if let Some(entry) = self.page.front() {
                return Ok(Some(entry.clone()));
            }
            if self.done {
                return Ok(None);
            }
            let filter = AuditFilter { after: self.after, limit: PAGE as u32, ..AuditFilter::default() };
            let (records, next) = self.trail.query(&filter).await?;
            self.done = next.is_none();
            self.after = records.last().map(|r| r.seq).or(self.after);
            let entries = records.iter().map(|r| r.entry());
            let entries: Option<Vec<AuditEntry>> = entries.collect();
            let Some(entries) = entries else {
                return Err(ProjectionError::Apply {
                    projection: super::projection::NAME.to_owned(),
                    position: eventstore::Position::START,
                    reason: "a stored entry has a malformed position".into(),
                });
            };
            self.page.extend(entries);
        }
    }
}
