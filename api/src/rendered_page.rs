//! A page of documents rendered already, written as one JSON body sized up front.
//!
//! A catalogue page is twenty documents of about a kilobyte each; `axum::Json` starts its buffer at 128
//! bytes and doubles it, copying the page some eight times over. The documents' lengths are known, so the
//! body is allocated once.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::value::RawValue;

/// What a page's envelope (its field names, cursor and separators) takes besides its documents, at most.
const ENVELOPE_BYTES: usize = 512;

/// `page` as a JSON response; `documents` are the rendered documents it holds (for the body's size).
pub(crate) fn json<'a, T: Serialize>(page: &T, documents: impl IntoIterator<Item = &'a RawValue>) -> Response {
    let capacity = documents.into_iter().map(|document| document.get().len() + 1).sum::<usize>() + ENVELOPE_BYTES;
    let mut body = Vec::with_capacity(capacity);
    match serde_json::to_writer(&mut body, page) {
        Ok(()) => ([(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body).into_response(),
        // Serialising rendered documents and plain fields cannot fail; should it, say so as `axum::Json` does.
        Err(error) => (StatusCode::INTERNAL_SERVER_ERROR, error.to_string()).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct Page<'a> {
        servers: Vec<&'a RawValue>,
        next: Option<&'a str>,
    }

    #[tokio::test]
    async fn a_page_is_the_json_axum_would_write() {
        let documents: Vec<Box<RawValue>> =
            (0..20).map(|n| serde_json::value::to_raw_value(&serde_json::json!({"n": n, "x": "y"})).unwrap()).collect();
        let page = Page { servers: documents.iter().map(|d| &**d).collect(), next: Some("abc") };
        let ours = json(&page, page.servers.iter().copied());
        let theirs = axum::Json(&page).into_response();
        assert_eq!(ours.status(), StatusCode::OK);
        assert_eq!(ours.headers().get(header::CONTENT_TYPE), theirs.headers().get(header::CONTENT_TYPE));
        let ours = axum::body::to_bytes(ours.into_body(), usize::MAX).await.unwrap();
        let theirs = axum::body::to_bytes(theirs.into_body(), usize::MAX).await.unwrap();
        assert_eq!(ours, theirs);
    }
}
