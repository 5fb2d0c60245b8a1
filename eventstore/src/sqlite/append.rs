//! One part of an append on SQLite, inside the writer's transaction: write it, or say whether it was
//! written before. Nothing here races: the caller holds the only write transaction.

use sqlx::SqliteConnection;

use crate::content_hash::{GENESIS, Hash, chain};
use crate::error::{CorruptKind, from_sqlx};
use crate::prepare::PreparedAppend;
use crate::{AppendResult, Error, ExpectedRevision, Position, Result};

/// What the store holds of an append's event ids: all of them in its stream (a retry: the original
/// result), or none. Some of them, or one in another stream, is refused. Asked only after a write ran
/// into a stored id: retries are rare, and the unique index finds them for free.
pub(super) async fn retried(conn: &mut SqliteConnection, p: &PreparedAppend) -> Result<Option<AppendResult>> {
    let mut here = Vec::with_capacity(p.ids.len());
    let mut elsewhere = false;
    for id in &p.ids {
        let row: Option<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT stream_id, stream_revision, global_position, transaction_id FROM events WHERE event_id = ?",
        )
        .bind(id)
        .fetch_optional(&mut *conn)
        .await
        .map_err(from_sqlx)?;
        match row {
            Some((stream, revision, position, tx)) if stream == p.stream.as_str() => {
                here.push((revision, position, tx));
            }
            Some(_) => elsewhere = true,
            None => {}
        }
    }
    if here.len() == p.ids.len() {
        let min = |f: fn(&(i64, i64, i64)) -> i64| here.iter().map(f).min().unwrap_or_default() as u64;
        let max = |f: fn(&(i64, i64, i64)) -> i64| here.iter().map(f).max().unwrap_or_default() as u64;
        let tx = max(|r| r.2);
        return Ok(Some(AppendResult {
            first_revision: min(|r| r.0),
            last_revision: max(|r| r.0),
            first_position: Position { transaction_id: tx, global_position: min(|r| r.1) },
            position: Position { transaction_id: tx, global_position: max(|r| r.1) },
            idempotent: true,
        }));
    }
    if !here.is_empty() {
        return Err(Error::PartialDuplicate { stream: p.stream.clone() });
    }
    if elsewhere {
        return Err(Error::DuplicateEventId { stream: p.stream.clone() });
    }
    Ok(None)
}

/// Events per INSERT statement (11 parameters each, well below SQLite's limit of 32,766).
const ROWS_PER_INSERT: usize = 500;

/// Checks the expectation against the stream's head, takes and releases the claims, and appends the
/// events as commit `commit`, continuing the stream's chain.
pub(super) async fn write(conn: &mut SqliteConnection, p: &PreparedAppend, commit: i64) -> Result<AppendResult> {
    let stream = p.stream.as_str();
    let head = read_head(conn, stream).await?;
    let actual = head.map(|(revision, _)| revision);
    // Claims first, as on Postgres: a claim held elsewhere is the answer even when the expectation
    // fails too.
    for claim in &p.claims.take {
        let holder: Option<String> = sqlx::query_scalar("SELECT stream_id FROM claims WHERE scope = ? AND value = ?")
            .bind(&claim.scope)
            .bind(&claim.value)
            .fetch_optional(&mut *conn)
            .await
            .map_err(from_sqlx)?;
        match holder {
            Some(holder) if holder == stream => {}
            Some(_) => return Err(Error::ClaimTaken { scope: claim.scope.clone(), value: claim.value.clone() }),
            None => {
                sqlx::query("INSERT INTO claims (scope, value, stream_id) VALUES (?, ?, ?)")
                    .bind(&claim.scope)
                    .bind(&claim.value)
                    .bind(stream)
                    .execute(&mut *conn)
                    .await
                    .map_err(from_sqlx)?;
            }
        }
    }
    for claim in &p.claims.release {
        sqlx::query("DELETE FROM claims WHERE scope = ? AND value = ? AND stream_id = ?")
            .bind(&claim.scope)
            .bind(&claim.value)
            .bind(stream)
            .execute(&mut *conn)
            .await
            .map_err(from_sqlx)?;
    }
    let met = match p.expected {
        ExpectedRevision::Exact(n) => actual == Some(n),
        ExpectedRevision::NoStream => actual.is_none(),
        ExpectedRevision::StreamExists => actual.is_some(),
        ExpectedRevision::Any => true,
    };
    if !met {
        return Err(Error::WrongExpectedRevision { stream: p.stream.clone(), expected: p.expected, actual });
    }
    let previous = head.map_or(GENESIS, |(_, link)| link);
    let links = chain(&previous, actual, &p.content);
    let first_revision = actual.map_or(0, |r| r + 1);
    let mut positions = Vec::with_capacity(p.ids.len());
    // Several rows per statement: one round trip to SQLite's thread per chunk, not per event.
    for chunk in (0..p.ids.len()).collect::<Vec<_>>().chunks(ROWS_PER_INSERT) {
        let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
            "INSERT INTO events (transaction_id, event_id, stream_id, stream_revision, event_type, schema_version,
                                 data, metadata, correlation_id, causation_id, hash) ",
        );
        insert.push_values(chunk, |mut row, &i| {
            row.push_bind(commit)
                .push_bind(p.ids[i])
                .push_bind(stream)
                .push_bind(i64::try_from(first_revision + i as u64).unwrap_or(i64::MAX))
                .push_bind(&p.types[i])
                .push_bind(p.versions[i])
                .push_bind(&p.data[i])
                .push_bind(&p.metadata[i])
                .push_bind(p.correlation[i])
                .push_bind(p.causation[i])
                .push_bind(links[i].as_slice());
        });
        insert.push(" RETURNING global_position");
        let written: Vec<i64> = insert.build_query_scalar().fetch_all(&mut *conn).await.map_err(from_sqlx)?;
        positions.extend(written.into_iter().map(|p| p as u64));
    }
    positions.sort_unstable();
    let last_revision = first_revision + p.ids.len() as u64 - 1;
    let last_link = links.last().copied().unwrap_or(previous);
    sqlx::query(
        "INSERT INTO streams (stream_id, revision, last_hash) VALUES (?, ?, ?)
         ON CONFLICT (stream_id) DO UPDATE SET revision = excluded.revision, last_hash = excluded.last_hash",
    )
    .bind(stream)
    .bind(i64::try_from(last_revision).unwrap_or(i64::MAX))
    .bind(last_link.as_slice())
    .execute(&mut *conn)
    .await
    .map_err(from_sqlx)?;
    let at = |global_position: u64| Position { transaction_id: commit as u64, global_position };
    Ok(AppendResult {
        first_revision,
        last_revision,
        first_position: at(positions.first().copied().unwrap_or_default()),
        position: at(positions.last().copied().unwrap_or_default()),
        idempotent: false,
    })
}

/// The stream's head: its revision and last link.
async fn read_head(conn: &mut SqliteConnection, stream: &str) -> Result<Option<(u64, Hash)>> {
    let row: Option<(i64, Vec<u8>)> = sqlx::query_as("SELECT revision, last_hash FROM streams WHERE stream_id = ?")
        .bind(stream)
        .fetch_optional(&mut *conn)
        .await
        .map_err(from_sqlx)?;
    let Some((revision, link)) = row else { return Ok(None) };
    let corrupt = |column| Error::Corrupt { position: Position::START, source: CorruptKind::Column(column) };
    let revision = u64::try_from(revision).map_err(|_| corrupt("streams.revision"))?;
    let link = Hash::try_from(link.as_slice()).map_err(|_| corrupt("streams.last_hash"))?;
    Ok(Some((revision, link)))
}

/// True when `error` is an insert running into a stored event id.
pub(super) fn is_known_id(error: &Error) -> bool {
    let (Error::Database(e) | Error::Unavailable(e)) = error else { return false };
    e.as_database_error().is_some_and(|db| db.is_unique_violation() && db.message().contains("events.event_id"))
}
