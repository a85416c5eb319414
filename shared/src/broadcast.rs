//! Fan-out over API Gateway's `@connections` API (DESIGN §5): every subscribed connection
//! gets the frame, concurrently with a bound; a 410 removes the connection's row.
//!
//! Every message goes through the outbox first: it gets a place in the order, and each
//! client key a cursor, the place of the last message one of its connections took. A key
//! that subscribes again is sent what it missed since its cursor (`replay`), so a verdict
//! decided while a Smokey reconnects is not lost.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::error::DisplayErrorContext;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_types::SdkConfig;
use futures_util::{StreamExt, stream};

use crate::cable;
use crate::clock::Clock;
use crate::notify::{AfterPosts, Notifier, NotifyError, Reach, SmokeyMessage};
use crate::store::{Connection, Store, StoreError};

/// Posts in flight at once. API Gateway's management API throttles per account, and the
/// handful of Smokey instances never need more; enough to keep 1,000 connections under a
/// second at API Gateway's usual latency.
pub const FANOUT_CONCURRENCY: usize = 32;

/// Why a post to one connection failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostError {
    /// 410: the connection is closed or unknown.
    Gone,
    /// Anything else: throttled, unreachable, a 5xx.
    Failed(String),
}

/// The part of the API Gateway Management API the relay uses.
#[async_trait]
pub trait ConnectionsApi: Send + Sync {
    /// Sends one frame to one connection.
    async fn post(&self, connection_id: &str, frame: &str) -> Result<(), PostError>;
}

/// `ConnectionsApi` through `aws-sdk-apigatewaymanagement`.
#[derive(Debug, Clone)]
pub struct ManagementApi {
    client: Client,
}

impl ManagementApi {
    /// A client for `endpoint` (`https://{api}.execute-api.{region}.amazonaws.com/{stage}`,
    /// or the local gateway's URL). Does no network I/O.
    pub fn new(sdk: &SdkConfig, endpoint: &str) -> Self {
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk)
            .endpoint_url(endpoint)
            .build();
        Self {
            client: Client::from_conf(config),
        }
    }

    /// A client for a local gateway, which checks no signatures: fixed fake credentials and
    /// region, so nothing searches the environment or instance metadata for real ones.
    pub fn local(endpoint: &str) -> Self {
        use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Credentials, Region};
        let config = aws_sdk_apigatewaymanagement::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("local"))
            .credentials_provider(Credentials::new(
                "local",
                "local",
                None,
                None,
                "relay-local",
            ))
            .endpoint_url(endpoint)
            .timeout_config(crate::aws::timeouts())
            .build();
        Self {
            client: Client::from_conf(config),
        }
    }
}

#[async_trait]
impl ConnectionsApi for ManagementApi {
    async fn post(&self, connection_id: &str, frame: &str) -> Result<(), PostError> {
        match self
            .client
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(frame.as_bytes()))
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_gone_exception()) => {
                Err(PostError::Gone)
            }
            Err(e) => Err(PostError::Failed(DisplayErrorContext(&e).to_string())),
        }
    }
}

/// The most messages one resubscription is sent; more than a window's worth at Smokey's
/// rates (a few dozen messages a day).
pub const MAX_REPLAY: usize = 500;

/// Sends frames to connections listed in the store.
#[derive(Clone)]
pub struct Broadcaster {
    store: Arc<dyn Store>,
    api: Arc<dyn ConnectionsApi>,
    clock: Arc<dyn Clock>,
}

/// How one round of posts went.
#[derive(Debug, Default)]
pub struct Round {
    /// What the posts came to.
    pub reach: Reach,
    /// Connections that answered 410, whose rows are still to be deleted (`forget`).
    pub gone: Vec<String>,
    /// Connections that took their frame.
    pub took: Vec<String>,
    last_error: Option<String>,
}

/// What a resubscribing key was sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Replay {
    /// Messages sent from the outbox.
    pub sent: usize,
    /// The key had no cursor (stored before keys got one when added, or unused for
    /// `ttl::CURSOR`): its cursor starts at the newest message, nothing sent.
    pub first_subscription: bool,
}

impl Broadcaster {
    /// Broadcasts to the connections in `store` through `api`, timed by `clock`.
    pub fn new(store: Arc<dyn Store>, api: Arc<dyn ConnectionsApi>, clock: Arc<dyn Clock>) -> Self {
        Self { store, api, clock }
    }

    /// The @connections API it posts through.
    pub fn api(&self) -> &Arc<dyn ConnectionsApi> {
        &self.api
    }

    /// The store with the connections, the outbox and the cursors.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The clock that times outbox entries and replay windows.
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.clock
    }

    /// Sends a keepalive ping to each of `connections`, subscribed or not. The rows of
    /// those found gone are left to the caller (`forget`), which may not want to wait on
    /// the store.
    pub async fn ping(&self, connections: &[Connection], now: i64) -> Round {
        let frame = cable::ping(now);
        let posts = connections
            .iter()
            .map(|c| (c.id.clone(), frame.clone()))
            .collect();
        self.post_all(posts).await
    }

    /// Deletes the rows of connections found gone (410), all at once.
    pub async fn forget(&self, gone: &[String]) {
        let mut ids: Vec<&String> = gone.iter().collect();
        ids.sort();
        ids.dedup();
        futures_util::future::join_all(ids.into_iter().map(|id| async move {
            match self.store.delete_connection(id).await {
                Ok(()) => tracing::info!(connection = %id, "connection gone (410); row deleted"),
                Err(e) => {
                    tracing::warn!(connection = %id, error = %e, "connection gone (410) but its row could not be deleted")
                }
            }
        }))
        .await;
    }

    async fn post_all(&self, posts: Vec<(String, String)>) -> Round {
        let results: Vec<(String, Result<(), PostError>)> = stream::iter(posts)
            .map(|(id, frame)| async move {
                let result = self.api.post(&id, &frame).await;
                (id, result)
            })
            .buffer_unordered(FANOUT_CONCURRENCY)
            .collect()
            .await;
        let mut round = Round::default();
        for (id, result) in results {
            match result {
                Ok(()) => {
                    round.reach.sent += 1;
                    round.took.push(id);
                }
                Err(PostError::Gone) => {
                    round.reach.gone += 1;
                    round.gone.push(id);
                }
                Err(PostError::Failed(error)) => {
                    tracing::warn!(connection = %id, %error, "post to connection failed");
                    round.reach.failed += 1;
                    round.last_error = Some(error);
                }
            }
        }
        round
    }
}

impl Round {
    /// One connection's failure must not fail the message for the others: the message
    /// counts as sent when any connection took it, or when there was nobody to send it to.
    /// Only when every post failed (the @connections endpoint itself is down) may a
    /// redelivery do better.
    fn into_result(self) -> Result<Reach, NotifyError> {
        match self.last_error {
            Some(last_error) if self.reach.sent == 0 && self.reach.gone == 0 => {
                Err(NotifyError::Incomplete {
                    failed: self.reach.failed,
                    attempted: self.reach.failed,
                    last_error,
                })
            }
            _ => Ok(self.reach),
        }
    }
}

impl Broadcaster {
    /// Sends `client`'s connection `id`, just subscribed with `identifier`, the messages its
    /// key missed since `cursor` (its cursor as read *before* the subscription was stored,
    /// so that a live message in between cannot move it past what was missed), none older
    /// than `window` seconds, in order. A key without a cursor (`None`; `keys::add` gives
    /// every key one) starts at the newest message instead. A window of 0 turns replay off.
    pub async fn replay(
        &self,
        id: &str,
        identifier: &str,
        client: &str,
        cursor: Option<u64>,
        window: i64,
    ) -> Result<Replay, StoreError> {
        if window <= 0 {
            return Ok(Replay::default());
        }
        let now = self.clock.now();
        let Some(cursor) = cursor else {
            let head = self.store.outbox_head().await?;
            self.store.advance_cursor(client, head, now).await?;
            return Ok(Replay {
                first_subscription: true,
                ..Replay::default()
            });
        };
        let missed = self
            .store
            .outbox_after(cursor, now - window, MAX_REPLAY)
            .await?;
        let mut replay = Replay::default();
        for entry in missed {
            let frame = cable::message(identifier, &entry.message);
            if frame.len() > cable::MAX_FRAME_BYTES {
                continue;
            }
            if let Err(error) = self.api.post(id, &frame).await {
                // The rest stays in the outbox for the next subscription.
                tracing::warn!(connection = %id, ?error, "replay stopped: post failed");
                break;
            }
            replay.sent += 1;
            self.store.advance_cursor(client, entry.seq, now).await?;
        }
        Ok(replay)
    }

    /// Moves the cursor of every key whose connection took message `seq`. A cursor left
    /// behind costs a repeat on the next subscription, which Smokey ignores.
    async fn advance_cursors(&self, connections: &[Connection], took: &[String], seq: u64) {
        let took: HashSet<&str> = took.iter().map(String::as_str).collect();
        let clients: HashSet<&str> = connections
            .iter()
            .filter(|c| took.contains(c.id.as_str()))
            .filter_map(|c| c.client.as_deref())
            .collect();
        let now = self.clock.now();
        futures_util::future::join_all(clients.into_iter().map(|client| async move {
            if let Err(error) = self.store.advance_cursor(client, seq, now).await {
                tracing::warn!(client, %error, "cursor not moved; the key may be sent this message again");
            }
        }))
        .await;
    }
}

#[async_trait]
impl Notifier for Broadcaster {
    async fn notify(&self, message: &SmokeyMessage) -> Result<Reach, NotifyError> {
        let text = message.to_json();
        let seq = self.store.append_outbox(&text, self.clock.now()).await?;
        self.deliver(seq, &text, None).await
    }

    async fn deliver(
        &self,
        place: u64,
        message: &SmokeyMessage,
        after: Option<AfterPosts<'_>>,
    ) -> Result<Reach, NotifyError> {
        Broadcaster::deliver(self, place, &message.to_json(), after).await
    }
}

impl Broadcaster {
    /// Posts outbox entry `seq` (`text`) to every subscribed connection, then moves the
    /// cursors of the keys that took it, forgets connections found gone and makes `after`,
    /// all at once. Should this fail or never run, the entry is still in the outbox: a key
    /// that resubscribes is sent it.
    pub async fn deliver(
        &self,
        seq: u64,
        text: &str,
        after: Option<AfterPosts<'_>>,
    ) -> Result<Reach, NotifyError> {
        let connections = self.store.connections(self.clock.now()).await?;
        let (mut posts, mut oversized, mut largest) = (Vec::new(), 0, 0);
        for connection in &connections {
            for identifier in &connection.subscriptions {
                let frame = cable::message(identifier, text);
                if frame.len() > cable::MAX_FRAME_BYTES {
                    // API Gateway would close the socket: skip this one subscription.
                    tracing::warn!(connection = %connection.id, bytes = frame.len(), "frame over the 32 KB limit; not sent to this connection");
                    oversized += 1;
                    largest = largest.max(frame.len());
                    continue;
                }
                posts.push((connection.id.clone(), frame));
            }
        }
        if posts.is_empty() && oversized > 0 {
            return Err(NotifyError::TooLarge(largest));
        }
        let round = self.post_all(posts).await;
        let (took, gone) = (round.took.clone(), round.gone.clone());
        let mut reach = round.into_result()?;
        reach.failed += oversized;
        let after = async {
            match after {
                Some(after) => after(reach).await,
                None => Ok(()),
            }
        };
        let ((), (), recorded) = tokio::join!(
            self.advance_cursors(&connections, &took, seq),
            self.forget(&gone),
            after
        );
        recorded?;
        Ok(reach)
    }
}
