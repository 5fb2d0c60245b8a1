//! `mcp-gateway`: serve, migrate, bootstrap, and operate projections.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use api::{Gateway, GatewayConfig, router};
use clap::{Parser, Subcommand};
use eventstore::{Actor, EventStore, Metadata, PgEventStore, PgEventStoreOptions};
use projections::RunnerOptions;
use projections::registry::RegistryProjection;
use sqlx::postgres::PgPoolOptions;
use uuid::Uuid;

#[derive(Parser)]
#[command(name = "mcp-gateway", version, about = "MCP registry and gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the gateway: API, relay, projections.
    Serve(Box<ServeArgs>),
    /// Applies the database migrations and exits.
    Migrate(DatabaseArgs),
    /// Administration.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Read models: list, status, rebuild.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// The audit trail.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// The event log itself.
    #[command(subcommand)]
    Events(EventsCommand),
    /// The OAuth authorization server.
    #[command(subcommand)]
    Oauth(OauthCommand),
    /// Asks a URL and exits 0 on a 2xx answer: a container health check without curl in the image.
    Probe {
        /// The URL, such as `http://127.0.0.1:8080/ready`.
        url: String,
    },
}

#[derive(Subcommand)]
enum OauthCommand {
    /// The OAuth clients.
    #[command(subcommand)]
    Clients(ClientsCommand),
}

#[derive(Subcommand)]
enum ClientsCommand {
    /// Every client that registered, newest first: id, name, redirect URIs, whether revoked.
    List(DatabaseArgs),
    /// Revokes a client as the local operator: its access tokens are refused from the next request, its
    /// refresh tokens and codes no longer redeem, and it cannot start an authorization again.
    Revoke {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The client.
        client_id: String,
        /// Why (kept in the audit trail).
        #[arg(long, default_value = "revoked by the local operator")]
        reason: String,
    },
}

#[derive(Subcommand)]
enum EventsCommand {
    /// Copies every event (ids, streams, revisions, `$all` order) and the claims from one store into
    /// another, empty one, then verifies the copy event by event: moves an embedded installation
    /// (`sqlite://data/events.db`) to Postgres. Stop the gateway first; start it on the copy after, and
    /// its read models are built from the copied log.
    Copy {
        /// The source store: `sqlite://<path>` or `postgres://…` (read as it is: nothing is created or
        /// migrated there).
        #[arg(long, env = "MGW_COPY_FROM", hide_env_values = true)]
        from: String,
        /// The target store (empty; created and migrated when missing).
        #[arg(long, env = "MGW_COPY_TO", hide_env_values = true)]
        to: String,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Verifies the audit trail's chain and that it holds exactly the store's events; names the first
    /// bad entry and exits with status 1 when there is one.
    Verify {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Public keys of the signed checkpoints, `id:base64`, comma-separated (`GET /api/v1/audit/keys`).
        /// Default: the public halves of the gateway's own signing keys (`--signing-keys`, or the
        /// embedded store's `audit-signing.keys` beside it).
        #[arg(long, value_delimiter = ',')]
        public_keys: Vec<String>,
        /// The gateway's audit signing keys, `id:base64` (as `serve`): their public halves check the
        /// checkpoints when no `--public-keys` are given.
        #[arg(long, env = "MGW_AUDIT_SIGNING_KEYS", value_delimiter = ',', hide_env_values = true)]
        signing_keys: Vec<String>,
    },
    /// Moves the entries older than the retention out of the hot table: writes them to a new archive file
    /// (a signed export that `verify-export` checks offline), reads it back and verifies it, then deletes
    /// them. Events are never deleted: `projections rebuild audit` restores every entry.
    Prune {
        #[command(flatten)]
        database: DatabaseArgs,
        /// Keep entries of the last this many days.
        #[arg(long, default_value_t = 365, conflicts_with = "before")]
        retention_days: u32,
        /// Prune entries of events before this time instead (RFC 3339).
        #[arg(long)]
        before: Option<chrono::DateTime<chrono::Utc>>,
        /// The archive to write (must not exist).
        #[arg(long)]
        archive: std::path::PathBuf,
        /// Audit signing keys, `id:base64` (as `serve`): the archive's trailer is signed with the first.
        #[arg(long, env = "MGW_AUDIT_SIGNING_KEYS", value_delimiter = ',', hide_env_values = true)]
        signing_keys: Vec<String>,
    },
    /// Verifies an export file (`GET /api/v1/audit/export`, JSON lines) offline, with the published public
    /// keys (`GET /api/v1/audit/keys`): the chain, every entry's link, the checkpoints' signatures.
    VerifyExport {
        /// The export file.
        file: std::path::PathBuf,
        /// Public keys, `id:base64`, comma-separated. Default: the keys the export's trailer names
        /// (compare them with the gateway's published keys).
        #[arg(long, value_delimiter = ',')]
        public_keys: Vec<String>,
        /// Accept an export without a signed trailer (written by a gateway without an audit signing key):
        /// it then proves only that its entries chain, not that it is complete.
        #[arg(long)]
        allow_unsigned: bool,
    },
}

#[derive(clap::Args)]
struct DatabaseArgs {
    /// The store: `postgres://user@host/db` (production), or `sqlite://<path>` for the embedded store
    /// (`sqlite://data/events.db` is where `serve` keeps it by default).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
}

/// `serve`'s settings: flags, else the environment, else the configuration file, else the default.
#[derive(clap::Args, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ServeArgs {
    /// A TOML file with any of these settings (keys as the flags, with `_`: `database_url = "…"`).
    #[arg(long, env = "MGW_CONFIG")]
    #[serde(skip)]
    config: Option<std::path::PathBuf>,
    /// The store: `postgres://user@host/db`, or `sqlite://<path>`; without it, the embedded store in the
    /// data directory (one instance).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: Option<String>,
    /// Where the embedded default keeps its store and generated keys [default: ./data].
    #[arg(long, env = "MGW_DATA_DIR")]
    data_dir: Option<std::path::PathBuf>,
    /// Where forwarded tool calls are journaled until they are in the store, so that a killed gateway's
    /// calls are recorded by its next start; a local disk that outlives the process
    /// [default: <data dir>/calls].
    #[arg(long, env = "MGW_CALL_JOURNAL")]
    call_journal: Option<std::path::PathBuf>,
    /// Seconds between checks of every registered server's connection (health and tools recorded when
    /// they change); 0: no checks [default: 60].
    #[arg(long, env = "MGW_HEALTH_CHECK_INTERVAL_S")]
    health_check_interval_s: Option<u64>,
    /// MCP requests one principal may have in flight through the gateway, over every server (an open
    /// SSE answer or stream counts) [default: 128].
    #[arg(long, env = "MGW_MCP_MAX_IN_FLIGHT_PER_PRINCIPAL")]
    mcp_max_in_flight_per_principal: Option<usize>,
    /// MCP requests one server may have in flight through the gateway, from every caller [default: 512].
    #[arg(long, env = "MGW_MCP_MAX_IN_FLIGHT_PER_SERVER")]
    mcp_max_in_flight_per_server: Option<usize>,
    /// Rate limits, `<group>.<per_address|per_principal>=<count>/<s|min|h>[ burst <n>]` or `=off`,
    /// comma-separated; groups: login, oauth, registration, rest, mcp. Each changes one default.
    #[arg(long, env = "MGW_RATE_LIMITS", value_delimiter = ',')]
    #[serde(default)]
    rate_limits: Vec<String>,
    /// Reverse proxies whose `X-Forwarded-For` names the client (addresses or CIDR networks,
    /// comma-separated); from any other peer the header is ignored.
    #[arg(long, env = "MGW_TRUSTED_PROXIES", value_delimiter = ',')]
    #[serde(default)]
    trusted_proxies: Vec<String>,
    /// Origins (`https://console.example.com`) whose pages may call the REST API with a person's
    /// cookies, comma-separated; none: same origin only.
    #[arg(long, env = "MGW_CORS_ORIGINS", value_delimiter = ',')]
    #[serde(default)]
    cors_origins: Vec<String>,
    /// Days a token signing key signs before it is replaced (rotated at 80 % of them, `/ready` warns at
    /// 90 %); 0: forever [default: 90].
    #[arg(long, env = "MGW_SIGNING_KEY_MAX_AGE_DAYS")]
    signing_key_max_age_days: Option<u64>,
    /// Seconds an identity provider's readiness probe (discovery and keys fetched afresh) is reused
    /// [default: 30].
    #[arg(long, env = "MGW_IDP_PROBE_INTERVAL_S")]
    idp_probe_interval_s: Option<u64>,
    /// SHA-256 (hex) of the break-glass credential, from `admin new-break-glass`; the credential itself
    /// stays offline.
    #[arg(long, env = "MGW_BREAK_GLASS_SHA256")]
    break_glass_sha256: Option<String>,
    /// Accept the break-glass credential (an emergency: every use is recorded and alerted on); when
    /// off, its use is refused and recorded [default: false].
    #[arg(long, env = "MGW_BREAK_GLASS_ENABLED")]
    break_glass_enabled: Option<bool>,
    /// Seconds between SIGTERM and closing the listener, during which /ready answers 503 and requests
    /// are still served (a load balancer's time to take the instance out) [default: 0, or 5 with
    /// DATABASE_URL].
    #[arg(long, env = "MGW_SHUTDOWN_DRAIN_S")]
    shutdown_drain_s: Option<u64>,
    /// Seconds the requests in flight may take to finish once the listener closed [default: 30].
    #[arg(long, env = "MGW_SHUTDOWN_TIMEOUT_S")]
    shutdown_timeout_s: Option<u64>,
    /// Events read after which the authorization model's snapshot is taken again (a start loads the
    /// last one and replays only what follows it); 0: no snapshots [default: 10000].
    #[arg(long, env = "MGW_SNAPSHOT_EVERY_EVENTS")]
    snapshot_every_events: Option<u64>,
    /// Seconds at least between two snapshots [default: 60].
    #[arg(long, env = "MGW_SNAPSHOT_MIN_INTERVAL_S")]
    snapshot_min_interval_s: Option<u64>,
    /// Keep usage analytics (the `analytics` read model, `/api/v1/analytics`) [default: true].
    #[arg(long, env = "MGW_ANALYTICS")]
    analytics: Option<bool>,
    /// NATS URL (JetStream enabled); needed for more than one instance.
    #[arg(long, env = "NATS_URL", hide_env_values = true)]
    nats_url: Option<String>,
    /// Listen address [default: 127.0.0.1:8080].
    #[arg(long, env = "MGW_LISTEN")]
    listen: Option<SocketAddr>,
    /// Sealing keys, `id:base64` (32 bytes), comma-separated; see `admin new-sealing-key`.
    #[arg(long, env = "MGW_SEALING_KEYS", value_delimiter = ',', hide_env_values = true)]
    #[serde(default)]
    sealing_keys: Vec<String>,
    /// The key id that seals new secrets (default: the first key).
    #[arg(long, env = "MGW_SEALING_KEY_CURRENT")]
    sealing_key_current: Option<String>,
    /// Upstream hosts allowed over plain http and on internal addresses, comma-separated.
    #[arg(long, env = "MGW_UPSTREAM_ALLOWLIST", value_delimiter = ',')]
    #[serde(default)]
    upstream_allowlist: Vec<String>,
    /// Database connections [default: 20].
    #[arg(long, env = "MGW_DB_CONNECTIONS")]
    max_connections: Option<u32>,
    /// Audit checkpoint signing keys, `id:base64` (32-byte Ed25519 seeds), comma-separated; the first signs.
    #[arg(long, env = "MGW_AUDIT_SIGNING_KEYS", value_delimiter = ',', hide_env_values = true)]
    #[serde(default)]
    audit_signing_keys: Vec<String>,
    /// The gateway's public base URL, the issuer of its tokens [default: http://<listen>].
    #[arg(long, env = "MGW_PUBLIC_URL")]
    public_url: Option<String>,
    /// How long (ms) the authorization model may lag the store before requests are refused [default: 5000].
    #[arg(long, env = "MGW_AUTHZ_MAX_LAG_MS")]
    authz_max_lag_ms: Option<u64>,
    /// Who may read the `/v0.1` catalogue: `public` (as the official registry) or `authenticated` (callers
    /// with `servers.read`, a private registry) [default: public].
    #[arg(long, env = "MGW_REGISTRY_READS", value_enum)]
    registry_reads: Option<api::RegistryReads>,
    /// Identity providers (configuration file only: `[[idps]]` tables).
    #[arg(skip)]
    #[serde(default)]
    idps: Vec<api::oidc::IdpConfig>,
    /// Alerting (configuration file only: `[alerting]` with `[[alerting.channels]]` and
    /// `[[alerting.rules]]`).
    #[arg(skip)]
    #[serde(default)]
    alerting: api::alerting::AlertingConfig,
    /// OAuth clients configured beside those that register themselves (configuration file only:
    /// `[[oauth_clients]]` tables with `client_id`, `client_name`, `redirect_uris`, and
    /// `client_secret_sha256` for a confidential one).
    #[arg(skip)]
    #[serde(default)]
    oauth_clients: Vec<api::ConfiguredClient>,
}

impl ServeArgs {
    /// These settings, each missing one taken from `file`.
    fn or(self, file: ServeArgs) -> ServeArgs {
        let list = |mine: Vec<String>, theirs: Vec<String>| if mine.is_empty() { theirs } else { mine };
        ServeArgs {
            config: self.config,
            database_url: self.database_url.or(file.database_url),
            data_dir: self.data_dir.or(file.data_dir),
            call_journal: self.call_journal.or(file.call_journal),
            health_check_interval_s: self.health_check_interval_s.or(file.health_check_interval_s),
            mcp_max_in_flight_per_principal: self
                .mcp_max_in_flight_per_principal
                .or(file.mcp_max_in_flight_per_principal),
            mcp_max_in_flight_per_server: self.mcp_max_in_flight_per_server.or(file.mcp_max_in_flight_per_server),
            nats_url: self.nats_url.or(file.nats_url),
            rate_limits: list(self.rate_limits, file.rate_limits),
            trusted_proxies: list(self.trusted_proxies, file.trusted_proxies),
            cors_origins: list(self.cors_origins, file.cors_origins),
            signing_key_max_age_days: self.signing_key_max_age_days.or(file.signing_key_max_age_days),
            idp_probe_interval_s: self.idp_probe_interval_s.or(file.idp_probe_interval_s),
            break_glass_sha256: self.break_glass_sha256.or(file.break_glass_sha256),
            shutdown_drain_s: self.shutdown_drain_s.or(file.shutdown_drain_s),
            shutdown_timeout_s: self.shutdown_timeout_s.or(file.shutdown_timeout_s),
            snapshot_every_events: self.snapshot_every_events.or(file.snapshot_every_events),
            snapshot_min_interval_s: self.snapshot_min_interval_s.or(file.snapshot_min_interval_s),
            analytics: self.analytics.or(file.analytics),
            break_glass_enabled: self.break_glass_enabled.or(file.break_glass_enabled),
            listen: self.listen.or(file.listen),
            sealing_keys: list(self.sealing_keys, file.sealing_keys),
            sealing_key_current: self.sealing_key_current.or(file.sealing_key_current),
            upstream_allowlist: list(self.upstream_allowlist, file.upstream_allowlist),
            max_connections: self.max_connections.or(file.max_connections),
            audit_signing_keys: list(self.audit_signing_keys, file.audit_signing_keys),
            public_url: self.public_url.or(file.public_url),
            idps: if self.idps.is_empty() { file.idps } else { self.idps },
            oauth_clients: if self.oauth_clients.is_empty() { file.oauth_clients } else { self.oauth_clients },
            alerting: if self.alerting.is_active() { self.alerting } else { file.alerting },
            authz_max_lag_ms: self.authz_max_lag_ms.or(file.authz_max_lag_ms),
            registry_reads: self.registry_reads.or(file.registry_reads),
        }
    }
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Makes a break-glass credential: prints it (keep it offline, in a safe) and the SHA-256 to
    /// configure as MGW_BREAK_GLASS_SHA256.
    NewBreakGlass,
    /// Creates the first owner and prints its API key once.
    Bootstrap {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The owner's display name.
        #[arg(long, default_value = "owner")]
        name: String,
    },
    /// Issues a new API key to an owner and prints it once: for an owner who lost theirs. Whoever can
    /// write the store can run it; the audit trail records it as the local operator's.
    OwnerKey {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The owner (default: the first owner).
        #[arg(long)]
        principal: Option<Uuid>,
    },
    /// Lets a person enrol a first TOTP second factor without a login whose IdP reported MFA (until they
    /// use it), as the local operator.
    ApproveMfa {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The person.
        #[arg(long)]
        principal: Uuid,
    },
    /// Prints a new random sealing key as `id:base64`.
    NewSealingKey,
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// The read models this binary runs.
    List,
    /// Where each table read model is against the head of `$all`.
    Status(DatabaseArgs),
    /// Rebuilds a table read model by replay while the live one serves, then swaps.
    Rebuild {
        #[command(flatten)]
        database: DatabaseArgs,
        /// The projection.
        name: String,
    },
}

/// The read models: (name, kind).
const PROJECTIONS: [(&str, &str); 4] = [
    ("registry", "table"),
    ("audit", "table"),
    ("analytics", "table"),
    ("authz", "in-memory, rebuilt at every start from its last snapshot"),
];

/// mimalloc: per-thread heaps. The proxy allocates and frees on every request from both cores; glibc's
/// allocator spent about a tenth of the `proxy` bench's CPU in `malloc`/`free` and its arena locks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // RUST_LOG filters the logs only: spans go to the collector at INFO whatever the log level.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt::layer().json().with_writer(std::io::stderr).with_filter(filter);
    // Traces only when a collector is named (the standard OpenTelemetry variable).
    let (traces, provider) = match std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT") {
        Ok(endpoint) if !endpoint.trim().is_empty() => {
            let (layer, provider) = api::traces::otlp_layer(&endpoint)?;
            (Some(layer.with_filter(tracing_subscriber::filter::LevelFilter::INFO)), Some(provider))
        }
        _ => (None, None),
    };
    tracing_subscriber::registry().with(logs).with(traces).init();
    let outcome = run().await;
    if let Some(provider) = provider
        && let Err(error) = provider.shutdown()
    {
        eprintln!("could not flush the last traces: {error}");
    }
    outcome
}

async fn run() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(args) => serve(*args).await,
        Command::Probe { url } => probe(&url).await,
        Command::Migrate(db) => {
            api::store_url::StoreUrl::parse(&db.database_url)?.open().await.context("migrations")?;
            println!("migrated");
            Ok(())
        }
        Command::Admin(AdminCommand::Bootstrap { database, name }) => bootstrap(&database, &name).await,
        Command::Admin(AdminCommand::OwnerKey { database, principal }) => {
            let (principals, context) = local_operator(&database, "admin-owner-key").await?;
            let (owner, issued) = principals.local_owner_key(principal, chrono::Utc::now(), &context).await?;
            println!("a new API key for owner {owner} (shown once, store it now):");
            println!("{}", issued.key.expose());
            Ok(())
        }
        Command::Admin(AdminCommand::ApproveMfa { database, principal }) => {
            let (principals, context) = local_operator(&database, "admin-approve-mfa").await?;
            principals.approve_enrolment(None, principal, chrono::Utc::now(), &context).await?;
            println!("{principal} may enrol a first TOTP second factor (POST /api/v1/me/mfa/totp)");
            Ok(())
        }
        Command::Admin(AdminCommand::NewSealingKey) => {
            let id = format!("k{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
            println!("{id}:{}", commands::Keyring::generate_key().expose());
            Ok(())
        }
        Command::Admin(AdminCommand::NewBreakGlass) => {
            let (credential, hash) = api::break_glass::generate();
            println!("break-glass credential (keep it offline; it is shown once): {credential}");
            println!("configure: MGW_BREAK_GLASS_SHA256={hash}");
            println!("use it only with MGW_BREAK_GLASS_ENABLED=true; every use is recorded and alerted on");
            Ok(())
        }
        Command::Projections(command) => projections_command(command).await,
        Command::Events(EventsCommand::Copy { from, to }) => events_copy(&from, &to).await,
        Command::Oauth(OauthCommand::Clients(command)) => clients_command(command).await,
        Command::Audit(AuditCommand::Prune { database, retention_days, before, archive, signing_keys }) => {
            let trail = audit_source(&database.database_url).await?;
            let keys =
                Arc::new(projections::audit::AuditKeys::new(&key_pairs("MGW_AUDIT_SIGNING_KEYS", &signing_keys)?)?);
            if !keys.can_sign() {
                eprintln!("no audit signing key: the archive will chain but carry no signed trailer");
            }
            let before =
                before.unwrap_or_else(|| chrono::Utc::now() - chrono::Duration::days(i64::from(retention_days)));
            match api::audit_prune::prune_to_archive(&trail, keys, before, &archive).await? {
                api::audit_prune::PruneOutcome::Nothing => println!("nothing before {before} to prune"),
                api::audit_prune::PruneOutcome::Pruned { first, last, sha256 } => {
                    println!("entries {first}..={last} archived to {} (sha256 {sha256}) and pruned", archive.display())
                }
            }
            Ok(())
        }
        Command::Audit(AuditCommand::VerifyExport { file, public_keys, allow_unsigned }) => {
            let open = || std::fs::File::open(&file).with_context(|| format!("{}", file.display()));
            let pairs = if public_keys.is_empty() {
                let trailer = projections::audit::ExportTrailer::of_export(std::io::BufReader::new(open()?));
                let named = trailer.map(|t| t.public_keys).unwrap_or_default();
                if named.is_empty() {
                    println!("no public keys given and none named in the export: signatures cannot be checked");
                } else {
                    // The file names them, unsigned: they prove the file whole, not who wrote it.
                    println!(
                        "checking signatures with the keys the export itself names: {}. That proves the file is whole \
                         and unaltered since it was signed, not that this gateway signed it: compare the keys with \
                         GET /api/v1/audit/keys, or pass --public-keys",
                        describe_keys(&named)
                    );
                }
                named
            } else {
                key_pairs("--public-keys", &public_keys)?
            };
            let keys = projections::audit::AuditKeys::verifying(&pairs)?;
            let reader =
                std::io::BufReader::new(std::fs::File::open(&file).with_context(|| format!("{}", file.display()))?);
            let report = projections::audit::verify_export(reader, &keys)?;
            println!(
                "{} entries, {} signed checkpoints, signed trailer: {}",
                report.entries,
                report.checkpoints,
                if report.trailer { "yes" } else { "no" }
            );
            match report.problem {
                None if report.trailer || allow_unsigned => {
                    println!("intact");
                    Ok(())
                }
                None => {
                    println!("not signed: the entries chain, but nothing vouches that the file is complete");
                    std::process::exit(1)
                }
                Some((line, why)) => {
                    println!("line {line}: {why}");
                    std::process::exit(1)
                }
            }
        }
        Command::Audit(AuditCommand::Verify { database, public_keys, signing_keys }) => {
            let (store, trail) = match api::store_url::StoreUrl::parse(&database.database_url) {
                Ok(url @ api::store_url::StoreUrl::Sqlite(_)) => {
                    let store = url.open_existing().await?;
                    let pool = sqlite_pool(&url).await?;
                    (store, projections::audit::AuditSource::Sqlite(projections::audit::SqliteAuditTrail::new(pool)))
                }
                _ => {
                    let pool = PgPoolOptions::new()
                        .max_connections(2)
                        .connect(&database.database_url)
                        .await
                        .context("database")?;
                    let store: Arc<dyn EventStore> =
                        Arc::new(PgEventStore::new(pool.clone(), PgEventStoreOptions::default()));
                    (store, projections::audit::AuditSource::Postgres(pool))
                }
            };
            let keys = verification_keys(&database.database_url, &public_keys, &signing_keys)?;
            let report = api::verification::verify(&*store, &trail, &keys).await?;
            println!(
                "event store: {} events in {} streams checked, {} violations",
                report.store.events,
                report.store.streams,
                report.store.violations.len()
            );
            println!(
                "audit trail: {} entries chained, {} compared with their events",
                report.chain.checked, report.content.checked
            );
            println!("{} signed checkpoints checked", report.checkpoints);
            let lines = report.lines();
            for line in &lines {
                println!("{line}");
            }
            if !report.intact() {
                println!("{} violations", lines.len());
                std::process::exit(1)
            }
            println!("intact, 0 violations");
            Ok(())
        }
    }
}

fn config(args: ServeArgs) -> anyhow::Result<GatewayConfig> {
    let args = match &args.config {
        Some(path) => {
            let file: ServeArgs =
                figment::Figment::from(<figment::providers::Toml as figment::providers::Format>::file_exact(path))
                    .extract()
                    .with_context(|| format!("configuration file {}", path.display()))?;
            args.or(file)
        }
        None => args,
    };
    let data_dir = args.data_dir.clone().unwrap_or_else(|| std::path::PathBuf::from("data"));
    // On PostgreSQL there may be other instances behind a load balancer to drain towards.
    let several = args.database_url.is_some();
    let call_journal = args.call_journal.clone().unwrap_or_else(|| data_dir.join("calls"));
    let (database_url, sealing_keys, audit_keys) = match args.database_url {
        Some(url) => (url, args.sealing_keys, args.audit_signing_keys),
        None => {
            // The embedded default: everything in the data directory, keys generated on first start.
            let dir = data_dir;
            std::fs::create_dir_all(&dir).with_context(|| format!("creating the data directory {}", dir.display()))?;
            let or_generated = |given: Vec<String>, file: &str, what: &str| {
                if given.is_empty() { embedded_keys(&dir, file, what) } else { Ok(given) }
            };
            let sealing = or_generated(args.sealing_keys, "sealing.keys", "secrets are sealed with it")?;
            let audit = or_generated(args.audit_signing_keys, "audit-signing.keys", "it signs the audit trail")?;
            (format!("sqlite://{}", dir.join("events.db").display()), sealing, audit)
        }
    };
    let keys = key_pairs("MGW_SEALING_KEYS", &sealing_keys)?;
    let audit_signing_keys = key_pairs("MGW_AUDIT_SIGNING_KEYS", &audit_keys)?;
    let Some(first) = keys.first() else {
        bail!(
            "MGW_SEALING_KEYS is required (secrets are sealed before they are stored); create one with `mcp-gateway admin new-sealing-key`"
        );
    };
    let current = args.sealing_key_current.unwrap_or_else(|| first.0.clone());
    let mut rate_limits = api::RateLimitConfig::default();
    for setting in &args.rate_limits {
        rate_limits.set(setting).map_err(|e| anyhow::anyhow!("MGW_RATE_LIMITS: {e}"))?;
    }
    rate_limits.trusted_proxies = api::client_ip::TrustedProxies::parse(&args.trusted_proxies)
        .map_err(|e| anyhow::anyhow!("MGW_TRUSTED_PROXIES: {e}"))?;
    Ok(GatewayConfig {
        database_url,
        nats_url: args.nats_url,
        listen: args.listen.unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
        sealing_key_current: current,
        sealing_keys: keys,
        upstream_allowlist: args.upstream_allowlist,
        max_connections: args.max_connections.unwrap_or(20),
        audit_signing_keys,
        public_url: args.public_url,
        idps: args.idps,
        authz_max_lag: std::time::Duration::from_millis(args.authz_max_lag_ms.unwrap_or(5_000)),
        registry_reads: args.registry_reads.unwrap_or_default(),
        oauth_clients: args.oauth_clients,
        call_journal: Some(call_journal),
        rate_limits,
        cors_origins: cors_origins(&args.cors_origins)?,
        readiness: api::ReadinessConfig {
            idp_probe_interval: std::time::Duration::from_secs(args.idp_probe_interval_s.unwrap_or(30)),
            signing_key_max_age: match args.signing_key_max_age_days.unwrap_or(90) {
                0 => None,
                days => Some(std::time::Duration::from_secs(days * 24 * 3600)),
            },
        },
        rotate_signing_keys: true,
        shutdown_drain: std::time::Duration::from_secs(args.shutdown_drain_s.unwrap_or(if several { 5 } else { 0 })),
        shutdown_timeout: std::time::Duration::from_secs(args.shutdown_timeout_s.unwrap_or(30)),
        analytics: args.analytics.unwrap_or(true),
        snapshots: api::SnapshotConfig {
            every_events: args.snapshot_every_events.unwrap_or(10_000),
            min_interval: std::time::Duration::from_secs(args.snapshot_min_interval_s.unwrap_or(60)),
        },
        alerting: {
            args.alerting.validate().map_err(|e| anyhow::anyhow!("alerting: {e}"))?;
            args.alerting.clone()
        },
        break_glass: match &args.break_glass_sha256 {
            Some(hash) => Some(
                api::break_glass::BreakGlassConfig::from_hex(hash, args.break_glass_enabled.unwrap_or(false))
                    .map_err(|e| anyhow::anyhow!("MGW_BREAK_GLASS_SHA256: {e}"))?,
            ),
            None => None,
        },
        proxy_limits: {
            let default = api::ProxyLimits::default();
            api::ProxyLimits {
                per_principal: args.mcp_max_in_flight_per_principal.unwrap_or(default.per_principal).max(1),
                per_server: args.mcp_max_in_flight_per_server.unwrap_or(default.per_server).max(1),
            }
        },
        health_check_interval: match args.health_check_interval_s.unwrap_or(60) {
            0 => None,
            seconds => Some(std::time::Duration::from_secs(seconds)),
        },
    })
}

/// Each origin as browsers send it: scheme, host and port, nothing else.
fn cors_origins(given: &[String]) -> anyhow::Result<Vec<String>> {
    given
        .iter()
        .map(|origin| {
            let url = url::Url::parse(origin).with_context(|| format!("MGW_CORS_ORIGINS: {origin} is not a URL"))?;
            let serialized = url.origin().ascii_serialization();
            if serialized == "null" || url.path() != "/" || url.query().is_some() || origin.ends_with('/') {
                bail!("MGW_CORS_ORIGINS: {origin} is not an origin (write scheme://host[:port], no path)");
            }
            Ok(serialized)
        })
        .collect()
}

/// The embedded default's keys in `<data>/<file>` (`id:base64` lines), created on first start with one new
/// key, readable by this user only. Production sets them from a secret store (`MGW_SEALING_KEYS`,
/// `MGW_AUDIT_SIGNING_KEYS`).
fn embedded_keys(dir: &std::path::Path, file: &str, what: &str) -> anyhow::Result<Vec<String>> {
    let path = dir.join(file);
    if !path.exists() {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&path).with_context(|| format!("creating {}", path.display()))?;
        let line = format!("k1:{}\n", commands::Keyring::generate_key().expose());
        std::io::Write::write_all(&mut file, line.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("created a key in {} (keep it with the data: {what})", path.display());
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
}

/// The audit trail of the store `url` names (PostgreSQL, or an embedded SQLite file, opened as it is).
async fn audit_source(url: &str) -> anyhow::Result<projections::audit::AuditSource> {
    Ok(match api::store_url::StoreUrl::parse(url) {
        Ok(sqlite @ api::store_url::StoreUrl::Sqlite(_)) => projections::audit::AuditSource::Sqlite(
            projections::audit::SqliteAuditTrail::new(sqlite_pool(&sqlite).await?),
        ),
        _ => projections::audit::AuditSource::Postgres(
            PgPoolOptions::new().max_connections(2).connect(url).await.context("database")?,
        ),
    })
}

/// The pool of the SQLite file `url` names (opened as it is: nothing created).
async fn sqlite_pool(url: &api::store_url::StoreUrl) -> anyhow::Result<sqlx::SqlitePool> {
    let api::store_url::StoreUrl::Sqlite(path) = url else { bail!("not a SQLite store") };
    let options = eventstore::SqliteEventStore::connect_options(path).create_if_missing(false);
    sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(2)
        .connect_with(options)
        .await
        .with_context(|| format!("opening {}", path.display()))
}

/// The keys `audit verify` checks checkpoints with, saying which: the public keys given, else the public
/// halves of the gateway's own signing keys (`signing`, from `MGW_AUDIT_SIGNING_KEYS`, or the
/// `audit-signing.keys` the embedded default keeps beside its store).
fn verification_keys(
    database_url: &str,
    given: &[String],
    signing: &[String],
) -> anyhow::Result<projections::audit::AuditKeys> {
    if !given.is_empty() {
        let pairs = key_pairs("--public-keys", given)?;
        println!("checking checkpoints with the keys given: {}", describe_keys(&pairs));
        return Ok(projections::audit::AuditKeys::verifying(&pairs)?);
    }
    let (source, signing) = if !signing.is_empty() {
        ("MGW_AUDIT_SIGNING_KEYS".to_owned(), signing.to_vec())
    } else if let Ok(api::store_url::StoreUrl::Sqlite(path)) = api::store_url::StoreUrl::parse(database_url) {
        let file = path.parent().unwrap_or(std::path::Path::new(".")).join("audit-signing.keys");
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        (file.display().to_string(), text.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect())
    } else {
        (String::new(), Vec::new())
    };
    if signing.is_empty() {
        println!("no keys found to check signed checkpoints with: give --public-keys (GET /api/v1/audit/keys)");
        return Ok(projections::audit::AuditKeys::verifying(&[])?);
    }
    let keys = projections::audit::AuditKeys::new(&key_pairs(&source, &signing)?)?;
    println!("checking checkpoints with the gateway's own keys ({source}): {}", describe_keys(&keys.public_keys()));
    Ok(keys)
}

/// `id (base64 public key)` for each key.
fn describe_keys(keys: &[(String, String)]) -> String {
    keys.iter().map(|(id, key)| format!("{id} ({key})")).collect::<Vec<_>>().join(", ")
}

/// `id:base64` entries as pairs.
fn key_pairs(setting: &str, entries: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    entries
        .iter()
        .map(|entry| match entry.split_once(':') {
            Some((id, key)) => Ok((id.trim().to_owned(), key.trim().to_owned())),
            None => bail!("{setting}: expected `id:base64`, got an entry without `:`"),
        })
        .collect()
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = config(args)?;
    let metrics = api::metrics_catalog::install()?;
    let _upkeep = api::metrics_catalog::spawn_upkeep(metrics.clone());
    let gateway = Gateway::start(&config, Some(metrics)).await?;
    let listener =
        tokio::net::TcpListener::bind(config.listen).await.with_context(|| format!("bind {}", config.listen))?;
    if matches!(gateway.state.tables, api::tables::Tables::Sqlite(_)) {
        first_owner(&gateway, listener.local_addr()?).await?;
    }
    tracing::info!(listen = %config.listen, registry_reads = ?config.registry_reads, "serving");
    if config.registry_reads == api::RegistryReads::Public {
        // Said at every start: an operator upgrading from a private catalogue should not learn it late.
        tracing::info!("the /v0.1 registry API answers anyone; MGW_REGISTRY_READS=authenticated makes it private");
    }
    println!("mcp-gateway listening on http://{}", listener.local_addr()?);
    // The peer's address reaches the handlers (ConnectInfo), and from them every event's metadata.
    let app = router(gateway.state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    // SIGTERM: /ready turns 503 (draining) while requests are still served, so that load balancers take
    // the instance out before it stops accepting; then the listener closes and the requests in flight
    // finish, for at most the shutdown timeout. MCP GET streams end then too (`AppState::stopping`):
    // they answer no request, and would otherwise hold the exit for the whole timeout.
    let mut stopping = gateway.state.stopping.subscribe();
    let serving = axum::serve(listener, app).with_graceful_shutdown(async move {
        let _ = stopping.wait_for(|stop| *stop).await;
    });
    let state = gateway.state.clone();
    let (drain, timeout) = (config.shutdown_drain, config.shutdown_timeout);
    let signalled = async move {
        shutdown().await;
        state.draining.store(true, std::sync::atomic::Ordering::Release);
        tracing::info!(drain_s = drain.as_secs_f64(), "draining: /ready answers 503");
        tokio::time::sleep(drain).await;
        state.stopping.send_replace(true);
        tracing::info!("no longer accepting; finishing the requests in flight");
        tokio::time::sleep(timeout).await;
    };
    tokio::select! {
        served = serving => served?,
        () = signalled => tracing::warn!(
            timeout_s = timeout.as_secs(),
            "requests still running at the shutdown timeout; stopping without them"
        ),
    }
    if !gateway.drain_recorded_calls(std::time::Duration::from_secs(10)).await {
        tracing::error!("stopping with tool calls not yet recorded: the store did not take them within 10 s");
    }
    gateway.stop();
    Ok(())
}

/// `probe`: 2xx within 3 s, or exit 1 saying what answered.
async fn probe(url: &str) -> anyhow::Result<()> {
    let client = reqwest::Client::builder().timeout(std::time::Duration::from_secs(3)).build()?;
    let status = client.get(url).send().await.with_context(|| format!("GET {url}"))?.status();
    if !status.is_success() {
        eprintln!("GET {url}: {status}");
        std::process::exit(1);
    }
    Ok(())
}

/// The embedded default's first start creates the owner and prints its API key, once; later starts find
/// the owner there.
async fn first_owner(gateway: &Gateway, address: SocketAddr) -> anyhow::Result<()> {
    let command_id = Uuid::now_v7();
    let metadata = Metadata::new(command_id, Actor::system("embedded-first-start"), chrono::Utc::now());
    let context = commands::servers::CommandContext { command_id, metadata };
    match commands::identity::bootstrap(&*gateway.state.store, "owner", &context).await {
        Ok(done) => {
            println!("owner {} created. API key (shown once, store it now):", done.principal_id);
            println!("{}", done.api_key.expose());
            println!("try it: curl -H \"Authorization: Bearer {}\" http://{address}/api/v1/me", done.api_key.expose());
            println!(
                "(lost it? `mcp-gateway admin owner-key --database-url sqlite://<data>/events.db` issues another)"
            );
            Ok(())
        }
        Err(commands::CommandError::AlreadyBootstrapped) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Resolves on Ctrl-C or SIGTERM: in-flight requests finish, new ones are refused.
async fn shutdown() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(term) => term,
            Err(_) => return interrupt.await.unwrap_or_default(),
        };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    interrupt.await.unwrap_or_default();
    tracing::info!("shutting down");
}

/// The principal commands on the store `database` names, acting as the local operator (`actor`): one
/// who can write the store, and so needs no credential of the gateway's.
async fn local_operator(
    database: &DatabaseArgs,
    actor: &str,
) -> anyhow::Result<(commands::principals::PrincipalCommands, commands::servers::CommandContext)> {
    let store = api::store_url::StoreUrl::parse(&database.database_url)?.open_existing().await?;
    // These commands seal nothing: a key of their own stands in for the gateway's sealing keys.
    let unused = commands::Keyring::generate_key();
    let keyring = commands::Keyring::new("unused", [("unused", unused.expose())])?;
    let command_id = Uuid::now_v7();
    let metadata = Metadata::new(command_id, Actor::system(actor), chrono::Utc::now());
    let context = commands::servers::CommandContext { command_id, metadata };
    Ok((commands::principals::PrincipalCommands::new(store, Arc::new(keyring)), context))
}

async fn clients_command(command: ClientsCommand) -> anyhow::Result<()> {
    match command {
        ClientsCommand::List(database) => {
            let store = api::store_url::StoreUrl::parse(&database.database_url)?.open_existing().await?;
            let model = projections::replay_once(&*store, projections::authz::Authz::default()).await?;
            println!("client_id\tname\tregistered_at\tstatus\tredirect_uris");
            for client in model.clients() {
                println!(
                    "{}\t{}\t{}\t{}\t{}",
                    client.client_id,
                    client.name.as_deref().unwrap_or("-").replace(['\t', '\n'], " "),
                    client.registered_at.to_rfc3339(),
                    if client.revoked { "revoked" } else { "active" },
                    client.redirect_uris.join(" ")
                );
            }
            Ok(())
        }
        ClientsCommand::Revoke { database, client_id, reason } => {
            let store = api::store_url::StoreUrl::parse(&database.database_url)?.open_existing().await?;
            let command_id = Uuid::now_v7();
            let metadata = Metadata::new(command_id, Actor::system("oauth-clients-revoke"), chrono::Utc::now());
            let context = commands::servers::CommandContext { command_id, metadata };
            commands::oauth_clients::OAuthClients::new(store).revoke(&client_id, &reason, &context).await?;
            println!("client {client_id} revoked");
            Ok(())
        }
    }
}

async fn bootstrap(database: &DatabaseArgs, name: &str) -> anyhow::Result<()> {
    let store = api::store_url::StoreUrl::parse(&database.database_url)?.open().await?;
    let command_id = Uuid::now_v7();
    let metadata = Metadata::new(command_id, Actor::system("admin-bootstrap"), chrono::Utc::now());
    let context = commands::servers::CommandContext { command_id, metadata };
    let done = commands::identity::bootstrap(&*store, name, &context).await?;
    println!("owner {} created. API key (shown once, store it now):", done.principal_id);
    println!("{}", done.api_key.expose());
    Ok(())
}

async fn projections_command(command: ProjectionsCommand) -> anyhow::Result<()> {
    match command {
        ProjectionsCommand::List => {
            for (name, kind) in PROJECTIONS {
                println!("{name}\t{kind}");
            }
            Ok(())
        }
        ProjectionsCommand::Status(database) if database.database_url.starts_with("sqlite:") => {
            let url = api::store_url::StoreUrl::parse(&database.database_url)?;
            let (store, pool) = (url.open_existing().await?, sqlite_pool(&url).await?);
            let head = store.committed_head().await?;
            println!("head of $all: {}", head.map(|p| p.to_string()).unwrap_or_else(|| "empty".into()));
            for (name, kind) in PROJECTIONS {
                if kind != "table" {
                    println!("{name}\t{kind}");
                    continue;
                }
                let checkpoint = projections::load_sqlite_checkpoint(&pool, name).await?;
                let behind: i64 = sqlx::query_scalar("SELECT count(*) FROM events WHERE global_position > ?")
                    .bind(checkpoint.map_or(0, |p| p.global_position as i64))
                    .fetch_one(&pool)
                    .await?;
                let at = checkpoint.map(|p| p.to_string()).unwrap_or_else(|| "nothing applied".into());
                println!("{name}\ttable\tcheckpoint {at}\t{behind} events behind");
            }
            Ok(())
        }
        ProjectionsCommand::Rebuild { database, name } if database.database_url.starts_with("sqlite:") => {
            // The embedded gateway is one process: stop it first. The read model is dropped and folded again.
            let url = api::store_url::StoreUrl::parse(&database.database_url)?;
            let api::store_url::StoreUrl::Sqlite(path) = &url else { bail!("not a SQLite store") };
            let store =
                eventstore::SqliteEventStore::open(path, eventstore::SqliteEventStoreOptions::default()).await?;
            let projection: Arc<dyn projections::SqliteProjection> = match name.as_str() {
                "registry" => Arc::new(projections::registry::SqliteRegistryProjection::default()),
                "audit" => Arc::new(projections::audit::SqliteAuditProjection::default()),
                "analytics" => Arc::new(projections::analytics::SqliteAnalyticsProjection::default()),
                "authz" => bail!(
                    "authz is in memory: every instance rebuilds it at start, from its last snapshot that the log matches"
                ),
                other => bail!("no projection named {other}; see `mcp-gateway projections list`"),
            };
            let applied = projections::rebuild_sqlite(&store, projection).await?;
            println!("rebuilt {name}: {applied} events applied");
            Ok(())
        }
        ProjectionsCommand::Status(database) => {
            let pool =
                PgPoolOptions::new().max_connections(2).connect(&database.database_url).await.context("database")?;
            let store = PgEventStore::new(pool.clone(), PgEventStoreOptions::default());
            let head = store.committed_head().await?;
            println!("head of $all: {}", head.map(|p| p.to_string()).unwrap_or_else(|| "empty".into()));
            for (name, kind) in PROJECTIONS {
                if kind != "table" {
                    println!("{name}\t{kind}");
                    continue;
                }
                let checkpoint = projections::load_checkpoint(&pool, name).await?;
                let behind: i64 = sqlx::query_scalar(
                    "SELECT count(*) FROM es.events WHERE (transaction_id::text::bigint, global_position) > ($1, $2)",
                )
                .bind(checkpoint.map_or(-1, |p| p.transaction_id as i64))
                .bind(checkpoint.map_or(-1, |p| p.global_position as i64))
                .fetch_one(&pool)
                .await?;
                let at = checkpoint.map(|p| p.to_string()).unwrap_or_else(|| "nothing applied".into());
                println!("{name}\ttable\tcheckpoint {at}\t{behind} events behind");
            }
            Ok(())
        }
        ProjectionsCommand::Rebuild { database, name } => {
            let pool =
                PgPoolOptions::new().max_connections(4).connect(&database.database_url).await.context("database")?;
            let store = PgEventStore::new(pool, PgEventStoreOptions::default());
            let projection: Arc<dyn projections::TableProjection> = match name.as_str() {
                "registry" => Arc::new(RegistryProjection::default()),
                "audit" => Arc::new(projections::audit::AuditProjection::default()),
                "analytics" => Arc::new(projections::analytics::AnalyticsProjection::default()),
                "authz" => bail!(
                    "authz is in memory: every instance rebuilds it at start, from its last snapshot that the log matches"
                ),
                other => bail!("no projection named {other}; see `mcp-gateway projections list`"),
            };
            let report = projections::rebuild(&store, projection.as_ref(), RunnerOptions::default()).await?;
            println!("rebuilt {name}: {report:?}");
            Ok(())
        }
    }
}

/// `events copy`: the copy, its verification, and what to do next.
async fn events_copy(from: &str, to: &str) -> anyhow::Result<()> {
    use api::store_url::StoreUrl;
    let (from, to) = (StoreUrl::parse(from)?, StoreUrl::parse(to)?);
    if from == to {
        bail!("the source and the target are the same store");
    }
    let (source, target) = (from.open_existing().await?, to.open().await?);
    let started = std::time::Instant::now();
    let mut reported = std::time::Instant::now();
    let copied = eventstore::copy_events(&*source, &*target, |n| {
        if reported.elapsed() >= std::time::Duration::from_secs(2) {
            eprintln!("{n} events copied");
            reported = std::time::Instant::now();
        }
    })
    .await?;
    println!(
        "copied {} events of {} streams and {} claims in {:.1} s",
        copied.events,
        copied.streams,
        copied.claims,
        started.elapsed().as_secs_f64()
    );
    let verified = eventstore::verify_copy(&*source, &*target).await?;
    println!("verified: {verified} events identical (ids, streams, revisions, content, chain links), claims identical");
    println!("start the gateway on the target: its read models are built from the copied log; then `audit verify`");
    Ok(())
}
