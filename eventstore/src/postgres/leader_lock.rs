//! One active worker among many processes: a Postgres advisory lock held on a dedicated connection.

use std::time::Duration;

use sqlx::{ConnectOptions, PgConnection, PgPool};

use crate::Result;
use crate::error::from_sqlx;

/// Leadership of a named job (the NATS relay, a projection). Held for as long as this value and its
/// connection live: a crash, a dropped value or a killed backend releases it, and a standby takes over.
///
/// The connection is opened for the lock alone: a lock taken on a pooled connection would go back to the
/// pool with it and outlive the job.
pub struct LeaderLock {
    conn: PgConnection,
}

impl LeaderLock {
    /// Waits until this process holds the lock named `key`, trying again every `retry_every`.
    pub async fn acquire(pool: &PgPool, key: &str, retry_every: Duration) -> Result<Self> {
        let mut conn = pool.connect_options().connect().await.map_err(from_sqlx)?;
        loop {
            let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
                .bind(key)
                .fetch_one(&mut conn)
                .await
                .map_err(from_sqlx)?;
            if locked {
                return Ok(Self { conn });
            }
            tokio::time::sleep(retry_every).await;
        }
    }

    /// Confirms the lock is still held (its connection is alive); an error means another process may
    /// hold it now, so the job must stop.
    pub async fn confirm(&mut self) -> Result<()> {
        sqlx::query("SELECT 1").execute(&mut self.conn).await.map_err(from_sqlx)?;
        Ok(())
    }
}
