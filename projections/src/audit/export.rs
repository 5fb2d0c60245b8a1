//! Exports that verify offline: JSON lines of entries (each with its own and its predecessor's link),
//! followed by the signed checkpoints that cover them. With only the file and a public key, an auditor
//! checks that the entries chain, that each recomputes to its link, and that the checkpoints' signatures
//! hold and match the entries they signed.

use std::io::BufRead;

use serde::{Deserialize, Serialize};
use sqlx::PgPool;

use super::checkpoint::{AuditKeys, checkpoint_message};
use super::mapping::CHAIN_VERSION;
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
    /// The chain format it signed (files written before the field: 1).
    #[serde(default = "first_chain_version")]
    pub chain_version: i32,
}

fn first_chain_version() -> i32 {
    1
}

/// seq, entry hash, previous signature, key id, signature.
pub(crate) type StoredCheckpoint = (i64, Vec<u8>, Vec<u8>, String, Vec<u8>);

/// The checkpoints that sign entries `first..=last` in the current chain format, in order.
pub async fn checkpoints_between(
    pool: &PgPool,
    first: i64,
    last: i64,
) -> Result<Vec<ExportedCheckpoint>, ProjectionError> {
    let rows: Vec<StoredCheckpoint> = sqlx::query_as(
        "SELECT seq, entry_hash, prev_signature, key_id, signature FROM audit_sig.checkpoints
          WHERE seq BETWEEN $1 AND $2 AND chain_version = $3 ORDER BY id",
    )
    .bind(first)
    .bind(last)
    .bind(CHAIN_VERSION)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(exported).collect())
}

/// A stored checkpoint as an export carries it.
pub(crate) fn exported((seq, entry_hash, prev_signature, key_id, signature): StoredCheckpoint) -> ExportedCheckpoint {
    ExportedCheckpoint {
        seq,
        entry_hash: hex::encode(entry_hash),
        prev_signature: hex::encode(prev_signature),
        key_id,
        signature: hex::encode(signature),
        chain_version: CHAIN_VERSION,
    }
}

/// The last line of a JSON-lines export: the range it holds, signed when it was written, so that a
/// file cut short, or with its head or tail replaced, does not verify.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExportTrailer {
    /// The first entry's number.
    pub first_seq: i64,
    /// The last entry's number.
    pub last_seq: i64,
    /// Entries in the file.
    pub count: u64,
    /// The link before the first entry, hex.
    pub first_prev_hash: String,
    /// The last entry's link, hex.
    pub last_entry_hash: String,
    /// The key that signed.
    pub key_id: String,
    /// The signature, hex.
    pub signature: String,
    /// The public keys of the gateway that wrote the export (`key id`, base64), so that a reader without
    /// them at hand can check the signatures; whoever distrusts the file compares them with the
    /// gateway's published keys (`GET /api/v1/audit/keys`). Not signed: they vouch for nothing alone.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub public_keys: Vec<(String, String)>,
}

/// What a trailer signs.
pub(crate) fn trailer_message(first: i64, last: i64, count: u64, first_prev: &str, last_hash: &str) -> Vec<u8> {
    format!("mcp-gateway audit export v1\n{first}\n{last}\n{count}\n{first_prev}\n{last_hash}").into_bytes()
}

impl ExportTrailer {
    /// A signed trailer for the range, or `None` without a signing key.
    pub fn sign(keys: &AuditKeys, first: (i64, &str), last: (i64, &str), count: u64) -> Option<Self> {
        let message = trailer_message(first.0, last.0, count, first.1, last.1);
        let (key_id, signature) = keys.sign(&message)?;
        Some(Self {
            first_seq: first.0,
            last_seq: last.0,
            count,
            first_prev_hash: first.1.to_owned(),
            last_entry_hash: last.1.to_owned(),
            key_id,
            signature: hex::encode(signature),
            public_keys: keys.public_keys(),
        })
    }

    /// The trailer of the JSON-lines export in `input`, if its last line is one.
    pub fn of_export(input: impl BufRead) -> Option<Self> {
        let last = input.lines().map_while(Result::ok).filter(|l| !l.trim().is_empty()).last()?;
        match serde_json::from_str(&last).ok()? {
            ExportLine::Trailer { trailer } => Some(trailer),
            _ => None,
        }
    }
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
    /// The signed trailer.
    Trailer {
        /// It.
        trailer: ExportTrailer,
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
    /// True when a signed trailer vouches for the whole range (no truncation, no replaced head or tail).
    pub trailer: bool,
    /// The first problem: the line number (1-based) and what is wrong.
    pub problem: Option<(usize, String)>,
}

/// Verifies an export read from `input` with `keys` (public keys suffice): entries chain from the first
/// to the last (from the genesis link when the file starts at entry 1), each recomputes to its link;
/// checkpoints follow the entries they sign, chain to each other and carry valid signatures; the trailer
/// signs the exact range. Anything out of place is named by line.
pub fn verify_export(input: impl BufRead, keys: &AuditKeys) -> Result<ExportReport, std::io::Error> {
    let mut report = ExportReport { entries: 0, checkpoints: 0, trailer: false, problem: None };
    let mut links: std::collections::HashMap<i64, String> = std::collections::HashMap::new();
    // The first entry (its number, the link before it) and the last one seen (its number, its link).
    let mut first: Option<(i64, String)> = None;
    let mut previous: Option<(i64, String)> = None;
    let mut previous_checkpoint: Option<String> = None;
    let mut entries_done = false;
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        let number = index + 1;
        let problem = |report: &mut ExportReport, why: String| {
            report.problem = Some((number, why));
        };
        if report.trailer {
            problem(&mut report, "lines after the trailer".into());
            return Ok(report);
        }
        let parsed: ExportLine = match serde_json::from_str(&line) {
            Ok(parsed) => parsed,
            Err(e) => {
                problem(&mut report, format!("not an export line: {e}"));
                return Ok(report);
            }
        };
        match parsed {
            ExportLine::Entry(record) => {
                if entries_done {
                    problem(&mut report, format!("entry {} after the checkpoints", record.seq));
                    return Ok(report);
                }
                match &previous {
                    Some((seq, link)) => {
                        if record.seq != seq + 1 {
                            problem(
                                &mut report,
                                format!("entry {} follows entry {seq}: entries missing or reordered", record.seq),
                            );
                            return Ok(report);
                        }
                        if &record.prev_hash != link {
                            problem(&mut report, format!("entry {} does not link to entry {seq}", record.seq));
                            return Ok(report);
                        }
                    }
                    None => {
                        if record.seq == 1 && record.prev_hash != hex::encode(super::GENESIS) {
                            problem(&mut report, "entry 1 does not start from the genesis link".into());
                            return Ok(report);
                        }
                        first = Some((record.seq, record.prev_hash.clone()));
                    }
                }
                let recomputed = (|| {
                    let previous = <[u8; 32]>::try_from(hex::decode(&record.prev_hash).ok()?.as_slice()).ok()?;
                    Some(hex::encode(record.entry()?.chain_hash(&previous)))
                })();
                if recomputed.as_deref() != Some(record.entry_hash.as_str()) {
                    problem(&mut report, format!("entry {} was modified", record.seq));
                    return Ok(report);
                }
                links.insert(record.seq, record.entry_hash.clone());
                previous = Some((record.seq, record.entry_hash.clone()));
                report.entries += 1;
            }
            ExportLine::Checkpoint { checkpoint } => {
                entries_done = true;
                if links.get(&checkpoint.seq) != Some(&checkpoint.entry_hash) {
                    problem(
                        &mut report,
                        format!("the checkpoint of entry {} signs an entry this file does not hold", checkpoint.seq),
                    );
                    return Ok(report);
                }
                if previous_checkpoint.as_ref().is_some_and(|p| *p != checkpoint.prev_signature) {
                    problem(
                        &mut report,
                        format!(
                            "the checkpoint of entry {} does not follow the one before: one was removed",
                            checkpoint.seq
                        ),
                    );
                    return Ok(report);
                }
                let signed = (|| {
                    let message = checkpoint_message(
                        checkpoint.chain_version,
                        checkpoint.seq,
                        &hex::decode(&checkpoint.entry_hash).ok()?,
                        &hex::decode(&checkpoint.prev_signature).ok()?,
                    );
                    Some(keys.verify(&checkpoint.key_id, &message, &hex::decode(&checkpoint.signature).ok()?))
                })();
                if signed != Some(true) {
                    problem(&mut report, format!("the checkpoint of entry {} is not validly signed", checkpoint.seq));
                    return Ok(report);
                }
                previous_checkpoint = Some(checkpoint.signature.clone());
                report.checkpoints += 1;
            }
            ExportLine::Trailer { trailer } => {
                let (Some((first_seq, first_prev)), Some((last_seq, last_hash))) = (&first, &previous) else {
                    problem(&mut report, "a trailer without entries".into());
                    return Ok(report);
                };
                let matches = trailer.first_seq == *first_seq
                    && trailer.last_seq == *last_seq
                    && trailer.count == report.entries
                    && trailer.first_prev_hash == *first_prev
                    && trailer.last_entry_hash == *last_hash;
                let message = trailer_message(
                    trailer.first_seq,
                    trailer.last_seq,
                    trailer.count,
                    &trailer.first_prev_hash,
                    &trailer.last_entry_hash,
                );
                let signed =
                    hex::decode(&trailer.signature).is_ok_and(|sig| keys.verify(&trailer.key_id, &message, &sig));
                if !matches || !signed {
                    problem(
                        &mut report,
                        "the trailer does not vouch for these entries (cut short, or head or tail replaced)".into(),
                    );
                    return Ok(report);
                }
                report.trailer = true;
            }
        }
    }
    Ok(report)
}
