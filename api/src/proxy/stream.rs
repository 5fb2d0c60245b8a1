//! Answers read from upstream servers: SSE relayed chunk by chunk as it arrives, JSON read whole (it is
//! small, and read whole it can be replaced by a clean error when the upstream breaks off).

use axum::body::Bytes;
use futures_util::Stream;
use serde_json::{Value, json};

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

/// An SSE answer as a body stream. When the upstream breaks off an answer to a request (`error_id`), the
/// client gets a last event with a JSON-RPC error for that request, so that it does not wait forever; on
/// a GET stream the connection just ends, and the client reconnects with `Last-Event-ID`.
pub(crate) fn relayed(
    answer: reqwest::Response,
    error_id: Value,
    idle: bool,
) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures_util::stream::unfold(Some((answer, error_id)), move |state| async move {
        let (mut answer, error_id) = state?;
        match next_chunk(&mut answer, idle).await {
            Ok(Some(chunk)) => Some((Ok(chunk), Some((answer, error_id)))),
            Ok(None) => None,
            Err(why) if !error_id.is_null() => {
                tracing::warn!(why, "an upstream server broke off an SSE answer");
                let error = json!({ "jsonrpc": "2.0", "id": error_id,
                    "error": { "code": -32603, "message": format!("the upstream server broke off its answer: {why}") } });
                Some((Ok(Bytes::from(format!("event: message\ndata: {error}\n\n"))), None))
            }
            Err(why) => {
                tracing::info!(why, "an upstream SSE stream ended");
                Some((Err(std::io::Error::other(why)), None))
            }
        }
    })
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
