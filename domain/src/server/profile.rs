//! What the catalogue shows about a server: title, description, tags.

use serde::{Deserialize, Serialize};

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 100;
/// Longest description, in characters: the official `server.json` bound, so that every export is valid.
pub const MAX_DESCRIPTION_CHARS: usize = 100;
/// Longest description in logs written before the official bound applied, in characters.
const MAX_STORED_DESCRIPTION_CHARS: usize = 2_000;
/// Most tags on one server.
pub const MAX_TAGS: usize = 16;
/// Longest tag, in bytes.
pub const MAX_TAG_BYTES: usize = 32;

/// Why a title, description or tag list was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProfileError {
    /// The title is empty, too long or has control characters.
    #[error("a title has 1 to {MAX_TITLE_CHARS} characters and no control or invisible formatting characters")]
    Title,
    /// The description is empty, too long or has control characters.
    #[error(
        "a description is one line of 1 to {MAX_DESCRIPTION_CHARS} characters (the official registry's bound) with no control or invisible formatting characters"
    )]
    Description,
    /// Too many tags.
    #[error("at most {MAX_TAGS} tags")]
    TooManyTags,
    /// A tag outside the syntax.
    #[error("tag {0:?}: a tag has 1 to {MAX_TAG_BYTES} lowercase letters, digits and `-`")]
    Tag(String),
}

/// A display title.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Title(String);

impl Title {
    /// Checks `title` (trimmed).
    pub fn parse(title: &str) -> Result<Self, ProfileError> {
        crate::text::line(title, MAX_TITLE_CHARS).map(Self).map_err(|_| ProfileError::Title)
    }

    /// The title.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What the server does, in one line. Logs written before the official bound applied may hold longer,
/// multi-line or empty descriptions: they are read back as they are (the lenient [`TryFrom<String>`]),
/// and the export shortens them ([`Description::summary`]).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Description(String);

impl Description {
    /// Checks a new description (trimmed).
    pub fn parse(description: &str) -> Result<Self, ProfileError> {
        crate::text::line(description, MAX_DESCRIPTION_CHARS).map(Self).map_err(|_| ProfileError::Description)
    }

    /// Reads a description from the log.
    fn stored(description: &str) -> Result<Self, ProfileError> {
        crate::text::paragraphs(description, MAX_STORED_DESCRIPTION_CHARS)
            .map(Self)
            .map_err(|_| ProfileError::Description)
    }

    /// The description within the official bound: its first line, cut to [`MAX_DESCRIPTION_CHARS`] with
    /// an ellipsis; `fallback` when it is empty (a description from an older log).
    pub fn summary(&self, fallback: &str) -> String {
        Self::summary_of(&self.0, fallback)
    }

    /// [`Description::summary`] of a description read from a read model.
    pub fn summary_of(description: &str, fallback: &str) -> String {
        let first = description.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or(fallback);
        if first.chars().count() <= MAX_DESCRIPTION_CHARS {
            return first.to_owned();
        }
        let cut: String = first.chars().take(MAX_DESCRIPTION_CHARS - 1).collect();
        format!("{}…", cut.trim_end())
    }

    /// The description.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A server's tags: distinct, sorted.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "Vec<String>", into = "Vec<String>")]
pub struct Tags(Vec<String>);

impl Tags {
    /// Checks each tag; duplicates collapse and the order is normalised.
    pub fn parse<I, S>(tags: I) -> Result<Self, ProfileError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out: Vec<String> = Vec::new();
        for tag in tags {
            let tag = tag.as_ref();
            let valid = !tag.is_empty()
                && tag.len() <= MAX_TAG_BYTES
                && tag.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !valid {
                return Err(ProfileError::Tag(tag.chars().take(MAX_TAG_BYTES + 8).collect()));
            }
            out.push(tag.to_owned());
        }
        out.sort();
        out.dedup();
        if out.len() > MAX_TAGS {
            return Err(ProfileError::TooManyTags);
        }
        Ok(Self(out))
    }

    /// The tags, sorted.
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }
}

impl TryFrom<String> for Title {
    type Error = ProfileError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Title> for String {
    fn from(value: Title) -> Self {
        value.0
    }
}

/// The lenient reading, for descriptions stored before the official bound applied.
impl TryFrom<String> for Description {
    type Error = ProfileError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::stored(&value)
    }
}

impl From<Description> for String {
    fn from(value: Description) -> Self {
        value.0
    }
}

impl TryFrom<Vec<String>> for Tags {
    type Error = ProfileError;
    fn try_from(value: Vec<String>) -> Result<Self, Self::Error> {
        Self::parse(value)
    }
}

impl From<Tags> for Vec<String> {
    fn from(tags: Tags) -> Self {
        tags.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_checked_deduplicated_and_sorted() {
        assert_eq!(Tags::parse(["b", "a", "b"]).unwrap().as_slice(), ["a", "b"]);
        assert_eq!(Tags::parse(["Bad"]), Err(ProfileError::Tag("Bad".into())));
        let many: Vec<String> = (0..17).map(|n| format!("t{n}")).collect();
        assert_eq!(Tags::parse(many), Err(ProfileError::TooManyTags));
    }

    #[test]
    fn titles_and_descriptions_have_limits() {
        assert!(Title::parse("  Weather  ").is_ok_and(|t| t.as_str() == "Weather"));
        assert_eq!(Title::parse(""), Err(ProfileError::Title));
        assert_eq!(Title::parse("a\u{7}b"), Err(ProfileError::Title));
        assert_eq!(Title::parse("Weather\u{202E}gnp"), Err(ProfileError::Title), "bidi override");
        assert_eq!(Title::parse("We\u{200B}ather"), Err(ProfileError::Title), "zero-width space");
        assert_eq!(Description::parse("line one\nline two"), Err(ProfileError::Description));
        assert_eq!(Description::parse(""), Err(ProfileError::Description));
        assert!(Description::parse(&"x".repeat(100)).is_ok());
        assert_eq!(Description::parse(&"x".repeat(101)), Err(ProfileError::Description));
    }

    #[test]
    fn descriptions_from_older_logs_are_read_and_summarised_within_the_bound() {
        let old: Description = serde_json::from_str(&format!("\"{}\\nmore\"", "y".repeat(300))).unwrap();
        let summary = old.summary("io.example/w");
        assert_eq!(summary.chars().count(), 100);
        assert!(summary.ends_with('…'));
        let empty: Description = serde_json::from_str("\"\"").unwrap();
        assert_eq!(empty.summary("io.example/w"), "io.example/w");
    }
}
