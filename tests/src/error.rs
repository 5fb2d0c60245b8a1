//! Harness failures, each saying what to do about it.

/// Why a test server could not be started or used.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A server binary is not installed.
    #[error("{binary} not found: install the Debian package `{package}` (apt-get install -y {package}){hint}")]
    MissingBinary {
        /// The binary looked for.
        binary: &'static str,
        /// The Debian package that ships it.
        package: &'static str,
        /// Where else it may be configured.
        hint: &'static str,
    },
    /// A command failed.
    #[error("{what} failed: {detail}")]
    Command {
        /// What was run.
        what: String,
        /// Its output or exit status.
        detail: String,
    },
    /// A server did not become ready in time.
    #[error("{what} not ready after {seconds}s; its log ends with:\n{log_tail}")]
    NotReady {
        /// The server.
        what: String,
        /// How long we waited.
        seconds: u64,
        /// The end of its log.
        log_tail: String,
    },
    /// A file-system or process call failed.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A database call failed.
    #[error("{what}")]
    Database {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: sqlx::Error,
    },
    /// A shared server failed to start earlier in this process.
    #[error("the shared test server failed to start: {0}")]
    SharedFailed(String),
}

impl HarnessError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.into();
        move |source| Self::Io { what, source }
    }
}
