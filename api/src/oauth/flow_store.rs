//! The authorization server's short-lived state in the gateway's database, so that any instance serves
//! any step of a flow, on PostgreSQL and on the embedded SQLite store alike. A row is found by the
//! SHA-256 of its secret and taken once: `DELETE … RETURNING` hands it to exactly one request.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::tables::Tables;

/// What kind of state a row holds.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kept {
    /// An authorization between `/authorize` and the IdP's callback.
    Authorization,
    /// A code between the callback and `/token`.
    Code,
    /// A code already redeemed (a second redemption is a replay).
    RedeemedCode,
}

impl Kept {
    fn table(self, tables: &Tables) -> &'static str {
        match (self, tables) {
            (Kept::Authorization, Tables::Postgres(_)) => "api.oauth_authorizations",
            (Kept::Code, Tables::Postgres(_)) => "api.oauth_codes",
            (Kept::RedeemedCode, Tables::Postgres(_)) => "api.oauth_redeemed_codes",
            (Kept::Authorization, Tables::Sqlite(_)) => "api_oauth_authorizations",
            (Kept::Code, Tables::Sqlite(_)) => "api_oauth_codes",
            (Kept::RedeemedCode, Tables::Sqlite(_)) => "api_oauth_redeemed_codes",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Kept::Authorization => "id_hash",
            Kept::Code | Kept::RedeemedCode => "code_hash",
        }
    }
}

/// SHA-256 of a secret: the key of its row.
pub(crate) fn digest(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum StoreError {
    /// The database.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A row that does not read back.
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Keeps `value` under `secret` until `expires_at`.
pub(crate) async fn put<T: Serialize>(
    tables: &Tables,
    kept: Kept,
    secret: &str,
    value: &T,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let json = serde_json::to_string(value)?;
    let (table, key) = (kept.table(tables), kept.key());
    match tables {
        Tables::Postgres(pool) => {
            let sql = format!(
                "INSERT INTO {table} ({key}, data, expires_at) VALUES ($1, $2::jsonb, $3)
                 ON CONFLICT ({key}) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(digest(secret))
                .bind(json)
                .bind(expires_at)
                .execute(pool)
                .await?;
        }
        Tables::Sqlite(pool) => {
            let sql = format!(
                "INSERT INTO {table} ({key}, data, expires_at) VALUES (?, ?, ?)
                 ON CONFLICT ({key}) DO UPDATE SET data = excluded.data, expires_at = excluded.expires_at"
            );
            sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(digest(secret))
                .bind(json)
                .bind(expires_at.timestamp_millis())
                .execute(pool)
                .await?;
        }
    }
    // Expired rows go with the next write: nothing reads them (every read asks for unexpired ones).
    if time_to_sweep() {
        sweep(tables, kept).await;
    }
    Ok(())
}

/// The value under `secret`, if it has not expired; left in place.
pub(crate) async fn peek<T: DeserializeOwned>(
    tables: &Tables,
    kept: Kept,
    secret: &str,
) -> Result<Option<T>, StoreError> {
    let (table, key) = (kept.table(tables), kept.key());
    let json: Option<String> = match tables {
        Tables::Postgres(pool) => {
            let sql = format!("SELECT data::text FROM {table} WHERE {key} = $1 AND expires_at > now()");
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).bind(digest(secret)).fetch_optional(pool).await?
        }
        Tables::Sqlite(pool) => {
            let sql = format!("SELECT data FROM {table} WHERE {key} = ? AND expires_at > ?");
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
                .bind(digest(secret))
                .bind(Utc::now().timestamp_millis())
                .fetch_optional(pool)
                .await?
        }
    };
    Ok(json.map(|j| serde_json::from_str(&j)).transpose()?)
}

/// The value under `secret`, removed: the one request that gets it is the only one that ever will. An
/// expired row is removed and not returned.
pub(crate) async fn take<T: DeserializeOwned>(
    tables: &Tables,
    kept: Kept,
    secret: &str,
) -> Result<Option<T>, StoreError> {
    let (table, key) = (kept.table(tables), kept.key());
    let row: Option<(String, bool)> = match tables {
        Tables::Postgres(pool) => {
            let sql = format!("DELETE FROM {table} WHERE {key} = $1 RETURNING data::text, expires_at > now()");
            sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(digest(secret)).fetch_optional(pool).await?
        }
        Tables::Sqlite(pool) => {
            let sql = format!("DELETE FROM {table} WHERE {key} = ? RETURNING data, expires_at > ?");
            sqlx::query_as(sqlx::AssertSqlSafe(sql))
                .bind(digest(secret))
                .bind(Utc::now().timestamp_millis())
                .fetch_optional(pool)
                .await?
        }
    };
    match row {
        Some((json, true)) => Ok(Some(serde_json::from_str(&json)?)),
        _ => Ok(None),
    }
}

/// Whether this write also sweeps expired rows: one in 64, so that a busy table is kept small without a
/// second statement on every write (an expired row is refused when read anyway).
pub(super) fn time_to_sweep() -> bool {
    rand::random::<u8>() < 4
}

async fn sweep(tables: &Tables, kept: Kept) {
    let table = kept.table(tables);
    let swept = match tables {
        Tables::Postgres(pool) => {
            let sql = format!("DELETE FROM {table} WHERE expires_at < now() - interval '1 minute'");
            sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await.map(drop)
        }
        Tables::Sqlite(pool) => {
            let sql = format!("DELETE FROM {table} WHERE expires_at < ?");
            let cutoff = Utc::now().timestamp_millis() - 60_000;
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(cutoff).execute(pool).await.map(drop)
        }
    };
    if let Err(error) = swept {
        tracing::debug!(%error, "could not sweep expired authorization state");
    }
}
