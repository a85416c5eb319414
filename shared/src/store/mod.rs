//! Storage: one interface, two implementations. `dynamodb` for AWS (and moto in tests),
//! `embedded` for running everything in one process. The same contract tests run
//! against both (see `tests/store_contract.rs`).

pub mod dynamodb;
pub mod embedded;
pub mod recent;

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use crate::domain::{
    CiSource, ClaimRecord, ClaimState, ClientKey, HistoryEntry, HistoryOutcome, OutboxEntry, Stall,
    StatusRecord, Verdict, VerdictRecord, supersedes,
};

/// How long each kind of item is kept, in seconds. DynamoDB deletes expired items lazily,
/// so every read filters on `expires_at` as well.
pub mod ttl {
    const DAY: i64 = 24 * 60 * 60;
    /// GitHub lets a delivery be redelivered for three days; keep the ledger a little longer.
    pub const DELIVERY: i64 = 7 * DAY;
    /// Statuses: long after CI is done with a commit.
    pub const STATUS: i64 = 90 * DAY;
    /// Verdicts: a year.
    pub const VERDICT: i64 = 365 * DAY;
    /// The relay's deploy marks: a year.
    pub const DEPLOY: i64 = 365 * DAY;
    /// Audit trails: a year.
    pub const HISTORY: i64 = 365 * DAY;
    /// Once-only claims: a month.
    pub const CLAIM: i64 = 30 * DAY;
    /// API Gateway closes a WebSocket after 2 h; a row outliving that by 10 min is a ghost.
    pub const CONNECTION: i64 = 2 * 60 * 60 + 10 * 60;
    /// Longer than the longest replay window (`config::MAX_REPLAY_WINDOW_SECONDS`).
    pub const OUTBOX: i64 = DAY + 60 * 60;
    /// A key whose cursor expired is treated as new: it gets no replay.
    pub const CURSOR: i64 = 30 * DAY;
    /// A bridged frame's fingerprint, kept longer than any window overlap.
    pub const SIGHTING: i64 = 10 * 60;
}

/// A delivery marked as in progress longer than this is taken to have crashed and may be
/// handled again. Every delivery is answered within `handlers::webhook::ANSWER_BUDGET` (8 s),
/// far below it.
pub const DELIVERY_LEASE_SECONDS: i64 = 30;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store did not answer or refused for a reason a retry may fix.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// An item is there but cannot be read back.
    #[error("stored item is unreadable: {0}")]
    Corrupt(String),
}

/// What the ledger says when a delivery starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryStart {
    /// Never seen: go ahead.
    Fresh,
    /// Seen before and failed (or crashed): go ahead again.
    Retry,
    /// Fully handled before: do nothing.
    AlreadyHandled {
        /// The outcome recorded then, which a duplicate is answered with.
        outcome: String,
    },
    /// Another invocation holds it right now.
    InFlight,
}

/// How a delivery ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryEnd {
    /// Done (or nothing to do): answered 2xx.
    Handled,
    /// Not done: a redelivery runs it again.
    Failed,
}

/// Whether a status was stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusWrite {
    /// Stored.
    Applied,
    /// A newer update for the same (sha, context) is already stored; nothing changed.
    Stale,
}

/// Who claimed a commit's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerdictClaim {
    /// This call decided the commit.
    Claimed,
    /// The commit was decided before; here is how.
    Taken(VerdictRecord),
}

/// A WebSocket connection and the ActionCable identifiers it subscribed with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// API Gateway's connection id.
    pub id: String,
    /// When it connected.
    pub connected_at: i64,
    /// The client's address.
    pub source_ip: Option<String>,
    /// The identifiers it subscribed with.
    pub subscriptions: BTreeSet<String>,
    /// The name of the client key it last subscribed with: whose cursor its frames move.
    #[serde(default)]
    pub client: Option<String>,
    /// When the row expires (API Gateway closes a socket after 2 h).
    pub expires_at: i64,
}

impl Connection {
    /// A connection that has just connected, subscribed to nothing.
    pub fn new(id: impl Into<String>, source_ip: Option<String>, now: i64) -> Self {
        Self {
            id: id.into(),
            connected_at: now,
            source_ip,
            subscriptions: BTreeSet::new(),
            client: None,
            expires_at: now + ttl::CONNECTION,
        }
    }
}

/// Who holds a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This call took it.
    Won,
    /// Someone holds it; here is their record.
    Held(ClaimRecord),
}

/// The delivery ledger: each GitHub delivery handled once.
#[async_trait]
pub trait Ledger: Send + Sync {
    /// Marks a delivery as in progress unless it was handled or is being handled.
    async fn begin_delivery(
        &self,
        id: &str,
        route: &str,
        now: i64,
    ) -> Result<DeliveryStart, StoreError>;

    /// Marks how a delivery ended, with the outcome a duplicate is answered with.
    async fn end_delivery(
        &self,
        id: &str,
        end: DeliveryEnd,
        outcome: &str,
        now: i64,
    ) -> Result<(), StoreError>;
}

/// What is known of each commit: its statuses, its verdict, whether the relay deployed it.
#[async_trait]
pub trait Commits: Send + Sync {
    /// Stores a status unless a newer one for the same (sha, context) is there.
    async fn record_status(&self, status: &StatusRecord) -> Result<StatusWrite, StoreError>;

    /// The latest status of every context of a commit.
    async fn latest_statuses(&self, sha: &str) -> Result<Vec<StatusRecord>, StoreError>;

    /// For each of `shas`, its verdict and its latest result for each of `contexts` it has,
    /// read by key in batches (no query): the status page's view of recent commits.
    async fn commit_summaries(
        &self,
        shas: &[String],
        contexts: &[String],
    ) -> Result<Vec<CommitSummary>, StoreError>;

    /// Records the verdict for a commit if it has none (a conditional write), and with it,
    /// when given, the message that tells it, at its place in the outbox (`reserve_place`):
    /// both or neither.
    async fn claim_verdict(
        &self,
        record: &VerdictRecord,
        announce: Option<(u64, &str)>,
    ) -> Result<VerdictClaim, StoreError>;

    /// Notes that the verdict was sent, and to how many connections.
    async fn mark_verdict_notified(
        &self,
        sha: &str,
        now: i64,
        sent_to: u64,
    ) -> Result<(), StoreError>;

    /// Notes that the relay itself moved the deploy branch to `sha`.
    async fn mark_deployed(&self, sha: &str, delivery_id: &str, now: i64)
    -> Result<(), StoreError>;

    /// Whether the relay itself moved deploy to `sha`.
    async fn is_deployed(&self, sha: &str) -> Result<bool, StoreError>;

    /// The commit's verdict, if it was decided.
    async fn verdict(&self, sha: &str) -> Result<Option<VerdictRecord>, StoreError>;
}

/// The audit trails (deploy history, pull request histories).
#[async_trait]
pub trait History: Send + Sync {
    /// Appends to an audit trail (`deploy`, `pull/<n>`, ...).
    async fn append_history(&self, stream: &str, entry: &HistoryEntry) -> Result<(), StoreError>;

    /// The newest `limit` entries of a trail, newest first.
    async fn history(&self, stream: &str, limit: usize) -> Result<Vec<HistoryEntry>, StoreError>;
}

/// Short lists of the newest entries of a kind (deploy moves, deliveries, pull request
/// events), each kept whole in one place so that the status page reads them by key.
#[async_trait]
pub trait Recent: Send + Sync {
    /// Puts `entry` in `list` under `id` (the same id again replaces its entry; `None`:
    /// a new one). The list keeps its newest `keep` entries by time; it may hold up to a
    /// quarter more between trims.
    async fn note_recent(
        &self,
        list: &str,
        id: Option<&str>,
        entry: &HistoryEntry,
        keep: usize,
    ) -> Result<(), StoreError>;

    /// The entries of each of `lists`, newest first, in one read.
    async fn recent(&self, lists: &[&str]) -> Result<Vec<Vec<HistoryEntry>>, StoreError>;
}

/// A key for an entry written at `at` that sorts by time, then by the moment of writing
/// (entries of the same second keep the order they were written in), and is unique.
pub(crate) fn entry_key(at: i64) -> String {
    let mut suffix = [0u8; 6];
    getrandom::fill(&mut suffix).expect("the operating system has a random source");
    format!(
        "{at:012}#{:016}#{}",
        chrono::Utc::now().timestamp_micros(),
        hex::encode(suffix)
    )
}

/// The newest `keep` of a recent list's entries, newest first, by time then key.
pub(crate) fn newest_entries(
    entries: impl IntoIterator<Item = (String, HistoryEntry)>,
    keep: usize,
) -> Vec<(String, HistoryEntry)> {
    let mut entries: Vec<_> = entries.into_iter().collect();
    entries.sort_by(|(a_key, a), (b_key, b)| (b.at, b_key).cmp(&(a.at, a_key)));
    entries.truncate(keep);
    entries
}

/// Once-only claims on work that concurrent deliveries share.
#[async_trait]
pub trait Claims: Send + Sync {
    /// Takes `key` for `owner` unless someone holds it (a conditional write), with state `claimed`.
    async fn claim(&self, key: &str, owner: &str, now: i64) -> Result<Claim, StoreError>;

    /// The claim on `key` as it stands, if any (a read; nothing changes).
    async fn claim_holder(&self, key: &str) -> Result<Option<ClaimRecord>, StoreError>;

    /// Replaces the claim on `key` with `new` only if it is still exactly `expected` (a
    /// conditional write); false when someone else changed it first.
    async fn swap_claim(
        &self,
        key: &str,
        expected: &ClaimRecord,
        new: &ClaimRecord,
    ) -> Result<bool, StoreError>;
}

/// The WebSocket connections and their subscriptions.
#[async_trait]
pub trait Connections: Send + Sync {
    /// Records a connection (on `$connect`).
    async fn put_connection(&self, connection: &Connection) -> Result<(), StoreError>;

    /// Forgets a connection (on `$disconnect`, or a 410).
    async fn delete_connection(&self, id: &str) -> Result<(), StoreError>;

    /// Adds a subscription made with the key of `client`; false when the connection is
    /// unknown.
    async fn subscribe(&self, id: &str, identifier: &str, client: &str)
    -> Result<bool, StoreError>;

    /// Removes a subscription; false when the connection is unknown.
    async fn unsubscribe(&self, id: &str, identifier: &str) -> Result<bool, StoreError>;

    /// Every connection that has not expired.
    async fn connections(&self, now: i64) -> Result<Vec<Connection>, StoreError>;
}

/// A commit's verdict and some of its CI results (`Commits::commit_summaries`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommitSummary {
    /// Its verdict, if it has one.
    pub verdict: Option<VerdictRecord>,
    /// Its latest result for each context asked for that it has, in the order asked.
    pub results: Vec<StatusRecord>,
}

/// The client keys Smokeys subscribe with (hashes only).
#[async_trait]
pub trait ClientKeys: Send + Sync {
    /// Adds a key; false when a key of that name exists.
    async fn add_client_key(&self, key: &ClientKey) -> Result<bool, StoreError>;

    /// The key with this hash, if any.
    async fn client_key_by_hash(&self, key_hash: &str) -> Result<Option<ClientKey>, StoreError>;

    /// Every key.
    async fn client_keys(&self) -> Result<Vec<ClientKey>, StoreError>;

    /// Removes a key by name; false when there was none.
    async fn revoke_client_key(&self, name: &str) -> Result<bool, StoreError>;
}

/// The messages sent to Smokeys in order, each key's cursor, and bridged frames' fingerprints.
#[async_trait]
pub trait Outbox: Send + Sync {
    /// Adds a message to the outbox and returns its place in the order.
    async fn append_outbox(&self, message: &str, now: i64) -> Result<u64, StoreError>;

    /// The outbox after place `after`, in order, leaving out what was sent before
    /// `not_before`; at most `limit` entries.
    async fn outbox_after(
        &self,
        after: u64,
        not_before: i64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Gives out the next place in the outbox for an entry the caller writes itself
    /// (`put_outbox_entry`, or with `Commits::claim_verdict`). A place never written is a
    /// gap, which readers skip.
    async fn reserve_place(&self) -> Result<u64, StoreError>;

    /// Writes `message` at `place`, given out by `reserve_place`.
    async fn put_outbox_entry(&self, place: u64, message: &str, now: i64)
    -> Result<(), StoreError>;

    /// Gives back `place`, given out by `reserve_place` and not used, if no place was given
    /// out after it (then it stays a gap).
    async fn release_place(&self, place: u64) -> Result<(), StoreError>;

    /// The last place given out; 0 before the first message.
    async fn outbox_head(&self) -> Result<u64, StoreError>;

    /// The place of the last message a connection of `client` got; `None` for a key that
    /// never subscribed (or not for `ttl::CURSOR`).
    async fn cursor(&self, client: &str) -> Result<Option<u64>, StoreError>;

    /// `client`'s cursor, as `cursor`, with when it last moved forward (one of its
    /// connections took a frame) or started (`None` for a cursor written before this was
    /// kept): one read.
    async fn cursor_and_moved_at(
        &self,
        client: &str,
    ) -> Result<Option<(u64, Option<i64>)>, StoreError>;

    /// Moves `client`'s cursor to `seq`, never back.
    async fn advance_cursor(&self, client: &str, seq: u64, now: i64) -> Result<(), StoreError>;

    /// Puts `client`'s cursor at `seq`, wherever it was: where a key that has just become
    /// known starts, so that what is sent before its first subscription is replayed.
    async fn start_cursor(&self, client: &str, seq: u64, now: i64) -> Result<(), StoreError>;

    /// Adds a frame to the outbox, as `append_outbox`, unless a frame with `fingerprint`
    /// was added in the last `horizon` seconds: then `None`, and nothing changes. The
    /// fingerprint and the entry are written in one step (both or neither), so a failure
    /// between noting a frame and storing it cannot happen.
    async fn append_outbox_once(
        &self,
        message: &str,
        fingerprint: &str,
        now: i64,
        horizon: i64,
    ) -> Result<Option<u64>, StoreError>;
}

/// The stalls reconcile passes watch, by key (`approved/<n>`, `deploy-differs`,
/// `no-verdict`), between passes.
#[async_trait]
pub trait Stalls: Send + Sync {
    /// Every stall being watched.
    async fn stalls(&self) -> Result<Vec<(String, Stall)>, StoreError>;

    /// Stores a stall under `key`.
    async fn put_stall(&self, key: &str, stall: &Stall) -> Result<(), StoreError>;

    /// Forgets the stall under `key`.
    async fn remove_stall(&self, key: &str) -> Result<(), StoreError>;
}

/// Every capability at once: what a store implements, and what the composition root
/// hands out (each route then uses the parts it needs).
pub trait Store:
    Ledger + Commits + History + Recent + Claims + Connections + ClientKeys + Outbox + Stalls
{
}

impl<T: Ledger + Commits + History + Recent + Claims + Connections + ClientKeys + Outbox + Stalls>
    Store for T
{
}
