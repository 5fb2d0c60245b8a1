//! A server's release version: what the official registry's `version` holds, and what `/v0.1` sorts by.

use serde::{Deserialize, Serialize};

/// Longest version, in bytes (the official schema's bound).
pub const MAX_VERSION_BYTES: usize = 255;

/// A release version in Semantic Versioning 2.0 (`1.4.0`, `2.0.0-beta.1`, `1.0.0+build.7`). Ranges
/// (`^1.2`, `1.x`) and other free forms are refused, so that versions sort: each release of a server is
/// newer than the one before it by SemVer precedence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(try_from = "String", into = "String")]
#[schema(value_type = String, example = "1.0.0")]
pub struct ServerVersion(String);

/// Why a version was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerVersionError {
    /// Not Semantic Versioning 2.0.
    #[error(
        "a version is a Semantic Versioning 2.0 version of at most {MAX_VERSION_BYTES} bytes (`1.4.0`, `2.0.0-beta.1`), not a range"
    )]
    Syntax,
}

impl ServerVersion {
    /// Checks `version`.
    pub fn parse(version: &str) -> Result<Self, ServerVersionError> {
        if version.len() > MAX_VERSION_BYTES {
            return Err(ServerVersionError::Syntax);
        }
        semver::Version::parse(version).map(|_| Self(version.to_owned())).map_err(|_| ServerVersionError::Syntax)
    }

    /// The version of servers registered before versions were recorded.
    pub fn unversioned() -> Self {
        Self("0.0.0".to_owned())
    }

    /// Whether this version comes after `other` by SemVer precedence (build metadata does not count).
    pub fn is_newer_than(&self, other: &Self) -> bool {
        match (semver::Version::parse(&self.0), semver::Version::parse(&other.0)) {
            (Ok(new), Ok(old)) => new.cmp_precedence(&old).is_gt(),
            _ => false,
        }
    }

    /// The version.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for ServerVersion {
    fn default() -> Self {
        Self::unversioned()
    }
}

impl TryFrom<String> for ServerVersion {
    type Error = ServerVersionError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ServerVersion> for String {
    fn from(version: ServerVersion) -> Self {
        version.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn semantic_versions_are_accepted_and_ranges_refused() {
        for version in ["1.0.0", "0.1.2", "2.0.0-beta.1", "1.0.0+20130313144700", "10.20.30-rc.1+b.2"] {
            assert!(ServerVersion::parse(version).is_ok(), "{version}");
        }
        for version in ["", "1", "1.2", "^1.2.3", "~1.2.3", ">=1.2.3", "1.x", "1.*", "latest", "v1.0.0", " 1.0.0"] {
            assert_eq!(ServerVersion::parse(version), Err(ServerVersionError::Syntax), "{version:?}");
        }
        assert!(ServerVersion::parse(&format!("1.0.0-{}", "a".repeat(250))).is_err());
    }

    #[test]
    fn newer_follows_semver_precedence_not_text() {
        let v = |s: &str| ServerVersion::parse(s).unwrap();
        assert!(v("1.10.0").is_newer_than(&v("1.9.0")), "numeric, not lexical");
        assert!(v("1.0.0").is_newer_than(&v("1.0.0-rc.1")), "a release after its pre-releases");
        assert!(v("1.0.0-rc.10").is_newer_than(&v("1.0.0-rc.9")));
        assert!(!v("1.0.0+b2").is_newer_than(&v("1.0.0+b1")), "build metadata has no precedence");
        assert!(!v("1.0.0").is_newer_than(&v("1.0.0")));
        assert!(v("0.0.1").is_newer_than(&ServerVersion::unversioned()));
    }
}
