//! A person signs in through an upstream IdP: the answer the IdP sent back is checked (issuer, code with
//! PKCE, ID token), the person is admitted, provisioned and their roles mapped from the claims, and a
//! session starts. The same for a login to the gateway itself and for an MCP client's authorization,
//! which differ only in where the browser came back and what it gets afterwards.

use chrono::Utc;
use commands::principals::{ExternalLogin, StartedSession};
use commands::servers::CommandContext;
use eventstore::{Actor, ActorKind};
use uuid::Uuid;

use crate::auth::Origin;
use crate::oidc::{OidcError, PendingLogin};
use crate::problem::Problem;
use crate::state::AppState;

/// A session's absolute lifetime.
pub const SESSION_HOURS: i64 = 12;

/// The problem an IdP's failure is answered with.
pub fn oidc_problem(error: OidcError) -> Problem {
    use axum::http::StatusCode;
    match error {
        OidcError::UnknownIdp(_) => {
            Problem::new(StatusCode::NOT_FOUND, "unknown-idp", "Unknown identity provider").detail(error.to_string())
        }
        OidcError::NotAdmitted(_) => {
            Problem::new(StatusCode::FORBIDDEN, "not-admitted", "Not admitted").detail(error.to_string())
        }
        OidcError::Refused(_) => {
            Problem::new(StatusCode::BAD_REQUEST, "login-refused", "The identity provider refused the login")
                .detail(error.to_string())
        }
        OidcError::InvalidIdToken(_) => {
            Problem::new(StatusCode::UNAUTHORIZED, "invalid-id-token", "Login refused").detail(error.to_string())
        }
        OidcError::Upstream { .. } | OidcError::Config { .. } => {
            tracing::warn!(%error, "identity provider failed");
            Problem::new(StatusCode::BAD_GATEWAY, "idp-unavailable", "Identity provider failed")
                .detail(error.to_string())
        }
    }
}

/// A refused login state.
pub fn login_refused(detail: &str) -> Problem {
    Problem::new(axum::http::StatusCode::BAD_REQUEST, "login-state", "Login refused").detail(detail.to_owned())
}

/// Signs in with the `code` IdP `idp` sent back for the login `pending` (`iss` as the answer named it,
/// RFC 9207), from `origin` on device `device_id`: the started session, and what renews it at the IdP
/// (an MCP client's grant keeps it). The authorization model may not have applied the session yet: a
/// caller whose next request uses it waits for `session.position`.
pub async fn sign_in(
    state: &AppState,
    idp: &str,
    pending: &PendingLogin,
    code: &str,
    iss: Option<&str>,
    origin: &Origin,
    device_id: Uuid,
) -> Result<(StartedSession, Option<crate::oidc::UpstreamRenewal>), Problem> {
    // RFC 9207: an answer that names another issuer is refused before its code is used anywhere.
    if let Some(iss) = iss
        && !state.idps.answered_by(idp, iss).await.map_err(oidc_problem)?
    {
        return Err(login_refused("the response names another issuer (RFC 9207)"));
    }
    let mut verified = state.idps.complete(pending, code).await.map_err(oidc_problem)?;
    let renewal = verified.renewal.take();
    let rules = state.idps.rules(idp).map_err(oidc_problem)?;
    let mapped = domain::identity::map_roles(rules, &verified.claims);
    if mapped.groups_overage {
        tracing::info!(idp = %idp, subject = %verified.subject, "groups overage: no role from groups");
    }
    let subject = state.idps.admit(idp, &verified).map_err(oidc_problem)?;
    let principal_id = commands::principals::principal_for(&verified.issuer, &subject);
    let login = ExternalLogin {
        idp: idp.to_owned(),
        issuer: verified.issuer,
        subject,
        display_name: verified.display_name,
        email: verified.email,
        amr: verified.amr,
        roles: mapped.roles,
        claims_complete: !mapped.groups_overage,
        user_agent: origin.user_agent.clone(),
        ip: origin.source_ip.map(|ip| ip.to_string()),
        device_id,
    };
    let command_id = Uuid::now_v7();
    let actor = Actor { id: principal_id.to_string(), kind: ActorKind::User };
    let context = CommandContext { command_id, metadata: origin.metadata(actor, command_id) };
    let lifetime = chrono::Duration::hours(SESSION_HOURS);
    let session = match state.principals.login(login, lifetime, Utc::now(), &context).await {
        Err(commands::CommandError::PrincipalDisabled) => {
            return Err(Problem::new(axum::http::StatusCode::FORBIDDEN, "principal-disabled", "Account disabled")
                .detail("this account is disabled; an administrator can enable it"));
        }
        other => other?,
    };
    Ok((session, renewal))
}
