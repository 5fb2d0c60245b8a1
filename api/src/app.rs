//! Starting a gateway instance: database, event store, relay, projections, and the router's state.

use std::net::SocketAddr;
use std::sync::Arc;

use commands::servers::ServerCommands;
use commands::{Keyring, SealingError, SystemResolver};
use domain::server::NetworkPolicy;
use eventstore::relay::{NatsFeedOptions, NatsSubscription, Relay, RelayOptions};
use eventstore::{PgEventStore, PgEventStoreOptions, SqliteEventStore, SqliteEventStoreOptions, SubscriptionOptions};
use metrics_exporter_prometheus::PrometheusHandle;
use projections::audit::{AuditKeys, AuditProjection, CheckpointPolicy, SqliteAuditProjection, run_checkpointer};
use projections::authz::Authz;
use projections::registry::{Catalogue, Registry, RegistryProjection, SqliteRegistry, SqliteRegistryProjection};
use projections::snapshot::SnapshotTables;
use projections::{MemoryRunner, RunnerOptions, SqliteRunner, TableRunner};
use sqlx::postgres::PgPoolOptions;
use tokio::task::JoinHandle;

use crate::state::AppState;

/// Everything an instance needs to start. Its `Debug` hides the keys and the URLs' credentials.
#[derive(Clone)]
pub struct GatewayConfig {
    /// The store: `postgres://…` (production), or `sqlite://<path>`, the embedded default (one instance).
    pub database_url: String,
    /// NATS; without it, other instances are not woken and the relay does not run (one instance only).
    pub nats_url: Option<String>,
    /// Where the API listens.
    pub listen: SocketAddr,
    /// Id of the key that seals new secrets.
    pub sealing_key_current: String,
    /// Every sealing key, `(id, base64 of 32 bytes)`; old keys stay to open old secrets.
    pub sealing_keys: Vec<(String, String)>,
    /// Upstream hosts allowed over http and on internal addresses.
    pub upstream_allowlist: Vec<String>,
    /// Database connections.
    pub max_connections: u32,
    /// Audit checkpoint signing keys, `(id, base64 of a 32-byte Ed25519 seed)`; the first signs. Without
    /// any, the trail is chained but not signed.
    pub audit_signing_keys: Vec<(String, String)>,
    /// The gateway's public base URL: the `iss` of its tokens (`{public_url}/api/v1` is their `aud`).
    /// Without it, `http://<listen>`.
    pub public_url: Option<String>,
    /// Identity providers people log in through.
    pub idps: Vec<crate::oidc::IdpConfig>,
    /// How long the authorization model may lag the store before every request is refused.
    pub authz_max_lag: std::time::Duration,
    /// Who may read the `/v0.1` catalogue.
    pub registry_reads: crate::registry_reads::RegistryReads,
    /// OAuth clients the operator configured (beside those that register themselves).
    pub oauth_clients: Vec<crate::oauth::clients::ConfiguredClient>,
    /// Where forwarded tool calls are journaled until their records are in the store; the calls a
    /// killed process left there are recorded at start. Without it, a killed gateway loses the records
    /// still queued and of the calls running.
    pub call_journal: Option<std::path::PathBuf>,
    /// How often every routed server's connection is checked (health and tools recorded when they
    /// change); `None`: never.
    pub health_check_interval: Option<std::time::Duration>,
    /// How many MCP requests one principal, and one server, may have in flight.
    pub proxy_limits: crate::proxy::limits::ProxyLimits,
    /// Requests per client address and per principal, by route group, and the proxies trusted to name
    /// the client.
    pub rate_limits: crate::rate_limit::RateLimitConfig,
    /// Origins whose pages may call the REST API with the person's cookies (a console served from
    /// elsewhere); empty: same origin only.
    pub cors_origins: Vec<String>,
    /// What readiness probes cost, and the token signing key's life.
    pub readiness: crate::readiness::ReadinessConfig,
    /// Whether this instance rotates the token signing key before its life ends.
    pub rotate_signing_keys: bool,
    /// The emergency owner credential (its hash), and whether it is accepted now.
    pub break_glass: Option<crate::break_glass::BreakGlassConfig>,
    /// Alert rules and the channels they go to.
    pub alerting: crate::alerting::AlertingConfig,
    /// After SIGTERM, how long /ready answers 503 while requests are still served.
    pub shutdown_drain: std::time::Duration,
    /// Then, how long the requests in flight may take to finish.
    pub shutdown_timeout: std::time::Duration,
    /// When the authorization model's snapshots are taken.
    pub snapshots: SnapshotConfig,
    /// Whether usage analytics are kept (the `analytics` read model and its API).
    pub analytics: bool,
}

/// The table read models' runners: under a steady stream of appends, one batch every 20 ms rather than
/// every 2 ms. Each read and batch costs the database a few statements and a commit whatever it carries;
/// at a few hundred appends a second (the OAuth flows of many clients) reads every 2 ms by two runners
/// took most of a core of this 2-core machine from the requests (the `oauth` bench's profile). A lone
/// append is still applied at once: the interval only spaces reads that follow one another.
fn table_runner_options() -> RunnerOptions {
    RunnerOptions { min_read_interval: std::time::Duration::from_millis(20), ..RunnerOptions::default() }
}

/// Usage analytics count calls in minute buckets and nobody waits for them to show a command's effect:
/// a batch a second, however busy the proxy. Each batch costs the same whatever it carries (a transaction
/// and a commit, a read of the events the tail in memory does not hold yet, an upsert of the same few
/// rows): it cost the proxy bench 8 % of its calls at 50 batches a second; at four, analytics as a whole
/// measured 1.3 % of the gateway's CPU per call.
/// A batch holds a second of the busiest proxy this machine runs, inside the tail followers share
/// (`eventstore::TailCacheLimits`).
fn analytics_runner_options() -> RunnerOptions {
    RunnerOptions { batch_size: 10_000, min_read_interval: std::time::Duration::from_secs(1), ..table_runner_options() }
}

impl GatewayConfig {
    /// The issuer of the gateway's tokens.
    pub fn issuer(&self) -> String {
        self.public_url.clone().unwrap_or_else(|| format!("http://{}", self.listen)).trim_end_matches('/').to_owned()
    }
}

impl std::fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let key_ids: Vec<&String> = self.sealing_keys.iter().map(|(id, _)| id).collect();
        f.debug_struct("GatewayConfig")
            .field("database_url", &without_credentials(&self.database_url))
            .field("nats_url", &self.nats_url.as_deref().map(without_credentials))
            .field("listen", &self.listen)
            .field("sealing_key_current", &self.sealing_key_current)
            .field("sealing_key_ids", &key_ids)
            .field("upstream_allowlist", &self.upstream_allowlist)
            .field("max_connections", &self.max_connections)
            .field("audit_signing_key_ids", &self.audit_signing_keys.iter().map(|(id, _)| id).collect::<Vec<_>>())
            .finish()
    }
}

/// `url` with any user name and password removed, for messages.
pub fn without_credentials(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_owned(),
    }
}

/// Why an instance could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be reached.
    #[error("cannot connect to the database: {0}")]
    Database(#[from] sqlx::Error),
    /// The schema could not be migrated.
    #[error("cannot migrate the database: {0}")]
    Migrate(#[from] eventstore::Error),
    /// The sealing keys are wrong.
    #[error("sealing keys: {0}")]
    Sealing(#[from] SealingError),
    /// The audit signing keys are wrong.
    #[error("audit signing keys: {0}")]
    AuditKeys(#[from] projections::audit::AuditKeyError),
    /// An identity provider is configured wrongly.
    #[error("identity providers: {0}")]
    Idps(#[from] crate::oidc::OidcError),
    /// The token signing keys could not be loaded, created or tested.
    #[error("token signing keys: {0}")]
    Tokens(#[from] commands::CommandError),
    /// Another process serves the embedded store.
    #[error(transparent)]
    StoreLocked(#[from] crate::store_lock::StoreLockError),
    /// PostgreSQL refused every connection, for this reason.
    #[error("the database refuses connections: {0}")]
    DatabaseRefused(String),
    /// An embedded store was configured with what only several instances need.
    #[error("{0}")]
    Embedded(&'static str),
    /// The proxy's HTTP client could not be built.
    #[error("the MCP proxy: {0}")]
    Proxy(String),
    /// The call journal could not be read, recovered or opened.
    #[error(transparent)]
    CallJournal(#[from] crate::proxy::journal::JournalError),
    /// A configured OAuth client breaks the registration rules.
    #[error("oauth clients: {0}")]
    OAuthClients(String),
    /// NATS could not be reached.
    #[error("cannot connect to NATS at {url}: {reason}")]
    Nats {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

/// When the in-memory authorization model takes snapshots, so that a start replays only the events after
/// the last one rather than the whole log.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotConfig {
    /// Events read since the last snapshot before the next is taken; 0: none are taken or loaded.
    pub every_events: u64,
    /// Time at least between two snapshots.
    pub min_interval: std::time::Duration,
}

impl Default for SnapshotConfig {
    fn default() -> Self {
        Self { every_events: 10_000, min_interval: std::time::Duration::from_secs(60) }
    }
}

impl SnapshotConfig {
    /// The runner's policy on `tables`, or `None` when snapshots are off. The format names the model's
    /// snapshot format and the build, so that a snapshot is only loaded by the code that wrote it.
    fn policy(self, tables: projections::snapshot::SnapshotTables) -> Option<projections::snapshot::SnapshotPolicy> {
        (self.every_events > 0).then(|| projections::snapshot::SnapshotPolicy {
            tables,
            format: format!("authz.v{}+{}.{}", Authz::SNAPSHOT_FORMAT, env!("CARGO_PKG_VERSION"), env!("MGW_GIT_SHA")),
            every_events: self.every_events,
            min_interval: self.min_interval,
        })
    }
}

/// The status of the analytics projection when configuration turned it off.
fn analytics_off() -> tokio::sync::watch::Receiver<projections::ProjectionStatus> {
    tokio::sync::watch::channel(projections::ProjectionStatus::disabled(projections::analytics::NAME)).1
}

/// What a backend gives the rest of the instance.
struct Backend {
    store: Arc<dyn eventstore::EventStore>,
    tables: crate::tables::Tables,
    registry: Catalogue,
    registry_status: tokio::sync::watch::Receiver<projections::ProjectionStatus>,
    audit_status: tokio::sync::watch::Receiver<projections::ProjectionStatus>,
    analytics: projections::analytics::Analytics,
    analytics_status: tokio::sync::watch::Receiver<projections::ProjectionStatus>,
    authz_runner: MemoryRunner<Authz>,
    nats: Option<async_nats::Client>,
}

/// A running instance: the state for the router, and the background tasks (relay, projections).
pub struct Gateway {
    /// The router's state.
    pub state: AppState,
    tasks: Vec<JoinHandle<()>>,
    /// The embedded store's lock, held while the instance runs.
    _store_lock: Option<crate::store_lock::StoreLock>,
}

impl Gateway {
    /// Connects, migrates, and starts the relay (with NATS) and the projections.
    pub async fn start(config: &GatewayConfig, metrics: Option<PrometheusHandle>) -> Result<Self, StartError> {
        let keyring = Arc::new(Keyring::new(&config.sealing_key_current, config.sealing_keys.clone())?);
        let audit_keys = Arc::new(AuditKeys::new(&config.audit_signing_keys)?);
        let mut tasks = Vec::new();
        let mut store_lock = None;
        let backend = match crate::store_url::StoreUrl::parse(&config.database_url) {
            Ok(crate::store_url::StoreUrl::Sqlite(path)) => {
                store_lock = Some(crate::store_lock::StoreLock::acquire(&path)?);
                Self::embedded(config, &path, &audit_keys, &mut tasks).await?
            }
            _ => Self::postgres(config, &audit_keys, &mut tasks).await?,
        };
        let Backend {
            store: shared_store,
            tables,
            registry,
            registry_status,
            audit_status,
            analytics,
            analytics_status,
            authz_runner,
            nats,
        } = backend;
        let (authz, authz_status) = (authz_runner.model(), authz_runner.status());
        tasks.push(tokio::spawn(async move {
            let error = authz_runner.run().await;
            tracing::error!(%error, "the authz projection halted");
        }));

        let network = NetworkPolicy::allowing(&config.upstream_allowlist);
        let configured_clients =
            crate::oauth::clients::ConfiguredClients::new(&config.oauth_clients).map_err(StartError::OAuthClients)?;
        let client_documents =
            crate::oauth::metadata_document::DocumentFetcher::new(network.clone(), Arc::new(SystemResolver));
        // The commands need only the store's contract: any backend.
        let journal = match &config.call_journal {
            Some(dir) => {
                crate::proxy::recorder::recover(&*shared_store, dir).await.map_err(StartError::CallJournal)?;
                Some(crate::proxy::journal::Journal::open(dir).map_err(StartError::CallJournal)?)
            }
            None => None,
        };
        let (recorder, recording) = crate::proxy::recorder::CallRecorder::start(shared_store.clone(), journal);
        tasks.push(recording);
        let resolver = Arc::new(SystemResolver);
        let proxy = crate::proxy::Proxy::new(network.clone(), resolver, keyring.clone(), recorder, config.proxy_limits)
            .map_err(|e| StartError::Proxy(e.to_string()))?;
        let servers = ServerCommands::new(shared_store.clone(), keyring.clone(), network, Arc::new(SystemResolver));
        let principals = commands::principals::PrincipalCommands::new(shared_store.clone(), keyring.clone());
        let connections = commands::connections::Connections::new(shared_store.clone(), keyring.clone());
        let authz_lag = crate::authz_lag::AuthzLag::new(config.authz_max_lag);
        tasks.push(tokio::spawn(authz_lag.clone().watch(shared_store.clone(), tables.clone(), authz_status.clone())));
        let issuer = config.issuer();
        let tokens = commands::tokens::TokenService::new(
            shared_store.clone(),
            keyring.clone(),
            issuer.clone(),
            format!("{issuer}/api/v1"),
        );
        let command_id = uuid::Uuid::now_v7();
        let system = eventstore::Actor::system("gateway");
        let context = commands::servers::CommandContext {
            command_id,
            metadata: eventstore::Metadata::new(command_id, system, chrono::Utc::now()),
        };
        tokens.start(&context).await?;
        principals.ensure_owners_stream(&context).await?;
        let oauth_clients = commands::oauth_clients::OAuthClients::new(shared_store.clone());
        let rate_limits = Arc::new(crate::rate_limit::RateLimits::new(&config.rate_limits));
        let state = AppState::new(crate::state::Shared {
            servers,
            principals,
            connections,
            tokens: Arc::new(tokens),
            idps: Arc::new(crate::oidc::Idps::new(config.idps.clone(), &issuer)?),
            authz_lag: authz_lag.clone(),
            key_usage: crate::key_usage::KeyUsage::default(),
            cookies: Arc::new(crate::cookies::Cookies::for_url(&issuer)),
            keyring,
            registry,
            registry_documents: Default::default(),
            authz,
            authz_status,
            registry_status,
            audit_status,
            analytics,
            analytics_status,
            audit_keys,
            tables,
            store: shared_store,
            nats,
            nats_stream: RelayOptions::default().stream,
            verifying: Arc::new(tokio::sync::Semaphore::new(1)),
            metrics,
            mcp_metrics: Default::default(),
            http_metrics: Default::default(),
            registry_reads: config.registry_reads,
            oauth_clients,
            configured_clients: Arc::new(configured_clients),
            client_documents: Arc::new(client_documents),
            rate_limits: rate_limits.clone(),
            readiness: config.readiness,
            break_glass: config.break_glass.clone(),
            draining: std::sync::atomic::AtomicBool::new(false),
            stopping: tokio::sync::watch::Sender::new(false),
            cors_origins: config.cors_origins.iter().filter_map(|o| o.parse().ok()).collect(),
            proxy: Arc::new(proxy),
        });
        tasks.push(tokio::spawn(crate::rate_limit::forget_idle_buckets(rate_limits)));
        if config.alerting.is_active() {
            tasks.push(tokio::spawn(crate::alerting::run(
                state.store.clone(),
                state.tables.clone(),
                config.alerting.clone(),
            )));
        }
        if let (true, Some(max_age)) = (config.rotate_signing_keys, config.readiness.signing_key_max_age) {
            tasks.push(tokio::spawn(crate::key_rotation::run(state.tokens.clone(), max_age)));
        }
        if let Some(interval) = config.health_check_interval {
            tasks.push(tokio::spawn(crate::proxy::health_check::run(state.clone(), interval)));
        }
        Ok(Self { state, tasks, _store_lock: store_lock })
    }

    /// The production backend: PostgreSQL, and NATS when configured (relay, wake-ups, the authorization
    /// model fed through JetStream).
    async fn postgres(
        config: &GatewayConfig,
        audit_keys: &Arc<AuditKeys>,
        tasks: &mut Vec<JoinHandle<()>>,
    ) -> Result<Backend, StartError> {
        let pool =
            match PgPoolOptions::new().max_connections(config.max_connections).connect(&config.database_url).await {
                Ok(pool) => pool,
                // The pool retried the server's refusals until it gave up: say what the server said.
                Err(sqlx::Error::PoolTimedOut) => {
                    let options: sqlx::postgres::PgConnectOptions = config.database_url.parse()?;
                    return Err(StartError::DatabaseRefused(crate::tables::postgres_cause(&options).await));
                }
                Err(e) => return Err(e.into()),
            };
        PgEventStore::migrate(&pool).await?;
        let store = PgEventStore::new(pool.clone(), PgEventStoreOptions::default());
        let nats = match &config.nats_url {
            Some(url) => Some(
                async_nats::connect(url)
                    .await
                    .map_err(|e| StartError::Nats { url: without_credentials(url), reason: e.to_string() })?,
            ),
            None => None,
        };
        let relay_options = RelayOptions::default();
        let shared_store: Arc<dyn eventstore::EventStore> =
            Arc::new(eventstore::Instrumented::new(Arc::new(store.clone()), "postgres"));
        let authz_runner = match &nats {
            Some(client) => {
                let jetstream = async_nats::jetstream::new(client.clone());
                tasks.push(tokio::spawn(Relay::new(store.clone(), jetstream.clone(), relay_options.clone()).run()));
                if let Ok(wake) =
                    eventstore::relay::wake_on_publish(store.clone(), client.clone(), &relay_options).await
                {
                    tasks.push(wake);
                }
                let (source, feed_options) = (shared_store.clone(), NatsFeedOptions::for_relay(&relay_options));
                let feed_from: projections::FeedFrom = Box::new(move |from| {
                    Box::new(NatsSubscription::new(source, jetstream, from, feed_options))
                        as Box<dyn eventstore::EventFeed>
                });
                MemoryRunner::with_feed(shared_store.clone(), Authz::default(), feed_from)
            }
            None => MemoryRunner::new(shared_store.clone(), Authz::default(), SubscriptionOptions::default()),
        };
        let authz_runner = match config.snapshots.policy(SnapshotTables::Postgres(pool.clone())) {
            Some(policy) => authz_runner.with_snapshots(policy),
            None => authz_runner,
        };
        let registry_runner =
            TableRunner::new(store.clone(), Arc::new(RegistryProjection::default()), table_runner_options());
        let registry_status = registry_runner.status();
        tasks.push(tokio::spawn(async move {
            let error = registry_runner.run().await;
            tracing::error!(%error, "the registry projection halted");
        }));
        let audit_runner =
            TableRunner::new(store.clone(), Arc::new(AuditProjection::default()), table_runner_options());
        let audit_status = audit_runner.status();
        tasks.push(tokio::spawn(async move {
            let error = audit_runner.run().await;
            tracing::error!(%error, "the audit projection halted");
        }));
        let analytics_status = if config.analytics {
            let analytics_runner = TableRunner::new(
                store.clone(),
                Arc::new(projections::analytics::AnalyticsProjection::default()),
                analytics_runner_options(),
            );
            let analytics_status = analytics_runner.status();
            tasks.push(tokio::spawn(async move {
                let error = analytics_runner.run().await;
                tracing::error!(%error, "the analytics projection halted");
            }));
            analytics_status
        } else {
            analytics_off()
        };
        if audit_keys.can_sign() {
            tasks.push(tokio::spawn(run_checkpointer(pool.clone(), audit_keys.clone(), CheckpointPolicy::default())));
        } else {
            tracing::warn!("no audit signing key (MGW_AUDIT_SIGNING_KEYS): the audit trail is chained but not signed");
        }
        Ok(Backend {
            store: shared_store,
            tables: crate::tables::Tables::Postgres(pool.clone()),
            registry: Catalogue::Postgres(Registry::new(pool.clone())),
            registry_status,
            audit_status,
            analytics: projections::analytics::Analytics::Postgres(pool),
            analytics_status,
            authz_runner,
            nats,
        })
    }

    /// The embedded default: the event store and the read models in one SQLite file, wake-ups in
    /// process. One instance only: several need Postgres and NATS.
    async fn embedded(
        config: &GatewayConfig,
        path: &std::path::Path,
        audit_keys: &Arc<AuditKeys>,
        tasks: &mut Vec<JoinHandle<()>>,
    ) -> Result<Backend, StartError> {
        if config.nats_url.is_some() {
            return Err(StartError::Embedded(
                "the embedded SQLite store serves one instance: several instances need PostgreSQL (DATABASE_URL) and NATS (NATS_URL)",
            ));
        }
        let store = SqliteEventStore::open(path, SqliteEventStoreOptions::default()).await?;
        let shared_store: Arc<dyn eventstore::EventStore> =
            Arc::new(eventstore::Instrumented::new(Arc::new(store.clone()), "sqlite"));
        let authz_runner = MemoryRunner::new(shared_store.clone(), Authz::default(), SubscriptionOptions::default());
        let authz_runner = match config.snapshots.policy(SnapshotTables::Sqlite(store.pool().clone())) {
            Some(policy) => authz_runner.with_snapshots(policy),
            None => authz_runner,
        };
        let registry_runner =
            SqliteRunner::new(store.clone(), Arc::new(SqliteRegistryProjection::default()), table_runner_options());
        let registry_status = registry_runner.status();
        tasks.push(tokio::spawn(async move {
            let error = registry_runner.run().await;
            tracing::error!(%error, "the registry projection halted");
        }));
        let audit_runner =
            SqliteRunner::new(store.clone(), Arc::new(SqliteAuditProjection::default()), table_runner_options());
        let audit_status = audit_runner.status();
        tasks.push(tokio::spawn(async move {
            let error = audit_runner.run().await;
            tracing::error!(%error, "the audit projection halted");
        }));
        let analytics_status = if config.analytics {
            let analytics_runner = SqliteRunner::new(
                store.clone(),
                Arc::new(projections::analytics::SqliteAnalyticsProjection::default()),
                analytics_runner_options(),
            );
            let analytics_status = analytics_runner.status();
            tasks.push(tokio::spawn(async move {
                let error = analytics_runner.run().await;
                tracing::error!(%error, "the analytics projection halted");
            }));
            analytics_status
        } else {
            analytics_off()
        };
        let pool = store.pool().clone();
        if audit_keys.can_sign() {
            let trail = projections::audit::SqliteAuditTrail::new(pool.clone());
            tasks.push(tokio::spawn(run_checkpointer(trail, audit_keys.clone(), CheckpointPolicy::default())));
        } else {
            tracing::warn!("no audit signing key (MGW_AUDIT_SIGNING_KEYS): the audit trail is chained but not signed");
        }
        Ok(Backend {
            store: shared_store,
            tables: crate::tables::Tables::Sqlite(pool.clone()),
            registry: Catalogue::Sqlite(SqliteRegistry::new(pool.clone())),
            registry_status,
            audit_status,
            analytics: projections::analytics::Analytics::Sqlite(pool),
            analytics_status,
            authz_runner,
            nats: None,
        })
    }

    /// Waits, for at most `within`, until every tool call the proxy forwarded is recorded: what a stopping
    /// gateway does once it no longer takes requests, so that a graceful stop loses no record. True when
    /// nothing is left.
    pub async fn drain_recorded_calls(&self, within: std::time::Duration) -> bool {
        self.state.proxy.recorder.drain(within).await
    }

    /// Checks every routed server's connection now, as the periodic checker does, and records what
    /// changed (health transitions, the tools listed).
    pub async fn check_servers_now(&self) {
        crate::proxy::health_check::check_all(&self.state).await;
    }

    /// Stops the background tasks.
    pub fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_removed_from_urls() {
        assert_eq!(without_credentials("postgres://u:p@db:5432/x"), "postgres://db:5432/x");
        assert_eq!(without_credentials("nats://tok@nats:4222"), "nats://nats:4222");
        assert_eq!(without_credentials("nats://nats:4222/a@b"), "nats://nats:4222/a@b");
        assert_eq!(without_credentials("no-scheme"), "no-scheme");
    }
}
