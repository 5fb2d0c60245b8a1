//! Running N concurrent writers for a fixed time and summarising what they did.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// What one operation did.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Outcome {
    /// Events (or rows) written.
    pub(crate) events: u64,
    /// Optimistic-concurrency conflicts met.
    pub(crate) conflicts: u64,
}

/// What a run did.
#[derive(Debug, Clone)]
pub(crate) struct RunStats {
    pub(crate) ops: u64,
    pub(crate) events: u64,
    pub(crate) conflicts: u64,
    pub(crate) elapsed: Duration,
    pub(crate) latencies_us: Vec<u64>,
}

impl RunStats {
    pub(crate) fn events_per_sec(&self) -> f64 {
        self.events as f64 / self.elapsed.as_secs_f64()
    }

    pub(crate) fn percentile_ms(&self, p: f64) -> f64 {
        percentile(&self.latencies_us, p) as f64 / 1000.0
    }
}

/// The `p`-th percentile (0..=100) of `values`.
pub(crate) fn percentile(values: &[u64], p: f64) -> u64 {
    if values.is_empty() {
        return 0;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

/// The median of `values`.
pub(crate) fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

/// Runs `writers` tasks, each calling `op(writer, iteration)` in a loop, for `duration`.
pub(crate) async fn run_writers<F, Fut>(writers: usize, duration: Duration, op: F) -> anyhow::Result<RunStats>
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<Outcome>> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|w| {
            let (op, stop) = (op.clone(), stop.clone());
            tokio::spawn(async move {
                let mut stats = (0u64, Outcome::default(), Vec::with_capacity(4096));
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let outcome = op(w, i).await?;
                    stats.2.push(t.elapsed().as_micros() as u64);
                    stats.0 += 1;
                    stats.1.events += outcome.events;
                    stats.1.conflicts += outcome.conflicts;
                    i += 1;
                }
                anyhow::Ok(stats)
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut total = RunStats { ops: 0, events: 0, conflicts: 0, elapsed: Duration::ZERO, latencies_us: Vec::new() };
    for t in tasks {
        let (ops, outcome, latencies) = t.await??;
        total.ops += ops;
        total.events += outcome.events;
        total.conflicts += outcome.conflicts;
        total.latencies_us.extend(latencies);
    }
    total.elapsed = started.elapsed();
    Ok(total)
}
