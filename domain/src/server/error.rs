//! Why a server command was refused.

use super::access::AccessPolicyError;
use super::upstream_auth::UpstreamAuthError;

/// Longest reason given for a suspension or deregistration, in characters.
pub const MAX_REASON_CHARS: usize = crate::text::MAX_REASON_CHARS;

/// A refused server command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerError {
    /// The server does not exist.
    #[error("no such server")]
    NotFound,
    /// Registering an id that is already registered.
    #[error("a server with this id already exists")]
    AlreadyExists,
    /// The server was deregistered; nothing more can happen to it.
    #[error("the server was deregistered")]
    Deregistered,
    /// Suspending a suspended server.
    #[error("the server is already suspended")]
    AlreadySuspended,
    /// Resuming an active server.
    #[error("the server is not suspended")]
    NotSuspended,
    /// A reason that is empty, too long or has control characters.
    #[error("a reason has 1 to {MAX_REASON_CHARS} characters and no control or invisible formatting characters")]
    Reason,
    /// A new version that is not newer than the current one.
    #[error("version {given} is not newer than the current version {current}: each release has a higher SemVer")]
    VersionNotNewer {
        /// The version asked for.
        given: String,
        /// The current version.
        current: String,
    },
    /// The repository or packages break a rule.
    #[error(transparent)]
    Distribution(#[from] super::distribution::DistributionError),
    /// The access policy is invalid.
    #[error(transparent)]
    Access(#[from] AccessPolicyError),
    /// The upstream authentication is invalid.
    #[error(transparent)]
    UpstreamAuth(#[from] UpstreamAuthError),
}
