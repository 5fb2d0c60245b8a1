//! The bench's Python peers (FastMCP, ContextForge), each in a virtual environment of its own under the
//! temporary directory, made on first use with the versions `bench/peers/<requirements>` pins: the bench
//! sets its peers up itself, CI never does.

use std::path::{Path, PathBuf};

/// `bench/peers`.
pub(crate) fn peers_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("peers")
}

/// The virtual environment `name` with `requirements` (a file in `bench/peers`) installed; made or
/// brought up to date when the pins changed.
pub(crate) fn venv(name: &str, requirements: &str) -> anyhow::Result<PathBuf> {
    let venv = std::env::temp_dir().join(name);
    let file = peers_dir().join(requirements);
    let pinned = std::fs::read_to_string(&file)?;
    let marker = venv.join("installed.txt");
    if std::fs::read_to_string(&marker).ok().as_deref() != Some(pinned.as_str()) {
        eprintln!("setting up {} in {}", pinned.trim(), venv.display());
        let made = std::process::Command::new("python3").args(["-m", "venv"]).arg(&venv).status()?;
        anyhow::ensure!(made.success(), "python3 -m venv (Debian: python3-venv)");
        let installed =
            std::process::Command::new(venv.join("bin/pip")).args(["install", "--quiet", "-r"]).arg(&file).status()?;
        anyhow::ensure!(installed.success(), "pip install -r bench/peers/{requirements}");
        std::fs::write(&marker, &pinned)?;
    }
    Ok(venv)
}

/// Pauses (`STOP`) or resumes (`CONT`) a peer, so that it takes no CPU while another target is measured.
pub(crate) fn signal(child: &tokio::process::Child, signal: &str) -> anyhow::Result<()> {
    let pid = child.id().ok_or_else(|| anyhow::anyhow!("the peer has exited"))?;
    let sent = std::process::Command::new("kill").args([format!("-{signal}"), pid.to_string()]).status()?;
    anyhow::ensure!(sent.success(), "kill -{signal} {pid}");
    Ok(())
}
