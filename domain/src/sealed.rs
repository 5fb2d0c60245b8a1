//! A secret as events carry it: sealed with an AEAD key the domain never sees.

use serde::{Deserialize, Serialize};

/// Ciphertext of a secret, with the id of the key that sealed it. Keys rotate without rewriting events:
/// a sealed value names its key, and old keys stay configured for opening.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    /// The sealing key's id.
    pub key_id: String,
    /// The nonce, base64.
    pub nonce: String,
    /// Ciphertext and tag, base64.
    pub ciphertext: String,
    /// A keyed hash of the secret, `hmac-sha256:<key id>:<hex>` (Vault's audit HMAC): the audit trail
    /// shows whether a credential changed, and an auditor holding a candidate value can ask the gateway
    /// for its hash (`POST /api/v1/audit/hash`) to tell whether it is the one configured, while the trail
    /// never holds the secret. Absent on secrets sealed before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed").field("key_id", &self.key_id).finish_non_exhaustive()
    }
}
