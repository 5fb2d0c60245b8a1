//! The catalogue's entries as rendered JSON, kept in memory by server id and revision: a page of the
//! catalogue reads only the ids, names and revisions of its rows from the read model and takes each
//! entry's JSON from here, reading in full and rendering only the servers that changed since.
//!
//! Every change to a server's row is an event on its stream and moves the row's revision, so
//! `(id, revision)` names one rendering: a cached entry is never served after its row changed, and a
//! read model rebuilt from the same events renders the same. A page still asks the read model which
//! rows it holds, so pages are exactly as fresh as reads of the table (and see `min_position` waits).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use serde_json::value::RawValue;
use uuid::Uuid;

use super::CatalogueEntry;
use crate::ProjectionError;

/// The memory rendered entries may take: the most read of a large catalogue (an entry is about a kilobyte).
const BUDGET_BYTES: u64 = 64 << 20;

/// What an entry costs the budget: its JSON and its bookkeeping.
#[derive(Clone)]
struct Bytes;

impl quick_cache::Weighter<Uuid, (i64, Arc<RawValue>)> for Bytes {
    fn weight(&self, _: &Uuid, (_, json): &(i64, Arc<RawValue>)) -> u64 {
        json.get().len() as u64 + 64
    }
}

/// Rendered entries by server id, with the revision they render.
#[derive(Clone)]
pub struct EntryCache(Arc<quick_cache::sync::Cache<Uuid, (i64, Arc<RawValue>), Bytes>>);

impl Default for EntryCache {
    fn default() -> Self {
        Self(Arc::new(quick_cache::sync::Cache::with_weighter(BUDGET_BYTES as usize / 1024, BUDGET_BYTES, Bytes)))
    }
}

impl std::fmt::Debug for EntryCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EntryCache").field("entries", &self.0.len()).finish()
    }
}

impl EntryCache {
    fn get(&self, id: Uuid, revision: i64) -> Option<Arc<RawValue>> {
        self.0.get(&id).filter(|(kept, _)| *kept == revision).map(|(_, json)| json)
    }

    fn render(&self, entry: &CatalogueEntry) -> Result<Arc<RawValue>, ProjectionError> {
        let json: Arc<RawValue> = serde_json::value::to_raw_value(entry)?.into();
        self.0.insert(entry.id, (entry.revision, json.clone()));
        Ok(json)
    }
}

/// A page of the catalogue, its entries rendered.
#[derive(Debug, Clone)]
pub struct RenderedPage {
    /// The servers' JSON, in name order.
    pub entries: Vec<Arc<RawValue>>,
    /// The last name, when more may follow.
    pub next: Option<String>,
}

/// What a page reads of each of its rows.
pub(crate) struct PageRow {
    pub(crate) id: Uuid,
    pub(crate) name: String,
    pub(crate) revision: i64,
}

/// The page of `rows` (in name order, at most `limit` + 1: one more says a page follows), each entry from
/// the cache, or read in full by `fetch` (the ids missing) and rendered. A row deleted between the two
/// reads is left out.
pub(crate) async fn assemble<F, Fut>(
    cache: &EntryCache,
    rows: Vec<PageRow>,
    limit: u32,
    fetch: F,
) -> Result<RenderedPage, ProjectionError>
where
    F: FnOnce(Vec<Uuid>) -> Fut,
    Fut: Future<Output = Result<Vec<CatalogueEntry>, ProjectionError>>,
{
    let (rows, next) = crate::sql::page(rows, limit, |row| row.name.clone());
    let mut found: Vec<Option<Arc<RawValue>>> = rows.iter().map(|row| cache.get(row.id, row.revision)).collect();
    let missing: Vec<Uuid> =
        rows.iter().zip(&found).filter(|(_, json)| json.is_none()).map(|(row, _)| row.id).collect();
    if !missing.is_empty() {
        let fetched: HashMap<Uuid, CatalogueEntry> = fetch(missing).await?.into_iter().map(|e| (e.id, e)).collect();
        for (row, slot) in rows.iter().zip(found.iter_mut()) {
            if slot.is_none()
                && let Some(entry) = fetched.get(&row.id)
            {
                *slot = Some(cache.render(entry)?);
            }
        }
    }
    Ok(RenderedPage { entries: found.into_iter().flatten().collect(), next })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: Uuid, revision: i64, description: &str) -> CatalogueEntry {
        let at = chrono::DateTime::from_timestamp(0, 0).unwrap();
        CatalogueEntry {
            id,
            name: format!("io.example/{id}"),
            version: "1.0.0".into(),
            title: None,
            description: description.into(),
            tags: vec![],
            repository: None,
            packages: sqlx::types::Json(serde_json::json!([])),
            transport: "streamable_http".into(),
            url: "https://example.com/mcp".into(),
            auth_mode: "none".into(),
            access: sqlx::types::Json(serde_json::json!({})),
            owner: "o".into(),
            status: "active".into(),
            status_reason: None,
            health: None,
            tools: None,
            revision,
            registered_at: at,
            updated_at: at,
        }
    }

    fn nothing(ids: Vec<Uuid>) -> std::future::Ready<Result<Vec<CatalogueEntry>, ProjectionError>> {
        panic!("nothing to read, asked for {ids:?}")
    }

    fn row(e: &CatalogueEntry) -> PageRow {
        PageRow { id: e.id, name: e.name.clone(), revision: e.revision }
    }

    #[tokio::test]
    async fn a_page_reads_only_what_changed_and_never_serves_an_old_revision() {
        let cache = EntryCache::default();
        let (a, b) = (entry(Uuid::from_u128(1), 0, "a"), entry(Uuid::from_u128(2), 0, "b"));
        let first = assemble(&cache, vec![row(&a), row(&b)], 20, |ids| {
            assert_eq!(ids.len(), 2);
            let (a, b) = (a.clone(), b.clone());
            async move { Ok(vec![b, a]) }
        })
        .await
        .unwrap();
        assert!(first.entries[0].get().contains("\"a\"") && first.entries[1].get().contains("\"b\""));
        // b changed: only b is read again, and its new rendering served.
        let b1 = entry(b.id, 1, "b changed");
        let second = assemble(&cache, vec![row(&a), row(&b1)], 20, |ids| {
            assert_eq!(ids, vec![b1.id]);
            let b1 = b1.clone();
            async move { Ok(vec![b1]) }
        })
        .await
        .unwrap();
        assert!(second.entries[1].get().contains("b changed"), "{:?}", second.entries);
        // a row deleted between the two reads is left out; one more row than the page says a page follows.
        let c = entry(Uuid::from_u128(3), 0, "c");
        let third = assemble(&cache, vec![row(&a), row(&c), row(&b1)], 2, |_| async { Ok(vec![]) }).await.unwrap();
        assert_eq!(third.entries.len(), 1);
        assert_eq!(third.next, Some(c.name.clone()));
        // the same page again reads nothing.
        let again = assemble(&cache, vec![row(&a), row(&b1)], 20, nothing).await.unwrap();
        assert_eq!(again.entries.len(), 2);
    }
}
