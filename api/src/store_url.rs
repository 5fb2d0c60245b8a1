//! Event stores named by URL: `postgres://…` (or `postgresql://…`) and `sqlite://<path>` (or
//! `sqlite:<path>`), for the commands that work on any backend (`events copy`).

use std::path::PathBuf;
use std::sync::Arc;

use eventstore::{EventStore, PgEventStore, PgEventStoreOptions, SqliteEventStore, SqliteEventStoreOptions};
use sqlx::postgres::PgPoolOptions;

/// Why a store URL could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreUrlError {
    /// Neither a Postgres nor a SQLite URL.
    #[error("{0:?} is neither postgres://… nor sqlite://<path>")]
    Scheme(String),
    /// The store could not be opened or migrated.
    #[error("opening {url}: {source}")]
    Open {
        /// The URL, without its password.
        url: String,
        /// What failed.
        #[source]
        source: eventstore::Error,
    },
}

/// The backend a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// A PostgreSQL database.
    Postgres(String),
    /// A SQLite file.
    Sqlite(PathBuf),
}

impl StoreUrl {
    /// Reads `url`.
    pub fn parse(url: &str) -> Result<Self, StoreUrlError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        match url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:")) {
            Some(path) if !path.is_empty() => Ok(Self::Sqlite(PathBuf::from(path))),
            _ => Err(StoreUrlError::Scheme(redacted(url))),
        }
    }

    /// Opens an existing store as it is (no file created, no migration), without upcasters: events read as
    /// they are stored. For the source of a copy.
    pub async fn open_existing(&self) -> Result<Arc<dyn EventStore>, StoreUrlError> {
        match self {
            Self::Postgres(url) => {
                let pool = PgPoolOptions::new().max_connections(4).connect(url).await.map_err(|e| {
                    StoreUrlError::Open { url: redacted(url), source: eventstore::Error::Unavailable(e) }
                })?;
                Ok(Arc::new(PgEventStore::new(pool, PgEventStoreOptions::default())))
            }
            Self::Sqlite(path) => {
                let options = SqliteEventStore::connect_options(path).create_if_missing(false);
                let pool =
                    sqlx::sqlite::SqlitePoolOptions::new().max_connections(4).connect_with(options).await.map_err(
                        |e| StoreUrlError::Open {
                            url: path.display().to_string(),
                            source: eventstore::Error::Unavailable(e),
                        },
                    )?;
                Ok(Arc::new(SqliteEventStore::new(pool, SqliteEventStoreOptions::default())))
            }
        }
    }

    /// Opens the store, created and migrated when needed, without upcasters: events read as they are
    /// stored. For the target of a copy.
    pub async fn open(&self) -> Result<Arc<dyn EventStore>, StoreUrlError> {
        match self {
            Self::Postgres(url) => {
                let failed = |source| StoreUrlError::Open { url: redacted(url), source };
                let pool = PgPoolOptions::new()
                    .max_connections(4)
                    .connect(url)
                    .await
                    .map_err(|e| failed(eventstore::Error::Unavailable(e)))?;
                PgEventStore::migrate(&pool).await.map_err(failed)?;
                Ok(Arc::new(PgEventStore::new(pool, PgEventStoreOptions::default())))
            }
            Self::Sqlite(path) => {
                let store = SqliteEventStore::open(path, SqliteEventStoreOptions::default())
                    .await
                    .map_err(|source| StoreUrlError::Open { url: path.display().to_string(), source })?;
                Ok(Arc::new(store))
            }
        }
    }
}

/// `url` without a password (in the authority or the query, which is left out).
fn redacted(url: &str) -> String {
    let url = match url.split_once('?') {
        Some((base, _)) => return format!("{}?…", redacted(base)),
        None => url,
    };
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_name_their_backend_and_passwords_stay_out_of_errors() {
        assert_eq!(StoreUrl::parse("sqlite://data/events.db").unwrap(), StoreUrl::Sqlite("data/events.db".into()));
        assert_eq!(StoreUrl::parse("sqlite:/tmp/x.db").unwrap(), StoreUrl::Sqlite("/tmp/x.db".into()));
        assert!(matches!(StoreUrl::parse("postgres://u:p@h/db"), Ok(StoreUrl::Postgres(_))));
        let refused = StoreUrl::parse("mysql://u:secret@h/db").unwrap_err().to_string();
        assert!(!refused.contains("secret") && refused.contains("u:***@h"), "{refused}");
        assert!(StoreUrl::parse("sqlite://").is_err());
        assert!(!redacted("postgres://h/db?user=u&password=secret").contains("secret"));
    }
}
