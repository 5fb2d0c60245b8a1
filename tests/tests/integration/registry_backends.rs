//! The registry read model on every backend: the same commands give the same catalogue, with the same
//! filters, search and paging, on Postgres (`rm_registry.servers`) and on SQLite (`registry_servers`).

use std::sync::Arc;

use commands::servers::{CommandContext, RegisterInput, ServerCommands, UpdateInput, UpstreamAuthInput};
use commands::{Keyring, SystemResolver};
use domain::server::{NetworkPolicy, Transport};
use projections::registry::{
    CatalogueEntry, CatalogueFilter, CataloguePage, Registry, RegistryProjection, SqliteRegistry,
    SqliteRegistryProjection,
};
use projections::{RunnerOptions, SqliteRunner, TableRunner};
use uuid::Uuid;

use crate::conformance::{Backend, Opened, on_every_backend};
use crate::support::{DEADLINE, metadata};

/// The catalogue's queries, whichever backend holds it.
enum Catalogue {
    Postgres(Registry),
    Sqlite(SqliteRegistry),
}

impl Catalogue {
    /// Starts the registry runner of `opened`'s backend; returns the queries and the runner's task.
    fn start(opened: &Opened) -> (Self, tokio::task::JoinHandle<projections::ProjectionError>) {
        match opened {
            Opened::Postgres(store, ..) => {
                let runner =
                    TableRunner::new(store.clone(), Arc::new(RegistryProjection::default()), RunnerOptions::default());
                (Self::Postgres(Registry::new(store.pool().clone())), tokio::spawn(runner.run()))
            }
            Opened::Sqlite(store, _) => {
                let projection = Arc::new(SqliteRegistryProjection::default());
                let runner = SqliteRunner::new(store.clone(), projection, RunnerOptions::default());
                (Self::Sqlite(SqliteRegistry::new(store.pool().clone())), tokio::spawn(runner.run()))
            }
        }
    }

    async fn list(&self, filter: CatalogueFilter) -> CataloguePage {
        let filter = CatalogueFilter { limit: filter.limit.max(1), ..filter };
        match self {
            Self::Postgres(r) => r.list(&filter).await,
            Self::Sqlite(r) => r.list(&filter).await,
        }
        .unwrap()
    }

    async fn get(&self, id: Uuid) -> Option<CatalogueEntry> {
        match self {
            Self::Postgres(r) => r.get(id).await,
            Self::Sqlite(r) => r.get(id).await,
        }
        .unwrap()
    }

    async fn position(&self) -> Option<eventstore::Position> {
        match self {
            Self::Postgres(r) => r.position().await,
            Self::Sqlite(r) => r.position().await,
        }
        .ok()
        .flatten()
    }
}

fn input(name: &str, tags: &[&str], description: &str) -> RegisterInput {
    RegisterInput {
        name: name.into(),
        version: None,
        repository: None,
        packages: vec![],
        title: Some(format!("{name} title")),
        description: description.into(),
        tags: tags.iter().map(|t| (*t).to_owned()).collect(),
        transport: Transport::StreamableHttp,
        url: "https://93.184.216.34/mcp".into(),
        upstream_auth: UpstreamAuthInput::None,
        access: Default::default(),
    }
}

fn names(page: &CataloguePage) -> Vec<&str> {
    page.entries.iter().map(|e| e.name.as_str()).collect()
}

async fn the_catalogue_applies_every_server_event_and_answers_filters_search_and_pages(backend: Backend) {
    let opened = backend.open().await;
    let keyring = Arc::new(Keyring::new("k1", [("k1", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")]).unwrap());
    let servers = ServerCommands::new(opened.store(), keyring, NetworkPolicy::default(), Arc::new(SystemResolver));
    let context = || CommandContext { command_id: Uuid::now_v7(), metadata: metadata() };
    let mut ids = Vec::new();
    for (name, tags, description) in [
        ("io.example/weather", &["weather", "public"][..], "Forecasts for any city"),
        ("io.example/files", &["storage"][..], "Files and FOLDERS"),
        ("io.example/echo", &["test", "public"][..], "Says it back"),
        ("io.example/old", &["public"][..], "Retired soon"),
        ("io.example/maps", &["public"][..], "Maps_with_underscores"),
    ] {
        let id = Uuid::now_v7();
        servers.register(id, input(name, tags, description), "owner-1", &context()).await.unwrap();
        ids.push(id);
    }
    let update = UpdateInput { description: Some("Forecasts, updated".into()), ..Default::default() };
    servers.update(ids[0], Some(0), update, &context()).await.unwrap();
    servers.suspend(ids[1], None, "maintenance".into(), &context()).await.unwrap();
    servers.deregister(ids[3], None, "retired".into(), &context()).await.unwrap();
    let reused = Uuid::now_v7();
    servers.register(reused, input("io.example/old", &["new"], "Born again"), "owner-2", &context()).await.unwrap();

    let (catalogue, task) = Catalogue::start(&opened);
    let head = opened.store().committed_head().await.unwrap();
    tests::eventually(DEADLINE, "the registry to catch up", || async {
        (catalogue.position().await >= head).then_some(())
    })
    .await;

    let all = catalogue.list(CatalogueFilter { limit: 50, ..Default::default() }).await;
    assert_eq!(
        names(&all),
        ["io.example/echo", "io.example/files", "io.example/maps", "io.example/old", "io.example/weather"]
    );
    let weather = catalogue.get(ids[0]).await.unwrap();
    assert_eq!((weather.description.as_str(), weather.revision), ("Forecasts, updated", 1));
    assert_eq!(weather.tags, ["public", "weather"], "tags in the order the domain keeps them");
    assert!(catalogue.get(ids[3]).await.is_none(), "the deregistered server is gone");
    let files = catalogue.get(ids[1]).await.unwrap();
    assert_eq!((files.status.as_str(), files.status_reason.as_deref()), ("suspended", Some("maintenance")));
    assert_eq!(catalogue.get(reused).await.unwrap().owner, "owner-2");

    let tagged = catalogue.list(CatalogueFilter { tag: Some("public".into()), limit: 50, ..Default::default() }).await;
    assert_eq!(names(&tagged), ["io.example/echo", "io.example/maps", "io.example/weather"]);
    let suspended =
        catalogue.list(CatalogueFilter { status: Some("suspended".into()), limit: 50, ..Default::default() }).await;
    assert_eq!(names(&suspended), ["io.example/files"]);
    let owned =
        catalogue.list(CatalogueFilter { owner: Some("owner-2".into()), limit: 50, ..Default::default() }).await;
    assert_eq!(names(&owned), ["io.example/old"]);
    // Search ignores case, and LIKE's wildcards in the text are taken literally
    let folders =
        catalogue.list(CatalogueFilter { text: Some("folders".into()), limit: 50, ..Default::default() }).await;
    assert_eq!(names(&folders), ["io.example/files"]);
    let underscore =
        catalogue.list(CatalogueFilter { text: Some("s_w".into()), limit: 50, ..Default::default() }).await;
    assert_eq!(names(&underscore), ["io.example/maps"]);

    // Pages of two, following the cursor
    let mut seen = Vec::new();
    let mut after = None;
    loop {
        let page = catalogue.list(CatalogueFilter { after: after.clone(), limit: 2, ..Default::default() }).await;
        seen.extend(page.entries.iter().map(|e| e.name.clone()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(seen, names(&all));
    task.abort();
}

on_every_backend!(the_catalogue_applies_every_server_event_and_answers_filters_search_and_pages);

/// The registry projection as a later release would ship it: another version, the same tables.
struct NextVersion(SqliteRegistryProjection);

#[async_trait::async_trait]
impl projections::SqliteProjection for NextVersion {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn version(&self) -> u32 {
        self.0.version() + 1
    }
    fn filter(&self) -> &projections::EventFilter {
        self.0.filter()
    }
    fn tables(&self) -> &[&'static str] {
        self.0.tables()
    }
    async fn create(&self, conn: &mut sqlx::SqliteConnection) -> Result<(), projections::ProjectionError> {
        self.0.create(conn).await
    }
    async fn apply(
        &self,
        conn: &mut sqlx::SqliteConnection,
        events: &[eventstore::RecordedEvent],
    ) -> Result<(), projections::ProjectionError> {
        self.0.apply(conn, events).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_read_model_of_another_version_is_rebuilt_by_replay_before_it_serves() {
    use projections::SqliteProjection;
    let opened = Backend::Sqlite.open().await;
    let Opened::Sqlite(store, _) = &opened else { unreachable!("a SQLite store") };
    let keyring = Arc::new(Keyring::new("k1", [("k1", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")]).unwrap());
    let servers = ServerCommands::new(opened.store(), keyring, NetworkPolicy::default(), Arc::new(SystemResolver));
    let context = CommandContext { command_id: Uuid::now_v7(), metadata: metadata() };
    let id = Uuid::now_v7();
    servers.register(id, input("io.example/kept", &["a"], "d"), "owner", &context).await.unwrap();
    let head = opened.store().committed_head().await.unwrap();
    let registry = SqliteRegistry::new(store.pool().clone());
    let run = |projection: Arc<dyn SqliteProjection>| {
        tokio::spawn(SqliteRunner::new(store.clone(), projection, RunnerOptions::default()).run())
    };
    let first = run(Arc::new(SqliteRegistryProjection::default()));
    let next = i64::from(SqliteRegistryProjection::default().version()) + 1;
    tests::eventually(DEADLINE, "the current version to catch up", || async {
        (registry.position().await.ok()? >= head).then_some(())
    })
    .await;
    first.abort();
    // A row the log does not hold: a rebuild must not keep it
    sqlx::query("UPDATE registry_servers SET description = 'stale'").execute(store.pool()).await.unwrap();

    let second = run(Arc::new(NextVersion(SqliteRegistryProjection::default())));
    tests::eventually(DEADLINE, "the next version to rebuild", || async {
        let version: i64 = sqlx::query_scalar("SELECT version FROM read_model_checkpoints WHERE name = 'registry'")
            .fetch_one(store.pool())
            .await
            .ok()?;
        (version == next && registry.position().await.ok()? >= head).then_some(())
    })
    .await;
    second.abort();
    assert_eq!(registry.get(id).await.unwrap().unwrap().description, "d", "rebuilt from the log");
}
