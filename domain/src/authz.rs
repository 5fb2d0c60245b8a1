//! The one authorization decision every endpoint asks: the permission matrix of the six roles, narrowed
//! by the scopes of the credential presented and by ownership of the resource.

use std::str::FromStr;

use uuid::Uuid;

use crate::Role;
use crate::server::AccessPolicy;

/// What a principal wants to do. Each is one column of the permission matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Action {
    /// Read the catalogue.
    #[serde(rename = "servers.read")]
    ReadServers,
    /// Register, update, suspend, resume, rotate, deregister (a server manager: only servers it owns).
    #[serde(rename = "servers.manage")]
    ManageServers,
    /// Call servers' tools through the gateway.
    #[serde(rename = "servers.use")]
    UseServers,
    /// Query, export and verify the audit trail.
    #[serde(rename = "audit.read")]
    ReadAudit,
    /// List principals, their roles and sessions (access reviews).
    #[serde(rename = "users.read")]
    ReadUsers,
    /// Create service principals, disable and enable principals, manage others' keys and sessions.
    #[serde(rename = "users.manage")]
    ManageUsers,
    /// Grant and revoke roles (never above one's own, never one's own).
    #[serde(rename = "roles.grant")]
    GrantRoles,
    /// One's own API keys, sessions and second factor.
    #[serde(rename = "self.credentials")]
    ManageOwnCredentials,
}

impl Action {
    /// Every action, in matrix order.
    pub const ALL: [Action; 8] = [
        Action::ReadServers,
        Action::ManageServers,
        Action::UseServers,
        Action::ReadAudit,
        Action::ReadUsers,
        Action::ManageUsers,
        Action::GrantRoles,
        Action::ManageOwnCredentials,
    ];

    /// The stable name recorded in the audit trail and used as an API key scope.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ReadServers => "servers.read",
            Action::ManageServers => "servers.manage",
            Action::UseServers => "servers.use",
            Action::ReadAudit => "audit.read",
            Action::ReadUsers => "users.read",
            Action::ManageUsers => "users.manage",
            Action::GrantRoles => "roles.grant",
            Action::ManageOwnCredentials => "self.credentials",
        }
    }

    /// The roles whose holders may do this: the permission matrix, one column.
    pub fn permitted(self) -> &'static [Role] {
        use Role::*;
        match self {
            Action::ReadServers => &[Owner, Admin, ServerManager, Developer, Viewer],
            Action::ManageServers => &[Owner, Admin, ServerManager],
            Action::UseServers => &[Owner, Admin, ServerManager, Developer],
            // Separation of duties: admins and managers do not read the trail of what they did.
            Action::ReadAudit => &[Owner, Auditor],
            // Access reviews are an auditor's work too.
            Action::ReadUsers => &[Owner, Admin, Auditor],
            Action::ManageUsers | Action::GrantRoles => &[Owner, Admin],
            Action::ManageOwnCredentials => &Role::ALL,
        }
    }
}

impl FromStr for Action {
    type Err = UnknownAction;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Action::ALL.into_iter().find(|a| a.as_str() == s).ok_or_else(|| UnknownAction(s.to_owned()))
    }
}

/// A scope that names no action.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?}")]
pub struct UnknownAction(pub String);

/// Who asks: a principal, its roles, and the scopes of the credential it presented (empty: unrestricted).
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The principal.
    pub id: Uuid,
    /// Its roles.
    pub roles: &'a [Role],
    /// The credential's scopes; an empty list does not narrow the roles.
    pub scopes: &'a [Action],
}

/// What the action is on, as far as the decision depends on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource<'a> {
    /// Nothing in particular (a collection, a new server).
    Any,
    /// An existing server and its owner's principal id.
    Server {
        /// The owner, as recorded on the server.
        owner: &'a str,
    },
    /// A principal (for credentials: one's own or somebody else's).
    Principal(Uuid),
    /// An existing server to be used through the gateway: its owner, its access policy, and whether it
    /// is suspended.
    ServerAccess {
        /// The owner, as recorded on the server.
        owner: &'a str,
        /// Whom the server admits besides its owner, owners and admins.
        policy: &'a AccessPolicy,
        /// A suspended server is used by nobody.
        suspended: bool,
    },
}

/// The answer, with the reason recorded in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allowed or not.
    pub allow: bool,
    /// Why.
    pub reason: String,
}

impl Decision {
    fn deny(reason: String) -> Self {
        Self { allow: false, reason }
    }
}

/// Decides `action` on `resource` for `subject`.
pub fn decide(subject: &Subject<'_>, action: Action, resource: Resource<'_>) -> Decision {
    // Somebody else's credentials are user management (the scope check below is on what it becomes: a
    // key scoped to its holder's own credentials does not manage anybody else's).
    let action = match (action, resource) {
        (Action::ManageOwnCredentials, Resource::Principal(owner)) if owner != subject.id => Action::ManageUsers,
        _ => action,
    };
    if !subject.scopes.is_empty() && !subject.scopes.contains(&action) {
        return Decision::deny(format!("the credential's scopes do not include {}", action.as_str()));
    }
    // One's own keys, sessions and second factor are one's own to manage, roles or none: a person whose
    // claims map to no role must still be able to end their session.
    if action == Action::ManageOwnCredentials {
        return Decision { allow: true, reason: "principals manage their own credentials".to_owned() };
    }
    let Some(role) = subject.roles.iter().find(|r| action.permitted().contains(r)) else {
        return Decision::deny(format!("no role of the principal permits {}", action.as_str()));
    };
    // A server manager manages the servers it owns; admins and owners manage all of them.
    if let (Action::ManageServers, Resource::Server { owner }) = (action, resource) {
        let manages_all = subject.roles.iter().any(|r| matches!(r, Role::Owner | Role::Admin));
        if !manages_all && owner != subject.id.to_string() {
            return Decision::deny("a server manager manages only the servers it owns".to_owned());
        }
    }
    // Using a server is decided on the server: asked on anything else, it is refused, so that an endpoint
    // that forgets to name the server cannot skip its policy.
    if action == Action::UseServers && !matches!(resource, Resource::ServerAccess { .. }) {
        return Decision::deny("servers.use is decided on a server".to_owned());
    }
    // Using a server needs the role and the server's consent: its policy lists one of the principal's
    // roles or the principal itself (owners, admins and the server's owner always pass).
    if let (Action::UseServers, Resource::ServerAccess { owner, policy, suspended }) = (action, resource) {
        if suspended {
            return Decision::deny("the server is suspended".to_owned());
        }
        let id = subject.id.to_string();
        let manages_all = subject.roles.iter().any(|r| matches!(r, Role::Owner | Role::Admin));
        if manages_all || owner == id {
            return Decision { allow: true, reason: format!("role {} permits servers.use", role.as_str()) };
        }
        if policy.users.iter().any(|user| user.eq_ignore_ascii_case(&id)) {
            return Decision { allow: true, reason: "the server's access policy lists the principal".to_owned() };
        }
        return match subject.roles.iter().find(|r| policy.roles.contains(r) && action.permitted().contains(r)) {
            Some(listed) => {
                Decision { allow: true, reason: format!("the server's access policy admits role {}", listed.as_str()) }
            }
            None => Decision::deny("the server's access policy does not admit the principal".to_owned()),
        };
    }
    Decision { allow: true, reason: format!("role {} permits {}", role.as_str(), action.as_str()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subject(roles: &[Role]) -> Subject<'_> {
        Subject { id: Uuid::from_u128(7), roles, scopes: &[] }
    }

    /// The matrix as a table: a row per role, a column per action in [`Action::ALL`] order.
    const MATRIX: [(Role, [bool; 8]); 6] = [
        (Role::Owner, [true, true, true, true, true, true, true, true]),
        (Role::Admin, [true, true, true, false, true, true, true, true]),
        (Role::ServerManager, [true, true, true, false, false, false, false, true]),
        (Role::Developer, [true, false, true, false, false, false, false, true]),
        (Role::Viewer, [true, false, false, false, false, false, false, true]),
        (Role::Auditor, [false, false, false, true, true, false, false, true]),
    ];

    /// Where each action is asked: a server whose policy admits every role for `servers.use`.
    fn on(action: Action, everyone: &AccessPolicy) -> Resource<'_> {
        match action {
            Action::UseServers => Resource::ServerAccess { owner: "x", policy: everyone, suspended: false },
            _ => Resource::Any,
        }
    }

    #[test]
    fn an_action_serializes_as_its_stable_name() {
        for action in Action::ALL {
            let json = serde_json::to_string(&action).unwrap();
            assert_eq!(json, format!("\"{}\"", action.as_str()));
            assert_eq!(serde_json::from_str::<Action>(&json).unwrap(), action);
        }
    }

    #[test]
    fn every_cell_of_the_matrix() {
        let everyone = AccessPolicy { roles: Role::ALL.into_iter().collect(), ..AccessPolicy::default() };
        for (role, row) in MATRIX {
            for (action, expected) in Action::ALL.into_iter().zip(row) {
                let decision = decide(&subject(&[role]), action, on(action, &everyone));
                assert_eq!(decision.allow, expected, "{} × {}: {}", role.as_str(), action.as_str(), decision.reason);
            }
        }
        for action in Action::ALL {
            let own = action == Action::ManageOwnCredentials;
            assert_eq!(decide(&subject(&[]), action, on(action, &everyone)).allow, own, "{}", action.as_str());
        }
    }

    #[test]
    fn scopes_narrow_what_the_roles_allow_and_never_widen_it() {
        let scoped = Subject { id: Uuid::from_u128(7), roles: &[Role::Admin], scopes: &[Action::ReadServers] };
        assert!(decide(&scoped, Action::ReadServers, Resource::Any).allow);
        assert!(!decide(&scoped, Action::ManageServers, Resource::Any).allow);
        let viewer = Subject { id: Uuid::from_u128(7), roles: &[Role::Viewer], scopes: &[Action::ManageServers] };
        assert!(!decide(&viewer, Action::ManageServers, Resource::Any).allow);
    }

    #[test]
    fn a_server_manager_manages_its_own_servers_only() {
        let me = subject(&[Role::ServerManager]);
        let mine = me.id.to_string();
        assert!(decide(&me, Action::ManageServers, Resource::Server { owner: &mine }).allow);
        assert!(!decide(&me, Action::ManageServers, Resource::Server { owner: "someone-else" }).allow);
        assert!(decide(&subject(&[Role::Admin]), Action::ManageServers, Resource::Server { owner: "x" }).allow);
    }

    #[test]
    fn a_server_is_used_by_whom_its_policy_admits() {
        let developer = subject(&[Role::Developer]);
        let mut policy = AccessPolicy::default();
        let on = |s: &Subject<'_>, policy: &AccessPolicy| {
            decide(s, Action::UseServers, Resource::ServerAccess { owner: "someone", policy, suspended: false }).allow
        };
        assert!(!on(&developer, &policy), "an empty policy admits nobody but owners and admins");
        assert!(on(&subject(&[Role::Admin]), &policy));
        assert!(on(&subject(&[Role::Owner]), &policy));
        let mine = developer.id.to_string();
        let own = Resource::ServerAccess { owner: &mine, policy: &policy, suspended: false };
        assert!(decide(&developer, Action::UseServers, own).allow);
        let suspended = Resource::ServerAccess { owner: &mine, policy: &policy, suspended: true };
        assert!(
            !decide(&subject(&[Role::Owner]), Action::UseServers, suspended).allow,
            "nobody uses a suspended server"
        );
        policy.roles.insert(Role::Developer);
        assert!(on(&developer, &policy));
        // A listed role the matrix does not let use servers admits nobody.
        policy.roles.insert(Role::Viewer);
        assert!(!on(&subject(&[Role::Viewer]), &policy));
        policy.roles.clear();
        policy.users.insert(developer.id.to_string());
        assert!(on(&developer, &policy));
        policy.users.insert(Uuid::from_u128(7).to_string().to_uppercase());
        let scoped = Subject { id: Uuid::from_u128(7), roles: &[Role::Developer], scopes: &[Action::ReadServers] };
        assert!(!on(&scoped, &policy), "scopes still narrow");
        assert!(!decide(&developer, Action::UseServers, Resource::Any).allow, "decided on a server only");
    }

    #[test]
    fn a_key_scoped_to_its_own_credentials_does_not_manage_anybody_elses() {
        let scoped = Subject { id: Uuid::from_u128(7), roles: &[Role::Admin], scopes: &[Action::ManageOwnCredentials] };
        assert!(decide(&scoped, Action::ManageOwnCredentials, Resource::Principal(scoped.id)).allow);
        assert!(!decide(&scoped, Action::ManageOwnCredentials, Resource::Principal(Uuid::from_u128(8))).allow);
    }

    #[test]
    fn somebody_elses_credentials_are_user_management() {
        let viewer = subject(&[Role::Viewer]);
        assert!(decide(&viewer, Action::ManageOwnCredentials, Resource::Principal(viewer.id)).allow);
        assert!(!decide(&viewer, Action::ManageOwnCredentials, Resource::Principal(Uuid::from_u128(8))).allow);
        let admin = subject(&[Role::Admin]);
        assert!(decide(&admin, Action::ManageOwnCredentials, Resource::Principal(Uuid::from_u128(8))).allow);
    }

    #[test]
    fn every_action_round_trips_through_its_name() {
        for action in Action::ALL {
            assert_eq!(action.as_str().parse::<Action>(), Ok(action));
        }
        assert!("servers.delete".parse::<Action>().is_err());
    }
}
