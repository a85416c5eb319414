//! What the tests that run `relay-local` as a process share. Each test file uses part.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `relay-local serve` on 127.0.0.1:`port` with `secret`, no keys from the environment and
/// its output discarded; add to it, then spawn it.
pub fn serve_command(port: u16, secret: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_relay-local"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("WEBHOOK_SECRET", secret)
        .env_remove("RELAY_CLIENT_KEYS")
        .env_remove("AWS_ENDPOINT_URL_DYNAMODB")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// A client of `relay-local` on 127.0.0.1:`port`, subscribed as Smokey subscribes with
/// `key`; also returns the reply to the subscribe (pings skipped).
pub async fn smokey(
    port: u16,
    key: &str,
) -> (
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    String,
) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let url = format!("ws://127.0.0.1:{port}/cable");
    let (mut client, _) = tokio_tungstenite::connect_async(url).await.unwrap();
    let identifier = serde_json::json!({ "channel": "SmokeDetectorChannel", "key": key });
    let subscribe =
        serde_json::json!({ "command": "subscribe", "identifier": identifier.to_string() });
    client
        .send(Message::text(subscribe.to_string()))
        .await
        .unwrap();
    let reply = loop {
        match client.next().await {
            Some(Ok(Message::Text(text))) if !text.contains(r#""type":"ping""#) => break text,
            Some(Ok(_)) => continue,
            other => panic!("no reply to subscribe: {other:?}"),
        }
    };
    (client, reply.to_string())
}

/// Runs `command` with `stdin` written to its standard input; collects its output.
pub fn output_with_stdin(command: &mut Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn wait_until_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "relay-local never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
