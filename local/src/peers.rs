//! The open WebSocket connections, by the id API Gateway would have given them.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

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

struct Peer {
    tx: mpsc::UnboundedSender<Outgoing>,
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
    pub fn add(
        &self,
        id: &str,
        tx: mpsc::UnboundedSender<Outgoing>,
        source: SocketAddr,
        user_agent: Option<String>,
    ) {
        let now = Utc::now();
        let info = PeerInfo {
            connected_at: now,
            last_active_at: now,
            source,
            user_agent,
        };
        self.lock().insert(id.to_string(), Peer { tx, info });
    }

    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    pub fn touch(&self, id: &str) {
        if let Some(peer) = self.lock().get_mut(id) {
            peer.info.last_active_at = Utc::now();
        }
    }

    /// Queues a frame; false when the connection is gone.
    pub fn send(&self, id: &str, outgoing: Outgoing) -> bool {
        let mut open = self.lock();
        match open.get(id) {
            Some(peer) if peer.tx.send(outgoing).is_ok() => true,
            Some(_) => {
                open.remove(id);
                false
            }
            None => false,
        }
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
