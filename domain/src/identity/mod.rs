//! Principals, their roles and API keys (the first authentication layer; OIDC users and sessions arrive
//! later in the identity step). API keys are stored as their SHA-256 only: the key itself is shown once
//! and never kept.

mod api_key;
mod event;
mod principal;
mod role_mapping;

pub use api_key::{API_KEY_PREFIX, ApiKeyDigest, parse_api_key};
pub use event::{
    ApiKeyIssued, ApiKeyRevoked, IdentityEvent, OwnersChanged, PrincipalCreated, PrincipalKind, RoleGranted,
    RoleRevoked, RoleSource, SessionExpired, SessionRefreshed, SessionRevoked, SessionStarted, SigningKeyCreated,
    SigningKeyRetired, SuspiciousSessionActivity, TotpEnrolled, TotpEnrolmentApproved, TotpRejected, TotpVerified,
    UserDisabled, UserEnabled, UserLoggedIn, UserProfileUpdated, UserProvisioned,
};
pub use principal::{
    CODE_FAILURE_WINDOW, ENROLMENT_APPROVAL_LIFETIME, MAX_CODE_FAILURES, MFA_FRESHNESS, PrincipalState, RoleActor,
    RoleChange, RoleChangeRefused, decide_disable, decide_role_change, outranks_or_equals, rank,
};
pub use role_mapping::{ClaimSource, MappedRoles, RoleRule, RoleRuleError, check_rules, map_roles};

/// Stream category of principals (`principal-<id>`).
pub const PRINCIPAL_CATEGORY: &str = "principal";
/// Stream category of API keys (`apikey-<id>`).
pub const API_KEY_CATEGORY: &str = "apikey";
/// The stream that holds the set of owners: appended with every owner grant and revocation, at its
/// expected revision, so that two concurrent revocations cannot leave no owner.
pub const OWNERS_STREAM: &str = "system-owners";
/// How long a session lives without a refresh.
pub const SESSION_IDLE: chrono::Duration = chrono::Duration::hours(1);

/// Stream category of sessions (`session-<id>`).
pub const SESSION_CATEGORY: &str = "session";
/// The stream of the keys that sign the gateway's access tokens.
pub const SIGNING_KEYS_STREAM: &str = "system-signingkeys";
