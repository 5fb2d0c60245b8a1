//! Refresh tokens in the gateway's database: each use rotates the token (OAuth 2.1 §4.3.1 for public
//! clients). Whoever marks a token rotated first wins, atomically, and stores the successor sealed; a
//! second use within the grace window gets the same successor (concurrent refreshes of one client are
//! common and not theft); a use after it means the token was copied, and the whole grant goes.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::flow_store::{StoreError, digest};
use crate::tables::Tables;

/// How long a rotated token still answers with its successor.
pub(crate) const GRACE: Duration = Duration::seconds(30);

/// What a refresh token stands for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Grant {
    pub(crate) grant_id: Uuid,
    pub(crate) client_id: String,
    pub(crate) principal_id: Uuid,
    pub(crate) session_id: Uuid,
    pub(crate) scope: String,
    pub(crate) resource: String,
    /// What renews the sign-in behind the grant at the IdP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) renewal: Option<SealedRenewal>,
}

/// The IdP's refresh token of the sign-in behind a grant, sealed, and when the IdP's access token of that
/// sign-in expires: past it, a refresh of the grant asks the IdP first.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SealedRenewal {
    /// The IdP.
    pub(crate) idp: String,
    /// The refresh token, sealed (context [`RENEWAL_CONTEXT`]).
    pub(crate) sealed: domain::Sealed,
    /// When to ask the IdP again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) expires_at: Option<DateTime<Utc>>,
}

/// The sealing context of an IdP's refresh token kept with a grant.
pub(crate) const RENEWAL_CONTEXT: &str = "oauth:upstream-refresh";

impl SealedRenewal {
    /// `renewal` from IdP `idp`, sealed; `None` when sealing fails (logged: the grant then lives without).
    pub(crate) fn seal(keyring: &commands::Keyring, idp: &str, renewal: &crate::oidc::UpstreamRenewal) -> Option<Self> {
        match keyring.seal(&renewal.refresh_token, RENEWAL_CONTEXT) {
            Ok(sealed) => Some(Self { idp: idp.to_owned(), sealed, expires_at: renewal.expires_at }),
            Err(error) => {
                tracing::warn!(%error, "could not seal an IdP's refresh token");
                None
            }
        }
    }
}

/// What a refresh attempt found.
pub(crate) enum Rotation {
    /// This request rotated the token: the successor it stored is the one to hand out.
    Rotated,
    /// Another request rotated it within the grace window: its successor (sealed, as stored).
    AlreadyRotated(String),
    /// It was rotated longer ago: a reuse.
    Reused(Box<Grant>),
    /// No such token, or expired.
    Unknown,
}

/// Keeps `token` for `grant` until `expires_at`.
pub(crate) async fn put(
    tables: &Tables,
    token: &str,
    grant: &Grant,
    expires_at: DateTime<Utc>,
) -> Result<(), StoreError> {
    let data = serde_json::to_string(grant)?;
    match tables {
        Tables::Postgres(pool) => {
            sqlx::query(
                "INSERT INTO api.oauth_refresh_tokens (token_hash, grant_id, data, expires_at) VALUES ($1, $2, $3::jsonb, $4)",
            )
            .bind(digest(token))
            .bind(grant.grant_id)
            .bind(data)
            .bind(expires_at)
            .execute(pool)
            .await?;
            if super::flow_store::time_to_sweep() {
                sqlx::query("DELETE FROM api.oauth_refresh_tokens WHERE expires_at < now() - interval '1 minute'")
                    .execute(pool)
                    .await?;
            }
        }
        Tables::Sqlite(pool) => {
            sqlx::query(
                "INSERT INTO api_oauth_refresh_tokens (token_hash, grant_id, data, expires_at) VALUES (?, ?, ?, ?)",
            )
            .bind(digest(token))
            .bind(grant.grant_id)
            .bind(data)
            .bind(expires_at.timestamp_millis())
            .execute(pool)
            .await?;
            if super::flow_store::time_to_sweep() {
                sqlx::query("DELETE FROM api_oauth_refresh_tokens WHERE expires_at < ?")
                    .bind(Utc::now().timestamp_millis() - 60_000)
                    .execute(pool)
                    .await?;
            }
        }
    }
    Ok(())
}

/// Marks `token` rotated to `successor` (kept for `grant` until `expires_at`, named in the rotated row
/// sealed as `sealed_successor`), unless another request did first. The rotation and the successor's
/// row commit together: a successor exists exactly when a rotation names it, in one commit.
pub(crate) async fn rotate(
    tables: &Tables,
    token: &str,
    successor: &str,
    sealed_successor: &str,
    grant: &Grant,
    expires_at: DateTime<Utc>,
) -> Result<Rotation, StoreError> {
    let now = Utc::now();
    let data = serde_json::to_string(grant)?;
    let won = match tables {
        Tables::Postgres(pool) => {
            let inserted: i64 = sqlx::query_scalar(
                "WITH rotated AS (
                     UPDATE api.oauth_refresh_tokens SET rotated_at = now(), successor = $2
                      WHERE token_hash = $1 AND rotated_at IS NULL AND expires_at > now() RETURNING 1
                 ), kept AS (
                     INSERT INTO api.oauth_refresh_tokens (token_hash, grant_id, data, expires_at)
                     SELECT $3, $4, $5::jsonb, $6 FROM rotated RETURNING 1
                 )
                 SELECT count(*) FROM kept",
            )
            .bind(digest(token))
            .bind(sealed_successor)
            .bind(digest(successor))
            .bind(grant.grant_id)
            .bind(&data)
            .bind(expires_at)
            .fetch_one(pool)
            .await?;
            inserted == 1
        }
        Tables::Sqlite(pool) => {
            let mut transaction = pool.begin().await?;
            let rotated: Option<i64> = sqlx::query_scalar(
                "UPDATE api_oauth_refresh_tokens SET rotated_at = ?, successor = ?
                  WHERE token_hash = ? AND rotated_at IS NULL AND expires_at > ? RETURNING 1",
            )
            .bind(now.timestamp_millis())
            .bind(sealed_successor)
            .bind(digest(token))
            .bind(now.timestamp_millis())
            .fetch_optional(&mut *transaction)
            .await?;
            if rotated.is_some() {
                sqlx::query(
                    "INSERT INTO api_oauth_refresh_tokens (token_hash, grant_id, data, expires_at) VALUES (?, ?, ?, ?)",
                )
                .bind(digest(successor))
                .bind(grant.grant_id)
                .bind(&data)
                .bind(expires_at.timestamp_millis())
                .execute(&mut *transaction)
                .await?;
            }
            transaction.commit().await?;
            rotated.is_some()
        }
    };
    if won {
        return Ok(Rotation::Rotated);
    }
    let found: Option<(String, Option<DateTime<Utc>>, Option<String>)> = match tables {
        Tables::Postgres(pool) => {
            sqlx::query_as(
                "SELECT data::text, rotated_at, successor FROM api.oauth_refresh_tokens
                  WHERE token_hash = $1 AND expires_at > now()",
            )
            .bind(digest(token))
            .fetch_optional(pool)
            .await?
        }
        Tables::Sqlite(pool) => {
            let row: Option<(String, Option<i64>, Option<String>)> = sqlx::query_as(
                "SELECT data, rotated_at, successor FROM api_oauth_refresh_tokens WHERE token_hash = ? AND expires_at > ?",
            )
            .bind(digest(token))
            .bind(now.timestamp_millis())
            .fetch_optional(pool)
            .await?;
            row.map(|(data, at, successor)| (data, at.and_then(DateTime::from_timestamp_millis), successor))
        }
    };
    Ok(match found {
        None => Rotation::Unknown,
        Some((data, rotated_at, successor)) => {
            let grant: Grant = serde_json::from_str(&data)?;
            match (rotated_at, successor) {
                (Some(at), Some(successor)) if now - at <= GRACE => Rotation::AlreadyRotated(successor),
                _ => Rotation::Reused(Box::new(grant)),
            }
        }
    })
}

/// Replaces what `token` stands for by `grant` (its sign-in renewed at the IdP).
pub(crate) async fn update(tables: &Tables, token: &str, grant: &Grant) -> Result<(), StoreError> {
    let data = serde_json::to_string(grant)?;
    match tables {
        Tables::Postgres(pool) => {
            sqlx::query("UPDATE api.oauth_refresh_tokens SET data = $2::jsonb WHERE token_hash = $1")
                .bind(digest(token))
                .bind(data)
                .execute(pool)
                .await?;
        }
        Tables::Sqlite(pool) => {
            sqlx::query("UPDATE api_oauth_refresh_tokens SET data = ? WHERE token_hash = ?")
                .bind(data)
                .bind(digest(token))
                .execute(pool)
                .await?;
        }
    }
    Ok(())
}

/// The grant `token` belongs to, if the token is current (for revocation).
pub(crate) async fn grant_of(tables: &Tables, token: &str) -> Result<Option<Grant>, StoreError> {
    let data: Option<String> = match tables {
        Tables::Postgres(pool) => {
            sqlx::query_scalar(
                "SELECT data::text FROM api.oauth_refresh_tokens WHERE token_hash = $1 AND expires_at > now()",
            )
            .bind(digest(token))
            .fetch_optional(pool)
            .await?
        }
        Tables::Sqlite(pool) => {
            sqlx::query_scalar("SELECT data FROM api_oauth_refresh_tokens WHERE token_hash = ? AND expires_at > ?")
                .bind(digest(token))
                .bind(Utc::now().timestamp_millis())
                .fetch_optional(pool)
                .await?
        }
    };
    Ok(data.map(|d| serde_json::from_str(&d)).transpose()?)
}

/// Removes every token of `grant_id`.
pub(crate) async fn revoke_grant(tables: &Tables, grant_id: Uuid) -> Result<(), StoreError> {
    match tables {
        Tables::Postgres(pool) => {
            sqlx::query("DELETE FROM api.oauth_refresh_tokens WHERE grant_id = $1")
                .bind(grant_id)
                .execute(pool)
                .await?;
        }
        Tables::Sqlite(pool) => {
            sqlx::query("DELETE FROM api_oauth_refresh_tokens WHERE grant_id = ?").bind(grant_id).execute(pool).await?;
        }
    }
    Ok(())
}
