//! The `registry` read model: the server catalogue, in tables.

mod projection;
mod query;
mod render_cache;
mod sqlite;
mod versions;

pub use projection::RegistryProjection;
pub use query::{CatalogueEntry, CatalogueFilter, CataloguePage, Registry, RenderedPage};
pub use render_cache::RenderCache;
pub use sqlite::{SqliteRegistry, SqliteRegistryProjection};
pub use versions::{RenderedVersionPage, VersionDocuments, VersionEntry, VersionFilter, VersionPage, VersionSelector};

use eventstore::Position;
use uuid::Uuid;

use crate::ProjectionError;

/// The catalogue's queries, on whichever backend holds the read model.
#[derive(Debug, Clone)]
pub enum Catalogue {
    /// `rm_registry.servers` on PostgreSQL.
    Postgres(Registry),
    /// `registry_servers` on SQLite.
    Sqlite(SqliteRegistry),
}

impl Catalogue {
    /// The server with `id`.
    pub async fn get(&self, id: Uuid) -> Result<Option<CatalogueEntry>, ProjectionError> {
        match self {
            Self::Postgres(r) => r.get(id).await,
            Self::Sqlite(r) => r.get(id).await,
        }
    }

    /// The server named `name`.
    pub async fn get_by_name(&self, name: &str) -> Result<Option<CatalogueEntry>, ProjectionError> {
        match self {
            Self::Postgres(r) => r.get_by_name(name).await,
            Self::Sqlite(r) => r.get_by_name(name).await,
        }
    }

    /// A page of servers matching `filter`, in name order.
    pub async fn list(&self, filter: &CatalogueFilter) -> Result<CataloguePage, ProjectionError> {
        match self {
            Self::Postgres(r) => r.list(filter).await,
            Self::Sqlite(r) => r.list(filter).await,
        }
    }

    /// [`Catalogue::list`], each entry rendered as JSON (unchanged ones from memory).
    pub async fn page(&self, filter: &CatalogueFilter) -> Result<RenderedPage, ProjectionError> {
        match self {
            Self::Postgres(r) => r.page(filter).await,
            Self::Sqlite(r) => r.page(filter).await,
        }
    }

    /// A page of releases matching `filter`, in `(name, seq)` order (`/v0.1/servers`).
    pub async fn versions(&self, filter: &VersionFilter) -> Result<VersionPage, ProjectionError> {
        match self {
            Self::Postgres(r) => r.versions(filter).await,
            Self::Sqlite(r) => r.versions(filter).await,
        }
    }

    /// [`Catalogue::versions`], each rendered by `render` (unchanged ones from `cache`).
    pub async fn versions_rendered(
        &self,
        filter: &VersionFilter,
        cache: &VersionDocuments,
        render: impl Fn(&VersionEntry) -> Result<Box<serde_json::value::RawValue>, serde_json::Error>,
    ) -> Result<RenderedVersionPage, ProjectionError> {
        match self {
            Self::Postgres(r) => r.versions_rendered(filter, cache, render).await,
            Self::Sqlite(r) => r.versions_rendered(filter, cache, render).await,
        }
    }

    /// The releases named `name`, newest first.
    pub async fn versions_named(
        &self,
        name: &str,
        include_deleted: bool,
    ) -> Result<Vec<VersionEntry>, ProjectionError> {
        match self {
            Self::Postgres(r) => r.versions_named(name, include_deleted).await,
            Self::Sqlite(r) => r.versions_named(name, include_deleted).await,
        }
    }

    /// One release named `name`.
    pub async fn version_named(
        &self,
        name: &str,
        version: &VersionSelector,
        include_deleted: bool,
    ) -> Result<Option<VersionEntry>, ProjectionError> {
        match self {
            Self::Postgres(r) => r.version_named(name, version, include_deleted).await,
            Self::Sqlite(r) => r.version_named(name, version, include_deleted).await,
        }
    }

    /// How far the read model has applied `$all`.
    pub async fn position(&self) -> Result<Option<Position>, ProjectionError> {
        match self {
            Self::Postgres(r) => r.position().await,
            Self::Sqlite(r) => r.position().await,
        }
    }
}
