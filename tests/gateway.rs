//! The local gateway through real sockets: clients subscribe over WebSocket as Smokey does,
//! webhooks arrive over HTTP, and frames travel through the gateway's own @connections API
//! via the AWS SDK client.

use std::sync::Arc;
use std::time::{Duration, Instant};

use build_relay::broadcast::{ConnectionsApi, ManagementApi, PostError};
use build_relay::github::GitHub;
use build_relay::store::embedded::EmbeddedStore;
use build_relay::store::{Connection, Store};
use build_relay::{cable, clock};
use futures_util::{SinkExt, StreamExt};
use integration_tests::cable_client::*;
use integration_tests::fake_github::FakeGitHub;
use integration_tests::*;
use relay_local::Running;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const KEY_A: &str = "key-for-smokey-a-0123456789";
const KEY_B: &str = "key-for-smokey-b-0123456789";
const SHA: &str = "9049f1265b7d61be4a8904a9a27120d2064dab3b";

async fn gateway_with(store: Arc<dyn Store>, ping_interval: Duration) -> Running {
    gateway_on(store, ping_interval, no_github()).await
}

async fn gateway_on(
    store: Arc<dyn Store>,
    ping_interval: Duration,
    github: Arc<dyn GitHub>,
) -> Running {
    let keys = [("smokey-a", KEY_A), ("smokey-b", KEY_B)];
    local_gateway(store, ping_interval, github, &keys).await
}

/// A gateway whose pings stay out of the way of the frames a test looks for.
async fn gateway() -> Running {
    gateway_with(
        Arc::new(EmbeddedStore::in_memory()),
        Duration::from_secs(60),
    )
    .await
}

/// Waits until the store shows `count` subscribed connections (unsubscribe has no reply).
async fn wait_for_subscribers(gateway: &Running, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let connections = gateway.store.connections(clock::now()).await.unwrap();
        if connections
            .iter()
            .filter(|c| !c.subscriptions.is_empty())
            .count()
            == count
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "expected {count} subscribers: {connections:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn post_status(gateway: &Running, delivery: &str) -> reqwest::Response {
    post_sample(
        gateway,
        "/github/status_hook",
        "status",
        "status-deploy-success.json",
        delivery,
    )
    .await
}

fn expected_commit_status(identifier: &str) -> String {
    let message = "Merge pull request #1234 from Charcoal-SE/auto-blacklist-1700000000 --autopull\n\nCodertocat: Blacklist example\\.com";
    format!(
        r#"{{"identifier":{},"message":{{"commit_status":{{"status":"success","ci_url":"https://circleci.com/gh/Charcoal-SE/SmokeDetector/12345","commit_sha":"{SHA}","commit_message":{}}}}}}}"#,
        serde_json::to_string(identifier).unwrap(),
        serde_json::to_string(message).unwrap(),
    )
}

#[tokio::test]
async fn a_known_key_is_confirmed_and_others_are_rejected() {
    let gateway = gateway().await;
    let good = identifier(cable::CHANNEL, KEY_A);
    let mut smokey = connect(&gateway).await;
    assert_eq!(
        subscribe(&mut smokey, &good).await,
        format!(
            r#"{{"identifier":{},"type":"confirm_subscription"}}"#,
            serde_json::to_string(&good).unwrap()
        )
    );

    let wrong_key = identifier(cable::CHANNEL, "not-a-key-of-ours-000000");
    let wrong_channel = identifier("ApiChannel", KEY_B);
    let mut strangers = Vec::new();
    for id in [&wrong_key, &wrong_channel] {
        let mut client = connect(&gateway).await;
        assert_eq!(
            subscribe(&mut client, id).await,
            format!(
                r#"{{"identifier":{},"type":"reject_subscription"}}"#,
                serde_json::to_string(id).unwrap()
            )
        );
        strangers.push(client);
    }

    assert!(post_status(&gateway, "d1").await.status().is_success());
    assert_eq!(
        next_frame(&mut smokey, Duration::from_secs(5)).await,
        Some(expected_commit_status(&good))
    );
    for client in &mut strangers {
        assert_eq!(
            next_frame(client, Duration::from_millis(500)).await,
            None,
            "rejected clients get no broadcasts"
        );
    }
    gateway.stop().await;
}

#[tokio::test]
async fn a_status_webhook_reaches_every_subscriber_with_its_own_identifier() {
    let gateway = gateway().await;
    let (id_a, id_b) = (
        identifier(cable::CHANNEL, KEY_A),
        identifier(cable::CHANNEL, KEY_B),
    );
    let mut a = connect(&gateway).await;
    let mut b = connect(&gateway).await;
    let mut quiet = connect(&gateway).await;
    let mut left = connect(&gateway).await;
    subscribe(&mut a, &id_a).await;
    subscribe(&mut b, &id_b).await;
    subscribe(&mut left, &id_a).await;
    let unsubscribe = json!({ "command": "unsubscribe", "identifier": id_a }).to_string();
    left.send(Message::text(unsubscribe)).await.unwrap();
    wait_for_subscribers(&gateway, 2).await;

    let response = post_status(&gateway, "d1").await;
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("to 2 connection(s)")
    );

    assert_eq!(
        next_frame(&mut a, Duration::from_secs(5)).await,
        Some(expected_commit_status(&id_a))
    );
    assert_eq!(
        next_frame(&mut b, Duration::from_secs(5)).await,
        Some(expected_commit_status(&id_b))
    );
    assert_eq!(
        next_frame(&mut quiet, Duration::from_millis(500)).await,
        None
    );
    assert_eq!(
        next_frame(&mut left, Duration::from_millis(200)).await,
        None
    );

    // A redelivery is answered but sends nothing again.
    let again = post_status(&gateway, "d1").await;
    assert!(again.text().await.unwrap().contains("handled already"));
    assert_eq!(next_frame(&mut a, Duration::from_millis(500)).await, None);
    gateway.stop().await;
}

#[tokio::test]
async fn pings_alone_keep_a_ten_second_timeout_client_connected_for_thirty_seconds() {
    let gateway = gateway_with(Arc::new(EmbeddedStore::in_memory()), Duration::from_secs(3)).await;
    let mut smokey = connect(&gateway).await;
    subscribe(&mut smokey, &identifier(cable::CHANNEL, KEY_A)).await;
    let started = Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_secs(30) {
        let frame = tokio::time::timeout(Duration::from_secs(10), smokey.next())
            .await
            .expect("a frame within Smokey's 10-second timeout")
            .expect("the socket is open")
            .expect("a readable frame");
        let Message::Text(text) = frame else { continue };
        let ping: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(ping["type"], "ping", "{text}");
        assert!((ping["message"].as_i64().unwrap() - clock::now()).abs() <= 2);
        pings += 1;
    }
    assert!(pings >= 9, "{pings} pings in 30 s");
    gateway.stop().await;
}

#[tokio::test]
async fn the_gateway_runs_on_dynamodb_as_well() {
    let gateway = gateway_with(Arc::new(moto_store().await), Duration::from_secs(60)).await;
    let id_a = identifier(cable::CHANNEL, KEY_A);
    let mut a = connect(&gateway).await;
    assert!(
        subscribe(&mut a, &id_a)
            .await
            .contains("confirm_subscription")
    );
    assert_eq!(post_status(&gateway, "d1").await.status(), 200);
    assert_eq!(
        next_frame(&mut a, Duration::from_secs(5)).await,
        Some(expected_commit_status(&id_a))
    );
    gateway.stop().await;
}

#[tokio::test]
async fn a_vanished_client_is_removed_on_the_next_broadcast() {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
    let gateway = gateway_with(Arc::clone(&store), Duration::from_secs(60)).await;
    let id_a = identifier(cable::CHANNEL, KEY_A);
    let mut a = connect(&gateway).await;
    subscribe(&mut a, &id_a).await;
    // A connection whose $disconnect never arrived: its row is there, the socket is not.
    let mut ghost = Connection::new("GhostConnId0000=", Some("192.0.2.99".into()), clock::now());
    ghost
        .subscriptions
        .insert(identifier(cable::CHANNEL, KEY_B));
    store.put_connection(&ghost).await.unwrap();
    // And one that drops its TCP connection without a close frame.
    let mut dropped = connect(&gateway).await;
    subscribe(&mut dropped, &identifier(cable::CHANNEL, KEY_B)).await;
    drop(dropped);

    let response = post_status(&gateway, "d1").await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        next_frame(&mut a, Duration::from_secs(5)).await,
        Some(expected_commit_status(&id_a))
    );
    let ids = connection_ids(store.as_ref()).await;
    assert_eq!(ids.len(), 1, "only the live client is left: {ids:?}");
    gateway.stop().await;
}

#[tokio::test]
async fn junk_is_ignored_and_an_oversized_frame_closes_the_socket() {
    let gateway = gateway().await;
    let mut client = connect(&gateway).await;
    for junk in ["not json", r#"{"command":"fly","identifier":"{}"}"#, "[]"] {
        client.send(Message::text(junk)).await.unwrap();
    }
    // Still connected and still served.
    assert!(
        subscribe(&mut client, &identifier(cable::CHANNEL, KEY_A))
            .await
            .contains("confirm_subscription")
    );

    client
        .send(Message::text("x".repeat(33 * 1024)))
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match client.next().await {
                Some(Ok(Message::Close(frame))) => return frame.map(|f| u16::from(f.code)),
                Some(Ok(_)) => continue,
                _ => return None,
            }
        }
    })
    .await
    .expect("the gateway closes the socket");
    assert_eq!(closed, Some(1009));
    assert_eq!(
        gateway.closed_sockets(),
        [("frame over 32 KB", 1)].into_iter().collect()
    );
    gateway.stop().await;
}

#[tokio::test]
async fn the_connections_api_answers_as_api_gateway_does() {
    let gateway = gateway().await;
    let mut client = connect(&gateway).await;
    subscribe(&mut client, &identifier(cable::CHANNEL, KEY_A)).await;
    let id = gateway.store.connections(clock::now()).await.unwrap()[0]
        .id
        .clone();
    let api = ManagementApi::local(&gateway.url());

    api.post(&id, r#"{"type":"ping","message":1}"#)
        .await
        .unwrap();
    assert_eq!(
        next_frame(&mut client, Duration::from_millis(300)).await,
        None,
        "a ping was delivered"
    );
    assert_eq!(
        api.post("UnknownConnId000=", "{}").await,
        Err(PostError::Gone)
    );

    let http = reqwest::Client::new();
    let url = format!(
        "{}/@connections/{}",
        gateway.url(),
        id.replace('=', "%3D")
            .replace('/', "%2F")
            .replace('+', "%2B")
    );
    let described: Value = http.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(described["identity"]["sourceIp"], "127.0.0.1");
    assert!(described["connectedAt"].is_string() && described["lastActiveAt"].is_string());
    assert_eq!(http.delete(&url).send().await.unwrap().status(), 204);
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(frame)) = client.next().await {
            if let Message::Close(_) = frame {
                return true;
            }
        }
        true
    });
    assert!(closed.await.unwrap());
    let gone = http.post(&url).body("{}").send().await.unwrap();
    assert_eq!(gone.status(), 410);
    assert_eq!(gone.headers()["x-amzn-errortype"], "GoneException");
    gateway.stop().await;
}

#[tokio::test]
async fn a_push_and_an_approval_reach_clients_through_the_gateway() {
    let github = FakeGitHub::start().await;
    github.accept_deploy_moves().await;
    github
        .accept_merge(sample("github-api-pull-1234.json"))
        .await;
    let gateway = gateway_on(
        Arc::new(EmbeddedStore::in_memory()),
        Duration::from_secs(60),
        github.client(),
    )
    .await;
    let id_a = identifier(cable::CHANNEL, KEY_A);
    let mut a = connect(&gateway).await;
    subscribe(&mut a, &id_a).await;

    let pushed = post_sample(
        &gateway,
        "/github/update_deploy_to_master",
        "push",
        "push-master.json",
        "p1",
    )
    .await;
    assert_eq!(pushed.status(), 200);
    let frame: Value =
        serde_json::from_str(&next_frame(&mut a, Duration::from_secs(5)).await.unwrap()).unwrap();
    assert_eq!(frame["identifier"], json!(id_a));
    assert_eq!(
        frame["message"]["deploy_updated"]["after"],
        "9049f1265b7d61be4a8904a9a27120d2064dab3b"
    );

    let approved = post_sample(
        &gateway,
        "/github/pr_merge",
        "status",
        "status-approval.json",
        "a1",
    )
    .await;
    assert_eq!(approved.status(), 200);
    let frame: Value =
        serde_json::from_str(&next_frame(&mut a, Duration::from_secs(5)).await.unwrap()).unwrap();
    assert_eq!(
        frame["message"]["message"],
        "Merged SmokeDetector [#1234](https://github.com/Charcoal-SE/SmokeDetector/pull/1234)."
    );
    assert_eq!(github.requests("PUT", "/pulls/1234/merge").await.len(), 1);
    gateway.stop().await;
}

/// A GitHub Actions run on `/github/check_hook` decides a commit the relay deployed, with
/// `REQUIRED_CONTEXTS=workflow:build`; the same run on `/github/status_hook` is a duplicate.
#[tokio::test]
async fn a_workflow_run_on_the_check_hook_reaches_clients() {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
    store
        .mark_deployed(SHA, "push", clock::now())
        .await
        .unwrap();
    let mut options = gateway_options(
        Arc::clone(&store),
        Duration::from_secs(60),
        no_github(),
        &[("smokey-a", KEY_A)],
    );
    options.relay.required_contexts = vec!["workflow:build".into()];
    let gateway = relay_local::Gateway::start(options).await.unwrap();
    let id_a = identifier(cable::CHANNEL, KEY_A);
    let mut a = connect(&gateway).await;
    subscribe(&mut a, &id_a).await;

    let sample: Value = event("github-status/workflow-run-success.json");
    let body = sample["body"].as_str().unwrap().as_bytes().to_vec();
    for (route, delivery) in [("/github/check_hook", "w1"), ("/github/status_hook", "w2")] {
        let answer = reqwest::Client::new()
            .post(format!("{}{route}", gateway.url()))
            .headers(github_headers("workflow_run", delivery, &body, TEST_SECRET))
            .body(body.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200, "{route}");
    }
    let frames = frames_until_quiet(&mut a, Duration::from_millis(500)).await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    let frame: Value = serde_json::from_str(&frames[0]).unwrap();
    assert_eq!(frame["message"]["commit_status"]["status"], "success");
    assert_eq!(
        frame["message"]["commit_status"]["ci_url"],
        "https://github.com/Charcoal-SE/SmokeDetector/actions/runs/4242"
    );
    gateway.stop().await;
}

#[tokio::test]
async fn routes_not_in_this_build_answer_as_api_gateway_does() {
    let gateway = gateway().await;
    let response = reqwest::Client::new()
        .post(format!("{}/github/nope", gateway.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert_eq!(response.text().await.unwrap(), r#"{"message":"Not Found"}"#);
    gateway.stop().await;
}
