//! `mcp-gateway audit prune`: archive the audit entries older than the retention to a signed export file,
//! check the file, then delete them from the hot table (`projections::audit::prune`).
//!
//! The file is written and flushed to disk, read back and verified (every entry, its chain from the link
//! before it, the signatures) before a single row is deleted; the prune records the file's SHA-256. A
//! failure at any step leaves the table as it was.

use std::io::{BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use projections::audit::{AuditFilter, AuditKeys};
use sha2::{Digest, Sha256};

/// What a prune did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PruneOutcome {
    /// Nothing older than the cut-off (the newest entry always stays).
    Nothing,
    /// Entries `first..=last` archived to the file, then deleted.
    Pruned {
        /// First entry number.
        first: i64,
        /// Last entry number.
        last: i64,
        /// The archive's SHA-256, hex.
        sha256: String,
    },
}

/// Why a prune did not happen. The table is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum PruneError {
    /// The archive file exists already: never overwrite an archive.
    #[error("{0} exists: choose a new archive file")]
    ArchiveExists(PathBuf),
    /// Writing or reading back the archive failed.
    #[error("the archive {path} could not be written")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The archive read back does not verify, or holds other entries than those to delete.
    #[error("the archive does not verify: {0}")]
    Unverified(String),
    /// The audit trail could not be read or changed.
    #[error(transparent)]
    Trail(#[from] projections::ProjectionError),
}

/// Archives the entries of events before `before` to `archive` (a new file), verifies it with `keys`, then
/// deletes them from the hot table.
pub async fn prune_to_archive(
    trail: &projections::audit::AuditSource,
    keys: Arc<AuditKeys>,
    before: DateTime<Utc>,
    archive: &Path,
) -> Result<PruneOutcome, PruneError> {
    // Refused up front, even when there is nothing to prune: a name given twice is a mistake either way.
    if archive.exists() {
        return Err(PruneError::ArchiveExists(archive.to_owned()));
    }
    let Some((first, last)) = trail.prunable(before).await? else {
        return Ok(PruneOutcome::Nothing);
    };
    let io = |source| PruneError::Io { path: archive.to_owned(), source };
    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).open(archive).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            PruneError::ArchiveExists(archive.to_owned())
        } else {
            io(e)
        }
    })?;
    let filter = AuditFilter { after: Some(first - 1), through: Some(last), limit: 500, ..Default::default() };
    let mut lines = std::pin::pin!(crate::audit_export::export_lines(trail.clone(), keys.clone(), filter, false, true));
    let mut digest = Sha256::new();
    while let Some(chunk) = lines.next().await {
        let chunk = chunk.map_err(io)?;
        digest.update(chunk.as_bytes());
        file.write_all(chunk.as_bytes()).map_err(io)?;
    }
    file.sync_all().map_err(io)?;
    drop(file);

    let reader = BufReader::new(std::fs::File::open(archive).map_err(io)?);
    let report = projections::audit::verify_export(reader, &keys).map_err(io)?;
    let expected = u64::try_from(last - first + 1).unwrap_or(0);
    if let Some((line, why)) = report.problem {
        return Err(PruneError::Unverified(format!("line {line}: {why}")));
    }
    if report.entries != expected {
        return Err(PruneError::Unverified(format!("{} entries, expected {expected}", report.entries)));
    }
    let sha256: [u8; 32] = digest.finalize().into();
    trail.prune(first, last, sha256).await?;
    Ok(PruneOutcome::Pruned { first, last, sha256: hex::encode(sha256) })
}
