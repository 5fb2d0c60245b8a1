//! Roles from an identity provider's claims: ordered rules per IdP, evaluated at every login.
//!
//! Entra ID puts application roles in `roles`, and, depending on the token version and the app's
//! manifest, in `appRoles` or `app_roles`; groups arrive as GUIDs in `groups`, unless the user is in more
//! groups than a token holds ("overage"): then `groups` is absent and `_claim_names.groups` points to the
//! Graph API instead. An overage never grants a role from groups (fail closed; looking the groups up is a
//! separate, configured step). Directory roles (`wids`) count only when a rule opts in explicitly.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Role;

/// Where a rule looks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClaimSource {
    /// Application roles: `roles`, `appRoles` or `app_roles`, whichever the token carries.
    Roles,
    /// Group ids in `groups`.
    Groups,
    /// Entra directory role template ids in `wids` (an explicit opt-in: directory roles are tenant-wide).
    Wids,
}

/// One rule: when `source` holds `value`, the user gets `role`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleRule {
    /// Where to look.
    pub source: ClaimSource,
    /// The value to find there (a role name, a group GUID, a directory role id), compared exactly.
    pub value: String,
    /// The gateway role it grants.
    pub role: Role,
}

/// Why a rule set is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleRuleError {
    /// Owners are made by owners, never by an IdP's claims.
    #[error("rule {0}: an identity provider cannot grant `owner`")]
    Owner(usize),
    /// A rule with nothing to match.
    #[error("rule {0}: the value is empty")]
    EmptyValue(usize),
}

/// Checks a rule set when the configuration is loaded.
pub fn check_rules(rules: &[RoleRule]) -> Result<(), RoleRuleError> {
    for (i, rule) in rules.iter().enumerate() {
        if rule.role == Role::Owner {
            return Err(RoleRuleError::Owner(i));
        }
        if rule.value.trim().is_empty() {
            return Err(RoleRuleError::EmptyValue(i));
        }
    }
    Ok(())
}

/// The roles a login's claims map to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappedRoles {
    /// The roles.
    pub roles: BTreeSet<Role>,
    /// The token signalled a groups overage: group rules were not applied.
    pub groups_overage: bool,
}

fn strings(claims: &Value, name: &str) -> Vec<String> {
    match claims.get(name) {
        Some(Value::Array(items)) => items.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
        // Some IdPs send a single value as a string.
        Some(Value::String(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// Applies `rules` to the ID token or userinfo `claims`.
pub fn map_roles(rules: &[RoleRule], claims: &Value) -> MappedRoles {
    let app_roles: BTreeSet<String> =
        ["roles", "appRoles", "app_roles"].iter().flat_map(|name| strings(claims, name)).collect();
    let groups: BTreeSet<String> = strings(claims, "groups").into_iter().collect();
    let wids: BTreeSet<String> = strings(claims, "wids").into_iter().collect();
    let groups_overage =
        claims.get("groups").is_none() && claims.get("_claim_names").and_then(|names| names.get("groups")).is_some();
    let roles = rules
        .iter()
        .filter(|rule| match rule.source {
            ClaimSource::Roles => app_roles.contains(&rule.value),
            ClaimSource::Groups => !groups_overage && groups.contains(&rule.value),
            ClaimSource::Wids => wids.contains(&rule.value),
        })
        .map(|rule| rule.role)
        .collect();
    MappedRoles { roles, groups_overage }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn rules() -> Vec<RoleRule> {
        let rule = |source, value: &str, role| RoleRule { source, value: value.into(), role };
        vec![
            rule(ClaimSource::Roles, "Gateway.Admin", Role::Admin),
            rule(ClaimSource::Roles, "Gateway.Developer", Role::Developer),
            rule(ClaimSource::Groups, "6f1c1b3e-0000-4000-8000-000000000001", Role::ServerManager),
            rule(ClaimSource::Wids, "62e90394-69f5-4237-9190-012177145e10", Role::Auditor),
        ]
    }

    #[test]
    fn application_roles_count_in_each_of_the_places_entra_puts_them() {
        for claim in ["roles", "appRoles", "app_roles"] {
            let mapped = map_roles(&rules(), &json!({ claim: ["Gateway.Developer"] }));
            assert_eq!(mapped.roles, BTreeSet::from([Role::Developer]), "{claim}");
        }
        let single = map_roles(&rules(), &json!({ "roles": "Gateway.Admin" }));
        assert_eq!(single.roles, BTreeSet::from([Role::Admin]));
    }

    #[test]
    fn groups_map_by_id_and_an_overage_grants_nothing_from_groups() {
        let member = json!({ "groups": ["6f1c1b3e-0000-4000-8000-000000000001"] });
        assert_eq!(map_roles(&rules(), &member).roles, BTreeSet::from([Role::ServerManager]));
        let overage = json!({
            "roles": ["Gateway.Developer"],
            "_claim_names": { "groups": "src1" },
            "_claim_sources": { "src1": { "endpoint": "https://graph.microsoft.com/v1.0/users/x/getMemberObjects" } },
        });
        let mapped = map_roles(&rules(), &overage);
        assert!(mapped.groups_overage);
        assert_eq!(mapped.roles, BTreeSet::from([Role::Developer]), "app roles still count");
    }

    #[test]
    fn directory_roles_count_only_where_a_rule_names_them() {
        let global_admin = json!({ "wids": ["62e90394-69f5-4237-9190-012177145e10", "some-other-role"] });
        assert_eq!(map_roles(&rules(), &global_admin).roles, BTreeSet::from([Role::Auditor]));
        let no_wids_rule: Vec<RoleRule> = rules().into_iter().filter(|r| r.source != ClaimSource::Wids).collect();
        assert!(map_roles(&no_wids_rule, &global_admin).roles.is_empty());
    }

    #[test]
    fn nothing_matches_nothing_and_owner_cannot_come_from_an_idp() {
        assert!(map_roles(&rules(), &json!({ "email": "x@example.com" })).roles.is_empty());
        let owner = [RoleRule { source: ClaimSource::Roles, value: "Owner".into(), role: Role::Owner }];
        assert_eq!(check_rules(&owner), Err(RoleRuleError::Owner(0)));
        assert_eq!(check_rules(&rules()), Ok(()));
    }
}
