//! Signed checkpoints: every so often the chain head (entry number and link) is signed with Ed25519,
//! together with the previous checkpoint's signature. With the public keys (`GET /api/v1/audit/keys`), an
//! auditor can check that the trail up to each checkpoint is what the gateway saw, and that no checkpoint
//! was removed.

use std::time::Duration;

use super::mapping::CHAIN_VERSION;
use super::retention::{PruneMark, latest_prune};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sqlx::PgPool;

use crate::ProjectionError;

/// Why the signing keys could not be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditKeyError {
    /// A key is not 32 bytes of base64.
    #[error("audit signing key {0}: expected 32 bytes, base64-encoded")]
    BadKey(String),
}

/// The audit signing keys: the first signs, all verify.
pub struct AuditKeys {
    signer: Option<(String, SigningKey)>,
    public: Vec<(String, VerifyingKey)>,
}

impl std::fmt::Debug for AuditKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&String> = self.public.iter().map(|(id, _)| id).collect();
        f.debug_struct("AuditKeys").field("key_ids", &ids).finish_non_exhaustive()
    }
}

impl AuditKeys {
    /// Keys from `(id, base64 seed)` pairs; the first signs new checkpoints.
    pub fn new(keys: &[(String, String)]) -> Result<Self, AuditKeyError> {
        let mut signer = None;
        let mut public = Vec::new();
        for (id, seed) in keys {
            let bytes = STANDARD.decode(seed.trim()).map_err(|_| AuditKeyError::BadKey(id.clone()))?;
            let seed: [u8; 32] = bytes.try_into().map_err(|_| AuditKeyError::BadKey(id.clone()))?;
            let key = SigningKey::from_bytes(&seed);
            public.push((id.clone(), key.verifying_key()));
            if signer.is_none() {
                signer = Some((id.clone(), key));
            }
        }
        Ok(Self { signer, public })
    }

    /// Verification only, from published public keys `(id, base64)`.
    pub fn verifying(keys: &[(String, String)]) -> Result<Self, AuditKeyError> {
        let mut public = Vec::new();
        for (id, key) in keys {
            let bytes = STANDARD.decode(key.trim()).map_err(|_| AuditKeyError::BadKey(id.clone()))?;
            let bytes: [u8; 32] = bytes.try_into().map_err(|_| AuditKeyError::BadKey(id.clone()))?;
            public.push((id.clone(), VerifyingKey::from_bytes(&bytes).map_err(|_| AuditKeyError::BadKey(id.clone()))?));
        }
        Ok(Self { signer: None, public })
    }

    /// The public keys, `(id, base64)`, for publishing.
    pub fn public_keys(&self) -> Vec<(String, String)> {
        self.public.iter().map(|(id, key)| (id.clone(), STANDARD.encode(key.to_bytes()))).collect()
    }

    /// True when `signature` over `message` verifies with the key named `key_id`.
    pub fn verify(&self, key_id: &str, message: &[u8], signature: &[u8]) -> bool {
        let key = self.public.iter().find(|(known, _)| known == key_id).map(|(_, key)| key);
        match (key, Signature::from_slice(signature)) {
            (Some(key), Ok(signature)) => key.verify_strict(message, &signature).is_ok(),
            _ => false,
        }
    }

    /// Signs `message` with the signing key: its id and the signature.
    pub fn sign(&self, message: &[u8]) -> Option<(String, Vec<u8>)> {
        let (key_id, key) = self.signer.as_ref()?;
        Some((key_id.clone(), key.sign(message).to_bytes().to_vec()))
    }

    /// True when checkpoints can be signed.
    pub fn can_sign(&self) -> bool {
        self.signer.is_some()
    }
}

/// What a checkpoint of chain format `version` signs. From version 2 the version is signed too, so that a
/// checkpoint cannot be passed off as one of an older format (whose entries are no longer compared).
pub(crate) fn checkpoint_message(version: i32, seq: i64, entry_hash: &[u8], prev_signature: &[u8]) -> Vec<u8> {
    let (entry, previous) = (hex::encode(entry_hash), hex::encode(prev_signature));
    match version {
        1 => format!("mcp-gateway audit checkpoint v1\n{seq}\n{entry}\n{previous}"),
        v => format!("mcp-gateway audit checkpoint v{v}\n{seq}\n{entry}\n{previous}"),
    }
    .into_bytes()
}

/// A checkpoint to store: the entry signed, its link, the previous signature, the key, the signature.
pub(crate) struct NewCheckpoint {
    pub(crate) seq: i64,
    pub(crate) entry_hash: Vec<u8>,
    pub(crate) prev_signature: Vec<u8>,
    pub(crate) key_id: String,
    pub(crate) signature: Vec<u8>,
}

/// The checkpoint signing the head `(seq, entry_hash)` after the last checkpoint `last` (its entry and
/// signature), if the head moved past it and there is a key to sign with.
pub(crate) fn next_checkpoint(
    keys: &AuditKeys,
    head: Option<(i64, Vec<u8>)>,
    last: Option<(i64, Vec<u8>)>,
) -> Option<NewCheckpoint> {
    let (key_id, key) = keys.signer.as_ref()?;
    let (seq, entry_hash) = head?;
    if last.as_ref().is_some_and(|(signed, _)| *signed >= seq) {
        return None;
    }
    let prev_signature = last.map(|(_, signature)| signature).unwrap_or_default();
    let signature = key.sign(&checkpoint_message(CHAIN_VERSION, seq, &entry_hash, &prev_signature)).to_bytes().to_vec();
    Some(NewCheckpoint { seq, entry_hash, prev_signature, key_id: key_id.clone(), signature })
}

/// Where checkpoints are kept and signed: the checkpointer's view of a backend.
#[async_trait::async_trait]
pub trait CheckpointStore: Send + Sync {
    /// Entries after the newest checkpoint.
    async fn unsigned(&self) -> Result<i64, ProjectionError>;
    /// Signs the current chain head, if it moved since the last checkpoint; returns the entry signed.
    async fn write_checkpoint(&self, keys: &AuditKeys) -> Result<Option<i64>, ProjectionError>;
}

#[async_trait::async_trait]
impl CheckpointStore for PgPool {
    async fn unsigned(&self) -> Result<i64, ProjectionError> {
        let unsigned: Option<i64> = sqlx::query_scalar(
            "SELECT coalesce((SELECT max(seq) FROM rm_audit.entries), 0)
                  - coalesce((SELECT max(seq) FROM audit_sig.checkpoints), 0)",
        )
        .fetch_one(self)
        .await?;
        Ok(unsigned.unwrap_or(0))
    }

    async fn write_checkpoint(&self, keys: &AuditKeys) -> Result<Option<i64>, ProjectionError> {
        write_checkpoint(self, keys).await
    }
}

/// Signs the current chain head, if it moved since the last checkpoint; returns the entry number signed.
pub async fn write_checkpoint(pool: &PgPool, keys: &AuditKeys) -> Result<Option<i64>, ProjectionError> {
    if !keys.can_sign() {
        return Ok(None);
    }
    // One writer at a time across instances: two that read the same last checkpoint would fork the chain.
    let mut tx = pool.begin().await?;
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('audit-checkpoint'))").execute(&mut *tx).await?;
    let head: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, entry_hash FROM rm_audit.entries ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
    let last: Option<(i64, Vec<u8>)> =
        sqlx::query_as("SELECT seq, signature FROM audit_sig.checkpoints ORDER BY id DESC LIMIT 1")
            .fetch_optional(&mut *tx)
            .await?;
    let Some(new) = next_checkpoint(keys, head, last) else { return Ok(None) };
    sqlx::query(
        "INSERT INTO audit_sig.checkpoints (seq, entry_hash, prev_signature, key_id, signature, chain_version)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(new.seq)
    .bind(&new.entry_hash)
    .bind(&new.prev_signature)
    .bind(&new.key_id)
    .bind(&new.signature)
    .bind(CHAIN_VERSION)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Some(new.seq))
}

/// When to sign: every `entries` new entries, or every `interval` when the trail moved at all.
#[derive(Debug, Clone, Copy)]
pub struct CheckpointPolicy {
    /// Entries since the last checkpoint that call for a new one.
    pub entries: i64,
    /// Longest time the head of a growing trail stays unsigned.
    pub interval: Duration,
    /// How often to look.
    pub poll: Duration,
}

impl Default for CheckpointPolicy {
    fn default() -> Self {
        Self { entries: 10_000, interval: Duration::from_secs(60), poll: Duration::from_secs(5) }
    }
}

impl CheckpointPolicy {
    /// True when a checkpoint is due: `unsigned` entries after the last one, `since` it was signed.
    pub fn due(&self, unsigned: i64, since: Duration) -> bool {
        unsigned >= self.entries || (unsigned > 0 && since >= self.interval)
    }

    /// How far past its interval (plus one poll of slack) a checkpoint is, with `unsigned` entries waiting
    /// `since` the last one was signed; zero when none is late.
    pub fn overdue(&self, unsigned: i64, since: Duration) -> Duration {
        if unsigned <= 0 {
            return Duration::ZERO;
        }
        since.saturating_sub(self.interval + self.poll)
    }
}

/// Signs checkpoints as `policy` says while the trail grows; runs until dropped.
///
/// Publishes `mgw_audit_unsigned_entries` (entries after the newest checkpoint) and
/// `mgw_audit_checkpoint_overdue_seconds` (how long the head has stayed unsigned beyond the policy's
/// interval; 0 while on time), and warns in the log while a checkpoint is overdue: a signing key that
/// stopped working, or a database that refuses the writes, must not go unnoticed
/// (`deploy/prometheus/alerts.yml` alerts on it).
pub async fn run_checkpointer<S: CheckpointStore>(store: S, keys: std::sync::Arc<AuditKeys>, policy: CheckpointPolicy) {
    let mut tick = tokio::time::interval(policy.poll);
    let mut last = tokio::time::Instant::now();
    loop {
        tick.tick().await;
        match store.unsigned().await {
            Ok(unsigned) => {
                if policy.due(unsigned, last.elapsed()) {
                    match store.write_checkpoint(&keys).await {
                        Ok(_) => last = tokio::time::Instant::now(),
                        Err(error) => tracing::warn!(%error, "could not sign an audit checkpoint"),
                    }
                }
                let overdue = policy.overdue(unsigned, last.elapsed());
                metrics::gauge!("mgw_audit_unsigned_entries").set(unsigned as f64);
                metrics::gauge!("mgw_audit_checkpoint_overdue_seconds").set(overdue.as_secs_f64());
                if !overdue.is_zero() {
                    tracing::warn!(unsigned, overdue_s = overdue.as_secs(), "an audit checkpoint is overdue");
                }
            }
            // Before the projection has created its schema, or while the database is away.
            Err(error) => tracing::debug!(%error, "cannot look at the audit trail's head yet"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_due_after_enough_entries_or_enough_time() {
        let policy = CheckpointPolicy { entries: 100, interval: Duration::from_secs(60), poll: Duration::from_secs(5) };
        assert!(policy.due(100, Duration::ZERO));
        assert!(!policy.due(99, Duration::from_secs(59)));
        assert!(policy.due(1, Duration::from_secs(60)));
        assert!(!policy.due(0, Duration::from_secs(3_600)), "nothing new: nothing to sign");
    }

    #[test]
    fn a_checkpoint_is_overdue_only_past_its_interval_with_entries_waiting() {
        let policy = CheckpointPolicy::default();
        assert_eq!(policy.overdue(5, Duration::from_secs(30)), Duration::ZERO);
        assert_eq!(policy.overdue(5, Duration::from_secs(65)), Duration::ZERO, "one poll of slack");
        assert_eq!(policy.overdue(5, Duration::from_secs(125)), Duration::from_secs(60));
        assert_eq!(policy.overdue(0, Duration::from_secs(3_600)), Duration::ZERO, "nothing waits");
    }
}

/// What is wrong with the first bad checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointViolationKind {
    /// It does not follow the previous checkpoint: one was removed (or reordered) before it.
    Unlinked,
    /// The signature does not verify, or names an unknown key.
    BadSignature,
    /// The entry it signed no longer has the signed link: the trail up to it changed.
    EntryChanged,
}

/// The first bad checkpoint: its id and the entry number it signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointViolation {
    /// The checkpoint's id.
    pub id: i64,
    /// The entry it signed.
    pub seq: i64,
    /// What is wrong.
    pub kind: CheckpointViolationKind,
}

/// Checks every checkpoint: linked to the one before, signed by a known key, and matching the entry it
/// signed. Returns the number checked and the first violation.
pub async fn verify_checkpoints(
    pool: &PgPool,
    keys: &AuditKeys,
) -> Result<(u64, Option<CheckpointViolation>), ProjectionError> {
    let rows: Vec<CheckpointRow> = sqlx::query_as(
        "SELECT c.id, c.seq, c.entry_hash, c.prev_signature, c.key_id, c.signature, e.entry_hash, c.chain_version
           FROM audit_sig.checkpoints c LEFT JOIN rm_audit.entries e ON e.seq = c.seq
          ORDER BY c.id",
    )
    .fetch_all(pool)
    .await?;
    let mark = latest_prune(&mut *pool.acquire().await?).await?;
    Ok(check_checkpoints(rows, mark.as_ref(), keys))
}

/// A stored checkpoint with the current link of the entry it signed: id, seq, entry hash, previous
/// signature, key id, signature, the entry's link now (none: pruned or missing), chain version.
pub(crate) type CheckpointRow = (i64, i64, Vec<u8>, Vec<u8>, String, Vec<u8>, Option<Vec<u8>>, i32);

/// Checks checkpoints in order: linked, signed by a known key, matching the entries they signed (entries
/// up to the last prune, `mark`, are archived: checked against the link the prune recorded or, before it,
/// for signature and order only). The number checked and the first violation.
pub(crate) fn check_checkpoints(
    rows: Vec<CheckpointRow>,
    mark: Option<&PruneMark>,
    keys: &AuditKeys,
) -> (u64, Option<CheckpointViolation>) {
    let total = rows.len() as u64;
    let (mut previous, mut previous_version): (Vec<u8>, i32) = (Vec::new(), 1);
    for (checked, row) in rows.into_iter().enumerate() {
        let (id, seq, entry_hash, prev_signature, key_id, signature, current, version) = row;
        let violation = |kind| (checked as u64, Some(CheckpointViolation { id, seq, kind }));
        // Formats only move forward: an older one after a newer one was put there.
        if prev_signature != previous || version < previous_version || version > CHAIN_VERSION {
            return violation(CheckpointViolationKind::Unlinked);
        }
        let key = keys.public.iter().find(|(known, _)| *known == key_id).map(|(_, key)| key);
        let valid = match (key, Signature::from_slice(&signature)) {
            (Some(key), Ok(sig)) => {
                key.verify_strict(&checkpoint_message(version, seq, &entry_hash, &prev_signature), &sig).is_ok()
            }
            _ => false,
        };
        if !valid {
            return violation(CheckpointViolationKind::BadSignature);
        }
        // A checkpoint of an older format signed entries that now hash differently.
        let archived = match mark {
            _ if version < CHAIN_VERSION => true,
            Some(mark) if current.is_none() && seq < mark.seq => true,
            Some(mark) if current.is_none() && seq == mark.seq => mark.entry_hash == entry_hash,
            _ => false,
        };
        if !archived && current.as_deref() != Some(entry_hash.as_slice()) {
            return violation(CheckpointViolationKind::EntryChanged);
        }
        (previous, previous_version) = (signature, version);
    }
    (total, None)
}
