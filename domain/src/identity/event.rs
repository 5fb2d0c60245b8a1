//! Identity events: principals (`principal-<id>`), API keys (`apikey-<id>`) and the set of owners
//! (`system-owners`, the consistency boundary of "the last owner cannot lose the role").

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Role, Sealed};

/// Who a principal is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A person.
    User,
    /// A machine client.
    Service,
}

/// A principal was created with its first roles (the bootstrap owner, a service account).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrincipalCreated {
    /// Id.
    pub principal_id: Uuid,
    /// Kind.
    pub kind: PrincipalKind,
    /// Display name.
    pub display_name: String,
    /// Roles.
    pub roles: Vec<Role>,
}

/// An API key was issued; only its digest and a display prefix are recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyIssued {
    /// Key id.
    pub key_id: Uuid,
    /// Owner principal.
    pub principal_id: Uuid,
    /// `mgw_` and the first characters, to tell keys apart in lists.
    pub prefix: String,
    /// SHA-256 of the key, hex.
    pub sha256: String,
    /// What the key is for, as its holder named it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// After this the key is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    /// The actions the key may be used for ([`crate::authz::Action`] names); empty: whatever the roles
    /// allow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// An API key was revoked: it is refused from now on, everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyRevoked {
    /// Key id.
    pub key_id: Uuid,
    /// Owner principal.
    pub principal_id: Uuid,
    /// Why.
    pub reason: String,
}

/// Where a role change came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RoleSource {
    /// An administrator's command.
    Admin,
    /// The identity provider's claims at a login.
    Idp,
}

/// A role was granted to a principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleGranted {
    /// The principal.
    pub principal_id: Uuid,
    /// The role.
    pub role: Role,
    /// From where.
    pub source: RoleSource,
    /// Why (required from administrators).
    pub reason: String,
}

/// A role was taken from a principal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRevoked {
    /// The principal.
    pub principal_id: Uuid,
    /// The role.
    pub role: Role,
    /// From where.
    pub source: RoleSource,
    /// Why.
    pub reason: String,
}

/// A principal was disabled: its sessions and keys stop working everywhere.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserDisabled {
    /// The principal.
    pub principal_id: Uuid,
    /// Why.
    pub reason: String,
}

/// A disabled principal was enabled again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserEnabled {
    /// The principal.
    pub principal_id: Uuid,
}

/// A TOTP second factor was enrolled (the secret sealed; replaces an earlier one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotpEnrolled {
    /// The principal.
    pub principal_id: Uuid,
    /// The shared secret, sealed.
    pub secret: Sealed,
}

/// The principal proved its second factor (a TOTP code): the step-up that sensitive grants require.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotpVerified {
    /// The principal.
    pub principal_id: Uuid,
    /// When.
    pub at: DateTime<Utc>,
    /// The TOTP time step of the code, so that a code is accepted once.
    pub step: u64,
    /// The credential (session or API key) that proved it: the step-up counts for that credential
    /// alone, not for every other one of the principal. Absent in events of earlier versions, which
    /// therefore count for none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<Uuid>,
}

/// A wrong TOTP code was sent: recorded so that every instance, and a restarted one, counts the
/// guesses against the same limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotpRejected {
    /// The principal.
    pub principal_id: Uuid,
    /// When.
    pub at: DateTime<Utc>,
    /// The credential that sent it.
    pub credential: Uuid,
}

/// The principal may enrol a first second factor without an IdP login with MFA: an owner vouched for
/// it, or the operator did by local access to the store (the first owner, created by the bootstrap).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TotpEnrolmentApproved {
    /// The principal.
    pub principal_id: Uuid,
    /// Who approved: an owner's principal id, or `local-operator`.
    pub approved_by: String,
    /// Until when (`None`: until used).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
}

/// The set of owners after a change (on `system-owners`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OwnersChanged {
    /// Every owner, after the change.
    pub owners: Vec<Uuid>,
}

/// A key that signs the gateway's access tokens was created and signs from now on (on
/// `system-signingkeys`). The private key is sealed; the public key is published in the JWKS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyCreated {
    /// The key id (`kid`).
    pub kid: String,
    /// The Ed25519 public key, base64url without padding (a JWK's `x`).
    pub public_key: String,
    /// The 32-byte Ed25519 seed, sealed.
    pub private_key: Sealed,
}

/// A signing key was retired: tokens it signed are refused from now on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningKeyRetired {
    /// The key id.
    pub kid: String,
}

/// A person was provisioned at their first login through an identity provider (on the principal's
/// stream, after `PrincipalCreated`). Keyed by issuer and immutable subject, never by email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserProvisioned {
    /// The principal.
    pub principal_id: Uuid,
    /// The configured identity provider's name.
    pub idp: String,
    /// Its issuer.
    pub issuer: String,
    /// The immutable subject at that issuer.
    pub subject: String,
    /// The email the IdP reported (informational: never used to match users).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// The name or email an identity provider reports for a person changed since they were last recorded
/// (display attributes only: the person stays keyed by issuer and subject).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserProfileUpdated {
    /// The principal.
    pub principal_id: Uuid,
    /// The name to show now.
    pub display_name: String,
    /// The email now reported (informational: never used to match users).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// A login through an identity provider succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserLoggedIn {
    /// The principal.
    pub principal_id: Uuid,
    /// The identity provider.
    pub idp: String,
    /// The authentication methods the IdP reported (`amr`).
    pub amr: Vec<String>,
    /// When.
    pub at: DateTime<Utc>,
    /// The session the login started: an MFA it reports counts for that session alone. Absent in
    /// events of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<Uuid>,
}

/// A session started (on `session-<id>`): a browser's login, with its device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionStarted {
    /// The session.
    pub session_id: Uuid,
    /// Whose.
    pub principal_id: Uuid,
    /// How: `oidc:<idp>`.
    pub method: String,
    /// SHA-256 of the session cookie's secret, hex (the secret itself is never stored).
    pub secret_sha256: String,
    /// The device cookie's id.
    pub device_id: Uuid,
    /// The user agent, cut to the store's limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// The client address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The absolute end of the session.
    pub expires_at: DateTime<Utc>,
}

/// A session was ended before its time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRevoked {
    /// The session.
    pub session_id: Uuid,
    /// Whose.
    pub principal_id: Uuid,
    /// Who ended it.
    pub by: Uuid,
    /// Why.
    pub reason: String,
}

/// A session was refreshed: its cookie secret rotated (the old one is dead from now on).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionRefreshed {
    /// The session.
    pub session_id: Uuid,
    /// Whose.
    pub principal_id: Uuid,
    /// SHA-256 of the new secret, hex.
    pub secret_sha256: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A session ran out: idle for too long, or past its absolute end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionExpired {
    /// The session.
    pub session_id: Uuid,
    /// Whose.
    pub principal_id: Uuid,
    /// `idle` or `absolute`.
    pub reason: String,
}

/// Something about a session looked like theft; the session is revoked with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SuspiciousSessionActivity {
    /// The session.
    pub session_id: Uuid,
    /// Whose.
    pub principal_id: Uuid,
    /// `secret_reuse` (a rotated-out secret presented again) or `device_mismatch`.
    pub kind: String,
    /// The client address that did it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
}

/// Identity events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityEvent {
    /// `PrincipalCreated`.
    PrincipalCreated(PrincipalCreated),
    /// `ApiKeyIssued`.
    ApiKeyIssued(ApiKeyIssued),
    /// `ApiKeyRevoked`.
    ApiKeyRevoked(ApiKeyRevoked),
    /// `RoleGranted`.
    RoleGranted(RoleGranted),
    /// `RoleRevoked`.
    RoleRevoked(RoleRevoked),
    /// `UserDisabled`.
    UserDisabled(UserDisabled),
    /// `UserEnabled`.
    UserEnabled(UserEnabled),
    /// `TotpEnrolled`.
    TotpEnrolled(TotpEnrolled),
    /// `TotpVerified`.
    TotpVerified(TotpVerified),
    /// `OwnersChanged`.
    OwnersChanged(OwnersChanged),
    /// `SigningKeyCreated`.
    SigningKeyCreated(SigningKeyCreated),
    /// `SigningKeyRetired`.
    SigningKeyRetired(SigningKeyRetired),
    /// `UserProvisioned`.
    UserProvisioned(UserProvisioned),
    /// `UserLoggedIn`.
    UserLoggedIn(UserLoggedIn),
    /// `SessionStarted`.
    SessionStarted(SessionStarted),
    /// `SessionRevoked`.
    SessionRevoked(SessionRevoked),
    /// `SessionRefreshed`.
    SessionRefreshed(SessionRefreshed),
    /// `SessionExpired`.
    SessionExpired(SessionExpired),
    /// `SuspiciousSessionActivity`.
    SuspiciousSessionActivity(SuspiciousSessionActivity),
    /// `UserProfileUpdated`.
    UserProfileUpdated(UserProfileUpdated),
    /// `TotpRejected`.
    TotpRejected(TotpRejected),
    /// `TotpEnrolmentApproved`.
    TotpEnrolmentApproved(TotpEnrolmentApproved),
}

impl IdentityEvent {
    /// Every type name.
    pub const TYPES: [&'static str; 22] = [
        "PrincipalCreated",
        "ApiKeyIssued",
        "ApiKeyRevoked",
        "RoleGranted",
        "RoleRevoked",
        "UserDisabled",
        "UserEnabled",
        "TotpEnrolled",
        "TotpVerified",
        "OwnersChanged",
        "SigningKeyCreated",
        "SigningKeyRetired",
        "UserProvisioned",
        "UserLoggedIn",
        "SessionStarted",
        "SessionRevoked",
        "SessionRefreshed",
        "SessionExpired",
        "SuspiciousSessionActivity",
        "UserProfileUpdated",
        "TotpRejected",
        "TotpEnrolmentApproved",
    ];

    /// The stored type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            IdentityEvent::PrincipalCreated(_) => Self::TYPES[0],
            IdentityEvent::ApiKeyIssued(_) => Self::TYPES[1],
            IdentityEvent::ApiKeyRevoked(_) => Self::TYPES[2],
            IdentityEvent::RoleGranted(_) => Self::TYPES[3],
            IdentityEvent::RoleRevoked(_) => Self::TYPES[4],
            IdentityEvent::UserDisabled(_) => Self::TYPES[5],
            IdentityEvent::UserEnabled(_) => Self::TYPES[6],
            IdentityEvent::TotpEnrolled(_) => Self::TYPES[7],
            IdentityEvent::TotpVerified(_) => Self::TYPES[8],
            IdentityEvent::OwnersChanged(_) => Self::TYPES[9],
            IdentityEvent::SigningKeyCreated(_) => Self::TYPES[10],
            IdentityEvent::SigningKeyRetired(_) => Self::TYPES[11],
            IdentityEvent::UserProvisioned(_) => Self::TYPES[12],
            IdentityEvent::UserLoggedIn(_) => Self::TYPES[13],
            IdentityEvent::SessionStarted(_) => Self::TYPES[14],
            IdentityEvent::SessionRevoked(_) => Self::TYPES[15],
            IdentityEvent::SessionRefreshed(_) => Self::TYPES[16],
            IdentityEvent::SessionExpired(_) => Self::TYPES[17],
            IdentityEvent::SuspiciousSessionActivity(_) => Self::TYPES[18],
            IdentityEvent::UserProfileUpdated(_) => Self::TYPES[19],
            IdentityEvent::TotpRejected(_) => Self::TYPES[20],
            IdentityEvent::TotpEnrolmentApproved(_) => Self::TYPES[21],
        }
    }

    /// The payload as JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        match self {
            IdentityEvent::PrincipalCreated(e) => serde_json::to_string(e),
            IdentityEvent::ApiKeyIssued(e) => serde_json::to_string(e),
            IdentityEvent::ApiKeyRevoked(e) => serde_json::to_string(e),
            IdentityEvent::RoleGranted(e) => serde_json::to_string(e),
            IdentityEvent::RoleRevoked(e) => serde_json::to_string(e),
            IdentityEvent::UserDisabled(e) => serde_json::to_string(e),
            IdentityEvent::UserEnabled(e) => serde_json::to_string(e),
            IdentityEvent::TotpEnrolled(e) => serde_json::to_string(e),
            IdentityEvent::TotpVerified(e) => serde_json::to_string(e),
            IdentityEvent::OwnersChanged(e) => serde_json::to_string(e),
            IdentityEvent::SigningKeyCreated(e) => serde_json::to_string(e),
            IdentityEvent::SigningKeyRetired(e) => serde_json::to_string(e),
            IdentityEvent::UserProvisioned(e) => serde_json::to_string(e),
            IdentityEvent::UserLoggedIn(e) => serde_json::to_string(e),
            IdentityEvent::SessionStarted(e) => serde_json::to_string(e),
            IdentityEvent::SessionRevoked(e) => serde_json::to_string(e),
            IdentityEvent::SessionRefreshed(e) => serde_json::to_string(e),
            IdentityEvent::SessionExpired(e) => serde_json::to_string(e),
            IdentityEvent::SuspiciousSessionActivity(e) => serde_json::to_string(e),
            IdentityEvent::UserProfileUpdated(e) => serde_json::to_string(e),
            IdentityEvent::TotpRejected(e) => serde_json::to_string(e),
            IdentityEvent::TotpEnrolmentApproved(e) => serde_json::to_string(e),
        }
    }

    /// Reads a stored event back; `None` for another type.
    pub fn from_json(event_type: &str, data: &str) -> Option<Result<Self, serde_json::Error>> {
        use serde_json::from_str;
        Some(match event_type {
            "PrincipalCreated" => from_str(data).map(IdentityEvent::PrincipalCreated),
            "ApiKeyIssued" => from_str(data).map(IdentityEvent::ApiKeyIssued),
            "ApiKeyRevoked" => from_str(data).map(IdentityEvent::ApiKeyRevoked),
            "RoleGranted" => from_str(data).map(IdentityEvent::RoleGranted),
            "RoleRevoked" => from_str(data).map(IdentityEvent::RoleRevoked),
            "UserDisabled" => from_str(data).map(IdentityEvent::UserDisabled),
            "UserEnabled" => from_str(data).map(IdentityEvent::UserEnabled),
            "TotpEnrolled" => from_str(data).map(IdentityEvent::TotpEnrolled),
            "TotpVerified" => from_str(data).map(IdentityEvent::TotpVerified),
            "OwnersChanged" => from_str(data).map(IdentityEvent::OwnersChanged),
            "SigningKeyCreated" => from_str(data).map(IdentityEvent::SigningKeyCreated),
            "SigningKeyRetired" => from_str(data).map(IdentityEvent::SigningKeyRetired),
            "UserProvisioned" => from_str(data).map(IdentityEvent::UserProvisioned),
            "UserLoggedIn" => from_str(data).map(IdentityEvent::UserLoggedIn),
            "SessionStarted" => from_str(data).map(IdentityEvent::SessionStarted),
            "SessionRevoked" => from_str(data).map(IdentityEvent::SessionRevoked),
            "SessionRefreshed" => from_str(data).map(IdentityEvent::SessionRefreshed),
            "SessionExpired" => from_str(data).map(IdentityEvent::SessionExpired),
            "SuspiciousSessionActivity" => from_str(data).map(IdentityEvent::SuspiciousSessionActivity),
            "UserProfileUpdated" => from_str(data).map(IdentityEvent::UserProfileUpdated),
            "TotpRejected" => from_str(data).map(IdentityEvent::TotpRejected),
            "TotpEnrolmentApproved" => from_str(data).map(IdentityEvent::TotpEnrolmentApproved),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_issued_before_names_expiry_and_scopes_existed_still_reads() {
        let old = concat!(
            r#"{"key_id":"00000000-0000-0000-0000-000000000001","#,
            r#""principal_id":"00000000-0000-0000-0000-000000000002","prefix":"mgw_abcdef","sha256":"00"}"#
        );
        let Some(Ok(IdentityEvent::ApiKeyIssued(key))) = IdentityEvent::from_json("ApiKeyIssued", old) else {
            panic!("the old shape must read");
        };
        assert_eq!((key.name, key.expires_at, key.scopes), (None, None, vec![]));
        let written = IdentityEvent::ApiKeyIssued(ApiKeyIssued { name: None, expires_at: None, scopes: vec![], ..key });
        assert_eq!(written.to_json().unwrap(), old);
    }
}
