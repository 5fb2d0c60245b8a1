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

    /// Kills the process and every process it started with SIGKILL, as a crash of the machine would,
    /// reaps it, and waits until none of them runs. (PostgreSQL's backends are group leaders of their
    /// own, and outlive a postmaster killed alone for as long as they take to notice: a connection kept
    /// working after the "crash".) Does nothing if none runs.
    pub(crate) fn kill(&self, name: &str) -> Result<(), HarnessError> {
        use nix::sys::signal::{Signal, kill};
        if let Some(mut child) = self.lock().take() {
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            // Stopped, it forks no new child while its children are found and killed.
            let _ = kill(pid, Signal::SIGSTOP);
            let descendants = descendants_of(pid.as_raw());
            for descendant in &descendants {
                let _ = kill(nix::unistd::Pid::from_raw(*descendant), Signal::SIGKILL);
            }
            child.kill().map_err(HarnessError::io(format!("killing {name}")))?;
            child.wait().map_err(HarnessError::io(format!("reaping {name}")))?;
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            while descendants.iter().any(|pid| runs(*pid)) {
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

/// The state and parent of process `pid`, from `/proc/<pid>/stat` (`pid (comm) state ppid …`: the command
/// may hold spaces and parentheses, so the fields are read after the last `)`).
fn stat(pid: i32) -> Option<(String, i32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.to_owned();
    let parent = fields.next()?.parse().ok()?;
    Some((state, parent))
}

/// Every process below `pid`, children first.
fn descendants_of(pid: i32) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let processes: Vec<(i32, i32)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|p| stat(p).map(|(_, parent)| (p, parent)))
        .collect();
    let mut found = vec![pid];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(processes.iter().filter(|(_, pp)| *pp == parent).map(|(p, _)| *p));
        next += 1;
    }
    found.remove(0);
    found
}

/// Whether process `pid` still runs (a zombie, whose parent is gone and which nobody reaps in a
/// container, does not).
fn runs(pid: i32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != "Z")
}
