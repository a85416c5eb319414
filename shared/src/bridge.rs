//! The metasmoke bridge: build-relay subscribes to metasmoke's `SmokeDetectorChannel` as a
//! client, with the frame Smokey itself sends, and forwards each broadcast's `message` to
//! every subscribed Smokey, byte for byte, except the keys build-relay produces itself.
//!
//! metasmoke streams the same frames to every subscriber, so one upstream subscription
//! serves every Smokey. The bridge reconnects on a rejected key, a dropped socket or
//! `Timings::silence` without a frame (metasmoke pings every 3 s), waiting
//! `Timings::first_retry`, then twice as long each time up to `Timings::max_retry`.
//!
//! Frames go out through the outbox, so they reach a Smokey that was away when it
//! resubscribes. Each enters it with its fingerprint, in one conditional step
//! (`Outbox::append_outbox_once`): where two bridge runs overlap (the keepalive function's
//! windows on AWS), a frame both saw is forwarded once. Identical frames more than
//! `Timings::dedupe_horizon` apart are both forwarded.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::broadcast::Broadcaster;
use crate::config::BridgeConfig;
use crate::notify::NotifyError;
use crate::store::{Claim, ClaimRecord, ClaimState};

/// The largest message read from metasmoke; a larger one ends the socket (and the bridge
/// reconnects).
pub const MAX_UPSTREAM_MESSAGE_BYTES: usize = 1024 * 1024;

/// How patient the bridge is with metasmoke.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timings {
    /// No frame for this long (metasmoke pings every 3 s): the socket is dead.
    pub silence: Duration,
    /// The wait before the first reconnect; doubled after each failed attempt.
    pub first_retry: Duration,
    /// The longest wait between attempts.
    pub max_retry: Duration,
    /// A frame seen again within this many seconds is the same frame seen by two runs.
    pub dedupe_horizon: i64,
}

impl Default for Timings {
    fn default() -> Self {
        Self {
            silence: Duration::from_secs(10),
            first_retry: Duration::from_secs(1),
            max_retry: Duration::from_secs(60),
            dedupe_horizon: 15,
        }
    }
}

/// What metasmoke said in one frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// `{"type":"welcome"}` on connect.
    Welcome,
    /// `{"type":"ping"}`, every 3 s.
    Ping,
    /// The subscription was confirmed.
    Confirmed,
    /// The subscription was rejected (a wrong key).
    Rejected,
    /// A broadcast; its `message` as the JSON text metasmoke sent.
    Broadcast(String),
    /// `{"type":"disconnect"}`: the server is closing the socket (a restart, an
    /// unauthorized connection); Rails 6 sends it before the close.
    Disconnect,
    /// Anything else (junk, frames of newer versions): ignored.
    Other,
}

#[derive(Deserialize)]
struct Frame<'a> {
    #[serde(rename = "type", default)]
    kind: Option<&'a str>,
    #[serde(borrow, default)]
    message: Option<&'a RawValue>,
}

/// Reads one frame from metasmoke.
pub fn parse(text: &str) -> Upstream {
    let Ok(frame) = serde_json::from_str::<Frame>(text) else {
        return Upstream::Other;
    };
    match (frame.kind, frame.message) {
        (Some("welcome"), _) => Upstream::Welcome,
        (Some("ping"), _) => Upstream::Ping,
        (Some("confirm_subscription"), _) => Upstream::Confirmed,
        (Some("reject_subscription"), _) => Upstream::Rejected,
        (Some("disconnect"), _) => Upstream::Disconnect,
        (None, Some(message)) => Upstream::Broadcast(message.get().to_string()),
        _ => Upstream::Other,
    }
}

/// Whether a broadcast's `message` goes on to Smokey: not when one of its keys is in
/// `skip` (the ones build-relay now sends itself).
pub fn forwards(message: &str, skip: &[String]) -> bool {
    match serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(message) {
        Ok(object) => !object.keys().any(|key| skip.contains(key)),
        Err(_) => true,
    }
}

/// The subscribe frame, exactly as Smokey sends it.
pub fn subscribe_frame(key: &str) -> String {
    let identifier = serde_json::json!({ "channel": crate::cable::CHANNEL, "key": key });
    serde_json::json!({ "command": "subscribe", "identifier": identifier.to_string() }).to_string()
}

/// Counts of what a bridge run did; logged at the end of every upstream session.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct BridgeReport {
    /// Sockets opened to metasmoke.
    pub connects: usize,
    /// Connection attempts that failed (refused, TLS, HTTP error, timeout).
    pub failed_connects: usize,
    /// Subscriptions metasmoke rejected.
    pub rejected: usize,
    /// Sockets that closed or failed under us.
    pub dropped: usize,
    /// Sockets given up for `Timings::silence` without a frame.
    pub silent: usize,
    /// Broadcasts sent on to the Smokeys.
    pub forwarded: usize,
    /// Broadcasts of a key in `METASMOKE_BRIDGE_SKIP`.
    pub skipped: usize,
    /// Broadcasts another run had forwarded already.
    pub duplicates: usize,
    /// Broadcasts that could not be stored before the run's end.
    pub failed: usize,
    /// The run let go of its socket because a newer run holds the subscription.
    pub handed_over: bool,
}

/// Where runs overlap (the keepalive function's, each a minute plus
/// `BRIDGE_OVERLAP_SECONDS`), which run holds metasmoke's subscription. A run that has
/// subscribed takes the holder's claim (`HOLDER_KEY`); the run it took over from watches
/// the claim from `watch_from` on and lets go of its socket once another run holds it.
/// Make before break: metasmoke sees two sockets for about `WATCH_EVERY`, and a frame
/// both saw is forwarded once.
#[derive(Debug, Clone)]
pub struct Handover {
    /// This run's name in the claim.
    pub me: String,
    /// When the next run may start, so when to begin watching the claim.
    pub watch_from: Instant,
}

/// The claim that names the run holding metasmoke's subscription.
pub const HOLDER_KEY: &str = "bridge/metasmoke";

/// How often a run that may be taken over looks at the holder's claim.
pub const WATCH_EVERY: Duration = Duration::from_secs(1);

/// Why an upstream session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    ConnectFailed,
    Rejected,
    Dropped,
    Silent,
    /// The run's time is up.
    Deadline,
    /// A newer run holds the subscription now.
    HandedOver,
}

/// One upstream subscription to metasmoke's channel, and where its frames go.
pub struct Bridge {
    /// Where to subscribe, with which key, and what not to forward.
    pub config: BridgeConfig,
    /// How patient to be.
    pub timings: Timings,
    /// Forwards frames (through the outbox) and keeps their fingerprints in its store.
    pub broadcaster: Broadcaster,
}

impl Bridge {
    /// Stays subscribed until `deadline` (forever with `None`), reconnecting as needed;
    /// with a `handover`, also until a newer run holds the subscription.
    pub async fn run(
        &self,
        deadline: Option<Instant>,
        handover: Option<&Handover>,
    ) -> BridgeReport {
        let mut report = BridgeReport::default();
        let mut wait = self.timings.first_retry;
        loop {
            let (end, confirmed) = self.session(deadline, handover, &mut report).await;
            match end {
                End::Deadline => break,
                End::HandedOver => {
                    report.handed_over = true;
                    break;
                }
                End::ConnectFailed => report.failed_connects += 1,
                End::Rejected => report.rejected += 1,
                End::Dropped => report.dropped += 1,
                End::Silent => report.silent += 1,
            }
            if confirmed {
                wait = self.timings.first_retry;
            }
            tracing::warn!(end = ?end, retry_in_ms = wait.as_millis() as u64, report = ?report, "metasmoke bridge: reconnecting");
            let resume = Instant::now() + wait;
            if deadline.is_some_and(|d| d <= resume) {
                break;
            }
            tokio::time::sleep_until(resume).await;
            wait = (wait * 2).min(self.timings.max_retry);
        }
        tracing::info!(report = ?report, "metasmoke bridge: run over");
        report
    }

    /// One upstream socket, from connect to its end; also says whether it was confirmed.
    async fn session(
        &self,
        deadline: Option<Instant>,
        handover: Option<&Handover>,
        report: &mut BridgeReport,
    ) -> (End, bool) {
        let far = Instant::now() + Duration::from_secs(365 * 24 * 60 * 60);
        let deadline = deadline.unwrap_or(far);
        let connecting = tokio::time::timeout_at(
            deadline.min(Instant::now() + self.timings.silence),
            self.connect(),
        );
        let mut socket = match connecting.await {
            Ok(Ok(socket)) => socket,
            Ok(Err(error)) => {
                tracing::warn!(%error, "metasmoke bridge: cannot connect");
                return (End::ConnectFailed, false);
            }
            Err(_) if Instant::now() >= deadline => return (End::Deadline, false),
            Err(_) => {
                tracing::warn!("metasmoke bridge: connect timed out");
                return (End::ConnectFailed, false);
            }
        };
        report.connects += 1;
        let mut confirmed = false;
        let subscribe = Message::text(subscribe_frame(self.config.key.expose()));
        if socket.send(subscribe).await.is_err() {
            return (End::Dropped, false);
        }
        let mut watch =
            tokio::time::interval_at(handover.map_or(far, |h| h.watch_from), WATCH_EVERY);
        // Only a frame from metasmoke puts off the silence limit (not a look at the claim).
        let mut silent_at = Instant::now() + self.timings.silence;
        loop {
            let next = tokio::select! {
                next = tokio::time::timeout_at(silent_at, socket.next()) => next,
                () = tokio::time::sleep_until(deadline) => {
                    let _ = socket.close(None).await;
                    return (End::Deadline, confirmed);
                }
                _ = watch.tick(), if handover.is_some() => {
                    if self.taken_over(handover).await {
                        tracing::info!("metasmoke bridge: a newer run holds the subscription; letting go");
                        let _ = socket.close(None).await;
                        return (End::HandedOver, confirmed);
                    }
                    continue;
                }
            };
            silent_at = Instant::now() + self.timings.silence;
            let text = match next {
                Err(_) => return (End::Silent, confirmed),
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => {
                    return (End::Dropped, confirmed);
                }
                Ok(Some(Ok(Message::Text(text)))) => text,
                Ok(Some(Ok(_))) => continue,
            };
            match parse(&text) {
                Upstream::Confirmed => {
                    confirmed = true;
                    tracing::info!("metasmoke bridge: subscribed");
                    if let Some(handover) = handover {
                        self.hold(handover).await;
                    }
                }
                Upstream::Rejected => {
                    tracing::error!("metasmoke bridge: subscription rejected; check METASMOKE_KEY");
                    return (End::Rejected, confirmed);
                }
                Upstream::Broadcast(message) => self.forward(message, deadline, report).await,
                Upstream::Disconnect => {
                    tracing::warn!(frame = %text, "metasmoke bridge: metasmoke disconnects us");
                    return (End::Dropped, confirmed);
                }
                Upstream::Welcome | Upstream::Ping | Upstream::Other => {}
            }
        }
    }

    async fn connect(
        &self,
    ) -> Result<
        tokio_tungstenite::WebSocketStream<
            tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
        >,
        tokio_tungstenite::tungstenite::Error,
    > {
        let mut request = self.config.url.as_str().into_client_request()?;
        let origin = http::HeaderValue::from_str(&self.config.origin)
            .map_err(|e| tokio_tungstenite::tungstenite::Error::HttpFormat(e.into()))?;
        request.headers_mut().insert(http::header::ORIGIN, origin);
        // Nothing over 32 KB can be forwarded; a larger message is refused as it arrives
        // instead of being buffered whole (tungstenite's default allows 64 MiB).
        let limits = WebSocketConfig::default()
            .max_message_size(Some(MAX_UPSTREAM_MESSAGE_BYTES))
            .max_frame_size(Some(MAX_UPSTREAM_MESSAGE_BYTES));
        let (socket, _) =
            tokio_tungstenite::connect_async_with_config(request, Some(limits), false).await?;
        Ok(socket)
    }

    /// Names this run as the holder of the subscription. Should the store fail, the older
    /// run keeps its socket until its own deadline, as two overlapping runs would.
    async fn hold(&self, handover: &Handover) {
        let store = self.broadcaster.store();
        let now = self.broadcaster.clock().now();
        let mine = ClaimRecord {
            owner: handover.me.clone(),
            claimed_at: now,
            state: ClaimState::Claimed,
        };
        let taken = match store.claim(HOLDER_KEY, &handover.me, now).await {
            Ok(Claim::Won) => Ok(true),
            Ok(Claim::Held(held)) if held.owner == handover.me => Ok(true),
            Ok(Claim::Held(held)) => store.swap_claim(HOLDER_KEY, &held, &mine).await,
            Err(error) => Err(error),
        };
        match taken {
            Ok(true) => {
                tracing::info!(run = %handover.me, "metasmoke bridge: this run holds the subscription")
            }
            Ok(false) => tracing::warn!("metasmoke bridge: the holder's claim moved meanwhile"),
            Err(error) => {
                tracing::warn!(%error, "metasmoke bridge: cannot name this run the holder")
            }
        }
    }

    /// Whether another run holds the subscription now (an unreadable store: no).
    async fn taken_over(&self, handover: Option<&Handover>) -> bool {
        let Some(handover) = handover else {
            return false;
        };
        match self.broadcaster.store().claim_holder(HOLDER_KEY).await {
            Ok(Some(held)) => held.owner != handover.me,
            Ok(None) => false,
            Err(error) => {
                tracing::warn!(%error, "metasmoke bridge: cannot read the holder's claim");
                false
            }
        }
    }

    /// Sends a broadcast on to the Smokeys, once across overlapping runs: the frame enters
    /// the outbox together with its fingerprint (one conditional step), then goes out. A
    /// store that fails is tried again, the wait growing to `STORE_RETRY_MAX`, until the
    /// frame is in or the run's time is up (an overlapping run has it too). Once in the
    /// outbox a frame is not lost: a Smokey that misses the post gets it on resubscription.
    async fn forward(&self, message: String, deadline: Instant, report: &mut BridgeReport) {
        if !forwards(&message, &self.config.skip) {
            report.skipped += 1;
            return;
        }
        let fingerprint = hex::encode(Sha256::digest(message.as_bytes()));
        // When it arrived, also for a later retry: a copy another run saw at the same
        // moment is then still within the horizon.
        let arrived = self.broadcaster.clock().now();
        let mut wait = STORE_RETRY_FIRST;
        let seq = loop {
            let stored = self
                .broadcaster
                .store()
                .append_outbox_once(&message, &fingerprint, arrived, self.timings.dedupe_horizon)
                .await;
            match stored {
                Ok(Some(seq)) => break seq,
                Ok(None) => {
                    report.duplicates += 1;
                    return;
                }
                Err(error) if Instant::now() + wait < deadline => {
                    tracing::warn!(%error, retry_in_ms = wait.as_millis() as u64, "metasmoke bridge: frame not stored yet; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(STORE_RETRY_MAX);
                }
                Err(error) => {
                    report.failed += 1;
                    tracing::error!(%error, "metasmoke bridge: frame not stored before the run's end");
                    return;
                }
            }
        };
        report.forwarded += 1;
        let mut wait = STORE_RETRY_FIRST;
        loop {
            match self.broadcaster.deliver(seq, &message, None).await {
                // The connections could not be read: nobody has it yet.
                Err(NotifyError::Store(error)) if Instant::now() + wait < deadline => {
                    tracing::warn!(%error, seq, retry_in_ms = wait.as_millis() as u64, "metasmoke bridge: frame stored, connections unreadable; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(STORE_RETRY_MAX);
                }
                Err(error) => {
                    tracing::warn!(%error, seq, "metasmoke bridge: frame stored but not posted; Smokeys get it when they resubscribe");
                    return;
                }
                Ok(_) => return,
            }
        }
    }
}

/// The first wait before storing a frame again after the store failed.
const STORE_RETRY_FIRST: Duration = Duration::from_millis(100);
/// The longest wait between tries to store a frame.
const STORE_RETRY_MAX: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metasmokes_frames_are_told_apart() {
        assert_eq!(parse(r#"{"type":"welcome"}"#), Upstream::Welcome);
        assert_eq!(
            parse(r#"{"type":"ping","message":1764100000}"#),
            Upstream::Ping
        );
        assert_eq!(
            parse(r#"{"identifier":"{}","type":"confirm_subscription"}"#),
            Upstream::Confirmed
        );
        assert_eq!(
            parse(r#"{"identifier":"{}","type":"reject_subscription"}"#),
            Upstream::Rejected
        );
        assert_eq!(parse("not json"), Upstream::Other);
        assert_eq!(
            parse(r#"{"type":"disconnect","reason":"server_restart","reconnect":true}"#),
            Upstream::Disconnect
        );
        assert_eq!(parse(r#"{"type":"welcome_v2"}"#), Upstream::Other);
    }

    #[test]
    fn a_broadcast_keeps_its_message_bytes() {
        let message =
            r#"{ "fp" : {"post_link":"//stackoverflow.com/a/1"}, "n": 1.50, "e":"\u00e9" }"#;
        let frame = format!(
            r#"{{"identifier":"{{\"channel\":\"SmokeDetectorChannel\"}}","message":{message}}}"#
        );
        assert_eq!(parse(&frame), Upstream::Broadcast(message.to_string()));
    }

    #[test]
    fn skipped_keys_are_not_forwarded() {
        let skip = vec!["commit_status".to_string(), "deploy_updated".to_string()];
        assert!(!forwards(
            r#"{"commit_status":{"status":"success"}}"#,
            &skip
        ));
        assert!(!forwards(r#"{"deploy_updated":{}}"#, &skip));
        assert!(forwards(r#"{"naa":{"post_link":"x"}}"#, &skip));
        assert!(forwards(r#"{"domain_whitelist":"refresh"}"#, &skip));
        assert!(forwards(r#""a bare string""#, &skip));
        assert!(forwards(r#"{"commit_status":{}}"#, &[]));
    }

    #[test]
    fn the_subscribe_frame_is_smokeys() {
        assert_eq!(
            subscribe_frame("abc"),
            r#"{"command":"subscribe","identifier":"{\"channel\":\"SmokeDetectorChannel\",\"key\":\"abc\"}"}"#
        );
    }
}
