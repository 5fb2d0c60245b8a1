//! The write side: each command loads its aggregate's stream, asks `domain` to decide, and appends the
//! events with the exact revision it loaded (never `Any`). Secrets are sealed here, before any event
//! exists; names are reserved in the transaction of the append.

pub mod connections;
mod error;
pub mod identity;
pub mod oauth_clients;
pub mod principals;
mod resolver;
mod sealing;
mod secret;
pub mod servers;
pub mod tokens;

pub use error::CommandError;
pub use resolver::{HostResolver, SystemResolver};
pub use sealing::{Keyring, SealingError};
pub use secret::Secret;
