//! CPU time spent, read from `/proc`: this process's, and a PostgreSQL server's (the postmaster and every
//! backend it started). A figure per unit of work that the machine's other load and the scheduler's
//! choices move far less than a rate does.

use std::path::Path;

/// Seconds of CPU (user and system) this process and the server whose data directory is `pg_data` have
/// used so far.
pub(crate) fn used_seconds(pg_data: &Path) -> anyhow::Result<f64> {
    let ticks = clock_ticks()?;
    let postmaster: u32 = std::fs::read_to_string(pg_data.join("postmaster.pid"))?
        .lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no postmaster pid in {}", pg_data.display()))?;
    let mut total = own(std::process::id())?.0;
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        // Processes end between listing and reading: skip those.
        let Ok((used, parent)) = own(pid) else { continue };
        if pid == postmaster || parent == postmaster {
            total += used;
        }
    }
    Ok(total / ticks)
}

/// A process's user and system time in clock ticks, and its parent.
fn own(pid: u32) -> anyhow::Result<(f64, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // The command name may hold spaces and parentheses: the fields follow its last `)`.
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("").split_whitespace().collect();
    let field = |n: usize| fields.get(n).and_then(|f| f.parse::<f64>().ok());
    // After the name: state (0), ppid (1), …, utime (11), stime (12).
    let (Some(parent), Some(user), Some(system)) = (field(1), field(11), field(12)) else {
        anyhow::bail!("malformed /proc/{pid}/stat");
    };
    Ok((user + system, parent as u32))
}

fn clock_ticks() -> anyhow::Result<f64> {
    let output = std::process::Command::new("getconf").arg("CLK_TCK").output()?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
}
