//! A throwaway upstream OpenID provider: the certified npm package `oidc-provider`, run by Node.js from
//! `tests/peers` (installed there by `.ci/run`: `npm ci --prefix tests/peers`), on a free port.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::server_process::ServerProcess;
use crate::watchdog::Watchdog;
use crate::{HarnessError, free_port};

const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running provider. Dropping it stops it.
#[derive(Debug)]
pub struct OidcProvider {
    port: u16,
    config_file: PathBuf,
    pid_file: PathBuf,
    process: ServerProcess,
    _watchdog: Watchdog,
}

/// `tests/peers`, where `oidc-provider` is installed.
fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("peers")
}

/// The directory of the third-party npm programs (`tests/peers`), installed.
pub fn installed_peers() -> Result<PathBuf, HarnessError> {
    let peers = peers_dir();
    ensure_installed(&peers)?;
    Ok(peers)
}

/// Installs the pinned peers (`npm ci`, from `tests/peers/package-lock.json`) the first time a test needs
/// them, once per test process.
fn ensure_installed(peers: &std::path::Path) -> Result<(), HarnessError> {
    static INSTALLED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let missing = || HarnessError::MissingBinary {
        binary: "the npm package oidc-provider",
        package: "nodejs npm",
        hint: "; then run `npm ci --prefix tests/peers` (.ci/run does)",
    };
    let installed = INSTALLED.get_or_init(|| {
        if peers.join("node_modules/oidc-provider").is_dir()
            && peers.join("node_modules/@modelcontextprotocol/sdk").is_dir()
            && peers.join("node_modules/@modelcontextprotocol/server-everything").is_dir()
        {
            return Ok(());
        }
        let status = Command::new("npm")
            .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
            .current_dir(peers)
            .status()
            .map_err(|e| e.to_string())?;
        if status.success() { Ok(()) } else { Err(format!("npm ci exited with {status}")) }
    });
    match installed {
        Ok(()) => Ok(()),
        Err(detail) => {
            let error = missing();
            Err(HarnessError::Command { what: format!("installing peers ({error})"), detail: detail.clone() })
        }
    }
}

impl OidcProvider {
    /// Starts a provider with `config` (`{"clients": [...], "users": {...}}`, see
    /// `tests/peers/oidc-provider.mjs`).
    pub fn start(config: &str) -> Result<Self, HarnessError> {
        let peers = peers_dir();
        ensure_installed(&peers)?;
        let root = tempfile::Builder::new()
            .prefix("mgw-oidc-")
            .tempdir()
            .map_err(HarnessError::io("creating a temporary directory"))?
            .keep();
        let config_file = root.join("config.json");
        std::fs::write(&config_file, config).map_err(HarnessError::io("writing the provider's configuration"))?;
        let pid_file = root.join("node.pid");
        let watchdog = Watchdog::spawn(&pid_file, &root)?;
        let port = free_port()?;
        let provider = Self { port, config_file, pid_file, process: ServerProcess::default(), _watchdog: watchdog };
        provider.spawn()?;
        Ok(provider)
    }

    /// Kills the provider and starts it again on the same port with the same configuration: everything
    /// it held (sessions, grants, refresh tokens, its signing keys) is gone, as after an IdP's outage
    /// that lost its state, or a revocation of everything it issued.
    pub fn restart(&self) -> Result<(), HarnessError> {
        self.stop()?;
        self.resume()
    }

    /// Kills the provider: its port refuses connections, as during an outage.
    pub fn stop(&self) -> Result<(), HarnessError> {
        self.process.kill("oidc-provider")
    }

    /// Starts a stopped provider again on its port, with its configuration (and nothing it held).
    pub fn resume(&self) -> Result<(), HarnessError> {
        let deadline = std::time::Instant::now() + READY_WITHIN;
        loop {
            match self.spawn() {
                Ok(()) => return Ok(()),
                // The port may linger for a moment after a kill: try again until the deadline.
                Err(_) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(error) => return Err(error),
            }
        }
    }

    fn spawn(&self) -> Result<(), HarnessError> {
        let peers = peers_dir();
        let mut child = Command::new("node")
            .arg(peers.join("oidc-provider.mjs"))
            .arg(self.port.to_string())
            .arg(&self.config_file)
            .current_dir(&peers)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(HarnessError::io("starting node (install Debian's nodejs)"))?;
        std::fs::write(&self.pid_file, child.id().to_string()).map_err(HarnessError::io("writing the pid file"))?;
        // Ready when it says so; the reader thread keeps draining its output afterwards.
        let stdout = child.stdout.take();
        let (ready, listening) = mpsc::channel();
        std::thread::spawn(move || {
            let Some(stdout) = stdout else { return };
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.starts_with("listening ") {
                    let _ = ready.send(());
                }
            }
        });
        self.process.set(child);
        listening.recv_timeout(READY_WITHIN).map_err(|_| HarnessError::NotReady {
            what: format!("oidc-provider on port {}", self.port),
            seconds: READY_WITHIN.as_secs(),
            log_tail: String::new(),
        })
    }

    /// The issuer URL.
    pub fn issuer(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.process.kill("oidc-provider");
    }
}
