//! The registry read model on SQLite (the embedded default): the same catalogue as `rm_registry.servers`,
//! in `registry_servers`, and every release as `rm_registry.versions`, in `registry_versions`, with tags,
//! the access policy, repository and packages as JSON text.

use async_trait::async_trait;
use domain::server::ServerEvent;
use eventstore::{Position, RecordedEvent};
use sqlx::sqlite::{SqliteQueryResult, SqliteRow};
use sqlx::{Row, SqliteConnection, SqlitePool};
use uuid::Uuid;

use super::projection::{NAME, auth_mode_name, exported_name, seq, transport_name};
use super::query::{CatalogueEntry, CatalogueFilter, CataloguePage, RenderedPage, render, stamp};
use super::render_cache::{RenderCache, assemble};
use super::versions::{
    RenderedVersionPage, VERSION_COLUMNS, VersionBind, VersionDocuments, VersionEntry, VersionFilter, VersionPage,
    VersionSelector,
};
use crate::{EventFilter, ProjectionError, SqliteProjection, load_sqlite_checkpoint};

/// The registry projection on SQLite.
pub struct SqliteRegistryProjection {
    filter: EventFilter,
}

impl Default for SqliteRegistryProjection {
    fn default() -> Self {
        Self { filter: EventFilter::new([domain::server::CATEGORY], ServerEvent::TYPES) }
    }
}

#[async_trait]
impl SqliteProjection for SqliteRegistryProjection {
    fn name(&self) -> &str {
        NAME
    }

    fn version(&self) -> u32 {
        // 4: releases carry their rendering's stamp.
        4
    }

    fn filter(&self) -> &EventFilter {
        &self.filter
    }

    fn tables(&self) -> &[&'static str] {
        &["registry_servers", "registry_versions"]
    }

    async fn create(&self, conn: &mut SqliteConnection) -> Result<(), ProjectionError> {
        sqlx::raw_sql(
            "CREATE TABLE registry_servers (
                 id            BLOB    PRIMARY KEY,
                 name          TEXT    NOT NULL UNIQUE,
                 version       TEXT    NOT NULL,
                 title         TEXT,
                 description   TEXT    NOT NULL,
                 tags          TEXT    NOT NULL,
                 repository    TEXT,
                 packages      TEXT    NOT NULL,
                 transport     TEXT    NOT NULL,
                 url           TEXT    NOT NULL,
                 auth_mode     TEXT    NOT NULL,
                 access        TEXT    NOT NULL,
                 owner         TEXT    NOT NULL,
                 status        TEXT    NOT NULL,
                 status_reason TEXT,
                 health        TEXT,
                 tools         TEXT,
                 revision      INTEGER NOT NULL,
                 registered_at TEXT    NOT NULL,
                 updated_at    TEXT    NOT NULL
             ) WITHOUT ROWID;
             CREATE INDEX registry_servers_owner ON registry_servers (owner, name);
             CREATE INDEX registry_servers_status ON registry_servers (status, name);
             CREATE TABLE registry_versions (
                 server_id         BLOB    NOT NULL,
                 version           TEXT    NOT NULL,
                 seq               INTEGER NOT NULL,
                 name              TEXT    NOT NULL,
                 title             TEXT,
                 description       TEXT    NOT NULL,
                 transport         TEXT    NOT NULL,
                 url               TEXT    NOT NULL,
                 repository        TEXT,
                 packages          TEXT    NOT NULL,
                 status            TEXT    NOT NULL,
                 status_message    TEXT,
                 status_changed_at TEXT,
                 published_at      TEXT    NOT NULL,
                 updated_at        TEXT    NOT NULL,
                 is_latest         INTEGER NOT NULL,
                 stamp             INTEGER NOT NULL,
                 PRIMARY KEY (server_id, version)
             ) WITHOUT ROWID;
             CREATE UNIQUE INDEX registry_versions_order ON registry_versions (name, seq);
             CREATE INDEX registry_versions_updated ON registry_versions (updated_at);",
        )
        .execute(&mut *conn)
        .await?;
        Ok(())
    }

    async fn apply(&self, conn: &mut SqliteConnection, events: &[RecordedEvent]) -> Result<(), ProjectionError> {
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
            apply_one(conn, id, &event, recorded).await.map_err(|source| ProjectionError::Write {
                projection: NAME.to_owned(),
                position: recorded.position,
                source,
            })?;
        }
        Ok(())
    }
}

async fn apply_one(
    conn: &mut SqliteConnection,
    id: Uuid,
    event: &ServerEvent,
    recorded: &RecordedEvent,
) -> Result<(), sqlx::Error> {
    let (revision, at) = (recorded.revision as i64, crate::sql::to_micros(recorded.metadata.occurred_at));
    let done = match event {
        ServerEvent::Registered(r) => {
            let done = sqlx::query(
                "INSERT INTO registry_servers (id, name, version, title, description, tags, repository, packages,
                                                   transport, url, auth_mode, access, owner, status, revision,
                                                   registered_at, updated_at)
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?)",
            )
            .bind(id)
            .bind(r.name.as_str())
            .bind(r.version.as_str())
            .bind(r.title.as_ref().map(|t| t.as_str()))
            .bind(r.description.as_str())
            .bind(json_text(r.tags.as_slice())?)
            .bind(r.repository.as_ref().map(json_text).transpose()?)
            .bind(json_text(&r.packages)?)
            .bind(transport_name(r.transport))
            .bind(r.endpoint.as_str())
            .bind(auth_mode_name(&r.upstream_auth))
            .bind(json_text(&r.access)?)
            .bind(&r.owner)
            .bind(revision)
            .bind(at)
            .bind(at)
            .execute(&mut *conn)
            .await?;
            one_row(done)?;
            let name = exported_name(&r.name);
            // A deleted server's name taken again: its releases are no longer the name's latest.
            sqlx::query(
                "UPDATE registry_versions SET is_latest = 0, updated_at = ?, stamp = ?
                  WHERE name = ? AND status = 'deleted' AND is_latest",
            )
            .bind(at)
            .bind(seq(recorded))
            .bind(&name)
            .execute(&mut *conn)
            .await?;
            sqlx::query(
                "INSERT INTO registry_versions (server_id, version, seq, name, title, description, transport, url,
                                                    repository, packages, status, published_at, updated_at,
                                                    is_latest, stamp)
                     SELECT id, version, ?, ?, title, description, transport, url, repository, packages,
                            'active', registered_at, updated_at, 1, ?
                       FROM registry_servers WHERE id = ?",
            )
            .bind(seq(recorded))
            .bind(name)
            .bind(seq(recorded))
            .bind(id)
            .execute(&mut *conn)
            .await?
        }
        ServerEvent::Updated(changes) => {
            let tags = changes.tags.as_ref().map(|t| json_text(t.as_slice())).transpose()?;
            let done = sqlx::query(
                "UPDATE registry_servers
                    SET title = COALESCE(?, title), description = COALESCE(?, description), tags = COALESCE(?, tags),
                        transport = COALESCE(?, transport), url = COALESCE(?, url), version = COALESCE(?, version),
                        repository = COALESCE(?, repository), packages = COALESCE(?, packages), revision = ?,
                        updated_at = ?
                  WHERE id = ?",
            )
            .bind(changes.title.as_ref().map(|t| t.as_str()))
            .bind(changes.description.as_ref().map(|d| d.as_str()))
            .bind(tags)
            .bind(changes.transport.map(transport_name))
            .bind(changes.endpoint.as_ref().map(|e| e.as_str()))
            .bind(changes.version.as_ref().map(|v| v.as_str()))
            .bind(changes.repository.as_ref().map(json_text).transpose()?)
            .bind(changes.packages.as_ref().map(json_text).transpose()?)
            .bind(revision)
            .bind(at)
            .bind(id)
            .execute(&mut *conn)
            .await?;
            one_row(done)?;
            release(conn, id, changes.version.is_some(), seq(recorded), at).await?
        }
        ServerEvent::AccessChanged(access) => {
            sqlx::query("UPDATE registry_servers SET access = ?, revision = ?, updated_at = ? WHERE id = ?")
                .bind(json_text(access)?)
                .bind(revision)
                .bind(at)
                .bind(id)
                .execute(&mut *conn)
                .await?
        }
        ServerEvent::ToolRulesChanged(tools) => sqlx::query(
            "UPDATE registry_servers SET access = json_set(access, '$.tools', json(?)), revision = ?, updated_at = ?
                  WHERE id = ?",
        )
        .bind(json_text(tools)?)
        .bind(revision)
        .bind(at)
        .bind(id)
        .execute(&mut *conn)
        .await?,
        // What a check found is not a change of the entry: `updated_at` stays.
        ServerEvent::HealthChanged(health) => {
            sqlx::query("UPDATE registry_servers SET health = ?, revision = ? WHERE id = ?")
                .bind(json_text(health)?)
                .bind(revision)
                .bind(id)
                .execute(&mut *conn)
                .await?
        }
        ServerEvent::ToolsDiscovered(tools) => {
            sqlx::query("UPDATE registry_servers SET tools = ?, revision = ? WHERE id = ?")
                .bind(json_text(tools)?)
                .bind(revision)
                .bind(id)
                .execute(&mut *conn)
                .await?
        }
        ServerEvent::CredentialRotated(auth) => {
            sqlx::query("UPDATE registry_servers SET auth_mode = ?, revision = ?, updated_at = ? WHERE id = ?")
                .bind(auth_mode_name(auth))
                .bind(revision)
                .bind(at)
                .bind(id)
                .execute(&mut *conn)
                .await?
        }
        ServerEvent::Suspended { reason } => {
            one_row(set_status(conn, id, "suspended", Some(reason), revision, at).await?)?;
            return set_version_status(conn, id, "suspended", Some(reason), at, seq(recorded)).await;
        }
        ServerEvent::Resumed => {
            one_row(set_status(conn, id, "active", None, revision, at).await?)?;
            return set_version_status(conn, id, "active", None, at, seq(recorded)).await;
        }
        ServerEvent::Deregistered { reason, .. } => {
            let done = sqlx::query("DELETE FROM registry_servers WHERE id = ?").bind(id).execute(&mut *conn).await?;
            one_row(done)?;
            return set_version_status(conn, id, "deleted", Some(reason), at, seq(recorded)).await;
        }
    };
    one_row(done)
}

/// Carries an update into `registry_versions`, as [`super::projection`] does on PostgreSQL: a new version
/// adds its row and takes `is_latest`; any other change rewrites the latest row.
async fn release(
    conn: &mut SqliteConnection,
    id: Uuid,
    new_version: bool,
    seq: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<SqliteQueryResult, sqlx::Error> {
    if !new_version {
        return sqlx::query(
            "UPDATE registry_versions AS v
                SET title = s.title, description = s.description, transport = s.transport, url = s.url,
                    repository = s.repository, packages = s.packages, updated_at = ?, stamp = ?
               FROM registry_servers AS s
              WHERE v.server_id = s.id AND v.is_latest AND s.id = ?",
        )
        .bind(at)
        .bind(seq)
        .bind(id)
        .execute(&mut *conn)
        .await;
    }
    let added = sqlx::query(
        "INSERT INTO registry_versions (server_id, version, seq, name, title, description, transport, url,
                                        repository, packages, status, status_message, status_changed_at,
                                        published_at, updated_at, is_latest, stamp)
         SELECT s.id, s.version, ?, v.name, s.title, s.description, s.transport, s.url, s.repository, s.packages,
                v.status, v.status_message, v.status_changed_at, ?, ?, 1, ?
           FROM registry_servers AS s JOIN registry_versions AS v ON v.server_id = s.id AND v.is_latest
          WHERE s.id = ?",
    )
    .bind(seq)
    .bind(at)
    .bind(at)
    .bind(seq)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    one_row(added)?;
    sqlx::query(
        "UPDATE registry_versions SET is_latest = 0, updated_at = ?, stamp = ?
          WHERE server_id = ? AND is_latest AND seq <> ?",
    )
    .bind(at)
    .bind(seq)
    .bind(id)
    .bind(seq)
    .execute(&mut *conn)
    .await
}

/// A server's status, on every one of its versions; reported as one change (the versions are one entry).
async fn set_version_status(
    conn: &mut SqliteConnection,
    id: Uuid,
    status: &str,
    message: Option<&String>,
    at: chrono::DateTime<chrono::Utc>,
    stamp: i64,
) -> Result<(), sqlx::Error> {
    let done = sqlx::query(
        "UPDATE registry_versions SET status = ?, status_message = ?, status_changed_at = ?, updated_at = ?, stamp = ?
          WHERE server_id = ?",
    )
    .bind(status)
    .bind(message)
    .bind(at)
    .bind(at)
    .bind(stamp)
    .bind(id)
    .execute(&mut *conn)
    .await?;
    match done.rows_affected() {
        0 => Err(crate::sql::contract_broken("a server without versions changed status".to_owned())),
        _ => Ok(()),
    }
}

/// JSON text of a value, for the columns that hold JSON.
fn json_text<T: serde::Serialize + ?Sized>(value: &T) -> Result<String, sqlx::Error> {
    serde_json::to_string(value).map_err(|e| sqlx::Error::Encode(Box::new(e)))
}

async fn set_status(
    conn: &mut SqliteConnection,
    id: Uuid,
    status: &str,
    reason: Option<&String>,
    revision: i64,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<SqliteQueryResult, sqlx::Error> {
    sqlx::query("UPDATE registry_servers SET status = ?, status_reason = ?, revision = ?, updated_at = ? WHERE id = ?")
        .bind(status)
        .bind(reason)
        .bind(revision)
        .bind(at)
        .bind(id)
        .execute(&mut *conn)
        .await
}

/// An event of a server changes exactly its row; anything else halts the projection rather than drift.
fn one_row(done: SqliteQueryResult) -> Result<(), sqlx::Error> {
    match done.rows_affected() {
        1 => Ok(()),
        n => Err(crate::sql::contract_broken(format!("expected to change one server row, changed {n}"))),
    }
}

/// The catalogue's queries on SQLite.
#[derive(Debug, Clone)]
pub struct SqliteRegistry {
    pool: SqlitePool,
    rendered: RenderCache<Uuid>,
}

const SELECT: &str = "SELECT id, name, version, title, description, tags, repository, packages, transport, url, \
                      auth_mode, access, owner, status, status_reason, health, tools, revision, registered_at, \
                      updated_at FROM registry_servers";

/// A JSON text column, decoded; `None` when NULL.
fn json_column(row: &SqliteRow, name: &str) -> Result<Option<serde_json::Value>, sqlx::Error> {
    let text: Option<String> = row.try_get(name)?;
    text.map(|text| {
        serde_json::from_str(&text).map_err(|e| sqlx::Error::ColumnDecode { index: name.to_owned(), source: e.into() })
    })
    .transpose()
}

fn entry(row: &SqliteRow) -> Result<CatalogueEntry, sqlx::Error> {
    let json_or_null = |name: &str| json_column(row, name).map(Option::unwrap_or_default);
    let tags = match json_or_null("tags")? {
        serde_json::Value::Array(tags) => tags.into_iter().filter_map(|t| t.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    };
    Ok(CatalogueEntry {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        tags,
        repository: json_column(row, "repository")?.filter(|v| !v.is_null()).map(sqlx::types::Json),
        packages: sqlx::types::Json(json_or_null("packages")?),
        transport: row.try_get("transport")?,
        url: row.try_get("url")?,
        auth_mode: row.try_get("auth_mode")?,
        access: sqlx::types::Json(json_or_null("access")?),
        owner: row.try_get("owner")?,
        status: row.try_get("status")?,
        status_reason: row.try_get("status_reason")?,
        health: json_column(row, "health")?.map(sqlx::types::Json),
        tools: json_column(row, "tools")?.map(sqlx::types::Json),
        revision: row.try_get("revision")?,
        registered_at: row.try_get("registered_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl SqliteRegistry {
    /// Queries against the read model in `pool`'s file.
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool, rendered: RenderCache::default() }
    }

    /// The server with `id`.
    pub async fn get(&self, id: Uuid) -> Result<Option<CatalogueEntry>, ProjectionError> {
        let sql = format!("{SELECT} WHERE id = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(entry).transpose()?)
    }

    /// The server named `name`.
    pub async fn get_by_name(&self, name: &str) -> Result<Option<CatalogueEntry>, ProjectionError> {
        let sql = format!("{SELECT} WHERE name = ?");
        let row = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(&self.pool).await?;
        Ok(row.as_ref().map(entry).transpose()?)
    }

    /// A page of servers matching `filter`, in name order.
    pub async fn list(&self, filter: &CatalogueFilter) -> Result<CataloguePage, ProjectionError> {
        let limit = filter.limit.clamp(1, 500);
        let rows = self.select(SELECT, filter, limit).fetch_all(&self.pool).await?;
        let entries = rows.iter().map(entry).collect::<Result<Vec<_>, _>>()?;
        let (entries, next) = crate::sql::page(entries, limit, |e| e.name.clone());
        Ok(CataloguePage { entries, next })
    }

    /// [`SqliteRegistry::list`], each entry rendered as JSON: those unchanged since last rendered come
    /// from memory, the others are read in full.
    pub async fn page(&self, filter: &CatalogueFilter) -> Result<RenderedPage, ProjectionError> {
        let limit = filter.limit.clamp(1, 500);
        let rows =
            self.select("SELECT id, name, revision FROM registry_servers", filter, limit).fetch_all(&self.pool).await?;
        let rows = rows
            .iter()
            .map(|row| Ok((row.try_get("id")?, row.try_get("name")?, row.try_get("revision")?)))
            .collect::<Result<Vec<(Uuid, String, i64)>, sqlx::Error>>()?;
        let (rows, next) = crate::sql::page(rows, limit, |(_, name, _)| name.clone());
        let keys: Vec<(Uuid, i64)> = rows.iter().map(|(id, _, revision)| (*id, *revision)).collect();
        let fetch = |ids: Vec<Uuid>| async move {
            let sql = format!("{SELECT} WHERE id IN ({})", vec!["?"; ids.len()].join(", "));
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for id in ids {
                query = query.bind(id);
            }
            let rows = query.fetch_all(&self.pool).await?;
            Ok(rows.iter().map(entry).collect::<Result<Vec<_>, _>>()?)
        };
        let entries = assemble(&self.rendered, &keys, fetch, stamp, render).await?;
        Ok(RenderedPage { entries, next })
    }

    /// The first `limit` + 1 rows of `select` matching `filter`, in name order.
    fn select<'q>(
        &self,
        select: &str,
        filter: &CatalogueFilter,
        limit: u32,
    ) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
        // SQLite's LIKE ignores ASCII case, as the catalogue's ILIKE does on Postgres.
        let (conditions, binds) = filter.conditions(
            |n| format!("?{n}"),
            "LIKE",
            " ESCAPE '\\'",
            |n| format!("EXISTS (SELECT 1 FROM json_each(tags) WHERE json_each.value = ?{n})"),
        );
        let sql = format!("{select} {conditions} ORDER BY name LIMIT {}", limit + 1);
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for bind in binds {
            query = query.bind(bind);
        }
        query
    }

    /// How far the read model has applied `$all`.
    pub async fn position(&self) -> Result<Option<Position>, ProjectionError> {
        load_sqlite_checkpoint(&self.pool, NAME).await
    }

    /// A page of releases matching `filter`, in `(name, seq)` order.
    pub async fn versions(&self, filter: &VersionFilter) -> Result<VersionPage, ProjectionError> {
        let limit = filter.limit.max(1);
        let rows = self.select_versions(VERSION_COLUMNS, filter, limit).fetch_all(&self.pool).await?;
        let entries = rows.iter().map(version_entry).collect::<Result<Vec<_>, _>>()?;
        let (entries, next) = crate::sql::page(entries, limit, |e| (e.name.clone(), e.seq));
        Ok(VersionPage { entries, next })
    }

    /// [`SqliteRegistry::versions`], each rendered by `render`: those unchanged since last rendered come
    /// from `cache`, the others are read in full.
    pub async fn versions_rendered(
        &self,
        filter: &VersionFilter,
        cache: &VersionDocuments,
        render: impl Fn(&VersionEntry) -> Result<Box<serde_json::value::RawValue>, serde_json::Error>,
    ) -> Result<RenderedVersionPage, ProjectionError> {
        let limit = filter.limit.max(1);
        let rows = self.select_versions("name, seq, stamp", filter, limit).fetch_all(&self.pool).await?;
        let rows = rows
            .iter()
            .map(|row| Ok((row.try_get("name")?, row.try_get("seq")?, row.try_get("stamp")?)))
            .collect::<Result<Vec<(String, i64, i64)>, sqlx::Error>>()?;
        let (rows, next) = crate::sql::page(rows, limit, |(name, seq, _)| (name.clone(), *seq));
        let keys: Vec<((String, i64), i64)> = rows.into_iter().map(|(name, seq, stamp)| ((name, seq), stamp)).collect();
        let fetch = |keys: Vec<(String, i64)>| async move {
            let pairs = vec!["(?, ?)"; keys.len()].join(", ");
            let sql = format!("SELECT {VERSION_COLUMNS} FROM registry_versions WHERE (name, seq) IN (VALUES {pairs})");
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (name, seq) in keys {
                query = query.bind(name).bind(seq);
            }
            let rows = query.fetch_all(&self.pool).await?;
            Ok(rows.iter().map(version_entry).collect::<Result<Vec<_>, _>>()?)
        };
        let stamp_of = |e: &VersionEntry| ((e.name.clone(), e.seq), e.stamp);
        let documents = assemble(cache, &keys, fetch, stamp_of, render).await?;
        Ok(RenderedVersionPage { documents, next })
    }

    /// `columns` of the first `limit` + 1 releases matching `filter`, in `(name, seq)` order.
    fn select_versions<'q>(
        &self,
        columns: &str,
        filter: &VersionFilter,
        limit: u32,
    ) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
        let (conditions, binds) = filter.conditions(|n| format!("?{n}"), "LIKE", " ESCAPE '\\'");
        let sql = format!(
            "SELECT {columns} FROM registry_versions {conditions} ORDER BY name, seq LIMIT {}",
            i64::from(limit) + 1
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for bind in binds {
            query = match bind {
                VersionBind::Text(text) => query.bind(text),
                VersionBind::Time(time) => query.bind(crate::sql::to_micros(time)),
                VersionBind::Integer(n) => query.bind(n),
            };
        }
        query
    }

    /// The releases named `name`, newest first.
    pub async fn versions_named(
        &self,
        name: &str,
        include_deleted: bool,
    ) -> Result<Vec<VersionEntry>, ProjectionError> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM registry_versions
              WHERE name = ? AND (? OR status <> 'deleted') ORDER BY seq DESC LIMIT 1000"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(name).bind(include_deleted).fetch_all(&self.pool).await?;
        Ok(rows.iter().map(version_entry).collect::<Result<Vec<_>, _>>()?)
    }

    /// One release named `name`: the newest match, a live server's before a deleted one's.
    pub async fn version_named(
        &self,
        name: &str,
        version: &VersionSelector,
        include_deleted: bool,
    ) -> Result<Option<VersionEntry>, ProjectionError> {
        let (latest, exact) = VersionSelector::binds(Some(version));
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM registry_versions
              WHERE name = ?1 AND (NOT ?2 OR is_latest) AND (?3 IS NULL OR version = ?3)
                AND (?4 OR status <> 'deleted')
              ORDER BY status = 'deleted', seq DESC LIMIT 1"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .bind(latest)
            .bind(exact)
            .bind(include_deleted)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.as_ref().map(version_entry).transpose()?)
    }
}

fn version_entry(row: &SqliteRow) -> Result<VersionEntry, sqlx::Error> {
    Ok(VersionEntry {
        server_id: row.try_get("server_id")?,
        name: row.try_get("name")?,
        version: row.try_get("version")?,
        seq: row.try_get("seq")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        transport: row.try_get("transport")?,
        url: row.try_get("url")?,
        repository: json_column(row, "repository")?.filter(|v| !v.is_null()).map(sqlx::types::Json),
        packages: sqlx::types::Json(json_column(row, "packages")?.unwrap_or_default()),
        status: row.try_get("status")?,
        status_message: row.try_get("status_message")?,
        status_changed_at: row.try_get("status_changed_at")?,
        published_at: row.try_get("published_at")?,
        updated_at: row.try_get("updated_at")?,
        is_latest: row.try_get("is_latest")?,
        stamp: row.try_get("stamp")?,
    })
}
