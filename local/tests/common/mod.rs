//! What the tests that run `relay-local` as a process share. Each test file uses part.
#![allow(dead_code)]

pub mod metasmoke;

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

/// A name part no other test run uses: this process and the time in nanoseconds.
pub fn unique_suffix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{}-{nanos}", std::process::id())
}

/// Points `command` at moto's DynamoDB on `endpoint`, tables `PREFIX-main-SUFFIX` and
/// `PREFIX-connections-SUFFIX`, with the fake credentials local servers take.
pub fn use_moto(command: &mut Command, endpoint: &str, prefix: &str, suffix: &str) {
    command
        .env("AWS_ENDPOINT_URL_DYNAMODB", endpoint)
        .env("TABLE_NAME", format!("{prefix}-main-{suffix}"))
        .env(
            "CONNECTIONS_TABLE",
            format!("{prefix}-connections-{suffix}"),
        )
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true");
}

/// POSTs `body` to relay-local's `route` as GitHub delivers event `event`, signed with
/// `secret`; returns the answer's status and text.
pub async fn deliver(
    port: u16,
    route: &str,
    event: &str,
    delivery: &str,
    secret: &str,
    body: Vec<u8>,
) -> (u16, String) {
    use build_relay::intake;
    let answer = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}{route}"))
        .header("content-type", "application/json")
        .header(intake::EVENT_HEADER, event)
        .header(intake::DELIVERY_HEADER, delivery)
        .header(
            intake::SIGNATURE_HEADER,
            intake::sign(secret.as_bytes(), &body),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    (answer.status().as_u16(), answer.text().await.unwrap())
}

/// CI fails on the deploy commit of `local/samples/status-deploy-success.json`: a
/// `commit_status` verdict for every subscribed Smokey. Returns the answer's status and text.
pub async fn fail_the_deploy_commit(port: u16, secret: &str) -> (u16, String) {
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/status-deploy-success.json");
    let mut status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    status["state"] = "failure".into();
    let body = serde_json::to_vec(&status).unwrap();
    let delivery = format!("deploy-failed-{}", unique_suffix());
    deliver(
        port,
        "/github/status_hook",
        "status",
        &delivery,
        secret,
        body,
    )
    .await
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

/// A client that connects and reconnects as SmokeDetector's `metasmoke.py` does, and keeps
/// every frame with a `message` it receives (pings and replies to subscribe left out).
///
/// Smokey sends its subscribe right after connecting and reads with a 10 s timeout. A close
/// frame makes websocket-client's `recv()` return an empty string, which fails to parse:
/// Smokey then reconnects at once. A failed connect, a read timeout, a broken socket or a
/// rejection send it to its outer handler, which waits 10 s before connecting again.
pub struct SmokeyLike {
    frames: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pings: std::sync::Arc<std::sync::Mutex<Vec<Instant>>>,
    confirmed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

/// Smokey's read timeout, and its wait before reconnecting after a failure.
pub const SMOKEY_TIMEOUT: Duration = Duration::from_secs(10);

impl SmokeyLike {
    pub fn start(port: u16, key: &str) -> Self {
        let frames = std::sync::Arc::default();
        let pings = std::sync::Arc::default();
        let confirmed = std::sync::Arc::default();
        let task = tokio::spawn(smokey_loop(
            format!("ws://127.0.0.1:{port}/cable"),
            key.to_string(),
            Seen {
                frames: std::sync::Arc::clone(&frames),
                pings: std::sync::Arc::clone(&pings),
                confirmed: std::sync::Arc::clone(&confirmed),
            },
        ));
        Self {
            frames,
            pings,
            confirmed,
            task,
        }
    }

    /// When each ping arrived.
    pub fn pings(&self) -> Vec<Instant> {
        self.pings.lock().unwrap().clone()
    }

    /// How many subscriptions were confirmed so far.
    pub fn confirmed(&self) -> usize {
        self.confirmed.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The `message` of every frame received so far, in order.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        self.raw_messages()
            .iter()
            .map(|m| serde_json::from_str(m).unwrap())
            .collect()
    }

    /// The `message` of every frame received so far, as the bytes that came.
    pub fn raw_messages(&self) -> Vec<String> {
        let frames = self.frames.lock().unwrap();
        frames.iter().filter_map(|f| raw_message(f)).collect()
    }

    /// The `identifier` of every frame received so far.
    pub fn identifiers(&self) -> Vec<String> {
        let frames = self.frames.lock().unwrap();
        frames
            .iter()
            .map(|f| {
                serde_json::from_str::<serde_json::Value>(f).unwrap()["identifier"].to_string()
            })
            .collect()
    }

    /// Waits until `done` holds of the messages, or `deadline` passes; whether it held.
    pub async fn wait_for(
        &self,
        deadline: Instant,
        done: impl Fn(&[serde_json::Value]) -> bool,
    ) -> bool {
        while Instant::now() < deadline {
            if done(&self.messages()) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        done(&self.messages())
    }
}

impl Drop for SmokeyLike {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the client's loop writes down.
struct Seen {
    frames: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    pings: std::sync::Arc<std::sync::Mutex<Vec<Instant>>>,
    confirmed: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

async fn smokey_loop(url: String, key: String, seen: Seen) {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    let identifier = serde_json::json!({ "channel": "SmokeDetectorChannel", "key": key });
    let subscribe =
        serde_json::json!({ "command": "subscribe", "identifier": identifier.to_string() })
            .to_string();
    let mut wait = Duration::ZERO;
    loop {
        tokio::time::sleep(wait).await;
        wait = SMOKEY_TIMEOUT;
        let Ok((mut socket, _)) = tokio_tungstenite::connect_async(&url).await else {
            continue;
        };
        if socket.send(Message::text(subscribe.clone())).await.is_err() {
            continue;
        }
        loop {
            let frame = match tokio::time::timeout(SMOKEY_TIMEOUT, socket.next()).await {
                Ok(Some(Ok(frame))) => frame,
                // Timed out, broken or ended: the outer handler, 10 s.
                _ => break,
            };
            let text = match frame {
                Message::Text(text) => text.to_string(),
                // recv() returns "" for a close frame; json.loads fails; reconnect at once.
                Message::Close(_) => {
                    wait = Duration::ZERO;
                    break;
                }
                _ => continue,
            };
            let Ok(data) = serde_json::from_str::<serde_json::Value>(&text) else {
                wait = Duration::ZERO;
                break;
            };
            match data["type"].as_str() {
                Some("confirm_subscription") => {
                    seen.confirmed
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Some("reject_subscription") => break,
                Some("ping") => seen.pings.lock().unwrap().push(Instant::now()),
                _ if data.get("message").is_some() => seen.frames.lock().unwrap().push(text),
                _ => {}
            }
        }
    }
}

/// A frame's `message`, as the JSON text in the frame.
pub fn raw_message(frame: &str) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Frame<'a> {
        #[serde(borrow)]
        message: Option<&'a serde_json::value::RawValue>,
    }
    let frame: Frame = serde_json::from_str(frame).ok()?;
    frame.message.map(|m| m.get().to_string())
}
