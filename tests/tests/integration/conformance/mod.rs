//! The event store's contract, written once and run against every backend: each case is a function of
//! the [`Backend`], and [`on_every_backend!`] makes one test per backend of it (`<case>::postgres`,
//! `<case>::sqlite`). What only one backend can show (Postgres's commit groups and snapshots, a crash of
//! its server) stays in `eventstore/`.

mod appends;
mod claims;
mod concurrency;
mod following;
mod limits;
mod reads;
mod subscriptions;
mod tamper;
mod upcasting;

use std::sync::Arc;

use eventstore::{
    EventStore, PgEventStore, PgEventStoreOptions, SqliteEventStore, SqliteEventStoreOptions, TailCacheLimits,
    Upcasters,
};
use tests::{PostgresOptions, PostgresServer, TestDatabase};
use uuid::Uuid;

/// Makes `mod <case> { postgres, sqlite }` tests of each `async fn <case>(backend: Backend)`.
macro_rules! on_every_backend {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                use crate::conformance::Backend;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$case(Backend::Postgres).await
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$case(Backend::Sqlite).await
                }
            }
        )*
    };
}
pub(crate) use on_every_backend;

/// The backends the contract holds on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Postgres,
    Sqlite,
}

/// Settings a case may change.
#[derive(Clone, Default)]
pub(crate) struct Settings {
    pub(crate) upcasters: Upcasters,
    pub(crate) max_event_bytes: Option<usize>,
    pub(crate) tail_cache: Option<TailCacheLimits>,
}

/// A store under test, with what keeps it alive (its database, its directory), and a way to look at its
/// tables as they are.
pub(crate) enum Opened {
    // The server of a store opened alone: kept running until the store is dropped.
    Postgres(PgEventStore, TestDatabase, #[expect(dead_code, reason = "held, never read")] Option<Box<PostgresServer>>),
    Sqlite(SqliteEventStore, tempfile::TempDir),
}

impl Backend {
    /// A fresh, migrated store.
    pub(crate) async fn open(self) -> Opened {
        self.open_with(Settings::default()).await
    }

    /// A fresh store on a server of its own: where another test's open transaction in the shared cluster
    /// would hold `$all` readers back (SQLite files are always the test's own).
    pub(crate) async fn open_alone(self) -> Opened {
        match self {
            Backend::Postgres => {
                let server = PostgresServer::start(PostgresOptions::default()).expect("test cluster");
                let Opened::Postgres(store, db, _) = open_postgres(&server, &Settings::default()).await else {
                    unreachable!("a Postgres store")
                };
                Opened::Postgres(store, db, Some(Box::new(server)))
            }
            Backend::Sqlite => self.open().await,
        }
    }

    /// A fresh, migrated store with `settings`.
    pub(crate) async fn open_with(self, settings: Settings) -> Opened {
        match self {
            Backend::Postgres => open_postgres(PostgresServer::shared().expect("test cluster"), &settings).await,
            Backend::Sqlite => {
                let dir = tempfile::Builder::new().prefix("mgw-sqlite-").tempdir().expect("temporary directory");
                let store = SqliteEventStore::open(&dir.path().join("events.db"), sqlite_options(&settings))
                    .await
                    .expect("sqlite store");
                Opened::Sqlite(store, dir)
            }
        }
    }
}

async fn open_postgres(server: &PostgresServer, settings: &Settings) -> Opened {
    let db = server.create_database().await.expect("database");
    let pool = db.pool(20).await.expect("pool");
    PgEventStore::migrate(&pool).await.expect("migrations");
    Opened::Postgres(PgEventStore::new(pool, pg_options(settings)), db, None)
}

fn pg_options(settings: &Settings) -> PgEventStoreOptions {
    let defaults = PgEventStoreOptions::default();
    PgEventStoreOptions {
        upcasters: settings.upcasters.clone(),
        max_event_bytes: settings.max_event_bytes.unwrap_or(defaults.max_event_bytes),
        tail_cache: settings.tail_cache.unwrap_or(defaults.tail_cache),
        ..defaults
    }
}

fn sqlite_options(settings: &Settings) -> SqliteEventStoreOptions {
    let defaults = SqliteEventStoreOptions::default();
    SqliteEventStoreOptions {
        upcasters: settings.upcasters.clone(),
        max_event_bytes: settings.max_event_bytes.unwrap_or(defaults.max_event_bytes),
        tail_cache: settings.tail_cache.unwrap_or(defaults.tail_cache),
    }
}

impl Opened {
    /// The store, as the gateway holds it.
    pub(crate) fn store(&self) -> Arc<dyn EventStore> {
        match self {
            Opened::Postgres(store, ..) => Arc::new(store.clone()),
            Opened::Sqlite(store, _) => Arc::new(store.clone()),
        }
    }

    /// Another store instance on the same database (its own pool, its own caches and turns), with
    /// `settings`: another process, or the next release.
    pub(crate) async fn another(&self, settings: Settings) -> Arc<dyn EventStore> {
        match self {
            Opened::Postgres(_, db, _) => {
                Arc::new(PgEventStore::new(db.pool(10).await.expect("pool"), pg_options(&settings)))
            }
            Opened::Sqlite(_, dir) => Arc::new(
                SqliteEventStore::open(&dir.path().join("events.db"), sqlite_options(&settings))
                    .await
                    .expect("sqlite store"),
            ),
        }
    }

    /// One number from the tables: `pg` on Postgres, `sqlite` on SQLite (no parameters).
    async fn count(&self, pg: &'static str, sqlite: &'static str) -> i64 {
        match self {
            Opened::Postgres(store, ..) => sqlx::query_scalar(pg).fetch_one(store.pool()).await.expect("count"),
            Opened::Sqlite(store, _) => sqlx::query_scalar(sqlite).fetch_one(store.pool()).await.expect("count"),
        }
    }

    /// Rows in the events table.
    pub(crate) async fn row_count(&self) -> i64 {
        self.count("SELECT count(*) FROM es.events", "SELECT count(*) FROM events").await
    }

    /// Rows in the streams table.
    pub(crate) async fn stream_count(&self) -> i64 {
        self.count("SELECT count(*) FROM es.streams", "SELECT count(*) FROM streams").await
    }

    /// The claims of `scope`, as (value, stream) pairs in value order.
    pub(crate) async fn claims(&self, scope: &str) -> Vec<(String, String)> {
        match self {
            Opened::Postgres(store, ..) => {
                sqlx::query_as("SELECT value, stream_id FROM es.claims WHERE scope = $1 ORDER BY value")
                    .bind(scope)
                    .fetch_all(store.pool())
                    .await
            }
            Opened::Sqlite(store, _) => {
                sqlx::query_as("SELECT value, stream_id FROM claims WHERE scope = ? ORDER BY value")
                    .bind(scope)
                    .fetch_all(store.pool())
                    .await
            }
        }
        .expect("claims")
    }

    /// An event's stored correlation id, schema version and data, as in the table.
    pub(crate) async fn stored(&self, event_id: Uuid) -> (Uuid, i16, String) {
        match self {
            Opened::Postgres(store, ..) => {
                sqlx::query_as("SELECT correlation_id, schema_version, data::text FROM es.events WHERE event_id = $1")
                    .bind(event_id)
                    .fetch_one(store.pool())
                    .await
            }
            Opened::Sqlite(store, _) => {
                sqlx::query_as("SELECT correlation_id, schema_version, data FROM events WHERE event_id = ?")
                    .bind(event_id)
                    .fetch_one(store.pool())
                    .await
            }
        }
        .expect("stored event")
    }

    /// Runs `pg` or `sqlite` (one parameter: `stream`) on the store's own tables with the append-only
    /// guard off, as somebody with access to the database could.
    pub(crate) async fn behind_its_back(&self, pg: &'static str, sqlite: &'static str, stream: &str) {
        use sqlx::Connection;
        match self {
            Opened::Postgres(_, db, _) => {
                let mut conn = sqlx::PgConnection::connect(&db.url).await.expect("connection");
                sqlx::query("SET session_replication_role = replica").execute(&mut conn).await.expect("guard off");
                sqlx::query(pg).bind(stream).execute(&mut conn).await.expect("tampering");
            }
            Opened::Sqlite(_, dir) => {
                let options = SqliteEventStore::connect_options(&dir.path().join("events.db"));
                let mut conn = sqlx::SqliteConnection::connect_with(&options).await.expect("connection");
                for trigger in
                    ["DROP TRIGGER IF EXISTS events_refuse_update", "DROP TRIGGER IF EXISTS events_refuse_delete"]
                {
                    sqlx::query(trigger).execute(&mut conn).await.expect("guard off");
                }
                sqlx::query(sqlite).bind(stream).execute(&mut conn).await.expect("tampering");
            }
        }
    }

    /// Runs `pg` or `sqlite` on the store's pool, guard on: the database's answer.
    pub(crate) async fn plainly(&self, pg: &'static str, sqlite: &'static str) -> Result<(), sqlx::Error> {
        match self {
            Opened::Postgres(store, ..) => sqlx::query(pg).execute(store.pool()).await.map(drop),
            Opened::Sqlite(store, _) => sqlx::query(sqlite).execute(store.pool()).await.map(drop),
        }
    }
}

/// Two processes opening one new SQLite file at once both get a migrated store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_stores_opening_one_new_sqlite_file_at_once_both_start() {
    for _ in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.db");
        let (a, b) = tokio::join!(
            SqliteEventStore::open(&path, SqliteEventStoreOptions::default()),
            SqliteEventStore::open(&path, SqliteEventStoreOptions::default())
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let stream = eventstore::StreamName::from_parts("server", Uuid::now_v7()).unwrap();
        a.append(&stream, eventstore::ExpectedRevision::NoStream, crate::support::events(1)).await.unwrap();
        assert_eq!(b.read_all(None, 10).await.unwrap().len(), 1);
    }
}
