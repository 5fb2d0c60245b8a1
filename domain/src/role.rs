//! The six roles. The permission matrix arrives with the identity step; the order is already fixed here.

use serde::{Deserialize, Serialize};

/// A role a principal holds. `auditor` stands apart from the chain (separation of duties).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including granting owner.
    Owner,
    /// Everything but ownership.
    Admin,
    /// Registers and manages MCP servers.
    ServerManager,
    /// Uses servers through the gateway.
    Developer,
    /// Reads the catalogue.
    Viewer,
    /// Reads, exports and verifies the audit trail, nothing else.
    Auditor,
}

impl Role {
    /// Every role, highest first.
    pub const ALL: [Role; 6] =
        [Role::Owner, Role::Admin, Role::ServerManager, Role::Developer, Role::Viewer, Role::Auditor];

    /// The stable wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::ServerManager => "server_manager",
            Role::Developer => "developer",
            Role::Viewer => "viewer",
            Role::Auditor => "auditor",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = UnknownRole;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|r| r.as_str() == s).ok_or_else(|| UnknownRole(s.to_owned()))
    }
}

/// A role name that is not one of the six.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown role {0:?}")]
pub struct UnknownRole(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_role_round_trips_through_its_name() {
        for role in Role::ALL {
            assert_eq!(role.as_str().parse::<Role>(), Ok(role));
            assert_eq!(serde_json::to_string(&role).unwrap(), format!("\"{}\"", role.as_str()));
        }
        assert!("root".parse::<Role>().is_err());
    }
}
