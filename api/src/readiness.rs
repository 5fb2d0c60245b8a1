//! The seven readiness checks: the event store, NATS JetStream, the projections, the authorization
//! model, the upstream identity providers, the registered MCP servers, and the keys. Each says its
//! status, how long it took and what it found.
//!
//! Only what stops this instance from serving makes it `unavailable` (503): a database that does not
//! answer, a projection not caught up or halted, no key to sign tokens with. What is shared by every
//! instance (NATS, an IdP, a server, a key near its expiry) makes it `degraded` (200): a load balancer
//! taking every instance out for a shared dependency would turn a partial outage into a full one.
//! `?strict=true` answers 503 for `degraded` too, for monitors and deployment gates.

use std::time::{Duration, Instant};

use projections::ProjectionState;
use serde::Serialize;
use serde_json::{Value, json};

use crate::state::AppState;

/// What the probes may cost and when a key counts as near its end.
#[derive(Debug, Clone, Copy)]
pub struct ReadinessConfig {
    /// How long an identity provider's probe is reused before discovery is fetched again.
    pub idp_probe_interval: Duration,
    /// The age at which the token signing key expires (it is rotated before, see
    /// [`crate::key_rotation`]); None: it never does.
    pub signing_key_max_age: Option<Duration>,
}

impl Default for ReadinessConfig {
    fn default() -> Self {
        Self {
            idp_probe_interval: Duration::from_secs(30),
            signing_key_max_age: Some(Duration::from_secs(90 * 24 * 3600)),
        }
    }
}

/// The share of its life after which a key counts as near its end.
pub const NEAR_EXPIRY: f64 = 0.9;
/// A transaction open longer than this holds `$all` readers and the vacuum back noticeably.
const OLD_TRANSACTION_S: f64 = 60.0;

/// A check's verdict, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// The check does not apply to this deployment (NATS on the embedded store, no IdP configured).
    NotApplicable,
    /// Fine.
    Ok,
    /// Serving, with something shared missing or about to be.
    Degraded,
    /// This instance cannot serve.
    Unavailable,
}

/// One check's answer.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// The verdict.
    pub status: CheckStatus,
    /// How long the check took, in milliseconds.
    pub latency_ms: f64,
    /// What it found.
    pub detail: Value,
}

fn check(status: CheckStatus, started: Instant, detail: Value) -> Check {
    Check { status, latency_ms: started.elapsed().as_secs_f64() * 1000.0, detail }
}

/// Every check's answer, by name, in a fixed order.
#[derive(Debug, Clone)]
pub struct Report {
    /// The checks.
    pub checks: Vec<(&'static str, Check)>,
}

impl Report {
    /// The worst status of any check.
    pub fn status(&self) -> CheckStatus {
        self.checks.iter().map(|(_, c)| c.status).max().unwrap_or(CheckStatus::Ok).max(CheckStatus::Ok)
    }

    /// The checks as a JSON object.
    pub fn checks_json(&self) -> Value {
        let map = self.checks.iter().map(|(name, c)| ((*name).to_owned(), json!(c))).collect();
        Value::Object(map)
    }
}

/// Runs the seven checks (those that wait on the network at the same time).
pub async fn run(state: &AppState) -> Report {
    let (head, store, nats, idps) = tokio::join!(state.store.head(), event_store(state), nats(state), idps(state));
    // Without the head, lags read 0: the event store check says why.
    let head = head.ok().flatten();
    Report {
        checks: vec![
            ("event_store", store),
            ("nats", nats.with_head(head)),
            ("projections", projections(state, head)),
            ("authz", authz(state)),
            ("idps", idps),
            ("servers", servers(state)),
            ("keys", keys(state)),
        ],
    }
}

async fn event_store(state: &AppState) -> Check {
    let started = Instant::now();
    if let Err(error) = state.tables.ping().await {
        return check(CheckStatus::Unavailable, started, json!({ "error": error }));
    }
    let round_trip_ms = started.elapsed().as_secs_f64() * 1000.0;
    match state.tables.oldest_open_transaction_s().await {
        Ok(Some(age)) => {
            let status = if age > OLD_TRANSACTION_S { CheckStatus::Degraded } else { CheckStatus::Ok };
            check(status, started, json!({ "round_trip_ms": round_trip_ms, "oldest_transaction_s": age }))
        }
        Ok(None) => check(
            CheckStatus::Ok,
            started,
            json!({ "round_trip_ms": round_trip_ms, "oldest_transaction_s": "not applicable (embedded store)" }),
        ),
        Err(error) => check(CheckStatus::Degraded, started, json!({ "round_trip_ms": round_trip_ms, "error": error })),
    }
}

/// What NATS said, finished once the store's head is known (the relay's backlog is the distance).
struct NatsFinding {
    started: Instant,
    result: Option<Result<(u64, Option<eventstore::Position>), String>>,
}

impl NatsFinding {
    fn with_head(self, head: Option<eventstore::Position>) -> Check {
        match self.result {
            None => check(CheckStatus::NotApplicable, self.started, json!("not configured: one instance, no relay")),
            Some(Err(error)) => check(CheckStatus::Degraded, self.started, json!({ "error": error })),
            Some(Ok((messages, published))) => {
                let newest = head.map_or(0, |p| p.global_position);
                let relayed = published.map_or(0, |p| p.global_position);
                let backlog = newest.saturating_sub(relayed);
                check(
                    CheckStatus::Ok,
                    self.started,
                    json!({ "stream_messages": messages, "relay_backlog_events": backlog,
                            "relayed_position": published.map(|p| p.to_string()) }),
                )
            }
        }
    }
}

/// NATS is connected and holds the relay's stream (a server restarted with an empty store has lost
/// it); the position of the newest message published.
async fn nats(state: &AppState) -> NatsFinding {
    let started = Instant::now();
    let Some(client) = &state.nats else { return NatsFinding { started, result: None } };
    let stream_name = &state.nats_stream;
    let result = async {
        if client.connection_state() != async_nats::connection::State::Connected {
            return Err("not connected".to_owned());
        }
        let jetstream = async_nats::jetstream::new(client.clone());
        let stream = jetstream.get_stream(stream_name).await.map_err(|e| format!("stream {stream_name}: {e}"))?;
        let info = stream.cached_info().state.clone();
        if info.last_sequence == 0 {
            return Ok((info.messages, None));
        }
        let last = stream
            .get_raw_message(info.last_sequence)
            .await
            .map_err(|e| format!("stream {stream_name}: newest message: {e}"))?;
        let position =
            last.headers.get(eventstore::relay::POSITION).and_then(|v| v.as_str().parse::<eventstore::Position>().ok());
        Ok((info.messages, position))
    };
    let result = match tokio::time::timeout(Duration::from_secs(2), result).await {
        Ok(result) => result,
        Err(_) => Err(format!("stream {stream_name}: no answer in 2 s")),
    };
    NatsFinding { started, result: Some(result) }
}

fn projections(state: &AppState, head: Option<eventstore::Position>) -> Check {
    let started = Instant::now();
    let mut status = CheckStatus::Ok;
    let mut detail = serde_json::Map::new();
    for projection in state.projections() {
        let projection = projection.borrow().clone();
        let ready = projection.is_ready();
        if !ready {
            status = CheckStatus::Unavailable;
        }
        let mut entry = json!({
            "status": if ready { "ok" } else { "unavailable" },
            "state": state_name(&projection.state),
            // The last event it applied: events it has no use for are skipped without moving it, so
            // a live projection's checkpoint may stay behind the head.
            "checkpoint": projection.checkpoint.map(|p| p.to_string()),
        });
        if let ProjectionState::Halted(error) = &projection.state {
            entry["halted_at"] = json!(projection.halted_at.map(|p| p.to_string()));
            entry["error"] = json!(error);
        } else if let Some(error) = &projection.last_error {
            entry["retrying_after"] = json!(error);
        }
        detail.insert(projection.name.clone(), entry);
    }
    detail.insert("head".to_owned(), json!(head.map(|p| p.to_string())));
    check(status, started, Value::Object(detail))
}

fn state_name(state: &ProjectionState) -> &'static str {
    match state {
        ProjectionState::Starting => "starting",
        ProjectionState::CatchingUp => "catching_up",
        ProjectionState::Live => "live",
        ProjectionState::Standby { current: true } => "standby",
        ProjectionState::Standby { current: false } => "standby_behind",
        ProjectionState::Halted(_) => "halted",
        ProjectionState::Disabled => "disabled",
    }
}

/// The authorization model past its lag bound still serves: requests with a change pending are
/// refused, the others decided.
fn authz(state: &AppState) -> Check {
    let started = Instant::now();
    let bound_ms = state.authz_lag.bound().as_millis() as u64;
    let behind_ms = state.authz_lag.exceeded().map_or(0, |behind| behind.as_millis() as u64);
    let mut detail = json!({ "behind_ms": behind_ms, "bound_ms": bound_ms });
    let status = if !state.authz_ready() {
        detail["error"] = json!("the authorization model is not caught up");
        CheckStatus::Unavailable
    } else if behind_ms > 0 {
        detail["effect"] = json!("requests whose facts have a change pending are refused");
        CheckStatus::Degraded
    } else {
        CheckStatus::Ok
    };
    check(status, started, detail)
}

async fn idps(state: &AppState) -> Check {
    let started = Instant::now();
    if state.idps.names().is_empty() {
        return check(CheckStatus::NotApplicable, started, json!("no identity provider configured"));
    }
    let probes = state.idps.probe(state.readiness.idp_probe_interval).await;
    let failing = probes.iter().any(|p| p.error.is_some());
    let status = if failing { CheckStatus::Degraded } else { CheckStatus::Ok };
    check(status, started, json!(probes))
}

/// From the health checker's last findings (recorded as events, so every instance agrees).
fn servers(state: &AppState) -> Check {
    let started = Instant::now();
    let Ok(model) = state.authz.read() else {
        return check(CheckStatus::Unavailable, started, json!({ "error": "the authorization model is unavailable" }));
    };
    let (mut healthy, mut unchecked, mut down) = (0u64, 0u64, Vec::new());
    for (id, access) in model.servers() {
        match &access.health {
            Some(health) if health.is_healthy() => healthy += 1,
            Some(health) => down.push(json!({ "id": id, "health": health.state(), "detail": health.detail })),
            None => unchecked += 1,
        }
    }
    let status = if down.is_empty() { CheckStatus::Ok } else { CheckStatus::Degraded };
    let shown: Vec<Value> = down.iter().take(20).cloned().collect();
    check(
        status,
        started,
        json!({ "healthy": healthy, "unchecked": unchecked, "down": down.len(), "down_servers": shown }),
    )
}

/// The sealing keys, the token signing key (and its age against its life), the audit signing key.
fn keys(state: &AppState) -> Check {
    let started = Instant::now();
    let audit = state.audit_keys.public_keys().len();
    let sealing = json!({ "current": state.keyring.current_key_id() });
    let Some((kid, since)) = state.tokens.active_key() else {
        return check(
            CheckStatus::Unavailable,
            started,
            json!({ "sealing": sealing, "error": "no token signing key is loaded", "audit_keys": audit }),
        );
    };
    let age = (chrono::Utc::now() - since).to_std().unwrap_or_default();
    let mut signing = json!({ "kid": kid, "age_s": age.as_secs() });
    let mut status = CheckStatus::Ok;
    if let Some(max_age) = state.readiness.signing_key_max_age {
        let left = max_age.saturating_sub(age);
        signing["expires_in_s"] = json!(left.as_secs());
        if age.as_secs_f64() >= max_age.as_secs_f64() * NEAR_EXPIRY {
            status = CheckStatus::Degraded;
            signing["error"] = json!("the token signing key is near its expiry and has not been rotated");
        }
    }
    let audit = if audit == 0 { json!("none: the trail is chained but not signed") } else { json!(audit) };
    check(status, started, json!({ "sealing": sealing, "signing": signing, "audit_keys": audit }))
}
