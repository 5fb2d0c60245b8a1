//! Server names: the unique, URL-safe key of a server in the catalogue.

use serde::{Deserialize, Serialize};

/// Longest name accepted, in bytes.
pub const MAX_NAME_BYTES: usize = 128;

/// A server's name: one or two segments separated by `/` (`weather`, or `io.github.acme/weather` as in
/// the official MCP registry), each of lowercase ASCII letters, digits, `.`, `_` and `-`, starting and
/// ending with a letter or digit. Lowercase only, so that two names that differ only in case cannot
/// both exist. Unique among live servers.
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
        "a server name is one or two `/`-separated segments of lowercase letters, digits, `.`, `_` and `-`, each starting and ending with a letter or digit"
    )]
    Syntax,
}

impl ServerName {
    /// Checks `name`.
    pub fn parse(name: impl Into<String>) -> Result<Self, ServerNameError> {
        let name = name.into();
        if name.is_empty() || name.len() > MAX_NAME_BYTES {
            return Err(ServerNameError::Length);
        }
        let segments: Vec<&str> = name.split('/').collect();
        if segments.len() > 2 || !segments.iter().all(|s| valid_segment(s)) {
            return Err(ServerNameError::Syntax);
        }
        Ok(Self(name))
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

impl TryFrom<String> for ServerName {
    type Error = ServerNameError;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
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
    fn registry_style_and_simple_names_are_accepted() {
        for name in ["weather", "io.github.acme/weather-2", "a", "x_y.z"] {
            assert!(ServerName::parse(name).is_ok(), "{name}");
        }
    }

    #[test]
    fn bad_names_are_refused_with_the_rule() {
        assert_eq!(ServerName::parse(""), Err(ServerNameError::Length));
        assert_eq!(ServerName::parse("a".repeat(129)), Err(ServerNameError::Length));
        for name in ["Weather", "-x", "x-", "a/b/c", "a//b", "/a", "spa ce", "ü", "a/"] {
            assert_eq!(ServerName::parse(name), Err(ServerNameError::Syntax), "{name}");
        }
    }
}
