//! One process at a time on an embedded store: two gateways on one SQLite file would each run the
//! projections into the same tables and corrupt each other's read models (UNIQUE violations, halted
//! runners). The first takes an exclusive lock on `<file>.lock` and holds it until it exits; the second
//! is refused with a message that says what to do.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

/// Why the lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum StoreLockError {
    /// Another process holds it.
    #[error(
        "another process is already serving {store} (it holds {lock}): stop it first, or give this one another data directory (--data-dir)"
    )]
    Held {
        /// The store file.
        store: String,
        /// The lock file.
        lock: String,
    },
    /// The lock file could not be opened or locked.
    #[error("cannot lock {lock}: {source}")]
    Io {
        /// The lock file.
        lock: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// An exclusive lock on an embedded store, held while this value lives (the operating system releases
/// it when the process ends, however it ends).
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
    path: PathBuf,
}

impl StoreLock {
    /// Takes the lock of the store file `store`, or says who has it.
    pub fn acquire(store: &Path) -> Result<Self, StoreLockError> {
        let mut name = store.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let io = |source| StoreLockError::Io { lock: path.display().to_string(), source };
        let mut options = std::fs::OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: file, path }),
            Err(TryLockError::WouldBlock) => {
                Err(StoreLockError::Held { store: store.display().to_string(), lock: path.display().to_string() })
            }
            Err(TryLockError::Error(e)) => Err(io(e)),
        }
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_holder_is_refused_until_the_first_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("events.db");
        let first = StoreLock::acquire(&store).unwrap();
        let second = StoreLock::acquire(&store);
        assert!(matches!(second, Err(StoreLockError::Held { .. })), "{second:?}");
        drop(first);
        assert!(StoreLock::acquire(&store).is_ok());
    }
}
