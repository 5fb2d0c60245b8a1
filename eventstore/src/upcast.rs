//! Upcasters: old schema versions of an event become the current one on read.
//!
//! Stored events are never rewritten. When a type's schema changes, its version goes up and an
//! upcaster from the previous version is registered; readers always see the newest shape.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

/// Turns the payload of version `v` into version `v + 1`.
pub type UpcastFn = dyn Fn(Value) -> Result<Value, String> + Send + Sync;

/// Upcasters by (event type, from version).
#[derive(Clone, Default)]
pub struct Upcasters {
    steps: HashMap<(String, u16), Arc<UpcastFn>>,
}

/// An upcaster failed, or the stored payload was not JSON.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot upcast {event_type} v{from_version}: {reason}")]
pub struct UpcastError {
    /// The event's type.
    pub event_type: String,
    /// The version that failed to upcast.
    pub from_version: u16,
    /// What went wrong.
    pub reason: String,
}

impl Upcasters {
    /// No upcasters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the step from `from_version` to `from_version + 1` of `event_type`.
    pub fn register(
        mut self,
        event_type: impl Into<String>,
        from_version: u16,
        step: impl Fn(Value) -> Result<Value, String> + Send + Sync + 'static,
    ) -> Self {
        self.steps.insert((event_type.into(), from_version), Arc::new(step));
        self
    }

    /// Applies every registered step from `version` on. Returns `None` when there is nothing to do,
    /// so the common path allocates nothing.
    pub fn upcast(&self, event_type: &str, version: u16, data: &str) -> Result<Option<(u16, String)>, UpcastError> {
        if self.steps.is_empty() || !self.steps.contains_key(&(event_type.to_owned(), version)) {
            return Ok(None);
        }
        let fail =
            |from_version: u16, reason: String| UpcastError { event_type: event_type.to_owned(), from_version, reason };
        let mut value: Value = serde_json::from_str(data).map_err(|e| fail(version, e.to_string()))?;
        let mut current = version;
        while let Some(step) = self.steps.get(&(event_type.to_owned(), current)) {
            value = step(value).map_err(|reason| fail(current, reason))?;
            current = current.checked_add(1).ok_or_else(|| fail(current, "version overflow".into()))?;
        }
        let text = serde_json::to_string(&value).map_err(|e| fail(current, e.to_string()))?;
        Ok(Some((current, text)))
    }
}

impl std::fmt::Debug for Upcasters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.steps.keys()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rename_url(mut v: Value) -> Result<Value, String> {
        let url = v.as_object_mut().and_then(|o| o.remove("url")).ok_or("no url")?;
        v["endpoint"] = url;
        Ok(v)
    }

    #[test]
    fn steps_chain_up_to_the_newest_version() {
        let up =
            Upcasters::new().register("ServerRegistered", 1, rename_url).register("ServerRegistered", 2, |mut v| {
                v["transport"] = "streamable_http".into();
                Ok(v)
            });
        let (version, data) = up.upcast("ServerRegistered", 1, r#"{"url":"https://x"}"#).unwrap().unwrap();
        assert_eq!(version, 3);
        let v: Value = serde_json::from_str(&data).unwrap();
        assert_eq!(v, serde_json::json!({"endpoint": "https://x", "transport": "streamable_http"}));
    }

    #[test]
    fn a_current_event_is_left_alone() {
        let up = Upcasters::new().register("ServerRegistered", 1, rename_url);
        assert_eq!(up.upcast("ServerRegistered", 2, "{}").unwrap(), None);
        assert_eq!(up.upcast("Other", 1, "{}").unwrap(), None);
    }

    #[test]
    fn a_failing_step_names_the_version() {
        let up = Upcasters::new().register("ServerRegistered", 1, rename_url);
        let err = up.upcast("ServerRegistered", 1, "{}").unwrap_err();
        assert_eq!(err.from_version, 1);
    }
}
