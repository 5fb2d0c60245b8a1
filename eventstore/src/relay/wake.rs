//! Cross-instance wake-ups: every gateway instance hears the relay's publishes and wakes its own
//! subscriptions and projection runners at once, instead of at their next poll. The store stays the
//! truth: a missed or repeated message costs at most one poll interval, never an event.

use futures_util::StreamExt;
use tokio::task::JoinHandle;

use super::options::RelayOptions;
use super::publisher::RelayError;
use crate::PgEventStore;

/// Subscribes to the relay's subjects and, from then on, wakes `store`'s readers whenever a message
/// arrives; returns once the server has the subscription. The task runs until the NATS connection is
/// closed or it is aborted (a lost connection is re-established by the client).
pub async fn wake_on_publish(
    store: PgEventStore,
    client: async_nats::Client,
    options: &RelayOptions,
) -> Result<JoinHandle<()>, RelayError> {
    let subject = format!("{}.>", options.subject_prefix);
    let mut messages = client.subscribe(subject).await.map_err(|e| RelayError::Nats(Box::new(e)))?;
    client.flush().await.map_err(|e| RelayError::Nats(Box::new(e)))?;
    Ok(tokio::spawn(async move {
        while messages.next().await.is_some() {
            store.notify_appended();
        }
    }))
}
