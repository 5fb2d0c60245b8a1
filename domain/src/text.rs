//! Free text that people type or identity providers send: reasons, display names, titles, key names.
//!
//! Every such field goes through one check, because what passes it is stored in the event log for ever
//! and read by every projection, export and screen after it. Refused: control characters (a U+0000 is
//! stored by the log but refused by PostgreSQL's `text`, which once stopped the audit trail), and the
//! invisible format characters that make a name look like another (bidirectional overrides and
//! isolates, zero-width characters, the byte-order mark, soft hyphens). Lengths are bounded in
//! characters. Text from an identity provider is not ours to refuse at a login: [`clean_line`] strips
//! what [`line`] would refuse.

/// Why a text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TextError {
    /// Nothing but spaces.
    #[error("is empty")]
    Empty,
    /// Longer than allowed.
    #[error("has more than {0} characters")]
    TooLong(usize),
    /// A control or invisible formatting character.
    #[error("has the character U+{0:04X}, a control or invisible formatting character")]
    Forbidden(u32),
}

/// Whether `c` is refused in any text: controls, and the invisible format characters that reorder or
/// hide what is shown.
pub fn is_forbidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{00AD}'                      // soft hyphen
            | '\u{061C}'                    // Arabic letter mark
            | '\u{180E}'                    // Mongolian vowel separator
            | '\u{200B}'..='\u{200F}'       // zero-width space, (non-)joiners, LRM, RLM
            | '\u{2028}' | '\u{2029}'       // line and paragraph separators
            | '\u{202A}'..='\u{202E}'       // bidirectional embeddings and overrides
            | '\u{2060}'..='\u{2064}'       // word joiner, invisible operators
            | '\u{2066}'..='\u{206F}'       // bidirectional isolates, deprecated formats
            | '\u{FEFF}'                    // byte-order mark, zero-width no-break space
            | '\u{FFF9}'..='\u{FFFB}' // interlinear annotations
        )
}

/// One line of text: trimmed, 1 to `max_chars` characters, nothing [`is_forbidden`].
pub fn line(input: &str, max_chars: usize) -> Result<String, TextError> {
    let text = input.trim();
    if text.is_empty() {
        return Err(TextError::Empty);
    }
    checked(text, max_chars, |_| false)
}

/// Like [`line`], but empty (or blank) input is `None`.
pub fn optional_line(input: Option<&str>, max_chars: usize) -> Result<Option<String>, TextError> {
    match input.map(str::trim).filter(|t| !t.is_empty()) {
        Some(text) => checked(text, max_chars, |_| false).map(Some),
        None => Ok(None),
    }
}

/// Several lines: trimmed, at most `max_chars` characters (empty allowed), newlines and tabs kept.
pub fn paragraphs(input: &str, max_chars: usize) -> Result<String, TextError> {
    checked(input.trim(), max_chars, |c| c == '\n' || c == '\t')
}

/// What is left of an identity provider's `input` once every character [`line`] refuses is dropped,
/// cut to `max_chars`; `None` when nothing is left.
pub fn clean_line(input: &str, max_chars: usize) -> Option<String> {
    let cleaned: String = input.chars().filter(|c| !is_forbidden(*c)).collect();
    let cleaned: String = cleaned.trim().chars().take(max_chars).collect();
    let cleaned = cleaned.trim_end();
    (!cleaned.is_empty()).then(|| cleaned.to_owned())
}

fn checked(text: &str, max_chars: usize, allowed: impl Fn(char) -> bool) -> Result<String, TextError> {
    if let Some(c) = text.chars().find(|c| is_forbidden(*c) && !allowed(*c)) {
        return Err(TextError::Forbidden(u32::from(c)));
    }
    if text.chars().count() > max_chars {
        return Err(TextError::TooLong(max_chars));
    }
    Ok(text.to_owned())
}

/// Longest reason an administrator gives, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// Longest name of a principal or a key, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// A reason given for a change: one line of 1 to [`MAX_REASON_CHARS`] characters.
pub fn reason(input: &str) -> Result<String, TextError> {
    line(input, MAX_REASON_CHARS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_trimmed_and_bounded() {
        assert_eq!(line("  a reason ", 10), Ok("a reason".to_owned()));
        assert_eq!(line("   ", 10), Err(TextError::Empty));
        assert_eq!(line("ééééé", 5), Ok("ééééé".to_owned()), "characters, not bytes");
        assert_eq!(line("ééééé", 4), Err(TextError::TooLong(4)));
    }

    #[test]
    fn controls_and_invisible_formatting_are_refused() {
        for bad in ["a\0b", "a\nb", "a\u{7f}", "a\u{202E}gnp.exe", "ad\u{200B}min", "\u{FEFF}x", "a\u{2066}b"] {
            assert!(matches!(line(bad, 100), Err(TextError::Forbidden(_))), "{bad:?}");
        }
        assert_eq!(line("a\0b", 100), Err(TextError::Forbidden(0)));
        assert_eq!(line("Zoë Ångström 山田", 100), Ok("Zoë Ångström 山田".to_owned()));
    }

    #[test]
    fn paragraphs_keep_newlines_and_tabs_only() {
        assert_eq!(paragraphs("a\n\tb", 10), Ok("a\n\tb".to_owned()));
        assert_eq!(paragraphs("", 10), Ok(String::new()));
        assert_eq!(paragraphs("a\r\nb", 10), Err(TextError::Forbidden(0x0D)));
    }

    #[test]
    fn text_from_an_identity_provider_is_cleaned_not_refused() {
        assert_eq!(clean_line(" Mal\0lory\u{202E} ", 100), Some("Mallory".to_owned()));
        assert_eq!(clean_line("\u{200B}\0", 100), None);
        assert_eq!(clean_line("abcdef", 3), Some("abc".to_owned()));
    }

    #[test]
    fn an_optional_line_may_be_absent_or_blank() {
        assert_eq!(optional_line(None, 5), Ok(None));
        assert_eq!(optional_line(Some("  "), 5), Ok(None));
        assert_eq!(optional_line(Some("key"), 5), Ok(Some("key".to_owned())));
        assert!(optional_line(Some("k\0"), 5).is_err());
    }
}
