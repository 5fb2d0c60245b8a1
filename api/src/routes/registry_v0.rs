//! `/v0.1/servers`: the catalogue in the official MCP registry's API (the 2025-12 generic registry API)
//! and `server.json` shape, for MCP clients and sub-registries that read a registry.
//!
//! Every release of every server is an entry; suspended and deleted servers keep theirs, with a
//! non-active status (`deprecated`, `deleted`) in the official `_meta` block, so that a client that
//! synchronises with `updated_since` learns of them. Errors have the official shape, `{"error": "…"}`.
//! A remote in a document is the gateway's own MCP endpoint for the server, never the upstream's URL:
//! clients reach servers through the gateway, and the catalogue (public by default) does not map the
//! network behind it.

use axum::Router;
use axum::extract::{FromRequestParts, Path, RawQuery, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use domain::authz::Action;
use projections::registry::{VersionEntry, VersionFilter, VersionSelector};
use serde_json::{Value, json};

use crate::auth::Caller;
use crate::problem::Problem;
use crate::state::AppState;

/// The `server.json` schema the documents follow.
pub const SCHEMA: &str = "https://static.modelcontextprotocol.io/schemas/2025-12-11/server.schema.json";

/// Entries per page when the client does not say, and the most it may ask for (as the official
/// registry: more is cut to this).
const DEFAULT_LIMIT: u32 = 30;
const MAX_LIMIT: u32 = 100;

/// The routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v0.1/servers", get(list))
        .route("/v0.1/servers/{name}/versions", get(versions))
        .route("/v0.1/servers/{name}/versions/{version}", get(version))
}

/// The official error body.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong.
    error: String,
}

/// An error in the official shape, `{"error": "…"}` as `application/json`, keeping what the gateway's
/// own problem carried besides its body (the `WWW-Authenticate` challenge, the audit marks).
pub(crate) struct RegistryError(Problem);

impl RegistryError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self(Problem::new(status, "registry", "Registry error").detail(message.into()))
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Server not found")
    }

    fn unavailable() -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "the catalogue is unreachable; try again")
    }
}

impl From<Problem> for RegistryError {
    fn from(problem: Problem) -> Self {
        Self(problem)
    }
}

impl IntoResponse for RegistryError {
    fn into_response(self) -> Response {
        let message = self.0.detail.clone().unwrap_or_else(|| self.0.title.to_owned());
        let mut response = self.0.into_response();
        *response.body_mut() = axum::body::Body::from(json!(ErrorBody { error: message }).to_string());
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        response.headers_mut().remove(header::CONTENT_LENGTH);
        response
    }
}

/// A caller allowed to read the catalogue: anyone when reads are public, else an authenticated caller
/// with the permission.
pub(crate) struct Reader;

impl FromRequestParts<AppState> for Reader {
    type Rejection = RegistryError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        if state.registry_reads == crate::registry_reads::RegistryReads::Public {
            return Ok(Reader);
        }
        let caller = Caller::from_request_parts(parts, state).await?;
        caller.authorize(state, Action::ReadServers, "registry").await?;
        Ok(Reader)
    }
}

/// One release as the official `ServerResponse`: `server.json` and the registry's metadata.
fn document<'a>(entry: &'a VersionEntry, issuer: &str) -> Document<'a> {
    let status = match entry.status.as_str() {
        "active" => "active",
        "deleted" => "deleted",
        // Suspended: listed, not routed. The official statuses have no such state; `deprecated` is the
        // one that tells clients not to rely on it, and the gateway's block says which it is.
        _ => "deprecated",
    };
    Document {
        server: ServerJson {
            schema: SCHEMA,
            name: &entry.name,
            description: domain::server::Description::summary_of(&entry.description, &entry.name),
            version: &entry.version,
            remotes: [Remote { kind: "streamable-http", url: format!("{issuer}/servers/{}/mcp", entry.server_id) }],
            title: entry.title.as_deref(),
            repository: entry.repository.as_ref().map(|r| &r.0),
            packages: Some(&entry.packages.0).filter(|p| p.as_array().is_some_and(|p| !p.is_empty())),
        },
        meta: Meta {
            official: Official {
                status,
                published_at: entry.published_at,
                updated_at: entry.updated_at,
                is_latest: entry.is_latest,
                status_message: entry.status_message.as_ref().map(|m| m.chars().take(500).collect()),
                status_changed_at: entry.status_changed_at,
            },
            gateway: GatewayMeta { server_id: entry.server_id, status: &entry.status },
        },
    }
}

/// The official `ServerList` (of documents, or of documents rendered already).
#[derive(serde::Serialize)]
struct ServerList<S> {
    servers: Vec<S>,
    metadata: ListMetadata,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct ListMetadata {
    count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    next_cursor: Option<String>,
}

/// One entry of the official `ServerList`: typed, so a page is written straight to its bytes.
#[derive(serde::Serialize)]
struct Document<'a> {
    server: ServerJson<'a>,
    #[serde(rename = "_meta")]
    meta: Meta<'a>,
}

#[derive(serde::Serialize)]
struct ServerJson<'a> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    name: &'a str,
    description: String,
    version: &'a str,
    remotes: [Remote; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    title: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    repository: Option<&'a Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    packages: Option<&'a Value>,
}

#[derive(serde::Serialize)]
struct Remote {
    #[serde(rename = "type")]
    kind: &'static str,
    url: String,
}

/// `_meta`.
#[derive(serde::Serialize)]
struct Meta<'a> {
    /// The official block of registry metadata.
    #[serde(rename = "io.modelcontextprotocol.registry/official")]
    official: Official,
    /// The gateway's own block: what the official statuses cannot say.
    #[serde(rename = "dev.mcp-gateway/server")]
    gateway: GatewayMeta<'a>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Official {
    status: &'static str,
    published_at: chrono::DateTime<chrono::Utc>,
    updated_at: chrono::DateTime<chrono::Utc>,
    is_latest: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    status_changed_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct GatewayMeta<'a> {
    server_id: uuid::Uuid,
    status: &'a str,
}

/// The query parameters, each at most once.
fn parameters(raw: Option<String>) -> Result<std::collections::HashMap<String, String>, RegistryError> {
    let parameters = crate::params::unique_pairs(raw.unwrap_or_default().as_bytes())
        .map_err(|name| RegistryError::bad_request(format!("{name} is given more than once")))?;
    for (key, value) in &parameters {
        if value.chars().count() > 200 || value.chars().any(char::is_control) {
            return Err(RegistryError::bad_request(format!("{key}: at most 200 characters, no control characters")));
        }
    }
    Ok(parameters)
}

fn boolean(parameters: &std::collections::HashMap<String, String>, name: &str) -> Result<bool, RegistryError> {
    match parameters.get(name).map(String::as_str) {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(_) => Err(RegistryError::bad_request(format!("{name} is true or false"))),
    }
}

/// A cursor: the `(name, seq)` of the last entry of the page before.
fn encode_cursor((name, seq): &(String, i64)) -> String {
    crate::cursor::encode(&format!("{seq}:{name}"))
}

fn decode_cursor(cursor: &str) -> Result<(String, i64), RegistryError> {
    let invalid = || RegistryError::bad_request("cursor is not one this registry returned");
    let text = crate::cursor::decode(cursor).map_err(|_| invalid())?;
    let (seq, name) = text.split_once(':').ok_or_else(invalid)?;
    Ok((name.to_owned(), seq.parse().map_err(|_| invalid())?))
}

#[utoipa::path(get, path = "/v0.1/servers", operation_id = "registry_list_servers", tag = "registry",
    description = "Every release of every server, in name order, as the official registry lists them. Suspended servers are `deprecated` and deleted ones `deleted` in the official `_meta` block; deleted ones only with `include_deleted=true` or `updated_since`.",
    params(
        ("cursor" = Option<String>, Query, description = "`metadata.nextCursor` of the page before"),
        ("limit" = Option<u32>, Query, description = "entries per page, 1 to 100 (more is cut to 100) [default: 30]"),
        ("search" = Option<String>, Query, description = "a substring of the name, case-insensitive"),
        ("updated_since" = Option<String>, Query, description = "entries changed after this RFC 3339 time, deleted ones included"),
        ("version" = Option<String>, Query, description = "`latest`, or an exact version"),
        ("include_deleted" = Option<bool>, Query, description = "list deleted servers' releases too"),
    ),
    responses(
        (status = 200, description = "a page of releases in the official `ServerList` shape", body = Object, content_type = "application/json"),
        (status = 400, description = "a parameter the registry cannot use", body = ErrorBody, content_type = "application/json"),
        (status = 401, description = "reads are authenticated here and no valid credential was sent", body = ErrorBody, content_type = "application/json"),
        (status = 403, description = "the caller may not read the catalogue", body = ErrorBody, content_type = "application/json"),
        (status = 503, description = "the catalogue is unreachable", body = ErrorBody, content_type = "application/json"),
    ),
    security((), ("api_key" = [])))]
pub(crate) async fn list(
    State(state): State<AppState>,
    _reader: Reader,
    RawQuery(query): RawQuery,
) -> Result<Response, RegistryError> {
    let parameters = parameters(query)?;
    let limit = match parameters.get("limit") {
        None => DEFAULT_LIMIT,
        Some(limit) => match limit.parse::<u64>() {
            Ok(0) | Err(_) => return Err(RegistryError::bad_request("limit is a whole number from 1 to 100")),
            Ok(n) => u32::try_from(n.min(u64::from(MAX_LIMIT))).unwrap_or(MAX_LIMIT),
        },
    };
    let updated_since = parameters
        .get("updated_since")
        .map(|t| chrono::DateTime::parse_from_rfc3339(t).map(|t| t.to_utc()))
        .transpose()
        .map_err(|_| RegistryError::bad_request("updated_since is an RFC 3339 time (2025-08-07T13:15:04Z)"))?;
    let filter = VersionFilter {
        search: parameters.get("search").filter(|s| !s.is_empty()).cloned(),
        // As the official registry: a client synchronising changes must learn of deletions.
        include_deleted: boolean(&parameters, "include_deleted")? || updated_since.is_some(),
        updated_since,
        version: parameters.get("version").map(|v| VersionSelector::parse(v)),
        after: parameters.get("cursor").map(|c| decode_cursor(c)).transpose()?,
        limit,
    };
    let issuer = state.tokens.issuer();
    let render = |entry: &VersionEntry| serde_json::value::to_raw_value(&document(entry, issuer));
    let page = state
        .registry
        .versions_rendered(&filter, &state.registry_documents, render)
        .await
        .map_err(|_| RegistryError::unavailable())?;
    let servers: Vec<&serde_json::value::RawValue> = page.documents.iter().map(|d| &**d).collect();
    let metadata = ListMetadata { count: servers.len(), next_cursor: page.next.as_ref().map(encode_cursor) };
    Ok(crate::rendered_page::json(&ServerList { servers, metadata }, page.documents.iter().map(|d| &**d)))
}

#[utoipa::path(get, path = "/v0.1/servers/{name}/versions", operation_id = "registry_server_versions", tag = "registry",
    description = "Every release of the server named `name` (URL-encoded: `io.example%2Fweather`), newest first.",
    params(("name" = String, Path, description = "the server's name, URL-encoded"), ("include_deleted" = Option<bool>, Query, description = "a deleted server's releases too")),
    responses(
        (status = 200, description = "the releases in the official `ServerList` shape", body = Object, content_type = "application/json"),
        (status = 400, description = "a parameter the registry cannot use", body = ErrorBody, content_type = "application/json"),
        (status = 401, description = "reads are authenticated here and no valid credential was sent", body = ErrorBody, content_type = "application/json"),
        (status = 403, description = "the caller may not read the catalogue", body = ErrorBody, content_type = "application/json"),
        (status = 404, description = "no server of that name", body = ErrorBody, content_type = "application/json"),
        (status = 503, description = "the catalogue is unreachable", body = ErrorBody, content_type = "application/json"),
    ),
    security((), ("api_key" = [])))]
pub(crate) async fn versions(
    State(state): State<AppState>,
    _reader: Reader,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, RegistryError> {
    let include_deleted = boolean(&parameters(query)?, "include_deleted")?;
    let entries =
        state.registry.versions_named(&name, include_deleted).await.map_err(|_| RegistryError::unavailable())?;
    if entries.is_empty() {
        return Err(RegistryError::not_found());
    }
    let issuer = state.tokens.issuer();
    let servers: Vec<Document> = entries.iter().map(|e| document(e, issuer)).collect();
    let metadata = ListMetadata { count: servers.len(), next_cursor: None };
    Ok(axum::Json(ServerList { servers, metadata }).into_response())
}

#[utoipa::path(get, path = "/v0.1/servers/{name}/versions/{version}", operation_id = "registry_server_version", tag = "registry",
    description = "One release of the server named `name`; `latest` is its current one.",
    params(("name" = String, Path, description = "the server's name, URL-encoded"), ("version" = String, Path, description = "an exact version (URL-encoded), or `latest`"), ("include_deleted" = Option<bool>, Query, description = "a deleted server's release too")),
    responses(
        (status = 200, description = "the release in the official `ServerResponse` shape", body = Object, content_type = "application/json"),
        (status = 400, description = "a parameter the registry cannot use", body = ErrorBody, content_type = "application/json"),
        (status = 401, description = "reads are authenticated here and no valid credential was sent", body = ErrorBody, content_type = "application/json"),
        (status = 403, description = "the caller may not read the catalogue", body = ErrorBody, content_type = "application/json"),
        (status = 404, description = "no such server or release", body = ErrorBody, content_type = "application/json"),
        (status = 503, description = "the catalogue is unreachable", body = ErrorBody, content_type = "application/json"),
    ),
    security((), ("api_key" = [])))]
pub(crate) async fn version(
    State(state): State<AppState>,
    _reader: Reader,
    Path((name, version)): Path<(String, String)>,
    RawQuery(query): RawQuery,
) -> Result<Response, RegistryError> {
    let include_deleted = boolean(&parameters(query)?, "include_deleted")?;
    let selector = VersionSelector::parse(&version);
    let entry = state
        .registry
        .version_named(&name, &selector, include_deleted)
        .await
        .map_err(|_| RegistryError::unavailable())?
        .ok_or_else(RegistryError::not_found)?;
    Ok(axum::Json(document(&entry, state.tokens.issuer())).into_response())
}
