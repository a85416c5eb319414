//! What is said to Smokey, and the interface that says it. The WebSocket broadcaster is the
//! production notifier; tests and dry runs use `RecordingNotifier`.

use std::sync::Mutex;

use async_trait::async_trait;
use futures_util::future::BoxFuture;
use serde::Serialize;
use serde_json::{Value, json};

use crate::domain::Verdict;
use crate::store::StoreError;

/// A message for every subscribed Smokey.
#[derive(Debug, Clone, PartialEq)]
pub enum SmokeyMessage {
    /// CI's verdict on a deploy commit.
    CommitStatus(Verdict),
    /// The deploy branch moved; carries the (trimmed) push payload.
    DeployUpdated(Value),
    /// A line for Smokey's chat rooms.
    Chat(String),
    /// A frame's `message` from metasmoke's channel, as JSON text, forwarded unchanged.
    Bridged(String),
}

impl SmokeyMessage {
    /// The message's key in the frame, for logs and errors.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::CommitStatus(_) => "commit_status",
            Self::DeployUpdated(_) => "deploy_updated",
            Self::Chat(_) => "chat message",
            Self::Bridged(_) => "bridged frame",
        }
    }

    /// The frame's `message`, as JSON text.
    pub fn to_json(&self) -> String {
        let value = match self {
            Self::CommitStatus(v) => json!({ "commit_status": CommitStatus::from(v) }),
            Self::DeployUpdated(payload) => json!({ "deploy_updated": payload }),
            Self::Chat(text) => json!({ "message": text }),
            Self::Bridged(raw) => return raw.clone(),
        };
        value.to_string()
    }
}

/// The `commit_status` body, keys in the order metasmoke sent them. All four are always
/// present: Smokey raises on a missing one.
#[derive(Serialize)]
struct CommitStatus<'a> {
    status: &'a str,
    ci_url: &'a Option<String>,
    commit_sha: &'a str,
    commit_message: &'a str,
}

impl<'a> From<&'a Verdict> for CommitStatus<'a> {
    fn from(v: &'a Verdict) -> Self {
        Self {
            status: &v.state,
            ci_url: &v.ci_url,
            commit_sha: &v.sha,
            commit_message: &v.commit_message,
        }
    }
}

/// How a broadcast went.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reach {
    /// Frames accepted by @connections.
    pub sent: usize,
    /// Connections found gone (410) and removed.
    pub gone: usize,
    /// Posts that failed otherwise (or frames too large for one subscription): skipped,
    /// counted and logged.
    pub failed: usize,
}

/// Why a message did not reach the Smokeys.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// The store failed (the connections or the outbox).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The frame would pass 32 KB for every subscriber.
    #[error("frame of {0} bytes is over the 32 KB WebSocket limit")]
    TooLarge(usize),
    /// Posts failed.
    #[error("{failed} of {attempted} frames could not be sent (last error: {last_error})")]
    Incomplete {
        /// Posts that failed.
        failed: usize,
        /// Posts tried.
        attempted: usize,
        /// The last failure, for the log.
        last_error: String,
    },
    /// A part that tells no Smokey (`NoSmokeys`) was asked to.
    #[error("this part tells no Smokey: it was built without an @connections endpoint")]
    Nowhere,
}

/// A write to make once a message is posted, given how far it reached: it goes to the
/// store at the same time as the broadcast's own bookkeeping (the keys' cursors).
pub type AfterPosts<'a> =
    Box<dyn FnOnce(Reach) -> BoxFuture<'a, Result<(), StoreError>> + Send + 'a>;

/// Says something to every subscribed Smokey.
#[async_trait]
pub trait Notifier: Send + Sync {
    /// Adds the message to the outbox and sends it to every subscribed client. An error
    /// means some client may not have it, and the caller should let the delivery be retried.
    async fn notify(&self, message: &SmokeyMessage) -> Result<Reach, NotifyError>;

    /// Sends a message that the caller put in the outbox at `place` itself (in one write
    /// with what decided it), then makes `after`, if any. Errors as `notify`, and `after`'s.
    async fn deliver(
        &self,
        place: u64,
        message: &SmokeyMessage,
        after: Option<AfterPosts<'_>>,
    ) -> Result<Reach, NotifyError>;
}

/// Keeps what it was given. For tests, and for observing a dry run.
#[derive(Debug, Default)]
pub struct RecordingNotifier {
    messages: Mutex<Vec<SmokeyMessage>>,
}

impl RecordingNotifier {
    /// What it was given, in order.
    pub fn messages(&self) -> Vec<SmokeyMessage> {
        self.messages.lock().expect("not poisoned").clone()
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn notify(&self, message: &SmokeyMessage) -> Result<Reach, NotifyError> {
        self.messages
            .lock()
            .expect("not poisoned")
            .push(message.clone());
        Ok(Reach {
            sent: 1,
            ..Reach::default()
        })
    }

    async fn deliver(
        &self,
        _place: u64,
        message: &SmokeyMessage,
        after: Option<AfterPosts<'_>>,
    ) -> Result<Reach, NotifyError> {
        let reach = self.notify(message).await?;
        if let Some(after) = after {
            after(reach).await?;
        }
        Ok(reach)
    }
}

/// The notifier of a part that tells Smokeys nothing (the status page): every message is
/// refused, so that a part built on it by mistake fails loudly instead of dropping what it
/// says.
#[derive(Debug, Default)]
pub struct NoSmokeys;

#[async_trait]
impl Notifier for NoSmokeys {
    async fn notify(&self, _message: &SmokeyMessage) -> Result<Reach, NotifyError> {
        Err(NotifyError::Nowhere)
    }

    async fn deliver(
        &self,
        _place: u64,
        _message: &SmokeyMessage,
        _after: Option<AfterPosts<'_>>,
    ) -> Result<Reach, NotifyError> {
        Err(NotifyError::Nowhere)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_status_always_has_all_four_keys() {
        let message = SmokeyMessage::CommitStatus(Verdict {
            sha: "a".repeat(40),
            state: "success".into(),
            ci_url: None,
            commit_message: "m --autopull".into(),
        });
        assert_eq!(
            message.to_json(),
            format!(
                r#"{{"commit_status":{{"status":"success","ci_url":null,"commit_sha":"{}","commit_message":"m --autopull"}}}}"#,
                "a".repeat(40)
            )
        );
    }
}
