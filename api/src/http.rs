//! The router with its middleware: body limit, request ids, tracing, request metrics.

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnFailure, TraceLayer};

use crate::json_body::MAX_BODY_BYTES;
use crate::routes;
use crate::state::AppState;

/// The whole API.
pub fn router(state: AppState) -> Router {
    let rest = Router::new()
        .merge(routes::servers::routes())
        .merge(routes::users::routes())
        .merge(routes::tokens::routes())
        .merge(routes::registry_v0::routes())
        .merge(routes::connections::routes())
        .merge(routes::oauth_clients::routes())
        .merge(routes::grants::routes())
        .merge(routes::audit::routes())
        .merge(routes::analytics::routes())
        .merge(crate::openapi::routes());
    let rest = match rest_cors(&state) {
        Some(cors) => rest.layer(cors),
        None => rest,
    };
    let https = state.tokens.issuer().starts_with("https://");
    Router::new()
        .merge(rest)
        .merge(routes::login::routes())
        .merge(crate::oauth::routes())
        .merge(routes::mcp::routes())
        .merge(routes::ops::routes())
        .layer(middleware::map_response(problem_for_plain_errors))
        .layer(middleware::from_fn(require_json_bodies))
        .layer(middleware::from_fn_with_state(state.clone(), crate::denials::audit_denials))
        .layer(middleware::from_fn_with_state(state.clone(), crate::rate_limit::limit_by_address))
        .layer(middleware::from_fn_with_state(state.clone(), record_metrics))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        // A 503 while a projection catches up is expected, not an error.
        .layer(middleware::map_response_with_state(
            state.clone(),
            move |State(state): State<AppState>, mut response: Response| async move {
                add_security_headers(&mut response, https);
                // Draining: every connection closes after its answer, so that a proxy in front holds no idle
                // connection here when the listener closes, and sends the next request elsewhere.
                if state.draining.load(std::sync::atomic::Ordering::Acquire) {
                    response
                        .headers_mut()
                        .insert(axum::http::header::CONNECTION, axum::http::HeaderValue::from_static("close"));
                }
                response
            },
        ))
        // Each request is a span at INFO (OTLP exports it): method, path (never the query or a header
        // value that could carry a credential) and the request id, which is also the correlation id of
        // the events the request causes unless the client sent its own.
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request| {
                    let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("");
                    tracing::info_span!("request", method = %request.method(), path = request.uri().path(), request_id = id)
                })
                .on_failure(DefaultOnFailure::new().level(tracing::Level::WARN)),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .with_state(state)
}

/// CORS for the REST API when the operator named origins: those origins, with credentials (the
/// session cookie, which the CSRF check still guards), the headers the API reads and answers.
fn rest_cors(state: &AppState) -> Option<tower_http::cors::CorsLayer> {
    use axum::http::{HeaderName, Method, header};
    if state.cors_origins.is_empty() {
        return None;
    }
    Some(
        tower_http::cors::CorsLayer::new()
            .allow_origin(state.cors_origins.clone())
            .allow_credentials(true)
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::PATCH, Method::DELETE])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_MATCH,
                header::IF_NONE_MATCH,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-csrf-token"),
                HeaderName::from_static("x-correlation-id"),
            ])
            .expose_headers([
                header::ETAG,
                header::LOCATION,
                header::RETRY_AFTER,
                header::LINK,
                HeaderName::from_static("x-request-id"),
            ])
            .max_age(std::time::Duration::from_secs(600)),
    )
}

/// Headers every answer carries unless its route set its own (the HTML pages set a CSP with their
/// style): no sniffing, no framing, no referrer, nothing loaded by a JSON answer opened in a browser,
/// and HSTS when the gateway is served over https.
fn add_security_headers(response: &mut Response, https: bool) {
    use axum::http::{HeaderValue, header};
    let headers = response.headers_mut();
    let defaults = [
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        (header::X_FRAME_OPTIONS, "DENY"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'"),
    ];
    for (name, value) in defaults {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    }
    if https {
        headers
            .entry(header::STRICT_TRANSPORT_SECURITY)
            .or_insert(HeaderValue::from_static("max-age=31536000; includeSubDomains"));
    }
}

/// Errors that axum produces itself (a malformed path or query, an unknown route, a wrong method) come as
/// text; they are turned into problem documents like every other error.
async fn problem_for_plain_errors(response: Response) -> Response {
    let status = response.status();
    // Problem documents, JSON the gateway wrote on purpose (`/ready`'s components on a 503, OAuth and
    // JSON-RPC errors), and its own pages (the authorization endpoint's errors, for a browser) pass.
    let is_structured = response.headers().get(axum::http::header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.starts_with(b"application/problem+json") || v.starts_with(b"application/json") || v.starts_with(b"text/html")
    });
    if !(status.is_client_error() || status.is_server_error()) || is_structured {
        return response;
    }
    let (slug, title) = match status.as_u16() {
        404 => ("not-found", "No such resource"),
        405 => ("method-not-allowed", "Method not allowed"),
        413 => ("body-too-large", "Body too large"),
        415 => ("unsupported-media-type", "Unsupported media type"),
        400..=499 => ("bad-request", "Bad request"),
        _ => ("internal", "Internal error"),
    };
    let detail = axum::body::to_bytes(response.into_body(), 4096)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .filter(|d| !d.is_empty() && status.is_client_error());
    let mut problem = crate::problem::Problem::new(status, slug, title);
    if let Some(detail) = detail {
        problem = problem.detail(detail);
    }
    axum::response::IntoResponse::into_response(problem)
}

/// A body sent to the REST API must say it is JSON: parsing whatever arrives as JSON would accept a form
/// post from a browser on another origin (a "simple" request, sent without a CORS preflight) as a
/// command. 415 otherwise, naming the type expected.
async fn require_json_bodies(request: Request, next: Next) -> Response {
    use axum::body::HttpBody as _;
    use axum::http::Method;
    let writes = matches!(*request.method(), Method::POST | Method::PUT | Method::PATCH);
    if !writes || !request.uri().path().starts_with("/api/") {
        return next.run(request).await;
    }
    let headers = request.headers();
    let declared_length = headers
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    // Without a length (chunked, or an HTTP/2 stream), a body is there unless the stream already ended.
    let has_body = declared_length.map_or_else(|| !request.body().is_end_stream(), |length| length > 0);
    let json = headers.get(axum::http::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        let essence = v.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
        essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
    });
    if has_body && !json {
        let problem = crate::problem::Problem::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            "Unsupported media type",
        )
        .detail("request bodies are JSON: send Content-Type: application/json");
        return axum::response::IntoResponse::into_response(problem);
    }
    next.run(request).await
}

/// Counts requests and records their latency by route template (never the raw path: ids would explode
/// the label set).
async fn record_metrics(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let method = request.method().clone();
    let started = Instant::now();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    state.http_metrics.record_request(&method, route, response.status(), started.elapsed());
    response
}
