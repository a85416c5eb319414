//! How records become DynamoDB items and back: attribute builders and readers, and the error mapping.

use std::collections::HashMap;

use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::AttributeValue;

use crate::domain::{CiSource, ClaimRecord, ClaimState, HistoryEntry};
use crate::store::{StoreError, ttl};

/// The TTL attribute of both tables.
pub const TTL_ATTRIBUTE: &str = "expires_at";
pub(super) const CLIENT_KEYS_PK: &str = "client-key";
pub(super) const OUTBOX_PK: &str = "outbox";
pub(super) const CURSORS_PK: &str = "cursor";
pub(super) const STALLS_PK: &str = "stall";
/// The sort key of an item that holds a whole list, one attribute an entry (`e:<key>`):
/// the stalls, a recent list.
pub(super) const LIST_SK: &str = "list";
pub(super) const ENTRY_PREFIX: &str = "e:";
/// How many keys one trim of a recent list removes per request (an update expression is
/// at most 4 KB).
pub(super) const TRIM_CHUNK: usize = 50;

/// One DynamoDB item: its attributes by name.
pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn item<const N: usize>(attributes: [(&str, AttributeValue); N]) -> Item {
    attributes
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

pub(super) fn recent_pk(list: &str) -> String {
    format!("recent#{list}")
}

/// The keys and (string) values of a list item's entries.
pub(super) fn list_entries(item: &Item) -> Vec<(String, String)> {
    item.iter()
        .filter_map(|(name, value)| {
            let key = name.strip_prefix(ENTRY_PREFIX)?;
            Some((key.to_string(), value.as_s().ok()?.clone()))
        })
        .collect()
}

pub(super) fn recent_entries(item: &Item) -> Result<Vec<(String, HistoryEntry)>, StoreError> {
    list_entries(item)
        .into_iter()
        .map(|(key, value)| {
            let entry = serde_json::from_str(&value)
                .map_err(|e| StoreError::Corrupt(format!("recent entry {key}: {e}")))?;
            Ok((key, entry))
        })
        .collect()
}

pub(super) fn claim_record(item: &Item) -> Result<ClaimRecord, StoreError> {
    let state = text(item, "state")?;
    Ok(ClaimRecord {
        owner: text(item, "owner")?,
        claimed_at: number(item, "claimed_at")?,
        state: ClaimState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown claim state {state:?}")))?,
    })
}

pub(super) fn claim_item(key: &str, record: &ClaimRecord) -> Item {
    // A released claim (`claimed_at` 0) still lives its full time from now.
    let kept_from = written_micros() / 1_000_000;
    item([
        ("pk", s(format!("claim#{key}"))),
        ("sk", s("claim")),
        ("owner", s(&record.owner)),
        ("claimed_at", n(record.claimed_at)),
        ("state", s(record.state.as_str())),
        (TTL_ATTRIBUTE, n(kept_from + ttl::CLAIM)),
    ])
}

/// Zero-padded, so that the sort keys sort as the numbers do.
pub(super) fn outbox_sk(seq: u64) -> String {
    format!("frame#{seq:020}")
}

pub(super) fn written_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn put_optional(item: &mut Item, name: &str, value: &Option<String>) {
    if let Some(value) = value {
        item.insert(name.to_string(), s(value));
    }
}

pub(super) fn text(item: &Item, name: &str) -> Result<String, StoreError> {
    optional_text(item, name)
        .ok_or_else(|| StoreError::Corrupt(format!("attribute {name} is missing or not a string")))
}

/// A status item's source; items version one wrote have none and are statuses.
pub(super) fn ci_source(item: &Item) -> Result<CiSource, StoreError> {
    match optional_text(item, "source") {
        None => Ok(CiSource::Status),
        Some(name) => CiSource::parse(&name)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown CI source {name:?}"))),
    }
}

pub(super) fn optional_text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

pub(super) fn number(item: &Item, name: &str) -> Result<i64, StoreError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("attribute {name} is missing or not a number")))
}

/// Whether a conditional write was made (false: its condition did not hold).
pub(super) fn applied<T, E, R>(result: Result<T, SdkError<E, R>>) -> Result<bool, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(_) => Ok(true),
        Err(e) if condition_failed(&e) => Ok(false),
        Err(e) => Err(unavailable(e)),
    }
}

/// An item's place in the outbox (`seq`: an entry's, the counter's, a cursor's).
pub(super) fn place(item: &Item) -> Result<u64, StoreError> {
    u64::try_from(number(item, "seq")?)
        .map_err(|e| StoreError::Corrupt(format!("attribute seq is not a place: {e}")))
}

pub(super) fn condition_failed<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    error.code() == Some("ConditionalCheckFailedException")
}

/// A transaction cancelled because one of its conditions did not hold (and not for a
/// conflict or a throttle, which a retry may get past).
pub(super) fn transaction_condition_failed<R>(
    error: &SdkError<TransactWriteItemsError, R>,
) -> bool {
    match error.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => cancelled
            .cancellation_reasons()
            .iter()
            .any(|reason| reason.code() == Some("ConditionalCheckFailed")),
        _ => false,
    }
}

pub(super) fn outbox_entry(seq: u64, message: &str, now: i64) -> Item {
    item([
        ("pk", s(OUTBOX_PK)),
        ("sk", s(outbox_sk(seq))),
        ("seq", n(seq as i64)),
        ("message", s(message)),
        ("at", n(now)),
        (TTL_ATTRIBUTE, n(now + ttl::OUTBOX)),
    ])
}

pub(super) fn unavailable<E: std::error::Error + 'static, R: std::fmt::Debug>(
    error: SdkError<E, R>,
) -> StoreError {
    StoreError::Unavailable(DisplayErrorContext(&error).to_string())
}
