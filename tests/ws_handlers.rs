//! The WebSocket functions' handlers on their own, fed the API Gateway events in `events/`,
//! with DynamoDB on moto and a recording @connections.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use build_relay::broadcast::Broadcaster;
use build_relay::handlers::keepalive::Keepalive;
use build_relay::handlers::ws::Sockets;
use build_relay::notify::{Notifier, NotifyError, SmokeyMessage};
use build_relay::store::Connections;
use build_relay::store::{Connection, Store, ttl};
use build_relay::{clock, keys};
use integration_tests::*;
use serde_json::Value;

const CONNECTION: &str = "L0SM9cOFvHcCIhw=";
const EVENTS_KEY: &str = "events-client-key-not-for-production";

struct Setup {
    store: Arc<SwitchableStore>,
    api: Arc<RecordingApi>,
    sockets: Sockets,
}

async fn setup() -> Setup {
    let store = Arc::new(SwitchableStore::new(Arc::new(moto_store().await)));
    keys::add(store.as_ref(), "events", EVENTS_KEY, clock::now())
        .await
        .unwrap();
    let api = Arc::new(RecordingApi::default());
    let sockets = Sockets {
        broadcaster: Broadcaster::new(store.clone(), api.clone(), clock::system()),
        replay_window: 3600,
    };
    Setup {
        store,
        api,
        sockets,
    }
}

fn ws(path: &str) -> ApiGatewayWebsocketProxyRequest {
    event(path)
}

fn subscribe_identifier() -> String {
    let frame: Value =
        serde_json::from_str(ws("ws-message/subscribe.json").body.as_deref().unwrap()).unwrap();
    frame["identifier"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn connect_records_the_connection_without_posting() {
    let s = setup().await;
    let before = clock::now();
    assert_eq!(
        s.sockets
            .connect(ws("ws-connect/connect.json"))
            .await
            .status_code,
        200
    );
    let connections = s.store.connections(before).await.unwrap();
    assert_eq!(connections.len(), 1);
    let row = &connections[0];
    assert_eq!(
        (row.id.as_str(), row.source_ip.as_deref()),
        (CONNECTION, Some("192.0.2.10"))
    );
    assert!(row.subscriptions.is_empty());
    assert!(row.expires_at >= before + ttl::CONNECTION && row.expires_at > before + 2 * 3600);
    assert!(
        s.api.posts().is_empty(),
        "nothing may be posted from $connect"
    );
}

#[tokio::test]
async fn subscribe_with_a_known_key_is_confirmed() {
    let s = setup().await;
    s.sockets.connect(ws("ws-connect/connect.json")).await;
    assert_eq!(
        s.sockets
            .message(ws("ws-message/subscribe.json"))
            .await
            .status_code,
        200
    );
    let identifier = subscribe_identifier();
    assert_eq!(
        s.api.posts(),
        vec![(
            CONNECTION.to_string(),
            build_relay::cable::confirm_subscription(&identifier)
        )]
    );
    let row = &s.store.connections(clock::now()).await.unwrap()[0];
    assert!(row.subscriptions.contains(&identifier));

    s.sockets.message(ws("ws-message/unsubscribe.json")).await;
    assert!(
        s.store.connections(clock::now()).await.unwrap()[0]
            .subscriptions
            .is_empty()
    );
}

#[tokio::test]
async fn subscribe_with_an_unknown_key_is_rejected() {
    let s = setup().await;
    s.sockets.connect(ws("ws-connect/connect.json")).await;
    let event = ws("ws-message/subscribe-unknown-key.json");
    let frame: Value = serde_json::from_str(event.body.as_deref().unwrap()).unwrap();
    s.sockets.message(event).await;
    let identifier = frame["identifier"].as_str().unwrap();
    assert_eq!(
        s.api.posts(),
        vec![(
            CONNECTION.to_string(),
            build_relay::cable::reject_subscription(identifier)
        )]
    );
    assert!(
        s.store.connections(clock::now()).await.unwrap()[0]
            .subscriptions
            .is_empty()
    );
}

#[tokio::test]
async fn junk_and_giant_frames_are_ignored_without_harm() {
    let s = setup().await;
    s.sockets.connect(ws("ws-connect/connect.json")).await;
    let mut giant = ws("ws-message/subscribe.json");
    giant.body = Some(format!("{}{}", giant.body.unwrap(), " ".repeat(40 * 1024)));
    let mut binary = ws("ws-message/junk.json");
    binary.body = Some("//79".into());
    binary.is_base64_encoded = true;
    for event in [ws("ws-message/junk.json"), giant, binary] {
        assert_eq!(s.sockets.message(event).await.status_code, 200);
    }
    assert!(s.api.posts().is_empty());
    assert!(
        s.store.connections(clock::now()).await.unwrap()[0]
            .subscriptions
            .is_empty()
    );
}

#[tokio::test]
async fn disconnect_deletes_the_row() {
    let s = setup().await;
    s.sockets.connect(ws("ws-connect/connect.json")).await;
    assert_eq!(
        s.sockets
            .disconnect(ws("ws-disconnect/disconnect.json"))
            .await
            .status_code,
        200
    );
    assert!(s.store.connections(clock::now()).await.unwrap().is_empty());
}

#[tokio::test]
async fn a_storage_outage_refuses_the_connection() {
    let s = setup().await;
    s.store.set_down(true);
    assert_eq!(
        s.sockets
            .connect(ws("ws-connect/connect.json"))
            .await
            .status_code,
        500
    );
    assert_eq!(
        s.sockets
            .message(ws("ws-message/subscribe.json"))
            .await
            .status_code,
        500
    );
    s.store.set_down(false);
    assert!(s.store.connections(clock::now()).await.unwrap().is_empty());
}

async fn connection(store: &dyn Store, id: &str, subscribed: bool) {
    let mut c = Connection::new(id, None, clock::now());
    if subscribed {
        c.subscriptions.insert(format!(
            "{{\"channel\":\"SmokeDetectorChannel\",\"key\":\"{id}\"}}"
        ));
    }
    store.put_connection(&c).await.unwrap();
}

#[tokio::test]
async fn broadcasts_reach_subscribers_and_clean_up_gone_connections() {
    let s = setup().await;
    for (id, subscribed) in [("a", true), ("b", true), ("idle", false), ("ghost", true)] {
        connection(s.store.as_ref(), id, subscribed).await;
    }
    s.api.gone.lock().unwrap().insert("ghost".into());
    let broadcaster = s.sockets.broadcaster.clone();
    let reach = broadcaster
        .notify(&SmokeyMessage::Chat("hello".into()))
        .await
        .unwrap();
    assert_eq!((reach.sent, reach.gone), (2, 1));
    let mut posted: Vec<String> = s.api.posts().into_iter().map(|(id, _)| id).collect();
    posted.sort();
    assert_eq!(posted, ["a", "b"]);
    let frame: Value = serde_json::from_str(&s.api.posts()[0].1).unwrap();
    assert_eq!(frame["message"]["message"], "hello");
    let left = connection_ids(s.store.as_ref()).await;
    assert!(!left.contains(&"ghost".to_string()), "{left:?}");
}

#[tokio::test]
async fn one_failing_connection_does_not_fail_the_others() {
    let s = setup().await;
    connection(s.store.as_ref(), "a", true).await;
    connection(s.store.as_ref(), "flaky", true).await;
    s.api.failing.lock().unwrap().insert("flaky".into());
    let broadcaster = s.sockets.broadcaster.clone();
    let reach = broadcaster
        .notify(&SmokeyMessage::Chat("hi".into()))
        .await
        .unwrap();
    assert_eq!((reach.sent, reach.gone, reach.failed), (1, 0, 1));
    assert_eq!(s.api.posts().len(), 1);
    assert_eq!(s.api.posts()[0].0, "a");
    assert_eq!(
        s.store.connections(clock::now()).await.unwrap().len(),
        2,
        "a failure is not a 410"
    );
}

#[tokio::test]
async fn a_broadcast_that_reached_nobody_fails_for_a_redelivery() {
    let s = setup().await;
    for id in ["a", "b"] {
        connection(s.store.as_ref(), id, true).await;
        s.api.failing.lock().unwrap().insert(id.into());
    }
    let broadcaster = s.sockets.broadcaster.clone();
    let error = broadcaster
        .notify(&SmokeyMessage::Chat("hi".into()))
        .await
        .unwrap_err();
    assert!(
        matches!(error, NotifyError::Incomplete { failed: 2, .. }),
        "{error}"
    );
}

#[tokio::test]
async fn an_oversized_identifier_is_refused_and_blocks_nobody() {
    let s = setup().await;
    connection(s.store.as_ref(), "big", false).await;
    connection(s.store.as_ref(), "a", true).await;
    let huge = format!(
        r#"{{"channel":"SmokeDetectorChannel","key":"{EVENTS_KEY}","pad":"{}"}}"#,
        "x".repeat(32 * 1024 - 200)
    );
    let frame = serde_json::json!({ "command": "subscribe", "identifier": huge }).to_string();
    let mut event: ApiGatewayWebsocketProxyRequest = event("ws-message/subscribe.json");
    event.request_context.connection_id = Some("big".into());
    event.body = Some(frame);
    assert_eq!(s.sockets.message(event).await.status_code, 200);
    let rows = s.store.connections(clock::now()).await.unwrap();
    let big = rows.iter().find(|c| c.id == "big").unwrap();
    assert!(big.subscriptions.is_empty(), "not subscribed");
    let replies = s.api.posts();
    assert_eq!(replies.len(), 1);
    let reply: Value = serde_json::from_str(&replies[0].1).unwrap();
    assert_eq!(reply["type"], "reject_subscription");
    let broadcaster = s.sockets.broadcaster.clone();
    let reach = broadcaster
        .notify(&SmokeyMessage::Chat("hi".into()))
        .await
        .unwrap();
    assert_eq!((reach.sent, reach.failed), (1, 0));
    assert_eq!(s.api.posts()[1].0, "a");
}

#[tokio::test]
async fn a_subscription_whose_frames_would_not_fit_is_skipped_not_fatal() {
    // A row written before the identifier limit existed: skipped, counted, others served.
    let s = setup().await;
    connection(s.store.as_ref(), "a", true).await;
    let mut legacy = Connection::new("legacy", None, clock::now());
    legacy.subscriptions.insert("x".repeat(32 * 1024));
    s.store.put_connection(&legacy).await.unwrap();
    let broadcaster = s.sockets.broadcaster.clone();
    let reach = broadcaster
        .notify(&SmokeyMessage::Chat("hi".into()))
        .await
        .unwrap();
    assert_eq!((reach.sent, reach.failed), (1, 1));
}

#[tokio::test]
async fn frames_over_32_kb_are_refused() {
    let s = setup().await;
    connection(s.store.as_ref(), "a", true).await;
    let broadcaster = s.sockets.broadcaster.clone();
    let huge = SmokeyMessage::Chat("x".repeat(40 * 1024));
    assert!(matches!(
        broadcaster.notify(&huge).await,
        Err(NotifyError::TooLarge(_))
    ));
    assert!(s.api.posts().is_empty());
}

#[tokio::test]
async fn keepalive_pings_every_connection_each_interval() {
    let s = setup().await;
    for (id, subscribed) in [("a", true), ("idle", false), ("ghost", false)] {
        connection(s.store.as_ref(), id, subscribed).await;
    }
    s.api.gone.lock().unwrap().insert("ghost".into());
    let keepalive = Keepalive {
        broadcaster: s.sockets.broadcaster.clone(),
        interval: Duration::from_millis(400),
        clock: clock::system(),
    };
    let report = keepalive.run_for(Duration::from_millis(1200)).await;
    assert_eq!(
        (
            report.rounds,
            report.sent,
            report.gone,
            report.failed,
            report.stale_rounds
        ),
        (3, 6, 1, 0, 0)
    );
    for (_, frame) in s.api.posts() {
        let ping: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(ping["type"], "ping");
        assert!((ping["message"].as_i64().unwrap() - clock::now()).abs() < 5);
    }
}

#[tokio::test]
async fn a_client_vanishing_during_a_store_outage_does_not_hold_up_pings() {
    let s = setup().await;
    connection(s.store.as_ref(), "a", true).await;
    connection(s.store.as_ref(), "ghost", false).await;
    let keepalive = Keepalive {
        broadcaster: s.sockets.broadcaster.clone(),
        interval: Duration::from_millis(400),
        clock: clock::system(),
    };
    let run = tokio::spawn(async move { keepalive.run_for(Duration::from_millis(2000)).await });
    // After the first round: the store stops answering and the ghost's socket goes away.
    tokio::time::sleep(Duration::from_millis(100)).await;
    s.store.set_hanging(true);
    s.api.gone.lock().unwrap().insert("ghost".into());
    let report = tokio::time::timeout(Duration::from_secs(6), run)
        .await
        .expect("a ping round waited on the store")
        .unwrap();
    s.store.set_hanging(false);
    assert_eq!((report.rounds, report.stale_rounds, report.gone), (5, 4, 1));
    let to_a = s.api.posts().iter().filter(|(id, _)| id == "a").count();
    assert_eq!(to_a, 5, "every round pinged the live client");
}
