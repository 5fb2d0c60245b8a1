//! The registry read model on SQLite (the embedded default): the same catalogue as `rm_registry.servers`,
//! in `registry_servers`, with tags and the access policy as JSON text.

use async_trait::async_trait;
use domain::server::ServerEvent;
use eventstore::{Position, RecordedEvent};
use sqlx::sqlite::{SqliteQueryResult, SqliteRow};
use sqlx::{Row, SqliteConnection, SqlitePool};
use uuid::Uuid;

use super::projection::{NAME, auth_mode_name, transport_name};
use super::query::{CatalogueEntry, CatalogueFilter, CataloguePage};
use crate::sql::escape_like;
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
        1
    }

    fn filter(&self) -> &EventFilter {
        &self.filter
    }

    fn tables(&self) -> &[&'static str] {
        &["registry_servers"]
    }

    async fn create(&self, conn: &mut SqliteConnection) -> Result<(), ProjectionError> {
        sqlx::raw_sql(
            "CREATE TABLE registry_servers (
                 id            BLOB    PRIMARY KEY,
                 name          TEXT    NOT NULL UNIQUE,
                 title         TEXT,
                 description   TEXT    NOT NULL,
                 tags          TEXT    NOT NULL,
                 transport     TEXT    NOT NULL,
                 url           TEXT    NOT NULL,
                 auth_mode     TEXT    NOT NULL,
                 access        TEXT    NOT NULL,
                 owner         TEXT    NOT NULL,
                 status        TEXT    NOT NULL,
                 status_reason TEXT,
                 revision      INTEGER NOT NULL,
                 registered_at TEXT    NOT NULL,
                 updated_at    TEXT    NOT NULL
             ) WITHOUT ROWID;
             CREATE INDEX registry_servers_owner ON registry_servers (owner, name);
             CREATE INDEX registry_servers_status ON registry_servers (status, name);",
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
    let done =
        match event {
            ServerEvent::Registered(r) => sqlx::query(
                "INSERT INTO registry_servers (id, name, title, description, tags, transport, url, auth_mode, access,
                                               owner, status, revision, registered_at, updated_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'active', ?, ?, ?)",
            )
            .bind(id)
            .bind(r.name.as_str())
            .bind(r.title.as_ref().map(|t| t.as_str()))
            .bind(r.description.as_str())
            .bind(json_text(r.tags.as_slice())?)
            .bind(transport_name(r.transport))
            .bind(r.endpoint.as_str())
            .bind(auth_mode_name(&r.upstream_auth))
            .bind(json_text(&r.access)?)
            .bind(&r.owner)
            .bind(revision)
            .bind(at)
            .bind(at)
            .execute(&mut *conn)
            .await?,
            ServerEvent::Updated(changes) => {
                let tags = changes.tags.as_ref().map(|t| json_text(t.as_slice())).transpose()?;
                sqlx::query(
                    "UPDATE registry_servers
                    SET title = COALESCE(?, title), description = COALESCE(?, description), tags = COALESCE(?, tags),
                        transport = COALESCE(?, transport), url = COALESCE(?, url), revision = ?, updated_at = ?
                  WHERE id = ?",
                )
                .bind(changes.title.as_ref().map(|t| t.as_str()))
                .bind(changes.description.as_ref().map(|d| d.as_str()))
                .bind(tags)
                .bind(changes.transport.map(transport_name))
                .bind(changes.endpoint.as_ref().map(|e| e.as_str()))
                .bind(revision)
                .bind(at)
                .bind(id)
                .execute(&mut *conn)
                .await?
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
            ServerEvent::CredentialRotated(auth) => {
                sqlx::query("UPDATE registry_servers SET auth_mode = ?, revision = ?, updated_at = ? WHERE id = ?")
                    .bind(auth_mode_name(auth))
                    .bind(revision)
                    .bind(at)
                    .bind(id)
                    .execute(&mut *conn)
                    .await?
            }
            ServerEvent::Suspended { reason } => set_status(conn, id, "suspended", Some(reason), revision, at).await?,
            ServerEvent::Resumed => set_status(conn, id, "active", None, revision, at).await?,
            ServerEvent::Deregistered { .. } => {
                sqlx::query("DELETE FROM registry_servers WHERE id = ?").bind(id).execute(&mut *conn).await?
            }
        };
    one_row(done)
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
}

const SELECT: &str = "SELECT id, name, title, description, tags, transport, url, auth_mode, access, owner, status, \
                      status_reason, revision, registered_at, updated_at FROM registry_servers";

fn entry(row: &SqliteRow) -> Result<CatalogueEntry, sqlx::Error> {
    let json_column = |name: &str| -> Result<serde_json::Value, sqlx::Error> {
        let text: String = row.try_get(name)?;
        serde_json::from_str(&text).map_err(|e| sqlx::Error::ColumnDecode { index: name.to_owned(), source: e.into() })
    };
    let tags = match json_column("tags")? {
        serde_json::Value::Array(tags) => tags.into_iter().filter_map(|t| t.as_str().map(str::to_owned)).collect(),
        _ => Vec::new(),
    };
    Ok(CatalogueEntry {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        tags,
        transport: row.try_get("transport")?,
        url: row.try_get("url")?,
        auth_mode: row.try_get("auth_mode")?,
        access: sqlx::types::Json(json_column("access")?),
        owner: row.try_get("owner")?,
        status: row.try_get("status")?,
        status_reason: row.try_get("status_reason")?,
        revision: row.try_get("revision")?,
        registered_at: row.try_get("registered_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

impl SqliteRegistry {
    /// Queries against the read model in `pool`'s file.
    pub fn new(pool: SqlitePool) -> Self {
        Self { pool }
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
        let text = filter.text.as_ref().map(|t| format!("%{}%", escape_like(t)));
        // SQLite's LIKE ignores ASCII case, as the catalogue's ILIKE does on Postgres.
        let sql = format!(
            "{SELECT}
              WHERE (?1 IS NULL OR EXISTS (SELECT 1 FROM json_each(tags) WHERE json_each.value = ?1))
                AND (?2 IS NULL OR status = ?2)
                AND (?3 IS NULL OR owner = ?3)
                AND (?4 IS NULL OR name LIKE ?4 ESCAPE '\\' OR title LIKE ?4 ESCAPE '\\'
                     OR description LIKE ?4 ESCAPE '\\')
                AND (?5 IS NULL OR name > ?5)
              ORDER BY name LIMIT ?6"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(&filter.tag)
            .bind(&filter.status)
            .bind(&filter.owner)
            .bind(text)
            .bind(&filter.after)
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let entries = rows.iter().map(entry).collect::<Result<Vec<_>, _>>()?;
        let (entries, next) = crate::sql::page(entries, limit, |e| e.name.clone());
        Ok(CataloguePage { entries, next })
    }

    /// How far the read model has applied `$all`.
    pub async fn position(&self) -> Result<Option<Position>, ProjectionError> {
        load_sqlite_checkpoint(&self.pool, NAME).await
    }
}
