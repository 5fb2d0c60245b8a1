//! What the gateway found when it last checked a server: whether it is reachable, speaks MCP and takes
//! the gateway's credentials (each apart), and the tools it lists.

use serde::{Deserialize, Serialize};

/// Most tools kept per server.
pub const MAX_DISCOVERED_TOOLS: usize = 512;
/// Longest tool description kept, in characters.
pub const MAX_TOOL_DESCRIPTION_CHARS: usize = 512;
/// Longest health detail kept, in characters.
pub const MAX_HEALTH_DETAIL_CHARS: usize = 512;

/// A server's health, as the connection check found it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerHealth {
    /// A connection was made (DNS, TCP, TLS) and the server answered HTTP.
    pub reachable: bool,
    /// It answered `initialize` and `tools/list` as an MCP server.
    pub protocol_valid: bool,
    /// It accepted the gateway's credentials.
    pub credentials_valid: bool,
    /// What went wrong, when something did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl ServerHealth {
    /// A health with its detail cut to [`MAX_HEALTH_DETAIL_CHARS`] and stripped of control characters.
    pub fn new(reachable: bool, protocol_valid: bool, credentials_valid: bool, detail: Option<&str>) -> Self {
        let detail = detail.and_then(|d| crate::text::clean_line(d, MAX_HEALTH_DETAIL_CHARS));
        Self { reachable, protocol_valid, credentials_valid, detail }
    }

    /// True when everything checked passed.
    pub fn is_healthy(&self) -> bool {
        self.reachable && self.protocol_valid && self.credentials_valid
    }

    /// `healthy`, `unreachable`, `protocol_error` or `credentials_refused`: the first check that failed.
    pub fn state(&self) -> &'static str {
        match (self.reachable, self.credentials_valid, self.protocol_valid) {
            (false, _, _) => "unreachable",
            (true, false, _) => "credentials_refused",
            (true, true, false) => "protocol_error",
            (true, true, true) => "healthy",
        }
    }

    /// True when `other` is a change worth recording: a check that passed fails or the other way round
    /// (a new wording of the same failure is not).
    pub fn differs_from(&self, other: &ServerHealth) -> bool {
        (self.reachable, self.protocol_valid, self.credentials_valid)
            != (other.reachable, other.protocol_valid, other.credentials_valid)
    }
}

/// A tool a server lists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DiscoveredTool {
    /// Its name.
    pub name: String,
    /// What it does (cut to [`MAX_TOOL_DESCRIPTION_CHARS`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// The tools a server lists, sorted by name, without duplicates or names the gateway could not record.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(transparent)]
pub struct DiscoveredTools(Vec<DiscoveredTool>);

impl DiscoveredTools {
    /// The tools of a `tools/list` answer: names of 1 to 256 bytes without control characters are kept
    /// (others could not be named by a rule or an audit entry), at most [`MAX_DISCOVERED_TOOLS`].
    pub fn from_listed<'a>(listed: impl IntoIterator<Item = (&'a str, Option<&'a str>)>) -> Self {
        let mut tools: Vec<DiscoveredTool> = listed
            .into_iter()
            .filter(|(name, _)| {
                !name.is_empty()
                    && name.len() <= super::access::MAX_ENTRY_BYTES
                    && !name.chars().any(crate::text::is_forbidden)
            })
            .map(|(name, description)| DiscoveredTool {
                name: name.to_owned(),
                description: description.and_then(|d| crate::text::clean_line(d, MAX_TOOL_DESCRIPTION_CHARS)),
            })
            .collect();
        tools.sort_by(|a, b| a.name.cmp(&b.name));
        tools.dedup_by(|a, b| a.name == b.name);
        tools.truncate(MAX_DISCOVERED_TOOLS);
        Self(tools)
    }

    /// The tools.
    pub fn as_slice(&self) -> &[DiscoveredTool] {
        &self.0
    }

    /// The names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(|t| t.name.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_failed_check_names_the_state_and_only_checks_make_a_change() {
        let down = ServerHealth::new(false, false, false, Some("connection refused\n"));
        assert_eq!(down.state(), "unreachable");
        assert_eq!(down.detail.as_deref(), Some("connection refused"));
        let refused = ServerHealth::new(true, false, false, Some("401"));
        assert_eq!(refused.state(), "credentials_refused");
        assert!(ServerHealth::new(true, true, true, None).is_healthy());
        assert!(!down.differs_from(&ServerHealth::new(false, false, false, Some("timed out"))));
        assert!(down.differs_from(&refused));
    }

    #[test]
    fn listed_tools_are_sorted_deduplicated_and_cleaned() {
        let long = "d".repeat(2_000);
        let tools = DiscoveredTools::from_listed([
            ("zeta", None),
            ("alpha", Some(long.as_str())),
            ("alpha", None),
            ("", None),
            ("bad\u{202E}", None),
        ]);
        assert_eq!(tools.names().collect::<Vec<_>>(), ["alpha", "zeta"]);
        assert_eq!(tools.as_slice()[0].description.as_ref().unwrap().chars().count(), MAX_TOOL_DESCRIPTION_CHARS);
    }
}
