//! The open WebSocket connections, by the id API Gateway would have given them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine;
use chrono::{DateTime, Utc};
use tokio::sync::mpsc;

/// What the gateway sends down one socket.
#[derive(Debug)]
pub enum Outgoing {
    Text(String),
    /// A close frame with its RFC 6455 code and reason.
    Close {
        code: u16,
        reason: &'static str,
    },
}

#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub connected_at: DateTime<Utc>,
    pub last_active_at: DateTime<Utc>,
    pub source: SocketAddr,
    pub user_agent: Option<String>,
}

/// The most bytes of frames that may wait for one client. A client that does not read
/// (its TCP window closed) is dropped when it would pass this, as API Gateway drops it, so
/// the gateway holds at most this much for each such client.
pub const MAX_QUEUED_BYTES: usize = 1024 * 1024;

/// The sending half of one socket: frames in, and what is still waiting to go out.
#[derive(Clone)]
pub struct Outbox {
    tx: mpsc::UnboundedSender<Outgoing>,
    queued: Arc<AtomicUsize>,
    dropped: Arc<tokio::sync::Notify>,
}

impl Outbox {
    /// A new outbox, and the writer's end of it.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<Outgoing>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let outbox = Self {
            tx,
            queued: Arc::default(),
            dropped: Arc::default(),
        };
        (outbox, rx)
    }

    /// The writer calls this once a frame of `bytes` went out.
    pub fn sent(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::SeqCst);
    }

    /// Resolves when the gateway dropped the client for not reading.
    pub async fn dropped(&self) {
        self.dropped.notified().await;
    }

    /// Queues a frame and counts its bytes until the writer says it went out; false when
    /// the writer is gone.
    fn push(&self, outgoing: Outgoing) -> bool {
        self.queued.fetch_add(outgoing.bytes(), Ordering::SeqCst);
        self.tx.send(outgoing).is_ok()
    }

    /// Bytes waiting to go out.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }
}

impl Outgoing {
    pub fn bytes(&self) -> usize {
        match self {
            Self::Text(text) => text.len(),
            Self::Close { reason, .. } => reason.len() + 2,
        }
    }
}

struct Peer {
    outbox: Outbox,
    info: PeerInfo,
}

#[derive(Default)]
pub struct Peers {
    open: Mutex<HashMap<String, Peer>>,
}

/// A connection id shaped like API Gateway's: 16 base64 characters, ending in `=`.
pub fn new_connection_id() -> String {
    let mut bytes = [0u8; 11];
    getrandom::fill(&mut bytes).expect("the operating system has a random source");
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

impl Peers {
    pub fn add(&self, id: &str, outbox: Outbox, source: SocketAddr, user_agent: Option<String>) {
        let now = Utc::now();
        let info = PeerInfo {
            connected_at: now,
            last_active_at: now,
            source,
            user_agent,
        };
        self.lock().insert(id.to_string(), Peer { outbox, info });
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    pub fn touch(&self, id: &str) {
        if let Some(peer) = self.lock().get_mut(id) {
            peer.info.last_active_at = Utc::now();
        }
    }

    /// Queues a frame; false when the connection is gone, or is dropped now because it
    /// does not read what it is sent.
    pub fn send(&self, id: &str, outgoing: Outgoing) -> bool {
        let mut open = self.lock();
        let Some(peer) = open.get(id) else {
            return false;
        };
        let bytes = outgoing.bytes();
        let outbox = &peer.outbox;
        if outbox.queued.load(Ordering::SeqCst) + bytes > MAX_QUEUED_BYTES {
            tracing::warn!(connection = %id, queued = outbox.queued(), "client does not read; dropping it");
            outbox.dropped.notify_one();
            open.remove(id);
            return false;
        }
        if outbox.push(outgoing) {
            return true;
        }
        open.remove(id);
        false
    }

    /// Bytes waiting to go out to `id`.
    pub fn queued(&self, id: &str) -> Option<usize> {
        self.lock().get(id).map(|p| p.outbox.queued())
    }

    /// Sends every open socket a close frame; how many there were.
    pub fn close_all(&self, code: u16, reason: &'static str) -> usize {
        let open = self.lock();
        for peer in open.values() {
            peer.outbox.push(Outgoing::Close { code, reason });
        }
        open.len()
    }

    pub fn info(&self, id: &str) -> Option<PeerInfo> {
        self.lock().get(id).map(|p| p.info.clone())
    }

    pub fn count(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Peer>> {
        self.open
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
