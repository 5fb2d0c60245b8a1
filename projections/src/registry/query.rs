//! Reading the catalogue.

use chrono::{DateTime, Utc};
use eventstore::Position;
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use super::projection::NAME;
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
}

const COLUMNS: &str = "id, name, version, title, description, tags, repository, packages, transport, url, \
                       auth_mode, access, owner, status, status_reason, health, tools, revision, registered_at, \
                       updated_at";

impl Registry {
    /// Queries against the read model in `pool`'s database.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
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
        let text = filter.text.as_ref().map(|t| format!("%{}%", escape_like(t)));
        let sql = format!(
            "SELECT {COLUMNS} FROM rm_registry.servers
              WHERE ($1::text IS NULL OR tags @> ARRAY[$1::text])
                AND ($2::text IS NULL OR status = $2)
                AND ($3::text IS NULL OR owner = $3)
                AND ($4::text IS NULL OR name ILIKE $4 OR title ILIKE $4 OR description ILIKE $4)
                AND ($5::text IS NULL OR name > $5)
              ORDER BY name LIMIT $6"
        );
        let entries: Vec<CatalogueEntry> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(&filter.tag)
            .bind(&filter.status)
            .bind(&filter.owner)
            .bind(text)
            .bind(&filter.after)
            .bind(i64::from(limit) + 1)
            .fetch_all(&self.pool)
            .await?;
        let (entries, next) = crate::sql::page(entries, limit, |e| e.name.clone());
        Ok(CataloguePage { entries, next })
    }

    /// How far the read model has applied `$all`: a command's position is visible once this passes it.
    pub async fn position(&self) -> Result<Option<Position>, ProjectionError> {
        load_checkpoint(&self.pool, NAME).await
    }
}
