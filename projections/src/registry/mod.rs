//! The `registry` read model: the server catalogue, in tables.

mod projection;
mod query;
mod sqlite;

pub use projection::RegistryProjection;
pub use query::{CatalogueEntry, CatalogueFilter, CataloguePage, Registry};
pub use sqlite::{SqliteRegistry, SqliteRegistryProjection};
