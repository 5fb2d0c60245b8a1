//! Sealing secrets with XChaCha20-Poly1305 before they enter an event.
//!
//! Each sealed value names its key; new values are sealed with the current key, and every configured
//! key can open, so rotating keys never rewrites an event. The associated data binds a value to the
//! server and field it was sealed for: a ciphertext copied into another server's event does not open.

use std::collections::HashMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use chacha20poly1305::aead::{Aead, Generate, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use domain::Sealed;

use crate::Secret;

/// Why a keyring could not be built or a value could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealingError {
    /// A key is not 32 bytes of base64.
    #[error("sealing key {0}: expected 32 bytes, base64-encoded")]
    BadKey(String),
    /// The current key id names no configured key.
    #[error("the current sealing key {0} is not configured")]
    MissingCurrent(String),
    /// A sealed value names a key that is not configured.
    #[error("sealed with key {0}, which is not configured")]
    UnknownKey(String),
    /// Encryption failed (a plaintext beyond the cipher's limit).
    #[error("a secret could not be sealed")]
    Seal,
    /// The value was tampered with, or belongs to another server or field.
    #[error("a sealed value failed authentication")]
    Corrupt,
}

/// The sealing keys.
pub struct Keyring {
    current: String,
    ciphers: HashMap<String, XChaCha20Poly1305>,
    /// Per key id, a key derived for request fingerprints (never the sealing key itself).
    fingerprints: HashMap<String, [u8; 32]>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut ids: Vec<&String> = self.ciphers.keys().collect();
        ids.sort();
        f.debug_struct("Keyring").field("current", &self.current).field("key_ids", &ids).finish()
    }
}

impl Keyring {
    /// A keyring from `(id, base64 key)` pairs, sealing with `current`.
    pub fn new<I, K, V>(current: &str, keys: I) -> Result<Self, SealingError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: AsRef<str>,
    {
        let (mut ciphers, mut fingerprints) = (HashMap::new(), HashMap::new());
        for (id, key) in keys {
            let id = id.into();
            let bytes = STANDARD.decode(key.as_ref().trim()).map_err(|_| SealingError::BadKey(id.clone()))?;
            let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| SealingError::BadKey(id.clone()))?;
            let derived = keyed(&bytes, &[b"mcp-gateway request fingerprint v1"])
                .ok_or_else(|| SealingError::BadKey(id.clone()))?;
            ciphers.insert(id.clone(), cipher);
            fingerprints.insert(id, derived);
        }
        if !ciphers.contains_key(current) {
            return Err(SealingError::MissingCurrent(current.to_owned()));
        }
        Ok(Self { current: current.to_owned(), ciphers, fingerprints })
    }

    /// A new random 32-byte key, base64, as the keyring reads it (also a valid Ed25519 seed for the
    /// audit signing keys).
    pub fn generate_key() -> Secret {
        let key = chacha20poly1305::Key::generate();
        Secret::new(STANDARD.encode(key))
    }

    /// A keyed fingerprint (HMAC-SHA256) of `parts` with the current key: its key id and the digest.
    /// Stored instead of a plain hash where the data may hold a secret.
    pub fn fingerprint(&self, parts: &[&[u8]]) -> (String, Vec<u8>) {
        let digest = self.fingerprint_with(&self.current, parts).unwrap_or_default();
        (self.current.clone(), digest)
    }

    /// [`fingerprint`](Self::fingerprint) with the key `key_id`, if it is configured.
    pub fn fingerprint_with(&self, key_id: &str, parts: &[&[u8]]) -> Option<Vec<u8>> {
        let key = self.fingerprints.get(key_id)?;
        keyed(key, parts).map(|d| d.to_vec())
    }

    /// Seals `secret` for `context` (e.g. `server:<id>:bearer`).
    pub fn seal(&self, secret: &Secret, context: &str) -> Result<Sealed, SealingError> {
        let nonce = XNonce::generate();
        let cipher =
            self.ciphers.get(&self.current).ok_or_else(|| SealingError::MissingCurrent(self.current.clone()))?;
        let ciphertext = cipher
            .encrypt(&nonce, Payload { msg: secret.expose().as_bytes(), aad: context.as_bytes() })
            .map_err(|_| SealingError::Seal)?;
        Ok(Sealed {
            key_id: self.current.clone(),
            nonce: STANDARD.encode(nonce),
            ciphertext: STANDARD.encode(ciphertext),
            fingerprint: Some(self.secret_hash(secret.expose(), &self.current)).flatten(),
        })
    }

    /// The audit hash of a secret value with the fingerprint key `key_id`: `hmac-sha256:<key id>:<hex>`,
    /// as [`seal`](Self::seal) records it. `None` when the key is not configured.
    pub fn secret_hash(&self, value: &str, key_id: &str) -> Option<String> {
        let digest = self.fingerprint_with(key_id, &[b"mcp-gateway audit secret", value.as_bytes()])?;
        Some(format!("hmac-sha256:{key_id}:{}", hex::encode(digest)))
    }

    /// The id of the key that seals (and hashes) new secrets.
    pub fn current_key_id(&self) -> &str {
        &self.current
    }

    /// Opens `sealed`, which must have been sealed for `context`.
    pub fn open(&self, sealed: &Sealed, context: &str) -> Result<Secret, SealingError> {
        let cipher = self.ciphers.get(&sealed.key_id).ok_or_else(|| SealingError::UnknownKey(sealed.key_id.clone()))?;
        let nonce = STANDARD.decode(&sealed.nonce).map_err(|_| SealingError::Corrupt)?;
        let nonce = XNonce::try_from(nonce.as_slice()).map_err(|_| SealingError::Corrupt)?;
        let ciphertext = STANDARD.decode(&sealed.ciphertext).map_err(|_| SealingError::Corrupt)?;
        let plaintext = cipher
            .decrypt(&nonce, Payload { msg: &ciphertext, aad: context.as_bytes() })
            .map_err(|_| SealingError::Corrupt)?;
        String::from_utf8(plaintext).map(Secret::new).map_err(|_| SealingError::Corrupt)
    }
}

/// HMAC-SHA256 of `parts`, each prefixed with its length so that no two splits of the same bytes agree.
fn keyed(key: &[u8], parts: &[&[u8]]) -> Option<[u8; 32]> {
    use hmac::{KeyInit as _, Mac};
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(key).ok()?;
    for part in parts {
        mac.update(&(part.len() as u64).to_be_bytes());
        mac.update(part);
    }
    Some(mac.finalize().into_bytes().into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    const K2: &str = "HyAhIiMkJSYnKCkqKywtLi8wMTIzNDU2Nzg5Ojs8PT4=";

    #[test]
    fn a_sealed_secret_opens_only_for_its_context_and_hides_the_plaintext() {
        let keyring = Keyring::new("k1", [("k1", K1)]).unwrap();
        let sealed = keyring.seal(&Secret::new("s3cr3t-token"), "server:a:bearer").unwrap();
        assert!(!format!("{sealed:?}{}{}", sealed.nonce, sealed.ciphertext).contains("s3cr3t"));
        assert_eq!(keyring.open(&sealed, "server:a:bearer").unwrap().expose(), "s3cr3t-token");
        assert_eq!(keyring.open(&sealed, "server:b:bearer"), Err(SealingError::Corrupt));
    }

    #[test]
    fn after_a_key_rotation_old_values_still_open_and_new_ones_use_the_new_key() {
        let old = Keyring::new("k1", [("k1", K1)]).unwrap();
        let sealed_before = old.seal(&Secret::new("before"), "c").unwrap();
        let rotated = Keyring::new("k2", [("k1", K1), ("k2", K2)]).unwrap();
        assert_eq!(rotated.open(&sealed_before, "c").unwrap().expose(), "before");
        let sealed_after = rotated.seal(&Secret::new("after"), "c").unwrap();
        assert_eq!(sealed_after.key_id, "k2");
        assert_eq!(old.open(&sealed_after, "c"), Err(SealingError::UnknownKey("k2".into())));
    }

    #[test]
    fn a_generated_key_makes_a_working_keyring() {
        let key = Keyring::generate_key();
        let keyring = Keyring::new("k", [("k", key.expose())]).unwrap();
        let sealed = keyring.seal(&Secret::new("x"), "c").unwrap();
        assert_eq!(keyring.open(&sealed, "c").unwrap().expose(), "x");
        assert_ne!(Keyring::generate_key().expose(), key.expose());
    }

    #[test]
    fn fingerprints_are_keyed_and_survive_a_rotation() {
        let old = Keyring::new("k1", [("k1", K1)]).unwrap();
        let (id, digest) = old.fingerprint(&[b"body with tok-1"]);
        let other = Keyring::new("k2", [("k2", K2)]).unwrap();
        assert_ne!(other.fingerprint(&[b"body with tok-1"]).1, digest, "another key, another digest");
        let rotated = Keyring::new("k2", [("k1", K1), ("k2", K2)]).unwrap();
        assert_eq!(rotated.fingerprint_with(&id, &[b"body with tok-1"]), Some(digest.clone()));
        assert_ne!(old.fingerprint(&[b"body with ", b"tok-1"]).1, digest, "parts are delimited");
    }

    #[test]
    fn bad_configuration_is_named() {
        assert_eq!(Keyring::new("k1", [("k1", "short")]).unwrap_err(), SealingError::BadKey("k1".into()));
        assert_eq!(Keyring::new("k9", [("k1", K1)]).unwrap_err(), SealingError::MissingCurrent("k9".into()));
    }
}
