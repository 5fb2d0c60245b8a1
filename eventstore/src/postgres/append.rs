//! One append to one stream: validation, the append statements (`append_*.sql`), and why one wrote nothing.

use sqlx::{Connection, PgConnection};

use super::append_group::GroupParams;
use super::head_cache::HeadCache;
use crate::content_hash::{GENESIS, Hash, chain};
use crate::error::from_sqlx;
pub(crate) use crate::prepare::PreparedAppend;
use crate::{AppendResult, Claim, Error, ExpectedRevision, Position};

/// Why an append did not happen, before it is turned into an [`Error`].
#[derive(Debug)]
pub(crate) enum AppendFailure {
    /// Another writer appended while an `Any` or `StreamExists` append ran, the cached head was stale, or the
    /// stream's last writer has a later transaction id: run it again (in a new transaction).
    Raced,
    /// A claim the append takes is held (by another stream, or already by this one): run it again with
    /// [`append_claiming`], which tells the two apart.
    ClaimHeld,
    /// Some event id is already stored. The statement failed, and with it its transaction: classify on a
    /// fresh one with [`explain_refusal`] (a retry, a partial duplicate, or an id used elsewhere).
    KnownIds,
    /// Anything else.
    Failed(Error),
}

impl From<Error> for AppendFailure {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}

/// What an append statement returned: the first and last position written, and the transaction id;
/// all `None` when it wrote nothing.
type Written = (Option<i64>, Option<i64>, Option<i64>);

/// Runs the append on `conn` (a pooled connection in autocommit, or a transaction). The chain continues
/// from the head's link, taken from `heads` or read from the store. `Any` and `StreamExists` read the head
/// and append after it exactly, so every write is a compare-and-set; when another writer got there
/// first they report [`AppendFailure::Raced`] and the caller runs again. When nothing was written, asks
/// the store why, on the same connection.
pub(crate) async fn append_prepared(
    conn: &mut PgConnection,
    p: &PreparedAppend,
    heads: &HeadCache,
) -> Result<AppendResult, AppendFailure> {
    append_events(conn, p, heads, !p.claims.is_empty()).await
}

/// [`append_prepared`]; with `claims`, the claims are taken and released by the same statement (the group
/// statement, with one append), else they are ignored (the caller took care of them).
async fn append_events(
    conn: &mut PgConnection,
    p: &PreparedAppend,
    heads: &HeadCache,
    claims: bool,
) -> Result<AppendResult, AppendFailure> {
    let stream = p.stream.as_str();
    let head = match p.expected {
        ExpectedRevision::Exact(n) => match heads.get(stream).filter(|(revision, _)| *revision == n) {
            Some(head) => Some(head),
            None => match read_head(conn, stream).await? {
                Some(head) if head.0 == n => Some(head),
                _ => return explain_refusal(conn, p).await,
            },
        },
        ExpectedRevision::NoStream => None,
        ExpectedRevision::Any | ExpectedRevision::StreamExists => match read_head(conn, stream).await? {
            None if p.expected == ExpectedRevision::StreamExists => return explain_refusal(conn, p).await,
            head => head,
        },
    };
    let after = head.map(|(revision, _)| revision);
    let previous = head.map_or(GENESIS, |(_, link)| link);
    let links = chain(&previous, after, &p.content);
    let last_link = links.last().copied().unwrap_or(previous);
    let written = match (after, links.as_slice()) {
        _ if claims => append_with_claims(conn, p, head).await,
        (Some(revision), [link]) => append_one(conn, p, revision, &previous, link).await,
        _ => append_many(conn, p, after, &previous, &links).await,
    };
    match written {
        Ok((Some(first), Some(last), Some(tx))) => {
            let first_revision = after.map_or(0, |r| r + 1);
            let last_revision = first_revision + p.ids.len() as u64 - 1;
            heads.put(stream, last_revision, last_link);
            Ok(AppendResult {
                first_revision,
                last_revision,
                first_position: Position { transaction_id: tx as u64, global_position: first as u64 },
                position: Position { transaction_id: tx as u64, global_position: last as u64 },
                idempotent: false,
            })
        }
        Ok(_) => {
            heads.forget(stream);
            match explain_refusal(conn, p).await {
                // The revision matched but the link did not (a stale cached link), or the stream's last
                // writer has a later transaction id than ours. Run again (in a new transaction).
                Err(AppendFailure::Failed(Error::WrongExpectedRevision { actual, .. }))
                    if actual.is_some() && actual == after =>
                {
                    Err(AppendFailure::Raced)
                }
                other => other,
            }
        }
        // The statement failed and took its transaction with it: the caller asks why on a fresh one.
        Err(e) if is_unique_violation(&e, "events_event_id_key") => Err(AppendFailure::KnownIds),
        Err(e) if is_unique_violation(&e, "claims_pkey") => Err(AppendFailure::ClaimHeld),
        Err(e) => Err(AppendFailure::Failed(from_sqlx(e))),
    }
}

/// [`append_prepared`] for an append whose claim is held, in a transaction on `conn`: the claims first (a
/// claim held by another stream refuses the append before anything is written; one held by the stream
/// itself is kept), then the events.
pub(crate) async fn append_claiming(
    conn: &mut PgConnection,
    p: &PreparedAppend,
    heads: &HeadCache,
) -> Result<AppendResult, AppendFailure> {
    let failed = |e| AppendFailure::Failed(from_sqlx(e));
    let mut tx = conn.begin().await.map_err(failed)?;
    let stream = p.stream.as_str();
    if let Some(taken) = take_claims(&mut tx, p).await.map_err(failed)? {
        drop(tx);
        // A retry of an append already written answers as the first time, whoever holds the claim now.
        let claim_taken = || Error::ClaimTaken { scope: taken.scope.clone(), value: taken.value.clone() }.into();
        return match explain_refusal(conn, p).await {
            Ok(result) => Ok(result),
            // Not a retry: the claim decides. Anything else (an outage, a duplicate id) says itself.
            Err(AppendFailure::Raced | AppendFailure::Failed(Error::WrongExpectedRevision { .. })) => {
                Err(claim_taken())
            }
            Err(other) => Err(other),
        };
    }
    if !p.claims.release.is_empty() {
        let (scopes, values): (Vec<&str>, Vec<&str>) =
            p.claims.release.iter().map(|c| (c.scope.as_str(), c.value.as_str())).unzip();
        sqlx::query(
            "DELETE FROM es.claims c USING unnest($1::text[], $2::text[]) AS r(scope, value)
              WHERE c.scope = r.scope AND c.value = r.value AND c.stream_id = $3",
        )
        .bind(&scopes)
        .bind(&values)
        .bind(stream)
        .execute(&mut *tx)
        .await
        .map_err(failed)?;
    }
    let result = append_events(&mut tx, p, heads, false).await?;
    if result.idempotent {
        // A retry: its claims were taken and released the first time. Dropping `tx` rolls back.
        return Ok(result);
    }
    tx.commit().await.map_err(failed)?;
    Ok(result)
}

/// Takes the claims of `p` for its stream (keeping those it holds already); the first claim another stream
/// holds, if any.
async fn take_claims<'p>(conn: &mut PgConnection, p: &'p PreparedAppend) -> Result<Option<&'p Claim>, sqlx::Error> {
    if p.claims.take.is_empty() {
        return Ok(None);
    }
    let (scopes, values): (Vec<&str>, Vec<&str>) =
        p.claims.take.iter().map(|c| (c.scope.as_str(), c.value.as_str())).unzip();
    let held: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO es.claims (scope, value, stream_id)
         SELECT c.scope, c.value, $3 FROM unnest($1::text[], $2::text[]) AS c(scope, value)
         ON CONFLICT (scope, value) DO UPDATE SET stream_id = excluded.stream_id
          WHERE es.claims.stream_id = excluded.stream_id
         RETURNING scope, value",
    )
    .bind(&scopes)
    .bind(&values)
    .bind(p.stream.as_str())
    .fetch_all(&mut *conn)
    .await?;
    Ok(p.claims.take.iter().find(|c| !held.iter().any(|(s, v)| *s == c.scope && *v == c.value)))
}

/// A single event after revision `after` (`append_exact_one.sql`): scalar parameters, the cheapest plan.
async fn append_one(
    conn: &mut PgConnection,
    p: &PreparedAppend,
    after: u64,
    previous: &Hash,
    link: &Hash,
) -> Result<Written, sqlx::Error> {
    let row: Option<(i64, i64, i64)> = sqlx::query_as(include_str!("append_exact_one.sql"))
        .bind(p.stream.as_str())
        .bind(i64::try_from(after).unwrap_or(i64::MAX))
        .bind(p.ids[0])
        .bind(&p.types[0])
        .bind(p.versions[0])
        .bind(&p.data[0])
        .bind(&p.metadata[0])
        .bind(p.correlation[0])
        .bind(p.causation[0])
        .bind(link.as_slice())
        .bind(previous.as_slice())
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map_or((None, None, None), |(first, last, tx)| (Some(first), Some(last), Some(tx))))
}

/// The append with its claims, by the general group statement (`append_group_any.sql`) with one append.
async fn append_with_claims(
    conn: &mut PgConnection,
    p: &PreparedAppend,
    head: Option<(u64, Hash)>,
) -> Result<Written, sqlx::Error> {
    let rows = GroupParams::new(std::iter::once((p, head))).run(conn).await?;
    let first = rows.iter().map(|&(_, _, position, _)| position).min();
    let last = rows.iter().map(|&(_, _, position, _)| position).max();
    Ok((first, last, rows.first().map(|&(_, _, _, tx)| tx)))
}

/// The array form of the append (`append_exact.sql`, `append_new_stream.sql`): any number of events.
/// Positions come back per event: no aggregate over `RETURNING`, which cost a CTE in the plan.
async fn append_many(
    conn: &mut PgConnection,
    p: &PreparedAppend,
    after: Option<u64>,
    previous: &Hash,
    links: &[Hash],
) -> Result<Written, sqlx::Error> {
    let last_link = links.last().copied().unwrap_or(*previous);
    let link_params: Vec<&[u8]> = links.iter().map(|l| l.as_slice()).collect();
    let count = i32::try_from(p.ids.len()).unwrap_or(i32::MAX);
    let query = match after {
        Some(revision) => sqlx::query_as(include_str!("append_exact.sql"))
            .bind(p.stream.as_str())
            .bind(i64::try_from(revision).unwrap_or(i64::MAX)),
        None => sqlx::query_as(include_str!("append_new_stream.sql")).bind(p.stream.as_str()),
    };
    let query = query
        .bind(&p.ids)
        .bind(&p.types)
        .bind(&p.versions)
        .bind(&p.data)
        .bind(&p.metadata)
        .bind(&p.correlation)
        .bind(&p.causation)
        .bind(&link_params)
        .bind(count);
    let query = match after {
        Some(_) => query.bind(previous.as_slice()).bind(last_link.as_slice()),
        None => query.bind(last_link.as_slice()),
    };
    // One row per event; none when nothing was written.
    let rows: Vec<(i64, i64)> = query.fetch_all(&mut *conn).await?;
    let first = rows.iter().map(|&(position, _)| position).min();
    let last = rows.iter().map(|&(position, _)| position).max();
    Ok((first, last, rows.first().map(|&(_, tx)| tx)))
}

/// The stream's head (revision and link), without locking it: the append's compare-and-set checks it.
/// (A row lock here would give the transaction its id before it waits, which `last_tx` then refuses.)
async fn read_head(conn: &mut PgConnection, stream: &str) -> Result<Option<(u64, Hash)>, AppendFailure> {
    let row: Option<(i64, Vec<u8>)> = sqlx::query_as("SELECT revision, last_hash FROM es.streams WHERE stream_id = $1")
        .bind(stream)
        .fetch_optional(&mut *conn)
        .await
        .map_err(|e| AppendFailure::Failed(from_sqlx(e)))?;
    Ok(row.and_then(|(revision, link)| Some((u64::try_from(revision).ok()?, Hash::try_from(link.as_slice()).ok()?))))
}

type Classification = (i64, i64, Option<i64>, Option<i64>, Option<i64>, Option<i64>, Option<i64>, Option<i64>);

/// Nothing was written: an idempotent retry (return the original result), a partial duplicate, an id
/// used elsewhere, or a failed expectation.
pub(crate) async fn explain_refusal(
    conn: &mut PgConnection,
    p: &PreparedAppend,
) -> Result<AppendResult, AppendFailure> {
    let (here, anywhere, first_rev, last_rev, first_pos, last_pos, tx, actual): Classification = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE e.stream_id = $1), count(*),
                min(e.stream_revision), max(e.stream_revision), min(e.global_position), max(e.global_position),
                max(e.transaction_id::text::bigint),
                (SELECT revision FROM es.streams WHERE stream_id = $1)
           FROM es.events e WHERE e.event_id = ANY ($2)",
    )
    .bind(p.stream.as_str())
    .bind(&p.ids)
    .fetch_one(&mut *conn)
    .await
    .map_err(|e| AppendFailure::Failed(from_sqlx(e)))?;
    let stream = p.stream.clone();
    let n = p.ids.len() as i64;
    if here == n {
        let (Some(first_rev), Some(last_rev), Some(first_pos), Some(last_pos), Some(tx)) =
            (first_rev, last_rev, first_pos, last_pos, tx)
        else {
            return Err(AppendFailure::Raced);
        };
        return Ok(AppendResult {
            first_revision: first_rev as u64,
            last_revision: last_rev as u64,
            first_position: Position { transaction_id: tx as u64, global_position: first_pos as u64 },
            position: Position { transaction_id: tx as u64, global_position: last_pos as u64 },
            idempotent: true,
        });
    }
    if here > 0 {
        return Err(Error::PartialDuplicate { stream }.into());
    }
    if anywhere > 0 {
        return Err(Error::DuplicateEventId { stream }.into());
    }
    let moved_under_us = match p.expected {
        ExpectedRevision::Any => true,
        ExpectedRevision::StreamExists => actual.is_some(),
        ExpectedRevision::Exact(_) | ExpectedRevision::NoStream => false,
    };
    if moved_under_us {
        // Another writer appended between our look at the head and our write.
        return Err(AppendFailure::Raced);
    }
    Err(Error::WrongExpectedRevision { stream, expected: p.expected, actual: actual.map(|a| a as u64) }.into())
}

/// True for a unique violation of `constraint`: on event ids, a retry, a reused id, or an identical append
/// racing ours; on claims, a claim held.
fn is_unique_violation(err: &sqlx::Error, constraint: &str) -> bool {
    err.as_database_error()
        .is_some_and(|db| db.code().as_deref() == Some("23505") && db.constraint() == Some(constraint))
}
