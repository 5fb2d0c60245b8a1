//! Which events a projection reads, and which it must know.

use eventstore::RecordedEvent;

/// The stream categories a projection reads and the event types it handles in them.
#[derive(Debug, Clone)]
pub struct EventFilter {
    categories: Vec<String>,
    types: Vec<String>,
}

/// What a projection makes of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relevance {
    /// Outside its categories: skip it.
    Elsewhere,
    /// In its categories, of a type it handles: apply it.
    Handled,
    /// In its categories, of a type it does not know: halt.
    Unknown,
}

impl EventFilter {
    /// Reads `categories`, knowing `types`.
    pub fn new<C, T>(categories: C, types: T) -> Self
    where
        C: IntoIterator,
        C::Item: Into<String>,
        T: IntoIterator,
        T::Item: Into<String>,
    {
        Self {
            categories: categories.into_iter().map(Into::into).collect(),
            types: types.into_iter().map(Into::into).collect(),
        }
    }

    /// What `event` is to the projection.
    pub fn relevance(&self, event: &RecordedEvent) -> Relevance {
        if !self.categories.iter().any(|c| c == event.stream.category()) {
            Relevance::Elsewhere
        } else if self.types.contains(&event.event_type) {
            Relevance::Handled
        } else {
            Relevance::Unknown
        }
    }
}
