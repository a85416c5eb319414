//! No message lost across reconnects: the outbox, each key's cursor, and the replay on
//! resubscription. Through real sockets on the local gateway, and on the handlers with a
//! clock the test sets.

use std::sync::Arc;
use std::time::{Duration, Instant};

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use build_relay::broadcast::{Broadcaster, ConnectionsApi, PostError};
use build_relay::clock::ManualClock;
use build_relay::handlers::ws::Sockets;
use build_relay::notify::{Notifier, SmokeyMessage};
use build_relay::store::{ClientKey, Store};
use build_relay::{cable, clock, keys};
use integration_tests::cable_client::*;
use integration_tests::*;
use relay_local::Running;
use serde_json::{Value, json};

const KEY: &str = "key-for-smokey-a-0123456789";
const SHA: &str = "9049f1265b7d61be4a8904a9a27120d2064dab3b";

async fn wait_until_nobody_is_connected(gateway: &Running) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !gateway
        .store
        .connections(clock::now())
        .await
        .unwrap()
        .is_empty()
    {
        assert!(
            Instant::now() < deadline,
            "the closed socket's row is still there"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Connects and subscribes with `KEY`; the reply must be a confirmation.
async fn back(gateway: &Running) -> Client {
    let mut client = connect(gateway).await;
    let reply = subscribe(&mut client, &identifier(cable::CHANNEL, KEY)).await;
    assert!(reply.contains("confirm_subscription"), "{reply}");
    client
}

async fn away(gateway: &Running, mut client: Client) {
    client.close(None).await.unwrap();
    wait_until_nobody_is_connected(gateway).await;
}

async fn gateway(backend: Backend) -> Running {
    let keys = [("smokey-a", KEY)];
    local_gateway(
        store(backend).await,
        Duration::from_secs(60),
        no_github(),
        &keys,
    )
    .await
}

/// CI passes on the deploy commit; returns the answer's text.
async fn decide_the_verdict(gateway: &Running) -> String {
    let route = "/github/status_hook";
    let sample = "status-deploy-success.json";
    let response = post_sample(gateway, route, "status", sample, "d1").await;
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

fn is_the_verdict(frame: &str) -> bool {
    let frame: Value = serde_json::from_str(frame).unwrap();
    frame["message"]["commit_status"]["commit_sha"] == SHA
}

async fn a_verdict_decided_while_away_reaches_the_key_once_it_is_back(backend: Backend) {
    let gateway = gateway(backend).await;
    let smokey = back(&gateway).await;
    away(&gateway, smokey).await;

    let answer = decide_the_verdict(&gateway).await;
    assert!(answer.contains("0 connection(s)"), "{answer}");

    let mut smokey = back(&gateway).await;
    let frames = frames_until_quiet(&mut smokey, Duration::from_secs(1)).await;
    assert_eq!(frames.len(), 1, "the verdict, once: {frames:?}");
    assert!(is_the_verdict(&frames[0]), "{}", frames[0]);
    away(&gateway, smokey).await;

    let mut smokey = back(&gateway).await;
    assert_eq!(
        frames_until_quiet(&mut smokey, Duration::from_secs(1)).await,
        Vec::<String>::new(),
        "a key that got a frame is not sent it again"
    );
    gateway.stop().await;
}

async fn a_client_that_was_connected_is_not_sent_it_again(backend: Backend) {
    let gateway = gateway(backend).await;
    let mut smokey = back(&gateway).await;
    decide_the_verdict(&gateway).await;
    let live = next_frame(&mut smokey, Duration::from_secs(5))
        .await
        .expect("the verdict, live");
    assert!(is_the_verdict(&live));
    away(&gateway, smokey).await;

    let mut smokey = back(&gateway).await;
    assert_eq!(
        frames_until_quiet(&mut smokey, Duration::from_secs(1)).await,
        Vec::<String>::new()
    );
    gateway.stop().await;
}

/// The WebSocket handlers on `store`, posting to a recording @connections, on a clock the
/// test moves.
struct Handlers {
    sockets: Sockets,
    store: Arc<dyn Store>,
    api: Arc<RecordingApi>,
    clock: Arc<ManualClock>,
}

async fn handlers(backend: Backend) -> Handlers {
    handlers_posting_through(backend, |api, _| api).await
}

/// `handlers`, with the @connections API the test wraps around the recording one.
async fn handlers_posting_through(
    backend: Backend,
    wrap: impl FnOnce(Arc<RecordingApi>, Arc<dyn Store>) -> Arc<dyn ConnectionsApi>,
) -> Handlers {
    let store: Arc<dyn Store> = store(backend).await;
    keys::add(store.as_ref(), "smokey-a", KEY, clock::now())
        .await
        .unwrap();
    let api = Arc::new(RecordingApi::default());
    let clock = Arc::new(ManualClock::at(1_800_000_000));
    let posting = wrap(api.clone(), Arc::clone(&store));
    Handlers {
        sockets: Sockets {
            broadcaster: Broadcaster::new(Arc::clone(&store), posting, clock.clone()),
            replay_window: 3600,
        },
        store,
        api,
        clock,
    }
}

/// Stands in for a broadcast that lands between a subscription and its replay: when
/// connection `c2` is sent its confirmation, a message is added to the outbox, sent to
/// it, and its key's cursor moved, as a concurrent `notify` would.
struct BroadcastDuringSubscribe {
    recording: Arc<RecordingApi>,
    store: Arc<dyn Store>,
}

#[async_trait::async_trait]
impl ConnectionsApi for BroadcastDuringSubscribe {
    async fn post(&self, id: &str, frame: &str) -> Result<(), PostError> {
        self.recording.post(id, frame).await?;
        if id == "c2" && frame.contains("confirm_subscription") {
            let message = r#"{"message":"live"}"#;
            let seq = self
                .store
                .append_outbox(message, 1_800_000_000)
                .await
                .unwrap();
            let identifier = identifier(cable::CHANNEL, KEY);
            self.recording
                .post(id, &cable::message(&identifier, message))
                .await?;
            self.store
                .advance_cursor("smokey-a", seq, 1_800_000_000)
                .await
                .unwrap();
        }
        Ok(())
    }
}

impl Handlers {
    fn event(&self, file: &str, connection: &str) -> ApiGatewayWebsocketProxyRequest {
        let mut event: ApiGatewayWebsocketProxyRequest = event(file);
        event.request_context.connection_id = Some(connection.into());
        event
    }

    /// `$connect` then Smokey's subscribe with `KEY`; returns the `message` of every frame
    /// the connection was then sent, in order, the confirmation left out.
    async fn subscribe(&self, connection: &str) -> Vec<Value> {
        assert_eq!(
            self.sockets
                .connect(self.event("ws-connect/connect.json", connection))
                .await
                .status_code,
            200
        );
        let mut subscribe = self.event("ws-message/subscribe.json", connection);
        let identifier = identifier(cable::CHANNEL, KEY);
        subscribe.body =
            Some(json!({ "command": "subscribe", "identifier": identifier }).to_string());
        assert_eq!(self.sockets.message(subscribe).await.status_code, 200);
        let frames: Vec<Value> = self
            .api
            .posts()
            .into_iter()
            .filter(|(id, _)| id == connection)
            .map(|(_, frame)| serde_json::from_str(&frame).unwrap())
            .collect();
        assert_eq!(frames[0]["type"], "confirm_subscription", "{frames:?}");
        frames[1..].iter().map(|f| f["message"].clone()).collect()
    }

    async fn disconnect(&self, connection: &str) {
        let event = self.event("ws-disconnect/disconnect.json", connection);
        assert_eq!(self.sockets.disconnect(event).await.status_code, 200);
    }

    async fn say(&self, text: &str) {
        self.sockets
            .broadcaster
            .notify(&SmokeyMessage::Chat(text.into()))
            .await
            .unwrap();
    }
}

async fn only_what_is_inside_the_window_is_replayed_in_order(backend: Backend) {
    let h = handlers(backend).await;
    assert!(
        h.subscribe("c1").await.is_empty(),
        "a first subscription gets no replay"
    );
    h.disconnect("c1").await;

    h.say("too old").await;
    h.clock.advance(3000);
    h.say("kept 1").await;
    h.say("kept 2").await;
    h.clock.advance(601);
    h.say("kept 3").await;
    assert_eq!(
        h.subscribe("c2").await,
        [
            json!({"message": "kept 1"}),
            json!({"message": "kept 2"}),
            json!({"message": "kept 3"})
        ],
        "what is older than the window stays out; the rest comes in order"
    );
    h.disconnect("c2").await;
    assert!(h.subscribe("c3").await.is_empty(), "nothing twice");
}

async fn a_key_is_replayed_what_was_sent_after_it_was_added_and_nothing_older(backend: Backend) {
    let h = handlers(backend).await;
    h.say("sent before the key was added again").await;
    assert!(h.store.revoke_client_key("smokey-a").await.unwrap());
    keys::add(h.store.as_ref(), "smokey-a", KEY, clock::now())
        .await
        .unwrap();
    h.say("sent before its first subscription").await;
    assert_eq!(
        h.subscribe("c1").await,
        [json!({"message": "sent before its first subscription"})],
        "a new key starts where it was added, not where it first subscribes"
    );
    h.disconnect("c1").await;
    assert!(h.subscribe("c2").await.is_empty(), "nothing twice");
}

async fn a_key_without_a_cursor_starts_at_its_first_subscription(backend: Backend) {
    let h = handlers(backend).await;
    // A key stored as a version without cursors at registration stored it.
    h.store.revoke_client_key("smokey-a").await.unwrap();
    let legacy = ClientKey {
        name: "smokey-b".into(),
        key_hash: keys::hash(KEY),
        created_at: clock::now(),
    };
    assert!(h.store.add_client_key(&legacy).await.unwrap());
    h.say("before the key was ever used").await;
    assert!(h.subscribe("c1").await.is_empty());
    h.say("live").await;
    let to_c1: Vec<(String, String)> = h
        .api
        .posts()
        .into_iter()
        .filter(|(id, _)| id == "c1")
        .collect();
    assert_eq!(
        to_c1.len(),
        2,
        "the confirmation, then the live message: {to_c1:?}"
    );
    assert!(to_c1[1].1.contains("live"));
}

async fn a_broadcast_between_subscribing_and_replaying_loses_nothing(backend: Backend) {
    let h = handlers_posting_through(backend, |recording, store| {
        Arc::new(BroadcastDuringSubscribe { recording, store })
    })
    .await;
    assert!(h.subscribe("c1").await.is_empty());
    h.disconnect("c1").await;
    h.say("missed 1").await;
    h.say("missed 2").await;
    let got = h.subscribe("c2").await;
    assert_eq!(
        got,
        [
            json!({"message": "live"}),
            json!({"message": "missed 1"}),
            json!({"message": "missed 2"}),
            json!({"message": "live"}),
        ],
        "the missed messages still come; the live one may come twice"
    );
}

async fn a_window_of_zero_replays_nothing(backend: Backend) {
    let mut h = handlers(backend).await;
    h.sockets.replay_window = 0;
    assert!(h.subscribe("c1").await.is_empty());
    h.disconnect("c1").await;
    h.say("missed").await;
    assert!(h.subscribe("c2").await.is_empty(), "replay is off");
}

on_both_stores!(
    a_window_of_zero_replays_nothing,
    a_broadcast_between_subscribing_and_replaying_loses_nothing,
    a_verdict_decided_while_away_reaches_the_key_once_it_is_back,
    a_client_that_was_connected_is_not_sent_it_again,
    only_what_is_inside_the_window_is_replayed_in_order,
    a_key_is_replayed_what_was_sent_after_it_was_added_and_nothing_older,
    a_key_without_a_cursor_starts_at_its_first_subscription,
);
