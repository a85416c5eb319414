//! The open WebSocket connections, by the id API Gateway would have given them.

use std::collections::{BTreeMap, HashMap};
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
    /// A WebSocket ping; the client's pong shows it is still there.
    Ping,
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

/// The writer's end of an outbox. It holds no sender, so its queue ends once the socket's
/// reader and the connection list have let go of the outbox: the writer then finishes
/// and the socket is freed.
pub struct Queue {
    rx: mpsc::UnboundedReceiver<Outgoing>,
    queued: Arc<AtomicUsize>,
}

impl Queue {
    /// The next frame to send; `None` once nobody can queue more.
    pub async fn next(&mut self) -> Option<Outgoing> {
        self.rx.recv().await
    }

    /// Called once a frame of `bytes` went out.
    pub fn sent(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::SeqCst);
    }
}

impl Outbox {
    /// A new outbox, and the writer's end of it.
    pub fn new() -> (Self, Queue) {
        let (tx, rx) = mpsc::unbounded_channel();
        let outbox = Self {
            tx,
            queued: Arc::default(),
            dropped: Arc::default(),
        };
        let queue = Queue {
            rx,
            queued: Arc::clone(&outbox.queued),
        };
        (outbox, queue)
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
            Self::Ping => 0,
            Self::Close { reason, .. } => reason.len() + 2,
        }
    }
}

struct Peer {
    outbox: Outbox,
    info: PeerInfo,
    /// An ActionCable subscription was confirmed to it.
    subscribed: bool,
}

#[derive(Default)]
pub struct Peers {
    open: Mutex<HashMap<String, Peer>>,
    /// Sockets the gateway closed, by why.
    closed: Mutex<BTreeMap<&'static str, u64>>,
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
        self.lock().insert(
            id.to_string(),
            Peer {
                outbox,
                info,
                subscribed: false,
            },
        );
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
        let Some(peer) = open.get_mut(id) else {
            return false;
        };
        let bytes = outgoing.bytes();
        if peer.outbox.queued() + bytes > MAX_QUEUED_BYTES {
            // The socket's reader closes it and logs why.
            peer.outbox.dropped.notify_one();
            open.remove(id);
            return false;
        }
        if let Outgoing::Text(text) = &outgoing
            && !peer.subscribed
            && build_relay::cable::is_confirmation(text)
        {
            peer.subscribed = true;
        }
        if peer.outbox.push(outgoing) {
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

    /// Whether an ActionCable subscription was confirmed to `id`.
    pub fn subscribed(&self, id: &str) -> bool {
        self.lock().get(id).is_some_and(|p| p.subscribed)
    }

    pub fn info(&self, id: &str) -> Option<PeerInfo> {
        self.lock().get(id).map(|p| p.info.clone())
    }

    /// Counts a socket the gateway closed for `why`; how many it has closed for that.
    pub fn count_closure(&self, why: &'static str) -> u64 {
        let mut closed = self.closed.lock().unwrap_or_else(|p| p.into_inner());
        let count = closed.entry(why).or_default();
        *count += 1;
        *count
    }

    /// How many sockets the gateway closed, by why.
    pub fn closures(&self) -> BTreeMap<&'static str, u64> {
        self.closed
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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
