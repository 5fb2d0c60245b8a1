//! Client ID metadata documents (MCP 2025-11-25, draft-ietf-oauth-client-id-metadata-document): a client
//! whose `client_id` is an https URL publishes its metadata there instead of registering. The gateway
//! fetches the document (the fetch itself, with its SSRF guard and limits, lives in the API crate) and
//! checks it here: it must name itself, use no secret, and pass the registration rules.

use serde_json::Value;

use super::client::{ClientMetadata, RegisteredMetadata, RegistrationError, TokenEndpointAuthMethod};

/// Largest document accepted, in bytes (FastMCP and the draft's advice: a few KiB).
pub const MAX_DOCUMENT_BYTES: usize = 5 * 1024;

/// Longest client id URL accepted, in bytes.
const MAX_CLIENT_ID_URL_BYTES: usize = 2_048;

/// Why a client id URL or its document is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataDocumentError {
    /// The client id is not a URL a document may live at.
    #[error("a client id URL is https, with a path, without fragment, credentials or dot segments: {0}")]
    ClientIdUrl(&'static str),
    /// The document could not be had (network, status, size, type): said by the fetcher.
    #[error("the client's metadata document could not be fetched: {0}")]
    Fetch(String),
    /// Not a JSON object.
    #[error("the client's metadata document is not a JSON object")]
    NotJson,
    /// The document names another client.
    #[error("the document's client_id is not the URL it was fetched from")]
    ClientIdMismatch,
    /// A shared secret: a public document cannot hold one.
    #[error("a metadata document client authenticates with none (no shared secret)")]
    SecretMethod,
    /// The registration rules.
    #[error("{0}")]
    Metadata(#[from] RegistrationError),
}

/// Whether `client_id` is a URL (a metadata document client) rather than an id the gateway issued.
pub fn is_document_client_id(client_id: &str) -> bool {
    client_id.starts_with("https://") || client_id.starts_with("http://")
}

/// Checks the form of a client id URL: https (plain http only when `http_allowed`, for a host an
/// operator trusts), a path other than `/`, no fragment, no user information, no `.` or `..` segment.
pub fn check_client_id_url(client_id: &str, http_allowed: bool) -> Result<url::Url, MetadataDocumentError> {
    let refuse = MetadataDocumentError::ClientIdUrl;
    if client_id.len() > MAX_CLIENT_ID_URL_BYTES {
        return Err(refuse("too long"));
    }
    // Dot segments are refused as written: the parser would resolve them away.
    let path_part = client_id.split_once("://").map_or("", |(_, rest)| rest);
    if path_part.split(['/', '?', '#']).skip(1).any(|segment| segment == "." || segment == "..") {
        return Err(refuse("dot segment"));
    }
    let url = url::Url::parse(client_id).map_err(|_| refuse("not a URL"))?;
    match url.scheme() {
        "https" => {}
        "http" if http_allowed => {}
        _ => return Err(refuse("not https")),
    }
    if url.fragment().is_some() {
        return Err(refuse("fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(refuse("credentials"));
    }
    if url.path() == "/" || url.path().is_empty() {
        return Err(refuse("no path"));
    }
    // The id is compared byte for byte with the document's: it must already be in the parser's form.
    if url.as_str() != client_id {
        return Err(refuse("not in normal form"));
    }
    Ok(url)
}

/// The registered metadata of the document `body` fetched from `client_id`.
pub fn read_document(client_id: &str, body: &[u8]) -> Result<RegisteredMetadata, MetadataDocumentError> {
    if body.len() > MAX_DOCUMENT_BYTES {
        return Err(MetadataDocumentError::Fetch(format!("larger than {MAX_DOCUMENT_BYTES} bytes")));
    }
    let document: Value = serde_json::from_slice(body).map_err(|_| MetadataDocumentError::NotJson)?;
    if !document.is_object() {
        return Err(MetadataDocumentError::NotJson);
    }
    if document.get("client_id").and_then(Value::as_str) != Some(client_id) {
        return Err(MetadataDocumentError::ClientIdMismatch);
    }
    if document.get("client_secret").is_some() {
        return Err(MetadataDocumentError::SecretMethod);
    }
    let metadata: ClientMetadata = serde_json::from_value(document).map_err(|_| MetadataDocumentError::NotJson)?;
    let metadata = metadata.check()?;
    if metadata.token_endpoint_auth_method != TokenEndpointAuthMethod::None {
        return Err(MetadataDocumentError::SecretMethod);
    }
    Ok(metadata)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "https://app.example.com/oauth/client.json";

    fn document(extra: serde_json::Value) -> Vec<u8> {
        let mut doc = serde_json::json!({ "client_id": ID, "client_name": "App",
                                          "redirect_uris": ["http://localhost/callback"] });
        if let (Some(doc), Some(extra)) = (doc.as_object_mut(), extra.as_object()) {
            doc.extend(extra.clone());
        }
        serde_json::to_vec(&doc).unwrap()
    }

    #[test]
    fn a_client_id_url_is_https_with_a_path_and_nothing_hidden() {
        assert!(check_client_id_url(ID, false).is_ok());
        for bad in [
            "http://app.example.com/client.json",
            "https://app.example.com",
            "https://app.example.com/",
            "https://app.example.com/c.json#x",
            "https://user@app.example.com/c.json",
            "https://app.example.com/a/../c.json",
            "https://app.example.com/./c.json",
            "https://APP.example.com/c.json",
            "ftp://app.example.com/c.json",
        ] {
            assert!(check_client_id_url(bad, false).is_err(), "{bad}");
        }
        assert!(check_client_id_url("http://127.0.0.1:9/c.json", true).is_ok(), "an operator's trusted host");
        assert!(is_document_client_id(ID) && !is_document_client_id("0190c9c5-0000-7000-8000-000000000000"));
    }

    #[test]
    fn a_document_names_itself_and_holds_no_secret() {
        let metadata = read_document(ID, &document(serde_json::json!({}))).unwrap();
        assert_eq!(metadata.client_name.as_deref(), Some("App"));
        assert_eq!(metadata.token_endpoint_auth_method, TokenEndpointAuthMethod::None);
        let cases = [
            (document(serde_json::json!({ "client_id": "https://evil.example/c.json" })), "mismatch"),
            (document(serde_json::json!({ "token_endpoint_auth_method": "client_secret_post" })), "secret"),
            (document(serde_json::json!({ "client_secret": "s" })), "secret"),
            (document(serde_json::json!({ "redirect_uris": [] })), "metadata"),
            (document(serde_json::json!({ "redirect_uris": ["javascript:alert(1)"] })), "redirect"),
            (b"[1,2]".to_vec(), "json"),
            (b"<html>".to_vec(), "json"),
            (vec![b' '; MAX_DOCUMENT_BYTES + 1], "size"),
        ];
        for (body, what) in cases {
            assert!(read_document(ID, &body).is_err(), "{what}");
        }
    }
}
