//! build-relay: SmokeDetector's build infrastructure as AWS Lambda functions.
#![warn(missing_docs)]
//!
//! Everything the function binaries and the local gateway have in common lives here.
//!
//! # Map
//!
//! - [`relay`]: the composition root; every webhook route is built there from its parts.
//! - [`setup`]: cold start for the function binaries (settings, secrets, AWS clients).
//! - [`intake`]: raw request -> verified delivery (signature, headers, size).
//! - [`handlers`]: one per function, and the pipeline they share ([`handlers::webhook`]):
//!   plan without effects, the delivery ledger, the effects, the answer.
//! - [`rules`]: the decisions, as pure functions returning enums.
//! - [`domain`]: the relay's own vocabulary (verdicts, statuses, claims, history outcomes),
//!   pure data that `rules` reason about and `store` keeps.
//! - [`store`]: storage sized by capability (`Ledger`, `Commits`, `History`, `Claims`,
//!   `Connections`, `ClientKeys`, `Outbox`; `Store` is all of them) and its DynamoDB and
//!   embedded implementations.
//! - [`github`]: the GitHub interface, octocrab behind it, payload types, retries.
//! - [`cable`], [`notify`], [`broadcast`]: frames for Smokey, the outbox that replays what a
//!   reconnecting key missed, and the fan-out.
//! - [`bridge`]: metasmoke's channel, subscribed to as a client and forwarded to Smokeys.
//! - [`why`]: the recorded trail of a pull request, of deploy or of a commit, as sentences.
//! - [`clock`], [`config`], [`secrets`], [`keys`], [`logging`], [`answer`]: the small parts.
//!
//! # One webhook
//!
//! `Webhook::handle` gives the delivery 8 s: [`intake::accept`] verifies it, the route's
//! `plan` parses and screens it, the ledger admits it once, the route's `act` asks
//! [`rules`] what to do and does it (GitHub, the store, the notifier), and the answer is
//! 200, or 503 when a redelivery could do better. `docs/ARCHITECTURE.md` walks an approval
//! through every step and says where a change belongs.

pub mod answer;
pub mod aws;
pub mod bridge;
pub mod broadcast;
pub mod cable;
pub mod clock;
pub mod config;
pub mod domain;
pub mod github;
pub mod handlers;
pub mod intake;
pub mod keys;
pub mod logging;
pub mod notify;
pub mod overview;
pub mod relay;
pub mod rules;
pub mod secrets;
pub mod setup;
pub mod store;
pub mod why;
