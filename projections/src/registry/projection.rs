//! Folds server events into `rm_registry.servers`: one row per live server.

use async_trait::async_trait;
use domain::server::{ServerEvent, ServerRegistered};
use eventstore::RecordedEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{EventFilter, ProjectionError, TableProjection};

/// The registry projection.
pub struct RegistryProjection {
    filter: EventFilter,
}

impl Default for RegistryProjection {
    fn default() -> Self {
        Self { filter: EventFilter::new([domain::server::CATEGORY], ServerEvent::TYPES) }
    }
}

/// The name of the projection, its checkpoint and (as `rm_registry`) its schema.
pub(crate) const NAME: &str = "registry";

#[async_trait]
impl TableProjection for RegistryProjection {
    fn name(&self) -> &str {
        NAME
    }

    fn version(&self) -> u32 {
        1
    }

    fn filter(&self) -> &EventFilter {
        &self.filter
    }

    async fn create(&self, tx: &mut PgConnection) -> Result<(), ProjectionError> {
        sqlx::raw_sql(
            "CREATE TABLE servers (
                 id            uuid        PRIMARY KEY,
                 name          text        NOT NULL UNIQUE,
                 title         text,
                 description   text        NOT NULL,
                 tags          text[]      NOT NULL,
                 transport     text        NOT NULL,
                 url           text        NOT NULL,
                 auth_mode     text        NOT NULL,
                 access        jsonb       NOT NULL,
                 owner         text        NOT NULL,
                 status        text        NOT NULL,
                 status_reason text,
                 revision      bigint      NOT NULL,
                 registered_at timestamptz NOT NULL,
                 updated_at    timestamptz NOT NULL
             );
             CREATE INDEX servers_tags ON servers USING gin (tags);
             CREATE INDEX servers_owner ON servers (owner, id);
             CREATE INDEX servers_status ON servers (status, id);",
        )
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    async fn apply(&self, tx: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        for recorded in events {
            let fail = |reason: String| ProjectionError::Apply {
                projection: NAME.to_owned(),
                position: recorded.position,
                reason,
            };
            let id: Uuid = recorded.stream.id().parse().map_err(|_| fail("stream id is not a server id".into()))?;
            let event = ServerEvent::from_json(&recorded.event_type, &recorded.data)
                .ok_or_else(|| fail(format!("unknown type {}", recorded.event_type)))?
                .map_err(|e| fail(e.to_string()))?;
            apply_one(tx, id, &event, recorded).await.map_err(|e| fail(e.to_string()))?;
        }
        Ok(())
    }
}

async fn apply_one(
    tx: &mut PgConnection,
    id: Uuid,
    event: &ServerEvent,
    recorded: &RecordedEvent,
) -> Result<(), sqlx::Error> {
    let (revision, at) = (recorded.revision as i64, recorded.metadata.occurred_at);
    match event {
        ServerEvent::Registered(registered) => insert(tx, registered, revision, at).await,
        ServerEvent::Updated(changes) => sqlx::query(
            "UPDATE servers SET title = COALESCE($2, title), description = COALESCE($3, description),
                        tags = COALESCE($4, tags), transport = COALESCE($5, transport), url = COALESCE($6, url),
                        revision = $7, updated_at = $8
                  WHERE id = $1",
        )
        .bind(id)
        .bind(changes.title.as_ref().map(|t| t.as_str()))
        .bind(changes.description.as_ref().map(|d| d.as_str()))
        .bind(changes.tags.as_ref().map(|t| t.as_slice().to_vec()))
        .bind(changes.transport.map(transport_name))
        .bind(changes.endpoint.as_ref().map(|e| e.as_str()))
        .bind(revision)
        .bind(at)
        .execute(&mut *tx)
        .await
        .and_then(one_row),
        ServerEvent::AccessChanged(access) => {
            sqlx::query("UPDATE servers SET access = $2, revision = $3, updated_at = $4 WHERE id = $1")
                .bind(id)
                .bind(sqlx::types::Json(access))
                .bind(revision)
                .bind(at)
                .execute(&mut *tx)
                .await
                .and_then(one_row)
        }
        ServerEvent::CredentialRotated(auth) => {
            sqlx::query("UPDATE servers SET auth_mode = $2, revision = $3, updated_at = $4 WHERE id = $1")
                .bind(id)
                .bind(auth_mode_name(auth))
                .bind(revision)
                .bind(at)
                .execute(&mut *tx)
                .await
                .and_then(one_row)
        }
        ServerEvent::Suspended { reason } => set_status(tx, id, "suspended", Some(reason), revision, at).await,
        ServerEvent::Resumed => set_status(tx, id, "active", None, revision, at).await,
        ServerEvent::Deregistered { .. } => {
            sqlx::query("DELETE FROM servers WHERE id = $1").bind(id).execute(&mut *tx).await.and_then(one_row)
        }
    }
}

async fn insert(
    tx: &mut PgConnection,
    r: &ServerRegistered,
    revision: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO servers (id, name, title, description, tags, transport, url, auth_mode, access, owner, status,
                              revision, registered_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'active', $11, $12, $12)",
    )
    .bind(r.server_id)
    .bind(r.name.as_str())
    .bind(r.title.as_ref().map(|t| t.as_str()))
    .bind(r.description.as_str())
    .bind(r.tags.as_slice().to_vec())
    .bind(transport_name(r.transport))
    .bind(r.endpoint.as_str())
    .bind(auth_mode_name(&r.upstream_auth))
    .bind(sqlx::types::Json(&r.access))
    .bind(&r.owner)
    .bind(revision)
    .bind(at)
    .execute(&mut *tx)
    .await
    .and_then(one_row)
}

async fn set_status(
    tx: &mut PgConnection,
    id: Uuid,
    status: &str,
    reason: Option<&String>,
    revision: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE servers SET status = $2, status_reason = $3, revision = $4, updated_at = $5 WHERE id = $1")
        .bind(id)
        .bind(status)
        .bind(reason)
        .bind(revision)
        .bind(at)
        .execute(&mut *tx)
        .await
        .and_then(one_row)
}

/// An event of a server must change exactly its row; anything else means the model and the stream
/// disagree, and the projection halts rather than drift.
fn one_row(done: sqlx::postgres::PgQueryResult) -> Result<(), sqlx::Error> {
    match done.rows_affected() {
        1 => Ok(()),
        n => Err(sqlx::Error::Protocol(format!("expected to change one server row, changed {n}"))),
    }
}

fn transport_name(transport: domain::server::Transport) -> &'static str {
    match transport {
        domain::server::Transport::StreamableHttp => "streamable_http",
        domain::server::Transport::Sse => "sse",
    }
}

fn auth_mode_name(auth: &domain::server::UpstreamAuth) -> &'static str {
    match auth.kind() {
        domain::server::UpstreamAuthKind::None => "none",
        domain::server::UpstreamAuthKind::Bearer => "bearer",
        domain::server::UpstreamAuthKind::Header => "header",
        domain::server::UpstreamAuthKind::OauthClientCredentials => "oauth_client_credentials",
    }
}
