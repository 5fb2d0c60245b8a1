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
        let mut ciphers = HashMap::new();
        for (id, key) in keys {
            let id = id.into();
            let bytes = STANDARD.decode(key.as_ref().trim()).map_err(|_| SealingError::BadKey(id.clone()))?;
            let cipher = XChaCha20Poly1305::new_from_slice(&bytes).map_err(|_| SealingError::BadKey(id.clone()))?;
            ciphers.insert(id, cipher);
        }
        if !ciphers.contains_key(current) {
            return Err(SealingError::MissingCurrent(current.to_owned()));
        }
        Ok(Self { current: current.to_owned(), ciphers })
    }

    /// A new random 32-byte key, base64, as the keyring reads it (also a valid Ed25519 seed for the
    /// audit signing keys).
    pub fn generate_key() -> Secret {
        let key = chacha20poly1305::Key::generate();
        Secret::new(STANDARD.encode(key))
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
        })
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
    fn bad_configuration_is_named() {
        assert_eq!(Keyring::new("k1", [("k1", "short")]).unwrap_err(), SealingError::BadKey("k1".into()));
        assert_eq!(Keyring::new("k9", [("k1", K1)]).unwrap_err(), SealingError::MissingCurrent("k9".into()));
    }
}
