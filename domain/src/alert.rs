//! Alerts: an event of the log that matched an alerting rule, and its delivery to each channel. Stream
//! `alert-<id>`, one per event and rule ([`alert_id`]), so that an alert is raised once however often
//! the log is read, and its deliveries are found beside it.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Stream category of alerts.
pub const ALERT_CATEGORY: &str = "alert";

/// The UUID namespace of alert ids.
const ALERTS_NAMESPACE: Uuid = Uuid::from_u128(0x6d67_7761_6c65_7274_7300_0000_0000_0001);

/// The id of the alert rule `rule` raises for the event `event_id`: the same on every instance and
/// every reading of the log.
pub fn alert_id(event_id: Uuid, rule: &str) -> Uuid {
    let mut name = Vec::with_capacity(16 + rule.len());
    name.extend_from_slice(event_id.as_bytes());
    name.extend_from_slice(rule.as_bytes());
    Uuid::new_v5(&ALERTS_NAMESPACE, &name)
}

/// An event matched a rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertRaised {
    /// The alert.
    pub alert_id: Uuid,
    /// The rule's name.
    pub rule: String,
    /// `info`, `warning` or `critical`, as the rule says.
    pub severity: String,
    /// The event that matched (for a burst, the one that reached the count).
    pub event_id: Uuid,
    /// Its type.
    pub event_type: String,
    /// Its stream.
    pub stream: String,
    /// One line for people.
    pub summary: String,
}

/// The alert reached a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertDelivered {
    /// The alert.
    pub alert_id: Uuid,
    /// The channel's name.
    pub channel: String,
    /// Attempts it took.
    pub attempts: u32,
}

/// Every attempt to reach a channel failed: the alert is set aside for an operator (dead-lettered).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertDeadLettered {
    /// The alert.
    pub alert_id: Uuid,
    /// The channel's name.
    pub channel: String,
    /// Attempts made.
    pub attempts: u32,
    /// The last failure (no secret: a status or a transport error).
    pub error: String,
}

/// Alert events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlertEvent {
    /// `AlertRaised`.
    Raised(AlertRaised),
    /// `AlertDelivered`.
    Delivered(AlertDelivered),
    /// `AlertDeadLettered`.
    DeadLettered(AlertDeadLettered),
}

impl AlertEvent {
    /// Every type name.
    pub const TYPES: [&'static str; 3] = ["AlertRaised", "AlertDelivered", "AlertDeadLettered"];

    /// The stored type name.
    pub fn event_type(&self) -> &'static str {
        match self {
            AlertEvent::Raised(_) => Self::TYPES[0],
            AlertEvent::Delivered(_) => Self::TYPES[1],
            AlertEvent::DeadLettered(_) => Self::TYPES[2],
        }
    }

    /// The payload as JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        match self {
            AlertEvent::Raised(e) => serde_json::to_string(e),
            AlertEvent::Delivered(e) => serde_json::to_string(e),
            AlertEvent::DeadLettered(e) => serde_json::to_string(e),
        }
    }

    /// Reads a stored event back; `None` for another type.
    pub fn from_json(event_type: &str, data: &str) -> Option<Result<Self, serde_json::Error>> {
        Some(match event_type {
            "AlertRaised" => serde_json::from_str(data).map(AlertEvent::Raised),
            "AlertDelivered" => serde_json::from_str(data).map(AlertEvent::Delivered),
            "AlertDeadLettered" => serde_json::from_str(data).map(AlertEvent::DeadLettered),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_and_a_rule_make_one_alert_id() {
        let event = Uuid::from_u128(7);
        assert_eq!(alert_id(event, "owner-granted"), alert_id(event, "owner-granted"));
        assert_ne!(alert_id(event, "owner-granted"), alert_id(event, "server-down"));
        let raised = AlertEvent::Raised(AlertRaised {
            alert_id: alert_id(event, "r"),
            rule: "r".into(),
            severity: "critical".into(),
            event_id: event,
            event_type: "RoleGranted".into(),
            stream: "principal-1".into(),
            summary: "s".into(),
        });
        let json = raised.to_json().unwrap();
        assert_eq!(AlertEvent::from_json(raised.event_type(), &json).unwrap().unwrap(), raised);
    }
}
