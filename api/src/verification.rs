//! One verification of the audit trail, the same for the API (`GET /api/v1/audit/verify`) and the
//! operator's `mcp-gateway audit verify`: the event store's hash chains, the trail's chain and its
//! completeness against the store, every entry's content against its event, and the signed checkpoints.
//! Every kind of violation found is reported, not only the first kind.

use eventstore::{EventStore, VerifyReport};
use projections::audit::{AuditKeys, AuditReport, AuditSource, CheckpointViolation};
use serde_json::{Value, json};

/// What the verification found.
#[derive(Debug)]
pub struct Verification {
    /// The event store's chains: every violation (up to a bound).
    pub store: VerifyReport,
    /// The trail's chain, numbering and completeness: the first violation.
    pub chain: AuditReport,
    /// The entries' content against their events: the first entry that differs.
    pub content: AuditReport,
    /// Signed checkpoints checked.
    pub checkpoints: u64,
    /// The first bad checkpoint.
    pub checkpoint_violation: Option<CheckpointViolation>,
}

/// Runs every check on `store` and `trail`, checkpoints against `keys`.
pub async fn verify(
    store: &dyn EventStore,
    trail: &AuditSource,
    keys: &AuditKeys,
) -> Result<Verification, projections::ProjectionError> {
    let store_report = store.verify_all().await?;
    let chain = trail.verify().await?;
    let content = projections::audit::verify_content(store, trail).await?;
    let (checkpoints, checkpoint_violation) = trail.verify_checkpoints(keys).await?;
    Ok(Verification { store: store_report, chain, content, checkpoints, checkpoint_violation })
}

impl Verification {
    /// True when nothing is wrong anywhere.
    pub fn intact(&self) -> bool {
        self.store.violations.is_empty()
            && self.chain.violation.is_none()
            && self.content.violation.is_none()
            && self.checkpoint_violation.is_none()
    }

    /// Every violation, one line each, for a person.
    pub fn lines(&self) -> Vec<String> {
        let mut lines: Vec<String> = self.store.violations.iter().map(|v| format!("event store: {v}")).collect();
        for (what, report) in [("audit trail", &self.chain), ("audit content", &self.content)] {
            if let Some(v) = &report.violation {
                let at = v.position.map(|p| p.to_string()).unwrap_or_default();
                lines.push(format!("{what}: entry {} at {at}: {:?}", v.seq, v.kind));
            }
        }
        if let Some(bad) = &self.checkpoint_violation {
            lines.push(format!("checkpoint {} (entry {}): {:?}", bad.id, bad.seq, bad.kind));
        }
        lines
    }

    /// The report as JSON: counts, and each violation found.
    pub fn to_json(&self) -> Value {
        let violation = |report: &AuditReport| {
            report.violation.map(|v| {
                json!({ "seq": v.seq, "position": v.position.map(|p| p.to_string()), "kind": format!("{:?}", v.kind) })
            })
        };
        json!({
            "intact": self.intact(),
            "checked": self.chain.checked,
            "violation": violation(&self.chain),
            "content_checked": self.content.checked,
            "content_violation": violation(&self.content),
            "checkpoints_checked": self.checkpoints,
            "checkpoint_violation": self.checkpoint_violation.as_ref().map(|v| json!({ "id": v.id, "seq": v.seq, "kind": format!("{:?}", v.kind) })),
            "store": {
                "streams": self.store.streams,
                "events": self.store.events,
                "violations": self.store.violations.iter().map(|v| json!({
                    "stream": v.stream,
                    "revision": v.revision,
                    "position": v.position.map(|p| p.to_string()),
                    "kind": format!("{:?}", v.kind),
                })).collect::<Vec<_>>(),
            },
        })
    }
}
