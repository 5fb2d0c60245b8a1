//! Snapshots of the authorization model, on every backend: a start loads the last snapshot and replays only
//! the events after it, into the same model a replay of the whole log builds; a snapshot the log does not
//! match (its anchor event differs) or whose body does not match its digest is ignored, and the model is
//! replayed from the start.

use std::time::Duration;

use axum::http::{Method, StatusCode};
use eventstore::Position;
use projections::authz::Authz;
use projections::{MemoryProjection, ProjectionStatus, Relevance};
use serde_json::Value;
use uuid::Uuid;

use crate::api_servers::{Api, config, server, start_with};
use crate::conformance::{Backend, on_every_backend};
use crate::support::DEADLINE;

on_every_backend!(a_start_loads_the_snapshot_and_replays_only_the_events_after_it);
on_every_backend!(a_snapshot_the_log_or_its_digest_does_not_match_is_ignored);

/// Snapshots after 30 events read, then not again for an hour: one per gateway run, so the test knows
/// which one a start loads.
fn snapshots() -> api::SnapshotConfig {
    api::SnapshotConfig { every_events: 30, min_interval: Duration::from_secs(3600) }
}

/// `api` stopped and started again on its database, taking snapshots as [`snapshots`] says.
async fn restart(api: Api) -> Api {
    let mut config = config(&api.database_url(), None);
    config.snapshots = snapshots();
    api.restarted(config).await
}

async fn a_start_loads_the_snapshot_and_replays_only_the_events_after_it(backend: Backend) {
    let api = start_with(backend, |c| c.snapshots = snapshots()).await;
    let ids = register(&api, "before", 40).await;
    let anchor = saved_anchor(&api).await;
    // After the snapshot: a server deregistered, another registered.
    let gone = api.call(Method::DELETE, &format!("/api/v1/servers/{}?reason=retired", ids[0]), None, &[]).await;
    assert_eq!(gone.status, StatusCode::OK, "{}", gone.raw);
    let added = register(&api, "after", 1).await;

    let api = restart(api).await;
    let status = ready(&api).await;
    assert_eq!(saved_anchor(&api).await, anchor, "the restarted gateway took no snapshot of its own yet");
    let after = relevant_between(&api, Some(anchor), status.checkpoint).await;
    assert!(after >= 2, "the deregistration and the registration follow the snapshot");
    assert_eq!(status.applied, after, "only the events after the snapshot were applied");
    assert!(status.applied < relevant_between(&api, None, status.checkpoint).await);

    let model = api.gateway.state.authz.clone();
    assert!(model.read().unwrap().server_access(ids[0]).is_none(), "deregistered after the snapshot");
    assert!(model.read().unwrap().server_access(ids[1]).is_some(), "registered before it");
    assert!(model.read().unwrap().server_access(added[0]).is_some(), "registered after it");
    let live = state_of(&model.read().unwrap());
    assert_eq!(live, replayed(&api).await, "the same model as a whole replay");
    api.gateway.stop();
}

async fn a_snapshot_the_log_or_its_digest_does_not_match_is_ignored(backend: Backend) {
    let empty = Authz::default().save_state().unwrap().unwrap();
    // Another event at the snapshot's place (a restored backup, another database): its chain link differs.
    // And a body changed without its digest: an empty model that would load if the digest were not checked.
    for (what, column_name, value) in [("anchor", "event_hash", vec![0u8; 32]), ("digest", "body", empty)] {
        let api = start_with(backend, |c| c.snapshots = snapshots()).await;
        register(&api, "server", 40).await;
        saved_anchor(&api).await;
        tamper(&api, column_name, value.clone()).await;

        let api = restart(api).await;
        let status = ready(&api).await;
        let all = relevant_between(&api, None, status.checkpoint).await;
        assert_eq!(status.applied, all, "{what}: the whole log replayed");
        let live = state_of(&api.gateway.state.authz.read().unwrap());
        assert_eq!(live, replayed(&api).await, "{what}: the same model as a whole replay");
        // Caught up, the replayed model takes its own snapshot, and the next start loads it.
        tests::eventually(DEADLINE, "a fresh snapshot", || async {
            (column(&api, column_name).await != value).then_some(())
        })
        .await;
        let api = restart(api).await;
        let status = ready(&api).await;
        assert!(status.applied < relevant_between(&api, None, status.checkpoint).await, "{what}: the fresh one loaded");
        api.gateway.stop();
    }
}

/// Registers `count` servers named `<prefix>-<n>`: their ids.
async fn register(api: &Api, prefix: &str, count: usize) -> Vec<Uuid> {
    let mut ids = Vec::new();
    for n in 0..count {
        let body = server(&format!("{prefix}-{n}")).to_string();
        let created = api.call(Method::POST, "/api/v1/servers", Some(&body), &[]).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
        ids.push(created.body["id"].as_str().unwrap().parse().unwrap());
    }
    ids
}

/// The position of the authorization model's saved snapshot, once there is one.
async fn saved_anchor(api: &Api) -> Position {
    tests::eventually(DEADLINE, "a saved snapshot", || async {
        let row: Option<(i64, i64)> = match &api.gateway.state.tables {
            api::tables::Tables::Postgres(pool) => {
                sqlx::query_as("SELECT transaction_id, global_position FROM es.snapshots WHERE name = 'authz'")
                    .fetch_optional(pool)
                    .await
            }
            api::tables::Tables::Sqlite(pool) => {
                sqlx::query_as("SELECT transaction_id, global_position FROM snapshots WHERE name = 'authz'")
                    .fetch_optional(pool)
                    .await
            }
        }
        .unwrap();
        row.map(|(tx, gp)| Position { transaction_id: tx as u64, global_position: gp as u64 })
    })
    .await
}

/// Sets `column` of the saved snapshot to `value`, behind the gateway's back.
async fn tamper(api: &Api, column: &str, value: Vec<u8>) {
    let changed = match &api.gateway.state.tables {
        api::tables::Tables::Postgres(pool) => {
            let sql = format!("UPDATE es.snapshots SET {column} = $1 WHERE name = 'authz'");
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(value).execute(pool).await.unwrap().rows_affected()
        }
        api::tables::Tables::Sqlite(pool) => {
            let sql = format!("UPDATE snapshots SET {column} = ?1 WHERE name = 'authz'");
            sqlx::query(sqlx::AssertSqlSafe(sql)).bind(value).execute(pool).await.unwrap().rows_affected()
        }
    };
    assert_eq!(changed, 1);
}

/// `column` of the saved snapshot.
async fn column(api: &Api, column: &str) -> Vec<u8> {
    match &api.gateway.state.tables {
        api::tables::Tables::Postgres(pool) => {
            let sql = format!("SELECT {column} FROM es.snapshots WHERE name = 'authz'");
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await.unwrap()
        }
        api::tables::Tables::Sqlite(pool) => {
            let sql = format!("SELECT {column} FROM snapshots WHERE name = 'authz'");
            sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(pool).await.unwrap()
        }
    }
}

/// The authorization model's status once it is ready.
async fn ready(api: &Api) -> ProjectionStatus {
    let mut status = api.gateway.state.authz_status.clone();
    tokio::time::timeout(DEADLINE, status.wait_for(|s| s.is_ready())).await.unwrap().unwrap().clone()
}

/// How many events in `(after, upto]` the authorization model applies.
async fn relevant_between(api: &Api, after: Option<Position>, upto: Option<Position>) -> u64 {
    let filter = Authz::default().filter().clone();
    let (mut from, mut count) = (after, 0);
    loop {
        let page = api.gateway.state.store.read_all(from, 1000).await.unwrap();
        let Some(last) = page.last() else { return count };
        from = Some(last.position);
        for event in page.iter().filter(|e| Some(e.position) <= upto) {
            count += u64::from(matches!(filter.relevance(event), Relevance::Handled));
        }
        if Some(last.position) >= upto {
            return count;
        }
    }
}

fn state_of(model: &Authz) -> Value {
    serde_json::from_slice(&model.save_state().unwrap().unwrap()).unwrap()
}

/// The model a replay of the whole log builds.
async fn replayed(api: &Api) -> Value {
    state_of(&projections::replay_once(&*api.gateway.state.store, Authz::default()).await.unwrap())
}
