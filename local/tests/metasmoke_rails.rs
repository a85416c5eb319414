//! The metasmoke bridge of `relay-local serve` against metasmoke's websocket as Rails
//! serves it: Debian's ruby-actioncable (Rails 6.1) under puma, with metasmoke's
//! `SmokeDetectorChannel` (`local/tests/metasmoke/config.ru`). Smokeys are clients that
//! connect and reconnect as `metasmoke.py` does. The bridge runs with its default timings
//! (10 s of silence, retries from 1 s doubling up to 60 s), as an operator runs it.
//!
//! Each test prints what it measured (`--no-capture` shows it).

mod common;

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::metasmoke::RailsMetasmoke;
use common::{
    SmokeyLike, free_port, raw_message, serve_command, unique_suffix, wait_until_listening,
};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "metasmoke rails test secret";
const BRIDGE_KEY: &str = "the-bridges-own-metasmoke-token";
const OTHER_MS_KEY: &str = "another-smokeys-metasmoke-token";
const KEY_A: &str = "smokey-a-key-0123456789abcdef";
const KEY_B: &str = "smokey-b-key-0123456789abcdef";
const ORIGIN: &str = "https://metasmoke.example.org";

/// `relay-local serve` bridged to `metasmoke`, with two Smokey keys; its log (JSON lines)
/// goes to a file the test reads. Killed when dropped.
struct Relay {
    port: u16,
    child: Child,
    log: PathBuf,
}

impl Relay {
    async fn start(metasmoke: &RailsMetasmoke) -> Self {
        let port = free_port();
        let log = std::env::temp_dir().join(format!("relay-rails-{}.log", unique_suffix()));
        let mut command = serve_command(port, SECRET);
        command
            .env("METASMOKE_WS_URL", metasmoke.cable_url())
            .env("METASMOKE_KEY", BRIDGE_KEY)
            .env("METASMOKE_ORIGIN", ORIGIN)
            .env(
                "RELAY_CLIENT_KEYS",
                format!("smokey-a:{KEY_A},smokey-b:{KEY_B}"),
            )
            .env("RECONCILE_SECONDS", "0")
            .stdout(Stdio::from(std::fs::File::create(&log).unwrap()));
        let child = command.spawn().expect("relay-local starts");
        wait_until_listening(port).await;
        Self { port, child, log }
    }

    /// The log lines whose `message` starts with `prefix`, parsed.
    fn logged(&self, prefix: &str) -> Vec<Value> {
        let file = std::fs::File::open(&self.log).unwrap();
        std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str::<Value>(&line).ok())
            .filter(|line| {
                line["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(prefix))
            })
            .collect()
    }

    fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Waits until the server has confirmed `count` subscriptions since it (re)started;
/// returns how long that took.
async fn confirmed(metasmoke: &RailsMetasmoke, count: u64, patience: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let seen = metasmoke.seen().await;
        if seen["confirmed"].as_u64().unwrap() >= count {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < patience,
            "{count} subscription(s) not confirmed within {patience:?}: {seen}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until each Smokey has been confirmed once.
async fn smokeys_subscribed(smokeys: &[&SmokeyLike]) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while smokeys.iter().any(|s| s.confirmed() == 0) {
        assert!(Instant::now() < deadline, "a Smokey was not confirmed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A subscriber straight to metasmoke with a key it knows: it sees what Rails sends.
struct Direct {
    frames: tokio::sync::mpsc::UnboundedReceiver<String>,
    task: tokio::task::JoinHandle<()>,
}

impl Direct {
    async fn subscribe(metasmoke: &RailsMetasmoke, key: &str) -> Self {
        let (mut socket, _) = tokio_tungstenite::connect_async(metasmoke.cable_url())
            .await
            .unwrap();
        let identifier = json!({ "channel": "SmokeDetectorChannel", "key": key }).to_string();
        let subscribe = json!({ "command": "subscribe", "identifier": identifier });
        socket
            .send(Message::text(subscribe.to_string()))
            .await
            .unwrap();
        let (sender, frames) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Some(Ok(frame)) = socket.next().await {
                if let Message::Text(text) = frame {
                    let _ = sender.send(text.to_string());
                }
            }
        });
        Self { frames, task }
    }

    /// The `message` of the next broadcast, as the bytes Rails sent.
    async fn next_broadcast(&mut self) -> String {
        loop {
            let frame = tokio::time::timeout(Duration::from_secs(5), self.frames.recv())
                .await
                .expect("metasmoke broadcast within 5 s")
                .expect("the direct socket is open");
            let parsed: Value = serde_json::from_str(&frame).unwrap();
            if parsed.get("type").is_none() {
                return raw_message(&frame).unwrap();
            }
        }
    }
}

impl Drop for Direct {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Every kind of frame metasmoke broadcasts on `smokedetector_messages`, with text Rails
/// escapes (`<>&`, U+2028) and text it does not (non-ASCII).
fn metasmokes_broadcasts() -> Vec<Value> {
    vec![
        json!({ "blacklist": { "uid": "4242", "site": "stackoverflow.com", "post": "//stackoverflow.com/q/1" } }),
        json!({ "fp": { "post_link": "//stackoverflow.com/a/2" } }),
        json!({ "naa": { "post_link": "//superuser.com/a/3" } }),
        json!({ "report": { "user": "Ren\u{e9}e", "post_link": "//askubuntu.com/q/4" } }),
        json!({ "message": "[ [metasmoke](//metasmoke.erwaysoftware.com) ] tp feedback on <b>spam</b> & eggs" }),
        json!({ "message": "\u{65e5}\u{672c}\u{8a9e} \u{1f525} caf\u{e9}" }),
        json!({ "message": "line\u{2028}separator\u{2029}paragraph" }),
        json!({ "commit_status": { "status": "success", "ci_url": null, "commit_sha": "0123456789abcdef0123456789abcdef01234567", "commit_message": "metasmoke's own" } }),
        json!({ "deploy_updated": { "ref": "refs/heads/deploy" } }),
        json!({ "unblacklist": { "uid": "4242", "site": "stackoverflow.com" } }),
        json!({ "domain_whitelist": "refresh" }),
    ]
}

fn is_build_frame(message: &str) -> bool {
    let parsed: Value = serde_json::from_str(message).unwrap();
    parsed.get("commit_status").is_some() || parsed.get("deploy_updated").is_some()
}

fn identifier_of(key: &str) -> String {
    serde_json::to_string(&json!({ "channel": "SmokeDetectorChannel", "key": key }).to_string())
        .unwrap()
}

/// Broadcasts `message` and waits until `smokey` has it; returns the time it took.
async fn broadcast_and_wait(
    metasmoke: &RailsMetasmoke,
    smokey: &SmokeyLike,
    message: Value,
    patience: Duration,
) -> Duration {
    let start = Instant::now();
    metasmoke.broadcast(&message).await;
    let arrived = smokey
        .wait_for(start + patience, |got| got.contains(&message))
        .await;
    assert!(
        arrived,
        "{message} did not reach the Smokey within {patience:?}"
    );
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_broadcast_reaches_each_smokey_once_as_rails_sent_it() {
    let metasmoke = RailsMetasmoke::start(&[BRIDGE_KEY, OTHER_MS_KEY]).await;
    let relay = Relay::start(&metasmoke).await;
    let (a, b) = (
        SmokeyLike::start(relay.port, KEY_A),
        SmokeyLike::start(relay.port, KEY_B),
    );
    smokeys_subscribed(&[&a, &b]).await;
    confirmed(&metasmoke, 1, Duration::from_secs(10)).await;
    let mut direct = Direct::subscribe(&metasmoke, OTHER_MS_KEY).await;
    confirmed(&metasmoke, 2, Duration::from_secs(10)).await;

    let mut sent_by_rails = Vec::new();
    for message in metasmokes_broadcasts() {
        metasmoke.broadcast(&message).await;
        sent_by_rails.push(direct.next_broadcast().await);
    }
    assert!(
        sent_by_rails
            .iter()
            .any(|m| m.contains(r"\u003cb\u003e") && m.contains(r"\u0026")),
        "Rails escapes <>& (ActiveSupport's JSON): {sent_by_rails:?}"
    );
    assert!(
        sent_by_rails.iter().any(|m| m.contains(r"\u2028")),
        "Rails escapes U+2028: {sent_by_rails:?}"
    );
    // ActionCable hands each broadcast to a connection through its worker pool (four
    // threads), so two broadcasts may reach two sockets in different orders: what counts
    // is that each arrives once, byte for byte.
    let mut expected: Vec<String> = sent_by_rails
        .iter()
        .filter(|m| !is_build_frame(m))
        .cloned()
        .collect();
    expected.sort();
    for (smokey, key) in [(&a, KEY_A), (&b, KEY_B)] {
        let deadline = Instant::now() + Duration::from_secs(10);
        while smokey.raw_messages().len() < expected.len() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // Anything sent twice would arrive right behind.
        tokio::time::sleep(Duration::from_millis(500)).await;
        let mut got = smokey.raw_messages();
        got.sort();
        assert_eq!(
            got, expected,
            "each broadcast once, byte for byte as Rails sent it, metasmoke's own \
             commit_status and deploy_updated left out"
        );
        let own = identifier_of(key);
        assert!(
            smokey.identifiers().iter().all(|id| *id == own),
            "every frame under the Smokey's own identifier"
        );
    }

    let seen = metasmoke.seen().await;
    assert_eq!(
        seen["connections"], 2,
        "the bridge and the direct subscriber: {seen}"
    );
    assert_eq!(seen["most_open"], 2, "{seen}");
    assert_eq!(
        seen["origins"][0], ORIGIN,
        "the bridge sends METASMOKE_ORIGIN: {seen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_restart_is_resubscribed_within_10_s_and_nothing_comes_twice() {
    let metasmoke = RailsMetasmoke::start(&[BRIDGE_KEY]).await;
    let relay = Relay::start(&metasmoke).await;
    let smokey = SmokeyLike::start(relay.port, KEY_A);
    smokeys_subscribed(&[&smokey]).await;
    confirmed(&metasmoke, 1, Duration::from_secs(10)).await;
    let before = json!({ "fp": { "post_link": "//stackoverflow.com/a/before-restart" } });
    broadcast_and_wait(&metasmoke, &smokey, before.clone(), Duration::from_secs(5)).await;

    // ActionCable.server.restart: every socket gets {"type":"disconnect",
    // "reason":"server_restart","reconnect":true} and is closed.
    metasmoke.restart().await;
    let resubscribed = confirmed(&metasmoke, 2, Duration::from_secs(10)).await;
    let after = json!({ "naa": { "post_link": "//stackoverflow.com/a/after-restart" } });
    broadcast_and_wait(&metasmoke, &smokey, after.clone(), Duration::from_secs(5)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    assert_eq!(smokey.messages(), [before, after], "each once, none twice");
    assert_eq!(
        smokey.confirmed(),
        1,
        "the Smokey's socket was never dropped"
    );
    let seen = metasmoke.seen().await;
    assert_eq!(
        seen["connections"], 2,
        "one socket before, one after: {seen}"
    );
    assert_eq!(seen["most_open"], 1, "one connection at a time: {seen}");
    println!("server_restart: resubscribed {resubscribed:?} after the restart");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metasmoke_killed_and_back_is_resubscribed_while_smokeys_stay_connected() {
    let port = free_port();
    let mut metasmoke = RailsMetasmoke::start_on(port, &[BRIDGE_KEY]).await;
    let relay = Relay::start(&metasmoke).await;
    let smokey = SmokeyLike::start(relay.port, KEY_A);
    smokeys_subscribed(&[&smokey]).await;
    confirmed(&metasmoke, 1, Duration::from_secs(10)).await;

    let killed = Instant::now();
    metasmoke.kill();
    tokio::time::sleep(Duration::from_secs(12)).await;
    metasmoke.start_again().await;
    let back = Instant::now();
    let resubscribed = confirmed(&metasmoke, 1, Duration::from_secs(30)).await;
    let message =
        json!({ "report": { "user": "after the outage", "post_link": "//stackoverflow.com/q/5" } });
    broadcast_and_wait(&metasmoke, &smokey, message.clone(), Duration::from_secs(5)).await;

    let pings: Vec<Instant> = smokey
        .pings()
        .into_iter()
        .filter(|at| *at >= killed)
        .collect();
    let longest_gap = pings
        .windows(2)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap();
    assert!(
        pings
            .first()
            .is_some_and(|first| *first - killed < Duration::from_secs(4)),
        "pings went on right after the kill"
    );
    assert!(
        longest_gap < Duration::from_secs(5),
        "pings every 3 s throughout, longest gap {longest_gap:?}"
    );
    assert_eq!(smokey.confirmed(), 1, "the Smokey's socket stayed open");
    assert_eq!(smokey.messages(), [message]);
    let seen = metasmoke.seen().await;
    assert_eq!(
        seen["connections"], 1,
        "one socket to the new process: {seen}"
    );
    println!(
        "killed for {:?}: resubscribed {resubscribed:?} after metasmoke was back; longest ping gap {longest_gap:?}",
        back - killed
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_key_is_retried_with_capped_backoff_until_it_is_valid_again() {
    let mut metasmoke = RailsMetasmoke::start(&[BRIDGE_KEY]).await;
    let mut relay = Relay::start(&metasmoke).await;
    let smokey = SmokeyLike::start(relay.port, KEY_A);
    smokeys_subscribed(&[&smokey]).await;
    confirmed(&metasmoke, 1, Duration::from_secs(10)).await;

    // The key is revoked; the restart makes the bridge subscribe again.
    metasmoke.set_keys(&[]).await;
    metasmoke.restart().await;
    let reconnects = |relay: &Relay| relay.logged("metasmoke bridge: reconnecting");
    let deadline = Instant::now() + Duration::from_secs(90);
    while !reconnects(&relay)
        .iter()
        .any(|line| line["retry_in_ms"] == 60_000)
    {
        assert!(
            Instant::now() < deadline,
            "no wait reached the 60 s cap: {:?}",
            reconnects(&relay)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let waits: Vec<(String, u64)> = reconnects(&relay)
        .iter()
        .map(|line| {
            let end = line["end"].as_str().unwrap().to_string();
            (end, line["retry_in_ms"].as_u64().unwrap())
        })
        .collect();
    let expected: Vec<(String, u64)> = std::iter::once(("Dropped", 1_000))
        .chain([2_000, 4_000, 8_000, 16_000, 32_000, 60_000].map(|ms| ("Rejected", ms)))
        .map(|(end, ms)| (end.to_string(), ms))
        .collect();
    assert_eq!(
        waits, expected,
        "the restart drops the socket; then every attempt is rejected, the wait doubling from \
         2 s and capped at 60 s"
    );
    let rejected = metasmoke.seen().await["rejected"].as_u64().unwrap();
    assert_eq!(
        relay
            .logged("metasmoke bridge: subscription rejected")
            .len() as u64,
        rejected,
        "logged once per attempt"
    );
    assert!(relay.running(), "relay-local stays up");
    assert_eq!(smokey.confirmed(), 1, "the Smokey stayed connected");

    metasmoke.set_keys(&[BRIDGE_KEY]).await;
    let valid_again = Instant::now();
    let resubscribed = confirmed(&metasmoke, 2, Duration::from_secs(70)).await;
    let message = json!({ "fp": { "post_link": "//stackoverflow.com/a/key-valid-again" } });
    broadcast_and_wait(&metasmoke, &smokey, message.clone(), Duration::from_secs(5)).await;
    let flowing = valid_again.elapsed();
    assert!(
        flowing < Duration::from_secs(70),
        "frames flow within 70 s of the key being valid again, took {flowing:?}"
    );
    assert_eq!(smokey.messages(), [message]);
    let seen = metasmoke.seen().await;
    assert_eq!(seen["most_open"], 1, "one connection at a time: {seen}");
    println!(
        "rejected {rejected} times; subscribed {resubscribed:?} after the key was valid again; a frame flowed {flowing:?} after"
    );
}

/// A @connections API for runs with nobody connected: never called.
struct Nobody;

#[async_trait::async_trait]
impl build_relay::broadcast::ConnectionsApi for Nobody {
    async fn post(&self, _: &str, _: &str) -> Result<(), build_relay::broadcast::PostError> {
        Err(build_relay::broadcast::PostError::Gone)
    }
}

/// The keepalive function's scheduled runs, as AWS starts them (one a period, each held a
/// period plus the overlap), scaled down: a 4 s period and a 2 s overlap.
fn scheduled_run(
    store: std::sync::Arc<dyn build_relay::store::Store>,
    metasmoke: &RailsMetasmoke,
) -> build_relay::handlers::keepalive::ScheduledRun {
    use build_relay::bridge::{Bridge, Timings};
    use build_relay::broadcast::Broadcaster;
    use build_relay::config::{BRIDGE_SKIP_DEFAULT, BridgeConfig, Secret};
    use build_relay::handlers::keepalive::{Keepalive, ScheduledRun};
    let clock = build_relay::clock::system();
    let broadcaster = Broadcaster::new(store, std::sync::Arc::new(Nobody), clock.clone());
    ScheduledRun {
        keepalive: Keepalive {
            broadcaster: broadcaster.clone(),
            interval: Duration::from_secs(1),
            clock,
        },
        window: Duration::from_secs(4),
        bridge: Some(Bridge {
            config: BridgeConfig {
                url: metasmoke.cable_url(),
                key: Secret::new(BRIDGE_KEY),
                origin: ORIGIN.into(),
                skip: BRIDGE_SKIP_DEFAULT.map(String::from).to_vec(),
            },
            timings: Timings::default(),
            broadcaster,
        }),
        overlap: Duration::from_secs(2),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_keepalive_runs_hand_the_socket_over_and_lose_no_frame() {
    use build_relay::store::Store;
    let metasmoke = RailsMetasmoke::start(&[BRIDGE_KEY]).await;
    let store: std::sync::Arc<dyn Store> =
        std::sync::Arc::new(build_relay::store::embedded::EmbeddedStore::in_memory());
    let runs: u32 = 3;
    let started = Instant::now();
    let mut handles = Vec::new();
    for n in 0..runs {
        let run = scheduled_run(store.clone(), &metasmoke);
        handles.push(tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(4) * n).await;
            run.run().await
        }));
    }
    confirmed(&metasmoke, 1, Duration::from_secs(5)).await;
    // Broadcast every 200 ms, and sample how many sockets metasmoke has open, until the
    // last run has been subscribed for a while.
    let (mut sent, mut two_open, mut samples) = (Vec::new(), Duration::ZERO, 0);
    let mut n = 0;
    while started.elapsed() < Duration::from_secs(4 * runs as u64 - 1) {
        let message = json!({ "fp": { "post_link": format!("//stackoverflow.com/a/{n}") } });
        metasmoke.broadcast(&message).await;
        sent.push(message.to_string());
        n += 1;
        let seen = metasmoke.seen().await;
        if seen["open"] == 2 {
            two_open += Duration::from_millis(200);
        }
        samples += 1;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let reports: Vec<_> = futures_util::future::join_all(handles)
        .await
        .into_iter()
        .map(|r| r.unwrap().bridge.unwrap())
        .collect();

    let stored: Vec<String> = store
        .outbox_after(0, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            serde_json::from_str::<Value>(&e.message)
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(
        stored, sent,
        "every frame forwarded once, in order, across the handovers"
    );
    let seen = metasmoke.seen().await;
    assert_eq!(seen["connections"], runs, "one socket a run: {seen}");
    assert!(seen["most_open"].as_u64().unwrap() <= 2, "{seen}");
    assert!(
        reports[..runs as usize - 1].iter().all(|r| r.handed_over),
        "each run but the last let go for the next: {reports:?}"
    );
    // Each handover holds two sockets for about a second (WATCH_EVERY); without it the
    // runs would overlap for the whole 2 s overlap.
    assert!(
        two_open <= Duration::from_millis(1600) * (runs - 1),
        "two sockets for {two_open:?} in all ({samples} samples)"
    );
    println!(
        "{runs} overlapping runs: {} connections, two sockets open in {} of {samples} samples (~{two_open:?})",
        seen["connections"],
        two_open.as_millis() / 200
    );
}
