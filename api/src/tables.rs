//! The database the gateway keeps its own tables and read models in, next to the event store: PostgreSQL
//! (production) or the embedded SQLite file.

use sqlx::{PgPool, SqlitePool};

/// The gateway's database.
#[derive(Debug, Clone)]
pub enum Tables {
    /// PostgreSQL.
    Postgres(PgPool),
    /// The embedded SQLite file (the event store's own).
    Sqlite(SqlitePool),
}

impl Tables {
    /// True when the database answers.
    pub async fn ping(&self) -> bool {
        match self {
            Tables::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.is_ok(),
            Tables::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.is_ok(),
        }
    }

    /// The PostgreSQL pool, when the gateway runs on PostgreSQL.
    pub fn postgres(&self) -> Option<&PgPool> {
        match self {
            Tables::Postgres(pool) => Some(pool),
            Tables::Sqlite(_) => None,
        }
    }
}
