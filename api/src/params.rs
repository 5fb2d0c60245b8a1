//! Query parameters: text that PostgreSQL can store and compare (no control characters, bounded).

use std::collections::HashMap;

use axum::http::StatusCode;

use crate::problem::Problem;

/// The pairs of a query string or form body, each name at most once: with two values for one name, which
/// counts would be a guess (and OAuth forbids it, RFC 6749 §3.1). `Err` names the repeated parameter.
pub fn unique_pairs(raw: &[u8]) -> Result<HashMap<String, String>, String> {
    let mut pairs = HashMap::new();
    for (name, value) in url::form_urlencoded::parse(raw).into_owned() {
        if pairs.contains_key(&name) {
            return Err(name);
        }
        pairs.insert(name, value);
    }
    Ok(pairs)
}

/// Longest text parameter accepted.
const MAX_PARAM_CHARS: usize = 512;

/// `value`, when it is acceptable text.
pub fn text(name: &'static str, value: Option<String>) -> Result<Option<String>, Problem> {
    match value {
        Some(v) if v.chars().count() > MAX_PARAM_CHARS || v.chars().any(char::is_control) => {
            Err(Problem::new(StatusCode::BAD_REQUEST, "invalid-parameter", "Invalid parameter")
                .field(name)
                .detail(format!("at most {MAX_PARAM_CHARS} characters, no control characters")))
        }
        other => Ok(other),
    }
}

/// `value`, when it is one of `allowed`: a filter on a value that can never match is a mistake to say,
/// not an empty page to return.
pub fn one_of(name: &'static str, value: Option<String>, allowed: &[&str]) -> Result<Option<String>, Problem> {
    match value {
        Some(v) if !allowed.contains(&v.as_str()) => {
            Err(Problem::new(StatusCode::BAD_REQUEST, "invalid-parameter", "Invalid parameter")
                .field(name)
                .detail(format!("one of: {}", allowed.join(", "))))
        }
        other => Ok(other),
    }
}
