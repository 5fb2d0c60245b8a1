//! A real SMTP server for the tests: Python's `aiosmtpd` (PyPI), requiring STARTTLS with a certificate
//! made for the test (`openssl`), keeping every message it accepts in a Maildir.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::server_process::ServerProcess;
use crate::watchdog::Watchdog;
use crate::{HarnessError, free_port};

const READY_WITHIN: Duration = Duration::from_secs(30);

/// A running `aiosmtpd`.
#[derive(Debug)]
pub struct SmtpServer {
    port: u16,
    root: PathBuf,
    process: ServerProcess,
    _watchdog: Watchdog,
}

impl SmtpServer {
    /// Starts `python -m aiosmtpd` (the Python given must have it) on a free port of 127.0.0.1, for
    /// `localhost`, STARTTLS required.
    pub fn start(python: &Path) -> Result<Self, HarnessError> {
        let root = tempfile::Builder::new()
            .prefix("mgw-smtp-")
            .tempdir()
            .map_err(HarnessError::io("creating a temporary directory"))?
            .keep();
        // A certificate authority of the test's own, and the server's certificate signed by it (a
        // self-signed certificate used as the server's own is refused by rustls, rightly).
        let openssl = |arguments: &[&str]| -> Result<(), HarnessError> {
            let made = Command::new("openssl")
                .args(arguments)
                .current_dir(&root)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .map_err(HarnessError::io("running openssl (install Debian's openssl)"))?;
            if made.status.success() {
                return Ok(());
            }
            Err(HarnessError::Command {
                what: format!("openssl {}", arguments.join(" ")),
                detail: String::from_utf8_lossy(&made.stderr).into_owned(),
            })
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=mgw test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca.pem",
        ])?;
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=localhost",
            "-keyout",
            "key.pem",
            "-out",
            "server.csr",
        ])?;
        std::fs::write(
            root.join("server.ext"),
            "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost\nextendedKeyUsage=serverAuth\n",
        )
        .map_err(HarnessError::io("writing the certificate's extensions"))?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            "server.ext",
            "-out",
            "cert.pem",
        ])?;
        for part in ["tmp", "new", "cur"] {
            std::fs::create_dir_all(root.join("mail").join(part)).map_err(HarnessError::io("creating the maildir"))?;
        }
        let pid_file = root.join("python.pid");
        let watchdog = Watchdog::spawn(&pid_file, &root)?;
        let server = Self { port: free_port()?, root, process: ServerProcess::default(), _watchdog: watchdog };
        let child = Command::new(python)
            .args(["-m", "aiosmtpd", "-n", "-l"])
            .arg(format!("127.0.0.1:{}", server.port))
            .arg("--tlscert")
            .arg(server.root.join("cert.pem"))
            .arg("--tlskey")
            .arg(server.root.join("key.pem"))
            .args(["-c", "aiosmtpd.handlers.Mailbox"])
            .arg(server.root.join("mail"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(HarnessError::io("starting aiosmtpd (pip install aiosmtpd)"))?;
        std::fs::write(&pid_file, child.id().to_string()).map_err(HarnessError::io("writing the pid file"))?;
        server.process.set(child);
        let deadline = Instant::now() + READY_WITHIN;
        while std::net::TcpStream::connect(("127.0.0.1", server.port)).is_err() {
            if Instant::now() > deadline {
                return Err(HarnessError::NotReady {
                    what: format!("aiosmtpd on port {}", server.port),
                    seconds: READY_WITHIN.as_secs(),
                    log_tail: String::new(),
                });
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// `localhost:<port>`.
    pub fn address(&self) -> String {
        format!("localhost:{}", self.port)
    }

    /// The authority that signed the server's certificate.
    pub fn ca_file(&self) -> PathBuf {
        self.root.join("ca.pem")
    }

    /// Every message it accepted, as received.
    pub fn messages(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.root.join("mail/new")) else { return Vec::new() };
        entries.filter_map(Result::ok).filter_map(|e| std::fs::read_to_string(e.path()).ok()).collect()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.process.kill("aiosmtpd");
        let _ = std::fs::remove_dir_all(&self.root);
    }
}
