//! Throwaway upstream MCP servers, run by Node.js from `tests/peers` on a free port, bound to loopback
//! (`tests/peers/loopback.cjs`: `server-everything` itself listens on every interface) and started with
//! an empty environment (its `get-env` tool answers with the whole environment):
//! - the official `@modelcontextprotocol/server-everything` over streamable HTTP (`/mcp`);
//! - `tests/peers/header-echo-server.mjs`, built with the official TypeScript SDK, whose one tool answers
//!   the headers of every request it received (what the gateway forwards).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::server_process::ServerProcess;
use crate::watchdog::Watchdog;
use crate::{HarnessError, free_port};

const READY_WITHIN: Duration = Duration::from_secs(30);

static SHARED: std::sync::OnceLock<Result<McpServer, String>> = std::sync::OnceLock::new();

/// Which server.
#[derive(Debug, Clone)]
enum Program {
    Everything,
    /// `server-everything` over the older HTTP+SSE transport.
    EverythingSse,
    /// With the userinfo endpoint that checks the bearer tokens it requires, if any.
    HeaderEcho(Option<String>),
}

/// A running server. Dropping it stops it.
#[derive(Debug)]
pub struct McpServer {
    port: u16,
    process: ServerProcess,
    _watchdog: Watchdog,
}

impl McpServer {
    /// Starts `server-everything` on a free port and waits until it accepts connections.
    pub fn everything() -> Result<Self, HarnessError> {
        Self::start(Program::Everything)
    }

    /// Starts `server-everything` speaking the older HTTP+SSE transport (MCP 2024-11-05): its stream at
    /// [`sse_url`](Self::sse_url).
    pub fn everything_sse() -> Result<Self, HarnessError> {
        Self::start(Program::EverythingSse)
    }

    /// Starts the header-echo server on a free port and waits until it accepts connections.
    pub fn header_echo() -> Result<Self, HarnessError> {
        Self::start(Program::HeaderEcho(None))
    }

    /// The header-echo server acting on people's own accounts: it refuses requests without a bearer
    /// token that `userinfo` (an OpenID provider's userinfo endpoint) accepts (401 with a Bearer
    /// challenge), and its `whoami` tool answers the token's `sub`.
    pub fn acting_for_people(userinfo: &str) -> Result<Self, HarnessError> {
        Self::start(Program::HeaderEcho(Some(userinfo.to_owned())))
    }

    fn start(program: Program) -> Result<Self, HarnessError> {
        let peers = crate::oidc_provider::installed_peers()?;
        // The preload is copied into a directory of its own, which names the process for the watchdog.
        let root = tempfile::Builder::new()
            .prefix("mgw-mcp-")
            .tempdir()
            .map_err(HarnessError::io("creating a temporary directory"))?
            .keep();
        let preload = root.join("loopback.cjs");
        std::fs::copy(peers.join("loopback.cjs"), &preload).map_err(HarnessError::io("copying loopback.cjs"))?;
        let pid_file = root.join("node.pid");
        let watchdog = Watchdog::spawn(&pid_file, &root)?;
        let server = Self { port: free_port()?, process: ServerProcess::default(), _watchdog: watchdog };
        server.spawn(program, &peers, &preload, &pid_file)?;
        Ok(server)
    }

    fn spawn(
        &self,
        program: Program,
        peers: &std::path::Path,
        preload: &std::path::Path,
        pid_file: &std::path::Path,
    ) -> Result<(), HarnessError> {
        let (script, arguments) = match program {
            Program::Everything => (
                peers.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
                vec!["streamableHttp".to_owned()],
            ),
            Program::EverythingSse => (
                peers.join("node_modules/@modelcontextprotocol/server-everything/dist/index.js"),
                vec!["sse".to_owned()],
            ),
            Program::HeaderEcho(userinfo) => {
                (peers.join("header-echo-server.mjs"), std::iter::once(self.port.to_string()).chain(userinfo).collect())
            }
        };
        let child = Command::new(node()?)
            .arg("--require")
            .arg(preload)
            .arg(script)
            .args(arguments)
            .env_clear()
            .env("PORT", self.port.to_string())
            .current_dir(peers)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(HarnessError::io("starting node (install Debian's nodejs)"))?;
        std::fs::write(pid_file, child.id().to_string()).map_err(HarnessError::io("writing the pid file"))?;
        self.process.set(child);
        let deadline = Instant::now() + READY_WITHIN;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            if Instant::now() > deadline {
                return Err(HarnessError::NotReady {
                    what: format!("server-everything on port {}", self.port),
                    seconds: READY_WITHIN.as_secs(),
                    log_tail: String::new(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// One server for the whole test process, started on first use (tests that kill theirs start their
    /// own). It keeps sessions apart, so tests can share it.
    pub fn shared_everything() -> Result<&'static McpServer, HarnessError> {
        SHARED
            .get_or_init(|| McpServer::everything().map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| HarnessError::SharedFailed(e.clone()))
    }

    /// Kills it (an upstream dying mid-call).
    pub fn kill(&self) -> Result<(), HarnessError> {
        self.process.kill("server-everything")
    }

    /// Its MCP endpoint.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/mcp", self.port)
    }

    /// Its event stream, when it speaks HTTP+SSE.
    pub fn sse_url(&self) -> String {
        format!("http://127.0.0.1:{}/sse", self.port)
    }
}

/// `node`, found on this process's `PATH` (the server's own environment is empty).
fn node() -> Result<PathBuf, HarnessError> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join("node"))
        .find(|candidate| candidate.is_file())
        .ok_or(HarnessError::MissingBinary { binary: "node", package: "nodejs", hint: "" })
}

impl Drop for McpServer {
    fn drop(&mut self) {
        let _ = self.process.kill("server-everything");
    }
}
