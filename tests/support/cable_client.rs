//! A WebSocket client that speaks to the local gateway as Smokey does.

use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

pub type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

pub async fn connect(gateway: &relay_local::Running) -> Client {
    tokio_tungstenite::connect_async(gateway.cable_url())
        .await
        .unwrap()
        .0
}

/// The identifier Smokey subscribes with.
pub fn identifier(channel: &str, key: &str) -> String {
    json!({ "channel": channel, "key": key }).to_string()
}

/// Sends Smokey's subscribe frame and returns the reply frame.
pub async fn subscribe(client: &mut Client, identifier: &str) -> String {
    let frame = json!({ "command": "subscribe", "identifier": identifier }).to_string();
    client.send(Message::text(frame)).await.unwrap();
    next_frame(client, Duration::from_secs(5))
        .await
        .expect("a reply to subscribe")
}

/// The next frame that is not a ping, if one comes within `wait`.
pub async fn next_frame(client: &mut Client, wait: Duration) -> Option<String> {
    let deadline = Instant::now() + wait;
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        match tokio::time::timeout(left, client.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                let value: Value = serde_json::from_str(&text).unwrap();
                if value["type"] != "ping" {
                    return Some(text.to_string());
                }
            }
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// Every frame that is not a ping, until none comes for `quiet`.
pub async fn frames_until_quiet(client: &mut Client, quiet: Duration) -> Vec<String> {
    let mut frames = Vec::new();
    while let Some(frame) = next_frame(client, quiet).await {
        frames.push(frame);
    }
    frames
}
