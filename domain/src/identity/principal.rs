//! The principal aggregate: its roles, whether it is disabled, its second factor; and the rules every
//! role change and every disabling obeys.

use std::collections::BTreeSet;

use chrono::{DateTime, Duration, Utc};
use uuid::Uuid;

use super::event::{
    IdentityEvent, PrincipalCreated, PrincipalKind, RoleGranted, RoleRevoked, RoleSource, UserDisabled, UserEnabled,
    UserProfileUpdated,
};
use crate::{Role, Sealed};

/// How recent a second-factor proof must be for granting `admin` or `owner`.
pub const MFA_FRESHNESS: Duration = Duration::minutes(10);
/// Wrong TOTP codes a principal may send per [`CODE_FAILURE_WINDOW`] before it must wait (three codes
/// are valid at any moment; unthrottled, a million guesses would find one in minutes).
pub const MAX_CODE_FAILURES: usize = 5;
/// How long an approval to enrol a first second factor lasts.
pub const ENROLMENT_APPROVAL_LIFETIME: Duration = Duration::days(1);
/// The window of [`MAX_CODE_FAILURES`].
pub const CODE_FAILURE_WINDOW: Duration = Duration::minutes(5);

/// A principal as its stream folds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrincipalState {
    /// Id.
    pub id: Uuid,
    /// Kind.
    pub kind: PrincipalKind,
    /// Display name.
    pub display_name: String,
    /// Roles held.
    pub roles: BTreeSet<Role>,
    /// Disabled principals authenticate nowhere.
    pub disabled: bool,
    /// The enrolled TOTP secret, sealed.
    pub totp: Option<Sealed>,
    /// The last second-factor proof: when, its TOTP step, and the credential that made it.
    pub mfa: Option<(DateTime<Utc>, u64, Option<Uuid>)>,
    /// The last wrong codes (at most [`MAX_CODE_FAILURES`]), oldest first.
    pub code_failures: Vec<DateTime<Utc>>,
    /// An approval to enrol a first TOTP secret, and until when (`None`: until used).
    pub enrolment_approved: Option<Option<DateTime<Utc>>>,
    /// The roles the identity provider's claims granted (and may take back at a later login); roles an
    /// administrator granted are not among them.
    pub idp_roles: BTreeSet<Role>,
    /// The last login whose IdP reported multi-factor authentication (`amr` contains `mfa`), and the
    /// session it started.
    pub idp_mfa_at: Option<(DateTime<Utc>, Option<Uuid>)>,
    /// Provisioned from this issuer and subject.
    pub external: Option<(String, String)>,
    /// The email the IdP last reported.
    pub email: Option<String>,
    /// Roles an administrator took away: the IdP's claims do not give them back (an administrator's
    /// grant lifts the block).
    pub idp_blocked: BTreeSet<Role>,
}

impl PrincipalState {
    /// Folds the principal's events; `None` before its creation.
    pub fn evolve(state: Option<Self>, event: &IdentityEvent) -> Option<Self> {
        if let IdentityEvent::PrincipalCreated(PrincipalCreated { principal_id, kind, display_name, roles }) = event {
            return Some(Self {
                id: *principal_id,
                kind: *kind,
                display_name: display_name.clone(),
                roles: roles.iter().copied().collect(),
                disabled: false,
                totp: None,
                mfa: None,
                code_failures: Vec::new(),
                enrolment_approved: None,
                idp_roles: BTreeSet::new(),
                idp_mfa_at: None,
                external: None,
                email: None,
                idp_blocked: BTreeSet::new(),
            });
        }
        let mut state = state?;
        match event {
            IdentityEvent::RoleGranted(g) => {
                state.roles.insert(g.role);
                // An administrator's grant is the administrator's to take back, not the IdP's.
                match g.source {
                    RoleSource::Idp => state.idp_roles.insert(g.role),
                    RoleSource::Admin => {
                        state.idp_blocked.remove(&g.role);
                        state.idp_roles.remove(&g.role)
                    }
                };
            }
            IdentityEvent::RoleRevoked(r) => {
                state.roles.remove(&r.role);
                state.idp_roles.remove(&r.role);
                // An administrator's revocation sticks: the next login's claims do not undo it.
                if r.source == RoleSource::Admin {
                    state.idp_blocked.insert(r.role);
                }
            }
            IdentityEvent::UserProvisioned(p) => {
                state.external = Some((p.issuer.clone(), p.subject.clone()));
                state.email = p.email.clone();
            }
            IdentityEvent::UserProfileUpdated(p) => {
                state.display_name = p.display_name.clone();
                state.email = p.email.clone();
            }
            IdentityEvent::UserLoggedIn(l) if l.amr.iter().any(|m| m == "mfa") => {
                state.idp_mfa_at = Some((l.at, l.session_id))
            }
            IdentityEvent::UserDisabled(_) => state.disabled = true,
            IdentityEvent::UserEnabled(_) => state.disabled = false,
            IdentityEvent::TotpEnrolled(t) => {
                state.totp = Some(t.secret.clone());
                state.mfa = None;
                state.enrolment_approved = None;
                state.code_failures.clear();
            }
            IdentityEvent::TotpVerified(v) => {
                state.mfa = Some((v.at, v.step, v.credential));
                state.code_failures.clear();
            }
            IdentityEvent::TotpRejected(r) => {
                state.code_failures.push(r.at);
                let excess = state.code_failures.len().saturating_sub(MAX_CODE_FAILURES);
                state.code_failures.drain(..excess);
            }
            IdentityEvent::TotpEnrolmentApproved(a) => state.enrolment_approved = Some(a.expires_at),
            _ => {}
        }
        Some(state)
    }

    /// Whether `credential` (the session or API key acting) proved a second factor within
    /// [`MFA_FRESHNESS`] of `now`: a TOTP step-up made with it, or the IdP login with MFA that started
    /// it. A step-up made with another credential of the same principal does not count.
    pub fn mfa_fresh(&self, now: DateTime<Utc>, credential: Uuid) -> bool {
        let fresh = |at: DateTime<Utc>, by: Option<Uuid>| {
            by == Some(credential) && now - at <= MFA_FRESHNESS && at <= now + Duration::seconds(5)
        };
        self.mfa.is_some_and(|(at, _, by)| fresh(at, by)) || self.idp_mfa_at.is_some_and(|(at, by)| fresh(at, by))
    }

    /// Whether `credential` may enrol a first TOTP secret at `now`: only people do (a service principal
    /// holds keys, and a key is one factor however it is used), and only with a login whose IdP reported
    /// MFA for this session, or with an approval. Without that, anyone holding a stolen key or session
    /// could enrol their own authenticator and pass every step-up after.
    pub fn may_enrol_first_factor(&self, now: DateTime<Utc>, credential: Uuid) -> bool {
        let approved = self.enrolment_approved.is_some_and(|until| until.is_none_or(|until| now <= until));
        self.kind == PrincipalKind::User
            && (approved || self.idp_mfa_at.is_some_and(|(at, by)| by == Some(credential) && now - at <= MFA_FRESHNESS))
    }

    /// Whether too many wrong codes arrived within [`CODE_FAILURE_WINDOW`] of `now`.
    pub fn code_attempts_exhausted(&self, now: DateTime<Utc>) -> bool {
        self.code_failures.iter().filter(|at| now - **at <= CODE_FAILURE_WINDOW).count() >= MAX_CODE_FAILURES
    }

    /// The event recording that the IdP now reports another name or email, if it does (an IdP that
    /// leaves the email out this time does not clear the one it reported before).
    pub fn profile_update(&self, display_name: &str, email: Option<&str>) -> Option<IdentityEvent> {
        let email = email.or(self.email.as_deref());
        let changed = self.display_name != display_name || self.email.as_deref() != email;
        changed.then(|| {
            IdentityEvent::UserProfileUpdated(UserProfileUpdated {
                principal_id: self.id,
                display_name: display_name.to_owned(),
                email: email.map(str::to_owned),
            })
        })
    }

    /// The events that bring the IdP-granted roles in line with `mapped` at a login: grants of mapped
    /// roles not held, revocations of IdP-granted roles no longer mapped. Roles an administrator granted
    /// are left alone, and the owner role never comes or goes this way.
    ///
    /// With `revoke` false (the claims are incomplete: a groups overage), nothing is taken away.
    pub fn sync_idp_roles(&self, mapped: &BTreeSet<Role>, idp: &str, revoke: bool) -> Vec<IdentityEvent> {
        let reason = format!("claims at a login through {idp}");
        // Separation of duties holds for the IdP's grants too: an auditor gets no other role from claims,
        // and nobody holding (or being granted) another role becomes an auditor through them.
        let others_after = self.roles.iter().chain(mapped.iter()).any(|r| *r != Role::Auditor);
        let auditor = self.roles.contains(&Role::Auditor);
        let separated = |r: &Role| if *r == Role::Auditor { !others_after } else { !auditor };
        let grantable =
            |r: &&Role| **r != Role::Owner && !self.roles.contains(r) && !self.idp_blocked.contains(r) && separated(r);
        let grants = mapped.iter().filter(grantable).map(|role| {
            IdentityEvent::RoleGranted(RoleGranted {
                principal_id: self.id,
                role: *role,
                source: RoleSource::Idp,
                reason: reason.clone(),
            })
        });
        let revocations =
            self.idp_roles.iter().filter(|r| revoke && **r != Role::Owner && !mapped.contains(r)).map(|role| {
                IdentityEvent::RoleRevoked(RoleRevoked {
                    principal_id: self.id,
                    role: *role,
                    source: RoleSource::Idp,
                    reason: reason.clone(),
                })
            });
        grants.chain(revocations).collect()
    }
}

/// Grant or revoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RoleChange {
    /// Give the role.
    Grant,
    /// Take it.
    Revoke,
}

/// Why a role change, or a disabling, is refused. Each has a stable problem type in the API.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleChangeRefused {
    /// Nobody changes their own roles (or disables themselves).
    #[error("nobody changes their own roles or disables themselves")]
    OwnRoles,
    /// Nobody grants or revokes a role above their own.
    #[error("the role {0} is above every role the actor holds")]
    AboveOwn(&'static str),
    /// The last owner keeps the role and stays enabled.
    #[error("the last owner cannot lose the role or be disabled")]
    LastOwner,
    /// Granting admin or owner needs a second factor proven in the last minutes.
    #[error("granting {0} needs a second factor proven in the last 10 minutes (TOTP step-up or an IdP login with MFA)")]
    MfaRequired(&'static str),
    /// Administrators say why, in one line of printable text.
    #[error("the reason {0}")]
    Reason(crate::text::TextError),
    /// The target holds a role above every role the actor holds: nobody changes the roles of someone
    /// who outranks them.
    #[error("the principal holds {0}, above every role the actor holds")]
    TargetAbove(&'static str),
    /// An auditor holds no other role, and nobody with another role becomes an auditor: who reads the
    /// trail of what administrators did is not one of them.
    #[error("an auditor holds no other role (separation of duties)")]
    SeparationOfDuties,
    /// Granting a role held, or revoking one not held.
    #[error("the principal {0} the role")]
    NoChange(&'static str),
}

/// The rank a role confers for granting: owner above admin. The auditor, outside the chain, ranks with
/// the owner: only owners make, unmake or disable auditors, so that an admin cannot appoint someone to
/// read the trail of what admins did (separation of duties).
pub fn rank(role: Role) -> u8 {
    match role {
        Role::Owner | Role::Auditor => 5,
        Role::Admin => 4,
        Role::ServerManager => 3,
        Role::Developer => 2,
        Role::Viewer => 1,
    }
}

/// Whether `actor_roles` reach every role in `target_roles` (acting on somebody's credentials or
/// status needs that).
pub fn outranks_or_equals(actor_roles: &BTreeSet<Role>, target_roles: &BTreeSet<Role>) -> bool {
    role_above(actor_roles, target_roles).is_none()
}

fn highest_rank(roles: &BTreeSet<Role>) -> u8 {
    roles.iter().map(|r| rank(*r)).max().unwrap_or(0)
}

/// A role of `target_roles` above every role in `actor_roles`, if there is one.
fn role_above(actor_roles: &BTreeSet<Role>, target_roles: &BTreeSet<Role>) -> Option<Role> {
    target_roles.iter().copied().find(|r| rank(*r) > highest_rank(actor_roles))
}

/// The actor of a role change, as its own stream has it.
#[derive(Debug, Clone, Copy)]
pub struct RoleActor<'a> {
    /// Who.
    pub id: Uuid,
    /// Its roles.
    pub roles: &'a BTreeSet<Role>,
    /// Whether it proved a second factor recently.
    pub mfa_fresh: bool,
}

/// Decides an administrator's role change on `target`; `owners` is the current set of owners. The
/// event to append, or why not. (Whether the actor may change roles at all is the authorization
/// decision's `roles.grant`, asked before.)
pub fn decide_role_change(
    actor: RoleActor<'_>,
    target: &PrincipalState,
    change: RoleChange,
    role: Role,
    reason: &str,
    owners: &BTreeSet<Uuid>,
) -> Result<IdentityEvent, RoleChangeRefused> {
    if actor.id == target.id {
        return Err(RoleChangeRefused::OwnRoles);
    }
    let reason = crate::text::reason(reason).map_err(RoleChangeRefused::Reason)?;
    if highest_rank(actor.roles) < rank(role) {
        return Err(RoleChangeRefused::AboveOwn(role.as_str()));
    }
    if let Some(above) = role_above(actor.roles, &target.roles) {
        return Err(RoleChangeRefused::TargetAbove(above.as_str()));
    }
    let principal_id = target.id;
    match change {
        RoleChange::Grant => {
            if target.roles.contains(&role) {
                return Err(RoleChangeRefused::NoChange("already holds"));
            }
            let auditor_mixed =
                if role == Role::Auditor { !target.roles.is_empty() } else { target.roles.contains(&Role::Auditor) };
            if auditor_mixed {
                return Err(RoleChangeRefused::SeparationOfDuties);
            }
            if matches!(role, Role::Owner | Role::Admin) && !actor.mfa_fresh {
                return Err(RoleChangeRefused::MfaRequired(role.as_str()));
            }
            Ok(IdentityEvent::RoleGranted(RoleGranted { principal_id, role, source: RoleSource::Admin, reason }))
        }
        RoleChange::Revoke => {
            if !target.roles.contains(&role) {
                return Err(RoleChangeRefused::NoChange("does not hold"));
            }
            if role == Role::Owner && owners.iter().all(|o| *o == target.id) {
                return Err(RoleChangeRefused::LastOwner);
            }
            Ok(IdentityEvent::RoleRevoked(RoleRevoked { principal_id, role, source: RoleSource::Admin, reason }))
        }
    }
}

/// Decides disabling (`disable`) or enabling a principal: nobody disables or enables a principal who
/// holds a role above their own (an admin cannot lock an owner out).
pub fn decide_disable(
    actor: RoleActor<'_>,
    target: &PrincipalState,
    disable: bool,
    reason: &str,
    owners: &BTreeSet<Uuid>,
) -> Result<Option<IdentityEvent>, RoleChangeRefused> {
    if actor.id == target.id {
        return Err(RoleChangeRefused::OwnRoles);
    }
    if let Some(above) = role_above(actor.roles, &target.roles) {
        return Err(RoleChangeRefused::AboveOwn(above.as_str()));
    }
    if !disable {
        return Ok(target.disabled.then_some(IdentityEvent::UserEnabled(UserEnabled { principal_id: target.id })));
    }
    let reason = crate::text::reason(reason).map_err(RoleChangeRefused::Reason)?;
    let enabled_owners = owners.iter().filter(|o| **o != target.id).count();
    if target.roles.contains(&Role::Owner) && enabled_owners == 0 {
        return Err(RoleChangeRefused::LastOwner);
    }
    Ok((!target.disabled).then_some(IdentityEvent::UserDisabled(UserDisabled { principal_id: target.id, reason })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(n: u128, roles: &[Role]) -> PrincipalState {
        PrincipalState {
            id: Uuid::from_u128(n),
            kind: PrincipalKind::User,
            display_name: format!("p{n}"),
            roles: roles.iter().copied().collect(),
            disabled: false,
            totp: None,
            mfa: None,
            code_failures: Vec::new(),
            enrolment_approved: None,
            idp_roles: BTreeSet::new(),
            idp_mfa_at: None,
            external: None,
            email: None,
            idp_blocked: BTreeSet::new(),
        }
    }

    fn actor(p: &PrincipalState, mfa_fresh: bool) -> RoleActor<'_> {
        RoleActor { id: p.id, roles: &p.roles, mfa_fresh }
    }

    #[test]
    fn nobody_changes_their_own_roles() {
        let owner = principal(1, &[Role::Owner]);
        let owners = BTreeSet::from([owner.id, Uuid::from_u128(9)]);
        let refused = decide_role_change(actor(&owner, true), &owner, RoleChange::Revoke, Role::Owner, "r", &owners);
        assert_eq!(refused, Err(RoleChangeRefused::OwnRoles));
        assert_eq!(decide_disable(actor(&owner, true), &owner, true, "r", &owners), Err(RoleChangeRefused::OwnRoles));
    }

    #[test]
    fn nobody_grants_or_revokes_above_their_own_role() {
        let (admin, target) = (principal(1, &[Role::Admin]), principal(2, &[Role::Owner]));
        let owners = BTreeSet::from([target.id, Uuid::from_u128(9)]);
        for change in [RoleChange::Grant, RoleChange::Revoke] {
            let refused = decide_role_change(actor(&admin, true), &target, change, Role::Owner, "r", &owners);
            assert_eq!(refused, Err(RoleChangeRefused::AboveOwn("owner")));
        }
        let viewer = principal(3, &[]);
        let auditor = decide_role_change(actor(&admin, true), &viewer, RoleChange::Grant, Role::Auditor, "r", &owners);
        assert_eq!(auditor, Err(RoleChangeRefused::AboveOwn("auditor")), "only owners appoint auditors");
        let granted =
            decide_role_change(actor(&admin, true), &viewer, RoleChange::Grant, Role::ServerManager, "r", &owners);
        assert!(matches!(granted, Ok(IdentityEvent::RoleGranted(_))));
    }

    #[test]
    fn nobody_changes_the_roles_of_someone_who_outranks_them() {
        let (admin, owner) = (principal(1, &[Role::Admin]), principal(2, &[Role::Owner]));
        let owners = BTreeSet::from([owner.id, Uuid::from_u128(9)]);
        for change in [RoleChange::Grant, RoleChange::Revoke] {
            let mut target = owner.clone();
            if change == RoleChange::Revoke {
                target.roles.insert(Role::Viewer);
            }
            let refused = decide_role_change(actor(&admin, true), &target, change, Role::Viewer, "r", &owners);
            assert_eq!(refused, Err(RoleChangeRefused::TargetAbove("owner")), "{change:?}");
        }
        let auditor = principal(3, &[Role::Auditor]);
        let refused = decide_role_change(actor(&admin, true), &auditor, RoleChange::Grant, Role::Viewer, "r", &owners);
        assert_eq!(refused, Err(RoleChangeRefused::TargetAbove("auditor")));
    }

    #[test]
    fn an_auditor_holds_no_other_role() {
        let owner = principal(1, &[Role::Owner]);
        let owners = BTreeSet::from([owner.id]);
        let auditor = principal(2, &[Role::Auditor]);
        let refused = decide_role_change(actor(&owner, true), &auditor, RoleChange::Grant, Role::Viewer, "r", &owners);
        assert_eq!(refused, Err(RoleChangeRefused::SeparationOfDuties));
        let developer = principal(3, &[Role::Developer]);
        let refused =
            decide_role_change(actor(&owner, true), &developer, RoleChange::Grant, Role::Auditor, "r", &owners);
        assert_eq!(refused, Err(RoleChangeRefused::SeparationOfDuties));
        let nobody = principal(4, &[]);
        assert!(
            decide_role_change(actor(&owner, true), &nobody, RoleChange::Grant, Role::Auditor, "r", &owners).is_ok()
        );
        let revoked =
            decide_role_change(actor(&owner, true), &auditor, RoleChange::Revoke, Role::Auditor, "r", &owners);
        assert!(revoked.is_ok(), "an auditor can be made a plain principal again");
    }

    #[test]
    fn the_last_owner_keeps_the_role_and_stays_enabled() {
        let (a, b) = (principal(1, &[Role::Owner]), principal(2, &[Role::Owner]));
        let only_b = BTreeSet::from([b.id]);
        let refused = decide_role_change(actor(&a, true), &b, RoleChange::Revoke, Role::Owner, "r", &only_b);
        assert_eq!(refused, Err(RoleChangeRefused::LastOwner));
        assert_eq!(decide_disable(actor(&a, true), &b, true, "r", &only_b), Err(RoleChangeRefused::LastOwner));
        let both = BTreeSet::from([a.id, b.id]);
        assert!(decide_role_change(actor(&a, true), &b, RoleChange::Revoke, Role::Owner, "r", &both).is_ok());
        assert!(decide_disable(actor(&a, true), &b, true, "r", &both).unwrap().is_some());
        let admin = principal(3, &[Role::Admin]);
        assert_eq!(
            decide_disable(actor(&admin, true), &b, true, "r", &both),
            Err(RoleChangeRefused::AboveOwn("owner"))
        );
    }

    #[test]
    fn granting_admin_or_owner_needs_a_fresh_second_factor() {
        let (owner, target) = (principal(1, &[Role::Owner]), principal(2, &[]));
        let owners = BTreeSet::from([owner.id]);
        for role in [Role::Admin, Role::Owner] {
            let refused = decide_role_change(actor(&owner, false), &target, RoleChange::Grant, role, "r", &owners);
            assert_eq!(refused, Err(RoleChangeRefused::MfaRequired(role.as_str())));
            assert!(decide_role_change(actor(&owner, true), &target, RoleChange::Grant, role, "r", &owners).is_ok());
        }
        let developer =
            decide_role_change(actor(&owner, false), &target, RoleChange::Grant, Role::Developer, "r", &owners);
        assert!(developer.is_ok());
    }

    #[test]
    fn a_reason_is_required_and_no_op_changes_are_refused() {
        let (owner, target) = (principal(1, &[Role::Owner]), principal(2, &[Role::Viewer]));
        let owners = BTreeSet::from([owner.id]);
        let refused =
            decide_role_change(actor(&owner, true), &target, RoleChange::Grant, Role::Developer, " ", &owners);
        assert_eq!(refused, Err(RoleChangeRefused::Reason(crate::text::TextError::Empty)));
        let refused =
            decide_role_change(actor(&owner, true), &target, RoleChange::Grant, Role::Developer, "a\0b", &owners);
        assert_eq!(refused, Err(RoleChangeRefused::Reason(crate::text::TextError::Forbidden(0))));
        let refused = decide_disable(actor(&owner, true), &target, true, "r\u{202E}", &owners);
        assert!(matches!(refused, Err(RoleChangeRefused::Reason(_))));
        let held = decide_role_change(actor(&owner, true), &target, RoleChange::Grant, Role::Viewer, "r", &owners);
        assert_eq!(held, Err(RoleChangeRefused::NoChange("already holds")));
    }

    #[test]
    fn a_second_factor_is_fresh_for_ten_minutes_and_for_its_own_credential_only() {
        let mut p = principal(1, &[]);
        let (key, other) = (Uuid::from_u128(7), Uuid::from_u128(8));
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert!(!p.mfa_fresh(now, key));
        p.mfa = Some((now - Duration::minutes(9), 1, Some(key)));
        assert!(p.mfa_fresh(now, key));
        assert!(!p.mfa_fresh(now, other), "a step-up on one key counts for no other credential");
        p.mfa = Some((now - Duration::minutes(11), 1, Some(key)));
        assert!(!p.mfa_fresh(now, key));
        p.mfa = Some((now, 1, None));
        assert!(!p.mfa_fresh(now, key), "a step-up of an earlier version names no credential");
        p.idp_mfa_at = Some((now, Some(other)));
        assert!(p.mfa_fresh(now, other) && !p.mfa_fresh(now, key), "an IdP's MFA counts for its session");
    }

    #[test]
    fn a_first_factor_is_enrolled_only_by_a_person_with_an_mfa_login_or_an_approval() {
        let mut p = principal(1, &[Role::Admin]);
        let (session, key) = (Uuid::from_u128(7), Uuid::from_u128(8));
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        assert!(!p.may_enrol_first_factor(now, key), "an admin key alone enrols nothing");
        p.idp_mfa_at = Some((now - Duration::minutes(1), Some(session)));
        assert!(p.may_enrol_first_factor(now, session) && !p.may_enrol_first_factor(now, key));
        p.idp_mfa_at = None;
        p.enrolment_approved = Some(Some(now + Duration::hours(1)));
        assert!(p.may_enrol_first_factor(now, key));
        assert!(!p.may_enrol_first_factor(now + Duration::hours(2), key), "an approval expires");
        p.kind = PrincipalKind::Service;
        assert!(!p.may_enrol_first_factor(now, key), "service principals do not step up by TOTP");
    }

    #[test]
    fn wrong_codes_are_counted_from_the_log_within_the_window() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let id = Uuid::from_u128(1);
        let rejected = |minutes_ago: i64| {
            IdentityEvent::TotpRejected(super::super::event::TotpRejected {
                principal_id: id,
                at: now - Duration::minutes(minutes_ago),
                credential: id,
            })
        };
        let mut p = Some(principal(1, &[]));
        for _ in 0..4 {
            p = PrincipalState::evolve(p, &rejected(1));
        }
        assert!(!p.as_ref().unwrap().code_attempts_exhausted(now));
        p = PrincipalState::evolve(p, &rejected(0));
        assert!(p.as_ref().unwrap().code_attempts_exhausted(now));
        assert!(!p.as_ref().unwrap().code_attempts_exhausted(now + Duration::minutes(6)), "the window passes");
        assert_eq!(p.unwrap().code_failures.len(), MAX_CODE_FAILURES, "only the last few are kept");
    }

    #[test]
    fn a_login_syncs_the_idp_roles_and_leaves_an_administrators_alone() {
        let mut p = principal(1, &[Role::Viewer]);
        let mapped = BTreeSet::from([Role::Developer]);
        let events = p.sync_idp_roles(&mapped, "corp", true);
        assert!(
            matches!(&events[..], [IdentityEvent::RoleGranted(g)] if g.role == Role::Developer && g.source == RoleSource::Idp)
        );
        let p2 = events.iter().fold(Some(p.clone()), PrincipalState::evolve).unwrap();
        assert_eq!(p2.idp_roles, BTreeSet::from([Role::Developer]));
        // Next login: the claims no longer say developer; viewer (an admin's grant) stays
        assert!(p2.sync_idp_roles(&BTreeSet::new(), "corp", false).is_empty(), "incomplete claims take nothing");
        let events = p2.sync_idp_roles(&BTreeSet::new(), "corp", true);
        assert!(matches!(&events[..], [IdentityEvent::RoleRevoked(r)] if r.role == Role::Developer));
        // An administrator's revocation sticks across logins; their grant lifts it
        let revoked = IdentityEvent::RoleRevoked(RoleRevoked {
            principal_id: p2.id,
            role: Role::Developer,
            source: RoleSource::Admin,
            reason: "r".into(),
        });
        let p3 = PrincipalState::evolve(Some(p2), &revoked).unwrap();
        assert!(p3.sync_idp_roles(&mapped, "corp", true).is_empty());
        p.roles.insert(Role::Owner);
        assert!(p.sync_idp_roles(&BTreeSet::from([Role::Owner]), "corp", true).is_empty(), "owner never from claims");
    }

    #[test]
    fn claims_never_make_an_auditor_hold_another_role() {
        let both = BTreeSet::from([Role::Admin, Role::Auditor]);
        let events = principal(1, &[]).sync_idp_roles(&both, "corp", true);
        let granted: Vec<Role> = events
            .iter()
            .filter_map(|e| match e {
                IdentityEvent::RoleGranted(g) => Some(g.role),
                _ => None,
            })
            .collect();
        assert_eq!(granted, [Role::Admin], "auditor is not granted beside another role");
        let auditor = principal(2, &[Role::Auditor]);
        assert!(auditor.sync_idp_roles(&BTreeSet::from([Role::Developer]), "corp", true).is_empty());
        let only = principal(3, &[]).sync_idp_roles(&BTreeSet::from([Role::Auditor]), "corp", true);
        assert!(matches!(&only[..], [IdentityEvent::RoleGranted(g)] if g.role == Role::Auditor));
    }

    #[test]
    fn the_stream_folds_into_the_state() {
        let id = Uuid::from_u128(1);
        let created = IdentityEvent::PrincipalCreated(PrincipalCreated {
            principal_id: id,
            kind: PrincipalKind::Service,
            display_name: "ci".into(),
            roles: vec![Role::Viewer],
        });
        let granted = IdentityEvent::RoleGranted(RoleGranted {
            principal_id: id,
            role: Role::Developer,
            source: RoleSource::Admin,
            reason: "r".into(),
        });
        let disabled = IdentityEvent::UserDisabled(UserDisabled { principal_id: id, reason: "r".into() });
        let state = [created, granted, disabled].iter().fold(None, PrincipalState::evolve).unwrap();
        assert_eq!(state.roles, BTreeSet::from([Role::Viewer, Role::Developer]));
        assert!(state.disabled);
    }
}
