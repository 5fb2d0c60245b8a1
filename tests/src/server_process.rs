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
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
            // Stopped, it forks no new child while its children are found and killed (the signal is
            // delivered asynchronously: wait until the process shows it).
            let _ = kill(pid, Signal::SIGSTOP);
            while stat(pid.as_raw()).is_some_and(|s| s.state != "T" && s.state != "Z")
                && std::time::Instant::now() < deadline
            {
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            let descendants = descendants_of(pid.as_raw());
            for (descendant, _) in &descendants {
                let _ = kill(nix::unistd::Pid::from_raw(*descendant), Signal::SIGKILL);
            }
            child.kill().map_err(HarnessError::io(format!("killing {name}")))?;
            child.wait().map_err(HarnessError::io(format!("reaping {name}")))?;
            while descendants.iter().any(|(pid, started)| runs(*pid, *started)) {
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

/// What `/proc/<pid>/stat` says of a process (`pid (comm) state ppid …`: the command may hold spaces and
/// parentheses, so the fields are read after the last `)`).
struct Stat {
    state: String,
    parent: i32,
    /// Clock ticks after boot when it started: with the pid, names the process (pids are reused).
    started: u64,
}

fn stat(pid: i32) -> Option<Stat> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state (field 3), ppid (4), … starttime (22).
    Some(Stat {
        state: fields.first()?.to_string(),
        parent: fields.get(1)?.parse().ok()?,
        started: fields.get(19)?.parse().ok()?,
    })
}

/// Every process below `pid`, with its start time.
fn descendants_of(pid: i32) -> Vec<(i32, u64)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let processes: Vec<(i32, Stat)> = entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|p| stat(p).map(|s| (p, s)))
        .collect();
    let mut found = vec![(pid, 0)];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next].0;
        found.extend(processes.iter().filter(|(_, s)| s.parent == parent).map(|(p, s)| (*p, s.started)));
        next += 1;
    }
    found.remove(0);
    found
}

/// Whether the process `pid` that started at `started` still runs (a zombie, whose parent is gone and
/// which nobody reaps in a container, does not; nor does another process that took its pid since).
fn runs(pid: i32, started: u64) -> bool {
    stat(pid).is_some_and(|s| s.state != "Z" && s.started == started)
}
