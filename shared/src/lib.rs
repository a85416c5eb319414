//! build-relay: SmokeDetector's build infrastructure as AWS Lambda functions.
//!
//! Everything the function binaries and the local gateway have in common lives here:
//! configuration, webhook intake, GitHub payload types, the pure decision rules, storage,
//! the ActionCable frames and the broadcaster, and one handler per function.

pub mod answer;
pub mod broadcast;
pub mod cable;
pub mod clock;
pub mod config;
pub mod github;
pub mod handlers;
pub mod intake;
pub mod keys;
pub mod logging;
pub mod notify;
pub mod rules;
pub mod secrets;
pub mod setup;
pub mod store;
