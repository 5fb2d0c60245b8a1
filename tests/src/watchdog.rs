//! A watchdog that kills a server and removes its directory when the test process goes away.

use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};

use crate::HarnessError;

/// Waits for EOF on its stdin (the test process closed it, or died), then kills the process whose pid
/// is in `$1` (only if its command line names our directory, so a recycled pid is left alone) and
/// removes the directory `$2`.
const SCRIPT: &str = r#"
read -r _ignored
pid=$(head -n 1 "$1" 2>/dev/null)
if [ -n "$pid" ] && grep -qaF -- "$2" "/proc/$pid/cmdline" 2>/dev/null; then kill -9 "$pid" 2>/dev/null; fi
rm -rf -- "$2"
"#;

/// Owns the watchdog; dropping it releases the directory.
#[derive(Debug)]
pub(crate) struct Watchdog {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Watchdog {
    pub(crate) fn spawn(pid_file: &Path, dir: &Path) -> Result<Self, HarnessError> {
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(SCRIPT)
            .arg("mgw-watchdog")
            .arg(pid_file)
            .arg(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(HarnessError::io("starting the cleanup watchdog (sh)"))?;
        let stdin = child.stdin.take();
        Ok(Self { child, stdin })
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}
