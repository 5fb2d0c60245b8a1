//! Exports that verify offline: JSON lines of entries (each with its own and its predecessor's link),
//! followed by the signed checkpoints that cover them. With only the file and a public key, an auditor
//! checks that the entries chain, that each recomputes to its link, and that the checkpoints' signatures
//! hold and match the entries they signed.

use std::io::BufRead;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::checkpoint::{AuditKeys, checkpoint_message};
use super::query::AuditRecord;
use crate::ProjectionError;

/// A signed checkpoint as exported.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportedCheckpoint {
    /// The entry signed.
    pub seq: i64,
    /// Its link, hex.
    pub entry_hash: String,
    /// The previous checkpoint's signature, hex.
    pub prev_signature: String,
    /// The key that signed.
    pub key_id: String,
    /// The signature, hex.
    pub signature: String,
}

/// seq, entry hash, previous signature, key id, signature.
type StoredCheckpoint = (i64, Vec<u8>, Vec<u8>, String, Vec<u8>);

/// The checkpoints that sign entries `first..=last`, in order.
pub async fn checkpoints_between(
    pool: &PgPool,
    first: i64,
    last: i64,
) -> Result<Vec<ExportedCheckpoint>, ProjectionError> {
    let rows: Vec<StoredCheckpoint> = sqlx::query_as(
        "SELECT seq, entry_hash, prev_signature, key_id, signature FROM audit_sig.checkpoints
          WHERE seq BETWEEN $1 AND $2 ORDER BY id",
    )
    .bind(first)
    .bind(last)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(seq, entry_hash, prev_signature, key_id, signature)| ExportedCheckpoint {
            seq,
            entry_hash: hex::encode(entry_hash),
            prev_signature: hex::encode(prev_signature),
            key_id,
            signature: hex::encode(signature),
        })
        .collect())
}

/// One line of an export.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ExportLine {
    /// A signed checkpoint.
    Checkpoint {
        /// It.
        checkpoint: ExportedCheckpoint,
    },
    /// An entry.
    Entry(Box<AuditRecord>),
}

/// What an offline verification found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportReport {
    /// Entries checked.
    pub entries: u64,
    /// Checkpoints whose signature held and whose entry matched.
    pub checkpoints: u64,
    /// Entries after the last checkpoint of the file: chained, but not signed yet.
    pub unsigned_tail: u64,
    /// The first problem: the line number (1-based) and what is wrong.
    pub problem: Option<(usize, String)>,
}

/// Verifies an export read from `input` with `keys` (public keys suffice).
pub fn verify_export(input: impl BufRead, keys: &AuditKeys) -> Result<ExportReport, std::io::Error> {
    let mut report = ExportReport { entries: 0, checkpoints: 0, unsigned_tail: 0, problem: None };
    let mut links: std::collections::HashMap<i64, String> = std::collections::HashMap::new();
    let mut previous: Option<(i64, String)> = None;
    let mut last_signed = i64::MIN;
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        let number = index + 1;
        let fail = |report: &mut ExportReport, why: String| report.problem = Some((number, why));
        let parsed: ExportLine = match serde_json::from_str(&line) {
            Ok(parsed) => parsed,
            Err(e) => {
                fail(&mut report, format!("not an export line: {e}"));
                return Ok(report);
            }
        };
        match parsed {
            ExportLine::Entry(record) => {
                if let Some((seq, link)) = &previous {
                    if record.seq != seq + 1 {
                        fail(
                            &mut report,
                            format!("entry {} follows entry {seq}: entries missing or reordered", record.seq),
                        );
                        return Ok(report);
                    }
                    if &record.prev_hash != link {
                        fail(&mut report, format!("entry {} does not link to entry {seq}", record.seq));
                        return Ok(report);
                    }
                }
                let recomputed = (|| {
                    let previous = <[u8; 32]>::try_from(hex::decode(&record.prev_hash).ok()?.as_slice()).ok()?;
                    Some(hex::encode(record.entry()?.chain_hash(&previous)))
                })();
                if recomputed.as_deref() != Some(record.entry_hash.as_str()) {
                    fail(&mut report, format!("entry {} was modified", record.seq));
                    return Ok(report);
                }
                links.insert(record.seq, record.entry_hash.clone());
                previous = Some((record.seq, record.entry_hash.clone()));
                report.entries += 1;
            }
            ExportLine::Checkpoint { checkpoint } => {
                let signed = (|| {
                    let message = checkpoint_message(
                        checkpoint.seq,
                        &hex::decode(&checkpoint.entry_hash).ok()?,
                        &hex::decode(&checkpoint.prev_signature).ok()?,
                    );
                    Some(keys.verify(&checkpoint.key_id, &message, &hex::decode(&checkpoint.signature).ok()?))
                })();
                if signed != Some(true) {
                    fail(&mut report, format!("the checkpoint of entry {} is not validly signed", checkpoint.seq));
                    return Ok(report);
                }
                if links.get(&checkpoint.seq).is_some_and(|link| *link != checkpoint.entry_hash) {
                    fail(&mut report, format!("entry {} differs from what its checkpoint signed", checkpoint.seq));
                    return Ok(report);
                }
                last_signed = last_signed.max(checkpoint.seq);
                report.checkpoints += 1;
            }
        }
    }
    report.unsigned_tail = links.keys().filter(|seq| **seq > last_signed).count() as u64;
    Ok(report)
}
