//! The gateway's `Mcp-Session-Id`: the upstream server's session id, sealed (XChaCha20-Poly1305 with the
//! keyring's current key, built once at start-up: no per-request key derivation) and bound to the server
//! and the principal through the associated data. Any instance can open it, so a client's session can be
//! served by any gateway; another principal presenting it, or the same id sent to another server, fails
//! authentication and gets 404, as a session the server does not know.

use std::sync::Arc;

use commands::{Keyring, Secret};
use domain::Sealed;
use uuid::Uuid;

/// Longest session id accepted from a client (a sealed upstream id of up to 1 KiB fits well within).
const MAX_PRESENTED: usize = 2048;

/// Seals and opens session ids.
#[derive(Clone)]
pub(crate) struct SessionIds {
    keyring: Arc<Keyring>,
}

/// What the session is bound to.
fn context(server: Uuid, principal: Uuid) -> String {
    format!("mcp-session:{server}:{principal}")
}

impl SessionIds {
    /// Session ids sealed with `keyring`.
    pub(crate) fn new(keyring: Arc<Keyring>) -> Self {
        Self { keyring }
    }

    /// The id the client gets for the upstream session `upstream`; `None` when it cannot be sealed or the
    /// upstream id is not a valid session id (visible ASCII, MCP transport §session management).
    pub(crate) fn seal(&self, server: Uuid, principal: Uuid, upstream: &str) -> Option<String> {
        if upstream.is_empty() || upstream.len() > 1024 || !upstream.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return None;
        }
        let sealed = self.keyring.seal(&Secret::new(upstream.to_owned()), &context(server, principal)).ok()?;
        // Base64 (standard alphabet) and the key id: all visible ASCII; the key id may hold dots, so the
        // parts are read from the right.
        Some(format!("{}.{}.{}", sealed.key_id, sealed.nonce, sealed.ciphertext))
    }

    /// The upstream session id inside `presented`, when it was sealed for this server and principal.
    pub(crate) fn open(&self, server: Uuid, principal: Uuid, presented: &str) -> Option<String> {
        if presented.len() > MAX_PRESENTED {
            return None;
        }
        let mut parts = presented.rsplitn(3, '.');
        let (ciphertext, nonce, key_id) = (parts.next()?, parts.next()?, parts.next()?);
        let sealed = Sealed {
            key_id: key_id.to_owned(),
            nonce: nonce.to_owned(),
            ciphertext: ciphertext.to_owned(),
            fingerprint: None,
        };
        let opened = self.keyring.open(&sealed, &context(server, principal)).ok()?;
        Some(opened.expose().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> SessionIds {
        let keyring = Keyring::new("k.1", [("k.1", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")]).unwrap();
        SessionIds::new(Arc::new(keyring))
    }

    #[test]
    fn a_session_opens_only_for_its_server_and_principal() {
        let ids = ids();
        let (server, alice, bob) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let sealed = ids.seal(server, alice, "upstream-123").unwrap();
        assert!(sealed.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{sealed}");
        assert!(!sealed.contains("upstream-123"));
        assert_eq!(ids.open(server, alice, &sealed).as_deref(), Some("upstream-123"));
        assert_eq!(ids.open(server, bob, &sealed), None, "another principal");
        assert_eq!(ids.open(Uuid::now_v7(), alice, &sealed), None, "another server");
        assert_eq!(ids.open(server, alice, "k.1.AAAA.BBBB"), None, "forged");
        assert_eq!(ids.open(server, alice, "garbage"), None);
    }

    #[test]
    fn upstream_ids_that_are_not_session_ids_are_not_sealed() {
        let ids = ids();
        assert_eq!(ids.seal(Uuid::now_v7(), Uuid::now_v7(), "has space"), None);
        assert_eq!(ids.seal(Uuid::now_v7(), Uuid::now_v7(), ""), None);
    }
}
