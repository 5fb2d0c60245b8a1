//! `Idempotency-Key` on POST: a retry returns the first response; the same key with another request is
//! refused (422); a retry while the first is still running is told so (409).
//!
//! The key is claimed (a pending row) before the command runs, so two requests with one key never both
//! run. The command id derives from the key, and the command handlers recognise their own events: a
//! retry after a crash that left the claim pending (taken over after [`TAKEOVER_AFTER_SECONDS`]) or the
//! response unrecorded appends nothing new and answers as the first attempt did.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use uuid::Uuid;

use crate::problem::Problem;
use crate::state::AppState;
use crate::tables::Tables;

/// Namespace of command ids derived from idempotency keys.
const NAMESPACE: Uuid = Uuid::from_u128(0x6d67_775f_6964_656d_706f_7465_6e63_7921);

/// The status stored while the command runs.
const PENDING: i16 = 0;

/// A pending claim older than this belongs to a request that died; a retry takes it over.
pub const TAKEOVER_AFTER_SECONDS: i32 = 60;

/// A command's successful response, as stored for replays.
pub struct Stored {
    /// Status.
    pub status: StatusCode,
    /// Body.
    pub body: serde_json::Value,
    /// `Location`, for creations.
    pub location: Option<String>,
    /// `ETag`.
    pub etag: Option<String>,
}

impl IntoResponse for Stored {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.body)).into_response();
        for (name, value) in [(header::LOCATION, self.location), (header::ETAG, self.etag)] {
            if let Some(value) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }
}

/// The request's key, if any: 1 to 255 visible ASCII characters.
pub(crate) fn key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key =
        value.to_str().ok().filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()));
    key.map(|k| Some(k.to_owned())).ok_or_else(|| {
        Problem::new(StatusCode::BAD_REQUEST, "invalid-idempotency-key", "Invalid Idempotency-Key")
            .detail("1 to 255 visible ASCII characters")
    })
}

/// Now, in the Unix milliseconds the SQLite table keeps.
fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn database(_: sqlx::Error) -> Problem {
    Problem::unavailable("the database is unreachable")
}

/// A stored key: request fingerprint and its key id, status, body, location, and whether a pending claim
/// is stale.
type KeyRow = (Vec<u8>, String, i16, serde_json::Value, Option<String>, bool);

/// [`KeyRow`] as SQLite keeps it: the body as JSON text.
type SqliteKeyRow = (Vec<u8>, String, i16, String, Option<String>, bool);

/// What the key's row says when this request could not claim it.
enum Seen {
    /// Claimed by this request (fresh, or taken over from a dead one).
    Ours,
    /// Answered before: replay.
    Done(Stored),
}

/// Claims (principal, key) for `request`, or says why not. Requests are compared by keyed fingerprint
/// (a body may hold an upstream secret; a plain hash of it could be tested against guesses).
async fn claim(state: &AppState, principal: Uuid, key: &str, request: &[&[u8]]) -> Result<Seen, Problem> {
    let (hash_key_id, hash) = state.keyring.fingerprint(request);
    let takeover = f64::from(TAKEOVER_AFTER_SECONDS);
    let claimed: Option<i32> =
        match &state.tables {
            Tables::Postgres(pool) => {
                sqlx::query_scalar(
                    "INSERT INTO api.idempotency (principal_id, key, request_hash, hash_key_id, status, body)
             VALUES ($1, $2, $3, $5, $4, 'null') ON CONFLICT DO NOTHING RETURNING 1",
                )
                .bind(principal)
                .bind(key)
                .bind(&hash)
                .bind(PENDING)
                .bind(&hash_key_id)
                .fetch_optional(pool)
                .await
            }
            Tables::Sqlite(pool) => sqlx::query_scalar(
                "INSERT INTO api_idempotency (principal_id, key, request_hash, hash_key_id, status, body, created_at)
             VALUES (?, ?, ?, ?, ?, 'null', ?) ON CONFLICT DO NOTHING RETURNING 1",
            )
            .bind(principal)
            .bind(key)
            .bind(&hash)
            .bind(&hash_key_id)
            .bind(PENDING)
            .bind(now_ms())
            .fetch_optional(pool)
            .await,
        }
        .map_err(database)?;
    if claimed.is_some() {
        return Ok(Seen::Ours);
    }
    let row: Option<KeyRow> = match &state.tables {
        Tables::Postgres(pool) => sqlx::query_as(
            "SELECT request_hash, hash_key_id, status, body, location, created_at < now() - make_interval(secs => $3)
               FROM api.idempotency WHERE principal_id = $1 AND key = $2",
        )
        .bind(principal)
        .bind(key)
        .bind(takeover)
        .fetch_optional(pool)
        .await
        .map_err(database)?,
        Tables::Sqlite(pool) => {
            let row: Option<SqliteKeyRow> = sqlx::query_as(
                "SELECT request_hash, hash_key_id, status, body, location, created_at < ?
                   FROM api_idempotency WHERE principal_id = ? AND key = ?",
            )
            .bind(now_ms() - i64::from(TAKEOVER_AFTER_SECONDS) * 1000)
            .bind(principal)
            .bind(key)
            .fetch_optional(pool)
            .await
            .map_err(database)?;
            row.map(|(hash, key_id, status, body, location, stale)| {
                (hash, key_id, status, serde_json::from_str(&body).unwrap_or_default(), location, stale)
            })
        }
    };
    let Some((stored_hash, stored_key_id, status, body, location, stale)) = row else {
        // The claim was released (its command failed) between our insert and our read.
        return Err(in_progress());
    };
    // Compared with the key the stored fingerprint was made with (the current one may have rotated since).
    if state.keyring.fingerprint_with(&stored_key_id, request).as_deref() != Some(stored_hash.as_slice()) {
        return Err(Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "idempotency-key-reused", "Idempotency-Key reused")
            .detail("this key was used for a different request"));
    }
    if status != PENDING {
        let etag = body.get("revision").and_then(|r| r.as_u64()).map(etag);
        let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
        return Ok(Seen::Done(Stored { status, body, location, etag }));
    }
    if !stale {
        return Err(in_progress());
    }
    let taken: Option<i32> = match &state.tables {
        Tables::Postgres(pool) => {
            sqlx::query_scalar(
                "UPDATE api.idempotency SET created_at = now()
              WHERE principal_id = $1 AND key = $2 AND status = $3 AND created_at < now() - make_interval(secs => $4)
              RETURNING 1",
            )
            .bind(principal)
            .bind(key)
            .bind(PENDING)
            .bind(takeover)
            .fetch_optional(pool)
            .await
        }
        Tables::Sqlite(pool) => {
            sqlx::query_scalar(
                "UPDATE api_idempotency SET created_at = ?
              WHERE principal_id = ? AND key = ? AND status = ? AND created_at < ? RETURNING 1",
            )
            .bind(now_ms())
            .bind(principal)
            .bind(key)
            .bind(PENDING)
            .bind(now_ms() - i64::from(TAKEOVER_AFTER_SECONDS) * 1000)
            .fetch_optional(pool)
            .await
        }
    }
    .map_err(database)?;
    if taken.is_some() { Ok(Seen::Ours) } else { Err(in_progress()) }
}

fn in_progress() -> Problem {
    Problem::new(StatusCode::CONFLICT, "idempotency-key-in-progress", "Request in progress")
        .detail("a request with this Idempotency-Key is still running; retry shortly")
}

/// Runs `command` once per (principal, key); see the [module docs](self). `command` gets the command id
/// to use.
pub async fn run<F, Fut>(
    state: &AppState,
    principal: Uuid,
    headers: &HeaderMap,
    request: &[&[u8]],
    command: F,
) -> Result<Stored, Problem>
where
    F: FnOnce(Uuid) -> Fut,
    Fut: Future<Output = Result<Stored, Problem>>,
{
    let Some(key) = key(headers)? else { return command(Uuid::now_v7()).await };
    if let Seen::Done(stored) = claim(state, principal, &key, request).await? {
        return Ok(stored);
    }
    let command_id = Uuid::new_v5(&NAMESPACE, format!("{principal}\n{key}").as_bytes());
    let outcome = command(command_id).await;
    match &outcome {
        Ok(stored) => {
            let status = stored.status.as_u16() as i16;
            let recorded = match &state.tables {
                Tables::Postgres(pool) => sqlx::query(
                    "UPDATE api.idempotency SET status = $3, body = $4, location = $5
                      WHERE principal_id = $1 AND key = $2",
                )
                .bind(principal)
                .bind(&key)
                .bind(status)
                .bind(&stored.body)
                .bind(&stored.location)
                .execute(pool)
                .await
                .map(drop),
                Tables::Sqlite(pool) => sqlx::query(
                    "UPDATE api_idempotency SET status = ?, body = ?, location = ? WHERE principal_id = ? AND key = ?",
                )
                .bind(status)
                .bind(stored.body.to_string())
                .bind(&stored.location)
                .bind(principal)
                .bind(&key)
                .execute(pool)
                .await
                .map(drop),
            };
            if let Err(error) = recorded {
                // The command happened: say so. A retry takes the claim over later and, the command
                // finding its own events, answers the same.
                tracing::warn!(%error, "could not record an idempotent response");
            }
        }
        Err(_) => {
            // Nothing was written: free the key so that a corrected retry can run.
            let released = match &state.tables {
                Tables::Postgres(pool) => {
                    sqlx::query("DELETE FROM api.idempotency WHERE principal_id = $1 AND key = $2 AND status = $3")
                        .bind(principal)
                        .bind(&key)
                        .bind(PENDING)
                        .execute(pool)
                        .await
                        .map(drop)
                }
                Tables::Sqlite(pool) => {
                    sqlx::query("DELETE FROM api_idempotency WHERE principal_id = ? AND key = ? AND status = ?")
                        .bind(principal)
                        .bind(&key)
                        .bind(PENDING)
                        .execute(pool)
                        .await
                        .map(drop)
                }
            };
            if let Err(error) = released {
                tracing::warn!(%error, "could not release an idempotency claim");
            }
        }
    }
    outcome
}

/// The `ETag` of a revision.
pub fn etag(revision: u64) -> String {
    format!("\"{revision}\"")
}
