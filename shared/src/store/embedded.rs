//! The in-process store for running on one machine. Optionally kept in a JSON file so that
//! client keys and history survive a restart of the local gateway.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Mutex;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::*;

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    deliveries: HashMap<String, LedgerEntry>,
    /// sha -> context -> latest status
    statuses: HashMap<String, BTreeMap<String, StatusRecord>>,
    verdicts: HashMap<String, VerdictRecord>,
    deployed: HashMap<String, i64>,
    history: HashMap<String, Vec<HistoryEntry>>,
    claims: HashMap<String, ClaimRecord>,
    connections: BTreeMap<String, Connection>,
    client_keys: BTreeMap<String, ClientKey>,
    #[serde(default)]
    outbox: Vec<OutboxEntry>,
    #[serde(default)]
    outbox_head: u64,
    #[serde(default)]
    cursors: BTreeMap<String, u64>,
    /// client -> when its cursor last moved forward or started
    #[serde(default)]
    cursor_moves: BTreeMap<String, i64>,
    /// fingerprint -> when it was last noted
    #[serde(default)]
    sightings: HashMap<String, i64>,
    #[serde(default)]
    stalls: BTreeMap<String, Stall>,
    /// list -> id -> entry
    #[serde(default)]
    recent: BTreeMap<String, BTreeMap<String, HistoryEntry>>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct LedgerEntry {
    started_at: i64,
    end: Option<DeliveryEnd>,
    outcome: Option<String>,
}

/// The store in this process, optionally kept in a JSON file.
#[derive(Debug, Default)]
pub struct EmbeddedStore {
    state: Mutex<State>,
    file: Option<PathBuf>,
}

impl EmbeddedStore {
    /// A store that lives as long as the process.
    pub fn in_memory() -> Self {
        Self::default()
    }

    /// A store kept in `path`, loaded now if the file exists and rewritten after each change.
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let file = path.into();
        let state = match std::fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| StoreError::Corrupt(format!("{}: {e}", file.display())))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(e) => return Err(StoreError::Unavailable(format!("{}: {e}", file.display()))),
        };
        Ok(Self {
            state: Mutex::new(state),
            file: Some(file),
        })
    }

    /// Runs `change` on the state and saves it if the store has a file.
    fn change<T>(&self, change: impl FnOnce(&mut State) -> T) -> Result<T, StoreError> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let result = change(&mut state);
        if let Some(file) = &self.file {
            let bytes =
                serde_json::to_vec(&*state).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let temporary = file.with_extension("tmp");
            std::fs::write(&temporary, bytes)
                .and_then(|()| std::fs::rename(&temporary, file))
                .map_err(|e| StoreError::Unavailable(format!("{}: {e}", file.display())))?;
        }
        Ok(result)
    }

    fn read<T>(&self, read: impl FnOnce(&State) -> T) -> Result<T, StoreError> {
        let state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        Ok(read(&state))
    }
}

#[async_trait]
impl Ledger for EmbeddedStore {
    async fn begin_delivery(
        &self,
        id: &str,
        _route: &str,
        now: i64,
    ) -> Result<DeliveryStart, StoreError> {
        self.change(|state| {
            let start = match state.deliveries.get(id) {
                None => DeliveryStart::Fresh,
                Some(LedgerEntry {
                    end: Some(DeliveryEnd::Handled),
                    outcome,
                    ..
                }) => {
                    return DeliveryStart::AlreadyHandled {
                        outcome: outcome.clone().unwrap_or_default(),
                    };
                }
                Some(LedgerEntry {
                    end: Some(DeliveryEnd::Failed),
                    ..
                }) => DeliveryStart::Retry,
                Some(entry) if entry.started_at < now - DELIVERY_LEASE_SECONDS => {
                    DeliveryStart::Retry
                }
                Some(_) => return DeliveryStart::InFlight,
            };
            state.deliveries.insert(
                id.to_string(),
                LedgerEntry {
                    started_at: now,
                    end: None,
                    outcome: None,
                },
            );
            start
        })
    }

    async fn end_delivery(
        &self,
        id: &str,
        end: DeliveryEnd,
        outcome: &str,
        _now: i64,
    ) -> Result<(), StoreError> {
        self.change(|state| {
            let entry = state
                .deliveries
                .entry(id.to_string())
                .or_insert(LedgerEntry {
                    started_at: 0,
                    end: None,
                    outcome: None,
                });
            entry.end = Some(end);
            entry.outcome = Some(outcome.to_string());
        })
    }
}

#[async_trait]
impl Commits for EmbeddedStore {
    async fn record_status(&self, status: &StatusRecord) -> Result<StatusWrite, StoreError> {
        self.change(|state| {
            let contexts = state.statuses.entry(status.sha.clone()).or_default();
            match contexts.get(&status.context) {
                Some(stored) if !supersedes(status, stored) => StatusWrite::Stale,
                _ => {
                    contexts.insert(status.context.clone(), status.clone());
                    StatusWrite::Applied
                }
            }
        })
    }

    async fn latest_statuses(&self, sha: &str) -> Result<Vec<StatusRecord>, StoreError> {
        self.read(|state| {
            state
                .statuses
                .get(sha)
                .map(|contexts| contexts.values().cloned().collect())
                .unwrap_or_default()
        })
    }

    async fn commit_summaries(
        &self,
        shas: &[String],
        contexts: &[String],
    ) -> Result<Vec<CommitSummary>, StoreError> {
        self.read(|state| {
            shas.iter()
                .map(|sha| CommitSummary {
                    verdict: state.verdicts.get(sha).cloned(),
                    results: contexts
                        .iter()
                        .filter_map(|c| state.statuses.get(sha).and_then(|s| s.get(c)).cloned())
                        .collect(),
                })
                .collect()
        })
    }

    async fn claim_verdict(
        &self,
        record: &VerdictRecord,
        announce: Option<(u64, &str)>,
    ) -> Result<VerdictClaim, StoreError> {
        self.change(|state| match state.verdicts.get(&record.verdict.sha) {
            Some(existing) => VerdictClaim::Taken(existing.clone()),
            None => {
                state
                    .verdicts
                    .insert(record.verdict.sha.clone(), record.clone());
                if let Some((seq, message)) = announce {
                    insert_outbox(state, seq, message, record.claimed_at);
                }
                VerdictClaim::Claimed
            }
        })
    }

    async fn mark_verdict_notified(
        &self,
        sha: &str,
        now: i64,
        sent_to: u64,
    ) -> Result<(), StoreError> {
        self.change(|state| {
            if let Some(record) = state.verdicts.get_mut(sha) {
                record.notified_at = Some(now);
                record.sent_to = Some(sent_to);
            }
        })
    }

    async fn mark_deployed(
        &self,
        sha: &str,
        _delivery_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.change(|state| {
            state.deployed.insert(sha.to_string(), now);
        })
    }

    async fn is_deployed(&self, sha: &str) -> Result<bool, StoreError> {
        self.read(|state| state.deployed.contains_key(sha))
    }

    async fn verdict(&self, sha: &str) -> Result<Option<VerdictRecord>, StoreError> {
        self.read(|state| state.verdicts.get(sha).cloned())
    }
}

#[async_trait]
impl Stalls for EmbeddedStore {
    async fn stalls(&self) -> Result<Vec<(String, Stall)>, StoreError> {
        self.read(|state| state.stalls.iter().map(|(k, v)| (k.clone(), *v)).collect())
    }

    async fn put_stall(&self, key: &str, stall: &Stall) -> Result<(), StoreError> {
        self.change(|state| {
            state.stalls.insert(key.to_string(), *stall);
        })
    }

    async fn remove_stall(&self, key: &str) -> Result<(), StoreError> {
        self.change(|state| {
            state.stalls.remove(key);
        })
    }
}

#[async_trait]
impl History for EmbeddedStore {
    async fn append_history(&self, stream: &str, entry: &HistoryEntry) -> Result<(), StoreError> {
        self.change(|state| {
            // What DynamoDB's TTL would have removed by now goes.
            state.history.retain(|_, entries| {
                entries.retain(|e| e.at + ttl::HISTORY > entry.at);
                !entries.is_empty()
            });
            state
                .history
                .entry(stream.to_string())
                .or_default()
                .push(entry.clone());
        })
    }

    async fn history(&self, stream: &str, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        self.read(|state| {
            let mut entries = state.history.get(stream).cloned().unwrap_or_default();
            // Newest first; entries of the same second, last written first.
            entries.reverse();
            entries.sort_by_key(|e| std::cmp::Reverse(e.at));
            entries.truncate(limit);
            entries
        })
    }
}

#[async_trait]
impl Recent for EmbeddedStore {
    async fn note_recent(
        &self,
        list: &str,
        id: Option<&str>,
        entry: &HistoryEntry,
        keep: usize,
    ) -> Result<(), StoreError> {
        let id = id.map_or_else(|| entry_key(entry.at), str::to_string);
        self.change(|state| {
            let entries = state.recent.entry(list.to_string()).or_default();
            entries.insert(id, entry.clone());
            if entries.len() > keep {
                *entries = newest_entries(std::mem::take(entries), keep)
                    .into_iter()
                    .collect();
            }
        })
    }

    async fn recent(&self, lists: &[&str]) -> Result<Vec<Vec<HistoryEntry>>, StoreError> {
        self.read(|state| {
            lists
                .iter()
                .map(|list| {
                    let entries = state.recent.get(*list).cloned().unwrap_or_default();
                    newest_entries(entries, usize::MAX)
                        .into_iter()
                        .map(|(_, entry)| entry)
                        .collect()
                })
                .collect()
        })
    }
}

#[async_trait]
impl Claims for EmbeddedStore {
    async fn claim(&self, key: &str, owner: &str, now: i64) -> Result<Claim, StoreError> {
        self.change(|state| match state.claims.get(key) {
            Some(held) => Claim::Held(held.clone()),
            None => {
                let record = ClaimRecord {
                    owner: owner.to_string(),
                    claimed_at: now,
                    state: ClaimState::Claimed,
                };
                state.claims.insert(key.to_string(), record);
                Claim::Won
            }
        })
    }

    async fn claim_holder(&self, key: &str) -> Result<Option<ClaimRecord>, StoreError> {
        self.read(|state| state.claims.get(key).cloned())
    }

    async fn swap_claim(
        &self,
        key: &str,
        expected: &ClaimRecord,
        new: &ClaimRecord,
    ) -> Result<bool, StoreError> {
        self.change(|state| match state.claims.get_mut(key) {
            Some(held) if held == expected => {
                *held = new.clone();
                true
            }
            _ => false,
        })
    }
}

#[async_trait]
impl Connections for EmbeddedStore {
    async fn put_connection(&self, connection: &Connection) -> Result<(), StoreError> {
        self.change(|state| {
            state
                .connections
                .insert(connection.id.clone(), connection.clone());
        })
    }

    async fn delete_connection(&self, id: &str) -> Result<(), StoreError> {
        self.change(|state| {
            state.connections.remove(id);
        })
    }

    async fn subscribe(
        &self,
        id: &str,
        identifier: &str,
        client: &str,
    ) -> Result<bool, StoreError> {
        self.change(|state| match state.connections.get_mut(id) {
            None => false,
            Some(connection) => {
                connection.subscriptions.insert(identifier.to_string());
                connection.client = Some(client.to_string());
                true
            }
        })
    }

    async fn unsubscribe(&self, id: &str, identifier: &str) -> Result<bool, StoreError> {
        self.change(|state| match state.connections.get_mut(id) {
            None => false,
            Some(connection) => {
                connection.subscriptions.remove(identifier);
                true
            }
        })
    }

    async fn connections(&self, now: i64) -> Result<Vec<Connection>, StoreError> {
        self.read(|state| {
            state
                .connections
                .values()
                .filter(|c| c.expires_at > now)
                .cloned()
                .collect()
        })
    }
}

#[async_trait]
impl ClientKeys for EmbeddedStore {
    async fn add_client_key(&self, key: &ClientKey) -> Result<bool, StoreError> {
        self.change(|state| {
            if state.client_keys.contains_key(&key.name) {
                return false;
            }
            state.client_keys.insert(key.name.clone(), key.clone());
            true
        })
    }

    async fn client_key_by_hash(&self, key_hash: &str) -> Result<Option<ClientKey>, StoreError> {
        self.read(|state| {
            state
                .client_keys
                .values()
                .find(|k| k.key_hash == key_hash)
                .cloned()
        })
    }

    async fn client_keys(&self) -> Result<Vec<ClientKey>, StoreError> {
        self.read(|state| state.client_keys.values().cloned().collect())
    }

    async fn revoke_client_key(&self, name: &str) -> Result<bool, StoreError> {
        self.change(|state| state.client_keys.remove(name).is_some())
    }
}

#[async_trait]
impl Outbox for EmbeddedStore {
    async fn append_outbox(&self, message: &str, now: i64) -> Result<u64, StoreError> {
        self.change(|state| push_outbox(state, message, now))
    }

    async fn outbox_after(
        &self,
        after: u64,
        not_before: i64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        self.read(|state| {
            state
                .outbox
                .iter()
                .filter(|e| e.seq > after && e.at >= not_before)
                .take(limit)
                .cloned()
                .collect()
        })
    }

    async fn put_outbox_entry(
        &self,
        place: u64,
        message: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.change(|state| insert_outbox(state, place, message, now))
    }

    async fn reserve_place(&self) -> Result<u64, StoreError> {
        self.change(|state| {
            state.outbox_head += 1;
            state.outbox_head
        })
    }

    async fn release_place(&self, place: u64) -> Result<(), StoreError> {
        self.change(|state| {
            if state.outbox_head == place {
                state.outbox_head -= 1;
            }
        })
    }

    async fn outbox_head(&self) -> Result<u64, StoreError> {
        self.read(|state| state.outbox_head)
    }

    async fn cursor(&self, client: &str) -> Result<Option<u64>, StoreError> {
        self.read(|state| state.cursors.get(client).copied())
    }

    async fn advance_cursor(&self, client: &str, seq: u64, now: i64) -> Result<(), StoreError> {
        self.change(|state| {
            let cursor = state.cursors.entry(client.to_string()).or_insert(0);
            if *cursor < seq {
                *cursor = seq;
                state.cursor_moves.insert(client.to_string(), now);
            }
        })
    }

    async fn start_cursor(&self, client: &str, seq: u64, now: i64) -> Result<(), StoreError> {
        self.change(|state| {
            state.cursors.insert(client.to_string(), seq);
            state.cursor_moves.insert(client.to_string(), now);
        })
    }

    async fn cursor_and_moved_at(
        &self,
        client: &str,
    ) -> Result<Option<(u64, Option<i64>)>, StoreError> {
        self.read(|state| {
            let seq = state.cursors.get(client).copied()?;
            Some((seq, state.cursor_moves.get(client).copied()))
        })
    }

    async fn append_outbox_once(
        &self,
        message: &str,
        fingerprint: &str,
        now: i64,
        horizon: i64,
    ) -> Result<Option<u64>, StoreError> {
        self.change(|state| {
            state
                .sightings
                .retain(|_, seen| *seen + ttl::SIGHTING > now);
            if state
                .sightings
                .get(fingerprint)
                .is_some_and(|seen| *seen > now - horizon)
            {
                return None;
            }
            state.sightings.insert(fingerprint.to_string(), now);
            Some(push_outbox(state, message, now))
        })
    }
}

/// Writes an entry at a place given out before, in the order of places (another entry
/// may have passed it), dropping expired ones.
fn insert_outbox(state: &mut State, seq: u64, message: &str, now: i64) {
    state.outbox.retain(|e| e.at + ttl::OUTBOX > now);
    let entry = OutboxEntry {
        seq,
        message: message.to_string(),
        at: now,
    };
    let at = state.outbox.partition_point(|e| e.seq < seq);
    state.outbox.insert(at, entry);
}

/// Adds an entry to the outbox at the next place, and gives that place.
fn push_outbox(state: &mut State, message: &str, now: i64) -> u64 {
    state.outbox_head += 1;
    let seq = state.outbox_head;
    insert_outbox(state, seq, message, now);
    seq
}
