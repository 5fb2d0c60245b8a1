//! Principals and their API keys (the first authentication layer; OIDC users and sessions arrive with the
//! identity step). API keys are stored as their SHA-256 only: the key itself is shown once and never kept.

mod api_key;
mod event;

pub use api_key::{API_KEY_PREFIX, ApiKeyDigest, parse_api_key};
pub use event::{ApiKeyIssued, IdentityEvent, PrincipalCreated, PrincipalKind};

/// Stream category of principals (`principal-<id>`).
pub const PRINCIPAL_CATEGORY: &str = "principal";
/// Stream category of API keys (`apikey-<id>`).
pub const API_KEY_CATEGORY: &str = "apikey";
