//! The last use of each API key, outside the event log (`api.key_usage`, `api_key_usage` on SQLite):
//! recorded at most once a minute per key from each instance, in the background, so a request never
//! waits for it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::tables::Tables;

/// How often one key's use is written from one instance.
const EVERY: Duration = Duration::from_secs(60);

/// The recorder.
#[derive(Debug, Clone, Default)]
pub struct KeyUsage {
    written: Arc<Mutex<HashMap<Uuid, Instant>>>,
}

impl KeyUsage {
    /// Notes a use of `key_id` now; writes it unless this instance wrote it less than a minute ago.
    pub fn used(&self, tables: &Tables, key_id: Uuid) {
        let due = match self.written.lock() {
            Ok(mut written) => {
                let due = written.get(&key_id).is_none_or(|at| at.elapsed() >= EVERY);
                if due {
                    written.insert(key_id, Instant::now());
                }
                due
            }
            Err(_) => false,
        };
        if !due {
            return;
        }
        let tables = tables.clone();
        tokio::spawn(async move {
            let written = match &tables {
                Tables::Postgres(pool) => sqlx::query(
                    "INSERT INTO api.key_usage (key_id, last_used_at) VALUES ($1, now())
                     ON CONFLICT (key_id) DO UPDATE SET last_used_at = excluded.last_used_at",
                )
                .bind(key_id)
                .execute(pool)
                .await
                .map(drop),
                Tables::Sqlite(pool) => sqlx::query(
                    "INSERT INTO api_key_usage (key_id, last_used_at) VALUES (?, ?)
                     ON CONFLICT (key_id) DO UPDATE SET last_used_at = excluded.last_used_at",
                )
                .bind(key_id)
                .bind(chrono::Utc::now())
                .execute(pool)
                .await
                .map(drop),
            };
            if let Err(error) = written {
                tracing::debug!(%error, "could not record an API key's use");
            }
        });
    }

    /// The last use of each of `keys` that has one.
    pub async fn last_used(
        tables: &Tables,
        keys: &[Uuid],
    ) -> Result<HashMap<Uuid, chrono::DateTime<chrono::Utc>>, sqlx::Error> {
        let rows: Vec<(Uuid, chrono::DateTime<chrono::Utc>)> = match tables {
            Tables::Postgres(pool) => {
                sqlx::query_as("SELECT key_id, last_used_at FROM api.key_usage WHERE key_id = ANY($1)")
                    .bind(keys)
                    .fetch_all(pool)
                    .await?
            }
            Tables::Sqlite(pool) => {
                let mut rows = Vec::with_capacity(keys.len());
                for key in keys {
                    let row: Option<(Uuid, chrono::DateTime<chrono::Utc>)> =
                        sqlx::query_as("SELECT key_id, last_used_at FROM api_key_usage WHERE key_id = ?")
                            .bind(key)
                            .fetch_optional(pool)
                            .await?;
                    rows.extend(row);
                }
                rows
            }
        };
        Ok(rows.into_iter().collect())
    }
}
