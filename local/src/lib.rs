//! relay-local: build-relay's function set in one process, with the same handler code as on
//! Lambda. API Gateway's parts are played by this crate: the HTTP routes, the WebSocket
//! endpoint (`/cable`), and the `@connections` management API that the real AWS SDK client
//! posts to.

pub mod app;
pub mod cable_socket;
pub mod demo;
pub mod gateway;
pub mod management;
pub mod peers;
pub mod server;

pub use gateway::{Gateway, GatewayOptions, Running};
