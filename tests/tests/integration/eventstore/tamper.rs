//! Tamper evidence: the table refuses changes, and verification names rows changed behind its back.

use eventstore::{EventStore, ExpectedRevision, Position, ViolationKind};
use sqlx::{Connection, PgConnection};

use crate::support::{events, new_stream, store};

/// A superuser connection with triggers off: what an attacker with database access would use.
async fn attacker(url: &str) -> PgConnection {
    let mut conn = PgConnection::connect(url).await.unwrap();
    sqlx::query("SET session_replication_role = replica").execute(&mut conn).await.unwrap();
    conn
}

/// Runs `statement` with the stream name as `$1` on the attacker's connection.
async fn tamper(sql: &mut PgConnection, statement: &'static str, stream: &str) {
    sqlx::query(statement).bind(stream).execute(sql).await.unwrap();
}

async fn position_of(conn: &mut PgConnection, stream: &str, revision: i64) -> Position {
    let (tx, gp): (i64, i64) = sqlx::query_as(
        "SELECT transaction_id::text::bigint, global_position FROM es.events WHERE stream_id = $1 AND stream_revision = $2",
    )
    .bind(stream)
    .bind(revision)
    .fetch_one(conn)
    .await
    .unwrap();
    Position { transaction_id: tx as u64, global_position: gp as u64 }
}

#[tokio::test]
async fn the_events_table_refuses_update_delete_and_truncate() {
    let (store, _db) = store().await;
    store.append(&new_stream("server"), ExpectedRevision::NoStream, events(1)).await.unwrap();
    for statement in ["UPDATE es.events SET data = '{}'", "DELETE FROM es.events", "TRUNCATE es.events"] {
        let err = sqlx::query(statement).execute(store.pool()).await.unwrap_err();
        let code = err.as_database_error().and_then(|e| e.code()).map(|c| c.into_owned());
        assert_eq!(code.as_deref(), Some("ES403"), "{statement}: {err}");
    }
}

#[tokio::test]
async fn a_row_edited_in_sql_is_named() {
    let (store, db) = store().await;
    let stream = new_stream("server");
    store.append(&stream, ExpectedRevision::NoStream, events(5)).await.unwrap();
    store.append(&new_stream("user"), ExpectedRevision::NoStream, events(5)).await.unwrap();
    let mut sql = attacker(&db.url).await;
    let position = position_of(&mut sql, stream.as_str(), 3).await;

    sqlx::query(
        "UPDATE es.events SET data = '{\"n\":3,\"name\":\"evil\"}' WHERE stream_id = $1 AND stream_revision = 3",
    )
    .bind(stream.as_str())
    .execute(&mut sql)
    .await
    .unwrap();

    let report = store.verify_all().await.unwrap();
    let first = report.first().expect("a violation");
    assert_eq!((first.stream.as_str(), first.revision, first.kind), (stream.as_str(), 3, ViolationKind::Modified));
    assert_eq!(first.position, Some(position));
    assert_eq!(report.violations.len(), 1, "{report:?}");
    assert!(!store.verify_stream(&stream).await.unwrap().is_intact());
    assert!(report.violations[0].to_string().contains("revision 3 is modified"));
}

#[tokio::test]
async fn edited_metadata_type_or_version_is_named_too() {
    let (store, db) = store().await;
    let stream = new_stream("server");
    store.append(&stream, ExpectedRevision::NoStream, events(3)).await.unwrap();
    let mut sql = attacker(&db.url).await;
    for (revision, statement) in [
        (0, "UPDATE es.events SET event_type = 'Other' WHERE stream_id = $1 AND stream_revision = 0"),
        (1, "UPDATE es.events SET metadata = '{}' WHERE stream_id = $1 AND stream_revision = 1"),
        (2, "UPDATE es.events SET schema_version = 2 WHERE stream_id = $1 AND stream_revision = 2"),
    ] {
        tamper(&mut sql, statement, stream.as_str()).await;
        let report = store.verify_stream(&stream).await.unwrap();
        assert!(
            report.violations.iter().any(|v| v.revision == revision && v.kind == ViolationKind::Modified),
            "{report:?}"
        );
    }
}

#[tokio::test]
async fn a_row_deleted_in_sql_is_named() {
    let (store, db) = store().await;
    let stream = new_stream("server");
    store.append(&stream, ExpectedRevision::NoStream, events(5)).await.unwrap();
    let mut sql = attacker(&db.url).await;
    let next_position = position_of(&mut sql, stream.as_str(), 3).await;

    tamper(&mut sql, "DELETE FROM es.events WHERE stream_id = $1 AND stream_revision = 2", stream.as_str()).await;

    let report = store.verify_all().await.unwrap();
    let missing = report.violations.iter().find(|v| v.kind == ViolationKind::Missing).expect("missing row named");
    assert_eq!((missing.stream.as_str(), missing.revision), (stream.as_str(), 2));
    // The row after the gap no longer links either, and it carries the first position to look at.
    assert_eq!(report.first().unwrap().position, Some(next_position));
}

#[tokio::test]
async fn a_deleted_last_row_is_named() {
    let (store, db) = store().await;
    let stream = new_stream("server");
    store.append(&stream, ExpectedRevision::NoStream, events(3)).await.unwrap();
    let mut sql = attacker(&db.url).await;
    tamper(&mut sql, "DELETE FROM es.events WHERE stream_id = $1 AND stream_revision = 2", stream.as_str()).await;
    let report = store.verify_all().await.unwrap();
    assert_eq!(report.violations.len(), 1);
    assert_eq!((report.violations[0].revision, report.violations[0].kind), (2, ViolationKind::TailMissing));
}

#[tokio::test]
async fn two_swapped_rows_are_named() {
    let (store, db) = store().await;
    let stream = new_stream("server");
    store.append(&stream, ExpectedRevision::NoStream, events(5)).await.unwrap();
    let mut sql = attacker(&db.url).await;
    for (from, to) in [(1, -1), (2, 1), (-1, 2)] {
        sqlx::query("UPDATE es.events SET stream_revision = $3 WHERE stream_id = $1 AND stream_revision = $2")
            .bind(stream.as_str())
            .bind(from)
            .bind(to)
            .execute(&mut sql)
            .await
            .unwrap();
    }
    let report = store.verify_all().await.unwrap();
    let revisions: Vec<i64> = report.violations.iter().map(|v| v.revision).collect();
    assert!(revisions.contains(&1), "{report:?}");
    assert!(report.violations.iter().any(|v| v.kind == ViolationKind::Reordered), "{report:?}");
}

#[tokio::test]
async fn a_forged_row_inserted_at_the_end_is_named() {
    let (store, db) = store().await;
    let stream = new_stream("server");
    store.append(&stream, ExpectedRevision::NoStream, events(2)).await.unwrap();
    let mut sql = attacker(&db.url).await;
    // Copy the last row's hash so the link check alone would not notice; the recorded head does.
    sqlx::query(
        "INSERT INTO es.events (event_id, stream_id, stream_revision, event_type, schema_version, data, metadata,
                                correlation_id, hash)
         SELECT gen_random_uuid(), stream_id, 2, event_type, schema_version, data, metadata, correlation_id, hash
           FROM es.events WHERE stream_id = $1 AND stream_revision = 1",
    )
    .bind(stream.as_str())
    .execute(&mut sql)
    .await
    .unwrap();
    let report = store.verify_all().await.unwrap();
    assert!(report.violations.iter().any(|v| v.revision == 2 && v.kind == ViolationKind::Inserted), "{report:?}");
}
