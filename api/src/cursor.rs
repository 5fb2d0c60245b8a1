//! Opaque pagination cursors.

use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::problem::Problem;

/// The cursor for "after `name`".
pub fn encode(name: &str) -> String {
    URL_SAFE_NO_PAD.encode(name)
}

/// The name a cursor stands for.
pub fn decode(cursor: &str) -> Result<String, Problem> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .filter(|name| !name.chars().any(char::is_control))
        .ok_or_else(|| Problem::new(StatusCode::BAD_REQUEST, "invalid-cursor", "Invalid cursor"))
}
