//! Server names: the unique, URL-safe key of a server in the catalogue.

use serde::{Deserialize, Serialize};

/// Longest name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 128;

/// A server's name, as in the official MCP registry: a reverse-DNS namespace and a name, separated by
/// `/` (`io.github.acme/weather`). The namespace has at least two dot-separated labels of lowercase ASCII
/// letters, digits and `-`; the name has lowercase letters, digits, `.`, `_` and `-`; both start and end
/// with a letter or digit. Lowercase only, so that two names that differ only in case cannot both exist.
/// Unique among live servers.
///
/// Logs written before namespaces were required hold one-segment names (`weather`): they are read back
/// as they are ([`TryFrom<String>`] is that lenient reading), while every new name goes through
/// [`ServerName::parse`].
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServerName(String);

/// Why a name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServerNameError {
    /// Empty, or longer than [`MAX_NAME_BYTES`].
    #[error("a server name has 1 to {MAX_NAME_BYTES} characters")]
    Length,
    /// A character outside the allowed set, or a segment that starts or ends badly.
    #[error(
        "a server name is a reverse-DNS namespace, `/` and a name (`io.example/weather`): lowercase letters, digits and `-` in the namespace's dot-separated labels (at least two), lowercase letters, digits, `.`, `_` and `-` in the name, each starting and ending with a letter or digit"
    )]
    Syntax,
}

impl ServerName {
    /// Checks a new name: `namespace/name`.
    pub fn parse(name: impl Into<String>) -> Result<Self, ServerNameError> {
        let name = Self::stored(name.into())?;
        match name.0.split_once('/') {
            Some((namespace, _)) if valid_namespace(namespace) => Ok(name),
            _ => Err(ServerNameError::Syntax),
        }
    }

    /// Reads a name from the log: one or two segments, as names were before namespaces were required.
    fn stored(name: String) -> Result<Self, ServerNameError> {
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(ServerNameError::Length);
        }
        let segments: Vec<&str> = name.split('/').collect();
        if segments.len() > 2 || !segments.iter().all(|s| valid_segment(s)) {
            return Err(ServerNameError::Syntax);
        }
        Ok(Self(name))
    }

    /// Whether the name has a namespace (every name given since namespaces were required).
    pub fn has_namespace(&self) -> bool {
        self.0.contains('/')
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn valid_segment(segment: &str) -> bool {
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    edge(segment.chars().next())
        && edge(segment.chars().last())
        && segment.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'))
}

/// A reverse-DNS namespace: two or more labels of lowercase letters, digits and `-`, none starting or
/// ending with `-`.
fn valid_namespace(namespace: &str) -> bool {
    let labels: Vec<&str> = namespace.split('.').collect();
    labels.len() >= 2
        && labels.iter().all(|label| {
            let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
            edge(label.chars().next())
                && edge(label.chars().last())
                && label.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

/// The lenient reading, for names stored before namespaces were required.
impl TryFrom<String> for ServerName {
    type Error = ServerNameError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::stored(value)
    }
}

impl From<ServerName> for String {
    fn from(name: ServerName) -> Self {
        name.0
    }
}

impl std::fmt::Display for ServerName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reverse_dns_names_are_accepted() {
        for name in ["io.github.acme/weather-2", "com.example/a", "io.example/x_y.z", "io.my-co.eu/w"] {
            assert!(ServerName::parse(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn names_without_a_reverse_dns_namespace_are_refused_when_new_but_read_from_the_log() {
        for name in ["weather", "example/weather", "io..x/w", "io.-x/w", "io.x-/w", "io.x_y/w"] {
            assert_eq!(ServerName::parse(name), Err(ServerNameError::Syntax), "{name}");
        }
        let legacy: ServerName = serde_json::from_str("\"weather\"").unwrap();
        assert!(!legacy.has_namespace());
        assert!(serde_json::from_str::<ServerName>("\"Weather\"").is_err());
    }

    #[test]
    fn bad_names_are_refused_with_the_rule() {
        assert_eq!(ServerName::parse(""), Err(ServerNameError::Length));
        assert_eq!(ServerName::parse("a".repeat(129)), Err(ServerNameError::Length));
        for name in ["Weather", "io.x/-x", "io.x/x-", "io.x/b/c", "a//b", "/a", "io.x/spa ce", "io.x/ü", "io.x/"] {
            assert_eq!(ServerName::parse(name), Err(ServerNameError::Syntax), "{name}");
        }
    }
}
