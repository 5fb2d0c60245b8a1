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

    /// Kills the process and every process of its group with SIGKILL, as a crash of the machine would,
    /// reaps it, and waits until none of the group runs. (A PostgreSQL postmaster killed alone leaves
    /// its backends serving the connections they have.) Does nothing if none runs.
    pub(crate) fn kill(&self, name: &str) -> Result<(), HarnessError> {
        if let Some(mut child) = self.lock().take() {
            // The group is the one this harness started the server in (`in_own_group`): nothing else is hit.
            let group = nix::unistd::Pid::from_raw(child.id() as i32);
            if nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL).is_err() {
                child.kill().map_err(HarnessError::io(format!("killing {name}")))?;
            }
            child.wait().map_err(HarnessError::io(format!("reaping {name}")))?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while group_runs(group) {
                if std::time::Instant::now() > deadline {
                    return Err(HarnessError::io(format!("waiting for the processes of {name} to end"))(
                        std::io::Error::other("still running after SIGKILL"),
                    ));
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
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

/// Starts `command` as the leader of a process group of its own, so that [`ServerProcess::kill`] reaches
/// every process it forks.
pub(crate) fn in_own_group(command: &mut std::process::Command) -> &mut std::process::Command {
    std::os::unix::process::CommandExt::process_group(command, 0)
}

/// Whether a process of group `group` still runs (zombies, whose parent is gone and which nobody reaps
/// in a container, do not count).
fn group_runs(group: nix::unistd::Pid) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else { return false };
    entries.flatten().any(|entry| {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { return false };
        // `pid (comm) state ppid pgrp …`: the command may hold spaces and parentheses, so read after the
        // last `)`.
        let Some((_, rest)) = stat.rsplit_once(')') else { return false };
        let mut fields = rest.split_whitespace();
        let state = fields.next();
        let pgrp = fields.nth(1).and_then(|p| p.parse::<i32>().ok());
        pgrp == Some(group.as_raw()) && state != Some("Z")
    })
}
