//! Fan-out over API Gateway's `@connections` API (DESIGN §5): every subscribed connection
//! gets the frame, concurrently with a bound; a 410 removes the connection's row.

use std::sync::Arc;

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::error::DisplayErrorContext;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use futures_util::{StreamExt, stream};

use crate::cable;
use crate::notify::{Notifier, NotifyError, Reach, SmokeyMessage};
use crate::store::{Connection, Store};

/// Posts in flight at once. API Gateway's management API throttles per account, and the
/// handful of Smokey instances never need more; enough to keep 1,000 connections under a
/// second at API Gateway's usual latency.
pub const FANOUT_CONCURRENCY: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostError {
    /// 410: the connection is closed or unknown.
    Gone,
    Failed(String),
}

/// The part of the API Gateway Management API the relay uses.
#[async_trait]
pub trait ConnectionsApi: Send + Sync {
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
    pub fn new(sdk: &aws_config::SdkConfig, endpoint: &str) -> Self {
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
            .timeout_config(crate::setup::aws_timeouts())
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

/// Sends frames to connections listed in the store.
#[derive(Clone)]
pub struct Broadcaster {
    store: Arc<dyn Store>,
    api: Arc<dyn ConnectionsApi>,
}

/// How one round of posts went.
#[derive(Debug, Default)]
pub struct Round {
    pub reach: Reach,
    /// Connections that answered 410, whose rows are still to be deleted (`forget`).
    pub gone: Vec<String>,
    last_error: Option<String>,
}

impl Broadcaster {
    pub fn new(store: Arc<dyn Store>, api: Arc<dyn ConnectionsApi>) -> Self {
        Self { store, api }
    }

    pub fn api(&self) -> &Arc<dyn ConnectionsApi> {
        &self.api
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
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
                Ok(()) => round.reach.sent += 1,
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

#[async_trait]
impl Notifier for Broadcaster {
    async fn notify(&self, message: &SmokeyMessage) -> Result<Reach, NotifyError> {
        let value = message.to_value();
        let (mut posts, mut oversized, mut largest) = (Vec::new(), 0, 0);
        for connection in self.store.connections(crate::clock::now()).await? {
            for identifier in &connection.subscriptions {
                let frame = cable::message(identifier, &value);
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
        self.forget(&round.gone).await;
        let mut reach = round.into_result()?;
        reach.failed += oversized;
        Ok(reach)
    }
}
