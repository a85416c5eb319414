//! A stand-in for metasmoke's ActionCable server at `/cable`, as ActionCable 5.2 speaks:
//! `welcome` on connect, a `ping` every `PING_EVERY`, `confirm_subscription` or
//! `reject_subscription` for a subscribe to `SmokeDetectorChannel`, and broadcasts as
//! `{"identifier":...,"message":...}` to every confirmed subscriber. Tests can make it
//! reject keys, fall silent, or drop every socket.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// Faster than metasmoke's 3 s, so that tests can use a short silence limit.
pub const PING_EVERY: Duration = Duration::from_millis(300);

struct State {
    key: String,
    rejecting: AtomicBool,
    silent: AtomicBool,
    connections: AtomicUsize,
    confirmed: AtomicUsize,
    origins: Mutex<Vec<Option<String>>>,
    messages: broadcast::Sender<String>,
    drops: broadcast::Sender<()>,
}

pub struct FakeMetasmoke {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeMetasmoke {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeMetasmoke {
    /// A server on a free 127.0.0.1 port that accepts subscriptions with `key`.
    pub async fn start(key: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            key: key.to_string(),
            rejecting: AtomicBool::new(false),
            silent: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            confirmed: AtomicUsize::new(0),
            origins: Mutex::new(Vec::new()),
            messages: broadcast::channel(1024).0,
            drops: broadcast::channel(16).0,
        });
        let shared = Arc::clone(&state);
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, Arc::clone(&shared)));
            }
        });
        Self { addr, state, task }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/cable", self.addr)
    }

    /// Sends `message` (JSON text, placed as is) to every confirmed subscriber.
    pub fn broadcast(&self, message: &str) {
        let _ = self.state.messages.send(message.to_string());
    }

    pub fn set_rejecting(&self, rejecting: bool) {
        self.state.rejecting.store(rejecting, Ordering::SeqCst);
    }

    /// Silent: no pings, no broadcasts, the socket left open.
    pub fn set_silent(&self, silent: bool) {
        self.state.silent.store(silent, Ordering::SeqCst);
    }

    /// Closes every socket without a close frame.
    pub fn drop_all(&self) {
        let _ = self.state.drops.send(());
    }

    /// Sockets accepted so far.
    pub fn connections(&self) -> usize {
        self.state.connections.load(Ordering::SeqCst)
    }

    /// Subscriptions confirmed so far.
    pub fn confirmed(&self) -> usize {
        self.state.confirmed.load(Ordering::SeqCst)
    }

    /// The `Origin` header of every socket, in order.
    pub fn origins(&self) -> Vec<Option<String>> {
        self.state.origins.lock().unwrap().clone()
    }

    /// Waits until `count` subscriptions were confirmed in all.
    pub async fn wait_for_confirmed(&self, count: usize, patience: Duration) {
        let deadline = Instant::now() + patience;
        while self.confirmed() < count {
            assert!(
                Instant::now() < deadline,
                "{} of {count} subscriptions confirmed in {patience:?}",
                self.confirmed()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

async fn serve(stream: tokio::net::TcpStream, state: Arc<State>) {
    let origin = Arc::new(Mutex::new(None));
    let seen = Arc::clone(&origin);
    // The callback's error type is tungstenite's, large or not.
    #[allow(clippy::result_large_err)]
    let callback = move |request: &Request, response: Response| {
        *seen.lock().unwrap() = request
            .headers()
            .get("origin")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        Ok(response)
    };
    let Ok(mut socket) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    state
        .origins
        .lock()
        .unwrap()
        .push(origin.lock().unwrap().clone());
    state.connections.fetch_add(1, Ordering::SeqCst);
    let mut messages = state.messages.subscribe();
    let mut drops = state.drops.subscribe();
    let mut pings = tokio::time::interval(PING_EVERY);
    let mut subscribed: Option<String> = None;
    let quiet = |state: &State| state.silent.load(Ordering::SeqCst);
    if socket
        .send(Message::text(r#"{"type":"welcome"}"#))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            _ = drops.recv() => return,
            _ = pings.tick() => {
                if quiet(&state) {
                    continue;
                }
                let ping = json!({ "type": "ping", "message": chrono::Utc::now().timestamp() });
                if socket.send(Message::text(ping.to_string())).await.is_err() {
                    return;
                }
            }
            message = messages.recv() => {
                let (Ok(message), Some(identifier)) = (message, &subscribed) else { continue };
                if quiet(&state) {
                    continue;
                }
                let identifier = serde_json::to_string(identifier).unwrap();
                let frame = format!(r#"{{"identifier":{identifier},"message":{message}}}"#);
                if socket.send(Message::text(frame)).await.is_err() {
                    return;
                }
            }
            frame = socket.next() => {
                let Some(Ok(Message::Text(text))) = frame else {
                    match frame {
                        Some(Ok(_)) => continue,
                        _ => return,
                    }
                };
                let command: Value = serde_json::from_str(&text).unwrap_or_default();
                if command["command"] != "subscribe" {
                    continue;
                }
                let identifier = command["identifier"].as_str().unwrap_or_default().to_string();
                let params: Value = serde_json::from_str(&identifier).unwrap_or_default();
                let accepted = !state.rejecting.load(Ordering::SeqCst)
                    && params["channel"] == "SmokeDetectorChannel"
                    && params["key"] == state.key.as_str();
                let kind = if accepted { "confirm_subscription" } else { "reject_subscription" };
                let reply = json!({ "identifier": identifier, "type": kind }).to_string();
                if socket.send(Message::text(reply)).await.is_err() {
                    return;
                }
                if accepted {
                    subscribed = Some(identifier);
                    state.confirmed.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
    }
}
