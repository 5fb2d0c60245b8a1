//! The catalogue's documents as rendered JSON, kept in memory by key and stamp: a page reads only the keys
//! and stamps of its rows from the read model and takes each document from here, reading in full and
//! rendering only the rows that changed since it was last rendered.
//!
//! A stamp moves with every change to its row: a server's stream revision (`/api/v1/servers`), the `$all`
//! position of the event that last changed a release (`/v0.1/servers`: one event may change the releases
//! of another server, so the stream revision would not do). So `(key, stamp)` names one rendering: a
//! document is never served after its row changed, and a read model rebuilt from the same events renders
//! the same. A page still asks the read model which rows it holds, so pages are exactly as fresh as reads
//! of the table (and see `min_position` waits).

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::Arc;

use serde_json::value::RawValue;

use crate::ProjectionError;

/// The memory a cache's documents may take: the most read of a large catalogue (a document is about a
/// kilobyte).
const BUDGET_BYTES: u64 = 64 << 20;

/// What a document costs the budget: its JSON and its bookkeeping.
#[derive(Clone)]
struct Bytes;

impl<K> quick_cache::Weighter<K, (i64, Arc<RawValue>)> for Bytes {
    fn weight(&self, _: &K, (_, json): &(i64, Arc<RawValue>)) -> u64 {
        json.get().len() as u64 + 64
    }
}

/// Rendered documents by key, with the stamp of the row they render.
pub struct RenderCache<K>(Arc<quick_cache::sync::Cache<K, (i64, Arc<RawValue>), Bytes>>);

impl<K> Clone for RenderCache<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K: Eq + Hash + Clone> Default for RenderCache<K> {
    fn default() -> Self {
        Self(Arc::new(quick_cache::sync::Cache::with_weighter(BUDGET_BYTES as usize / 1024, BUDGET_BYTES, Bytes)))
    }
}

impl<K: Eq + Hash + Clone> std::fmt::Debug for RenderCache<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RenderCache").field("documents", &self.0.len()).finish()
    }
}

impl<K: Eq + Hash + Clone> RenderCache<K> {
    fn get(&self, key: &K, stamp: i64) -> Option<Arc<RawValue>> {
        self.0.get(key).filter(|(kept, _)| *kept == stamp).map(|(_, json)| json)
    }

    fn keep(&self, key: K, stamp: i64, json: Box<RawValue>) -> Arc<RawValue> {
        let json: Arc<RawValue> = json.into();
        self.0.insert(key, (stamp, json.clone()));
        json
    }
}

/// The documents of the rows `keys` (their keys and stamps, in page order): each from `cache`, or read in
/// full by `fetch` (given the keys missing), stamped by `stamp_of` and rendered by `render`. A row gone
/// between the two reads is left out.
pub(super) async fn assemble<K, E, Fetch, Fut>(
    cache: &RenderCache<K>,
    keys: &[(K, i64)],
    fetch: Fetch,
    stamp_of: impl Fn(&E) -> (K, i64),
    render: impl Fn(&E) -> Result<Box<RawValue>, serde_json::Error>,
) -> Result<Vec<Arc<RawValue>>, ProjectionError>
where
    K: Eq + Hash + Clone,
    Fetch: FnOnce(Vec<K>) -> Fut,
    Fut: Future<Output = Result<Vec<E>, ProjectionError>>,
{
    let mut found: Vec<Option<Arc<RawValue>>> = keys.iter().map(|(key, stamp)| cache.get(key, *stamp)).collect();
    let missing: Vec<K> =
        keys.iter().zip(&found).filter(|(_, json)| json.is_none()).map(|((k, _), _)| k.clone()).collect();
    if !missing.is_empty() {
        let mut rendered: HashMap<K, Arc<RawValue>> = HashMap::new();
        for entry in fetch(missing).await? {
            let (key, stamp) = stamp_of(&entry);
            rendered.insert(key.clone(), cache.keep(key, stamp, render(&entry)?));
        }
        for ((key, _), slot) in keys.iter().zip(found.iter_mut()) {
            if slot.is_none() {
                *slot = rendered.get(key).cloned();
            }
        }
    }
    Ok(found.into_iter().flatten().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row: its key, stamp and text.
    type Row = (u32, i64, &'static str);

    fn render(row: &Row) -> Result<Box<RawValue>, serde_json::Error> {
        serde_json::value::to_raw_value(row.2)
    }

    fn nothing(keys: Vec<u32>) -> std::future::Ready<Result<Vec<Row>, ProjectionError>> {
        panic!("nothing to read, asked for {keys:?}")
    }

    async fn page(cache: &RenderCache<u32>, keys: &[(u32, i64)], rows: Vec<Row>) -> Vec<String> {
        let expected: Vec<u32> = keys.iter().map(|(k, _)| *k).filter(|k| rows.iter().any(|r| r.0 == *k)).collect();
        let fetch = |asked: Vec<u32>| {
            assert!(asked.iter().all(|k| expected.contains(k) || !rows.iter().any(|r| r.0 == *k)), "{asked:?}");
            std::future::ready(Ok(rows.into_iter().filter(|r| asked.contains(&r.0)).collect()))
        };
        let documents = assemble(cache, keys, fetch, |r: &Row| (r.0, r.1), render).await.unwrap();
        documents.iter().map(|d| d.get().to_owned()).collect()
    }

    #[tokio::test]
    async fn a_page_reads_only_what_changed_and_never_serves_an_old_stamp() {
        let cache = RenderCache::default();
        assert_eq!(page(&cache, &[(1, 0), (2, 0)], vec![(2, 0, "b"), (1, 0, "a")]).await, ["\"a\"", "\"b\""]);
        // The same page again reads nothing.
        let again = assemble(&cache, &[(1, 0), (2, 0)], nothing, |r: &Row| (r.0, r.1), render).await.unwrap();
        assert_eq!(again.len(), 2);
        // 2 changed: only 2 is read again, and its new rendering served.
        assert_eq!(page(&cache, &[(1, 0), (2, 1)], vec![(2, 1, "b changed")]).await, ["\"a\"", "\"b changed\""]);
        // A row gone between the two reads is left out.
        assert_eq!(page(&cache, &[(1, 0), (3, 0), (2, 1)], vec![]).await, ["\"a\"", "\"b changed\""]);
    }
}
