//! Checking the per-stream hash chains: what was modified, deleted or reordered.
//!
//! [`ChainVerifier`] is pure: a backend feeds it the stored rows of each stream in revision order and
//! the stream's recorded head, and it names every row whose content, link, revision or position does
//! not fit. The chain cannot tell a tail cut off *and* the head row rewritten to match; signed
//! checkpoints over the audit chain cover that.

use std::fmt;

use uuid::Uuid;

use crate::Position;
use crate::content_hash::{GENESIS, Hash, chain_link, content_hash};

/// One stored row, exactly as in the table (no upcasting).
#[derive(Debug, Clone)]
pub struct StoredRow {
    /// Its `$all` position.
    pub position: Position,
    /// Its id.
    pub event_id: Uuid,
    /// Its stream, as stored.
    pub stream: String,
    /// Its revision, as stored.
    pub revision: i64,
    /// Its type.
    pub event_type: String,
    /// Its stored schema version.
    pub schema_version: i16,
    /// Its data text.
    pub data: String,
    /// Its metadata text.
    pub metadata: String,
    /// Its stored link.
    pub hash: Vec<u8>,
}

/// A place where the stored log does not match its chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The stream.
    pub stream: String,
    /// The revision where it shows (for a gap: the first missing revision).
    pub revision: i64,
    /// The row's position, when there is a row.
    pub position: Option<Position>,
    /// What is wrong.
    pub kind: ViolationKind,
}

/// Kinds of chain violations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ViolationKind {
    /// The row's content or link does not match its stored hash: modified, or moved from elsewhere.
    Modified,
    /// Revisions are missing before this row: rows were deleted.
    Missing,
    /// The row's `$all` position is not after its predecessor's: rows were reordered.
    Reordered,
    /// The stream's recorded head revision has no row: its last rows were deleted.
    TailMissing,
    /// Rows exist for a stream the store has no record of.
    UnknownStream,
    /// The row lies beyond the stream's recorded head revision: it was inserted behind the store's back.
    Inserted,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.kind {
            ViolationKind::Modified => "modified",
            ViolationKind::Missing => "missing (deleted)",
            ViolationKind::Reordered => "out of order",
            ViolationKind::TailMissing => "missing at the stream's end (deleted)",
            ViolationKind::UnknownStream => "in an unknown stream",
            ViolationKind::Inserted => "beyond the stream's head (inserted)",
        };
        write!(f, "{} revision {} is {what}", self.stream, self.revision)?;
        if let Some(p) = self.position {
            write!(f, " (position {p})")?;
        }
        Ok(())
    }
}

/// The result of a verification.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Streams looked at.
    pub streams: u64,
    /// Rows looked at.
    pub events: u64,
    /// Every violation found (up to [`MAX_VIOLATIONS`]), in the order met.
    pub violations: Vec<Violation>,
}

/// Violations kept in one report; past this the log is plainly broken and the first ones say where.
pub const MAX_VIOLATIONS: usize = 1000;

impl VerifyReport {
    /// True when nothing was found.
    pub fn is_intact(&self) -> bool {
        self.violations.is_empty()
    }

    /// The violation at the lowest `$all` position (rows without a position sort last).
    pub fn first(&self) -> Option<&Violation> {
        self.violations.iter().min_by_key(|v| (v.position.is_none(), v.position))
    }
}

/// Walks streams row by row.
#[derive(Debug, Default)]
pub struct ChainVerifier {
    report: VerifyReport,
    current: Option<StreamCursor>,
}

#[derive(Debug)]
struct StreamCursor {
    stream: String,
    next_revision: i64,
    link: Hash,
    position: Option<Position>,
}

impl ChainVerifier {
    /// A verifier with nothing seen.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds the next row. Rows come grouped by stream, in revision order. `known_stream` is false when
    /// the store has no stream record for it.
    pub fn push(&mut self, row: &StoredRow, known_stream: bool) {
        self.report.events += 1;
        let starts_stream = self.current.as_ref().is_none_or(|c| c.stream != row.stream);
        if starts_stream {
            self.report.streams += 1;
            if !known_stream {
                self.flag(row, row.revision, ViolationKind::UnknownStream);
            }
            self.current =
                Some(StreamCursor { stream: row.stream.clone(), next_revision: 0, link: GENESIS, position: None });
        }
        let Some(cursor) = self.current.as_mut() else {
            return;
        };
        let mut found = Vec::new();
        if row.revision > cursor.next_revision {
            found.push((cursor.next_revision, ViolationKind::Missing));
        }
        if cursor.position.is_some_and(|p| p >= row.position) {
            found.push((row.revision, ViolationKind::Reordered));
        }
        let content = content_hash(
            row.event_id,
            &row.stream,
            &row.event_type,
            u16::try_from(row.schema_version).unwrap_or(0),
            &row.data,
            &row.metadata,
        );
        let expected = chain_link(&cursor.link, u64::try_from(row.revision).unwrap_or(u64::MAX), &content);
        if row.hash.as_slice() != expected {
            found.push((row.revision, ViolationKind::Modified));
        }
        // Continue the chain from what is stored, so one bad row is reported once, not for every row after it.
        cursor.link = <Hash>::try_from(row.hash.as_slice()).unwrap_or(expected);
        cursor.next_revision = row.revision + 1;
        cursor.position = Some(row.position);
        for (revision, kind) in found {
            self.flag(row, revision, kind);
        }
    }

    /// Feeds the next row with its stream's record (`head` revision and link; `None` when the store has
    /// no record of the stream): besides the chain, the record must agree with the rows.
    pub fn push_with_head(&mut self, row: &StoredRow, head: Option<(i64, &[u8])>) {
        self.push(row, head.is_some());
        let Some((revision, link)) = head else { return };
        let flag =
            |kind| Violation { stream: row.stream.clone(), revision: row.revision, position: Some(row.position), kind };
        if revision == row.revision && link != row.hash.as_slice() {
            // The stream's recorded head link disagrees with its last row: that row was rewritten.
            self.record(flag(ViolationKind::Modified));
        }
        if row.revision > revision {
            self.record(flag(ViolationKind::Inserted));
        }
    }

    /// Records that `stream`'s head revision is `head` but no row carries it.
    pub fn tail_missing(&mut self, stream: &str, head: i64) {
        self.record(Violation {
            stream: stream.to_owned(),
            revision: head,
            position: None,
            kind: ViolationKind::TailMissing,
        });
    }

    /// The report so far.
    pub fn finish(self) -> VerifyReport {
        self.report
    }

    fn flag(&mut self, row: &StoredRow, revision: i64, kind: ViolationKind) {
        let position = (revision == row.revision).then_some(row.position);
        self.record(Violation { stream: row.stream.clone(), revision, position, kind });
    }

    /// Records a violation found by the backend itself.
    pub fn record(&mut self, violation: Violation) {
        if self.report.violations.len() < MAX_VIOLATIONS {
            self.report.violations.push(violation);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(stream: &str, n: i64) -> Vec<StoredRow> {
        let mut link = GENESIS;
        (0..n)
            .map(|r| {
                let id = Uuid::from_u128(r as u128 + 1);
                let data = format!("{{\"n\":{r}}}");
                let content = content_hash(id, stream, "T", 1, &data, "{}");
                link = chain_link(&link, r as u64, &content);
                StoredRow {
                    position: Position { transaction_id: 10 + r as u64, global_position: r as u64 + 1 },
                    event_id: id,
                    stream: stream.into(),
                    revision: r,
                    event_type: "T".into(),
                    schema_version: 1,
                    data,
                    metadata: "{}".into(),
                    hash: link.to_vec(),
                }
            })
            .collect()
    }

    fn verify(rows: &[StoredRow]) -> VerifyReport {
        let mut v = ChainVerifier::new();
        rows.iter().for_each(|r| v.push(r, true));
        v.finish()
    }

    #[test]
    fn an_untouched_chain_is_intact() {
        let report = verify(&chain("s-1", 5));
        assert!(report.is_intact(), "{report:?}");
        assert_eq!((report.streams, report.events), (1, 5));
    }

    #[test]
    fn a_modified_row_is_named_once() {
        let mut rows = chain("s-1", 5);
        rows[2].data = "{\"n\":99}".into();
        let report = verify(&rows);
        assert_eq!(report.violations.len(), 1);
        assert_eq!(report.violations[0].revision, 2);
        assert_eq!(report.violations[0].kind, ViolationKind::Modified);
    }

    #[test]
    fn a_deleted_row_is_named_by_its_revision() {
        let mut rows = chain("s-1", 5);
        rows.remove(2);
        let report = verify(&rows);
        let first = report.first().unwrap();
        assert_eq!(report.violations[0].kind, ViolationKind::Missing);
        assert_eq!(report.violations[0].revision, 2);
        assert!(first.position.is_some(), "the next row's link breaks too, and it has a position");
    }

    #[test]
    fn swapped_revisions_are_caught() {
        let mut rows = chain("s-1", 5);
        rows.swap(1, 2);
        let (a, b) = (rows[1].revision, rows[2].revision);
        rows[1].revision = b;
        rows[2].revision = a;
        let report = verify(&rows);
        assert_eq!(report.violations[0].revision, 1);
    }
}
