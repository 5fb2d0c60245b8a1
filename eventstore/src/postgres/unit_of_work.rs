//! [`PgUnitOfWork`]: appends inside a transaction the caller also writes to.

use sqlx::{PgConnection, Postgres, Transaction};

use super::PgEventStore;
use super::append::{AppendFailure, append_prepared};
use crate::error::from_sqlx;
use crate::{AppendResult, Error, EventData, ExpectedRevision, Result, StreamAppend, StreamName};

/// A transaction holding appends and any other writes of the caller. Dropped without
/// [`PgUnitOfWork::commit`], it rolls back.
pub struct PgUnitOfWork {
    tx: Transaction<'static, Postgres>,
    store: PgEventStore,
    wrote: bool,
}

impl PgUnitOfWork {
    pub(super) fn new(tx: Transaction<'static, Postgres>, store: PgEventStore) -> Self {
        Self { tx, store, wrote: false }
    }

    /// Appends to one stream. A failure leaves the transaction unusable: drop it.
    pub async fn append(
        &mut self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<EventData>,
    ) -> Result<AppendResult> {
        let prepared = self.store.prepare(stream, expected, &events)?;
        // Known ids abort the transaction, so a retry cannot be answered inside it: report a conflict,
        // and the caller runs the unit again (where the retry is recognised before anything is written).
        let result = append_prepared(&mut self.tx, &prepared, &self.store.heads).await.map_err(|e| match e {
            AppendFailure::Raced | AppendFailure::KnownIds | AppendFailure::ClaimHeld => prepared.lost_race(),
            AppendFailure::Failed(e) => e,
        })?;
        self.wrote |= !result.idempotent;
        Ok(result)
    }

    /// Appends to several streams, taking their locks in name order so that two such appends cannot
    /// deadlock. All appends must be retries, or none: a mix is a [`Error::PartialDuplicate`].
    pub(super) async fn append_multi_raw(
        &mut self,
        appends: &[StreamAppend],
    ) -> Result<Vec<AppendResult>, AppendFailure> {
        if appends.is_empty() {
            return Err(Error::EmptyAppend.into());
        }
        let prepared =
            appends.iter().map(|a| self.store.prepare(&a.stream, a.expected, &a.events)).collect::<Result<Vec<_>>>()?;
        let mut order: Vec<usize> = (0..prepared.len()).collect();
        order.sort_by(|&a, &b| prepared[a].stream.cmp(&prepared[b].stream));
        if order.windows(2).any(|w| prepared[w[0]].stream == prepared[w[1]].stream) {
            return Err(Error::InvalidEvent {
                event_id: uuid::Uuid::nil(),
                reason: "a stream appears twice in one multi-stream append",
            }
            .into());
        }
        let mut results = vec![None; prepared.len()];
        for i in order {
            results[i] = Some(append_prepared(&mut self.tx, &prepared[i], &self.store.heads).await?);
        }
        let results: Vec<AppendResult> = results.into_iter().flatten().collect();
        let retried = results.iter().filter(|r| r.idempotent).count();
        if retried != 0 && retried != results.len() {
            let stream = prepared.iter().zip(&results).find(|(_, r)| r.idempotent).map(|(p, _)| p.stream.clone());
            return Err(Error::PartialDuplicate { stream: stream.unwrap_or_else(|| appends[0].stream.clone()) }.into());
        }
        self.wrote |= retried == 0;
        Ok(results)
    }

    /// The transaction's connection, for the caller's own statements.
    pub fn connection(&mut self) -> &mut PgConnection {
        &mut self.tx
    }

    /// Commits, then wakes this process's subscribers.
    pub async fn commit(self) -> Result<()> {
        self.tx.commit().await.map_err(from_sqlx)?;
        if self.wrote {
            self.store.signal_appended();
        }
        Ok(())
    }
}
