//! Alerting rules: which events raise an alert. A rule names event types (a trailing `*` matches a
//! prefix), optionally values its payload must hold, and optionally a burst: the alert is raised when
//! the count of matching events within the window reaches `min_count` (once per window, not for every
//! event past it).

use std::collections::{BTreeMap, HashMap, VecDeque};

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

/// One rule, as configured.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    /// Its name (in the alert and its id).
    pub name: String,
    /// Event types; `Server*` matches every type starting with `Server`.
    pub events: Vec<String>,
    /// JSON pointers into the event's payload, each with the values it may hold (all must match):
    /// `{ "/role" = ["owner", "admin"] }`.
    #[serde(default)]
    pub r#where: BTreeMap<String, Vec<Value>>,
    /// A burst: raise once this many matching events arrived within `window_s`.
    #[serde(default)]
    pub min_count: Option<u32>,
    /// The burst's window, in seconds [default: 60].
    #[serde(default)]
    pub window_s: Option<u64>,
    /// `info`, `warning` or `critical` [default: warning].
    #[serde(default)]
    pub severity: Option<String>,
    /// The channels it goes to (by name); none: every channel.
    #[serde(default)]
    pub channels: Vec<String>,
}

impl RuleConfig {
    fn matches(&self, event_type: &str, data: &Value) -> bool {
        let typed = self.events.iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => event_type.starts_with(prefix),
            None => pattern == event_type,
        });
        typed
            && self.r#where.iter().all(|(pointer, allowed)| data.pointer(pointer).is_some_and(|v| allowed.contains(v)))
    }

    /// The severity it raises with.
    pub fn severity(&self) -> &str {
        self.severity.as_deref().unwrap_or("warning")
    }
}

/// Checks a rule set: names unique and usable in an id, severities known, bursts sensible.
pub fn validate(rules: &[RuleConfig], channels: &[&str]) -> Result<(), String> {
    let mut seen = std::collections::HashSet::new();
    for rule in rules {
        if rule.name.is_empty() || !rule.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(format!("alert rule {:?}: names are [A-Za-z0-9_-]+", rule.name));
        }
        if !seen.insert(&rule.name) {
            return Err(format!("alert rule {:?} is defined twice", rule.name));
        }
        if rule.events.is_empty() {
            return Err(format!("alert rule {:?} names no event type", rule.name));
        }
        if !matches!(rule.severity(), "info" | "warning" | "critical") {
            return Err(format!("alert rule {:?}: severity is info, warning or critical", rule.name));
        }
        if rule.min_count == Some(0) || rule.window_s == Some(0) {
            return Err(format!("alert rule {:?}: a burst counts at least one event in at least a second", rule.name));
        }
        if let Some(unknown) = rule.channels.iter().find(|c| !channels.contains(&c.as_str())) {
            return Err(format!("alert rule {:?} names the unknown channel {unknown:?}", rule.name));
        }
    }
    Ok(())
}

/// The rules and what the bursts have counted so far (in memory: after a restart a burst counts
/// afresh, from the events read since).
#[derive(Debug)]
pub struct Rules {
    rules: Vec<RuleConfig>,
    recent: HashMap<String, VecDeque<DateTime<Utc>>>,
}

impl Rules {
    /// The rule set.
    pub fn new(rules: Vec<RuleConfig>) -> Self {
        Self { rules, recent: HashMap::new() }
    }

    /// The rules an event of `event_type` with payload `data`, which occurred at `at`, raises an alert
    /// for now.
    pub fn raised_by(&mut self, event_type: &str, data: &Value, at: DateTime<Utc>) -> Vec<&RuleConfig> {
        let mut raised = Vec::new();
        for rule in &self.rules {
            if !rule.matches(event_type, data) {
                continue;
            }
            let Some(min_count) = rule.min_count else {
                raised.push(rule);
                continue;
            };
            let window = chrono::Duration::seconds(rule.window_s.unwrap_or(60) as i64);
            let recent = self.recent.entry(rule.name.clone()).or_default();
            recent.push_back(at);
            while recent.front().is_some_and(|first| at - *first >= window) {
                recent.pop_front();
            }
            if recent.len() >= min_count as usize {
                // Once per burst: the next alert needs a full count again.
                recent.clear();
                raised.push(rule);
            }
        }
        raised
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(fields: Value) -> RuleConfig {
        serde_json::from_value(fields).unwrap()
    }

    #[test]
    fn a_rule_matches_types_by_name_or_prefix_and_payload_values() {
        let mut rules = Rules::new(vec![
            rule(
                serde_json::json!({ "name": "owners", "events": ["RoleGranted"], "where": { "/role": ["owner", "admin"] } }),
            ),
            rule(serde_json::json!({ "name": "servers", "events": ["Server*"] })),
        ]);
        let now = Utc::now();
        let names = |raised: Vec<&RuleConfig>| raised.iter().map(|r| r.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(rules.raised_by("RoleGranted", &serde_json::json!({ "role": "owner" }), now)), ["owners"]);
        assert!(rules.raised_by("RoleGranted", &serde_json::json!({ "role": "viewer" }), now).is_empty());
        assert_eq!(names(rules.raised_by("ServerSuspended", &serde_json::json!({}), now)), ["servers"]);
        assert!(rules.raised_by("PrincipalCreated", &serde_json::json!({}), now).is_empty());
    }

    #[test]
    fn a_burst_raises_once_when_the_count_is_reached_within_the_window() {
        let mut rules = Rules::new(vec![rule(
            serde_json::json!({ "name": "denials", "events": ["AccessDenied"], "min_count": 3, "window_s": 60 }),
        )]);
        let start = Utc::now();
        let data = serde_json::json!({});
        let at = |s: i64| start + chrono::Duration::seconds(s);
        assert!(rules.raised_by("AccessDenied", &data, at(0)).is_empty());
        assert!(rules.raised_by("AccessDenied", &data, at(1)).is_empty());
        assert_eq!(rules.raised_by("AccessDenied", &data, at(2)).len(), 1);
        assert!(rules.raised_by("AccessDenied", &data, at(3)).is_empty(), "once per burst");
        // Spread wider than the window: no alert.
        assert!(rules.raised_by("AccessDenied", &data, at(100)).is_empty());
        assert!(rules.raised_by("AccessDenied", &data, at(200)).is_empty());
        assert!(rules.raised_by("AccessDenied", &data, at(300)).is_empty());
    }

    #[test]
    fn rule_sets_are_checked() {
        let ok = rule(serde_json::json!({ "name": "a", "events": ["X"], "channels": ["hook"] }));
        assert!(validate(std::slice::from_ref(&ok), &["hook"]).is_ok());
        assert!(validate(&[ok.clone(), ok.clone()], &["hook"]).is_err());
        assert!(validate(std::slice::from_ref(&ok), &[]).is_err());
        assert!(validate(&[rule(serde_json::json!({ "name": "a b", "events": ["X"] }))], &[]).is_err());
        assert!(validate(&[rule(serde_json::json!({ "name": "a", "events": [] }))], &[]).is_err());
        assert!(
            validate(&[rule(serde_json::json!({ "name": "a", "events": ["X"], "severity": "loud" }))], &[]).is_err()
        );
    }
}
