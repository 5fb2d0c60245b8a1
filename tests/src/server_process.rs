//! The running process of a test server, which fault tests kill and the server's owner restarts.

use std::process::Child;
use std::sync::{Mutex, MutexGuard};

use crate::HarnessError;

/// The current process of a server, if it runs.
#[derive(Debug, Default)]
pub(crate) struct ServerProcess {
    child: Mutex<Option<Child>>,
}

impl ServerProcess {
    /// Records a freshly started process.
    pub(crate) fn set(&self, child: Child) {
        *self.lock() = Some(child);
    }

    /// Kills the process with SIGKILL, as a crash would, and reaps it. Does nothing if none runs.
    pub(crate) fn kill(&self, name: &str) -> Result<(), HarnessError> {
        if let Some(mut child) = self.lock().take() {
            child.kill().map_err(HarnessError::io(format!("killing {name}")))?;
            child.wait().map_err(HarnessError::io(format!("reaping {name}")))?;
        }
        Ok(())
    }

    /// True while the process runs.
    pub(crate) fn is_running(&self) -> bool {
        self.lock().as_mut().is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    fn lock(&self) -> MutexGuard<'_, Option<Child>> {
        // A test that panicked while holding the lock leaves a usable value behind.
        self.child.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
