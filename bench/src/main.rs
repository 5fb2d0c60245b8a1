//! The benchmark harness: `cargo run --release -p bench -- <name>`.
//!
//! Each benchmark starts its own PostgreSQL (durable settings: fsync and synchronous commit on, as in
//! production) from the test harness, measures the gateway's code next to a baseline measured in the
//! same run on the same server, prints a table, and writes `bench/results/<name>.json`: a list of rows
//! `{metric, value, unit, baseline, ratio, target, pass}`. Absolute figures swing with the machine's
//! load; the ratio to the same-run baseline is what the targets are set on.

mod api_bench;
mod audit_bench;
mod authz_bench;
mod contextforge;
mod cpu_time;
mod echo_mcp;
mod eventstore_bench;
mod oauth_bench;
mod ops_bench;
mod payload;
mod pipeline_bench;
mod proxy_bench;
mod python_peer;
mod report;
mod runner;
mod serving;
mod soak_bench;
mod sqlite_bench;
mod switched_metrics;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Benchmarks of the MCP Registry Gateway")]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Appends and replay of the event store against plain-SQL baselines.
    Eventstore(eventstore_bench::Options),
    /// The read side: relay throughput, replays into in-memory and table projections.
    Pipeline(pipeline_bench::Options),
    /// The REST API: Add Server commands and catalogue reads.
    Api(api_bench::Options),
    /// The audit trail: queries, export and verification over millions of entries.
    Audit(audit_bench::Options),
    /// Authentication and authorization: token checks on one core, revocation between instances.
    Authz(authz_bench::Options),
    /// MCP clients' authorization through the gateway: the gateway's time per flow, flows/s, refreshes/s.
    Oauth(oauth_bench::Options),
    /// The MCP proxy: tools/call through the gateway against the upstream directly, at a fixed and the maximum rate.
    Proxy(proxy_bench::Options),
    /// Operating at scale: ready after a restart on a million events, `/metrics`, `/ready`, analytics queries.
    Ops(ops_bench::Options),
    /// Memory on the authenticated path: RSS over a million authenticated requests, after warm-up.
    Soak(soak_bench::Options),
}

/// mimalloc: per-thread heaps. The proxy allocates and frees on every request from both cores; glibc's
/// allocator spent about a tenth of the `proxy` bench's CPU in `malloc`/`free` and its arena locks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // The gateway's own logs, when asked for (`RUST_LOG=info`): a benchmark's failure names its cause.
    if let Ok(filter) = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG") {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    }
    let cli = Cli::parse();
    let (name, rows) = match cli.bench {
        Bench::Eventstore(options) => ("eventstore", eventstore_bench::run(options).await?),
        Bench::Pipeline(options) => ("pipeline", pipeline_bench::run(options).await?),
        Bench::Api(options) => ("api", api_bench::run(options).await?),
        Bench::Audit(options) => ("audit", audit_bench::run(options).await?),
        Bench::Authz(options) => ("authz", authz_bench::run(options).await?),
        Bench::Soak(options) => ("soak", soak_bench::run(options).await?),
        Bench::Oauth(options) => ("oauth", oauth_bench::run(options).await?),
        Bench::Proxy(options) => ("proxy", proxy_bench::run(options).await?),
        Bench::Ops(options) => ("ops", ops_bench::run(options).await?),
    };
    report::print(name, &rows);
    let path = report::write(name, &rows)?;
    println!("\nwritten to {}", path.display());
    Ok(())
}
