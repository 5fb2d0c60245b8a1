//! Who may use a server through the gateway, and which of its tools.

use std::collections::BTreeSet;

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

/// Per-tool rules: `deny` always wins; with an `allow` list, only the tools on it pass.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ToolRules {
    /// When set, the only tools exposed.
    #[serde(default)]
    pub allow: Option<BTreeSet<String>>,
    /// Tools never exposed.
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
        check("tools.deny", &self.tools.deny)
    }
}

impl ToolRules {
    /// True when `tool` is exposed.
    pub fn allows(&self, tool: &str) -> bool {
        !self.deny.contains(tool) && self.allow.as_ref().is_none_or(|allow| allow.contains(tool))
    }
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
    fn entries_are_checked() {
        let mut policy = AccessPolicy::default();
        policy.users.insert(String::new());
        assert_eq!(policy.validate(), Err(AccessPolicyError::Entry("users")));
        let mut bidi = AccessPolicy::default();
        bidi.groups.insert("admins\u{202E}".into());
        assert_eq!(bidi.validate(), Err(AccessPolicyError::Entry("groups")), "invisible formatting is refused");
    }
}
