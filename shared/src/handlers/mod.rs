//! One handler per function: delivery -> decision -> effects -> answer. The function
//! binaries and the local gateway call these and nothing else.

pub mod claims;
mod failure;
pub mod keepalive;
pub mod pull_request;
pub mod push;
pub mod reconcile;
pub mod status;
pub mod union_merge;
pub mod verdict;
pub mod webhook;
pub mod ws;

use std::sync::Arc;

pub use failure::Failure;

use serde_json::Value;

use crate::clock::Clock;
use crate::config::RelayConfig;
use crate::github::retry::RetryPolicy;
use crate::github::{GitHub, GitHubError};
use crate::notify::{AfterPosts, Notifier, NotifyError, Reach, SmokeyMessage};
use crate::store::recent::RecentList;
use crate::store::{HistoryEntry, HistoryOutcome, StatusRecord, StatusWrite, Store, StoreError};

/// What a route that acts on GitHub works with: the rules' settings and every effect it may
/// have (the status, push and pull-request routes).
#[derive(Clone)]
pub struct Effects {
    /// The rules' settings.
    pub config: RelayConfig,
    /// Commits, claims and histories.
    pub store: Arc<dyn Store>,
    /// What Smokeys are told.
    pub notifier: Arc<dyn Notifier>,
    /// The repository.
    pub github: Arc<dyn GitHub>,
    /// How safe GitHub calls are retried.
    pub retry: RetryPolicy,
    /// Leases and records are timed by it.
    pub clock: Arc<dyn Clock>,
}

/// Appends to an audit trail on behalf of a delivery, and to the status page's recent
/// list `listed` at the same time.
pub(crate) async fn record_history(
    store: &dyn Store,
    at: i64,
    stream: &str,
    delivery_id: &str,
    outcome: HistoryOutcome,
    detail: Value,
    listed: Option<&RecentList>,
) -> Result<(), Failure> {
    let entry = HistoryEntry {
        at,
        delivery_id: delivery_id.to_string(),
        outcome,
        detail,
    };
    let note = async {
        match listed {
            Some(list) => list.note(store, None, &entry).await,
            None => Ok(()),
        }
    };
    tokio::try_join!(store.append_history(stream, &entry), note)?;
    Ok(())
}

/// Gives back a place in the outbox that was not used, so that it leaves no gap when
/// nothing was given out after it. A failure only leaves the gap.
pub(crate) async fn give_back_place(fx: &Effects, place: Option<u64>) {
    if let Some(place) = place
        && let Err(error) = fx.store.release_place(place).await
    {
        tracing::warn!(place, %error, "an unused place in the outbox stays a gap");
    }
}

/// Records a CI result, and notes its context for the status page at the same time.
pub(crate) async fn record_result(
    store: &dyn Store,
    record: &StatusRecord,
) -> Result<StatusWrite, StoreError> {
    let seen = HistoryEntry {
        at: record.updated_at,
        delivery_id: record.delivery_id.clone(),
        outcome: HistoryOutcome::Event(record.state.clone()),
        detail: serde_json::json!({ "context": record.context, "sha": record.sha }),
    };
    let (write, ()) = tokio::try_join!(
        store.record_status(record),
        crate::store::recent::CI_CONTEXTS.note(store, Some(&record.context), &seen),
    )?;
    Ok(write)
}

/// Sends a message to every subscribed Smokey; a failure is one a redelivery may fix.
pub(crate) async fn say(notifier: &dyn Notifier, message: SmokeyMessage) -> Result<usize, Failure> {
    notifier
        .notify(&message)
        .await
        .map(|reach| reach.sent)
        .map_err(|e| not_sent(&message, e))
}

/// Sends a message already in the outbox at `place` (`Notifier::deliver`); a failure is
/// one a redelivery may fix.
pub(crate) async fn deliver(
    notifier: &dyn Notifier,
    place: u64,
    message: &SmokeyMessage,
    after: Option<AfterPosts<'_>>,
) -> Result<Reach, Failure> {
    notifier
        .deliver(place, message, after)
        .await
        .map_err(|e| not_sent(message, e))
}

fn not_sent(message: &SmokeyMessage, error: NotifyError) -> Failure {
    Failure::transient(format!("{} not sent: {error}", message.kind()))
}

/// A GitHub call that is safe to repeat, retried by the route's policy; a failure is the
/// delivery's, saying "could not <what>".
pub(crate) async fn retried<T, F, Fut>(fx: &Effects, what: &str, call: F) -> Result<T, Failure>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, GitHubError>>,
{
    fx.retry
        .run(what, call)
        .await
        .map_err(|e| github_failure(format!("could not {what}"), &e))
}

/// A failed GitHub call as a delivery's failure: GitHub saying the thing does not exist or
/// cannot be (404, 410, 422) is permanent; anything else may pass.
pub(crate) fn github_failure(what: String, error: &GitHubError) -> Failure {
    use http::StatusCode;
    let permanent = [
        StatusCode::NOT_FOUND,
        StatusCode::GONE,
        StatusCode::UNPROCESSABLE_ENTITY,
    ]
    .into_iter()
    .any(|status| error.is(status));
    match permanent {
        true => Failure::Permanent(format!("{what}: {error}")),
        false => Failure::Transient(format!("{what}: {error}")),
    }
}
