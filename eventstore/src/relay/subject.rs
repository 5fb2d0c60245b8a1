//! NATS subjects for streams: `<prefix>.<category>.<escaped id>`.
//!
//! A stream id may hold any printable character, but in a subject `.` separates tokens, `*` and `>` are
//! wildcards and whitespace ends the subject. The id is percent-encoded (everything but ASCII letters,
//! digits, `-` and `_`), so it is always exactly one literal token, and distinct ids give distinct tokens.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use crate::StreamName;

/// Bytes escaped in the id token: all but ASCII letters, digits, `-` and `_`.
const ESCAPED: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_');

/// The subject events of `stream` are published on.
pub fn subject_for(prefix: &str, stream: &StreamName) -> String {
    format!("{prefix}.{}.{}", stream.category(), utf8_percent_encode(stream.id(), ESCAPED))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wildcards_separators_and_spaces_stay_inside_one_token() {
        let stream = StreamName::from_parts("server", "a.b *> c/é%").unwrap();
        assert_eq!(subject_for("reg.evt", &stream), "reg.evt.server.a%2Eb%20%2A%3E%20c%2F%C3%A9%25");
    }

    proptest! {
        #[test]
        fn every_id_is_one_literal_token_and_ids_stay_distinct(a in "\\PC{1,40}", b in "\\PC{1,40}") {
            let (Ok(sa), Ok(sb)) = (StreamName::from_parts("s", &a), StreamName::from_parts("s", &b)) else {
                return Ok(());
            };
            let (ta, tb) = (subject_for("p", &sa), subject_for("p", &sb));
            let tokens: Vec<&str> = ta.split('.').collect();
            prop_assert_eq!(tokens.len(), 3);
            prop_assert!(!tokens[2].contains(['*', '>', ' ', '\t', '\n', '\r']));
            prop_assert!(!tokens[2].is_empty());
            prop_assert_eq!(ta == tb, a == b);
        }
    }
}
