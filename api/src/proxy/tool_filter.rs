//! A server's tool rules applied to MCP messages: the tool a `tools/call` names, and the tools a
//! `tools/list` answer may show, in a JSON body or in the events of an SSE body.

use domain::Role;
use domain::server::ToolRules;
use serde_json::Value;

/// The tools one caller may see: a server's rules read for the caller and its roles.
#[derive(Debug, Clone)]
pub(crate) struct Visible {
    rules: ToolRules,
    principal: String,
    roles: Vec<Role>,
}

impl Visible {
    /// `rules` for the principal `principal` holding `roles`; `None` when the rules hide nothing from
    /// anyone (answers are then passed on untouched).
    pub(crate) fn new(rules: &ToolRules, principal: uuid::Uuid, roles: &[Role]) -> Option<Self> {
        (!rules.hides_nothing()).then(|| Self {
            rules: rules.clone(),
            principal: principal.to_string(),
            roles: roles.to_vec(),
        })
    }

    /// True when the caller may see and call `tool`.
    pub(crate) fn allows(&self, tool: &str) -> bool {
        self.rules.allows_for(tool, &self.principal, &self.roles)
    }
}

/// The requests in a body: one message, or each message of a batch (MCP 2025-03-26 allowed batches).
pub(crate) fn messages(body: &Value) -> Vec<&Value> {
    match body {
        Value::Array(batch) => batch.iter().collect(),
        one => vec![one],
    }
}

/// The method of a request or notification.
pub(crate) fn method(message: &Value) -> Option<&str> {
    message.get("method").and_then(Value::as_str)
}

/// The tool a `tools/call` request calls (`None` for any other message, or one naming no tool).
pub(crate) fn called_tool(message: &Value) -> Option<&str> {
    (method(message) == Some("tools/call")).then(|| message.get("params")?.get("name")?.as_str()).flatten()
}

/// Members the gateway decides on. A key that matches one of them but for case is refused: some
/// upstreams' JSON decoders (Go's `encoding/json`) match keys case-insensitively, and would read a
/// `"Method"` or `"Name"` the gateway never checked.
const DECIDED_ON: [&str; 6] = ["jsonrpc", "id", "method", "params", "name", "arguments"];

/// Why a message is not forwarded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// A key that differs from a member the gateway reads only by case.
    AmbiguousKey,
    /// A `tools/call` without a tool name, or with one that cannot be recorded (it reaches the audit
    /// trail: the bounds and characters of a policy's entries).
    BadToolName,
}

impl Malformed {
    /// What the client is told.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Malformed::AmbiguousKey => {
                "member names must be spelled exactly (jsonrpc, id, method, params, name, arguments)"
            }
            Malformed::BadToolName => {
                "tools/call needs params.name: 1 to 256 bytes without control or invisible formatting characters"
            }
        }
    }
}

fn ambiguous(object: &serde_json::Map<String, Value>) -> bool {
    object.keys().any(|key| DECIDED_ON.iter().any(|member| key != member && key.eq_ignore_ascii_case(member)))
}

/// Checks what the tool rules are decided on is unambiguous in `message`: exact member names at the top
/// and in `params`, and a string tool name in a `tools/call`.
pub(crate) fn check(message: &Value) -> Result<(), Malformed> {
    let Some(object) = message.as_object() else { return Ok(()) };
    let params = object.get("params").and_then(Value::as_object);
    if ambiguous(object) || params.is_some_and(ambiguous) {
        return Err(Malformed::AmbiguousKey);
    }
    let recordable = |name: &str| {
        !name.is_empty()
            && name.len() <= domain::server::MAX_ENTRY_BYTES
            && !name.chars().any(domain::text::is_forbidden)
    };
    if method(message) == Some("tools/call") && !called_tool(message).is_some_and(recordable) {
        return Err(Malformed::BadToolName);
    }
    Ok(())
}

/// Drops the tools `rules` hide from every `tools/list` result in `message` (one or a batch); true when
/// something was dropped.
fn filter_value(message: &mut Value, rules: &Visible) -> bool {
    if let Value::Array(batch) = message {
        // Every message of the batch, not only up to the first that changed.
        let mut changed = false;
        for message in batch {
            changed |= filter_value(message, rules);
        }
        return changed;
    }
    let Some(tools) = message.get_mut("result").and_then(|r| r.get_mut("tools")).and_then(Value::as_array_mut) else {
        return false;
    };
    let before = tools.len();
    tools.retain(|tool| tool.get("name").and_then(Value::as_str).is_some_and(|name| rules.allows(name)));
    tools.len() != before
}

/// A JSON body with the hidden tools dropped; `None` when it is not JSON (then it is passed on as is).
pub(crate) fn filter_json(body: &[u8], rules: &Visible) -> Option<Vec<u8>> {
    let mut message: Value = serde_json::from_slice(body).ok()?;
    if !filter_value(&mut message, rules) {
        return Some(body.to_vec());
    }
    serde_json::to_vec(&message).ok()
}

/// One SSE event (its lines and the blank line ending it) with the hidden tools dropped from its
/// JSON-RPC message; kept as it came when nothing is hidden in it or its data is not JSON.
pub(crate) fn filter_event(event: &str, rules: &Visible) -> Option<String> {
    let data: Vec<&str> =
        event.lines().filter_map(|line| line.strip_prefix("data:").map(|d| d.strip_prefix(' ').unwrap_or(d))).collect();
    let mut message = (!data.is_empty()).then(|| serde_json::from_str::<Value>(&data.join("\n")).ok()).flatten()?;
    if !filter_value(&mut message, rules) {
        return None;
    }
    let mut out = String::with_capacity(event.len());
    let mut wrote_data = false;
    for line in event.lines() {
        if line.starts_with("data:") {
            if !wrote_data {
                out.push_str("data: ");
                out.push_str(&message.to_string());
                out.push('\n');
                wrote_data = true;
            }
        } else if !line.is_empty() {
            out.push_str(line);
            out.push('\n');
        }
    }
    out.push('\n');
    Some(out)
}

/// An SSE body (`text/event-stream`) with the hidden tools dropped from each event's JSON-RPC message.
/// Events are kept in order with their `id`, `event` and `retry` fields; an event whose data is not
/// JSON is kept as it came.
pub(crate) fn filter_sse(body: &[u8], rules: &Visible) -> Vec<u8> {
    let text = String::from_utf8_lossy(body).replace("\r\n", "\n");
    let mut out = String::with_capacity(text.len());
    for event in text.split_inclusive("\n\n") {
        match filter_event(event, rules) {
            Some(filtered) => out.push_str(&filtered),
            None => out.push_str(event),
        }
    }
    out.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> Visible {
        let rules = ToolRules { deny: ["get-env".to_owned()].into(), ..ToolRules::default() };
        Visible::new(&rules, uuid::Uuid::nil(), &[]).unwrap()
    }

    fn list() -> Value {
        json!({ "jsonrpc": "2.0", "id": 2, "result": { "tools": [ { "name": "echo" }, { "name": "get-env" } ] } })
    }

    #[test]
    fn a_call_names_its_tool() {
        let call = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "echo" } });
        assert_eq!(called_tool(&call), Some("echo"));
        assert_eq!(called_tool(&json!({ "method": "tools/list" })), None);
        assert_eq!(messages(&json!([call.clone(), call])).len(), 2);
    }

    #[test]
    fn keys_the_rules_are_decided_on_are_spelled_exactly() {
        let ok = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": "echo" } });
        assert_eq!(check(&ok), Ok(()));
        let shadow = json!({ "jsonrpc": "2.0", "id": 1, "method": "ping", "Method": "tools/call" });
        assert_eq!(check(&shadow), Err(Malformed::AmbiguousKey));
        let renamed = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call",
                              "params": { "name": "echo", "NAME": "get-env" } });
        assert_eq!(check(&renamed), Err(Malformed::AmbiguousKey));
        let nameless = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": 7 } });
        assert_eq!(check(&nameless), Err(Malformed::BadToolName));
        for name in ["", "echo\u{1b}[2J", "echo\u{202E}", &"x".repeat(257)] {
            let call = json!({ "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": { "name": name } });
            assert_eq!(check(&call), Err(Malformed::BadToolName), "{name:?}");
        }
    }

    #[test]
    fn hidden_tools_leave_json_answers() {
        let filtered: Value =
            serde_json::from_slice(&filter_json(list().to_string().as_bytes(), &rules()).unwrap()).unwrap();
        assert_eq!(filtered["result"]["tools"], json!([{ "name": "echo" }]));
        assert_eq!(filter_json(b"not json", &rules()), None);
    }

    #[test]
    fn hidden_tools_leave_sse_answers_and_the_rest_is_kept() {
        let body = format!("event: message\nid: 7\ndata: {}\n\n: comment\ndata: not json\n\n", list());
        let out = String::from_utf8(filter_sse(body.as_bytes(), &rules())).unwrap();
        assert!(out.starts_with("event: message\nid: 7\ndata: "), "{out}");
        assert!(!out.contains("get-env") && out.contains("echo"), "{out}");
        assert!(out.ends_with(": comment\ndata: not json\n\n"), "{out}");
    }
}
