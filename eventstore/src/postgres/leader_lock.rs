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
        let mut candidate = LockCandidate::connect(pool, key).await?;
        loop {
            match candidate.try_acquire().await? {
                Ok(lock) => return Ok(lock),
                Err(waiting) => candidate = waiting,
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

/// A dedicated connection waiting for a lock, for callers that do something between tries (a standby
/// projection runner reports on the active runner's progress).
pub struct LockCandidate {
    conn: PgConnection,
    key: String,
}

impl LockCandidate {
    /// Opens the connection that will hold the lock named `key`.
    pub async fn connect(pool: &PgPool, key: &str) -> Result<Self> {
        let conn = pool.connect_options().connect().await.map_err(from_sqlx)?;
        Ok(Self { conn, key: key.to_owned() })
    }

    /// Tries once: the lock, or the candidate back when another process holds it.
    pub async fn try_acquire(mut self) -> Result<std::result::Result<LeaderLock, Self>> {
        let locked: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock(hashtext($1))")
            .bind(&self.key)
            .fetch_one(&mut self.conn)
            .await
            .map_err(from_sqlx)?;
        Ok(if locked { Ok(LeaderLock { conn: self.conn }) } else { Err(self) })
    }
}
