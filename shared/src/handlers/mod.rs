//! One handler per function: delivery -> decision -> effects -> answer. The function
//! binaries and the local gateway call these and nothing else.

pub mod keepalive;
pub mod pull_request;
pub mod push;
pub mod status;
pub mod webhook;
pub mod ws;

use serde_json::Value;

use crate::store::{HistoryEntry, Store};
use webhook::Transient;

/// Appends to an audit trail on behalf of a delivery, now.
pub(crate) async fn record_history(
    store: &dyn Store,
    stream: &str,
    delivery_id: &str,
    outcome: &str,
    detail: Value,
) -> Result<(), Transient> {
    let entry = HistoryEntry {
        at: crate::clock::now(),
        delivery_id: delivery_id.to_string(),
        outcome: outcome.to_string(),
        detail,
    };
    Ok(store.append_history(stream, &entry).await?)
}
