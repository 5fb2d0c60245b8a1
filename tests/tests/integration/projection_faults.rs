//! Projections facing what the log already holds and what the database does to them: an event whose
//! text a read model cannot store as it is, an event a projection cannot apply, and connections killed
//! in the middle of a batch.

use axum::http::{Method, StatusCode};
use domain::identity::{IdentityEvent, PRINCIPAL_CATEGORY, UserDisabled};
use eventstore::{EventData, ExpectedRevision, StreamName};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::api_servers::{Api, start, start_on};
use crate::conformance::{Backend, on_every_backend};
use crate::support::{DEADLINE, metadata};

/// Appends `event` to `stream` as another writer (an older gateway, a copy tool) could have: past the
/// commands' checks.
async fn append_raw(api: &Api, stream: &StreamName, event_type: &str, data: String) -> eventstore::Position {
    let event = EventData {
        event_id: Uuid::now_v7(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        data,
        metadata: metadata(),
    };
    api.gateway.state.store.append(stream, ExpectedRevision::Any, vec![event]).await.unwrap().position
}

async fn ready(api: &Api) -> (StatusCode, Value) {
    let reply = api.call(Method::GET, "/ready", None, &[]).await;
    (reply.status, reply.body)
}

/// A U+0000 in a reason already in the log (the commands refuse it now) is stored escaped: the trail
/// goes on, records what came after, stays ready and verifies.
async fn a_nul_already_in_the_log_is_escaped_and_the_trail_goes_on(backend: Backend) {
    let api = start_on(backend).await;
    let created = api.call(Method::POST, "/api/v1/users", Some(r#"{"display_name":"victim"}"#), &[]).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
    let id: Uuid = created.body["id"].as_str().unwrap().parse().unwrap();
    let disabled = IdentityEvent::UserDisabled(UserDisabled { principal_id: id, reason: "before\0after".into() });
    let stream = StreamName::from_parts(PRINCIPAL_CATEGORY, id).unwrap();
    append_raw(&api, &stream, disabled.event_type(), disabled.to_json().unwrap()).await;
    // Something after it, through the commands.
    let after = api.call(Method::POST, "/api/v1/users", Some(r#"{"display_name":"after the nul"}"#), &[]).await;
    assert_eq!(after.status, StatusCode::CREATED, "{}", after.raw);
    let after_id = after.body["id"].as_str().unwrap().to_owned();

    let entry = tests::eventually(DEADLINE, "the trail to record the event after the NUL", || async {
        let page = api.call(Method::GET, "/api/v1/audit?limit=100", None, &[]).await;
        let entries = page.body["entries"].as_array()?.clone();
        entries.iter().any(|e| e["target_id"] == after_id.as_str()).then_some(())?;
        entries.into_iter().find(|e| e["action"] == "user.disabled")
    })
    .await;
    assert_eq!(entry["reason"], format!("before{}after", projections::audit::NUL_ESCAPE), "{entry}");
    let (status, body) = ready(&api).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["checks"]["projections"]["detail"]["audit"]["status"], "ok", "{body}");
    let verified = api.call(Method::GET, "/api/v1/audit/verify", None, &[]).await;
    assert_eq!(verified.status, StatusCode::OK, "{}", verified.raw);
    assert_eq!(verified.body["violation"], Value::Null, "{}", verified.raw);
}

/// An event a projection cannot apply halts it loudly: `/ready` answers 503 naming the projection, the
/// event's position and the error. (Every projection that reads servers halts on it: none serves a view
/// that silently misses an event.)
async fn a_halted_projection_is_named_with_its_position_in_ready(backend: Backend) {
    let api = start_on(backend).await;
    let stream = StreamName::from_parts(domain::server::CATEGORY, Uuid::now_v7()).unwrap();
    let position = append_raw(&api, &stream, "ServerExploded", json!({ "boom": true }).to_string()).await;

    let body = tests::eventually(DEADLINE, "/ready to report the registry halted", || async {
        let (status, body) = ready(&api).await;
        (status == StatusCode::SERVICE_UNAVAILABLE
            && body["checks"]["projections"]["detail"]["registry"]["state"] == "halted")
            .then_some(body)
    })
    .await;
    let registry = &body["checks"]["projections"]["detail"]["registry"];
    assert_eq!(registry["status"], "unavailable", "{body}");
    assert_eq!(registry["halted_at"], position.to_string(), "{body}");
    assert!(registry["error"].as_str().unwrap().contains("ServerExploded"), "{body}");
    assert_eq!(body["status"], "unavailable", "{body}");
    assert_eq!(body["checks"]["event_store"]["status"], "ok", "{body}");
    assert!(body["failing"].as_array().unwrap().contains(&json!("projections")), "{body}");
}

/// Every connection of the gateway's database killed while servers are registered, again and again:
/// the registry projection retries and catches up; it never halts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_registry_survives_its_connections_being_killed_mid_batch() {
    let api = start(None).await;
    let db = api.db.as_ref().unwrap();
    let admin = db.pool(1).await.unwrap();
    let mut acknowledged = Vec::new();
    let api = &api;
    for round in 0..5 {
        let registrations = (0..20).map(|n| {
            let body = json!({
                "name": format!("io.example/killed-{round}-{n}"),
                "description": "d",
                "transport": "streamable_http",
                "url": format!("https://93.184.216.34/{round}/{n}"),
            });
            async move { api.call(Method::POST, "/api/v1/servers", Some(&body.to_string()), &[]).await }
        });
        // Kill the gateway's connections as soon as there are some: after a round's killings the pool
        // reconnects on demand, so the first look may find none yet.
        let terminate = tests::eventually(DEADLINE, "gateway connections to kill", || async {
            let killed: Vec<bool> = sqlx::query_scalar(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                  WHERE datname = current_database() AND pid <> pg_backend_pid()",
            )
            .fetch_all(&admin)
            .await
            .ok()?;
            (!killed.is_empty()).then_some(killed.len())
        });
        let (replies, killed) = tokio::join!(futures_util::future::join_all(registrations), terminate);
        assert!(killed > 0, "round {round}: no connection was killed");
        // A request that lost its connection may fail with 503 (its commit may still have landed); what
        // was acknowledged must be projected.
        acknowledged.extend(replies.iter().filter(|r| r.status == StatusCode::CREATED).map(|r| r.body["id"].clone()));
        for reply in &replies {
            assert!(
                reply.status == StatusCode::CREATED || reply.status == StatusCode::SERVICE_UNAVAILABLE,
                "{}",
                reply.raw
            );
        }
    }
    assert!(!acknowledged.is_empty());
    tests::eventually(DEADLINE, "the registry to list every acknowledged server", || async {
        let status = api.gateway.state.registry_status.borrow().clone();
        assert!(!matches!(status.state, projections::ProjectionState::Halted(_)), "{status:?}");
        let listed = api.call(Method::GET, "/api/v1/servers?limit=100", None, &[]).await;
        let ids: Vec<Value> = listed.body["servers"].as_array()?.iter().map(|s| s["id"].clone()).collect();
        acknowledged.iter().all(|id| ids.contains(id)).then_some(())
    })
    .await;
    tests::eventually(DEADLINE, "every projection to be ready again", || async {
        let (status, body) = ready(api).await;
        (status == StatusCode::OK && body["status"] == "ok").then_some(())
    })
    .await;
}

on_every_backend!(
    a_nul_already_in_the_log_is_escaped_and_the_trail_goes_on,
    a_halted_projection_is_named_with_its_position_in_ready,
);
