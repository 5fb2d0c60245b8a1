//! Reading the catalogue.

use chrono::{DateTime, Utc};
use eventstore::Position;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::projection::NAME;
use super::render_cache::{RenderCache, assemble};
use crate::sql::escape_like;
use crate::{ProjectionError, load_checkpoint};

/// One server as the catalogue shows it (no secrets: the auth mode only).
#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct CatalogueEntry {
    /// Id.
    pub id: Uuid,
    /// Unique name.
    pub name: String,
    /// Current release version (SemVer).
    pub version: String,
    /// Title.
    pub title: Option<String>,
    /// Description.
    pub description: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Source repository, as in the official `server.json`.
    #[schema(value_type = Option<Object>)]
    pub repository: Option<sqlx::types::Json<serde_json::Value>>,
    /// Packages, as in the official `server.json`.
    #[schema(value_type = Vec<Object>)]
    pub packages: sqlx::types::Json<serde_json::Value>,
    /// `streamable_http` or `sse`.
    pub transport: String,
    /// Upstream URL.
    pub url: String,
    /// `none`, `bearer`, `header` or `oauth_client_credentials`.
    pub auth_mode: String,
    /// Access policy.
    #[schema(value_type = Object)]
    pub access: sqlx::types::Json<serde_json::Value>,
    /// Owner principal.
    pub owner: String,
    /// `active` or `suspended`.
    pub status: String,
    /// Why suspended.
    pub status_reason: Option<String>,
    /// What the last connection check that changed something found (`null` before the first check).
    #[schema(value_type = Option<domain::server::ServerHealth>)]
    pub health: Option<sqlx::types::Json<serde_json::Value>>,
    /// The tools the server listed when last checked (`null` before the first check).
    #[schema(value_type = Option<Vec<domain::server::DiscoveredTool>>)]
    pub tools: Option<sqlx::types::Json<serde_json::Value>>,
    /// Stream revision: the `ETag`.
    pub revision: i64,
    /// When registered.
    pub registered_at: DateTime<Utc>,
    /// When last changed.
    pub updated_at: DateTime<Utc>,
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct CatalogueFilter {
    /// Servers with this tag.
    pub tag: Option<String>,
    /// `active` or `suspended`.
    pub status: Option<String>,
    /// Servers of this owner.
    pub owner: Option<String>,
    /// Text in the name, title or description (case-insensitive).
    pub text: Option<String>,
    /// Names after this one (the cursor).
    pub after: Option<String>,
    /// Page size.
    pub limit: u32,
}

impl CatalogueFilter {
    /// `WHERE …` with only the conditions asked for, and their values in order: each combination is a
    /// statement of its own, so its plan uses the name index. (One statement with `$n IS NULL OR …` for
    /// every filter got a generic plan after five runs that read every row for a page.) `placeholder(n)`
    /// spells parameter n, `like` the case-blind LIKE, `escape` its escape clause, `tagged(n)` the
    /// tag condition.
    pub(crate) fn conditions(
        &self,
        placeholder: impl Fn(usize) -> String,
        like: &str,
        escape: &str,
        tagged: impl Fn(usize) -> String,
    ) -> (String, Vec<String>) {
        let (mut conditions, mut binds) = (Vec::new(), Vec::new());
        if let Some(tag) = &self.tag {
            binds.push(tag.clone());
            conditions.push(tagged(binds.len()));
        }
        for (column, value) in [("status", &self.status), ("owner", &self.owner)] {
            if let Some(value) = value {
                binds.push(value.clone());
                conditions.push(format!("{column} = {}", placeholder(binds.len())));
            }
        }
        if let Some(text) = &self.text {
            binds.push(format!("%{}%", escape_like(text)));
            let p = placeholder(binds.len());
            conditions.push(format!(
                "(name {like} {p}{escape} OR title {like} {p}{escape} OR description {like} {p}{escape})"
            ));
        }
        if let Some(after) = &self.after {
            binds.push(after.clone());
            conditions.push(format!("name > {}", placeholder(binds.len())));
        }
        let clause = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        (clause, binds)
    }
}

/// A page of the catalogue, each entry rendered as JSON.
#[derive(Debug, Clone)]
pub struct RenderedPage {
    /// The servers' JSON, in name order.
    pub entries: Vec<std::sync::Arc<serde_json::value::RawValue>>,
    /// The last name, when more may follow.
    pub next: Option<String>,
}

/// An entry's key and stamp in the rendered-entry cache: its id and revision.
pub(super) fn stamp(entry: &CatalogueEntry) -> (Uuid, i64) {
    (entry.id, entry.revision)
}

/// An entry as JSON.
pub(super) fn render(entry: &CatalogueEntry) -> Result<Box<serde_json::value::RawValue>, serde_json::Error> {
    serde_json::value::to_raw_value(entry)
}

/// A page of the catalogue, in name order.
#[derive(Debug, Clone)]
pub struct CataloguePage {
    /// The servers.
    pub entries: Vec<CatalogueEntry>,
    /// The last name, when more may follow.
    pub next: Option<String>,
}

/// The catalogue's queries.
#[derive(Debug, Clone)]
pub struct Registry {
    pool: PgPool,
    rendered: RenderCache<Uuid>,
}

const COLUMNS: &str = "id, name, version, title, description, tags, repository, packages, transport, url, \
                       auth_mode, access, owner, status, status_reason, health, tools, revision, registered_at, \
                       updated_at";

impl Registry {
    /// Queries against the read model in `pool`'s database.
    pub fn new(pool: PgPool) -> Self {
        Self { pool, rendered: RenderCache::default() }
    }

    pub(super) fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The server with `id`.
    pub async fn get(&self, id: Uuid) -> Result<Option<CatalogueEntry>, ProjectionError> {
        let sql = format!("SELECT {COLUMNS} FROM rm_registry.servers WHERE id = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&self.pool).await?)
    }

    /// The server named `name`.
    pub async fn get_by_name(&self, name: &str) -> Result<Option<CatalogueEntry>, ProjectionError> {
        let sql = format!("SELECT {COLUMNS} FROM rm_registry.servers WHERE name = $1");
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(&self.pool).await?)
    }

    /// A page of servers matching `filter`, in name order.
    pub async fn list(&self, filter: &CatalogueFilter) -> Result<CataloguePage, ProjectionError> {
        let limit = filter.limit.clamp(1, 500);
        let entries: Vec<CatalogueEntry> = self.select(COLUMNS, filter, limit).fetch_all(&self.pool).await?;
        let (entries, next) = crate::sql::page(entries, limit, |e| e.name.clone());
        Ok(CataloguePage { entries, next })
    }

    /// [`Registry::list`], each entry rendered as JSON: those unchanged since last rendered come from
    /// memory, the others are read in full.
    pub async fn page(&self, filter: &CatalogueFilter) -> Result<RenderedPage, ProjectionError> {
        let limit = filter.limit.clamp(1, 500);
        let rows: Vec<(Uuid, String, i64)> =
            self.select("id, name, revision", filter, limit).fetch_all(&self.pool).await?;
        let (rows, next) = crate::sql::page(rows, limit, |(_, name, _)| name.clone());
        let keys: Vec<(Uuid, i64)> = rows.iter().map(|(id, _, revision)| (*id, *revision)).collect();
        let fetch = |ids: Vec<Uuid>| async move {
            let sql = format!("SELECT {COLUMNS} FROM rm_registry.servers WHERE id = ANY($1)");
            Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(ids).fetch_all(&self.pool).await?)
        };
        let entries = assemble(&self.rendered, &keys, fetch, stamp, render).await?;
        Ok(RenderedPage { entries, next })
    }

    /// `columns` of the first `limit` + 1 servers matching `filter`, in name order.
    fn select<'q, T>(
        &self,
        columns: &str,
        filter: &CatalogueFilter,
        limit: u32,
    ) -> sqlx::query::QueryAs<'q, sqlx::Postgres, T, sqlx::postgres::PgArguments>
    where
        T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
    {
        let (conditions, binds) =
            filter.conditions(|n| format!("${n}"), "ILIKE", "", |n| format!("tags @> ARRAY[${n}::text]"));
        let sql = format!("SELECT {columns} FROM rm_registry.servers {conditions} ORDER BY name LIMIT {}", limit + 1);
        let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
        for bind in binds {
            query = query.bind(bind);
        }
        query
    }

    /// How far the read model has applied `$all`: a command's position is visible once this passes it.
    pub async fn position(&self) -> Result<Option<Position>, ProjectionError> {
        load_checkpoint(&self.pool, NAME).await
    }
}
