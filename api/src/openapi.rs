//! The OpenAPI document, generated from the handlers and types (`GET /api/v1/openapi.json`).

use axum::Router;
use axum::routing::get;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{audit, login, servers, tokens, users};
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
        servers::deregister,
        servers::permissions,
        audit::list,
        audit::verify,
        audit::hash,
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
    components(schemas(crate::problem::Problem)),
    modifiers(&ApiKeyAuth)
)]
struct ApiDoc;

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
    Router::new().route("/api/v1/openapi.json", get(|| async { axum::Json(document()) }))
}
