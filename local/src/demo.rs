//! `relay-local demo`: the product at work in one command. Starts a gateway with an
//! in-memory store, connects a client that subscribes exactly as SmokeDetector does, replays
//! signed GitHub deliveries, and prints every answer and every frame the client received.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use build_relay::config::{RelayConfig, Secret, WebhookSecrets};
use build_relay::store::embedded::EmbeddedStore;
use build_relay::{cable, intake, keys};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::gateway::{Gateway, GatewayOptions};

const SAMPLE_STATUS: &str = include_str!("../samples/status-deploy-success.json");

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One step of the demo: a delivery and what it shows.
struct Step {
    what: &'static str,
    delivery: &'static str,
    payload: Value,
    signed_with: Option<String>,
}

pub async fn run(listen: SocketAddr) -> Result<(), String> {
    let secret = keys::generate();
    let client_key = keys::generate();
    let gateway = Gateway::start(GatewayOptions {
        listen,
        store: Arc::new(EmbeddedStore::in_memory()),
        relay: RelayConfig::default(),
        secrets: WebhookSecrets {
            current: Secret::new(secret.clone()),
            previous: None,
        },
        ping_interval: Duration::from_secs(3),
        client_keys: vec![("demo-smokey".into(), client_key.clone())],
    })
    .await
    .map_err(|e| e.to_string())?;
    println!(
        "relay-local is up at {} (in-memory store, a fresh webhook secret)",
        gateway.url()
    );

    let result = replay(&gateway.url(), &gateway.cable_url(), &secret, &client_key).await;
    gateway.stop().await;
    result
}

async fn replay(url: &str, cable_url: &str, secret: &str, client_key: &str) -> Result<(), String> {
    let (mut client, _) = tokio_tungstenite::connect_async(cable_url)
        .await
        .map_err(|e| format!("cannot connect to {cable_url}: {e}"))?;
    let identifier = json!({ "channel": cable::CHANNEL, "key": client_key }).to_string();
    let subscribe = json!({ "command": "subscribe", "identifier": identifier }).to_string();
    println!("\nA client connects to {cable_url} and subscribes as SmokeDetector does:");
    println!("  client -> {}", redact(&subscribe, client_key));
    client
        .send(Message::text(subscribe))
        .await
        .map_err(|e| format!("cannot subscribe: {e}"))?;
    print_frames(&mut client, client_key).await;

    let http = reqwest::Client::new();
    let mut received = 0;
    for step in steps(secret) {
        println!("\n{}", step.what);
        let body = serde_json::to_vec(&step.payload).expect("JSON values serialize");
        let signature = intake::sign(
            step.signed_with.as_deref().unwrap_or(secret).as_bytes(),
            &body,
        );
        let response = http
            .post(format!("{url}/github/status_hook"))
            .header("content-type", "application/json")
            .header(intake::EVENT_HEADER, "status")
            .header(intake::DELIVERY_HEADER, step.delivery)
            .header(intake::SIGNATURE_HEADER, signature)
            .body(body)
            .send()
            .await
            .map_err(|e| format!("POST /github/status_hook failed: {e}"))?;
        let status = response.status();
        let reason = response.text().await.unwrap_or_default();
        println!(
            "  GitHub -> POST /github/status_hook (delivery {}): {} {}",
            step.delivery,
            status.as_u16(),
            reason.trim()
        );
        received += print_frames(&mut client, client_key).await;
    }
    println!(
        "\nThe client received {received} message(s): one commit_status, once, for the deploy commit.\n\
         Point SmokeDetector's metasmoke_ws_host at {cable_url} to use a gateway like this one\n\
         (relay-local serve; see the README)."
    );
    Ok(())
}

fn steps(secret: &str) -> Vec<Step> {
    let sample: Value = serde_json::from_str(SAMPLE_STATUS).expect("the sample is JSON");
    let with = |changes: &[(&str, Value)]| {
        let mut payload = sample.clone();
        for (key, value) in changes {
            payload[*key] = value.clone();
        }
        payload
    };
    let master_only = json!([{ "name": "master", "commit": { "sha": sample["sha"], "url": "" }, "protected": true }]);
    vec![
        Step {
            what: "1. CI starts on the deploy commit (pending): recorded, nothing sent.",
            delivery: "demo-1",
            payload: with(&[
                ("state", json!("pending")),
                ("description", json!("Your tests are queued")),
            ]),
            signed_with: None,
        },
        Step {
            what: "2. A commit that is not on deploy passes CI: recorded, nothing sent.",
            delivery: "demo-2",
            payload: with(&[("branches", master_only)]),
            signed_with: None,
        },
        Step {
            what: "3. CI passes on the deploy commit: Smokey is told (and would pull, given --autopull).",
            delivery: "demo-3",
            payload: with(&[]),
            signed_with: None,
        },
        Step {
            what: "4. GitHub redelivers the same delivery: not acted on twice.",
            delivery: "demo-3",
            payload: with(&[]),
            signed_with: None,
        },
        Step {
            what: "5. Someone without the secret posts a status: refused, nothing recorded.",
            delivery: "demo-5",
            payload: with(&[("state", json!("failure"))]),
            signed_with: Some(format!("not {secret}")),
        },
    ]
}

/// Prints what the client receives within a short wait; returns how many were messages.
async fn print_frames(client: &mut Client, client_key: &str) -> usize {
    let mut messages = 0;
    while let Ok(Some(Ok(frame))) =
        tokio::time::timeout(Duration::from_millis(400), client.next()).await
    {
        let Message::Text(text) = frame else { continue };
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if value["type"] == "ping" {
            continue;
        }
        if value.get("message").is_some() {
            messages += 1;
        }
        println!("  client <- {}", redact(&text, client_key));
    }
    messages
}

/// The demo prints frames as they are, except for the client key.
fn redact(frame: &str, client_key: &str) -> String {
    frame.replace(client_key, "<client key>")
}
