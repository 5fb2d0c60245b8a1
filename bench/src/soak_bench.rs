//! `bench soak`: memory on the authenticated path. The embedded gateway serves `GET /api/v1/me` with an
//! API key over real HTTP (keep-alive clients on the loopback) for a bounded number of requests; the
//! process's resident memory is read after a warm-up and then every tenth of the run. A flat line after
//! the warm-up is the target; growth per million requests is the figure (it was 10 MB: every request's
//! latency sample kept by the Prometheus recorder, whose upkeep nobody ran).
//!
//! Nothing scrapes `/metrics` during the run, as on an instance whose Prometheus is down.

use std::net::SocketAddr;
use std::time::Instant;

use api::{Gateway, GatewayConfig, router};
use commands::servers::CommandContext;
use eventstore::{Actor, Metadata};
use uuid::Uuid;

use crate::report::Row;

/// Options of `bench soak`.
#[derive(Debug, clap::Args)]
pub(crate) struct Options {
    /// Authenticated requests in all (the first tenth warms up).
    #[arg(long, default_value_t = 1_000_000)]
    requests: u64,
    /// Concurrent keep-alive clients.
    #[arg(long, default_value_t = 8)]
    clients: u64,
    /// Leave the exporter's upkeep off, as before step 7 (to see the growth it stops).
    #[arg(long)]
    without_upkeep: bool,
}

/// The largest growth after warm-up that still counts as flat, per million requests.
const FLAT_MB_PER_MILLION: f64 = 2.0;

/// The process's resident set, in MiB.
fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

pub(crate) async fn run(options: Options) -> anyhow::Result<Vec<Row>> {
    // The recorder as `serve` installs it: described, with its upkeep running.
    let metrics = api::metrics_catalog::install()?;
    let _upkeep = (!options.without_upkeep).then(|| api::metrics_catalog::spawn_upkeep(metrics.clone()));
    let dir = tempfile::tempdir()?;
    let config = GatewayConfig {
        audit_signing_keys: vec![("a1".into(), crate::serving::KEY.into())],
        ..crate::serving::config(&format!("sqlite://{}", dir.path().join("events.db").display()))
    };
    let gateway = Gateway::start(&config, Some(metrics)).await?;
    let command_id = Uuid::now_v7();
    let context =
        CommandContext { command_id, metadata: Metadata::new(command_id, Actor::system("bench"), chrono::Utc::now()) };
    let owner = commands::identity::bootstrap(&*gateway.state.store, "owner", &context).await?;
    let key = owner.api_key.expose().to_owned();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let app = router(gateway.state.clone()).into_make_service_with_connect_info::<SocketAddr>();
    tokio::spawn(async move { axum::serve(listener, app).await });

    let client = reqwest::Client::builder().pool_max_idle_per_host(options.clients as usize).build()?;
    let url = format!("http://{address}/api/v1/me");
    // Until the authorization model knows the key
    let deadline = Instant::now() + std::time::Duration::from_secs(30);
    while client.get(&url).bearer_auth(&key).send().await?.status() != 200 {
        anyhow::ensure!(Instant::now() < deadline, "the gateway never accepted the owner's key");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let slice = (options.requests / 10).max(options.clients);
    let run_slice = |n: u64| {
        let (client, url, key) = (client.clone(), url.clone(), key.clone());
        async move {
            let per_client = n / options.clients;
            let tasks: Vec<_> = (0..options.clients)
                .map(|_| {
                    let (client, url, key) = (client.clone(), url.clone(), key.clone());
                    tokio::spawn(async move {
                        for _ in 0..per_client {
                            let response = client.get(&url).bearer_auth(&key).send().await?;
                            anyhow::ensure!(response.status() == 200, "GET /api/v1/me: {}", response.status());
                            response.bytes().await?;
                        }
                        Ok::<_, anyhow::Error>(())
                    })
                })
                .collect();
            for task in tasks {
                task.await??;
            }
            Ok::<_, anyhow::Error>(per_client * options.clients)
        }
    };
    run_slice(slice).await?;
    let warm = rss_mib();
    let (started, mut served, mut highest) = (Instant::now(), 0u64, warm);
    for _ in 1..10 {
        served += run_slice(slice).await?;
        let rss = rss_mib();
        highest = highest.max(rss);
        println!("after {:>9} requests: RSS {rss:.1} MiB", served + slice);
    }
    let elapsed = started.elapsed().as_secs_f64();
    let end = rss_mib();
    let per_million = (end - warm).max(0.0) / (served as f64 / 1e6);
    gateway.stop();
    Ok(vec![
        Row::info("requests after warm-up", served as f64, "requests"),
        Row::info("throughput (GET /api/v1/me, API key)", served as f64 / elapsed, "req/s"),
        Row::info("RSS after warm-up", warm, "MiB"),
        Row::info("RSS at the end", end, "MiB"),
        Row::info("RSS highest", highest, "MiB"),
        Row::at_most("RSS growth per million requests after warm-up", per_million, "MiB", FLAT_MB_PER_MILLION),
    ])
}
