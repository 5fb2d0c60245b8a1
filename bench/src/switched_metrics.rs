//! The gateway's Prometheus recorder behind a switch, installed for the whole process: on, every metric
//! is recorded as in production; off, the recorder hands out no-op handles, as when none is installed
//! (the gateway's call sites build their keys and labels either way, as they do without a recorder). The
//! `proxy` bench turns it off to measure what recording costs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};

/// Turns recording on and off.
#[derive(Clone)]
pub(crate) struct MetricsSwitch(Arc<AtomicBool>);

impl MetricsSwitch {
    pub(crate) fn set(&self, on: bool) {
        self.0.store(on, Ordering::SeqCst);
    }
}

struct Switched {
    on: Arc<AtomicBool>,
    inner: PrometheusRecorder,
}

/// Installs the gateway's recorder behind a switch (on), describes the gateway's metrics, and keeps its
/// histograms drained as the exporter's own installation does.
pub(crate) fn install() -> anyhow::Result<(PrometheusHandle, MetricsSwitch)> {
    let inner = api::metrics_catalog::recorder()?;
    let handle = inner.handle();
    let on = Arc::new(AtomicBool::new(true));
    metrics::set_global_recorder(Switched { on: on.clone(), inner })
        .map_err(|_| anyhow::anyhow!("a metrics recorder is installed already"))?;
    api::metrics_catalog::announce();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Ok((handle, MetricsSwitch(on)))
}

impl Recorder for Switched {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_counter(key, unit, description);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_gauge(key, unit, description);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, description: SharedString) {
        self.inner.describe_histogram(key, unit, description);
    }

    fn register_counter(&self, key: &Key, metadata: &Metadata<'_>) -> Counter {
        if self.on.load(Ordering::Relaxed) { self.inner.register_counter(key, metadata) } else { Counter::noop() }
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        if self.on.load(Ordering::Relaxed) { self.inner.register_gauge(key, metadata) } else { Gauge::noop() }
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        if self.on.load(Ordering::Relaxed) { self.inner.register_histogram(key, metadata) } else { Histogram::noop() }
    }
}
