//! `ws-keepalive`: pings every connection so that Smokey, which drops a socket after 10 s
//! of silence, stays connected. Scheduled once a minute; pings every interval within it.

use std::time::Duration;

use crate::broadcast::Broadcaster;

pub struct Keepalive {
    pub broadcaster: Broadcaster,
    pub interval: Duration,
}

/// What one scheduled run did.
#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct KeepaliveReport {
    pub rounds: usize,
    pub sent: usize,
    pub gone: usize,
    pub failed_rounds: usize,
}

impl Keepalive {
    /// Pings at 0, interval, 2 x interval, ... while inside `window` (a minute on Lambda,
    /// where the next scheduled run takes over).
    pub async fn run_for(&self, window: Duration) -> KeepaliveReport {
        let rounds = (window.as_millis() / self.interval.as_millis().max(1)).max(1) as usize;
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut report = KeepaliveReport::default();
        for _ in 0..rounds {
            ticker.tick().await;
            self.ping_once(&mut report).await;
        }
        tracing::info!(
            rounds = report.rounds,
            sent = report.sent,
            gone = report.gone,
            failed_rounds = report.failed_rounds,
            "keepalive"
        );
        report
    }

    /// Pings forever; for the local gateway.
    pub async fn run_forever(&self) {
        let mut ticker = tokio::time::interval(self.interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut report = KeepaliveReport::default();
        loop {
            ticker.tick().await;
            self.ping_once(&mut report).await;
        }
    }

    async fn ping_once(&self, report: &mut KeepaliveReport) {
        report.rounds += 1;
        match self.broadcaster.ping_all(crate::clock::now()).await {
            Ok(reach) => {
                report.sent += reach.sent;
                report.gone += reach.gone;
            }
            Err(error) => {
                report.failed_rounds += 1;
                tracing::warn!(%error, "keepalive round incomplete");
            }
        }
    }
}
