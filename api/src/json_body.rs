//! Request bodies: size and nesting limits, then strict JSON, each failure a clear 4xx.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use serde::de::DeserializeOwned;

use crate::problem::Problem;

/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 64 * 1024;
/// Deepest JSON nesting accepted.
pub const MAX_DEPTH: usize = 32;

/// The body's bytes, or 413/400.
pub fn bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Problem> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Problem::new(StatusCode::PAYLOAD_TOO_LARGE, "body-too-large", "Body too large")
                .detail(format!("request bodies are limited to {MAX_BODY_BYTES} bytes"))
        } else {
            Problem::new(StatusCode::BAD_REQUEST, "unreadable-body", "Body could not be read")
        }
    })
}

/// Parses `body` as `T`: 400 for malformed or too deeply nested JSON, 422 for JSON of the wrong shape
/// (unknown fields included).
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Problem> {
    if depth(body) > MAX_DEPTH {
        return Err(Problem::new(StatusCode::BAD_REQUEST, "too-deep", "JSON nested too deeply")
            .detail(format!("at most {MAX_DEPTH} levels of nesting")));
    }
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => {
            Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-body", "Invalid request body").detail(e.to_string())
        }
        _ => Problem::new(StatusCode::BAD_REQUEST, "malformed-json", "Malformed JSON").detail(e.to_string()),
    })
}

/// The deepest nesting of arrays and objects, outside strings.
fn depth(body: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in body {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nesting_is_counted_outside_strings() {
        assert_eq!(depth(br#"{"a":[1,{"b":"[[[["}]}"#), 3);
        assert_eq!(depth(br#""\"{""#), 0);
    }
}
