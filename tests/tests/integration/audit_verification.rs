//! One verification for the API and the CLI, and what it catches that the chain alone does not: an
//! edited event in the store, and entries rewritten behind the trail's back with their links recomputed.

use axum::http::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::Connection;

use crate::api_servers::{Api, start};
use crate::support::DEADLINE;

async fn verify(api: &Api) -> Value {
    let reply = api.call(Method::GET, "/api/v1/audit/verify", None, &[]).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.raw);
    reply.body
}

/// A gateway whose trail holds a registration, a suspension with a reason, and more after them.
async fn a_trail() -> (Api, i64) {
    let api = start(None).await;
    for n in 0..3 {
        let body = json!({ "name": format!("io.example/v{n}"), "description": "d", "transport": "streamable_http", "url": "https://93.184.216.34/mcp" });
        let created = api.call(Method::POST, "/api/v1/servers", Some(&body.to_string()), &[]).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
        let id = created.body["id"].as_str().unwrap().to_owned();
        let suspended = api
            .call(Method::POST, &format!("/api/v1/servers/{id}/suspend"), Some(r#"{"reason":"maintenance"}"#), &[])
            .await;
        assert_eq!(suspended.status, StatusCode::OK, "{}", suspended.raw);
    }
    let pool = api.db.as_ref().unwrap().pool(1).await.unwrap();
    tests::eventually(DEADLINE, "the trail to record the suspensions", || async {
        let suspended: i64 =
            sqlx::query_scalar("SELECT count(*) FROM rm_audit.entries WHERE action = 'server.suspended'")
                .fetch_one(&pool)
                .await
                .ok()?;
        (suspended == 3).then_some(())
    })
    .await;
    let report = verify(&api).await;
    assert_eq!(report["intact"], true, "{report}");
    // The verification is itself audited: its entry is in the trail before a test edits the trail (an
    // entry appended during the edit would link to a hash the edit replaces).
    let count = tests::eventually(DEADLINE, "the trail to record the verification", || async {
        let (count, read): (i64, i64) =
            sqlx::query_as("SELECT count(*), count(*) FILTER (WHERE action = 'audit.read') FROM rm_audit.entries")
                .fetch_one(&pool)
                .await
                .ok()?;
        (read >= 1).then_some(count)
    })
    .await;
    (api, count)
}

/// An attacker with write access rewrites an entry newer than any checkpoint and recomputes every link
/// after it: the chain holds, and the content check names the entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_rewritten_with_recomputed_links_are_named() {
    let (api, _) = a_trail().await;
    let mut conn = sqlx::PgConnection::connect(&api.db.as_ref().unwrap().url).await.unwrap();
    let target: i64 = sqlx::query_scalar("SELECT min(seq) FROM rm_audit.entries WHERE action = 'server.suspended'")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    sqlx::query("UPDATE rm_audit.entries SET reason = 'approved by the board' WHERE seq = $1")
        .bind(target)
        .execute(&mut conn)
        .await
        .unwrap();
    // Every link from the rewritten entry on, recomputed as the projection would
    let rows: Vec<(projections::audit::AuditEntry, Vec<u8>)> = {
        #[derive(sqlx::FromRow)]
        struct Row {
            #[sqlx(flatten)]
            entry: projections::audit::AuditEntry,
            prev_hash: Vec<u8>,
        }
        let rows: Vec<Row> = sqlx::query_as("SELECT * FROM rm_audit.entries WHERE seq >= $1 ORDER BY seq")
            .bind(target)
            .fetch_all(&mut conn)
            .await
            .unwrap();
        rows.into_iter().map(|r| (r.entry, r.prev_hash)).collect()
    };
    let mut previous: [u8; 32] = rows[0].1.as_slice().try_into().unwrap();
    for (entry, _) in &rows {
        let hash = entry.chain_hash(&previous);
        sqlx::query("UPDATE rm_audit.entries SET prev_hash = $2, entry_hash = $3 WHERE seq = $1")
            .bind(entry.seq)
            .bind(previous.to_vec())
            .bind(hash.to_vec())
            .execute(&mut conn)
            .await
            .unwrap();
        previous = hash;
    }

    let report = verify(&api).await;
    assert_eq!(report["violation"], Value::Null, "the chain alone is fooled: {report}");
    assert_eq!(report["intact"], false, "{report}");
    assert_eq!(report["content_violation"]["seq"], target, "{report}");
    assert_eq!(report["content_violation"]["kind"], "Rewritten", "{report}");
}

/// An event edited in the store is named by the API's verification too (it once checked the trail
/// alone), with every violation listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_event_is_named_by_the_api_as_by_the_cli() {
    let (api, _) = a_trail().await;
    let mut attacker = sqlx::PgConnection::connect(&api.db.as_ref().unwrap().url).await.unwrap();
    sqlx::query("SET session_replication_role = replica").execute(&mut attacker).await.unwrap();
    let edited = sqlx::query(
        "UPDATE es.events SET data = replace(data::text, 'maintenance', 'nothing happened')::json
          WHERE event_type = 'ServerSuspended'",
    )
    .execute(&mut attacker)
    .await
    .unwrap()
    .rows_affected();
    assert_eq!(edited, 3);

    let report = verify(&api).await;
    assert_eq!(report["intact"], false, "{report}");
    let violations = report["store"]["violations"].as_array().unwrap();
    assert_eq!(violations.len(), 3, "every edited event, not only the first: {report}");
    assert!(violations.iter().all(|v| v["kind"] == "Modified"), "{report}");
    // The trail still says what the events said when they were folded: the content check names it.
    assert_eq!(report["content_violation"]["kind"], "Rewritten", "{report}");
}

/// One verification at a time per instance: another asked meanwhile is told to retry (429), not queued.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_verification_while_one_runs_is_told_to_retry() {
    let api = start(None).await;
    let running = api.gateway.state.verifying.clone().try_acquire_owned().unwrap();
    let reply = api.call(Method::GET, "/api/v1/audit/verify", None, &[]).await;
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{}", reply.raw);
    assert_eq!(reply.body["type"], "/problems/verification-running", "{}", reply.raw);
    drop(running);
    assert_eq!(api.call(Method::GET, "/api/v1/audit/verify", None, &[]).await.status, StatusCode::OK);
}
