//! The gateway's Prometheus recorder behind a switch per thread, installed for the whole process: on,
//! every metric is recorded as in production; off, the recorder hands out no-op handles, as when none is
//! installed (the gateway's call sites build their keys and labels either way, as they do without a
//! recorder). The `proxy` bench runs a gateway with its metrics and one without side by side, each on a
//! runtime of its own whose threads are switched on or off at their start.

use std::cell::Cell;

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{PrometheusHandle, PrometheusRecorder};

thread_local! {
    static RECORDING: Cell<bool> = const { Cell::new(true) };
}

/// Turns recording on or off for the calling thread (for a runtime's threads: from `on_thread_start`).
pub(crate) fn record_on_this_thread(on: bool) {
    RECORDING.with(|recording| recording.set(on));
}

fn recording() -> bool {
    RECORDING.with(Cell::get)
}

struct Switched {
    inner: PrometheusRecorder,
}

/// Installs the gateway's recorder behind the switch, describes the gateway's metrics, and keeps its
/// histograms drained as the exporter's own installation does.
pub(crate) fn install() -> anyhow::Result<PrometheusHandle> {
    let inner = api::metrics_catalog::recorder()?;
    let handle = inner.handle();
    metrics::set_global_recorder(Switched { inner })
        .map_err(|_| anyhow::anyhow!("a metrics recorder is installed already"))?;
    api::metrics_catalog::announce();
    let upkeep = handle.clone();
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            upkeep.run_upkeep();
        }
    });
    Ok(handle)
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
        if recording() { self.inner.register_counter(key, metadata) } else { Counter::noop() }
    }

    fn register_gauge(&self, key: &Key, metadata: &Metadata<'_>) -> Gauge {
        if recording() { self.inner.register_gauge(key, metadata) } else { Gauge::noop() }
    }

    fn register_histogram(&self, key: &Key, metadata: &Metadata<'_>) -> Histogram {
        if recording() { self.inner.register_histogram(key, metadata) } else { Histogram::noop() }
    }
}
