//! The database the gateway keeps its own tables and read models in, next to the event store: PostgreSQL
//! (production) or the embedded SQLite file.

use sqlx::{PgPool, SqlitePool};

/// How long a readiness ping waits for the database.
const PING_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

/// The gateway's database.
#[derive(Debug, Clone)]
pub enum Tables {
    /// PostgreSQL.
    Postgres(PgPool),
    /// The embedded SQLite file (the event store's own).
    Sqlite(SqlitePool),
}

impl Tables {
    /// Whether the database answers within a few seconds (a readiness probe must not wait for the
    /// pool's own timeout); when not, the server's own words.
    pub async fn ping(&self) -> Result<(), String> {
        let query = async {
            match self {
                Tables::Postgres(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
                Tables::Sqlite(pool) => sqlx::query("SELECT 1").execute(pool).await.map(drop),
            }
        };
        let answered = tokio::time::timeout(PING_WITHIN, query).await.unwrap_or(Err(sqlx::Error::PoolTimedOut));
        match (answered, self) {
            (Ok(()), _) => Ok(()),
            (Err(sqlx::Error::PoolTimedOut), Tables::Postgres(pool)) => {
                Err(postgres_cause(&pool.connect_options()).await)
            }
            (Err(e), _) => Err(e.to_string()),
        }
    }

    /// How long the oldest transaction a client holds open in this database has been open, in seconds
    /// (autovacuum and other workers are not counted; 0 with none;
    /// None on SQLite, where one writer at a time holds nothing open across requests). A transaction
    /// left open holds back the readers of `$all` and the vacuum.
    pub async fn oldest_open_transaction_s(&self) -> Result<Option<f64>, String> {
        let Tables::Postgres(pool) = self else { return Ok(None) };
        let query = sqlx::query_scalar::<_, f64>(
            "SELECT COALESCE(EXTRACT(EPOCH FROM max(clock_timestamp() - xact_start)), 0)::float8 \
             FROM pg_stat_activity \
             WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() AND datname = current_database() \
               AND backend_type = 'client backend' AND state <> 'idle'",
        )
        .fetch_one(pool);
        match tokio::time::timeout(PING_WITHIN, query).await {
            Ok(Ok(age)) => Ok(Some(age)),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err("no answer".to_owned()),
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

/// Why PostgreSQL gives no connection, in the server's own words: a pool that waited in vain says only
/// that it timed out, while the server refused each attempt with a reason (`too many clients already`,
/// `the database system is starting up`, a password refused). One connection made outside the pool hears
/// it. At most one such connection at a time, and its answer is kept a few seconds: a flood of readiness
/// probes against a full server must not become a flood of connection attempts.
pub async fn postgres_cause(options: &sqlx::postgres::PgConnectOptions) -> String {
    use sqlx::ConnectOptions;
    type Causes = std::collections::HashMap<String, (std::time::Instant, String)>;
    static LAST: std::sync::LazyLock<tokio::sync::Mutex<Causes>> = std::sync::LazyLock::new(Default::default);
    let server = format!(
        "{}:{}/{}@{}",
        options.get_host(),
        options.get_port(),
        options.get_database().unwrap_or_default(),
        options.get_username()
    );
    let Ok(mut last) = LAST.try_lock() else {
        return "the pool timed out (the server's reason is being asked for)".into();
    };
    if let Some((_, cause)) = last.get(&server).filter(|(at, _)| at.elapsed() < CAUSE_KEPT) {
        return cause.clone();
    }
    let cause = match tokio::time::timeout(std::time::Duration::from_secs(5), options.connect()).await {
        Ok(Ok(_connection)) => "the pool timed out, but a new connection succeeds (every connection is busy)".into(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "the database does not answer (5 s)".into(),
    };
    last.insert(server, (std::time::Instant::now(), cause.clone()));
    cause
}

/// How long the server's reason for refusing connections is kept.
const CAUSE_KEPT: std::time::Duration = std::time::Duration::from_secs(5);
