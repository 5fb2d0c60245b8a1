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
    /// The `$all` position of the event that last changed it: its rendering's stamp.
    pub stamp: i64,
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

/// A value a [`VersionFilter`]'s conditions compare with.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum VersionBind {
    /// Text.
    Text(String),
    /// A time (each backend stores times its own way).
    Time(DateTime<Utc>),
    /// An integer.
    Integer(i64),
}

impl VersionFilter {
    /// `WHERE …` with only the conditions asked for, and their values in order: each combination is a
    /// statement of its own, so the `(name, seq)` index serves the cursor (one statement with
    /// `$n IS NULL OR …` for every filter gets a generic plan that sorts every release for each page, as
    /// the catalogue's did). `placeholder(n)` spells parameter n, `like` the case-blind LIKE, `escape` its
    /// escape clause.
    pub(crate) fn conditions(
        &self,
        placeholder: impl Fn(usize) -> String,
        like: &str,
        escape: &str,
    ) -> (String, Vec<VersionBind>) {
        let (mut conditions, mut binds) = (Vec::new(), Vec::new());
        if let Some(search) = &self.search {
            binds.push(VersionBind::Text(format!("%{}%", crate::sql::escape_like(search))));
            conditions.push(format!("name {like} {}{escape}", placeholder(binds.len())));
        }
        if let Some(since) = self.updated_since {
            binds.push(VersionBind::Time(since));
            conditions.push(format!("updated_at > {}", placeholder(binds.len())));
        }
        match &self.version {
            Some(VersionSelector::Latest) => conditions.push("is_latest".to_owned()),
            Some(VersionSelector::Exact(version)) => {
                binds.push(VersionBind::Text(version.clone()));
                conditions.push(format!("version = {}", placeholder(binds.len())));
            }
            None => {}
        }
        if !self.include_deleted {
            conditions.push("status <> 'deleted'".to_owned());
        }
        if let Some((name, seq)) = &self.after {
            binds.push(VersionBind::Text(name.clone()));
            binds.push(VersionBind::Integer(*seq));
            conditions.push(format!("(name, seq) > ({}, {})", placeholder(binds.len() - 1), placeholder(binds.len())));
        }
        let clause = if conditions.is_empty() { String::new() } else { format!("WHERE {}", conditions.join(" AND ")) };
        (clause, binds)
    }
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

/// A page of versions, each rendered as JSON, and the cursor of the next.
#[derive(Debug, Clone)]
pub struct RenderedVersionPage {
    /// The documents, in `(name, seq)` order.
    pub documents: Vec<std::sync::Arc<serde_json::value::RawValue>>,
    /// The last `(name, seq)`, when more may follow.
    pub next: Option<(String, i64)>,
}

/// Rendered releases by `(name, seq)`.
pub type VersionDocuments = super::RenderCache<(String, i64)>;

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
                                          published_at, updated_at, is_latest, stamp";

/// `columns` of the first `limit` + 1 versions matching `filter`, in `(name, seq)` order.
fn select_versions<'q, T>(
    columns: &str,
    filter: &VersionFilter,
    limit: u32,
) -> sqlx::query::QueryAs<'q, sqlx::Postgres, T, sqlx::postgres::PgArguments>
where
    T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    let (conditions, binds) = filter.conditions(|n| format!("${n}"), "ILIKE", "");
    let sql = format!(
        "SELECT {columns} FROM rm_registry.versions {conditions} ORDER BY name, seq LIMIT {}",
        i64::from(limit) + 1
    );
    let mut query = sqlx::query_as(sqlx::AssertSqlSafe(sql));
    for bind in binds {
        query = match bind {
            VersionBind::Text(text) => query.bind(text),
            VersionBind::Time(time) => query.bind(time),
            VersionBind::Integer(n) => query.bind(n),
        };
    }
    query
}

impl Registry {
    /// A page of versions matching `filter`, in `(name, seq)` order.
    pub async fn versions(&self, filter: &VersionFilter) -> Result<VersionPage, ProjectionError> {
        let limit = filter.limit.max(1);
        let entries: Vec<VersionEntry> = select_versions(VERSION_COLUMNS, filter, limit).fetch_all(self.pool()).await?;
        let (entries, next) = crate::sql::page(entries, limit, |e| (e.name.clone(), e.seq));
        Ok(VersionPage { entries, next })
    }

    /// [`Registry::versions`], each rendered by `render`: those unchanged since last rendered come from
    /// `cache`, the others are read in full.
    pub async fn versions_rendered(
        &self,
        filter: &VersionFilter,
        cache: &VersionDocuments,
        render: impl Fn(&VersionEntry) -> Result<Box<serde_json::value::RawValue>, serde_json::Error>,
    ) -> Result<RenderedVersionPage, ProjectionError> {
        let limit = filter.limit.max(1);
        let rows: Vec<(String, i64, i64)> =
            select_versions("name, seq, stamp", filter, limit).fetch_all(self.pool()).await?;
        let (rows, next) = crate::sql::page(rows, limit, |(name, seq, _)| (name.clone(), *seq));
        let keys: Vec<((String, i64), i64)> = rows.into_iter().map(|(name, seq, stamp)| ((name, seq), stamp)).collect();
        let fetch = |keys: Vec<(String, i64)>| async move {
            let (names, seqs): (Vec<String>, Vec<i64>) = keys.into_iter().unzip();
            let sql = format!(
                "SELECT {VERSION_COLUMNS} FROM rm_registry.versions
                  WHERE (name, seq) IN (SELECT * FROM unnest($1::text[], $2::bigint[]))"
            );
            Ok(sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(names).bind(seqs).fetch_all(self.pool()).await?)
        };
        let stamp_of = |e: &VersionEntry| ((e.name.clone(), e.seq), e.stamp);
        let documents = super::render_cache::assemble(cache, &keys, fetch, stamp_of, render).await?;
        Ok(RenderedVersionPage { documents, next })
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
