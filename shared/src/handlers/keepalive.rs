//! `ws-keepalive`: pings every connection so that Smokey, which drops a socket after 10 s
//! of silence, stays connected. Scheduled once a minute; pings every interval within it.
//! With a metasmoke bridge configured, the same run also holds the upstream subscription,
//! a little longer than the minute, so that consecutive runs overlap (`ScheduledRun`).
//!
//! Pings do not wait for the store: the connection list is kept between rounds and
//! refreshed each round only if the store answers within a fraction of the interval, so a
//! DynamoDB outage delays no ping (new connections are pinged once the store is back).

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::eventbridge::EventBridgeEvent;

use crate::bridge::{Bridge, BridgeReport, Handover};
use crate::broadcast::Broadcaster;
use crate::clock::Clock;
use crate::store::Connection;

/// Keeps every connection alive with ActionCable pings.
pub struct Keepalive {
    /// Posts the pings.
    pub broadcaster: Broadcaster,
    /// Time between rounds (`PING_INTERVAL_SECONDS`).
    pub interval: Duration,
    /// Stamps the pings.
    pub clock: Arc<dyn Clock>,
}

/// The scheduled event that starts a run (EventBridge Scheduler's, as Lambda receives it).
pub type ScheduledEvent = EventBridgeEvent<serde_json::Value>;

/// What one scheduled run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeepaliveReport {
    /// Rounds of pings.
    pub rounds: usize,
    /// Pings accepted by @connections.
    pub sent: usize,
    /// Connections found gone (410).
    pub gone: usize,
    /// Pings that failed otherwise.
    pub failed: usize,
    /// Rounds that pinged the connections known from an earlier round, because the store
    /// did not answer in time.
    pub stale_rounds: usize,
}

/// One scheduled run: the pings and, when configured, the metasmoke bridge.
pub struct ScheduledRun {
    /// The pings.
    pub keepalive: Keepalive,
    /// How long the pings go on (`KEEPALIVE_WINDOW_SECONDS`).
    pub window: Duration,
    /// The metasmoke bridge, when `METASMOKE_WS_URL` is set.
    pub bridge: Option<Bridge>,
    /// How much longer than `window` the bridge stays subscribed (`BRIDGE_OVERLAP_SECONDS`):
    /// the next run subscribes before this one lets go.
    pub overlap: Duration,
}

/// What a scheduled run did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RunReport {
    /// What the pings did.
    #[serde(flatten)]
    pub keepalive: KeepaliveReport,
    /// What the bridge did, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bridge: Option<BridgeReport>,
}

impl ScheduledRun {
    /// Pings for the window and, alongside, holds the bridge a little longer, or until
    /// the next run has subscribed.
    pub async fn run(&self) -> RunReport {
        let bridged = async {
            match &self.bridge {
                Some(bridge) => {
                    let start = tokio::time::Instant::now();
                    // The next run may start a little early: watch from an overlap
                    // before the window's end.
                    let handover = Handover {
                        me: run_name(),
                        watch_from: start + self.window.saturating_sub(self.overlap),
                    };
                    let deadline = start + self.window + self.overlap;
                    Some(bridge.run(Some(deadline), Some(&handover)).await)
                }
                None => None,
            }
        };
        let (keepalive, bridge) = tokio::join!(self.keepalive.run_for(self.window), bridged);
        RunReport { keepalive, bridge }
    }
}

/// A name for this run no other run has.
fn run_name() -> String {
    let mut random = [0u8; 8];
    let _ = getrandom::fill(&mut random);
    format!("keepalive-{}", hex::encode(random))
}

/// The connections as last read from the store.
#[derive(Default)]
struct Known {
    connections: Option<Vec<Connection>>,
}

impl Keepalive {
    /// Pings at 0, interval, 2 x interval, ... while inside `window` (a minute on Lambda,
    /// where the next scheduled run takes over).
    pub async fn run_for(&self, window: Duration) -> KeepaliveReport {
        let rounds = (window.as_millis() / self.interval.as_millis().max(1)).max(1) as usize;
        let mut ticker = self.ticker();
        let (mut report, mut known) = (KeepaliveReport::default(), Known::default());
        for _ in 0..rounds {
            ticker.tick().await;
            self.ping_once(&mut known, &mut report).await;
        }
        tracing::info!(
            rounds = report.rounds,
            sent = report.sent,
            gone = report.gone,
            failed = report.failed,
            stale_rounds = report.stale_rounds,
            "keepalive"
        );
        report
    }

    /// Pings forever; for the local gateway.
    pub async fn run_forever(&self) {
        let mut ticker = self.ticker();
        let (mut report, mut known) = (KeepaliveReport::default(), Known::default());
        loop {
            ticker.tick().await;
            self.ping_once(&mut known, &mut report).await;
        }
    }

    fn ticker(&self) -> tokio::time::Interval {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    }

    async fn ping_once(&self, known: &mut Known, report: &mut KeepaliveReport) {
        report.rounds += 1;
        let now = self.clock.now();
        // With nothing known yet there is nobody to ping meanwhile: wait a whole interval.
        let patience = match known.connections {
            Some(_) => self.interval / 2,
            None => self.interval,
        };
        let read = tokio::time::timeout(patience, self.broadcaster.store().connections(now)).await;
        match read {
            Ok(Ok(connections)) => known.connections = Some(connections),
            Ok(Err(error)) => {
                report.stale_rounds += 1;
                tracing::warn!(%error, "connections unreadable; pinging the ones known");
            }
            Err(_) => {
                report.stale_rounds += 1;
                tracing::warn!(
                    waited_ms = patience.as_millis() as u64,
                    "connections not read in time; pinging the ones known"
                );
            }
        }
        let Some(connections) = &mut known.connections else {
            return;
        };
        let round = self.broadcaster.ping(connections, now).await;
        connections.retain(|c| !round.gone.contains(&c.id));
        // Like the read, the cleanup waits on the store only so long: a row left behind
        // expires by TTL, or the next broadcast's 410 removes it.
        let _ = tokio::time::timeout(patience, self.broadcaster.forget(&round.gone)).await;
        report.sent += round.reach.sent;
        report.gone += round.reach.gone;
        report.failed += round.reach.failed;
    }
}
