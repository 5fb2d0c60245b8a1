//! `bench authz`: the check every request pays (an access token verified and its principal and key looked
//! up in the authorization model, then the decision), on one core, with the verified-token cache hit and
//! missed; and how long a revocation on one gateway instance takes to be enforced by another.
//!
//! Two gateways run on one PostgreSQL and one NATS server, each with its own pools and NATS connection,
//! as two processes would. The per-check loop runs on a thread of its own with a single-threaded runtime.

use std::sync::Arc;
use std::time::{Duration, Instant};

use api::state::AppState;
use api::{Gateway, GatewayConfig};
use chrono::Utc;
use commands::principals::KeyInput;
use commands::servers::CommandContext;
use domain::authz::{Action, Resource, Subject, decide};
use eventstore::{Actor, Metadata};
use tests::{NatsServer, PostgresOptions, PostgresServer};
use uuid::Uuid;

use crate::report::Row;

/// Options of `bench authz`.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Checks measured with the cache hit.
    #[arg(long, default_value_t = 300_000)]
    hits: usize,
    /// Checks measured with the cache missed (each a token not seen before).
    #[arg(long, default_value_t = 20_000)]
    misses: usize,
    /// Revocations whose propagation is measured.
    #[arg(long, default_value_t = 200)]
    revocations: usize,
}

fn context() -> CommandContext {
    let command_id = Uuid::now_v7();
    CommandContext { command_id, metadata: Metadata::new(command_id, Actor::system("bench"), Utc::now()) }
}

fn config(database_url: &str, nats_url: String) -> GatewayConfig {
    GatewayConfig { nats_url: Some(nats_url), ..crate::serving::config(database_url) }
}

/// One check: the credential to its principal, then the decision.
async fn check(state: &AppState, token: &str) -> bool {
    match api::auth::authenticate_credential(state, token).await {
        Ok(principal) => {
            let subject = Subject { id: principal.id, roles: &principal.roles, scopes: &principal.scopes };
            decide(&subject, Action::ReadServers, Resource::Any).allow
        }
        Err(_) => false,
    }
}

/// Runs `checks` over `tokens` (cycling) on a thread of its own; per-check latencies in nanoseconds and
/// the wall time.
fn one_core(state: AppState, tokens: Arc<Vec<String>>, checks: usize) -> anyhow::Result<(Vec<u64>, Duration)> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        runtime.block_on(async move {
            let mut latencies = Vec::with_capacity(checks);
            let started = Instant::now();
            for i in 0..checks {
                let at = Instant::now();
                let allowed = check(&state, &tokens[i % tokens.len()]).await;
                latencies.push(at.elapsed().as_nanos() as u64);
                anyhow::ensure!(allowed, "a good token was refused");
            }
            Ok((latencies, started.elapsed()))
        })
    })
    .join()
    .map_err(|_| anyhow::anyhow!("the measuring thread panicked"))?
}

fn percentile_us(sorted: &[u64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted.get(index).copied().unwrap_or_default() as f64 / 1000.0
}

pub(crate) async fn run(options: Options) -> anyhow::Result<Vec<Row>> {
    let server = PostgresServer::start(PostgresOptions::default())?;
    let db = server.create_database().await?;
    let nats = NatsServer::start()?;
    let first = Gateway::start(&config(&db.url, nats.url()), None).await?;
    let second = Gateway::start(&config(&db.url, nats.url()), None).await?;
    let owner = commands::identity::bootstrap(&*first.state.store, "bench", &context()).await?;
    let principal = owner.principal_id;
    let key_id = Uuid::now_v7();
    first.state.principals.issue_key(principal, principal, key_id, KeyInput::default(), Utc::now(), &context()).await?;
    let issue = |state: &AppState, key: Uuid| -> anyhow::Result<String> {
        let token = state.tokens.issue(principal, &key.to_string(), &[], chrono::Duration::minutes(15), Utc::now())?;
        Ok(token.expose().to_owned())
    };
    let token = issue(&first.state, key_id)?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !check(&first.state, &token).await {
        anyhow::ensure!(Instant::now() < deadline, "the gateway did not learn the key");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Cache hit: the same token again and again.
    let (mut hit, hit_wall) = one_core(first.state.clone(), Arc::new(vec![token]), options.hits)?;
    hit.sort_unstable();
    // Cache miss: every token new (distinct `jti`), each verified once.
    let fresh = (0..options.misses).map(|_| issue(&first.state, key_id)).collect::<anyhow::Result<Vec<_>>>()?;
    let (mut miss, miss_wall) = one_core(first.state.clone(), Arc::new(fresh), options.misses)?;
    miss.sort_unstable();

    // Propagation: a key revoked through the first instance, until the second refuses its token.
    let mut propagation = Vec::with_capacity(options.revocations);
    for _ in 0..options.revocations {
        let key = Uuid::now_v7();
        first
            .state
            .principals
            .issue_key(principal, principal, key, KeyInput::default(), Utc::now(), &context())
            .await?;
        let token = issue(&first.state, key)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while !check(&second.state, &token).await {
            anyhow::ensure!(Instant::now() < deadline, "the second instance did not learn a key");
            tokio::task::yield_now().await;
        }
        let at = Instant::now();
        first.state.principals.revoke_key(principal, principal, key, "bench", &context()).await?;
        while check(&second.state, &token).await {
            anyhow::ensure!(at.elapsed() < Duration::from_secs(30), "the second instance kept a revoked key");
            tokio::task::yield_now().await;
        }
        propagation.push(at.elapsed().as_nanos() as u64);
    }
    propagation.sort_unstable();
    first.stop();
    second.stop();

    let per_sec = |n: usize, wall: Duration| n as f64 / wall.as_secs_f64();
    Ok(vec![
        Row::at_least(
            "token check + decide, cache hit, one core",
            per_sec(options.hits, hit_wall),
            "checks/s",
            200_000.0,
        ),
        Row::info("  cache hit p50", percentile_us(&hit, 50.0), "µs"),
        Row::at_most("  cache hit p99", percentile_us(&hit, 99.0), "µs", 20.0),
        Row::info("token check + decide, cache miss, one core", per_sec(options.misses, miss_wall), "checks/s"),
        Row::info("  cache miss p50", percentile_us(&miss, 50.0), "µs"),
        Row::at_most("  cache miss p99", percentile_us(&miss, 99.0), "µs", 150.0),
        Row::info(
            format!("revocation on one instance → refused on another, p50 ({} revocations)", options.revocations),
            percentile_us(&propagation, 50.0) / 1000.0,
            "ms",
        ),
        Row::at_most("  same, p99", percentile_us(&propagation, 99.0) / 1000.0, "ms", 100.0),
    ])
}
