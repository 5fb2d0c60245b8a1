//! An event store that measures its appends: how many, how long, how many lost to a concurrent writer.
//!
//! A decorator rather than code in each backend, so both backends report the same families with the
//! same labels: `mgw_eventstore_appends_total{backend,outcome}`, `mgw_eventstore_append_seconds{backend}`
//! and `mgw_eventstore_conflicts_total{backend}`.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use tokio::sync::watch;

use crate::{
    AppendResult, Claim, Claims, Direction, EventData, EventStore, ExpectedRevision, Position, RecordedEvent, Result,
    StreamAppend, StreamCursor, StreamName, VerifyReport,
};

/// `inner`, with its appends measured under the label `backend`.
pub struct Instrumented {
    inner: Arc<dyn EventStore>,
    backend: &'static str,
}

impl Instrumented {
    /// Measures the appends of `inner`, labelled `backend` (`postgres`, `sqlite`).
    pub fn new(inner: Arc<dyn EventStore>, backend: &'static str) -> Self {
        Self { inner, backend }
    }

    fn record<T>(&self, started: Instant, result: &Result<T>) {
        let outcome = match result {
            Ok(_) => "ok",
            Err(e) if e.is_conflict() => "conflict",
            Err(e) if e.is_client_error() => "refused",
            Err(_) => "error",
        };
        let backend = self.backend;
        metrics::counter!("mgw_eventstore_appends_total", "backend" => backend, "outcome" => outcome).increment(1);
        metrics::histogram!("mgw_eventstore_append_seconds", "backend" => backend)
            .record(started.elapsed().as_secs_f64());
        if outcome == "conflict" {
            metrics::counter!("mgw_eventstore_conflicts_total", "backend" => backend).increment(1);
        }
    }
}

#[async_trait]
impl EventStore for Instrumented {
    async fn append_claiming(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<EventData>,
        claims: Claims,
    ) -> Result<AppendResult> {
        let started = Instant::now();
        let result = self.inner.append_claiming(stream, expected, events, claims).await;
        self.record(started, &result);
        result
    }

    async fn append_multi(&self, appends: Vec<StreamAppend>) -> Result<Vec<AppendResult>> {
        let started = Instant::now();
        let result = self.inner.append_multi(appends).await;
        self.record(started, &result);
        result
    }

    async fn read_stream(
        &self,
        stream: &StreamName,
        direction: Direction,
        from: StreamCursor,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        self.inner.read_stream(stream, direction, from, limit).await
    }

    async fn read_all(&self, after: Option<Position>, limit: usize) -> Result<Vec<RecordedEvent>> {
        self.inner.read_all(after, limit).await
    }

    async fn read_all_following(&self, after: Option<Position>, limit: usize) -> Result<Vec<RecordedEvent>> {
        self.inner.read_all_following(after, limit).await
    }

    async fn head(&self) -> Result<Option<Position>> {
        self.inner.head().await
    }

    async fn committed_head(&self) -> Result<Option<Position>> {
        self.inner.committed_head().await
    }

    async fn held_claims(&self) -> Result<Vec<(Claim, StreamName)>> {
        self.inner.held_claims().await
    }

    async fn verify_stream(&self, stream: &StreamName) -> Result<VerifyReport> {
        self.inner.verify_stream(stream).await
    }

    async fn verify_all(&self) -> Result<VerifyReport> {
        self.inner.verify_all().await
    }

    fn appended(&self) -> watch::Receiver<u64> {
        self.inner.appended()
    }
}
