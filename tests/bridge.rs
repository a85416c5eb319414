//! The metasmoke bridge in the local gateway, through real sockets: a fake metasmoke
//! ActionCable server upstream, Smokey-like clients downstream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use build_relay::bridge::Timings;
use build_relay::cable;
use build_relay::config::{BRIDGE_SKIP_DEFAULT, BridgeConfig, Secret};
use build_relay::store::Store;
use build_relay::store::embedded::EmbeddedStore;
use futures_util::StreamExt;
use integration_tests::cable_client::*;
use integration_tests::fake_metasmoke::FakeMetasmoke;
use integration_tests::*;
use relay_local::Running;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

const KEY_A: &str = "key-for-smokey-a-0123456789";
const KEY_B: &str = "key-for-smokey-b-0123456789";
const BRIDGE_KEY: &str = "the-bridges-own-metasmoke-key";

/// Every key metasmoke broadcasts that is not build infrastructure, written with the
/// spacing, escapes and number forms a re-serialisation would change.
const NON_BUILD: &[&str] = &[
    r#"{"fp": {"post_link": "//stackoverflow.com/a/1"}}"#,
    r#"{"naa":{"post_link":"//superuser.com/q/2"}}"#,
    r#"{"report":{"user":"Caf\u00e9 user","post_link":"//askubuntu.com/q/3"}}"#,
    r#"{"blacklist":{"uid":"12","site":"stackoverflow.com","post":"//stackoverflow.com/q/4"}}"#,
    r#"{"unblacklist":{"uid":"12","site":"stackoverflow.com"}}"#,
    r#"{"autoflag_fp":{"message":"fp on \"x\"","site":"stackoverflow.com"}}"#,
    r#"{"domain_whitelist":"refresh"}"#,
    r#"{"everything_is_broken":true}"#,
    r#"{"exit":{"exit":"reboot"}}"#,
    r#"{"message":"[ [metasmoke](//m.s.com) ] feedback: tp 1.50e2 times"}"#,
];

const BUILD: &[&str] = &[
    r#"{"commit_status":{"status":"success","ci_url":null,"commit_sha":"abc","commit_message":"m"}}"#,
    r#"{"deploy_updated":{"ref":"refs/heads/deploy"}}"#,
];

/// Short limits, so that reconnects happen within a test's patience.
fn quick() -> Timings {
    Timings {
        silence: Duration::from_millis(1500),
        first_retry: Duration::from_millis(200),
        max_retry: Duration::from_secs(1),
        dedupe_horizon: 15,
    }
}

async fn bridged_gateway(
    store: Arc<dyn Store>,
    upstream: &FakeMetasmoke,
    ping: Duration,
) -> Running {
    let mut options = gateway_options(
        store,
        ping,
        no_github(),
        &[("smokey-a", KEY_A), ("smokey-b", KEY_B)],
    );
    options.bridge = Some(BridgeConfig {
        url: upstream.url(),
        key: Secret::new(BRIDGE_KEY),
        origin: format!("https://{}", upstream.addr),
        skip: BRIDGE_SKIP_DEFAULT.map(String::from).to_vec(),
    });
    options.bridge_timings = quick();
    relay_local::Gateway::start(options).await.unwrap()
}

async fn subscribed(gateway: &Running, key: &str) -> (Client, String) {
    let id = identifier(cable::CHANNEL, key);
    let mut client = connect(gateway).await;
    assert!(
        subscribe(&mut client, &id)
            .await
            .contains("confirm_subscription")
    );
    (client, id)
}

fn framed(identifier: &str, message: &str) -> String {
    format!(
        r#"{{"identifier":{},"message":{message}}}"#,
        serde_json::to_string(identifier).unwrap()
    )
}

async fn non_build_frames_reach_every_client_byte_for_byte(backend: Backend) {
    let upstream = FakeMetasmoke::start(BRIDGE_KEY).await;
    let gateway = bridged_gateway(store(backend).await, &upstream, Duration::from_secs(60)).await;
    let (mut a, id_a) = subscribed(&gateway, KEY_A).await;
    let (mut b, id_b) = subscribed(&gateway, KEY_B).await;
    upstream.wait_for_confirmed(1, Duration::from_secs(5)).await;

    for message in NON_BUILD.iter().chain(BUILD) {
        upstream.broadcast(message);
    }
    for (client, id) in [(&mut a, &id_a), (&mut b, &id_b)] {
        let got = frames_until_quiet(client, Duration::from_millis(1500)).await;
        let expected: Vec<String> = NON_BUILD.iter().map(|m| framed(id, m)).collect();
        assert_eq!(
            got, expected,
            "every non-build frame once, in order, unchanged"
        );
    }
    assert_eq!(
        upstream.connections(),
        1,
        "one upstream socket serves every client"
    );
    let origin = format!("https://{}", upstream.addr);
    assert_eq!(upstream.origins(), [Some(origin)]);
    gateway.stop().await;
}

/// The store fails for a moment from each of a forward's store calls on in turn (storing
/// the frame with its fingerprint, reading the connections, moving the cursor): every
/// frame still reaches the client, once.
async fn a_store_failure_at_any_point_of_a_forward_loses_nothing(backend: Backend) {
    let upstream = FakeMetasmoke::start(BRIDGE_KEY).await;
    let store = Arc::new(SwitchableStore::new(store(backend).await));
    let gateway = bridged_gateway(store.clone(), &upstream, Duration::from_secs(60)).await;
    let (mut a, id_a) = subscribed(&gateway, KEY_A).await;
    upstream.wait_for_confirmed(1, Duration::from_secs(5)).await;
    // The subscription's own store calls are over before counting a forward's.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = store.calls();
    upstream.broadcast(NON_BUILD[0]);
    assert_eq!(
        frames_until_quiet(&mut a, Duration::from_millis(500)).await,
        [framed(&id_a, NON_BUILD[0])]
    );
    let calls = store.calls() - before;
    assert!(
        calls >= 3,
        "store, read the connections, move the cursor: {calls}"
    );
    for point in 0..calls {
        let message = format!(r#"{{"fp":{{"post_link":"//stackoverflow.com/a/outage-{point}"}}}}"#);
        store.crash_after(point);
        upstream.broadcast(&message);
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(store.crashed(), "the failure at call {point} was reached");
        store.recover();
        assert_eq!(
            frames_until_quiet(&mut a, Duration::from_millis(1500)).await,
            [framed(&id_a, &message)],
            "a store failure from call {point} of {calls} on: the frame arrives once"
        );
    }
    gateway.stop().await;
}

on_both_stores!(
    non_build_frames_reach_every_client_byte_for_byte,
    a_store_failure_at_any_point_of_a_forward_loses_nothing,
);

#[tokio::test]
async fn an_empty_skip_list_forwards_build_keys_too() {
    let upstream = FakeMetasmoke::start(BRIDGE_KEY).await;
    let mut options = gateway_options(
        Arc::new(EmbeddedStore::in_memory()),
        Duration::from_secs(60),
        no_github(),
        &[("smokey-a", KEY_A)],
    );
    options.bridge = Some(BridgeConfig {
        url: upstream.url(),
        key: Secret::new(BRIDGE_KEY),
        origin: "https://metasmoke.example".into(),
        skip: Vec::new(),
    });
    let gateway = relay_local::Gateway::start(options).await.unwrap();
    let (mut a, id_a) = subscribed(&gateway, KEY_A).await;
    upstream.wait_for_confirmed(1, Duration::from_secs(5)).await;
    upstream.broadcast(BUILD[0]);
    assert_eq!(
        next_frame(&mut a, Duration::from_secs(5)).await,
        Some(framed(&id_a, BUILD[0]))
    );
    assert_eq!(
        upstream.origins(),
        [Some("https://metasmoke.example".into())]
    );
    gateway.stop().await;
}

/// Waits until `condition` holds and at least `least` has passed, reading (and counting the
/// pings of) `client` meanwhile.
async fn until(
    client: &mut Client,
    least: Duration,
    what: &str,
    condition: impl Fn() -> bool,
) -> usize {
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    let mut pings = 0;
    while !condition() || started.elapsed() < least {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        if let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout(Duration::from_millis(100), client.next()).await
        {
            let frame: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(frame["type"], "ping", "only pings meanwhile: {text}");
            pings += 1;
        }
    }
    pings
}

/// Once `confirmed` subscriptions were made upstream in all, `message` reaches `client`.
async fn resumes(
    upstream: &FakeMetasmoke,
    client: &mut Client,
    id: &str,
    confirmed: usize,
    message: &str,
) {
    upstream
        .wait_for_confirmed(confirmed, Duration::from_secs(10))
        .await;
    upstream.broadcast(message);
    assert_eq!(
        next_frame(client, Duration::from_secs(5)).await,
        Some(framed(id, message))
    );
}

#[tokio::test]
async fn upstream_rejects_drops_and_silence_lead_to_reconnects_and_clients_are_unaffected() {
    let upstream = FakeMetasmoke::start(BRIDGE_KEY).await;
    upstream.set_rejecting(true);
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
    let gateway = bridged_gateway(store, &upstream, Duration::from_millis(500)).await;
    let (mut a, id_a) = subscribed(&gateway, KEY_A).await;

    // Rejected: it keeps trying, and the client keeps getting pings.
    let pings = until(
        &mut a,
        Duration::from_millis(1200),
        "attempts after a reject",
        || upstream.connections() >= 2,
    )
    .await;
    assert!(pings >= 1, "pings went on while upstream rejected the key");
    // Verdicts do not wait on the upstream either.
    let sample = "status-deploy-success.json";
    let answer = post_sample(&gateway, "/github/status_hook", "status", sample, "d1").await;
    assert_eq!(answer.status(), 200);
    let verdict = next_frame(&mut a, Duration::from_secs(5)).await.unwrap();
    assert!(
        verdict.contains(r#""commit_status":{"status":"success""#),
        "{verdict}"
    );
    upstream.set_rejecting(false);
    resumes(&upstream, &mut a, &id_a, 1, NON_BUILD[0]).await;

    // Dropped without a close frame: reconnected, and frames flow again.
    upstream.drop_all();
    resumes(&upstream, &mut a, &id_a, 2, NON_BUILD[1]).await;

    // Silent (the socket open, no pings): given up after the silence limit.
    upstream.set_silent(true);
    let before = upstream.connections();
    let pings = until(&mut a, Duration::ZERO, "a reconnect after silence", || {
        upstream.connections() > before
    })
    .await;
    assert!(pings >= 1, "pings went on while upstream was silent");
    upstream.set_silent(false);
    resumes(&upstream, &mut a, &id_a, 3, NON_BUILD[2]).await;
    gateway.stop().await;
}

#[tokio::test]
async fn an_oversized_upstream_message_is_refused_and_the_bridge_carries_on() {
    let upstream = FakeMetasmoke::start(BRIDGE_KEY).await;
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
    let gateway = bridged_gateway(store, &upstream, Duration::from_secs(60)).await;
    let (mut a, id_a) = subscribed(&gateway, KEY_A).await;
    upstream.wait_for_confirmed(1, Duration::from_secs(5)).await;
    let huge = format!(
        r#"{{"message":"{}"}}"#,
        "x".repeat(build_relay::bridge::MAX_UPSTREAM_MESSAGE_BYTES)
    );
    upstream.broadcast(&huge);
    // The socket that carried it is given up; the next one works as before.
    resumes(&upstream, &mut a, &id_a, 2, NON_BUILD[0]).await;
    gateway.stop().await;
}
