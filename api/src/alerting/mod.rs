//! Alerting: a reader of the event log that raises an alert for every event matching a configured rule
//! and delivers it to the rule's channels (webhook, Slack, email), with retries and a dead letter.
//!
//! One reader runs per deployment (on PostgreSQL it holds a leader lock; the others stand by) and keeps
//! its checkpoint beside the read models'. An alert's id derives from the event and the rule, and its
//! raising and each delivery are events of its own stream, so that a restart, a second reader or a
//! replay never raises or delivers it twice: a channel with a delivery (or a dead letter) recorded is
//! not sent to again. A crash between a send and its record sends once more; the webhook's
//! `X-MGW-Alert-Id` lets a receiver drop that repeat.

pub mod channels;
pub mod rules;

use std::sync::Arc;
use std::time::Duration;

use domain::alert::{ALERT_CATEGORY, AlertDeadLettered, AlertDelivered, AlertEvent, AlertRaised, alert_id};
use eventstore::{
    Actor, Direction, EventData, EventStore, ExpectedRevision, Metadata, Position, RecordedEvent, StreamCursor,
    StreamName,
};
use serde::Deserialize;

use crate::tables::Tables;
use channels::{ChannelConfig, Notice, NoticeEvent};
use rules::{RuleConfig, Rules};

/// The name of the reader's checkpoint.
const CHECKPOINT: &str = "alerting";

/// Alerting, as configured (the configuration file's `[alerting]`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    /// Where alerts go.
    #[serde(default)]
    pub channels: Vec<ChannelConfig>,
    /// What raises them.
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
    /// Attempts per delivery before it is dead-lettered [default: 5].
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// The wait before the second attempt, in milliseconds; each further wait doubles [default: 1000].
    #[serde(default)]
    pub retry_base_ms: Option<u64>,
}

impl AlertingConfig {
    /// Whether there is anything to do.
    pub fn is_active(&self) -> bool {
        !self.channels.is_empty() && !self.rules.is_empty()
    }

    /// Refuses a configuration that cannot work or would send in the clear.
    pub fn validate(&self) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for channel in &self.channels {
            channel.validate()?;
            if !names.insert(channel.name.as_str()) {
                return Err(format!("alert channel {:?} is defined twice", channel.name));
            }
        }
        let names: Vec<&str> = self.channels.iter().map(|c| c.name.as_str()).collect();
        rules::validate(&self.rules, &names)?;
        if self.max_attempts == Some(0) {
            return Err("alerting: max_attempts is at least 1".to_owned());
        }
        Ok(())
    }
}

/// Reads the log and delivers alerts, for as long as the instance runs.
pub async fn run(store: Arc<dyn EventStore>, tables: Tables, config: AlertingConfig) {
    let http = match reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
    {
        Ok(http) => http,
        Err(error) => {
            tracing::error!(%error, "alerting could not make its HTTP client");
            return;
        }
    };
    let reader = Reader {
        store,
        tables,
        http,
        max_attempts: config.max_attempts.unwrap_or(5).max(1),
        retry_base: Duration::from_millis(config.retry_base_ms.unwrap_or(1_000)),
        channels: config.channels,
    };
    let mut rules = Rules::new(config.rules);
    loop {
        // On PostgreSQL, one reader in the deployment: the others wait for the lock and take over when
        // the holder's connection goes; a reader that loses it waits again.
        let leadership = match &reader.tables {
            Tables::Postgres(pool) => {
                match eventstore::LeaderLock::acquire(pool, "mgw-alerting", Duration::from_secs(2)).await {
                    Ok(lock) => Some(lock),
                    Err(error) => {
                        tracing::warn!(%error, "alerting could not wait for its leader lock; trying again");
                        tokio::time::sleep(Duration::from_secs(2)).await;
                        continue;
                    }
                }
            }
            Tables::Sqlite(_) => None,
        };
        reader.lead(&mut rules, leadership).await;
    }
}

/// The position after which the alerting reader resumes (None before its first start): kept in the
/// read models' checkpoint table, under its own name.
pub async fn checkpoint(tables: &Tables) -> Result<Option<Position>, String> {
    match tables {
        Tables::Postgres(pool) => projections::load_checkpoint(pool, CHECKPOINT).await,
        Tables::Sqlite(pool) => projections::load_sqlite_checkpoint(pool, CHECKPOINT).await,
    }
    .map_err(|e| e.to_string())
}

/// What the reader works with.
struct Reader {
    store: Arc<dyn EventStore>,
    tables: Tables,
    http: reqwest::Client,
    channels: Vec<ChannelConfig>,
    max_attempts: u32,
    retry_base: Duration,
}

impl Reader {
    /// Reads the log from the checkpoint and alerts, until the leader lock is lost (never on SQLite).
    async fn lead(&self, rules: &mut Rules, mut leadership: Option<eventstore::LeaderLock>) {
        let mut after = loop {
            match self.start_position().await {
                Ok(position) => break position,
                Err(error) => {
                    tracing::warn!(%error, "alerting could not read its checkpoint; trying again");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        };
        loop {
            // A reader that lost its lock stops before another one's deliveries could overlap its own.
            if let Some(lock) = &mut leadership
                && let Err(error) = lock.confirm().await
            {
                tracing::warn!(%error, "alerting lost its leader lock; waiting for it again");
                return;
            }
            let page = match self.store.read_all_following(after, 200).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(%error, "alerting could not read the log; trying again");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if page.is_empty() {
                tokio::time::sleep(Duration::from_millis(250)).await;
                continue;
            }
            let mut stalled = false;
            'page: for event in &page {
                if event.stream.category() != ALERT_CATEGORY {
                    let data: serde_json::Value = serde_json::from_str(&event.data).unwrap_or_default();
                    for rule in rules.raised_by(&event.event_type, &data, event.metadata.occurred_at) {
                        if let Err(error) = self.alert(rule, event).await {
                            // Not recorded, so not sent: read this event again rather than pass it.
                            tracing::error!(%error, event = %event.event_id, "could not record an alert; trying again");
                            stalled = true;
                            break 'page;
                        }
                    }
                }
                after = Some(event.position);
            }
            if stalled {
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            if let Err(error) = self.save(after).await {
                tracing::warn!(%error, "alerting could not save its checkpoint (alerts already recorded are not sent again)");
            }
        }
    }

    /// Where the last reader stopped; on the first start, the log's head (the past raises nothing).
    async fn start_position(&self) -> Result<Option<Position>, String> {
        if let Some(saved) = checkpoint(&self.tables).await? {
            return Ok(Some(saved));
        }
        let head = self.store.head().await.map_err(|e| e.to_string())?;
        self.save(head).await?;
        Ok(head)
    }

    async fn save(&self, position: Option<Position>) -> Result<(), String> {
        let Some(position) = position else { return Ok(()) };
        let (transaction_id, global_position) = (position.transaction_id as i64, position.global_position as i64);
        match &self.tables {
            Tables::Postgres(pool) => sqlx::query(
                "INSERT INTO es.checkpoints (name, transaction_id, global_position) VALUES ($1, $2, $3) \
                 ON CONFLICT (name) DO UPDATE SET transaction_id = excluded.transaction_id, \
                 global_position = excluded.global_position, updated_at = now()",
            )
            .bind(CHECKPOINT)
            .bind(transaction_id)
            .bind(global_position)
            .execute(pool)
            .await
            .map(drop),
            Tables::Sqlite(pool) => sqlx::query(
                "INSERT INTO read_model_checkpoints (name, transaction_id, global_position, version) \
                 VALUES (?, ?, ?, 1) ON CONFLICT (name) DO UPDATE SET transaction_id = excluded.transaction_id, \
                 global_position = excluded.global_position",
            )
            .bind(CHECKPOINT)
            .bind(transaction_id)
            .bind(global_position)
            .execute(pool)
            .await
            .map(drop),
        }
        .map_err(|e| e.to_string())
    }

    /// Raises `rule`'s alert for `event` (once ever) and delivers it to every channel that has neither
    /// a delivery nor a dead letter recorded.
    async fn alert(&self, rule: &RuleConfig, event: &RecordedEvent) -> Result<(), String> {
        let id = alert_id(event.event_id, &rule.name);
        let stream = StreamName::from_parts(ALERT_CATEGORY, id).map_err(|e| e.to_string())?;
        let actor = &event.metadata.actor;
        let notice = Notice {
            alert_id: id,
            rule: rule.name.clone(),
            severity: rule.severity().to_owned(),
            summary: format!("{} on {} by {:?} {}", event.event_type, event.stream.as_str(), actor.kind, actor.id),
            event: NoticeEvent {
                id: event.event_id,
                r#type: event.event_type.clone(),
                stream: event.stream.as_str().to_owned(),
                position: event.position.to_string(),
                occurred_at: event.metadata.occurred_at,
                actor: format!("{:?}:{}", actor.kind, actor.id).to_lowercase(),
            },
        };
        let metadata = Metadata::new(event.metadata.correlation_id, Actor::system("alerting"), chrono::Utc::now())
            .caused_by(event.event_id);
        let done = self.raise(&stream, &notice, &metadata).await?;
        let wanted = self.channels.iter().filter(|c| rule.channels.is_empty() || rule.channels.contains(&c.name));
        let deliveries = wanted
            .filter(|c| !done.contains(&c.name))
            .map(|channel| self.deliver(channel, &notice, &stream, &metadata));
        futures_util::future::join_all(deliveries).await;
        Ok(())
    }

    /// Records the alert unless it is there; the channels already done with it.
    async fn raise(&self, stream: &StreamName, notice: &Notice, metadata: &Metadata) -> Result<Vec<String>, String> {
        let existing = self
            .store
            .read_stream(stream, Direction::Forwards, StreamCursor::Start, 1_000)
            .await
            .map_err(|e| e.to_string())?;
        if existing.is_empty() {
            let raised = AlertEvent::Raised(AlertRaised {
                alert_id: notice.alert_id,
                rule: notice.rule.clone(),
                severity: notice.severity.clone(),
                event_id: notice.event.id,
                event_type: notice.event.r#type.clone(),
                stream: notice.event.stream.clone(),
                summary: notice.summary.clone(),
            });
            match self.append(stream, ExpectedRevision::NoStream, &raised, metadata).await {
                Ok(()) => return Ok(Vec::new()),
                // Another reader raised it a moment ago: read what it did.
                Err(error) if error.is_conflict() => return Box::pin(self.raise(stream, notice, metadata)).await,
                Err(error) => return Err(error.to_string()),
            }
        }
        Ok(existing
            .iter()
            .filter_map(|e| AlertEvent::from_json(&e.event_type, &e.data).and_then(Result::ok))
            .filter_map(|e| match e {
                AlertEvent::Delivered(d) => Some(d.channel),
                AlertEvent::DeadLettered(d) => Some(d.channel),
                AlertEvent::Raised(_) => None,
            })
            .collect())
    }

    /// Sends to one channel, retrying with doubling waits, and records how it went.
    async fn deliver(&self, channel: &ChannelConfig, notice: &Notice, stream: &StreamName, metadata: &Metadata) {
        let mut wait = self.retry_base;
        let mut attempts = 0;
        let outcome = loop {
            attempts += 1;
            match channels::send(channel, notice, &self.http).await {
                Ok(()) => break Ok(()),
                Err(error) if attempts >= self.max_attempts => break Err(error),
                Err(error) => {
                    tracing::warn!(channel = %channel.name, alert = %notice.alert_id, attempts, %error, "alert delivery failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(300));
                }
            }
        };
        let (event, result) = match outcome {
            Ok(()) => (
                AlertEvent::Delivered(AlertDelivered {
                    alert_id: notice.alert_id,
                    channel: channel.name.clone(),
                    attempts,
                }),
                "delivered",
            ),
            Err(error) => {
                tracing::error!(channel = %channel.name, alert = %notice.alert_id, attempts, %error, "alert dead-lettered");
                let error = domain::text::clean_line(&error, 500).unwrap_or_default();
                let dead =
                    AlertDeadLettered { alert_id: notice.alert_id, channel: channel.name.clone(), attempts, error };
                (AlertEvent::DeadLettered(dead), "dead_lettered")
            }
        };
        metrics::counter!("mgw_alert_deliveries_total", "channel" => channel.name.clone(), "outcome" => result)
            .increment(1);
        if let Err(error) = self.append(stream, ExpectedRevision::Any, &event, metadata).await {
            tracing::error!(%error, alert = %notice.alert_id, "could not record an alert's delivery; it may be sent again");
        }
    }

    async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        event: &AlertEvent,
        metadata: &Metadata,
    ) -> Result<(), eventstore::Error> {
        let id = uuid::Uuid::now_v7();
        let data = EventData {
            event_id: id,
            event_type: event.event_type().to_owned(),
            schema_version: 1,
            data: event
                .to_json()
                .map_err(|_| eventstore::Error::InvalidEvent { event_id: id, reason: "not serializable" })?,
            metadata: metadata.clone(),
        };
        self.store.append(stream, expected, vec![data]).await.map(drop)
    }
}
