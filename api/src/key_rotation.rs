//! Rotates the token signing key before it expires: at [`ROTATE_AT`] of its life, on whichever
//! instance looks first (the others' rotations lose the append race and load the winner's key). The
//! previous key keeps verifying the tokens it signed until they expire.

use std::sync::Arc;
use std::time::Duration;

use commands::tokens::TokenService;

/// The share of its life at which the signing key is replaced (readiness warns from
/// [`crate::readiness::NEAR_EXPIRY`], so a rotation that keeps failing is seen before the key ends).
pub const ROTATE_AT: f64 = 0.8;

/// Checks the key's age every fiftieth of its life (between 100 ms and an hour: a late check still
/// rotates well before readiness warns) and rotates it when
/// due, for as long as the instance runs.
pub async fn run(tokens: Arc<TokenService>, max_age: Duration) {
    let every = (max_age / 50).clamp(Duration::from_millis(100), Duration::from_secs(3600));
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        // Another instance may have rotated already.
        if let Err(error) = tokens.refresh(every).await {
            tracing::warn!(%error, "could not reload the token signing keys");
            continue;
        }
        let Some((kid, since)) = tokens.active_key() else { continue };
        let age = (chrono::Utc::now() - since).to_std().unwrap_or_default();
        if age.as_secs_f64() < max_age.as_secs_f64() * ROTATE_AT {
            continue;
        }
        let command_id = uuid::Uuid::now_v7();
        let context = commands::servers::CommandContext {
            command_id,
            metadata: eventstore::Metadata::new(
                command_id,
                eventstore::Actor::system("key-rotation"),
                chrono::Utc::now(),
            ),
        };
        match tokens.rotate(&context).await {
            Ok(()) => tracing::info!(retired_kid = %kid, age_s = age.as_secs(), "rotated the token signing key"),
            Err(error) => tracing::warn!(%error, kid = %kid, "could not rotate the token signing key"),
        }
    }
}
