//! What the gateway's routes share: the parts built from the local `Relay`, the open
//! sockets, and whether deliveries and sockets are still taken.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use build_relay::config::SocketLimits;
use build_relay::handlers::pull_request::PullRequestRoutes;
use build_relay::handlers::push::PushHook;
use build_relay::handlers::status::StatusHook;
use build_relay::handlers::webhook::Webhook;
use build_relay::handlers::ws::Sockets;
use build_relay::overview::StatusPage;

use crate::peers::Peers;

/// RFC 6455's close code for an endpoint that is going away.
pub const GOING_AWAY: u16 = 1001;
/// The close frame's reason when the gateway stops.
pub const STOPPING: &str = "relay-local is stopping";

/// What the routes share.
pub struct App {
    pub peers: Peers,
    /// Webhook deliveries being handled; shutdown waits for them.
    pub deliveries: Deliveries,
    /// Added to every @connections post, to stand in for API Gateway's latency in
    /// benchmarks; zero otherwise.
    pub post_latency: Duration,
    pub socket_limits: SocketLimits,
    pub sockets: Sockets,
    pub status: Webhook<StatusHook>,
    pub push: Webhook<PushHook>,
    pub pulls: PullRequestRoutes,
    /// `/status` and `/status.json`.
    pub status_page: StatusPage,
}

/// The webhook deliveries in flight, and whether new deliveries and sockets are still taken.
#[derive(Default)]
pub struct Deliveries {
    stopping: AtomicBool,
    in_flight: AtomicUsize,
}

impl Deliveries {
    /// From now on, new webhooks and new WebSocket connections are refused.
    pub fn stop_taking(&self) {
        self.stopping.store(true, Ordering::SeqCst);
    }

    /// Whether the gateway is stopping: nothing new is taken.
    pub fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Counts a delivery in flight until the guard is dropped. Counted before the caller
    /// checks `stopping`, so that `drain` never misses one that got past the check.
    pub fn begin(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(&self.in_flight)
    }

    /// Waits (up to `patience`) for the deliveries in flight.
    pub async fn drain(&self, patience: Duration) {
        let deadline = tokio::time::Instant::now() + patience;
        while self.in_flight.load(Ordering::SeqCst) > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Counts a delivery in flight while it lives.
pub struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}
