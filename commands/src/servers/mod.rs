//! Commands on servers.

mod handler;
mod input;

pub use handler::{CommandContext, Outcome, ServerCommands};
pub use input::{RegisterInput, UpdateInput, UpstreamAuthInput};
