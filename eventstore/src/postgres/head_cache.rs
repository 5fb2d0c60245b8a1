//! The last known head (revision and chain link) of recently used streams.
//!
//! An append continues its stream's hash chain from the head's link. The client computes the links, so
//! it needs that link: a command handler has just read the stream (which fills this cache) or appended
//! to it (likewise), so it is nearly always here; otherwise one query fetches it. A stale entry is
//! harmless: the append's compare-and-set checks revision and link together and writes nothing.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::content_hash::Hash;

/// Entries kept; a full cache starts over (a miss costs one query).
const CAPACITY: usize = 65_536;

/// Stream name → (revision, link) of its last event, as last seen by this process.
#[derive(Debug, Default)]
pub(crate) struct HeadCache {
    heads: Mutex<HashMap<String, (u64, Hash)>>,
}

impl HeadCache {
    pub(crate) fn get(&self, stream: &str) -> Option<(u64, Hash)> {
        self.lock().get(stream).copied()
    }

    /// Records the head last seen (an append inside a transaction that later rolls back may leave a head
    /// that never was: the next append's compare-and-set refuses it, and the head is read again).
    pub(crate) fn put(&self, stream: &str, revision: u64, link: Hash) {
        let mut heads = self.lock();
        if heads.len() >= CAPACITY && !heads.contains_key(stream) {
            heads.clear();
        }
        heads.insert(stream.to_owned(), (revision, link));
    }

    pub(crate) fn forget(&self, stream: &str) {
        self.lock().remove(stream);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (u64, Hash)>> {
        // A poisoned cache is still a valid cache: every entry is checked by the database.
        self.heads.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
