//! The `registry` read model: the server catalogue, in tables.

mod projection;
mod query;

pub use projection::RegistryProjection;
pub use query::{CatalogueEntry, CatalogueFilter, CataloguePage, Registry};
