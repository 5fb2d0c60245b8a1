//! Every 403 an authenticated caller receives is in the audit trail, whichever layer refused: the
//! permission matrix records its own refusals as it makes them; the rest (a command's rules, such as a
//! key that is not the caller's to revoke, or a role above the caller's) are recorded here, once the
//! response is known, from the caller the request authenticated as.

use std::sync::{Arc, Mutex};

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::Response;
use domain::access::{AccessDenied, AccessEvent};

use crate::auth::Caller;
use crate::state::AppState;

/// Where the request's [`Caller`] extractor leaves the caller it authenticated.
#[derive(Clone, Default)]
pub(crate) struct CallerSlot(Arc<Mutex<Option<Caller>>>);

impl CallerSlot {
    /// Remembers the request's caller.
    pub(crate) fn fill(&self, caller: &Caller) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(caller.clone());
        }
    }

    fn take(&self) -> Option<Caller> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// On a response: this refusal is in the trail already.
#[derive(Clone, Copy)]
pub(crate) struct DenialRecorded;

/// On a problem response: its detail, for the trail.
#[derive(Clone)]
pub(crate) struct ProblemDetail(pub(crate) String);

/// Records a 403 the handler did not record itself.
pub(crate) async fn audit_denials(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let slot = CallerSlot::default();
    request.extensions_mut().insert(slot.clone());
    // Kept as they are (cheap clones); the label is written only for a refusal.
    let (method, route, uri) =
        (request.method().clone(), request.extensions().get::<MatchedPath>().cloned(), request.uri().clone());
    let response = next.run(request).await;
    if response.status() != StatusCode::FORBIDDEN || response.extensions().get::<DenialRecorded>().is_some() {
        return response;
    }
    let Some(caller) = slot.take() else { return response };
    let label = format!("{method} {}", route.as_ref().map_or(uri.path(), |r| r.as_str()));
    let reason = response.extensions().get::<ProblemDetail>().map_or_else(|| "forbidden".to_owned(), |d| d.0.clone());
    let denied =
        AccessEvent::Denied(AccessDenied { principal_id: caller.0.id, action: label.clone(), resource: label, reason });
    if let Err(error) = crate::access_log::record(&state, &caller, denied).await {
        tracing::warn!(%error, "could not record an access denial");
    }
    response
}
