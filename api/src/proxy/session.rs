//! The gateway's `Mcp-Session-Id`: the upstream server's session id, sealed (XChaCha20-Poly1305 with the
//! keyring's current key, built once at start-up: no per-request key derivation) and bound to the server,
//! the principal and the upstream URL through the associated data. Any instance can open it, so a
//! client's session can be served by any gateway; another principal presenting it, the same id sent to
//! another server, or to this server once it moved to another URL (where the session means nothing),
//! fails authentication and gets 404, as a session the server does not know.

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

/// What a session is bound to.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Binding<'a> {
    /// The server.
    pub server: Uuid,
    /// The caller.
    pub principal: Uuid,
    /// The server's upstream URL.
    pub endpoint: &'a str,
}

impl Binding<'_> {
    fn context(&self) -> String {
        format!("mcp-session:{}:{}:{}", self.server, self.principal, self.endpoint)
    }
}

impl SessionIds {
    /// Session ids sealed with `keyring`.
    pub(crate) fn new(keyring: Arc<Keyring>) -> Self {
        Self { keyring }
    }

    /// The id the client gets for the upstream session `upstream`; `None` when it cannot be sealed or the
    /// upstream id is not a valid session id (visible ASCII, MCP transport §session management).
    pub(crate) fn seal(&self, binding: Binding<'_>, upstream: &str) -> Option<String> {
        if upstream.is_empty() || upstream.len() > 1024 || !upstream.bytes().all(|b| (0x21..=0x7e).contains(&b)) {
            return None;
        }
        let sealed = self.keyring.seal(&Secret::new(upstream.to_owned()), &binding.context()).ok()?;
        // Base64 (standard alphabet) and the key id: all visible ASCII; the key id may hold dots, so the
        // parts are read from the right.
        let id = format!("{}.{}.{}", sealed.key_id, sealed.nonce, sealed.ciphertext);
        // A key id is configured text: one that is not visible ASCII cannot name a session.
        id.bytes().all(|b| (0x21..=0x7e).contains(&b)).then_some(id)
    }

    /// The upstream session id inside `presented`, when it was sealed for `binding`.
    pub(crate) fn open(&self, binding: Binding<'_>, presented: &str) -> Option<String> {
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
        let opened = self.keyring.open(&sealed, &binding.context()).ok()?;
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

    const URL: &str = "https://mcp.example.com/mcp";

    #[test]
    fn a_session_opens_only_for_its_server_principal_and_url() {
        let ids = ids();
        let (server, alice, bob) = (Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7());
        let bound = Binding { server, principal: alice, endpoint: URL };
        let sealed = ids.seal(bound, "upstream-123").unwrap();
        assert!(sealed.bytes().all(|b| (0x21..=0x7e).contains(&b)), "{sealed}");
        assert!(!sealed.contains("upstream-123"));
        assert_eq!(ids.open(bound, &sealed).as_deref(), Some("upstream-123"));
        assert_eq!(ids.open(Binding { principal: bob, ..bound }, &sealed), None, "another principal");
        assert_eq!(ids.open(Binding { server: Uuid::now_v7(), ..bound }, &sealed), None, "another server");
        assert_eq!(ids.open(Binding { endpoint: "https://moved.example.com/mcp", ..bound }, &sealed), None, "moved");
        assert_eq!(ids.open(bound, "k.1.AAAA.BBBB"), None, "forged");
        assert_eq!(ids.open(bound, "garbage"), None);
    }

    #[test]
    fn upstream_ids_that_are_not_session_ids_are_not_sealed() {
        let ids = ids();
        let bound = Binding { server: Uuid::now_v7(), principal: Uuid::now_v7(), endpoint: URL };
        assert_eq!(ids.seal(bound, "has space"), None);
        assert_eq!(ids.seal(bound, ""), None);
    }
}
