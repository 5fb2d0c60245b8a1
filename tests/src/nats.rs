//! A throwaway `nats-server -js`, file storage in a temporary directory, on a free port.

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::binaries::nats_server;
use crate::postgres::log_tail;
use crate::server_process::ServerProcess;
use crate::watchdog::Watchdog;
use crate::{HarnessError, free_port};

const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running NATS server with JetStream. Dropping it stops the server and removes its store.
#[derive(Debug)]
pub struct NatsServer {
    port: u16,
    binary: PathBuf,
    store_dir: PathBuf,
    pid_file: PathBuf,
    log_file: PathBuf,
    process: ServerProcess,
    _watchdog: Watchdog,
}

impl NatsServer {
    /// Starts a server.
    pub fn start() -> Result<Self, HarnessError> {
        let binary = nats_server()?;
        let root = tempfile::Builder::new()
            .prefix("mgw-nats-")
            .tempdir()
            .map_err(HarnessError::io("creating a temporary directory"))?
            .keep();
        let pid_file = root.join("nats.pid");
        let watchdog = Watchdog::spawn(&pid_file, &root)?;
        let server = Self {
            port: free_port()?,
            binary,
            store_dir: root.join("store"),
            pid_file,
            log_file: root.join("nats.log"),
            process: ServerProcess::default(),
            _watchdog: watchdog,
        };
        server.spawn_and_wait()?;
        Ok(server)
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary directory holding its store and log; removed when the server is dropped.
    pub fn directory(&self) -> &std::path::Path {
        self.store_dir.parent().unwrap_or(&self.store_dir)
    }

    /// Kills the server with SIGKILL, as a crash would.
    pub fn kill(&self) -> Result<(), HarnessError> {
        self.process.kill("nats-server")
    }

    /// Starts the server again on the same port and store (after [`NatsServer::kill`]).
    pub fn restart(&self) -> Result<(), HarnessError> {
        self.kill()?;
        self.spawn_and_wait()
    }

    /// True while the server process runs.
    pub fn is_running(&self) -> bool {
        self.process.is_running()
    }

    fn spawn_and_wait(&self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let mut child = self.spawn()?;
            if self.wait_ready(&mut child, deadline) {
                self.process.set(child);
                return Ok(());
            }
            let _ = child.kill();
            let _ = child.wait();
            // The port may linger for a moment after a kill: try again until the deadline.
            if Instant::now() >= deadline {
                return Err(HarnessError::NotReady {
                    what: format!("nats-server on port {}", self.port),
                    seconds: READY_WITHIN.as_secs(),
                    log_tail: log_tail(&self.log_file),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn spawn(&self) -> Result<Child, HarnessError> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_file)
            .map_err(HarnessError::io("opening the nats log"))?;
        Command::new(&self.binary)
            .args(["-js", "-a", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .arg("-sd")
            .arg(&self.store_dir)
            .arg("-P")
            .arg(&self.pid_file)
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(HarnessError::io("log file"))?)
            .stderr(log)
            .spawn()
            .map_err(HarnessError::io("starting nats-server"))
    }

    /// Ready once a client connection gets an INFO line that announces JetStream.
    fn wait_ready(&self, child: &mut Child, deadline: Instant) -> bool {
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return false;
            }
            if let Ok(stream) = TcpStream::connect(("127.0.0.1", self.port)) {
                let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
                let mut line = String::new();
                if BufReader::new(stream).read_line(&mut line).is_ok() && line.contains("\"jetstream\":true") {
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}
