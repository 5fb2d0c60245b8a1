//! CPU time spent, read from `/proc`: by this process's threads of one name, and by a PostgreSQL server's
//! backends of one database. A figure per unit of work that the machine's other load and the scheduler's
//! choices move far less than a rate does.

use std::path::Path;

/// Seconds of CPU the threads of this process named `name` (a runtime's `thread_name`) have used so far.
pub(crate) fn threads_seconds(name: &str) -> anyhow::Result<f64> {
    let ticks = clock_ticks()?;
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc/self/task")? {
        let task = entry?.path();
        // Threads end between listing and reading: skip those.
        let Ok(comm) = std::fs::read_to_string(task.join("comm")) else { continue };
        if comm.trim_end() != name {
            continue;
        }
        if let Ok((used, _)) = times(&task.join("stat")) {
            total += used;
        }
    }
    Ok(total / ticks)
}

/// Seconds of CPU the backends of the PostgreSQL server whose data directory is `pg_data` that serve
/// `database` have used so far (a backend's command line names its database). The server's shared
/// processes (WAL writer, checkpointer, autovacuum) are nobody's.
pub(crate) fn database_seconds(pg_data: &Path, database: &str) -> anyhow::Result<f64> {
    let ticks = clock_ticks()?;
    let postmaster = postmaster(pg_data)?;
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc")? {
        let Some(pid) = entry?.file_name().to_str().and_then(|name| name.parse::<u32>().ok()) else { continue };
        let Ok((used, parent)) = own(pid) else { continue };
        if parent != postmaster {
            continue;
        }
        let Ok(command) = std::fs::read(format!("/proc/{pid}/cmdline")) else { continue };
        // "postgres: <user> <database> <client> <state>", as the backend titles itself.
        let command = String::from_utf8_lossy(&command);
        if command.split([' ', '\0']).nth(2) == Some(database) {
            total += used;
        }
    }
    Ok(total / ticks)
}

fn postmaster(pg_data: &Path) -> anyhow::Result<u32> {
    std::fs::read_to_string(pg_data.join("postmaster.pid"))?
        .lines()
        .next()
        .and_then(|line| line.trim().parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no postmaster pid in {}", pg_data.display()))
}

/// A process's user and system time in clock ticks, and its parent.
fn own(pid: u32) -> anyhow::Result<(f64, u32)> {
    times(Path::new(&format!("/proc/{pid}/stat")))
}

/// The user and system time in clock ticks, and the parent, of a `stat` file (a process's or a thread's).
fn times(path: &Path) -> anyhow::Result<(f64, u32)> {
    let stat = std::fs::read_to_string(path)?;
    // The command name may hold spaces and parentheses: the fields follow its last `)`.
    let fields: Vec<&str> = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("").split_whitespace().collect();
    let field = |n: usize| fields.get(n).and_then(|f| f.parse::<f64>().ok());
    // After the name: state (0), ppid (1), …, utime (11), stime (12).
    let (Some(parent), Some(user), Some(system)) = (field(1), field(11), field(12)) else {
        anyhow::bail!("malformed {}", path.display());
    };
    Ok((user + system, parent as u32))
}

fn clock_ticks() -> anyhow::Result<f64> {
    let output = std::process::Command::new("getconf").arg("CLK_TCK").output()?;
    Ok(String::from_utf8_lossy(&output.stdout).trim().parse()?)
}
