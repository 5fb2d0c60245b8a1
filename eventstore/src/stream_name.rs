//! Stream names: `<category>-<id>`.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Longest stream name accepted, in bytes. Keeps index entries and NATS subjects small.
pub const MAX_STREAM_NAME_BYTES: usize = 512;

/// A stream's name, `<category>-<id>`: `server-0b6f…`, `user-…`, `session-…`.
///
/// The category (before the first `-`) is lowercase ASCII letters, digits and `_`, starting with a
/// letter, because it becomes a NATS subject token and a projection filter. The id is any non-empty
/// text without control characters: it may hold `.`, `*`, `>`, spaces or any Unicode, and whoever
/// maps it somewhere stricter (NATS subjects) escapes it.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct StreamName(String);

/// Why a stream name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamNameError {
    /// No `-` separates a category from an id.
    #[error("stream name {0:?} is not `<category>-<id>`")]
    MissingSeparator(String),
    /// The category is empty or holds characters other than `[a-z0-9_]`, or starts with no letter.
    #[error("stream category {0:?} must be lowercase letters, digits and `_`, starting with a letter")]
    BadCategory(String),
    /// The id part is empty.
    #[error("stream name {0:?} has an empty id")]
    EmptyId(String),
    /// The name holds a control character.
    #[error("stream name contains a control character")]
    ControlCharacter,
    /// The name is longer than [`MAX_STREAM_NAME_BYTES`].
    #[error("stream name is {0} bytes long; the limit is {MAX_STREAM_NAME_BYTES}")]
    TooLong(usize),
}

impl StreamName {
    /// Parses `<category>-<id>`.
    pub fn parse(name: impl Into<String>) -> Result<Self, StreamNameError> {
        let name = name.into();
        if name.len() > MAX_STREAM_NAME_BYTES {
            return Err(StreamNameError::TooLong(name.len()));
        }
        if name.chars().any(char::is_control) {
            return Err(StreamNameError::ControlCharacter);
        }
        let Some((category, id)) = name.split_once('-') else {
            return Err(StreamNameError::MissingSeparator(name));
        };
        if !is_valid_category(category) {
            return Err(StreamNameError::BadCategory(category.to_owned()));
        }
        if id.is_empty() {
            return Err(StreamNameError::EmptyId(name));
        }
        Ok(Self(name))
    }

    /// Builds `<category>-<id>` from its parts.
    pub fn from_parts(category: &str, id: impl fmt::Display) -> Result<Self, StreamNameError> {
        Self::parse(format!("{category}-{id}"))
    }

    /// The whole name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The part before the first `-`.
    pub fn category(&self) -> &str {
        self.0.split_once('-').map_or("", |(category, _)| category)
    }

    /// The part after the first `-`.
    pub fn id(&self) -> &str {
        self.0.split_once('-').map_or("", |(_, id)| id)
    }
}

fn is_valid_category(category: &str) -> bool {
    let mut chars = category.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

impl TryFrom<String> for StreamName {
    type Error = StreamNameError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<StreamName> for String {
    fn from(value: StreamName) -> Self {
        value.0
    }
}

impl AsRef<str> for StreamName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StreamName({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_category_and_an_id_make_a_stream_name() {
        let name = StreamName::parse("server-42").unwrap();
        assert_eq!(name.category(), "server");
        assert_eq!(name.id(), "42");
    }

    #[test]
    fn the_id_may_hold_dashes_dots_wildcards_spaces_and_unicode() {
        let name = StreamName::parse("session-a-b.c*>  ünï🦀").unwrap();
        assert_eq!(name.category(), "session");
        assert_eq!(name.id(), "a-b.c*>  ünï🦀");
    }

    #[test]
    fn a_name_without_a_separator_is_refused() {
        assert!(matches!(StreamName::parse("server"), Err(StreamNameError::MissingSeparator(_))));
    }

    #[test]
    fn an_uppercase_or_dotted_category_is_refused() {
        assert!(matches!(StreamName::parse("Server-1"), Err(StreamNameError::BadCategory(_))));
        assert!(matches!(StreamName::parse("a.b-1"), Err(StreamNameError::BadCategory(_))));
        assert!(matches!(StreamName::parse("-1"), Err(StreamNameError::BadCategory(_))));
        assert!(matches!(StreamName::parse("1a-1"), Err(StreamNameError::BadCategory(_))));
    }

    #[test]
    fn an_empty_id_is_refused() {
        assert!(matches!(StreamName::parse("server-"), Err(StreamNameError::EmptyId(_))));
    }

    #[test]
    fn control_characters_and_overlong_names_are_refused() {
        assert_eq!(StreamName::parse("server-a\nb"), Err(StreamNameError::ControlCharacter));
        let long = format!("server-{}", "x".repeat(MAX_STREAM_NAME_BYTES));
        assert!(matches!(StreamName::parse(long), Err(StreamNameError::TooLong(_))));
    }

    #[test]
    fn deserializing_validates() {
        assert!(serde_json::from_str::<StreamName>("\"Bad\"").is_err());
        let name: StreamName = serde_json::from_str("\"user-7\"").unwrap();
        assert_eq!(name.as_str(), "user-7");
    }
}
