//! The per-stream hash chain.
//!
//! Each event's `content` digest covers everything stored about it except its position:
//! `SHA-256(event_id ‖ len‖stream ‖ len‖type ‖ version ‖ len‖data ‖ len‖metadata)`, lengths as
//! big-endian u32 so that no two different events encode alike. The stored `hash` links it to its
//! predecessor: `link(r) = SHA-256(link(r-1) ‖ r as i64 big-endian ‖ content(r))`, with
//! `link(-1)` = 32 zero bytes. The client computes both; the append's compare-and-set checks the
//! predecessor's link together with its revision, so a chain cannot fork.

use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The link before a stream's first event.
pub const GENESIS: Hash = [0; 32];

/// The content digest of one event.
pub fn content_hash(
    event_id: Uuid,
    stream: &str,
    event_type: &str,
    schema_version: u16,
    data: &str,
    metadata: &str,
) -> Hash {
    let mut h = Sha256::new();
    h.update(event_id.as_bytes());
    for part in [stream, event_type] {
        h.update(len_prefix(part));
        h.update(part.as_bytes());
    }
    h.update(schema_version.to_be_bytes());
    for part in [data, metadata] {
        h.update(len_prefix(part));
        h.update(part.as_bytes());
    }
    h.finalize().into()
}

/// The chain link of the event at `revision`, given its predecessor's link.
pub fn chain_link(previous: &Hash, revision: u64, content: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update(previous);
    h.update(i64::try_from(revision).unwrap_or(i64::MAX).to_be_bytes());
    h.update(content);
    h.finalize().into()
}

/// The links of events appended after `after` (`None`: a new stream, chained from [`GENESIS`]), one per
/// content digest, starting from the link `previous`.
pub fn chain(previous: &Hash, after: Option<u64>, contents: &[Hash]) -> Vec<Hash> {
    let first = after.map_or(0, |r| r + 1);
    let mut link = *previous;
    (first..)
        .zip(contents)
        .map(|(revision, content)| {
            link = chain_link(&link, revision, content);
            link
        })
        .collect()
}

fn len_prefix(part: &str) -> [u8; 4] {
    u32::try_from(part.len()).unwrap_or(u32::MAX).to_be_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_bytes_between_fields_changes_the_digest() {
        let id = Uuid::nil();
        let a = content_hash(id, "s-1", "ab", 1, "{}", "{}");
        let b = content_hash(id, "s-1a", "b", 1, "{}", "{}");
        assert_ne!(a, b);
    }

    #[test]
    fn the_link_depends_on_the_revision() {
        let c = content_hash(Uuid::nil(), "s-1", "t", 1, "{}", "{}");
        assert_ne!(chain_link(&GENESIS, 0, &c), chain_link(&GENESIS, 1, &c));
    }
}
