//! `Idempotency-Key` on POST: a retry returns the first response; the same key with another request is
//! refused (422). The command id derives from the key, so even two concurrent retries append once.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::problem::Problem;
use crate::state::AppState;

/// Namespace of command ids derived from idempotency keys.
const NAMESPACE: Uuid = Uuid::from_u128(0x6d67_775f_6964_656d_706f_7465_6e63_7921);

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
fn key(headers: &HeaderMap) -> Result<Option<String>, Problem> {
    let Some(value) = headers.get("idempotency-key") else { return Ok(None) };
    let key =
        value.to_str().ok().filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()));
    key.map(|k| Some(k.to_owned())).ok_or_else(|| {
        Problem::new(StatusCode::BAD_REQUEST, "invalid-idempotency-key", "Invalid Idempotency-Key")
            .detail("1 to 255 visible ASCII characters")
    })
}

/// Runs `command` once per (principal, key): with a key seen before, replays its response (same request)
/// or refuses (different request). `command` gets the command id to use.
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
    let mut hasher = Sha256::new();
    for part in request {
        hasher.update((part.len() as u64).to_be_bytes());
        hasher.update(part);
    }
    let hash = hasher.finalize().to_vec();
    let seen: Option<(Vec<u8>, i16, serde_json::Value, Option<String>)> = sqlx::query_as(
        "SELECT request_hash, status, body, location FROM api.idempotency WHERE principal_id = $1 AND key = $2",
    )
    .bind(principal)
    .bind(&key)
    .fetch_optional(&state.pool)
    .await
    .map_err(|_| Problem::unavailable("the database is unreachable"))?;
    if let Some((stored_hash, status, body, location)) = seen {
        if stored_hash != hash {
            return Err(Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "Idempotency-Key reused",
            )
            .detail("this key was used for a different request"));
        }
        let etag = body.get("revision").and_then(|r| r.as_u64()).map(etag);
        let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
        return Ok(Stored { status, body, location, etag });
    }
    let command_id = Uuid::new_v5(&NAMESPACE, format!("{principal}\n{key}").as_bytes());
    let stored = command(command_id).await?;
    sqlx::query(
        "INSERT INTO api.idempotency (principal_id, key, request_hash, status, body, location)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(principal)
    .bind(&key)
    .bind(&hash)
    .bind(stored.status.as_u16() as i16)
    .bind(&stored.body)
    .bind(&stored.location)
    .execute(&state.pool)
    .await
    .map_err(|_| Problem::unavailable("the database is unreachable"))?;
    Ok(stored)
}

/// The `ETag` of a revision.
pub fn etag(revision: u64) -> String {
    format!("\"{revision}\"")
}
