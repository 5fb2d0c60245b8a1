//! Who may use a server through the gateway, and which of its tools.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::Role;

/// Most entries in one list of a policy.
pub const MAX_ENTRIES: usize = 256;
/// Longest user id, group id or tool name, in bytes.
pub const MAX_ENTRY_BYTES: usize = 256;

/// A server's access policy: a principal may use the server when one of its roles, its id or one of its
/// groups is listed; then each tool passes [`ToolRules`]. Empty lists admit nobody but owners and admins
/// (decided by the authorization step).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccessPolicy {
    /// Roles admitted.
    #[serde(default)]
    pub roles: BTreeSet<Role>,
    /// User ids admitted.
    #[serde(default)]
    pub users: BTreeSet<String>,
    /// IdP group ids admitted.
    #[serde(default)]
    pub groups: BTreeSet<String>,
    /// Per-tool rules.
    #[serde(default)]
    pub tools: ToolRules,
}

/// Per-tool rules: `deny` always wins; with an `allow` list, only the tools on it pass. An entry is a
/// tool's name, or a pattern in which `*` stands for any run of characters (`github_*`, `*_delete`, `*`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolRules {
    /// When set, the only tools exposed.
    #[serde(default)]
    pub allow: Option<BTreeSet<String>>,
    /// Tools never exposed.
    #[serde(default)]
    pub deny: BTreeSet<String>,
    /// Rules for the holders of a role, on top of the rules above: a principal holding one or more of the
    /// roles named here is shown a tool only when the rules of at least one of those roles allow it
    /// (`{"viewer": {"allow": ["read_*"]}}`: viewers use the read tools only, the other roles everything the
    /// rules above allow).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_role: BTreeMap<Role, RoleToolRules>,
    /// Rules for one principal (by id), on top of the rules for everyone and in place of the rules of
    /// its roles: the most specific rule wins (`{"<id>": {"allow": ["deploy"]}}` lets that principal call
    /// `deploy` although its role's rules deny it; the rules for everyone still hold).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_principal: BTreeMap<String, RoleToolRules>,
}

/// The tool rules of one role: as [`ToolRules`], without rules of their own per role.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleToolRules {
    /// When set, the only tools exposed to the role.
    #[serde(default)]
    pub allow: Option<BTreeSet<String>>,
    /// Tools never exposed to the role.
    #[serde(default)]
    pub deny: BTreeSet<String>,
}

/// Why a policy was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessPolicyError {
    /// A list is too long.
    #[error("{0}: at most {MAX_ENTRIES} entries")]
    TooMany(&'static str),
    /// An entry is empty, too long or has control characters.
    #[error("{0}: entries have 1 to {MAX_ENTRY_BYTES} bytes and no control characters")]
    Entry(&'static str),
}

impl AccessPolicy {
    /// Checks the sizes and entries.
    pub fn validate(&self) -> Result<(), AccessPolicyError> {
        check("users", &self.users)?;
        check("groups", &self.groups)?;
        if let Some(allow) = &self.tools.allow {
            check("tools.allow", allow)?;
        }
        check("tools.deny", &self.tools.deny)?;
        self.tools.validate()
    }
}

impl ToolRules {
    /// Checks the sizes and entries.
    pub fn validate(&self) -> Result<(), AccessPolicyError> {
        if let Some(allow) = &self.allow {
            check("tools.allow", allow)?;
        }
        check("tools.deny", &self.deny)?;
        for rules in self.by_role.values() {
            if let Some(allow) = &rules.allow {
                check("tools.by_role.allow", allow)?;
            }
            check("tools.by_role.deny", &rules.deny)?;
        }
        let principals: BTreeSet<String> = self.by_principal.keys().cloned().collect();
        check("tools.by_principal", &principals)?;
        // A key that is not a principal's id would never match: the rules meant to replace the roles'
        // would silently not apply.
        if principals.iter().any(|id| uuid::Uuid::parse_str(id).is_err()) {
            return Err(AccessPolicyError::Entry("tools.by_principal"));
        }
        for rules in self.by_principal.values() {
            if let Some(allow) = &rules.allow {
                check("tools.by_principal.allow", allow)?;
            }
            check("tools.by_principal.deny", &rules.deny)?;
        }
        Ok(())
    }

    /// True when `tool` is exposed to everyone the role and principal rules do not narrow.
    pub fn allows(&self, tool: &str) -> bool {
        passes(self.allow.as_ref(), &self.deny, tool)
    }

    /// True when `tool` is exposed to the principal `principal` holding `roles`.
    pub fn allows_for(&self, tool: &str, principal: &str, roles: &[Role]) -> bool {
        self.decide_for(tool, principal, roles).0
    }

    /// Whether `tool` is exposed to the principal `principal` holding `roles`, and which rule decided.
    pub fn decide_for(&self, tool: &str, principal: &str, roles: &[Role]) -> (bool, String) {
        if !self.allows(tool) {
            return (false, "the server's tool rules hide it from everyone".to_owned());
        }
        // Ids are matched as `users` are: whatever the case they were written in.
        let own = self.by_principal.iter().find(|(id, _)| id.eq_ignore_ascii_case(principal)).map(|(_, r)| r);
        if let Some(rules) = own {
            let allowed = passes(rules.allow.as_ref(), &rules.deny, tool);
            let verb = if allowed { "allow" } else { "hide" };
            return (allowed, format!("the rules for this principal {verb} it"));
        }
        let governing: Vec<&Role> = roles.iter().filter(|role| self.by_role.contains_key(role)).collect();
        if governing.is_empty() {
            return (true, "the server's tool rules allow it".to_owned());
        }
        match governing
            .iter()
            .find(|role| self.by_role.get(**role).is_some_and(|r| passes(r.allow.as_ref(), &r.deny, tool)))
        {
            Some(role) => (true, format!("the rules for the role {} allow it", role.as_str())),
            None => (false, "the rules of the caller's roles hide it".to_owned()),
        }
    }

    /// True when no tool is hidden from anyone.
    pub fn hides_nothing(&self) -> bool {
        *self == Self::default()
    }
}

/// `deny` wins; with an `allow` list, only the tools on it pass.
fn passes(allow: Option<&BTreeSet<String>>, deny: &BTreeSet<String>, tool: &str) -> bool {
    let listed = |entries: &BTreeSet<String>| entries.iter().any(|entry| matches(entry, tool));
    !listed(deny) && allow.is_none_or(listed)
}

/// True when `name` matches `pattern`, where `*` stands for any run of characters (none included) and
/// every other character for itself.
fn matches(pattern: &str, name: &str) -> bool {
    let Some((first, rest)) = pattern.split_once('*') else { return pattern == name };
    let Some(mut remaining) = name.strip_prefix(first) else { return false };
    let mut parts: Vec<&str> = rest.split('*').collect();
    let last = parts.pop().unwrap_or_default();
    for part in parts {
        match remaining.find(part) {
            Some(at) => remaining = &remaining[at + part.len()..],
            None => return false,
        }
    }
    remaining.len() >= last.len() && remaining.ends_with(last)
}

fn check(list: &'static str, entries: &BTreeSet<String>) -> Result<(), AccessPolicyError> {
    if entries.len() > MAX_ENTRIES {
        return Err(AccessPolicyError::TooMany(list));
    }
    let bad = |e: &String| e.is_empty() || e.len() > MAX_ENTRY_BYTES || e.chars().any(crate::text::is_forbidden);
    if entries.iter().any(bad) {
        return Err(AccessPolicyError::Entry(list));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deny_wins_and_an_allow_list_limits() {
        let mut rules = ToolRules::default();
        assert!(rules.allows("anything"));
        rules.deny.insert("drop_table".into());
        assert!(!rules.allows("drop_table"));
        rules.allow = Some(["echo".to_owned(), "drop_table".to_owned()].into());
        assert!(rules.allows("echo"));
        assert!(!rules.allows("add"));
        assert!(!rules.allows("drop_table"));
    }

    #[test]
    fn entries_may_be_patterns() {
        let rules = ToolRules {
            allow: Some(["github_*".to_owned(), "echo".to_owned()].into()),
            deny: ["*_delete*".to_owned()].into(),
            ..ToolRules::default()
        };
        assert!(rules.allows("github_list_issues"));
        assert!(rules.allows("github_"));
        assert!(rules.allows("echo"));
        assert!(!rules.allows("echo2"), "no star, exact name");
        assert!(!rules.allows("github_repo_delete"), "deny wins");
        assert!(!rules.allows("gitlab_list"));
        let everything = ToolRules { allow: Some(["*".to_owned()].into()), ..ToolRules::default() };
        assert!(everything.allows("anything") && everything.allows(""));
        assert!(matches("a*b*c", "abc") && matches("a*b*c", "a-b-b-c") && !matches("a*b*c", "a-c"));
        assert!(!matches("ab*ba", "aba"), "the prefix and suffix may not overlap");
    }

    #[test]
    fn role_rules_narrow_what_their_holders_see() {
        let mut rules = ToolRules { deny: ["drop_table".to_owned()].into(), ..ToolRules::default() };
        rules
            .by_role
            .insert(Role::Viewer, RoleToolRules { allow: Some(["read_*".to_owned()].into()), ..Default::default() });
        rules
            .by_role
            .insert(Role::Developer, RoleToolRules { deny: ["deploy".to_owned()].into(), ..Default::default() });
        let allows = |tool: &str, roles: &[Role]| rules.allows_for(tool, "p1", roles);
        assert!(allows("write_file", &[Role::ServerManager]), "a role without rules of its own");
        assert!(!allows("drop_table", &[Role::ServerManager]), "the rules for everyone still hold");
        assert!(allows("read_file", &[Role::Viewer]) && !allows("write_file", &[Role::Viewer]));
        assert!(!allows("deploy", &[Role::Developer]) && allows("write_file", &[Role::Developer]));
        assert!(!allows("deploy", &[Role::Viewer, Role::Developer]), "neither role allows it");
        assert!(allows("write_file", &[Role::Viewer, Role::Developer]), "one of the roles allows it");
        assert!(!rules.hides_nothing() && ToolRules::default().hides_nothing());
    }

    #[test]
    fn a_principal_s_rules_replace_its_roles_rules_but_not_everyone_s() {
        let mut rules = ToolRules { deny: ["drop_table".to_owned()].into(), ..ToolRules::default() };
        rules
            .by_role
            .insert(Role::Developer, RoleToolRules { deny: ["deploy".to_owned()].into(), ..Default::default() });
        let alice = "0196f0a8-0000-7000-8000-000000000001";
        rules.by_principal.insert(
            alice.to_uppercase(),
            RoleToolRules { allow: Some(["deploy".to_owned(), "drop_table".to_owned()].into()), ..Default::default() },
        );
        assert!(rules.allows_for("deploy", alice, &[Role::Developer]), "more specific than the role");
        assert!(!rules.allows_for("write_file", alice, &[Role::Developer]), "her own allow list limits her");
        assert!(!rules.allows_for("drop_table", alice, &[Role::Developer]), "the rules for everyone still hold");
        assert!(!rules.allows_for("deploy", "bob", &[Role::Developer]));
        assert!(AccessPolicy { tools: rules.clone(), ..AccessPolicy::default() }.validate().is_ok());
        let (allowed, reason) = rules.decide_for("deploy", alice, &[Role::Developer]);
        assert!(allowed && reason.contains("principal"), "{reason}");
        let mut bad = AccessPolicy::default();
        bad.tools.by_principal.insert(String::new(), RoleToolRules::default());
        assert_eq!(bad.validate(), Err(AccessPolicyError::Entry("tools.by_principal")));
        let mut named = AccessPolicy::default();
        named.tools.by_principal.insert("alice".into(), RoleToolRules::default());
        assert_eq!(named.validate(), Err(AccessPolicyError::Entry("tools.by_principal")), "ids only");
    }

    #[test]
    fn entries_are_checked() {
        let mut policy = AccessPolicy::default();
        policy.users.insert(String::new());
        assert_eq!(policy.validate(), Err(AccessPolicyError::Entry("users")));
        let mut bidi = AccessPolicy::default();
        bidi.groups.insert("admins\u{202E}".into());
        assert_eq!(bidi.validate(), Err(AccessPolicyError::Entry("groups")), "invisible formatting is refused");
    }
}
