//! Folds server events into `rm_registry.servers`, one row per live server, and `rm_registry.versions`,
//! one row per release of every server ever registered (deleted ones included), for `/v0.1`.

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
        // 4: the name index covers a page's ids and revisions; 5: releases carry their rendering's stamp;
        // 6: the release order index covers a `/v0.1` page's statuses and stamps.
        6
    }

    fn filter(&self) -> &EventFilter {
        &self.filter
    }

    async fn create(&self, tx: &mut PgConnection) -> Result<(), ProjectionError> {
        sqlx::raw_sql(
            "CREATE TABLE servers (
                 id            uuid        PRIMARY KEY,
                 name          text        NOT NULL,
                 version       text        NOT NULL,
                 title         text,
                 description   text        NOT NULL,
                 tags          text[]      NOT NULL,
                 repository    jsonb,
                 packages      jsonb       NOT NULL,
                 transport     text        NOT NULL,
                 url           text        NOT NULL,
                 auth_mode     text        NOT NULL,
                 access        jsonb       NOT NULL,
                 owner         text        NOT NULL,
                 status        text        NOT NULL,
                 status_reason text,
                 health        jsonb,
                 tools         jsonb,
                 revision      bigint      NOT NULL,
                 registered_at timestamptz NOT NULL,
                 updated_at    timestamptz NOT NULL
             );
             -- Unique names; a page reads its rows' ids and revisions from the index alone (the entries
             -- themselves come rendered from memory, see `RenderCache`).
             CREATE UNIQUE INDEX servers_name ON servers (name) INCLUDE (id, revision);
             CREATE INDEX servers_tags ON servers USING gin (tags);
             CREATE INDEX servers_owner ON servers (owner, id);
             CREATE INDEX servers_status ON servers (status, id);
             CREATE TABLE versions (
                 server_id         uuid        NOT NULL,
                 version           text        NOT NULL,
                 -- The $all position that published it: a server's releases in order, each newer by SemVer.
                 seq               bigint      NOT NULL,
                 name              text        NOT NULL,
                 title             text,
                 description       text        NOT NULL,
                 transport         text        NOT NULL,
                 url               text        NOT NULL,
                 repository        jsonb,
                 packages          jsonb       NOT NULL,
                 status            text        NOT NULL,
                 status_message    text,
                 status_changed_at timestamptz,
                 published_at      timestamptz NOT NULL,
                 updated_at        timestamptz NOT NULL,
                 is_latest         boolean     NOT NULL,
                 -- The $all position of the event that last changed the row: its rendering's stamp.
                 stamp             bigint      NOT NULL,
                 PRIMARY KEY (server_id, version)
             );
             -- A `/v0.1` page reads its rows' keys and stamps from the index alone, live ones by the status
             -- (an index-only scan: the documents come rendered from memory, see `RenderCache`).
             CREATE UNIQUE INDEX versions_order ON versions (name, seq) INCLUDE (status, stamp);
             CREATE INDEX versions_updated ON versions (updated_at);",
        )
        .execute(&mut *tx)
        .await?;
        Ok(())
    }

    async fn apply(&self, tx: &mut PgConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
        // Registrations in a row are inserted by one statement; every other event changes its row alone.
        let mut registrations = Registrations::default();
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
            if let ServerEvent::Registered(registered) = &event {
                registrations.push(registered, recorded).map_err(|e| fail(e.to_string()))?;
                continue;
            }
            registrations.flush(tx).await?;
            apply_one(tx, id, &event, recorded).await.map_err(|source| ProjectionError::Write {
                projection: NAME.to_owned(),
                position: recorded.position,
                source,
            })?;
        }
        registrations.flush(tx).await
    }
}

/// Registrations waiting to be inserted, as columns.
#[derive(Default)]
struct Registrations {
    /// Where the first of them sits, to name it when the insert fails.
    first: Option<eventstore::Position>,
    id: Vec<Uuid>,
    name: Vec<String>,
    version: Vec<String>,
    repository: Vec<Option<String>>,
    packages: Vec<String>,
    seq: Vec<i64>,
    exported_name: Vec<String>,
    title: Vec<Option<String>>,
    description: Vec<String>,
    /// Each server's tags as a JSON array: arrays of arrays must be rectangular in PostgreSQL.
    tags: Vec<String>,
    transport: Vec<&'static str>,
    url: Vec<String>,
    auth_mode: Vec<&'static str>,
    access: Vec<String>,
    owner: Vec<String>,
    revision: Vec<i64>,
    at: Vec<chrono::DateTime<chrono::Utc>>,
}

impl Registrations {
    fn push(&mut self, r: &ServerRegistered, recorded: &RecordedEvent) -> Result<(), serde_json::Error> {
        self.tags.push(serde_json::to_string(r.tags.as_slice())?);
        self.first = self.first.or(Some(recorded.position));
        self.access.push(serde_json::to_string(&r.access)?);
        self.id.push(r.server_id);
        self.name.push(r.name.as_str().to_owned());
        self.version.push(r.version.as_str().to_owned());
        self.repository.push(r.repository.as_ref().map(serde_json::to_string).transpose()?);
        self.packages.push(serde_json::to_string(&r.packages)?);
        self.seq.push(seq(recorded));
        self.exported_name.push(exported_name(&r.name));
        self.title.push(r.title.as_ref().map(|t| t.as_str().to_owned()));
        self.description.push(r.description.as_str().to_owned());
        self.transport.push(transport_name(r.transport));
        self.url.push(r.endpoint.as_str().to_owned());
        self.auth_mode.push(auth_mode_name(&r.upstream_auth));
        self.owner.push(r.owner.clone());
        self.revision.push(recorded.revision as i64);
        self.at.push(recorded.metadata.occurred_at);
        Ok(())
    }

    /// Inserts the registrations gathered so far, each of which must add its row, and starts over.
    async fn flush(&mut self, tx: &mut PgConnection) -> Result<(), ProjectionError> {
        let Some(first) = self.first else { return Ok(()) };
        self.insert(tx).await.map_err(|source| ProjectionError::Write {
            projection: NAME.to_owned(),
            position: first,
            source,
        })
    }

    async fn insert(&mut self, tx: &mut PgConnection) -> Result<(), sqlx::Error> {
        let done = sqlx::query(
            "WITH r AS (
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                                      $7::text[], $8::text[], $9::text[], $10::text[], $11::bigint[],
                                      $12::timestamptz[], $13::text[], $14::text[], $15::text[], $16::bigint[],
                                      $17::text[])
                        AS r(id, name, title, description, tags, transport, url, auth_mode, access, owner, revision,
                             at, version, repository, packages, seq, exported_name)
             ), superseded AS (
                 -- A deleted server's name taken again: its releases are no longer the name's latest.
                 UPDATE versions v SET is_latest = false, updated_at = r.at, stamp = r.seq
                   FROM r WHERE v.name = r.exported_name AND v.status = 'deleted' AND v.is_latest
             ), published AS (
                 INSERT INTO versions (server_id, version, seq, name, title, description, transport, url,
                                       repository, packages, status, published_at, updated_at, is_latest, stamp)
                 SELECT r.id, r.version, r.seq, r.exported_name, r.title, r.description, r.transport, r.url,
                        r.repository::jsonb, r.packages::jsonb, 'active', r.at, r.at, true, r.seq
                   FROM r
             )
             INSERT INTO servers (id, name, version, title, description, tags, repository, packages, transport, url,
                                  auth_mode, access, owner, status, revision, registered_at, updated_at)
             SELECT r.id, r.name, r.version, r.title, r.description,
                    ARRAY(SELECT jsonb_array_elements_text(r.tags::jsonb)), r.repository::jsonb, r.packages::jsonb,
                    r.transport, r.url, r.auth_mode, r.access::jsonb, r.owner, 'active', r.revision, r.at, r.at
               FROM r",
        )
        .bind(&self.id)
        .bind(&self.name)
        .bind(&self.title)
        .bind(&self.description)
        .bind(&self.tags)
        .bind(&self.transport)
        .bind(&self.url)
        .bind(&self.auth_mode)
        .bind(&self.access)
        .bind(&self.owner)
        .bind(&self.revision)
        .bind(&self.at)
        .bind(&self.version)
        .bind(&self.repository)
        .bind(&self.packages)
        .bind(&self.seq)
        .bind(&self.exported_name)
        .execute(&mut *tx)
        .await?;
        let expected = self.id.len() as u64;
        *self = Self::default();
        match done.rows_affected() {
            n if n == expected => Ok(()),
            n => Err(crate::sql::contract_broken(format!("expected to add {expected} server rows, added {n}"))),
        }
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
        // Inserted in batches by `Registrations`.
        ServerEvent::Registered(_) => Ok(()),
        ServerEvent::Updated(changes) => {
            sqlx::query(
                "UPDATE servers SET title = COALESCE($2, title), description = COALESCE($3, description),
                        tags = COALESCE($4, tags), transport = COALESCE($5, transport), url = COALESCE($6, url),
                        version = COALESCE($9, version), repository = COALESCE($10, repository),
                        packages = COALESCE($11, packages), revision = $7, updated_at = $8
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
            .bind(changes.version.as_ref().map(|v| v.as_str()))
            .bind(changes.repository.as_ref().map(sqlx::types::Json))
            .bind(changes.packages.as_ref().map(sqlx::types::Json))
            .execute(&mut *tx)
            .await
            .and_then(one_row)?;
            release(tx, id, changes.version.is_some(), seq(recorded), at).await
        }
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
        ServerEvent::ToolRulesChanged(tools) => sqlx::query(
            "UPDATE servers SET access = jsonb_set(access, '{tools}', $2), revision = $3, updated_at = $4
                  WHERE id = $1",
        )
        .bind(id)
        .bind(sqlx::types::Json(tools))
        .bind(revision)
        .bind(at)
        .execute(&mut *tx)
        .await
        .and_then(one_row),
        // What a check found is not a change of the entry: `updated_at` stays.
        ServerEvent::HealthChanged(health) => {
            sqlx::query("UPDATE servers SET health = $2, revision = $3 WHERE id = $1")
                .bind(id)
                .bind(sqlx::types::Json(health))
                .bind(revision)
                .execute(&mut *tx)
                .await
                .and_then(one_row)
        }
        ServerEvent::ToolsDiscovered(tools) => {
            sqlx::query("UPDATE servers SET tools = $2, revision = $3 WHERE id = $1")
                .bind(id)
                .bind(sqlx::types::Json(tools))
                .bind(revision)
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
        ServerEvent::Suspended { reason } => {
            set_status(tx, id, "suspended", Some(reason), revision, at).await?;
            set_version_status(tx, id, "suspended", Some(reason), at, seq(recorded)).await
        }
        ServerEvent::Resumed => {
            set_status(tx, id, "active", None, revision, at).await?;
            set_version_status(tx, id, "active", None, at, seq(recorded)).await
        }
        ServerEvent::Deregistered { reason, .. } => {
            sqlx::query("DELETE FROM servers WHERE id = $1").bind(id).execute(&mut *tx).await.and_then(one_row)?;
            set_version_status(tx, id, "deleted", Some(reason), at, seq(recorded)).await
        }
    }
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

/// Carries an update into `versions`: a new version adds its row (with the server's status) and takes
/// `is_latest` from the one before; any other change rewrites the latest row.
async fn release(
    tx: &mut PgConnection,
    id: Uuid,
    new_version: bool,
    seq: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<(), sqlx::Error> {
    if new_version {
        sqlx::query(
            "INSERT INTO versions (server_id, version, seq, name, title, description, transport, url, repository,
                                   packages, status, status_message, status_changed_at, published_at, updated_at,
                                   is_latest, stamp)
             SELECT s.id, s.version, $2, v.name, s.title, s.description, s.transport, s.url, s.repository,
                    s.packages, v.status, v.status_message, v.status_changed_at, $3, $3, true, $2
               FROM servers s JOIN versions v ON v.server_id = s.id AND v.is_latest
              WHERE s.id = $1",
        )
        .bind(id)
        .bind(seq)
        .bind(at)
        .execute(&mut *tx)
        .await
        .and_then(one_row)?;
        sqlx::query(
            "UPDATE versions SET is_latest = false, updated_at = $3, stamp = $2
              WHERE server_id = $1 AND is_latest AND seq <> $2",
        )
        .bind(id)
        .bind(seq)
        .bind(at)
        .execute(&mut *tx)
        .await
        .and_then(one_row)
    } else {
        sqlx::query(
            "UPDATE versions v SET title = s.title, description = s.description, transport = s.transport,
                    url = s.url, repository = s.repository, packages = s.packages, updated_at = $2, stamp = $3
               FROM servers s
              WHERE v.server_id = s.id AND v.is_latest AND s.id = $1",
        )
        .bind(id)
        .bind(at)
        .bind(seq)
        .execute(&mut *tx)
        .await
        .and_then(one_row)
    }
}

/// A server's status, on every one of its versions.
async fn set_version_status(
    tx: &mut PgConnection,
    id: Uuid,
    status: &str,
    message: Option<&String>,
    at: chrono::DateTime<chrono::Utc>,
    stamp: i64,
) -> Result<(), sqlx::Error> {
    let done = sqlx::query(
        "UPDATE versions SET status = $2, status_message = $3, status_changed_at = $4, updated_at = $4, stamp = $5
          WHERE server_id = $1",
    )
    .bind(id)
    .bind(status)
    .bind(message)
    .bind(at)
    .bind(stamp)
    .execute(&mut *tx)
    .await?;
    match done.rows_affected() {
        0 => Err(crate::sql::contract_broken("a server without versions changed status".to_owned())),
        _ => Ok(()),
    }
}

/// The name a server has in `versions` and `/v0.1`: its own, or for a one-segment name from a log written
/// before namespaces were required, `local/<name>` (the official pattern needs a namespace; a new name
/// cannot be `local/…`, whose namespace is not reverse-DNS, so the two never meet).
pub(super) fn exported_name(name: &domain::server::ServerName) -> String {
    if name.has_namespace() { name.as_str().to_owned() } else { format!("local/{name}") }
}

/// Where a release sits among every server's releases: its event's `$all` position.
pub(super) fn seq(recorded: &RecordedEvent) -> i64 {
    i64::try_from(recorded.position.global_position).unwrap_or(i64::MAX)
}

/// An event of a server must change exactly its row; anything else means the model and the stream
/// disagree, and the projection halts rather than drift.
fn one_row(done: sqlx::postgres::PgQueryResult) -> Result<(), sqlx::Error> {
    match done.rows_affected() {
        1 => Ok(()),
        n => Err(crate::sql::contract_broken(format!("expected to change one server row, changed {n}"))),
    }
}

pub(super) fn transport_name(transport: domain::server::Transport) -> &'static str {
    match transport {
        domain::server::Transport::StreamableHttp => "streamable_http",
        domain::server::Transport::Sse => "sse",
    }
}

pub(super) fn auth_mode_name(auth: &domain::server::UpstreamAuth) -> &'static str {
    match auth.kind() {
        domain::server::UpstreamAuthKind::None => "none",
        domain::server::UpstreamAuthKind::Bearer => "bearer",
        domain::server::UpstreamAuthKind::Header => "header",
        domain::server::UpstreamAuthKind::OauthClientCredentials => "oauth_client_credentials",
        domain::server::UpstreamAuthKind::OauthPerPerson => "oauth_per_person",
    }
}
