//! What a runner reports about its projection: readiness for health checks, progress for metrics.

use eventstore::Position;

/// Where a projection is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectionState {
    /// Not started, or waiting to become the active runner.
    Starting,
    /// Reading the past; not ready to serve.
    CatchingUp,
    /// Caught up with the head seen at start, following new events: ready.
    Live,
    /// Another process runs the projection; `current` when the shared read model has reached the head
    /// seen one poll earlier (ready: that runner keeps up).
    Standby {
        /// The shared model keeps up with the store.
        current: bool,
    },
    /// Stopped on an error that running again cannot fix: not ready until the code or data changes.
    Halted(String),
    /// Not run: turned off by configuration. It serves nothing, so it holds nothing up.
    Disabled,
}

/// A snapshot of a runner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectionStatus {
    /// The projection.
    pub name: String,
    /// Where it is.
    pub state: ProjectionState,
    /// The last event applied or skipped.
    pub checkpoint: Option<Position>,
    /// Events applied by this runner since it started.
    pub applied: u64,
    /// The last error the runner met and is retrying after, until it moves on.
    pub last_error: Option<String>,
    /// Since when it is halted (see [`ProjectionState::Halted`]).
    pub halted_since: Option<std::time::Instant>,
    /// Where it halted: the event it could not apply, when the error names one.
    pub halted_at: Option<Position>,
}

impl ProjectionStatus {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            state: ProjectionState::Starting,
            checkpoint: None,
            applied: 0,
            last_error: None,
            halted_since: None,
            halted_at: None,
        }
    }

    /// Records that the runner stopped for good on `error`, loudly: the error log names the projection
    /// and the event, the halt shows in `/ready` and in `mgw_projection_halted`.
    pub(crate) fn halt(&mut self, error: &crate::ProjectionError) {
        tracing::error!(projection = %self.name, position = ?error.position(), %error, "projection halted");
        metrics::gauge!("mgw_projection_ready", "projection" => self.name.clone()).set(0.0);
        metrics::gauge!("mgw_projection_halted", "projection" => self.name.clone()).set(1.0);
        self.state = ProjectionState::Halted(error.to_string());
        self.halted_since = Some(std::time::Instant::now());
        self.halted_at = error.position();
    }

    /// The status of a projection that configuration turned off.
    pub fn disabled(name: &str) -> Self {
        Self { state: ProjectionState::Disabled, ..Self::new(name) }
    }

    /// True when the read model may serve requests (or, turned off, holds nothing up).
    pub fn is_ready(&self) -> bool {
        matches!(
            self.state,
            ProjectionState::Live | ProjectionState::Standby { current: true } | ProjectionState::Disabled
        )
    }
}
