//! Finding the installed server binaries.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::HarnessError;

/// The directory holding `initdb` and `postgres`. Debian keeps them off the PATH, in
/// `/usr/lib/postgresql/<major>/bin`. Order: `$MGW_PG_BINDIR`, `pg_config --bindir`, the newest
/// `/usr/lib/postgresql/*/bin`, then the PATH.
pub(crate) fn postgres_bindir() -> Result<PathBuf, HarnessError> {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    if let Some(dir) = std::env::var_os("MGW_PG_BINDIR").map(PathBuf::from)
        && has_server(&dir)
    {
        return Ok(dir);
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_server(&dir) {
            return Ok(dir);
        }
    }
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let major = entry.file_name().to_str()?.parse::<u32>().ok()?;
            Some((major, entry.path().join("bin")))
        })
        .filter(|(_, dir)| has_server(dir))
        .collect();
    versioned.sort();
    if let Some((_, dir)) = versioned.pop() {
        return Ok(dir);
    }
    if let Some(dir) = on_path("initdb").and_then(|p| p.parent().map(Path::to_path_buf))
        && has_server(&dir)
    {
        return Ok(dir);
    }
    Err(HarnessError::MissingBinary {
        binary: "PostgreSQL server (initdb, postgres)",
        package: "postgresql",
        hint: ", or set MGW_PG_BINDIR",
    })
}

/// The `nats-server` binary: `$MGW_NATS_SERVER`, the PATH, or Debian's `/usr/sbin`.
pub(crate) fn nats_server() -> Result<PathBuf, HarnessError> {
    if let Some(path) = std::env::var_os("MGW_NATS_SERVER").map(PathBuf::from)
        && path.is_file()
    {
        return Ok(path);
    }
    on_path("nats-server")
        .or_else(|| {
            ["/usr/sbin/nats-server", "/usr/bin/nats-server"].map(PathBuf::from).into_iter().find(|p| p.is_file())
        })
        .ok_or(HarnessError::MissingBinary {
            binary: "nats-server",
            package: "nats-server",
            hint: ", or set MGW_NATS_SERVER",
        })
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|dir| dir.join(name)).find(|p| p.is_file())
}
