//! Upstream servers that speak the older HTTP+SSE transport (MCP 2024-11-05), served to clients as
//! streamable HTTP. The upstream's session is a GET event stream whose first event names the URL that
//! takes the client's messages (`endpoint`); answers come back on the stream. So a gateway session with
//! such a server is a stream this instance holds open: requests are posted to the message URL and wait
//! for their answers on the stream (matched by JSON-RPC id); whatever else the server sends (its own
//! requests and notifications) goes to the client's GET stream. The client's session id names the
//! stream (sealed, like any upstream session); another instance does not hold it and answers 404, so
//! the client starts again there (sessions with such servers are sticky to an instance).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use serde_json::Value;
use tokio::sync::{broadcast, oneshot};
use uuid::Uuid;

use super::{Forward, Proxy, STREAM_IDLE_TIMEOUT, UpstreamError};
use crate::state::AppState;

/// The prefix of a session id that names one of this instance's upstream streams.
pub(crate) const SESSION_PREFIX: &str = "sse:";
/// A session unused this long is closed (its stream to the server with it).
const IDLE: Duration = Duration::from_secs(600);
/// Streams one principal may hold open on this instance.
const SESSIONS_PER_PRINCIPAL: usize = 32;
/// How long the server may take to name its message endpoint.
const ENDPOINT_WITHIN: Duration = Duration::from_secs(10);
/// Server messages kept for a GET stream that reads slowly.
const SERVER_MESSAGES: usize = 256;
/// The largest event read from the server.
const MAX_EVENT: usize = 16 * 1024 * 1024;

/// This instance's sessions with HTTP+SSE servers.
#[derive(Default)]
pub(crate) struct SseSessions {
    open: Mutex<HashMap<String, Arc<SseSession>>>,
    /// When idle sessions were last looked for (at most once a second).
    swept: Mutex<Option<Instant>>,
}

/// One open stream to a server.
pub(crate) struct SseSession {
    server: Uuid,
    principal: Uuid,
    /// Where messages are posted.
    endpoint: projections::authz::Upstream,
    pending: Mutex<HashMap<String, oneshot::Sender<Value>>>,
    server_messages: broadcast::Sender<Value>,
    last_used: Mutex<Instant>,
    reader: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for SseSession {
    fn drop(&mut self) {
        if let Some(reader) = self.reader.lock().ok().and_then(|mut r| r.take()) {
            reader.abort();
        }
    }
}

/// The key a JSON-RPC id is matched by (its JSON text: `1` and `"1"` differ).
fn id_key(id: &Value) -> String {
    id.to_string()
}

impl SseSessions {
    /// Opens a stream to server `server` at `upstream` on behalf of `principal`; the session's key.
    pub(crate) async fn open(
        &self,
        proxy: &Proxy,
        state: &AppState,
        server: Uuid,
        principal: Uuid,
        upstream: &projections::authz::Upstream,
    ) -> Result<(String, Arc<SseSession>), UpstreamError> {
        self.sweep();
        let held = self.open.lock().map(|open| open.values().filter(|s| s.principal == principal).count()).unwrap_or(0);
        if held >= SESSIONS_PER_PRINCIPAL {
            return Err(UpstreamError::Unreachable(format!(
                "you hold {SESSIONS_PER_PRINCIPAL} sessions with HTTP+SSE servers on this instance; end one first"
            )));
        }
        let mut headers = HeaderMap::new();
        headers.insert(header::ACCEPT, HeaderValue::from_static("text/event-stream"));
        let forward = Forward {
            server,
            upstream,
            method: Method::GET,
            headers: &headers,
            session: None,
            principal: Some(principal),
            body: None,
        };
        let mut answer = proxy.send(state, forward).await?;
        if !answer.status().is_success() || !super::is_event_stream(answer.headers()) {
            return Err(UpstreamError::Unreachable(format!(
                "the server answered its SSE stream with {} (not an event stream)",
                answer.status()
            )));
        }
        let mut events = EventReader::default();
        let endpoint = tokio::time::timeout(ENDPOINT_WITHIN, async {
            loop {
                if let Some((kind, data)) = events.next_event() {
                    if kind == "endpoint" {
                        return Ok(data);
                    }
                    continue;
                }
                match answer.chunk().await {
                    Ok(Some(chunk)) => events.push(&chunk)?,
                    Ok(None) => return Err(UpstreamError::Unreachable("the server's stream ended".into())),
                    Err(e) => return Err(UpstreamError::Unreachable(super::describe(&e).to_owned())),
                }
            }
        })
        .await
        .map_err(|_| UpstreamError::Unreachable("the server named no message endpoint".into()))??;
        let endpoint = message_endpoint(upstream, &endpoint)?;
        let (server_messages, _) = broadcast::channel(SERVER_MESSAGES);
        let session = Arc::new(SseSession {
            server,
            principal,
            endpoint,
            pending: Mutex::default(),
            server_messages,
            last_used: Mutex::new(Instant::now()),
            reader: Mutex::new(None),
        });
        let reader = tokio::spawn(read_stream(answer, events, Arc::downgrade(&session)));
        if let Ok(mut slot) = session.reader.lock() {
            *slot = Some(reader);
        }
        let key = format!("{SESSION_PREFIX}{}", Uuid::new_v4().simple());
        if let Ok(mut open) = self.open.lock() {
            open.insert(key.clone(), session.clone());
        }
        Ok((key, session))
    }

    /// The session `key`, if this instance holds it (open) for `server` and `principal`.
    pub(crate) fn get(&self, key: &str, server: Uuid, principal: Uuid) -> Option<Arc<SseSession>> {
        self.sweep();
        let open = self.open.lock().ok()?;
        let session = open.get(key)?.clone();
        if let Ok(mut used) = session.last_used.lock() {
            *used = Instant::now();
        }
        let alive = session.reader.lock().ok()?.as_ref().is_some_and(|r| !r.is_finished());
        (alive && session.server == server && session.principal == principal).then_some(session)
    }

    /// Ends session `key` (its stream to the server closes).
    pub(crate) fn close(&self, key: &str) -> bool {
        self.open.lock().ok().and_then(|mut open| open.remove(key)).is_some()
    }

    /// Closes sessions unused for [`IDLE`] and those whose server ended the stream (at most once a second).
    fn sweep(&self) {
        if let Ok(mut swept) = self.swept.lock() {
            if swept.is_some_and(|at| at.elapsed() < Duration::from_secs(1)) {
                return;
            }
            *swept = Some(Instant::now());
        }
        if let Ok(mut open) = self.open.lock() {
            open.retain(|_, s| {
                let used = s.last_used.lock().map(|t| t.elapsed() < IDLE).unwrap_or(false);
                let alive = s.reader.lock().ok().and_then(|r| r.as_ref().map(|r| !r.is_finished())).unwrap_or(false);
                used && alive
            });
        }
    }
}

/// The server's message URL, resolved against its stream's URL; on the same origin (a server may not
/// send the gateway's requests elsewhere), and checked as any upstream URL.
fn message_endpoint(
    upstream: &projections::authz::Upstream,
    named: &str,
) -> Result<projections::authz::Upstream, UpstreamError> {
    let base = url::Url::parse(upstream.endpoint.as_str())
        .map_err(|_| UpstreamError::Unreachable("the server's URL does not parse".into()))?;
    let joined = base
        .join(named.trim())
        .map_err(|_| UpstreamError::Unreachable("the server's message endpoint is not a URL".into()))?;
    if joined.origin() != base.origin() {
        return Err(UpstreamError::Unreachable("the server named a message endpoint on another origin".into()));
    }
    let endpoint = domain::server::Endpoint::parse(
        joined.as_str(),
        &domain::server::NetworkPolicy::allowing(&[joined.host_str().unwrap_or_default().to_owned()]),
    )
    .map_err(|e| UpstreamError::Unreachable(format!("the server's message endpoint: {e}")))?;
    Ok(projections::authz::Upstream { endpoint, ..upstream.clone() })
}

impl SseSession {
    /// Posts `body` (the client's messages) to the server and waits for the answers to `requests` (their
    /// ids), in that order.
    pub(crate) async fn exchange(
        &self,
        proxy: &Proxy,
        state: &AppState,
        headers: &HeaderMap,
        body: Bytes,
        requests: &[Value],
    ) -> Result<Vec<Value>, UpstreamError> {
        if let Ok(mut used) = self.last_used.lock() {
            *used = Instant::now();
        }
        let mut waiting = Vec::with_capacity(requests.len());
        let keys: Vec<String> = requests.iter().map(id_key).collect();
        {
            let Ok(mut pending) = self.pending.lock() else {
                return Err(UpstreamError::Unreachable("the session is unusable".into()));
            };
            // An id already waiting would take the other request's answer.
            if keys.iter().any(|key| pending.contains_key(key)) {
                return Err(UpstreamError::Unreachable("a request with this id is already waiting".into()));
            }
            for key in &keys {
                let (sender, receiver) = oneshot::channel();
                pending.insert(key.clone(), sender);
                waiting.push(receiver);
            }
        }
        // Whatever happens (an error, a timeout, the client gone), the ids stop waiting.
        let _unregister = Unregister { session: self, keys };
        let forward = Forward {
            server: self.server,
            upstream: &self.endpoint,
            method: Method::POST,
            headers,
            session: None,
            principal: Some(self.principal),
            body: Some(body),
        };
        let answer = proxy.send(state, forward).await?;
        let status = answer.status();
        if matches!(status.as_u16(), 401 | 403) {
            return Err(UpstreamError::Credentials(format!("the upstream server answered {status}")));
        }
        if !status.is_success() {
            return Err(UpstreamError::Unreachable(format!("the upstream server answered {status}")));
        }
        let mut answers = Vec::with_capacity(waiting.len());
        for receiver in waiting {
            // A tool call may run long: the answer may take as long as an SSE answer may stay silent.
            let answer = tokio::time::timeout(STREAM_IDLE_TIMEOUT, receiver)
                .await
                .map_err(|_| UpstreamError::TimedOut)?
                .map_err(|_| UpstreamError::Unreachable("the server's stream ended before it answered".into()))?;
            answers.push(answer);
        }
        Ok(answers)
    }

    /// The server's own messages from now on (for the client's GET stream).
    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Value> {
        self.server_messages.subscribe()
    }
}

/// Removes a request's ids from the waiting ones when it ends, however it ends.
struct Unregister<'a> {
    session: &'a SseSession,
    keys: Vec<String>,
}

impl Drop for Unregister<'_> {
    fn drop(&mut self) {
        if let Ok(mut pending) = self.session.pending.lock() {
            for key in &self.keys {
                pending.remove(key);
            }
        }
    }
}

/// Reads the server's stream until it ends: answers to pending requests go to their waiters, anything
/// else to the session's GET streams.
async fn read_stream(mut answer: reqwest::Response, mut events: EventReader, session: std::sync::Weak<SseSession>) {
    loop {
        while let Some((kind, data)) = events.next_event() {
            let Some(session) = session.upgrade() else { return };
            if kind != "message" {
                continue;
            }
            let Ok(message) = serde_json::from_str::<Value>(&data) else { continue };
            let is_answer = message.get("method").is_none() && message.get("id").is_some();
            if !is_answer {
                let _ = session.server_messages.send(message);
                continue;
            }
            // An answer nobody waits for (its request gave up) is dropped: on the GET stream it would reach
            // the client unfiltered.
            let waiter = session.pending.lock().ok().and_then(|mut p| p.remove(&id_key(&message["id"])));
            if let Some(waiter) = waiter {
                let _ = waiter.send(message);
            }
        }
        match answer.chunk().await {
            Ok(Some(chunk)) => {
                if events.push(&chunk).is_err() {
                    return;
                }
            }
            Ok(None) | Err(_) => return,
        }
    }
}

/// Splits an SSE byte stream into events (`event` name, joined `data`). Bytes are kept until an event is
/// complete, so that a character or a line end split between chunks is decoded whole.
#[derive(Default)]
struct EventReader {
    buffer: Vec<u8>,
}

impl EventReader {
    fn push(&mut self, chunk: &[u8]) -> Result<(), UpstreamError> {
        self.buffer.extend(chunk.iter().filter(|b| **b != b'\r'));
        if self.buffer.len() > MAX_EVENT {
            return Err(UpstreamError::Unreachable(format!("an event larger than {MAX_EVENT} bytes")));
        }
        Ok(())
    }

    fn next_event(&mut self) -> Option<(String, String)> {
        let end = self.buffer.windows(2).position(|w| w == b"\n\n")?;
        let bytes: Vec<u8> = self.buffer.drain(..end + 2).collect();
        let event = String::from_utf8_lossy(&bytes);
        let mut kind = "message".to_owned();
        let mut data = Vec::new();
        for line in event.lines() {
            if let Some(value) = line.strip_prefix("event:") {
                kind = value.trim().to_owned();
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push(value.strip_prefix(' ').unwrap_or(value));
            }
        }
        Some((kind, data.join("\n")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn events_are_split_whatever_the_chunks() {
        let mut reader = EventReader::default();
        reader.push(b"event: endpoint\r\ndata: /message?sessionId=1\r\n\r\nda").unwrap();
        assert_eq!(reader.next_event(), Some(("endpoint".into(), "/message?sessionId=1".into())));
        assert_eq!(reader.next_event(), None);
        reader.push(b"ta: {\"a\":\ndata: 1}\n\n").unwrap();
        assert_eq!(reader.next_event(), Some(("message".into(), "{\"a\":\n1}".into())));
        // A character and a line end split between chunks
        let text = "data: \u{e9}t\u{e9}\r\n\r\n".as_bytes();
        reader.push(&text[..7]).unwrap();
        reader.push(&text[7..text.len() - 1]).unwrap();
        assert_eq!(reader.next_event(), None);
        reader.push(&text[text.len() - 1..]).unwrap();
        assert_eq!(reader.next_event(), Some(("message".into(), "\u{e9}t\u{e9}".into())));
    }
}
