//! Answers read from upstream servers: SSE relayed chunk by chunk as it arrives, JSON read whole (it is
//! small, and read whole it can be replaced by a clean error when the upstream breaks off).

use axum::body::Bytes;
use futures_util::Stream;
use serde_json::{Value, json};

use domain::access::CallOutcome;

use super::recorder::PendingCall;
use super::tool_filter::{Visible, filter_sse};
use super::{STREAM_IDLE_TIMEOUT, UpstreamError, describe};

/// The next chunk, or why there is none; a silence past the idle timeout ends it when `idle` is set.
async fn next_chunk(answer: &mut reqwest::Response, idle: bool) -> Result<Option<Bytes>, String> {
    let chunk = if idle {
        tokio::time::timeout(STREAM_IDLE_TIMEOUT, answer.chunk())
            .await
            .map_err(|_| format!("the upstream server was silent for {} s", STREAM_IDLE_TIMEOUT.as_secs()))?
    } else {
        answer.chunk().await
    };
    chunk.map_err(|e| describe(&e).to_owned())
}

/// Where an SSE relay is.
pub(crate) struct Relaying {
    answer: reqwest::Response,
    /// With tool rules that hide something: the bytes of an event not yet complete.
    pending: Vec<u8>,
    filter: Option<Visible>,
    error_id: Value,
    /// The last byte passed on ended an event.
    at_boundary: bool,
    /// The tool calls answered on this stream, recorded when it ends (dropped with it unfinished: the
    /// client went away, and the record says so).
    calls: Vec<PendingCall>,
    /// With calls to record: the bytes of an event not yet complete, read for how the calls ended.
    scan: Vec<u8>,
    /// How far `scan` is known to hold no event boundary (so a large event is not searched again and
    /// again as its chunks arrive).
    scanned: usize,
    /// An event was too large to read: its outcome is unknown.
    unreadable: bool,
    /// How the answers read so far ended (the worst of them).
    outcome: Option<CallOutcome>,
}

impl Relaying {
    /// A relay of `answer`, filtered by `filter`, ending with an error for `error_id` if broken off,
    /// recording `calls` when it ends.
    pub(crate) fn new(
        answer: reqwest::Response,
        filter: Option<Visible>,
        error_id: Value,
        calls: Vec<PendingCall>,
    ) -> Self {
        Self {
            answer,
            pending: Vec::new(),
            filter,
            error_id,
            at_boundary: true,
            calls,
            scan: Vec::new(),
            scanned: 0,
            unreadable: false,
            outcome: None,
        }
    }

    /// Reads the answers in `chunk` for how the calls ended (an error, a tool's `isError`), so that the
    /// record says what the client was told.
    fn observe(&mut self, chunk: &[u8]) {
        if self.calls.is_empty() {
            return;
        }
        self.scan.extend_from_slice(chunk);
        loop {
            // A boundary may straddle the previous chunk's end: look again from a few bytes before it.
            let from = self.scanned.saturating_sub(3);
            let Some(end) = event_end(&self.scan[from..]).map(|end| from + end) else {
                self.scanned = self.scan.len();
                break;
            };
            self.scanned = 0;
            let event: Vec<u8> = self.scan.drain(..end).collect();
            let text = String::from_utf8_lossy(&event);
            let data: Vec<&str> = text
                .lines()
                .filter_map(|line| line.strip_prefix("data:"))
                .map(|d| d.strip_prefix(' ').unwrap_or(d))
                .collect();
            if let Ok(message) = serde_json::from_str::<Value>(&data.join("\n")) {
                self.outcome = Some(worst(self.outcome, answer_outcome(&message)));
            }
        }
        // An event larger than any answer the gateway relays whole: not read for its outcome.
        if self.scan.len() > MAX_SCANNED_EVENT_BYTES {
            self.scan.clear();
            self.scanned = 0;
            self.unreadable = true;
        }
    }

    /// Records the calls as the stream left them at its end: as their answers ended, or broken off when
    /// none was read (unless an answer was too large to read).
    fn end(&mut self) {
        let unanswered = if self.unreadable { CallOutcome::Answered } else { CallOutcome::Broken };
        self.finish(self.outcome.unwrap_or(unanswered));
    }

    fn finish(&mut self, outcome: CallOutcome) {
        for call in self.calls.drain(..) {
            call.finish(outcome, None);
        }
    }
}

/// The end of the last complete event in `pending` (just past its blank line).
fn last_boundary(pending: &[u8]) -> Option<usize> {
    pending.windows(2).rposition(|w| w == b"\n\n").map(|i| i + 2)
}

/// The largest event read for the outcome of the calls it answers.
const MAX_SCANNED_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// Where the first complete event of `bytes` ends (after its blank line, LF or CRLF).
fn event_end(bytes: &[u8]) -> Option<usize> {
    let lf = bytes.windows(2).position(|w| w == b"\n\n").map(|i| i + 2);
    let crlf = bytes.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4);
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How a JSON-RPC answer (one message or a batch) to tool calls ended: the worst of its messages.
pub(crate) fn answer_outcome(answer: &Value) -> CallOutcome {
    match answer {
        Value::Array(messages) => {
            messages.iter().map(answer_outcome).fold(CallOutcome::Answered, |a, b| worst(Some(a), b))
        }
        message if message.get("error").is_some() => CallOutcome::Error,
        message if message["result"]["isError"] == Value::Bool(true) => CallOutcome::ToolError,
        _ => CallOutcome::Answered,
    }
}

/// The worse of two outcomes of answers: an error over a tool's error over an answer.
fn worst(seen: Option<CallOutcome>, next: CallOutcome) -> CallOutcome {
    let rank = |o: CallOutcome| match o {
        CallOutcome::Error => 2,
        CallOutcome::ToolError => 1,
        _ => 0,
    };
    match seen {
        Some(seen) if rank(seen) >= rank(next) => seen,
        _ => next,
    }
}

/// What an SSE relay carries, which decides how it ends.
pub(crate) enum StreamKind {
    /// The answer to a request (a POST): a silence of [`STREAM_IDLE_TIMEOUT`] ends it, and it runs to its
    /// end when the instance stops (a request in flight).
    Answer,
    /// A session's GET stream, which answers no request: no silence ends it, and it ends between two
    /// events when the instance stops (`AppState::stopping`), so that its client resumes at another
    /// instance with `Last-Event-ID` instead of holding this one's exit.
    Standing(tokio::sync::watch::Receiver<bool>),
}

/// Complete events, each filtered.
fn filtered(events: &[u8], rules: &Visible) -> Bytes {
    Bytes::from(filter_sse(events, rules))
}

/// An SSE answer as a body stream, passed on as it arrives. With tool rules that hide something, every
/// event is filtered (a `tools/list` result can come on any stream: a POST's, a GET's, a resumed one's),
/// so events are passed on whole. When the upstream breaks off an answer to a request (`error_id`), the
/// client gets a last event with a JSON-RPC error for that request, so that it does not wait forever; on
/// a GET stream the connection just ends, and the client reconnects with `Last-Event-ID`. How silence and
/// the instance's stop end it follows its [`StreamKind`].
pub(crate) fn relayed(start: Relaying, kind: StreamKind) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let (idle, stopping) = match kind {
        StreamKind::Answer => (true, None),
        StreamKind::Standing(stopping) => (false, Some(stopping)),
    };
    futures_util::stream::unfold(Some((start, stopping)), move |state| async move {
        let (mut relay, mut stopping) = state?;
        loop {
            let between_events = if relay.filter.is_some() { relay.pending.is_empty() } else { relay.at_boundary };
            let next = match stopping.as_mut().filter(|_| between_events) {
                Some(stopping) => tokio::select! {
                    next = next_chunk(&mut relay.answer, idle) => next,
                    () = stopped(stopping) => {
                        relay.end();
                        return None;
                    }
                },
                None => next_chunk(&mut relay.answer, idle).await,
            };
            match next {
                Ok(Some(chunk)) => {
                    relay.observe(&chunk);
                    let Some(rules) = &relay.filter else {
                        relay.at_boundary = chunk.ends_with(b"\n\n") || chunk.ends_with(b"\r\n\r\n");
                        return Some((Ok(chunk), Some((relay, stopping))));
                    };
                    relay.pending.extend_from_slice(&chunk);
                    if relay.pending.contains(&b'\r') {
                        // CRLF line ends, as the lines of a complete event are read below.
                        relay.pending = String::from_utf8_lossy(&relay.pending).replace("\r\n", "\n").into_bytes();
                    }
                    let Some(end) = last_boundary(&relay.pending) else { continue };
                    let complete: Vec<u8> = relay.pending.drain(..end).collect();
                    let out = filtered(&complete, rules);
                    return Some((Ok(out), Some((relay, stopping))));
                }
                Ok(None) => {
                    relay.end();
                    let rest = std::mem::take(&mut relay.pending);
                    let rules = relay.filter.as_ref()?;
                    return (!rest.is_empty()).then(|| (Ok(filtered(&rest, rules)), None));
                }
                Err(why) if !relay.error_id.is_null() => {
                    relay.finish(CallOutcome::Broken);
                    tracing::warn!(why, "an upstream server broke off an SSE answer");
                    let error = json!({ "jsonrpc": "2.0", "id": relay.error_id,
                        "error": { "code": -32603, "message": format!("the upstream server broke off its answer: {why}") } });
                    // A partial event passed on is ended first, so that the error is an event of its own.
                    let lead = if relay.at_boundary { "" } else { "\n\n" };
                    return Some((Ok(Bytes::from(format!("{lead}event: message\ndata: {error}\n\n"))), None));
                }
                Err(why) => {
                    relay.finish(CallOutcome::Broken);
                    tracing::info!(why, "an upstream SSE stream ended");
                    return Some((Err(std::io::Error::other(why)), None));
                }
            }
        }
    })
}

/// Resolves once the instance stops; never when nothing will tell it to (the sender gone).
pub(crate) async fn stopped(stopping: &mut tokio::sync::watch::Receiver<bool>) {
    if stopping.wait_for(|stop| *stop).await.is_err() {
        std::future::pending::<()>().await;
    }
}

/// The whole answer, at most `max` bytes.
pub(crate) async fn read_whole(mut answer: reqwest::Response, max: usize) -> Result<Bytes, UpstreamError> {
    if answer.content_length().is_some_and(|n| n > max as u64) {
        return Err(UpstreamError::Unreachable(format!("the answer is larger than {max} bytes")));
    }
    let mut whole = Vec::new();
    while let Some(chunk) = next_chunk(&mut answer, true).await.map_err(UpstreamError::Unreachable)? {
        whole.extend_from_slice(&chunk);
        if whole.len() > max {
            return Err(UpstreamError::Unreachable(format!("the answer is larger than {max} bytes")));
        }
    }
    Ok(Bytes::from(whole))
}
