//! The API key format: `mgw_` followed by 43 base64url characters (256 random bits).

/// Every gateway API key starts with this, so that secret scanners can find leaked keys.
pub const API_KEY_PREFIX: &str = "mgw_";

/// Length of the random part (32 bytes in unpadded base64url).
const RANDOM_CHARS: usize = 43;

/// The SHA-256 of an API key, hex: what events and read models keep.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ApiKeyDigest(pub String);

/// Checks the shape of a presented key: the prefix and 43 base64url characters. Shape only; whether the
/// key exists is the read model's question.
pub fn parse_api_key(presented: &str) -> Option<&str> {
    let random = presented.strip_prefix(API_KEY_PREFIX)?;
    let shape =
        random.len() == RANDOM_CHARS && random.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    shape.then_some(presented)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_keys_pass() {
        let key = format!("mgw_{}", "A".repeat(43));
        assert_eq!(parse_api_key(&key), Some(key.as_str()));
        assert_eq!(parse_api_key(&format!("mgw_{}", "A".repeat(42))), None);
        assert_eq!(parse_api_key(&format!("xyz_{}", "A".repeat(43))), None);
        assert_eq!(parse_api_key(&format!("mgw_{}+", "A".repeat(42))), None);
    }
}
