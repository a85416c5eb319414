//! What a hostile or unlucky world does to the relay, through real sockets: a store that
//! stops answering, clients that send half a request or never read, bodies announced too
//! large. Each test names the limit it holds the relay to.

use std::sync::Arc;
use std::time::{Duration, Instant};

use build_relay::config::RelayConfig;
use build_relay::store::Store;
use build_relay::store::dynamodb::DynamoStore;
use build_relay::store::embedded::EmbeddedStore;
use build_relay::{clock, intake};
use futures_util::{SinkExt, StreamExt};
use integration_tests::*;
use relay_local::Running;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

const KEY: &str = "key-for-smokey-a-0123456789";
/// GitHub gives up on a delivery after 10 s.
const GITHUB_PATIENCE: Duration = Duration::from_secs(10);

async fn gateway(store: Arc<dyn Store>, ping_interval: Duration) -> Running {
    local_gateway(store, ping_interval, no_github(), &[("smokey-a", KEY)]).await
}

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn subscribed_client(gateway: &Running) -> Client {
    let (mut client, _) = tokio_tungstenite::connect_async(gateway.cable_url())
        .await
        .unwrap();
    let identifier = json!({ "channel": "SmokeDetectorChannel", "key": KEY }).to_string();
    let frame = json!({ "command": "subscribe", "identifier": identifier }).to_string();
    client.send(Message::text(frame)).await.unwrap();
    loop {
        let Some(Ok(Message::Text(text))) = client.next().await else {
            panic!("no reply to subscribe");
        };
        let reply: Value = serde_json::from_str(&text).unwrap();
        if reply["type"] == "confirm_subscription" {
            return client;
        }
    }
}

async fn post(gateway: &Running, route: &str, event: &str, sample_name: &str) -> (u16, String) {
    let body = serde_json::to_vec(&sample(sample_name)).unwrap();
    let delivery = format!("{route}-{}", clock::now());
    let answer = reqwest::Client::new()
        .post(format!("{}{route}", gateway.url()))
        .headers(github_headers(event, &delivery, &body, TEST_SECRET))
        .body(body)
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

/// DynamoDB accepting connections and never answering: the SDK's timeouts end each call.
#[tokio::test]
async fn a_dynamodb_that_never_answers_gets_a_503_within_githubs_patience() {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            "testing", "testing", None, None, "tests",
        ))
        .endpoint_url(black_hole().await)
        .timeout_config(build_relay::aws::timeouts())
        .build();
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config), fresh_tables());
    let webhook = test_relay(
        RelayConfig::default(),
        Arc::new(store),
        Arc::new(FlakyNotifier::default()),
        clock::system(),
    )
    .status_hook(no_github());
    let body = serde_json::to_vec(&sample("status-deploy-success.json")).unwrap();
    let started = Instant::now();
    let answer = webhook
        .handle(&github_headers("status", "d1", &body, TEST_SECRET), body)
        .await;
    let took = started.elapsed();
    assert_eq!(answer.status.as_u16(), 503, "{answer:?}");
    assert!(took < GITHUB_PATIENCE, "answered after {took:?}");
}

/// A store that hangs outright (no timeout of its own): every webhook route still answers
/// 503 within GitHub's 10 s, through the answer budget.
#[tokio::test]
async fn every_webhook_is_answered_within_10_s_while_the_store_hangs() {
    let store = Arc::new(SwitchableStore::new(Arc::new(EmbeddedStore::in_memory())));
    let gateway = gateway(store.clone(), Duration::from_secs(60)).await;
    store.set_hanging(true);
    let started = Instant::now();
    let answers = futures_util::future::join_all([
        post(
            &gateway,
            "/github/status_hook",
            "status",
            "status-deploy-success.json",
        ),
        post(
            &gateway,
            "/github/update_deploy_to_master",
            "push",
            "push-master.json",
        ),
        post(
            &gateway,
            "/github/pull_request_hook",
            "pull_request",
            "pull-request-opened.json",
        ),
        post(
            &gateway,
            "/github/pr_merge",
            "status",
            "status-approval.json",
        ),
    ])
    .await;
    let took = started.elapsed();
    for (status, reason) in &answers {
        assert_eq!(*status, 503, "{reason}");
    }
    assert!(took < GITHUB_PATIENCE, "answered after {took:?}");
    store.set_hanging(false);
    gateway.stop().await;
}

/// Pings keep their cadence while the store does not answer for 15 s.
#[tokio::test]
async fn pings_keep_their_cadence_through_a_15_s_store_outage() {
    let store = Arc::new(SwitchableStore::new(Arc::new(EmbeddedStore::in_memory())));
    let gateway = gateway(store.clone(), Duration::from_secs(1)).await;
    let mut client = subscribed_client(&gateway).await;
    let watch = tokio::spawn(async move {
        let (mut pings, mut longest, mut last) = (0, Duration::ZERO, Instant::now());
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            let Ok(Some(Ok(Message::Text(text)))) =
                tokio::time::timeout(Duration::from_secs(5), client.next()).await
            else {
                panic!("the socket went quiet or closed");
            };
            let frame: Value = serde_json::from_str(&text).unwrap();
            if frame["type"] == "ping" {
                pings += 1;
                longest = longest.max(last.elapsed());
                last = Instant::now();
            }
        }
        (pings, longest)
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    store.set_hanging(true);
    tokio::time::sleep(Duration::from_secs(15)).await;
    store.set_hanging(false);
    let (pings, longest) = watch.await.unwrap();
    // Every second; Smokey gives up after 10 s of silence.
    assert!(pings >= 17, "{pings} pings in 20 s");
    assert!(
        longest < Duration::from_millis(2500),
        "longest gap {longest:?}"
    );
    gateway.stop().await;
}

/// A Content-Length over the limit is refused at once, before the body is sent.
#[tokio::test]
async fn an_announced_body_over_the_limit_gets_413_at_once() {
    let gateway = gateway(
        Arc::new(EmbeddedStore::in_memory()),
        Duration::from_secs(60),
    )
    .await;
    let mut socket = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let head = format!(
        "POST /github/status_hook HTTP/1.1\r\nHost: relay\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{{\"a\":",
        intake::MAX_BODY_BYTES + 1
    );
    socket.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let read = tokio::time::timeout(Duration::from_secs(2), socket.read(&mut answer))
        .await
        .expect("answered without waiting for the body")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..read]);
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    gateway.stop().await;
}

/// A request head that never completes is cut off, not held forever.
#[tokio::test]
async fn a_half_sent_request_head_is_closed_within_30_s() {
    let gateway = gateway(
        Arc::new(EmbeddedStore::in_memory()),
        Duration::from_secs(60),
    )
    .await;
    let mut socket = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    socket
        .write_all(b"POST /github/status_hook HTTP/1.1\r\nHost: relay\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "still open after 30 s");
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "closed too eagerly"
    );
    gateway.stop().await;
}

/// A subscribed client that never reads is dropped once its queue passes the bound, and
/// the relay holds no more than that for it.
#[tokio::test]
async fn a_client_that_never_reads_is_dropped_at_the_queue_bound() {
    let gateway = gateway(
        Arc::new(EmbeddedStore::in_memory()),
        Duration::from_secs(60),
    )
    .await;
    let _silent = subscribed_client(&gateway).await;
    let connections = gateway.store.connections(clock::now()).await.unwrap();
    let id = connections[0].id.clone();
    let api = build_relay::broadcast::ManagementApi::local(&gateway.url());
    let frame = format!("{{\"message\":\"{}\"}}", "x".repeat(30 * 1024));
    let mut accepted = 0;
    let mut dropped = false;
    // At 30 KB a post, 3,000 posts would be 90 MB: far past any socket buffer.
    for _ in 0..3000 {
        use build_relay::broadcast::ConnectionsApi;
        match api.post(&id, &frame).await {
            Ok(()) => accepted += 1,
            Err(build_relay::broadcast::PostError::Gone) => {
                dropped = true;
                break;
            }
            Err(e) => panic!("{e:?}"),
        }
        let queued = gateway.queued(&id).unwrap_or(0);
        assert!(
            queued <= relay_local::peers::MAX_QUEUED_BYTES,
            "{queued} bytes queued"
        );
    }
    assert!(dropped, "still connected after {accepted} posts of 30 KB");
    assert!(gateway.queued(&id).is_none(), "its queue is gone with it");
    // Closed, counted once, and forgotten by the connection list.
    let deadline = Instant::now() + Duration::from_secs(5);
    while gateway.open_sockets() > 0
        || !gateway
            .store
            .connections(clock::now())
            .await
            .unwrap()
            .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the dropped client is still listed"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        gateway.closed_sockets(),
        [("client does not read", 1)].into_iter().collect()
    );
    gateway.stop().await;
}
