//! The OpenAPI document, generated from the handlers and types (`GET /api/v1/openapi.json`).

use axum::Router;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{audit, connections, login, ops, registry_v0, servers, tokens, users};
use crate::state::AppState;

#[derive(OpenApi)]
#[openapi(
    info(title = "MCP Registry Gateway", description = "Registry of MCP servers and the gateway in front of them."),
    paths(
        servers::register,
        servers::list,
        servers::read,
        servers::update,
        servers::suspend,
        servers::resume,
        servers::rotate_credential,
        servers::change_tool_rules,
        servers::deregister,
        servers::permissions,
        connections::connect,
        connections::callback,
        connections::disconnect,
        audit::list,
        audit::verify,
        audit::hash,
        audit::keys,
        audit::export,
        audit::one,
        registry_v0::list,
        registry_v0::versions,
        crate::oauth::discovery::authorization_server,
        crate::oauth::discovery::authorization_server_for_server,
        crate::oauth::discovery::umbrella_resource,
        crate::oauth::discovery::server_resource,
        crate::oauth::registration::register,
        crate::oauth::authorize::authorize,
        crate::oauth::authorize::consent,
        crate::oauth::authorize::callback,
        crate::oauth::token::token,
        crate::oauth::revocation::revoke,
        crate::routes::oauth_clients::list,
        crate::routes::oauth_clients::revoke,
        crate::routes::grants::my_grants,
        crate::routes::grants::revoke_my_grant,
        crate::routes::servers::test_connection,
        crate::routes::mcp::call,
        crate::routes::mcp::stream,
        crate::routes::mcp::end,
        registry_v0::version,
        crate::routes::analytics::usage,
        crate::routes::analytics::series,
        ops::health,
        ops::ready,
        ops::metrics,
        openapi_json,
        users::me,
        users::list,
        users::read,
        users::create,
        users::grant,
        users::revoke,
        users::disable,
        users::enable,
        users::issue_key,
        users::list_keys,
        users::revoke_key,
        users::enroll_totp,
        users::verify_totp,
        users::approve_mfa,
        tokens::issue,
        tokens::jwks,
        login::login,
        login::callback,
        login::refresh,
        login::my_sessions,
        login::user_sessions,
        login::end_my_session,
        login::end_user_session
    ),
    components(schemas(crate::problem::Problem, registry_v0::ErrorBody)),
    modifiers(&ApiKeyAuth, &Conventions)
)]
struct ApiDoc;

/// What holds for every operation, applied to all of them here rather than repeated in each handler's
/// annotation (where it could be forgotten):
/// - the answers every layer below the handler may give: 400 for a malformed path or query; with
///   authentication 401, 403 (the decision, CSRF) and 503 (the authorization model loading or lagging);
///   with a path parameter 404; with a body 422; for every write under `/api` 413 and 415 (the body
///   limit and the JSON-body layer answer whatever the handler declares);
/// - every response has a description (its status's reason phrase when the handler gives none);
/// - error bodies are `application/problem+json`, as sent (except where a standard fixes another
///   shape: see [`errors_follow_a_standard`]).
struct Conventions;

/// Whether `path` answers errors in the shape a standard fixes rather than as problem documents (see
/// [`crate::problem::error_media_type`]). Their operations declare every answer themselves.
pub fn errors_follow_a_standard(path: &str) -> bool {
    crate::problem::error_media_type(path) != "application/problem+json"
}

impl Conventions {
    /// The statuses an operation answers beyond its handler's own.
    fn implied(path: &str, write: bool, operation: &utoipa::openapi::path::Operation) -> Vec<u16> {
        use utoipa::openapi::path::ParameterIn;
        let parameters = operation.parameters.iter().flatten().filter_map(|p| match p {
            utoipa::openapi::RefOr::T(p) => Some(p),
            utoipa::openapi::RefOr::Ref(_) => None,
        });
        let (mut in_path, mut reason) = (false, false);
        for parameter in parameters {
            in_path |= matches!(parameter.parameter_in, ParameterIn::Path);
            reason |= parameter.name == "reason";
        }
        let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
        let mut statuses = vec![400];
        if secured {
            statuses.extend([401, 403, 503]);
        }
        if in_path {
            statuses.push(404);
        }
        if operation.request_body.is_some() {
            statuses.push(422);
        }
        if write && path.starts_with("/api/") {
            statuses.extend([413, 415]);
        }
        if reason {
            statuses.push(422);
        }
        statuses
    }
}

impl Modify for Conventions {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::RefOr;
        let problem = || {
            utoipa::openapi::ResponseBuilder::new()
                .content(
                    "application/problem+json",
                    utoipa::openapi::ContentBuilder::new()
                        .schema(Some(utoipa::openapi::Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let operations = [
                (&mut item.get, false),
                (&mut item.put, true),
                (&mut item.post, true),
                (&mut item.delete, false),
                (&mut item.patch, true),
                (&mut item.head, false),
                (&mut item.options, false),
            ];
            let standard = errors_follow_a_standard(path);
            for (operation, write) in operations {
                let Some(operation) = operation else { continue };
                let implied = if standard { Vec::new() } else { Self::implied(path, write, operation) };
                for status in implied {
                    operation.responses.responses.entry(status.to_string()).or_insert_with(|| problem().into());
                }
                // Every rate-limited route may answer 429, in its own error format.
                if crate::rate_limit::RouteGroup::of(path).is_some() {
                    let limited = utoipa::openapi::ResponseBuilder::new()
                        .description("too many requests from this address or by this principal; `Retry-After` says when to try again")
                        .content(crate::problem::error_media_type(path), utoipa::openapi::ContentBuilder::new().build())
                        .build();
                    operation.responses.responses.entry("429".to_owned()).or_insert_with(|| limited.into());
                }
                for (status, response) in operation.responses.responses.iter_mut() {
                    let RefOr::T(response) = response else { continue };
                    let code = status.parse::<u16>().ok().and_then(|c| axum::http::StatusCode::from_u16(c).ok());
                    if response.description.is_empty() {
                        response.description = code.and_then(|c| c.canonical_reason()).unwrap_or("Response").to_owned();
                    }
                    if code.is_some_and(|c| c.is_client_error() || c.is_server_error())
                        && !standard
                        && let Some(json) = response.content.shift_remove("application/json")
                    {
                        response.content.insert("application/problem+json".to_owned(), json);
                    }
                }
            }
        }
    }
}

/// `GET /api/v1/openapi.json`: this document.
#[utoipa::path(get, path = "/api/v1/openapi.json", operation_id = "openapi", tag = "operations", responses((status = 200, description = "the OpenAPI document of this API", body = Object)))]
async fn openapi_json() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(document())
}

/// API keys go in `Authorization: Bearer mgw_…`.
struct ApiKeyAuth;

impl Modify for ApiKeyAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        let scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("mgw_ API key").build();
        components.add_security_scheme("api_key", SecurityScheme::Http(scheme));
    }
}

/// The document.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// `GET /api/v1/openapi.json`, public (it describes, it does not reveal).
pub fn routes() -> Router<AppState> {
    Router::new().route("/api/v1/openapi.json", get(openapi_json))
}
