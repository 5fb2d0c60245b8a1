//! The gateway's cookies: their names and attributes, reading one from a request, and the CSRF token
//! derived from a session's secret. Who the caller is rests on them, so they sit below the routes.

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// The cookie names and attributes: `__Host-` and `Secure` over https (the browser then refuses them from
/// any other origin and over plain http), plain names for a local http gateway.
pub struct Cookies {
    secure: bool,
}

impl Cookies {
    /// For a gateway served at `public_url`.
    pub fn for_url(public_url: &str) -> Self {
        Self { secure: public_url.starts_with("https://") }
    }

    /// The name of cookie `base`.
    pub fn name(&self, base: &str) -> String {
        if self.secure { format!("__Host-mgw_{base}") } else { format!("mgw_{base}") }
    }

    /// A `Set-Cookie` value for cookie `base` (empty and 0: removed).
    pub fn set(&self, base: &str, value: &str, max_age_seconds: i64) -> String {
        self.set_with(base, value, max_age_seconds, "Lax")
    }

    /// [`set`](Self::set), sent only with requests from the gateway's own pages (`SameSite=Strict`).
    pub fn set_strict(&self, base: &str, value: &str, max_age_seconds: i64) -> String {
        self.set_with(base, value, max_age_seconds, "Strict")
    }

    fn set_with(&self, base: &str, value: &str, max_age_seconds: i64, same_site: &str) -> String {
        let secure = if self.secure { "; Secure" } else { "" };
        format!(
            "{}={value}; Path=/; HttpOnly; SameSite={same_site}; Max-Age={max_age_seconds}{secure}",
            self.name(base)
        )
    }
}

/// The value of cookie `name` in the request, if any.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The CSRF token of a session: derived from its cookie secret, so it needs no storage; a page reads it
/// from the login answer and sends it as `X-CSRF-Token` with every state-changing request.
pub fn csrf_token(session_secret: &str) -> String {
    use sha2::Digest;
    URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(format!("csrf\n{session_secret}").as_bytes()))
}
