//! Why a command did not happen. Nothing was written in any of these cases.

use domain::server::{EndpointError, ServerError};

use crate::SealingError;

/// A command that was refused or could not run.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    /// A field of the input is invalid.
    #[error("{field}: {message}")]
    Invalid {
        /// The field, as the API names it.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The URL broke one of the endpoint rules.
    #[error("{field}: {source}")]
    Endpoint {
        /// `url` or `upstream_auth.token_url`.
        field: &'static str,
        /// The rule.
        #[source]
        source: EndpointError,
    },
    /// The aggregate refused.
    #[error(transparent)]
    Domain(#[from] ServerError),
    /// Another live server has the name.
    #[error("the name {0} is taken by another server")]
    NameTaken(String),
    /// The caller's expected revision is not the stream's.
    #[error("the server is at revision {actual}, not {expected}")]
    RevisionMismatch {
        /// What the caller sent.
        expected: u64,
        /// The current revision.
        actual: u64,
    },
    /// Concurrent writers kept winning; the command gave up.
    #[error("the server kept changing concurrently; try again")]
    Contended,
    /// The installation already has its first owner.
    #[error("the gateway is already bootstrapped")]
    AlreadyBootstrapped,
    /// No principal has the id.
    #[error("no such principal")]
    PrincipalNotFound,
    /// A principal (or key) with the id exists already.
    #[error("a principal or key with this id exists already")]
    PrincipalExists,
    /// The principal is disabled.
    #[error("the principal is disabled")]
    PrincipalDisabled,
    /// No key of the principal has the id.
    #[error("no such API key")]
    KeyNotFound,
    /// A role change or disabling broke one of the rules.
    #[error(transparent)]
    RoleChange(#[from] domain::identity::RoleChangeRefused),
    /// The principal has no TOTP secret enrolled.
    #[error("no second factor is enrolled")]
    TotpNotEnrolled,
    /// The code is wrong, outside the time window, or was used already.
    #[error("the code is not valid")]
    TotpRejected,
    /// Replacing an enrolled second factor needs a current code from it.
    #[error("a second factor is enrolled: send a current code from it to replace it")]
    TotpCodeRequired,
    /// A first second factor needs a login whose IdP reported MFA for this session, or an owner's
    /// approval; service principals never enrol one.
    #[error("{0}")]
    EnrolmentRefused(&'static str),
    /// Too many wrong codes: the principal must wait.
    #[error("too many wrong codes; try again in a few minutes")]
    TooManyAttempts,
    /// Keys are issued to people by themselves; others may issue keys only to service principals, and
    /// never to a principal that outranks them.
    #[error("{0}")]
    NotYours(&'static str),
    /// The session has ended (revoked, expired, idle too long) or the secret is not its.
    #[error("the session has ended; log in again")]
    SessionEnded,
    /// The session was just refreshed with another secret (another tab): retry with the current cookie.
    #[error("the session was just refreshed; retry with the current cookie")]
    SessionRotated,
    /// The session was presented in a way only a thief would (a rotated-out secret, another device): it
    /// is revoked now.
    #[error("the session was used suspiciously and is revoked; log in again")]
    SessionSuspicious,
    /// A client's registration broke a rule of RFC 7591 or OAuth 2.1.
    #[error(transparent)]
    ClientRegistration(#[from] domain::oauth::RegistrationError),
    /// No active client has the id.
    #[error("no such client")]
    ClientNotFound,
    /// Sealing a secret failed.
    #[error(transparent)]
    Sealing(#[from] SealingError),
    /// A stored event could not be read back.
    #[error("stored event {0} of the server cannot be read")]
    Corrupt(String),
    /// The event store failed.
    #[error(transparent)]
    Store(#[from] eventstore::Error),
}

impl From<sqlx::Error> for CommandError {
    fn from(error: sqlx::Error) -> Self {
        CommandError::Store(error.into())
    }
}
