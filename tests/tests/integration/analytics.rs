//! Usage analytics: tool calls and denials through the proxy counted per server, tool, principal and
//! client, equal to a recount from the log, before and after the read model is rebuilt by replay.

use std::collections::BTreeMap;

use axum::http::{Method, StatusCode};
use serde_json::json;

use crate::api_servers::Api;
use crate::conformance::{Backend, on_every_backend};
use crate::mcp_proxy::{call, gateway_with_server, rpc, session};
use crate::support::DEADLINE;

on_every_backend!(the_analytics_read_model_equals_a_recount_from_the_log_before_and_after_a_rebuild);
on_every_backend!(turned_off_analytics_hold_nothing_up_and_answer_that_they_are_off);

/// Calls, errors and denials per `<server>/<tool>`.
type Counts = BTreeMap<String, (i64, i64, i64)>;

/// The counts as the API answers them.
async fn counted(api: &Api) -> Counts {
    let usage = api.call(Method::GET, "/api/v1/analytics/usage?by=tool", None, &[]).await;
    assert_eq!(usage.status, StatusCode::OK, "{}", usage.raw);
    usage.body["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| {
            let figures =
                (row["calls"].as_i64().unwrap(), row["errors"].as_i64().unwrap(), row["denials"].as_i64().unwrap());
            (row["key"].as_str().unwrap().to_owned(), figures)
        })
        .collect()
}

/// The counts recounted from every event of the log.
async fn recounted(api: &Api) -> Counts {
    let mut counts = Counts::new();
    let mut after = None;
    loop {
        let page = api.gateway.state.store.read_all(after, 1_000).await.unwrap();
        let Some(last) = page.last() else { break };
        after = Some(last.position);
        for event in &page {
            match domain::access::AccessEvent::from_json(&event.event_type, &event.data) {
                Some(Ok(domain::access::AccessEvent::ToolCalled(c))) => {
                    let entry = counts.entry(format!("{}/{}", c.server_id, c.tool)).or_default();
                    entry.0 += 1;
                    entry.1 += i64::from(c.outcome != domain::access::CallOutcome::Answered);
                }
                // Every denial counts: of a tool, of a server (no tool), of anything else (neither).
                Some(Ok(domain::access::AccessEvent::Denied(d))) => {
                    let (server, tool) = match d.resource.strip_prefix("server:") {
                        Some(rest) => rest.split_once(":tool:").unwrap_or((rest, "")),
                        None => ("", ""),
                    };
                    counts.entry(format!("{server}/{tool}")).or_default().2 += 1;
                }
                _ => {}
            }
        }
    }
    counts
}

async fn the_analytics_read_model_equals_a_recount_from_the_log_before_and_after_a_rebuild(backend: Backend) {
    let upstream = tests::McpServer::shared_everything().unwrap().url();
    let (api, id, uri) = gateway_with_server(backend, &upstream).await;
    let key = api.key.clone();
    let session = session(&api, &uri, &key).await;
    // Access records analytics does not count pass it by (a read of the audit trail is one).
    assert_eq!(api.call(Method::GET, "/api/v1/audit?limit=1", None, &[]).await.status, StatusCode::OK);
    for n in 0..5 {
        let echo = rpc(n, "tools/call", json!({ "name": "echo", "arguments": { "message": format!("hi {n}") } }));
        assert_eq!(call(&api, &uri, &key, Some(&session), &echo).await.0, StatusCode::OK);
    }
    // A call the server answers with a tool error (there is no tool `add`), and two the tool rules refuse.
    let wrong = rpc(10, "tools/call", json!({ "name": "add", "arguments": { "a": "not a number" } }));
    let (_, _, answer) = call(&api, &uri, &key, Some(&session), &wrong).await;
    assert_eq!(answer[0]["result"]["isError"], true, "{answer:?}");
    for n in 0..2 {
        let hidden = rpc(20 + n, "tools/call", json!({ "name": "get-env", "arguments": {} }));
        call(&api, &uri, &key, Some(&session), &hidden).await;
    }

    let expected = tests::eventually(DEADLINE, "the calls in the read model", || async {
        let recount = recounted(&api).await;
        let totals: (i64, i64) = recount.values().fold((0, 0), |(c, d), v| (c + v.0, d + v.2));
        (totals == (6, 2) && counted(&api).await == recount).then_some(recount)
    })
    .await;
    assert_eq!(expected[&format!("{id}/echo")], (5, 0, 0), "{expected:?}");
    assert_eq!(expected[&format!("{id}/add")].1, 1, "{expected:?}");
    assert_eq!(expected[&format!("{id}/get-env")], (0, 0, 2), "{expected:?}");

    // Per server: the same totals; with latency percentiles for the calls.
    let by_server = api.call(Method::GET, "/api/v1/analytics/usage?by=server", None, &[]).await;
    let row = &by_server.body["rows"][0];
    assert_eq!(
        (row["key"].as_str(), row["calls"].as_i64(), row["denials"].as_i64()),
        (Some(id.as_str()), Some(6), Some(2))
    );
    assert!(
        row["p50_ms"].as_f64().is_some_and(|p| p > 0.0) && row["p99_ms"].as_f64() >= row["p50_ms"].as_f64(),
        "{row}"
    );
    let by_principal = api.call(Method::GET, "/api/v1/analytics/usage?by=principal&granularity=hour", None, &[]).await;
    assert_eq!(by_principal.body["rows"][0]["calls"], 6, "{}", by_principal.raw);
    let series = api.call(Method::GET, &format!("/api/v1/analytics/series?by=server&key={id}"), None, &[]).await;
    let points: i64 = series.body["rows"].as_array().unwrap().iter().map(|p| p["calls"].as_i64().unwrap()).sum();
    assert_eq!(points, 6, "{}", series.raw);
    // Without a key, the series counts every call; by client, the calls made with an API key have none.
    let every = api.call(Method::GET, "/api/v1/analytics/series", None, &[]).await;
    let points: i64 = every.body["rows"].as_array().unwrap().iter().map(|p| p["calls"].as_i64().unwrap()).sum();
    assert_eq!(points, 6, "{}", every.raw);
    let by_client = api.call(Method::GET, "/api/v1/analytics/usage?by=client", None, &[]).await;
    assert_eq!(
        (by_client.body["rows"][0]["key"].as_str(), by_client.body["rows"][0]["calls"].as_i64()),
        (Some(""), Some(6))
    );
    // Bad questions are refused, saying which part.
    let backwards = api
        .call(Method::GET, "/api/v1/analytics/usage?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", None, &[])
        .await;
    assert_eq!((backwards.status, backwards.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("from")));
    let unknown = api.call(Method::GET, "/api/v1/analytics/usage?by=colour", None, &[]).await;
    assert_eq!((unknown.status, unknown.body["field"].as_str()), (StatusCode::BAD_REQUEST, Some("by")));
    // A developer may not read who called what.
    let (developer, _) = api.developer().await;
    let refused = api.call_as(&developer, Method::GET, "/api/v1/analytics/usage", None, &[]).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN);

    // Rebuilt by replay: the same counts.
    let api = rebuilt(api, backend).await;
    tests::eventually(DEADLINE, "the rebuilt read model to serve", || async {
        let status = api.call(Method::GET, "/api/v1/analytics/usage?by=tool", None, &[]).await.status;
        (status == StatusCode::OK).then_some(())
    })
    .await;
    let after = counted(&api).await;
    assert_eq!(after, recounted(&api).await);
    // The server's figures as before, and the developer's refused read counted as a denial of no server.
    let servers: Counts = after.iter().filter(|(key, _)| key.starts_with(&id)).map(|(k, v)| (k.clone(), *v)).collect();
    assert_eq!(servers, expected);
    assert_eq!(after["/"], (0, 0, 1), "{after:?}");
    api.gateway.stop();
}

/// The analytics read model rebuilt from the log: on PostgreSQL into a shadow schema swapped in while
/// the gateway serves; on SQLite with the gateway stopped (one process per embedded store), then started
/// again.
async fn rebuilt(api: Api, backend: Backend) -> Api {
    match backend {
        Backend::Postgres => {
            let url = api.db.as_ref().unwrap().url.clone();
            let pool = sqlx::postgres::PgPoolOptions::new().max_connections(4).connect(&url).await.unwrap();
            let store = eventstore::PgEventStore::new(pool, eventstore::PgEventStoreOptions::default());
            let projection = projections::analytics::AnalyticsProjection::default();
            projections::rebuild(&store, &projection, projections::RunnerOptions::default()).await.unwrap();
            api
        }
        Backend::Sqlite => {
            let path = api._dir.as_ref().unwrap().path().join("events.db");
            let url = format!("sqlite://{}", path.display());
            let Api { key, gateway, db, _dir, .. } = api;
            gateway.stop();
            let store = tests::eventually_ok(DEADLINE, || {
                eventstore::SqliteEventStore::open(&path, eventstore::SqliteEventStoreOptions::default())
            })
            .await
            .unwrap();
            let projection = std::sync::Arc::new(projections::analytics::SqliteAnalyticsProjection::default());
            projections::rebuild_sqlite(&store, projection).await.unwrap();
            drop(store);
            let mut config = crate::api_servers::config(&url, None);
            config.upstream_allowlist = vec!["127.0.0.1".into()];
            let gateway = tests::eventually_ok(DEADLINE, || api::Gateway::start(&config, None)).await.unwrap();
            Api { router: api::router(gateway.state.clone()), key, gateway, db, _dir }
        }
    }
}

async fn turned_off_analytics_hold_nothing_up_and_answer_that_they_are_off(backend: Backend) {
    let api = crate::api_servers::start_with(backend, |config| config.analytics = false).await;
    // Strictly ready once the projections that are on have caught up: analytics hold nothing up.
    let ready = tests::eventually(DEADLINE, "the instance to be strictly ready", || async {
        let ready = api.call(Method::GET, "/ready?strict=true", None, &[]).await;
        (ready.status == StatusCode::OK).then_some(ready)
    })
    .await;
    let projections = &ready.body["checks"]["projections"]["detail"];
    assert_eq!(projections["analytics"]["state"], "disabled", "{}", ready.raw);
    let usage = api.call(Method::GET, "/api/v1/analytics/usage", None, &[]).await;
    assert_eq!(usage.status, StatusCode::SERVICE_UNAVAILABLE, "{}", usage.raw);
    assert!(usage.body["detail"].as_str().unwrap().contains("MGW_ANALYTICS"), "{}", usage.raw);
    api.gateway.stop();
}
