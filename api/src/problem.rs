//! Errors as RFC 9457 `application/problem+json`, with a stable `type` per error.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use commands::CommandError;
use domain::identity::RoleChangeRefused;
use domain::server::ServerError;
use serde::Serialize;

/// A problem document.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `/problems/<slug>`: stable, documented, what clients branch on.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the type.
    pub title: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What happened in this case.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// The field at fault, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The `WWW-Authenticate` challenge of a 401 (RFC 6750 §3).
    #[serde(skip)]
    pub challenge: Option<Box<str>>,
    /// A 403 already recorded in the audit trail (so the layer that records the others does not).
    #[serde(skip)]
    pub recorded: bool,
    /// Seconds until a refused request may be sent again (`Retry-After` of a 429 or 503).
    #[serde(skip)]
    pub retry_after: Option<u32>,
}

impl Problem {
    /// A problem of type `slug`.
    pub fn new(status: StatusCode, slug: &str, title: &'static str) -> Self {
        Self {
            kind: format!("/problems/{slug}"),
            title,
            status: status.as_u16(),
            detail: None,
            field: None,
            challenge: None,
            recorded: false,
            retry_after: None,
        }
    }

    /// With a detail.
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    /// With the field at fault.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 401: no credential was sent.
    pub fn unauthenticated() -> Self {
        let mut problem = Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", "Authentication required")
            .detail("send an API key or an access token as `Authorization: Bearer …`, or log in");
        problem.challenge = Some(format!("Bearer realm=\"{REALM}\"").into());
        problem
    }

    /// 401: a credential was sent and refused; `why` says what is wrong with it (never the credential).
    pub fn invalid_credential(why: &str) -> Self {
        let mut problem = Self::new(StatusCode::UNAUTHORIZED, "invalid-credential", "Credential refused").detail(why);
        problem.challenge =
            Some(format!("Bearer realm=\"{REALM}\", error=\"invalid_token\", error_description=\"{why}\"").into());
        problem
    }

    /// Marks a refusal as recorded in the audit trail already.
    pub fn recorded(mut self) -> Self {
        self.recorded = true;
        self
    }

    /// 403, with the authorization decision's reason.
    pub fn forbidden(reason: String) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", "Not allowed").detail(reason)
    }

    /// 404.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not-found", "No such resource")
    }

    /// 503.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", "Temporarily unavailable").detail(detail)
    }

    /// 500; the cause is logged, not shown.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", "Internal error")
    }
}

/// The media type of `path`'s errors: the official registry's `{"error": …}` under `/v0.1`, OAuth's
/// `{"error", "error_description"}` (RFC 6749 §5.2, RFC 7591 §3.2.2) at the authorization server's
/// endpoints and JSON-RPC errors at the MCP endpoints, all JSON; pages at the endpoints a browser
/// visits (an error there cannot be sent back to any client); problem documents everywhere else.
pub fn error_media_type(path: &str) -> &'static str {
    if ["/authorize", "/consent", "/oauth/callback/{idp}", "/connect/callback/{server}"].contains(&path) {
        "text/html"
    } else if path.starts_with("/v0.1/")
        || path.starts_with("/.well-known/oauth-")
        || (path.starts_with("/servers/") && path.ends_with("/mcp"))
        || ["/register", "/token", "/revoke"].contains(&path)
    {
        "application/json"
    } else {
        "application/problem+json"
    }
}

/// The realm of the gateway's `WWW-Authenticate` challenges.
const REALM: &str = "mcp-gateway";

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(challenge) = self.challenge.as_deref().and_then(|c| HeaderValue::from_str(c).ok()) {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if self.recorded {
            response.extensions_mut().insert(crate::denials::DenialRecorded);
        }
        if let Some(detail) = self.detail {
            response.extensions_mut().insert(crate::denials::ProblemDetail(detail));
        }
        response
    }
}

/// The refusals of the role rules, each with its own type.
fn role_change(refused: RoleChangeRefused) -> Problem {
    let (status, kind, title) = match refused {
        RoleChangeRefused::OwnRoles => (StatusCode::FORBIDDEN, "own-roles", "Own roles"),
        RoleChangeRefused::AboveOwn(_) => (StatusCode::FORBIDDEN, "above-own-role", "Role above your own"),
        RoleChangeRefused::LastOwner => (StatusCode::CONFLICT, "last-owner", "Last owner"),
        RoleChangeRefused::MfaRequired(_) => (StatusCode::FORBIDDEN, "mfa-required", "Second factor required"),
        RoleChangeRefused::TargetAbove(_) => (StatusCode::FORBIDDEN, "target-above-own-role", "Principal outranks you"),
        RoleChangeRefused::SeparationOfDuties => {
            (StatusCode::CONFLICT, "separation-of-duties", "Auditors hold no other role")
        }
        RoleChangeRefused::Reason(_) => {
            return Problem::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid-field", "Invalid field")
                .field("reason")
                .detail(refused.to_string());
        }
        RoleChangeRefused::NoChange(_) => (StatusCode::CONFLICT, "no-change", "Nothing to change"),
    };
    Problem::new(status, kind, title).detail(refused.to_string())
}

impl From<CommandError> for Problem {
    fn from(error: CommandError) -> Self {
        let unprocessable = StatusCode::UNPROCESSABLE_ENTITY;
        match error {
            CommandError::Invalid { field, message } => {
                Problem::new(unprocessable, "invalid-field", "Invalid field").field(field).detail(message)
            }
            CommandError::Endpoint { field, source } => {
                Problem::new(unprocessable, source.rule(), "Upstream URL refused")
                    .field(field)
                    .detail(source.to_string())
            }
            CommandError::Domain(error) => match error {
                ServerError::NotFound => Problem::not_found(),
                ServerError::Deregistered => {
                    Problem::new(StatusCode::GONE, "deregistered", "Server deregistered").detail(error.to_string())
                }
                ServerError::AlreadyExists => {
                    Problem::new(StatusCode::CONFLICT, "already-exists", "Already exists").detail(error.to_string())
                }
                ServerError::AlreadySuspended | ServerError::NotSuspended => {
                    Problem::new(StatusCode::CONFLICT, "invalid-state", "Not possible in this state")
                        .detail(error.to_string())
                }
                ServerError::Reason => Problem::new(unprocessable, "invalid-field", "Invalid field")
                    .field("reason")
                    .detail(error.to_string()),
                ServerError::Access(e) => {
                    Problem::new(unprocessable, "invalid-field", "Invalid field").field("access").detail(e.to_string())
                }
                ServerError::UpstreamAuth(e) => Problem::new(unprocessable, "invalid-field", "Invalid field")
                    .field("upstream_auth")
                    .detail(e.to_string()),
                ServerError::VersionNotNewer { .. } => {
                    Problem::new(StatusCode::CONFLICT, "version-not-newer", "Version not newer")
                        .field("version")
                        .detail(error.to_string())
                }
                ServerError::Distribution(e) => {
                    Problem::new(unprocessable, "invalid-field", "Invalid field").field(e.field.clone()).detail(e.rule)
                }
            },
            CommandError::NameTaken(name) => Problem::new(StatusCode::CONFLICT, "name-taken", "Name taken")
                .field("name")
                .detail(format!("a live server is already named {name}")),
            CommandError::RevisionMismatch { .. } => {
                Problem::new(StatusCode::PRECONDITION_FAILED, "revision-mismatch", "Stale revision")
                    .detail(error.to_string())
            }
            CommandError::Contended => {
                Problem::new(StatusCode::CONFLICT, "contended", "Concurrent changes").detail(error.to_string())
            }
            CommandError::AlreadyBootstrapped => {
                Problem::new(StatusCode::CONFLICT, "already-bootstrapped", "Already bootstrapped")
            }
            CommandError::PrincipalNotFound | CommandError::KeyNotFound | CommandError::ClientNotFound => {
                Problem::not_found()
            }
            CommandError::ClientRegistration(refused) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, refused.code(), "Client registration refused")
                    .detail(refused.to_string())
            }
            CommandError::PrincipalExists => {
                Problem::new(StatusCode::CONFLICT, "already-exists", "Already exists").detail(error.to_string())
            }
            CommandError::PrincipalDisabled => {
                Problem::new(StatusCode::CONFLICT, "principal-disabled", "Principal disabled").detail(error.to_string())
            }
            CommandError::RoleChange(refused) => role_change(refused),
            CommandError::TotpNotEnrolled => {
                Problem::new(StatusCode::CONFLICT, "mfa-not-enrolled", "No second factor").detail(error.to_string())
            }
            CommandError::SessionEnded => {
                Problem::new(StatusCode::UNAUTHORIZED, "session-ended", "Session ended").detail(error.to_string())
            }
            CommandError::SessionRotated => {
                Problem::new(StatusCode::CONFLICT, "session-rotated", "Session just refreshed")
                    .detail(error.to_string())
            }
            CommandError::SessionSuspicious => {
                Problem::new(StatusCode::UNAUTHORIZED, "session-revoked", "Session revoked").detail(error.to_string())
            }
            CommandError::TotpCodeRequired => {
                Problem::new(StatusCode::FORBIDDEN, "mfa-required", "Second factor required").detail(error.to_string())
            }
            CommandError::EnrolmentRefused(_) => {
                Problem::new(StatusCode::FORBIDDEN, "mfa-enrolment-refused", "Second factor enrolment refused")
                    .detail(error.to_string())
            }
            CommandError::TooManyAttempts => {
                Problem::new(StatusCode::TOO_MANY_REQUESTS, "too-many-attempts", "Too many attempts")
                    .detail(error.to_string())
            }
            CommandError::NotYours(_) => {
                Problem::new(StatusCode::FORBIDDEN, "forbidden", "Forbidden").detail(error.to_string())
            }
            CommandError::TotpRejected => {
                Problem::new(unprocessable, "invalid-code", "Invalid code").field("code").detail(error.to_string())
            }
            CommandError::Store(e) if e.is_unavailable() => Problem::unavailable("the event store is unreachable"),
            CommandError::Store(e) if e.is_client_error() => {
                Problem::new(unprocessable, "rejected-event", "Event refused").detail(e.to_string())
            }
            // Listed, not caught all: a new refusal must be given its own problem, not a 500.
            error @ (CommandError::Store(_) | CommandError::Sealing(_) | CommandError::Corrupt(_)) => {
                tracing::error!(error = %error, "command failed");
                Problem::internal()
            }
        }
    }
}
