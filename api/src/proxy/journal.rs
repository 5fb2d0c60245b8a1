//! The call journal: the record of every forwarded tool call, written to a local file before the call
//! is forwarded and again when it ends, and kept until the batching appender has the record in the
//! event store. A gateway killed with calls in flight or records queued loses nothing: the next start
//! appends whatever the journal holds that the store does not (by the call's id, so nothing twice); a
//! call that never finished is recorded as interrupted.
//!
//! Each line is one record (JSON); the last line of a call wins. Files are segments, named
//! `calls-<instance>-<n>.log`, locked by the process writing them (several instances may share the
//! directory: none recovers a live one's calls). A segment is removed once it is full and every call in
//! it is recorded. Writes are not synced: a killed process loses nothing (the kernel keeps its writes),
//! a machine that loses power may lose the last moments.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use domain::access::{CallOutcome, ToolCalled};
use eventstore::Metadata;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// A segment is closed for new calls past this size.
const SEGMENT_BYTES: u64 = 4 << 20;

/// One line of the journal, as it is read back.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct JournalLine {
    /// The record as it stands.
    pub(crate) call: ToolCalled,
    /// The metadata of its event.
    pub(crate) metadata: Metadata,
}

/// A line as it is written: the record borrowed, not copied (twice per forwarded call).
#[derive(Serialize)]
struct LineRef<'a> {
    call: &'a ToolCalled,
    metadata: &'a Metadata,
}

/// Why the journal could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file operation failed.
    #[error("call journal {path}: {source}")]
    Io {
        /// The file or directory.
        path: String,
        /// What failed.
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io { path: path.display().to_string(), source }
}

/// The journal of this instance.
pub(crate) struct Journal {
    dir: PathBuf,
    instance: Uuid,
    next: AtomicU64,
    current: Mutex<Arc<Segment>>,
}

/// One file of the journal.
pub(crate) struct Segment {
    path: PathBuf,
    file: Mutex<File>,
    bytes: AtomicU64,
    /// Calls written here whose records are not in the store yet.
    outstanding: AtomicUsize,
    /// No new call is written here; removed once nothing is outstanding.
    closed: AtomicBool,
}

/// A call's place in the journal, released once its record is in the store.
pub(crate) struct JournalMark {
    segment: Arc<Segment>,
}

impl Journal {
    /// Opens a journal in `dir` (created if missing), with a fresh segment of its own.
    pub(crate) fn open(dir: &Path) -> Result<Self, JournalError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let instance = Uuid::now_v7();
        let first = Segment::create(dir, instance, 0)?;
        Ok(Self { dir: dir.to_owned(), instance, next: AtomicU64::new(1), current: Mutex::new(Arc::new(first)) })
    }

    /// Writes a call about to be forwarded; its mark is released once the record is in the store.
    pub(crate) fn begin(&self, call: &ToolCalled, metadata: &Metadata) -> Result<JournalMark, JournalError> {
        let bytes = encode(call, metadata);
        let mut current = self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if current.bytes.load(Ordering::Acquire) >= SEGMENT_BYTES || current.closed.load(Ordering::Acquire) {
            let n = self.next.fetch_add(1, Ordering::AcqRel);
            let fresh = Arc::new(Segment::create(&self.dir, self.instance, n)?);
            let full = std::mem::replace(&mut *current, fresh);
            full.close();
        }
        current.write(&bytes)?;
        current.outstanding.fetch_add(1, Ordering::SeqCst);
        Ok(JournalMark { segment: current.clone() })
    }

    /// Closes the current segment: it is removed once every call written to it is recorded (a
    /// gateway stopping gracefully leaves no journal behind); a call that still comes opens another.
    pub(crate) fn close(&self) {
        self.current.lock().unwrap_or_else(std::sync::PoisonError::into_inner).close();
    }
}

impl JournalMark {
    /// Writes how the call ended (best effort: the start line is already there, and the record is queued).
    pub(crate) fn end(&self, call: &ToolCalled, metadata: &Metadata) {
        if let Err(error) = self.segment.write(&encode(call, metadata)) {
            tracing::warn!(%error, "could not write a call's end to the journal");
        }
    }

    /// The record is in the store.
    pub(crate) fn release(self) {
        if self.segment.outstanding.fetch_sub(1, Ordering::AcqRel) == 1 && self.segment.closed.load(Ordering::Acquire) {
            self.segment.remove();
        }
    }
}

impl Segment {
    fn create(dir: &Path, instance: Uuid, n: u64) -> Result<Self, JournalError> {
        // Made under a name recovery does not look at, locked, then named: a recovering instance never
        // takes a segment between its creation and its lock.
        let making = dir.join(format!("making-{instance}-{n:06}"));
        let path = dir.join(format!("calls-{instance}-{n:06}.log"));
        let file = OpenOptions::new().create_new(true).append(true).open(&making).map_err(io(&making))?;
        // Held until this process ends: a recovering instance leaves this file alone.
        file.try_lock().map_err(|e| io(&making)(std::io::Error::other(e.to_string())))?;
        std::fs::rename(&making, &path).map_err(io(&path))?;
        Ok(Self {
            path,
            file: Mutex::new(file),
            bytes: AtomicU64::new(0),
            outstanding: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        })
    }

    fn write(&self, bytes: &[u8]) -> Result<(), JournalError> {
        let mut file = self.file.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        file.write_all(bytes).map_err(io(&self.path))?;
        self.bytes.fetch_add(bytes.len() as u64, Ordering::AcqRel);
        Ok(())
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        if self.outstanding.load(Ordering::SeqCst) == 0 {
            self.remove();
        }
    }

    fn remove(&self) {
        match std::fs::remove_file(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(%error, path = %self.path.display(), "could not remove a journal segment"),
        }
    }
}

fn encode(call: &ToolCalled, metadata: &Metadata) -> Vec<u8> {
    // A record always serializes (its fields are plain data); an empty line is skipped on reading.
    let mut bytes = serde_json::to_vec(&LineRef { call, metadata }).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

/// A segment left by an earlier process, locked by this one while its calls are recovered.
pub(crate) struct Leftover {
    path: PathBuf,
    _file: File,
    /// The last line of each call, in the order calls began.
    pub(crate) lines: Vec<JournalLine>,
}

impl Leftover {
    /// Every segment in `dir` that no running process holds. A call that has no end line was
    /// interrupted: it is recorded so. A line cut short by the kill is skipped.
    pub(crate) fn find(dir: &Path) -> Result<Vec<Leftover>, JournalError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io(dir)(e)),
        };
        let mut found = Vec::new();
        for entry in entries {
            let path = entry.map_err(io(dir))?.path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            if !(name.starts_with("calls-") && name.ends_with(".log")) {
                continue;
            }
            let file = match OpenOptions::new().read(true).write(true).open(&path) {
                Ok(file) => file,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(&path)(e)),
            };
            if file.try_lock().is_err() {
                continue; // a live instance's
            }
            let lines = read_lines(&file, &path)?;
            found.push(Leftover { path, _file: file, lines });
        }
        found.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(found)
    }

    /// Every call is in the store: the segment goes (gone already is as good: its owner removed it after
    /// this one opened it).
    pub(crate) fn remove(self) -> Result<(), JournalError> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(&self.path)(e)),
            _ => Ok(()),
        }
    }
}

fn read_lines(file: &File, path: &Path) -> Result<Vec<JournalLine>, JournalError> {
    let mut order = Vec::new();
    let mut last: HashMap<Uuid, (JournalLine, bool)> = HashMap::new();
    for raw in std::io::BufReader::new(file).split(b'\n') {
        let raw = raw.map_err(io(path))?;
        let Ok(line) = serde_json::from_slice::<JournalLine>(&raw) else { continue };
        let id = line.call.call_id;
        match last.get_mut(&id) {
            Some(entry) => *entry = (line, true),
            None => {
                order.push(id);
                last.insert(id, (line, false));
            }
        }
    }
    Ok(order
        .into_iter()
        .filter_map(|id| last.remove(&id))
        .map(|(mut line, ended)| {
            if !ended {
                line.call.outcome = CallOutcome::Interrupted;
            }
            line
        })
        .collect())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn line(outcome: CallOutcome) -> JournalLine {
        JournalLine {
            call: ToolCalled {
                call_id: Uuid::now_v7(),
                principal_id: Uuid::now_v7(),
                credential_id: Uuid::now_v7(),
                client_id: None,
                server_id: Uuid::now_v7(),
                tool: "echo".into(),
                outcome,
                latency_ms: 0.0,
                upstream_status: None,
                arguments_hash: "hmac-sha256:k:00".into(),
            },
            metadata: Metadata::new(Uuid::now_v7(), eventstore::Actor::system("test"), chrono::DateTime::UNIX_EPOCH),
        }
    }

    #[test]
    fn a_live_segment_is_left_alone_and_an_abandoned_one_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let (ended, running) = (line(CallOutcome::Interrupted), line(CallOutcome::Interrupted));
        let first = journal.begin(&ended.call, &ended.metadata).unwrap();
        let _second = journal.begin(&running.call, &running.metadata).unwrap();
        let mut done = ended.clone();
        done.call.outcome = CallOutcome::Answered;
        first.end(&done.call, &done.metadata);
        assert!(Leftover::find(dir.path()).unwrap().is_empty(), "the writer holds its segment");

        // The process ends without recording (the lock goes with the file)
        let files: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(files.len(), 1);
        drop(journal);
        drop(first);
        drop(_second);
        // A cut line, as a kill mid-write leaves it
        let path = files[0].as_ref().unwrap().path();
        OpenOptions::new().append(true).open(&path).unwrap().write_all(b"{\"call\":{\"call_").unwrap();
        let found = Leftover::find(dir.path()).unwrap();
        assert_eq!(found.len(), 1);
        let outcomes: Vec<_> = found[0].lines.iter().map(|l| (l.call.call_id, l.call.outcome)).collect();
        assert_eq!(
            outcomes,
            vec![(ended.call.call_id, CallOutcome::Answered), (running.call.call_id, CallOutcome::Interrupted)]
        );
        found.into_iter().next().unwrap().remove().unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn a_full_segment_goes_once_its_calls_are_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::open(dir.path()).unwrap();
        let first = line(CallOutcome::Interrupted);
        let mark = journal.begin(&first.call, &first.metadata).unwrap();
        journal.close();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "a call is outstanding");
        mark.release();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let later = line(CallOutcome::Interrupted);
        let late = journal.begin(&later.call, &later.metadata).unwrap();
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "a call after closing opens a segment");
        late.release();
    }
}
