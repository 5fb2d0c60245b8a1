//! The relay loop: leader election, resync, pipelined publishing with a sequence fence.

use std::collections::VecDeque;

use async_nats::jetstream::{self, context::PublishAckFuture, stream};

use super::headers::{message_headers, position_of};
use super::options::RelayOptions;
use super::subject::subject_for;
use crate::error::from_sqlx;
use crate::{EventStore, FollowWait, LeaderLock, PgEventStore, Position, RecordedEvent};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Why a relay term ended. The relay logs it, waits, and starts again.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    /// Reading `$all`, the checkpoint or the leader lock failed.
    #[error("event store: {0}")]
    Store(#[from] crate::Error),
    /// NATS refused, timed out or went away.
    #[error("NATS: {0}")]
    Nats(#[source] BoxError),
    /// JetStream stored a publish at another sequence than expected, or called it a duplicate: another
    /// publisher wrote to the stream, or the resync point was wrong.
    #[error("JetStream acknowledged sequence {got} (duplicate: {duplicate}) where {expected} was expected")]
    Fenced {
        /// The sequence this relay expected.
        expected: u64,
        /// The sequence in the ack.
        got: u64,
        /// The ack called it a duplicate.
        duplicate: bool,
    },
    /// The stream's last message carries no position: something other than the relay published into the
    /// stream, and where to resume is unknown.
    #[error("message {0} of the stream was not published by the relay (no position header)")]
    ForeignMessage(u64),
    /// The dedicated connection holding the leader lock broke: another relay may be active now.
    #[error("lost the leader lock")]
    LostLeadership,
}

fn nats(e: impl std::error::Error + Send + Sync + 'static) -> RelayError {
    RelayError::Nats(Box::new(e))
}

/// Publishes the store's events to JetStream. See the [module docs](super).
pub struct Relay {
    store: PgEventStore,
    jetstream: jetstream::Context,
    options: RelayOptions,
}

impl Relay {
    /// A relay from `store` to the JetStream of `jetstream`.
    pub fn new(store: PgEventStore, jetstream: jetstream::Context, options: RelayOptions) -> Self {
        Self { store, jetstream, options }
    }

    /// The checkpoint row of this relay in `es.checkpoints`.
    fn checkpoint_name(&self) -> String {
        format!("nats-relay:{}", self.options.stream)
    }

    /// Runs until the future is dropped: waits to become the leader, then publishes; after any failure,
    /// waits and starts again.
    pub async fn run(self) {
        loop {
            if let Err(e) = self.lead_once().await {
                tracing::warn!(error = %e, stream = %self.options.stream, "relay stopped; starting again");
            }
            tokio::time::sleep(self.options.retry_after).await;
        }
    }

    /// Becomes the leader (waiting as long as another relay is), then publishes until something fails.
    async fn lead_once(&self) -> Result<(), RelayError> {
        let key = format!("nats-relay:{}", self.options.stream);
        let mut lock = LeaderLock::acquire(self.store.pool(), &key, self.options.poll_interval).await?;
        tracing::info!(stream = %self.options.stream, "relay is the leader");
        let stream = self.ensure_stream().await?;
        let (mut after, mut sequence) = self.resync(&stream).await?;
        tracing::info!(after = ?after.map(|p| p.to_string()), sequence, "relay resynced");
        let mut woken = self.store.appended();
        let mut wait = FollowWait::new(self.options.poll_interval);
        loop {
            // The lock lives exactly as long as this connection: check it before every page.
            lock.confirm().await.map_err(|_| RelayError::LostLeadership)?;
            let events = self.store.read_all_following(after, self.options.page_size).await?;
            let Some((last, written_at)) = events.last().map(|e| (e.position, e.metadata.occurred_at)) else {
                // Nothing new: caught up. Wait for an append in this process or for the next poll.
                metrics::gauge!("mgw_relay_lag_seconds", "stream" => self.options.stream.clone()).set(0.0);
                let woke = tokio::time::timeout(wait.next(), woken.changed()).await.is_ok_and(|r| r.is_ok());
                wait.waited(woke);
                continue;
            };
            wait.found();
            let published = events.len() as u64;
            sequence = self.publish_page(events, after, sequence).await?;
            after = Some(last);
            let stream = self.options.stream.clone();
            metrics::counter!("mgw_relay_events_published_total", "stream" => stream.clone()).increment(published);
            // How far behind the newest published event was written: the relay's backlog, in time.
            let lag = (chrono::Utc::now() - written_at).num_milliseconds().max(0) as f64 / 1000.0;
            metrics::gauge!("mgw_relay_lag_seconds", "stream" => stream).set(lag);
            self.save_checkpoint(last).await?;
        }
    }

    async fn ensure_stream(&self) -> Result<stream::Stream, RelayError> {
        let o = &self.options;
        let config = stream::Config {
            name: o.stream.clone(),
            subjects: vec![format!("{}.>", o.subject_prefix)],
            storage: stream::StorageType::File,
            duplicate_window: o.duplicate_window,
            num_replicas: o.replicas,
            max_age: o.max_age,
            allow_direct: true,
            deny_delete: true,
            deny_purge: true,
            ..Default::default()
        };
        self.jetstream.create_or_update_stream(config).await.map_err(nats)?;
        self.jetstream.get_stream(&o.stream).await.map_err(nats)
    }

    /// Where to resume, and the sequence to expect. JetStream is the truth: after the position in the
    /// stream's last message, or from the start when the stream is empty (new, or recreated: everything
    /// is published again). Only when the last message is gone (expired by `max_age`) does the relay's
    /// checkpoint say where it was.
    async fn resync(&self, stream: &stream::Stream) -> Result<(Option<Position>, u64), RelayError> {
        let mut stream = stream.clone();
        let last_sequence = stream.info().await.map_err(nats)?.state.last_sequence;
        if last_sequence == 0 {
            return Ok((None, 0));
        }
        match stream.direct_get(last_sequence).await {
            Ok(message) => match position_of(&message.headers) {
                Some(position) => Ok((Some(position), last_sequence)),
                None => Err(RelayError::ForeignMessage(last_sequence)),
            },
            Err(e) if e.kind() == stream::DirectGetErrorKind::NotFound => {
                Ok((self.load_checkpoint().await?, last_sequence))
            }
            Err(e) => Err(nats(e)),
        }
    }

    /// Publishes `events`, which follow `previous` in `$all`, expecting the stream to be at `sequence`;
    /// returns the sequence after them.
    async fn publish_page(
        &self,
        events: Vec<RecordedEvent>,
        mut previous: Option<Position>,
        mut sequence: u64,
    ) -> Result<u64, RelayError> {
        let mut in_flight: VecDeque<(PublishAckFuture, u64)> = VecDeque::with_capacity(self.options.max_in_flight);
        for event in events {
            let subject = subject_for(&self.options.subject_prefix, &event.stream);
            let headers = message_headers(&event, previous);
            previous = Some(event.position);
            let message = jetstream::message::PublishMessage::build()
                .headers(headers)
                .message_id(event.event_id.to_string())
                .expected_last_sequence(sequence)
                .payload(event.data.into());
            let ack = self.jetstream.send_publish(subject, message).await.map_err(nats)?;
            sequence += 1;
            in_flight.push_back((ack, sequence));
            if in_flight.len() >= self.options.max_in_flight
                && let Some((ack, expected)) = in_flight.pop_front()
            {
                check_ack(ack, expected).await?;
            }
        }
        while let Some((ack, expected)) = in_flight.pop_front() {
            check_ack(ack, expected).await?;
        }
        Ok(sequence)
    }

    async fn load_checkpoint(&self) -> Result<Option<Position>, RelayError> {
        let row: Option<(i64, i64)> =
            sqlx::query_as("SELECT transaction_id, global_position FROM es.checkpoints WHERE name = $1")
                .bind(self.checkpoint_name())
                .fetch_optional(self.store.pool())
                .await
                .map_err(from_sqlx)?;
        Ok(row.map(|(tx, gp)| Position { transaction_id: tx as u64, global_position: gp as u64 }))
    }

    /// Records how far the relay got: the fallback for resync when the stream's last message expired.
    /// Written after the acks, and only ever forwards (a deposed leader finishing a page cannot move it
    /// back).
    async fn save_checkpoint(&self, position: Position) -> Result<(), RelayError> {
        sqlx::query(
            "INSERT INTO es.checkpoints (name, transaction_id, global_position) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO UPDATE
                SET transaction_id = excluded.transaction_id, global_position = excluded.global_position,
                    updated_at = now()
              WHERE (es.checkpoints.transaction_id, es.checkpoints.global_position)
                  < (excluded.transaction_id, excluded.global_position)",
        )
        .bind(self.checkpoint_name())
        .bind(i64::try_from(position.transaction_id).unwrap_or(i64::MAX))
        .bind(i64::try_from(position.global_position).unwrap_or(i64::MAX))
        .execute(self.store.pool())
        .await
        .map_err(from_sqlx)?;
        Ok(())
    }
}

/// Waits for one ack and checks it stored the message at `expected`, as a new message.
async fn check_ack(ack: PublishAckFuture, expected: u64) -> Result<(), RelayError> {
    let ack = ack.await.map_err(nats)?;
    if ack.sequence != expected || ack.duplicate {
        return Err(RelayError::Fenced { expected, got: ack.sequence, duplicate: ack.duplicate });
    }
    Ok(())
}
