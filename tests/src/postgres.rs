//! A throwaway PostgreSQL cluster: `initdb` into a temporary directory, `postgres` on a free port.

use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::binaries::postgres_bindir;
use crate::server_process::ServerProcess;
use crate::watchdog::Watchdog;
use crate::{HarnessError, free_port};

/// How long a cluster may take to accept connections.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// How a cluster is configured.
#[derive(Debug, Clone, Default)]
pub struct PostgresOptions {
    /// Keep fsync and synchronous commit on, as in production (benchmarks). Off for tests, where
    /// durability across a machine crash does not matter and speed does.
    pub durable: bool,
    /// Extra `-c name=value` settings.
    pub settings: Vec<(String, String)>,
}

/// A running throwaway cluster. Dropping it stops the server and removes its directory.
#[derive(Debug)]
pub struct PostgresServer {
    port: u16,
    bindir: PathBuf,
    data_dir: PathBuf,
    log_file: PathBuf,
    run_as: Option<(u32, u32)>,
    settings: Vec<(String, String)>,
    process: ServerProcess,
    _watchdog: Watchdog,
}

static SHARED: OnceLock<Result<PostgresServer, String>> = OnceLock::new();

impl PostgresServer {
    /// Starts a new cluster.
    pub fn start(options: PostgresOptions) -> Result<Self, HarnessError> {
        let bindir = postgres_bindir()?;
        let root = tempfile::Builder::new()
            .prefix("mgw-postgres-")
            .tempdir()
            .map_err(HarnessError::io("creating a temporary directory"))?
            .keep();
        let data_dir = root.join("data");
        let log_file = root.join("postgres.log");
        // The watchdog exists before anything else, so even a failed start leaves nothing behind.
        let watchdog = Watchdog::spawn(&data_dir.join("postmaster.pid"), &root)?;
        // PostgreSQL refuses to run as root: as root, hand the directory to the `postgres` user.
        let run_as = if running_as_root() { Some(postgres_user()?) } else { None };
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(&root, Some(uid), Some(gid))
                .map_err(HarnessError::io("chown of the cluster directory"))?;
        }
        initdb(&bindir, &data_dir, &log_file, run_as)?;
        let mut settings: Vec<(String, String)> = [
            ("listen_addresses", "127.0.0.1"),
            ("unix_socket_directories", ""),
            ("max_connections", "400"),
            ("shared_buffers", if options.durable { "1GB" } else { "128MB" }),
            ("logging_collector", "off"),
            ("log_min_messages", "warning"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        if !options.durable {
            for (k, v) in [("fsync", "off"), ("synchronous_commit", "off"), ("full_page_writes", "off")] {
                settings.push((k.into(), v.into()));
            }
        }
        settings.extend(options.settings);
        let server = Self {
            port: free_port()?,
            bindir,
            data_dir,
            log_file,
            run_as,
            settings,
            process: ServerProcess::default(),
            _watchdog: watchdog,
        };
        server.spawn_and_wait()?;
        Ok(server)
    }

    /// The cluster shared by all tests of this process (each test takes its own database in it).
    pub fn shared() -> Result<&'static PostgresServer, HarnessError> {
        SHARED
            .get_or_init(|| PostgresServer::start(PostgresOptions::default()).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| HarnessError::SharedFailed(e.clone()))
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The temporary directory holding its data and log; removed when the server is dropped.
    pub fn directory(&self) -> &std::path::Path {
        self.data_dir.parent().unwrap_or(&self.data_dir)
    }

    /// A connection URL for `database`, as the superuser `postgres`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates an empty database with a fresh name.
    pub async fn create_database(&self) -> Result<TestDatabase, HarnessError> {
        let name = format!("test_{}", uuid::Uuid::new_v4().simple());
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&self.url("postgres"))
            .await
            .map_err(|source| HarnessError::Database { what: "connecting to the test cluster".into(), source })?;
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&admin)
            .await
            .map_err(|source| HarnessError::Database { what: format!("creating database {name}"), source })?;
        admin.close().await;
        Ok(TestDatabase { url: self.url(&name), name })
    }

    /// Kills the server and its backends with SIGKILL, as a crash of the machine would, and waits until
    /// none of them runs.
    pub fn kill(&self) -> Result<(), HarnessError> {
        self.process.kill("postgres")
    }

    /// Starts the server again on the same port and data (after [`PostgresServer::kill`]).
    pub fn restart(&self) -> Result<(), HarnessError> {
        self.kill()?;
        self.spawn_and_wait()
    }

    /// The end of the server's log, for failure messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log_file)
    }

    fn spawn_and_wait(&self) -> Result<(), HarnessError> {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            let mut child = self.spawn()?;
            match self.wait_ready(&mut child, deadline) {
                Ok(()) => {
                    self.process.set(child);
                    return Ok(());
                }
                // After a crash, old backends may still hold the shared memory for a moment: try again.
                Err(Exited) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
                Err(failure) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return Err(HarnessError::NotReady {
                        what: format!("postgres on port {} ({failure:?})", self.port),
                        seconds: READY_WITHIN.as_secs(),
                        log_tail: self.log_tail(),
                    });
                }
            }
        }
    }

    fn spawn(&self) -> Result<Child, HarnessError> {
        let log = log_writer(&self.log_file)?;
        let mut cmd = Command::new(self.bindir.join("postgres"));
        cmd.arg("-D").arg(&self.data_dir).arg("-p").arg(self.port.to_string());
        for (name, value) in &self.settings {
            cmd.arg("-c").arg(format!("{name}={value}"));
        }
        cmd.stdin(Stdio::null()).stdout(log.try_clone().map_err(HarnessError::io("log file"))?).stderr(log);
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid);
        }
        cmd.spawn().map_err(HarnessError::io("starting postgres"))
    }

    fn wait_ready(&self, child: &mut Child, deadline: Instant) -> Result<(), StartFailure> {
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Err(Exited);
            }
            let ready = Command::new(self.bindir.join("pg_isready"))
                .args(["-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-t", "1", "-p"])
                .arg(self.port.to_string())
                .status()
                .is_ok_and(|s| s.success());
            if ready {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(StartFailure::TimedOut);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

#[derive(Debug)]
enum StartFailure {
    Exited,
    TimedOut,
}
use StartFailure::Exited;

impl Drop for PostgresServer {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// A database of its own for one test.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    /// Its name.
    pub name: String,
    /// Its connection URL.
    pub url: String,
}

impl TestDatabase {
    /// A pool on it with up to `max_connections` connections, failing fast when the server is gone.
    pub async fn pool(&self, max_connections: u32) -> Result<PgPool, HarnessError> {
        PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&self.url)
            .await
            .map_err(|source| HarnessError::Database { what: format!("connecting to {}", self.name), source })
    }
}

fn initdb(bindir: &Path, data_dir: &Path, log_file: &Path, run_as: Option<(u32, u32)>) -> Result<(), HarnessError> {
    let log = log_writer(log_file)?;
    let mut cmd = Command::new(bindir.join("initdb"));
    cmd.arg("-D")
        .arg(data_dir)
        .args(["-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"])
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(HarnessError::io("log file"))?)
        .stderr(log);
    if let Some((uid, gid)) = run_as {
        cmd.uid(uid).gid(gid);
    }
    let status = cmd.status().map_err(HarnessError::io("running initdb"))?;
    if !status.success() {
        return Err(HarnessError::Command {
            what: "initdb".into(),
            detail: format!("{status}\n{}", log_tail(log_file)),
        });
    }
    Ok(())
}

fn running_as_root() -> bool {
    // /proc/self belongs to the process's effective user.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn postgres_user() -> Result<(u32, u32), HarnessError> {
    let id = |flag: &str| -> Result<u32, HarnessError> {
        let out = Command::new("id").arg(flag).arg("postgres").output().map_err(HarnessError::io("running id"))?;
        String::from_utf8_lossy(&out.stdout).trim().parse().map_err(|_| HarnessError::Command {
            what: "looking up the `postgres` user (PostgreSQL refuses to run as root)".into(),
            detail: "no such user: install the Debian package `postgresql`, which creates it".into(),
        })
    };
    Ok((id("-u")?, id("-g")?))
}

fn log_writer(path: &Path) -> Result<std::fs::File, HarnessError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(HarnessError::io("opening the server log"))?;
    Ok(file)
}

pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}
