//! Comparing secrets (digests of cookies, CSRF tokens, PKCE challenges, client secrets) in time that
//! does not depend on where they differ (the `subtle` crate), in one place.

/// Whether `a` and `b` are equal, compared in constant time (their lengths are not secret).
pub(crate) fn equal(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}
