//! Reading `versions`: every release of every server, as the official registry API (`/v0.1`) lists them.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::query::Registry;
use crate::ProjectionError;

/// One release of a server.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct VersionEntry {
    /// The server.
    pub server_id: Uuid,
    /// Its name when this version was published.
    pub name: String,
    /// The release (SemVer).
    pub version: String,
    /// Where it sits among all releases (the cursor's second half).
    pub seq: i64,
    /// Title.
    pub title: Option<String>,
    /// Description.
    pub description: String,
    /// `streamable_http` or `sse`.
    pub transport: String,
    /// The upstream URL.
    pub url: String,
    /// Source repository, as in `server.json`.
    pub repository: Option<sqlx::types::Json<serde_json::Value>>,
    /// Packages, as in `server.json`.
    pub packages: sqlx::types::Json<serde_json::Value>,
    /// `active`, `suspended` or `deleted`.
    pub status: String,
    /// Why the status is what it is.
    pub status_message: Option<String>,
    /// When the status last changed (`None`: active since publication).
    pub status_changed_at: Option<DateTime<Utc>>,
    /// When this version was published.
    pub published_at: DateTime<Utc>,
    /// When this version's entry last changed.
    pub updated_at: DateTime<Utc>,
    /// Whether it is the server's current version.
    pub is_latest: bool,
}

/// Which versions to list.
#[derive(Debug, Clone, Default)]
pub struct VersionFilter {
    /// Names containing this text (case-insensitive).
    pub search: Option<String>,
    /// Entries changed after this time (deleted ones included).
    pub updated_since: Option<DateTime<Utc>>,
    /// Only this version (`Latest`: each server's current one).
    pub version: Option<VersionSelector>,
    /// Whether deleted servers' versions are listed.
    pub include_deleted: bool,
    /// Entries after this `(name, seq)` (the cursor).
    pub after: Option<(String, i64)>,
    /// Page size, at least 1.
    pub limit: u32,
}

/// A version asked for by value or as the latest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VersionSelector {
    /// Each server's current version.
    Latest,
    /// This exact version.
    Exact(String),
}

impl VersionSelector {
    /// `latest`, or an exact version.
    pub fn parse(version: &str) -> Self {
        if version == "latest" { Self::Latest } else { Self::Exact(version.to_owned()) }
    }

    /// The two query parameters: whether only latest versions count, and the exact version.
    pub(crate) fn binds(selector: Option<&Self>) -> (bool, Option<String>) {
        match selector {
            Some(Self::Latest) => (true, None),
            Some(Self::Exact(version)) => (false, Some(version.clone())),
            None => (false, None),
        }
    }
}

/// A page of versions in `(name, seq)` order.
#[derive(Debug, Clone)]
pub struct VersionPage {
    /// The versions.
    pub entries: Vec<VersionEntry>,
    /// The last `(name, seq)`, when more may follow.
    pub next: Option<(String, i64)>,
}

pub(crate) const VERSION_COLUMNS: &str = "server_id, name, version, seq, title, description, transport, url, \
                                          repository, packages, status, status_message, status_changed_at, \
                                          published_at, updated_at, is_latest";

impl Registry {
    /// A page of versions matching `filter`, in `(name, seq)` order.
    pub async fn versions(&self, filter: &VersionFilter) -> Result<VersionPage, ProjectionError> {
        let limit = filter.limit.max(1);
        let search = filter.search.as_ref().map(|t| format!("%{}%", crate::sql::escape_like(t)));
        let (latest, exact) = VersionSelector::binds(filter.version.as_ref());
        let (after_name, after_seq) = filter.after.clone().unzip();
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM rm_registry.versions
              WHERE ($1::text IS NULL OR name ILIKE $1)
                AND ($2::timestamptz IS NULL OR updated_at > $2)
                AND (NOT $3 OR is_latest)
                AND ($4::text IS NULL OR version = $4)
                AND ($5 OR status <> 'deleted')
                AND ($6::text IS NULL OR (name, seq) > ($6, $7))
              ORDER BY name, seq LIMIT $8"
        );
        let entries: Vec<VersionEntry> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(search)
            .bind(filter.updated_since)
            .bind(latest)
            .bind(exact)
            .bind(filter.include_deleted)
            .bind(after_name)
            .bind(after_seq)
            .bind(i64::from(limit) + 1)
            .fetch_all(self.pool())
            .await?;
        let (entries, next) = crate::sql::page(entries, limit, |e| (e.name.clone(), e.seq));
        Ok(VersionPage { entries, next })
    }

    /// The versions named `name`, newest first.
    pub async fn versions_named(
        &self,
        name: &str,
        include_deleted: bool,
    ) -> Result<Vec<VersionEntry>, ProjectionError> {
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM rm_registry.versions
              WHERE name = $1 AND ($2 OR status <> 'deleted') ORDER BY seq DESC LIMIT 1000"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(name).bind(include_deleted).fetch_all(self.pool()).await?)
    }

    /// One version named `name`: the newest match (a live server's before a deleted one's of that name).
    pub async fn version_named(
        &self,
        name: &str,
        version: &VersionSelector,
        include_deleted: bool,
    ) -> Result<Option<VersionEntry>, ProjectionError> {
        let (latest, exact) = VersionSelector::binds(Some(version));
        let sql = format!(
            "SELECT {VERSION_COLUMNS} FROM rm_registry.versions
              WHERE name = $1 AND (NOT $2 OR is_latest) AND ($3::text IS NULL OR version = $3)
                AND ($4 OR status <> 'deleted')
              ORDER BY status = 'deleted', seq DESC LIMIT 1"
        );
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(name)
            .bind(latest)
            .bind(exact)
            .bind(include_deleted)
            .fetch_optional(self.pool())
            .await?)
    }
}
