//! The one authorization decision every endpoint asks. This step knows roles and server actions; the
//! identity step extends it with per-server policies, sessions and scopes.

use crate::Role;

/// What a principal wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Read the catalogue.
    ReadServers,
    /// Register, update, suspend, resume, rotate, deregister.
    ManageServers,
    /// Query, export and verify the audit trail.
    ReadAudit,
}

impl Action {
    /// The stable name recorded in the audit trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ReadServers => "servers.read",
            Action::ManageServers => "servers.manage",
            Action::ReadAudit => "audit.read",
        }
    }
}

/// The answer, with the reason recorded in the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allowed or not.
    pub allow: bool,
    /// Why.
    pub reason: String,
}

/// Decides `action` for a principal holding `roles`.
pub fn decide(roles: &[Role], action: Action) -> Decision {
    let permitted: &[Role] = match action {
        Action::ReadServers => &[Role::Owner, Role::Admin, Role::ServerManager, Role::Developer, Role::Viewer],
        Action::ManageServers => &[Role::Owner, Role::Admin, Role::ServerManager],
        // Separation of duties: admins and managers do not read the trail of what they did.
        Action::ReadAudit => &[Role::Owner, Role::Auditor],
    };
    match roles.iter().find(|r| permitted.contains(r)) {
        Some(role) => Decision { allow: true, reason: format!("role {} permits {action:?}", role.as_str()) },
        None => Decision { allow: false, reason: format!("no role of the principal permits {action:?}") },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managers_manage_viewers_read_auditors_neither() {
        assert!(decide(&[Role::ServerManager], Action::ManageServers).allow);
        assert!(!decide(&[Role::Viewer], Action::ManageServers).allow);
        assert!(decide(&[Role::Viewer], Action::ReadServers).allow);
        assert!(!decide(&[Role::Auditor], Action::ReadServers).allow);
        assert!(!decide(&[], Action::ReadServers).allow);
        assert!(decide(&[Role::Auditor], Action::ReadAudit).allow);
        assert!(!decide(&[Role::Admin], Action::ReadAudit).allow);
    }
}
