//! The gateway's domain: what a command may do, the events it produces, and the state they fold into.
//!
//! Pure: no IO, no async, no clock, no randomness. Callers bring ids and times in the commands; the
//! write side (`commands`) loads a stream, asks [`server::decide`] and appends what it returns, and the
//! read side folds the same events with [`server::evolve`].

pub mod access;
pub mod alert;
pub mod authz;
pub mod connection;
pub mod identity;
pub mod oauth;
pub mod role;
pub mod sealed;
pub mod server;
pub mod text;

pub use role::Role;
pub use sealed::Sealed;
