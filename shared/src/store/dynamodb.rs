//! The DynamoDB store.
//!
//! Main table (`TABLE_NAME`), keys `pk` and `sk` (strings), TTL attribute `expires_at`:
//!
//! | item            | pk                  | sk                 | written                         |
//! |-----------------|---------------------|--------------------|---------------------------------|
//! | delivery ledger | `delivery#<id>`     | `delivery`         | conditional: new, failed, stale |
//! | latest status   | `commit#<sha>`      | `status#<context>` | conditional: not older          |
//! | verdict         | `commit#<sha>`      | `verdict`          | conditional: once; in one       |
//! |                 |                     |                    | transaction with its outbox     |
//! |                 |                     |                    | entry                           |
//! | relay's deploy  | `commit#<sha>`      | `deployed`         | plain                           |
//! | client key      | `client-key`        | `name#<name>`      | conditional: name unused        |
//! | history entry   | `history#<stream>`  | `<at>#<µs>#<rand>` | plain (append only)             |
//! | once-only claim | `claim#<key>`       | `claim`            | conditional: unclaimed; then a  |
//! |                 |                     |                    | swap from the record last read  |
//! | outbox counter  | `outbox`            | `head`             | atomic `ADD seq 1`              |
//! | outbox entry    | `outbox`            | `frame#<seq:020>`  | plain (append only)             |
//! | client cursor   | `cursor`            | `client#<name>`    | plain when its key is added,    |
//! |                 |                     |                    | then conditional: only forward  |
//! | bridged frame   | `sighting#<sha256>` | `seen`             | conditional: not seen recently, |
//! |                 |                     |                    | in one transaction with its     |
//! |                 |                     |                    | outbox entry                    |
//! | watched stalls  | `stall`             | `list`             | an attribute `e:<key>` a stall, |
//! |                 |                     |                    | set or removed one at a time    |
//! | recent list     | `recent#<list>`     | `list`             | an attribute `e:<key>` an entry,|
//! |                 |                     |                    | set one at a time; trimmed      |
//!
//! A latest-status item holds statuses and GitHub Actions results alike; its `source`
//! attribute says which event reported it (none: a status, as version one wrote it).
//!
//! One query (`pk = commit#<sha>`) gives everything known about a commit. Connections live
//! in their own table (`CONNECTIONS_TABLE`, key `connection_id`, TTL `expires_at`) because
//! broadcasting scans it and should scan nothing else.

use std::collections::{BTreeSet, HashMap};

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put, ReturnValue,
    ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem,
};

use super::*;
use crate::config::Tables;

type Item = HashMap<String, AttributeValue>;

/// The TTL attribute of both tables.
pub const TTL_ATTRIBUTE: &str = "expires_at";
const CLIENT_KEYS_PK: &str = "client-key";
const OUTBOX_PK: &str = "outbox";
const CURSORS_PK: &str = "cursor";
const STALLS_PK: &str = "stall";
/// The sort key of an item that holds a whole list, one attribute an entry (`e:<key>`):
/// the stalls, a recent list.
const LIST_SK: &str = "list";
const ENTRY_PREFIX: &str = "e:";
/// How many keys one trim of a recent list removes per request (an update expression is
/// at most 4 KB).
const TRIM_CHUNK: usize = 50;

/// The store on DynamoDB: the main table and the connections table.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    tables: Tables,
}

impl DynamoStore {
    /// Sets entry `key` of the list item (`pk`, `LIST_SK`) to `value`, and counts the write:
    /// the count after it.
    async fn put_list_entry(&self, pk: &str, key: &str, value: String) -> Result<i64, StoreError> {
        let output = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .key("pk", s(pk))
            .key("sk", s(LIST_SK))
            .update_expression("SET #entry = :value ADD #writes :one")
            .expression_attribute_names("#entry", format!("{ENTRY_PREFIX}{key}"))
            .expression_attribute_names("#writes", "writes")
            .expression_attribute_values(":value", s(&value))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(unavailable)?;
        number(&output.attributes.unwrap_or_default(), "writes")
    }

    /// Removes all but the newest `keep` entries of a recent list. A concurrent note is
    /// never lost: only keys read here as too old are removed.
    async fn trim_recent(&self, pk: &str, keep: usize) -> Result<(), StoreError> {
        let Some(item) = self.get(pk.to_string(), LIST_SK).await? else {
            return Ok(());
        };
        let entries = recent_entries(&item)?;
        let kept: BTreeSet<String> = newest_entries(entries.clone(), keep)
            .into_iter()
            .map(|(key, _)| key)
            .collect();
        let old: Vec<String> = entries
            .into_iter()
            .map(|(key, _)| key)
            .filter(|key| !kept.contains(key))
            .collect();
        for chunk in old.chunks(TRIM_CHUNK) {
            let mut update = self
                .client
                .update_item()
                .table_name(&self.tables.main)
                .key("pk", s(pk))
                .key("sk", s(LIST_SK));
            let mut paths = Vec::new();
            for (i, key) in chunk.iter().enumerate() {
                let name = format!("{ENTRY_PREFIX}{key}");
                update = update.expression_attribute_names(format!("#k{i}"), name);
                paths.push(format!("#k{i}"));
            }
            update
                .update_expression(format!("REMOVE {}", paths.join(", ")))
                .send()
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// A put of `item` into the main table under `condition` (with `values`), for a
    /// transaction.
    fn put(
        &self,
        item: Item,
        condition: &str,
        values: &[(&str, AttributeValue)],
    ) -> Result<Put, StoreError> {
        let mut put = Put::builder()
            .table_name(&self.tables.main)
            .set_item(Some(item))
            .condition_expression(condition);
        for (name, value) in values {
            put = put.expression_attribute_values(*name, value.clone());
        }
        put.build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// Writes `guarded` and an outbox entry in one transaction: both or neither. False when
    /// `guarded`'s condition did not hold (nothing written).
    async fn put_with_outbox_entry(&self, guarded: Put, entry: Item) -> Result<bool, StoreError> {
        let entry = Put::builder()
            .table_name(&self.tables.main)
            .set_item(Some(entry))
            .build()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        let written = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(guarded).build())
            .transact_items(TransactWriteItem::builder().put(entry).build())
            .send()
            .await;
        match written {
            Ok(_) => Ok(true),
            Err(e) if transaction_condition_failed(&e) => Ok(false),
            Err(e) => Err(unavailable(e)),
        }
    }

    /// A store on `tables` through `client`. Does no network I/O.
    pub fn new(client: Client, tables: Tables) -> Self {
        Self { client, tables }
    }

    /// The tables it uses.
    pub fn tables(&self) -> &Tables {
        &self.tables
    }

    /// The items with these keys (at most `BATCH_GET_MAX`), asking again for any DynamoDB
    /// left unprocessed.
    async fn batch_get(&self, keys: &[(String, String)]) -> Result<Vec<Item>, StoreError> {
        use aws_sdk_dynamodb::types::KeysAndAttributes;
        let mut pending: Vec<Item> = keys
            .iter()
            .map(|(pk, sk)| item([("pk", s(pk)), ("sk", s(sk))]))
            .collect();
        let mut items = Vec::new();
        for _ in 0..5 {
            if pending.is_empty() {
                break;
            }
            let request = KeysAndAttributes::builder()
                .set_keys(Some(std::mem::take(&mut pending)))
                .build()
                .map_err(|e| StoreError::Unavailable(e.to_string()))?;
            let output = self
                .client
                .batch_get_item()
                .request_items(&self.tables.main, request)
                .send()
                .await
                .map_err(unavailable)?;
            if let Some(mut found) = output.responses {
                items.extend(found.remove(&self.tables.main).unwrap_or_default());
            }
            if let Some(mut left) = output.unprocessed_keys {
                pending = left
                    .remove(&self.tables.main)
                    .map(|k| k.keys)
                    .unwrap_or_default();
            }
        }
        match pending.is_empty() {
            true => Ok(items),
            false => Err(StoreError::Unavailable(
                "keys left unprocessed by DynamoDB".into(),
            )),
        }
    }

    async fn get(&self, pk: String, sk: &str) -> Result<Option<Item>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.tables.main)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.item)
    }

    /// Writes `item` unless its key is taken (a conditional write); `Some` is what holds it.
    async fn put_unless_present(&self, item: Item) -> Result<Option<Item>, StoreError> {
        let (pk, sk) = (item["pk"].clone(), item["sk"].clone());
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.main)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match result {
            Ok(_) => Ok(None),
            Err(e) if condition_failed(&e) => {
                let (Ok(pk), Ok(sk)) = (pk.as_s(), sk.as_s()) else {
                    return Err(StoreError::Corrupt("keys are strings".into()));
                };
                let holder = self.get(pk.clone(), sk).await?;
                holder
                    .map(Some)
                    .ok_or_else(|| StoreError::Unavailable("item vanished while read".into()))
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    /// Adds `identifier` (subscribing as `client`) or, with no client, removes it.
    async fn change_subscriptions(
        &self,
        id: &str,
        identifier: &str,
        client: Option<&str>,
    ) -> Result<bool, StoreError> {
        let request = self
            .client
            .update_item()
            .table_name(&self.tables.connections)
            .key("connection_id", s(id))
            .condition_expression("attribute_exists(connection_id)")
            .expression_attribute_values(
                ":identifier",
                AttributeValue::Ss(vec![identifier.to_string()]),
            );
        let request = match client {
            Some(client) => request
                .update_expression("ADD subscriptions :identifier SET #client = :client")
                .expression_attribute_names("#client", "client")
                .expression_attribute_values(":client", s(client)),
            None => request.update_expression("DELETE subscriptions :identifier"),
        };
        applied(request.send().await)
    }

    /// Every item of partition `pk` whose sort key is in `keys`, in sort-key order.
    async fn query(&self, pk: String, keys: SortKeys<'_>) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start = None;
        loop {
            let request = self
                .client
                .query()
                .table_name(&self.tables.main)
                .expression_attribute_values(":pk", s(pk.clone()))
                .consistent_read(true)
                .set_exclusive_start_key(start);
            let request = match &keys {
                SortKeys::Prefix(prefix) => request
                    .key_condition_expression("pk = :pk AND begins_with(sk, :prefix)")
                    .expression_attribute_values(":prefix", s(prefix.to_string())),
                SortKeys::Between(first, last) => request
                    .key_condition_expression("pk = :pk AND sk BETWEEN :first AND :last")
                    .expression_attribute_values(":first", s(first))
                    .expression_attribute_values(":last", s(last)),
            };
            let output = request.send().await.map_err(unavailable)?;
            items.extend(output.items.unwrap_or_default());
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(items),
            }
        }
    }
}

/// Which sort keys of a partition a query reads.
enum SortKeys<'a> {
    Prefix(&'a str),
    /// Both ends included.
    Between(String, String),
}

#[async_trait]
impl Ledger for DynamoStore {
    async fn begin_delivery(
        &self,
        id: &str,
        route: &str,
        now: i64,
    ) -> Result<DeliveryStart, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.main)
            .item("pk", s(format!("delivery#{id}")))
            .item("sk", s("delivery"))
            .item("route", s(route))
            .item("state", s("processing"))
            .item("started_at", n(now))
            .item(TTL_ATTRIBUTE, n(now + ttl::DELIVERY))
            .condition_expression(
                "attribute_not_exists(pk) OR #state = :failed \
                 OR (#state = :processing AND started_at < :stale)",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":failed", s("failed"))
            .expression_attribute_values(":processing", s("processing"))
            .expression_attribute_values(":stale", n(now - DELIVERY_LEASE_SECONDS))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(output) => Ok(match output.attributes {
                Some(old) if !old.is_empty() => DeliveryStart::Retry,
                _ => DeliveryStart::Fresh,
            }),
            Err(e) if condition_failed(&e) => {
                let item = self
                    .get(format!("delivery#{id}"), "delivery")
                    .await?
                    .ok_or_else(|| {
                        StoreError::Unavailable("delivery vanished while read".into())
                    })?;
                Ok(match text(&item, "state")?.as_str() {
                    "handled" => DeliveryStart::AlreadyHandled {
                        outcome: optional_text(&item, "outcome").unwrap_or_default(),
                    },
                    _ => DeliveryStart::InFlight,
                })
            }
            Err(e) => Err(unavailable(e)),
        }
    }

    async fn end_delivery(
        &self,
        id: &str,
        end: DeliveryEnd,
        outcome: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        let state = match end {
            DeliveryEnd::Handled => "handled",
            DeliveryEnd::Failed => "failed",
        };
        self.client
            .update_item()
            .table_name(&self.tables.main)
            .key("pk", s(format!("delivery#{id}")))
            .key("sk", s("delivery"))
            .update_expression(
                "SET #state = :state, outcome = :outcome, finished_at = :now, #ttl = :ttl",
            )
            .expression_attribute_names("#state", "state")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":state", s(state))
            .expression_attribute_values(":outcome", s(outcome))
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":ttl", n(now + ttl::DELIVERY))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl Commits for DynamoStore {
    async fn record_status(&self, status: &StatusRecord) -> Result<StatusWrite, StoreError> {
        let mut item = item([
            ("pk", s(format!("commit#{}", status.sha))),
            ("sk", s(format!("status#{}", status.context))),
            ("sha", s(&status.sha)),
            ("context", s(&status.context)),
            ("state", s(&status.state)),
            ("updated_at", n(status.updated_at)),
            ("status_id", n(status.status_id as i64)),
            ("delivery_id", s(&status.delivery_id)),
            ("source", s(status.source.as_str())),
            (TTL_ATTRIBUTE, n(status.updated_at + ttl::STATUS)),
        ]);
        put_optional(&mut item, "target_url", &status.target_url);
        put_optional(&mut item, "description", &status.description);
        put_optional(&mut item, "sender", &status.sender);
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.main)
            .set_item(Some(item))
            .condition_expression(
                "attribute_not_exists(pk) OR updated_at < :updated \
                 OR (updated_at = :updated AND status_id <= :id)",
            )
            .expression_attribute_values(":updated", n(status.updated_at))
            .expression_attribute_values(":id", n(status.status_id as i64))
            .send()
            .await;
        Ok(match applied(result)? {
            true => StatusWrite::Applied,
            false => StatusWrite::Stale,
        })
    }

    async fn latest_statuses(&self, sha: &str) -> Result<Vec<StatusRecord>, StoreError> {
        self.query(format!("commit#{sha}"), SortKeys::Prefix("status#"))
            .await?
            .iter()
            .map(status_record)
            .collect()
    }

    async fn commit_summaries(
        &self,
        shas: &[String],
        contexts: &[String],
    ) -> Result<Vec<CommitSummary>, StoreError> {
        let sort_keys: Vec<String> = std::iter::once("verdict".to_string())
            .chain(contexts.iter().map(|c| format!("status#{c}")))
            .collect();
        let keys: Vec<(String, String)> = shas
            .iter()
            .flat_map(|sha| {
                sort_keys
                    .iter()
                    .map(move |sk| (format!("commit#{sha}"), sk.clone()))
            })
            .collect();
        let mut found: HashMap<(String, String), Item> = HashMap::new();
        for chunk in keys.chunks(BATCH_GET_MAX) {
            for item in self.batch_get(chunk).await? {
                let key = (text(&item, "pk")?, text(&item, "sk")?);
                found.insert(key, item);
            }
        }
        shas.iter()
            .map(|sha| {
                let pk = format!("commit#{sha}");
                let verdict = found
                    .get(&(pk.clone(), "verdict".to_string()))
                    .map(verdict_record)
                    .transpose()?;
                let results = contexts
                    .iter()
                    .filter_map(|c| found.get(&(pk.clone(), format!("status#{c}"))))
                    .map(status_record)
                    .collect::<Result<_, _>>()?;
                Ok(CommitSummary { verdict, results })
            })
            .collect()
    }

    async fn claim_verdict(
        &self,
        record: &VerdictRecord,
        announce: Option<(u64, &str)>,
    ) -> Result<VerdictClaim, StoreError> {
        let verdict = &record.verdict;
        let mut item = item([
            ("pk", s(format!("commit#{}", verdict.sha))),
            ("sk", s("verdict")),
            ("sha", s(&verdict.sha)),
            ("state", s(&verdict.state)),
            ("commit_message", s(&verdict.commit_message)),
            ("delivery_id", s(&record.delivery_id)),
            ("claimed_at", n(record.claimed_at)),
            (TTL_ATTRIBUTE, n(record.claimed_at + ttl::VERDICT)),
        ]);
        put_optional(&mut item, "ci_url", &verdict.ci_url);
        let Some((seq, message)) = announce else {
            return match self.put_unless_present(item).await? {
                None => Ok(VerdictClaim::Claimed),
                Some(existing) => Ok(VerdictClaim::Taken(verdict_record(&existing)?)),
            };
        };
        let claim = self.put(item, "attribute_not_exists(pk)", &[])?;
        let entry = outbox_entry(seq, message, record.claimed_at);
        if self.put_with_outbox_entry(claim, entry).await? {
            return Ok(VerdictClaim::Claimed);
        }
        // Decided before: the message is not added (its place stays a gap).
        match self.verdict(&verdict.sha).await? {
            Some(held) => Ok(VerdictClaim::Taken(held)),
            None => Err(StoreError::Unavailable(
                "the verdict's claim was refused, but no verdict is recorded".into(),
            )),
        }
    }

    async fn mark_verdict_notified(
        &self,
        sha: &str,
        now: i64,
        sent_to: u64,
    ) -> Result<(), StoreError> {
        self.client
            .update_item()
            .table_name(&self.tables.main)
            .key("pk", s(format!("commit#{sha}")))
            .key("sk", s("verdict"))
            .update_expression("SET notified_at = :now, sent_to = :sent_to")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_values(":sent_to", n(sent_to as i64))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn mark_deployed(
        &self,
        sha: &str,
        delivery_id: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.tables.main)
            .item("pk", s(format!("commit#{sha}")))
            .item("sk", s("deployed"))
            .item("delivery_id", s(delivery_id))
            .item("deployed_at", n(now))
            .item(TTL_ATTRIBUTE, n(now + ttl::DEPLOY))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn is_deployed(&self, sha: &str) -> Result<bool, StoreError> {
        Ok(self
            .get(format!("commit#{sha}"), "deployed")
            .await?
            .is_some())
    }

    async fn verdict(&self, sha: &str) -> Result<Option<VerdictRecord>, StoreError> {
        self.get(format!("commit#{sha}"), "verdict")
            .await?
            .map(|item| verdict_record(&item))
            .transpose()
    }
}

/// The most keys one `BatchGetItem` takes.
const BATCH_GET_MAX: usize = 100;

fn status_record(item: &Item) -> Result<StatusRecord, StoreError> {
    Ok(StatusRecord {
        sha: text(item, "sha")?,
        context: text(item, "context")?,
        state: text(item, "state")?,
        target_url: optional_text(item, "target_url"),
        description: optional_text(item, "description"),
        sender: optional_text(item, "sender"),
        updated_at: number(item, "updated_at")?,
        status_id: number(item, "status_id")? as u64,
        delivery_id: text(item, "delivery_id")?,
        source: ci_source(item)?,
    })
}

fn verdict_record(item: &Item) -> Result<VerdictRecord, StoreError> {
    Ok(VerdictRecord {
        verdict: Verdict {
            sha: text(item, "sha")?,
            state: text(item, "state")?,
            ci_url: optional_text(item, "ci_url"),
            commit_message: text(item, "commit_message")?,
        },
        delivery_id: text(item, "delivery_id")?,
        claimed_at: number(item, "claimed_at")?,
        notified_at: number(item, "notified_at").ok(),
        sent_to: number(item, "sent_to").ok().map(|n| n as u64),
    })
}

#[async_trait]
impl Stalls for DynamoStore {
    async fn stalls(&self) -> Result<Vec<(String, Stall)>, StoreError> {
        let Some(item) = self.get(STALLS_PK.to_string(), LIST_SK).await? else {
            return Ok(Vec::new());
        };
        list_entries(&item)
            .into_iter()
            .map(|(key, value)| {
                let stall = serde_json::from_str(&value)
                    .map_err(|e| StoreError::Corrupt(format!("stall {key}: {e}")))?;
                Ok((key, stall))
            })
            .collect()
    }

    async fn put_stall(&self, key: &str, stall: &Stall) -> Result<(), StoreError> {
        let value = serde_json::to_string(stall).expect("a stall serialises");
        self.put_list_entry(STALLS_PK, key, value).await?;
        Ok(())
    }

    async fn remove_stall(&self, key: &str) -> Result<(), StoreError> {
        let removed = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .key("pk", s(STALLS_PK))
            .key("sk", s(LIST_SK))
            .update_expression("REMOVE #entry")
            .expression_attribute_names("#entry", format!("{ENTRY_PREFIX}{key}"))
            .send()
            .await;
        removed.map(|_| ()).map_err(unavailable)
    }
}

#[async_trait]
impl Recent for DynamoStore {
    async fn note_recent(
        &self,
        list: &str,
        id: Option<&str>,
        entry: &HistoryEntry,
        keep: usize,
    ) -> Result<(), StoreError> {
        let id = id.map_or_else(|| entry_key(entry.at), str::to_string);
        let value = serde_json::to_string(entry).expect("a history entry serialises");
        let pk = recent_pk(list);
        let writes = self.put_list_entry(&pk, &id, value).await?;
        // Housekeeping: the entry is in; a failed trim is done by the next one.
        if writes % (keep as i64 / 4).max(1) == 0
            && let Err(error) = self.trim_recent(&pk, keep).await
        {
            tracing::warn!(list, %error, "recent list not trimmed");
        }
        Ok(())
    }

    async fn recent(&self, lists: &[&str]) -> Result<Vec<Vec<HistoryEntry>>, StoreError> {
        let keys: Vec<(String, String)> = lists
            .iter()
            .map(|list| (recent_pk(list), LIST_SK.to_string()))
            .collect();
        let items = self.batch_get(&keys).await?;
        keys.iter()
            .map(|(pk, _)| {
                let Some(item) = items
                    .iter()
                    .find(|i| optional_text(i, "pk").as_ref() == Some(pk))
                else {
                    return Ok(Vec::new());
                };
                let entries = recent_entries(item)?;
                Ok(newest_entries(entries, usize::MAX)
                    .into_iter()
                    .map(|(_, entry)| entry)
                    .collect())
            })
            .collect()
    }
}

#[async_trait]
impl History for DynamoStore {
    async fn append_history(&self, stream: &str, entry: &HistoryEntry) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.tables.main)
            .item("pk", s(format!("history#{stream}")))
            .item("sk", s(entry_key(entry.at)))
            .item("at", n(entry.at))
            .item("delivery_id", s(&entry.delivery_id))
            .item("outcome", s(entry.outcome.as_str()))
            .item("detail", s(entry.detail.to_string()))
            .item(TTL_ATTRIBUTE, n(entry.at + ttl::HISTORY))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn history(&self, stream: &str, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        let output = self
            .client
            .query()
            .table_name(&self.tables.main)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(format!("history#{stream}")))
            .scan_index_forward(false)
            .limit(limit.clamp(1, 1000) as i32)
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        output
            .items
            .unwrap_or_default()
            .iter()
            .map(|item| {
                Ok(HistoryEntry {
                    at: number(item, "at")?,
                    delivery_id: text(item, "delivery_id")?,
                    outcome: HistoryOutcome::parse(&text(item, "outcome")?),
                    detail: serde_json::from_str(&text(item, "detail")?)
                        .map_err(|e| StoreError::Corrupt(format!("history detail: {e}")))?,
                })
            })
            .collect()
    }
}

#[async_trait]
impl Claims for DynamoStore {
    async fn claim(&self, key: &str, owner: &str, now: i64) -> Result<Claim, StoreError> {
        let record = ClaimRecord {
            owner: owner.to_string(),
            claimed_at: now,
            state: ClaimState::Claimed,
        };
        let Some(held) = self.put_unless_present(claim_item(key, &record)).await? else {
            return Ok(Claim::Won);
        };
        Ok(Claim::Held(claim_record(&held)?))
    }

    async fn claim_holder(&self, key: &str) -> Result<Option<ClaimRecord>, StoreError> {
        let held = self.get(format!("claim#{key}"), "claim").await?;
        held.as_ref().map(claim_record).transpose()
    }

    async fn swap_claim(
        &self,
        key: &str,
        expected: &ClaimRecord,
        new: &ClaimRecord,
    ) -> Result<bool, StoreError> {
        let result = self
            .client
            .put_item()
            .table_name(&self.tables.main)
            .set_item(Some(claim_item(key, new)))
            .condition_expression(
                "#owner = :owner AND claimed_at = :claimed_at AND #state = :state",
            )
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_names("#state", "state")
            .expression_attribute_values(":owner", s(&expected.owner))
            .expression_attribute_values(":claimed_at", n(expected.claimed_at))
            .expression_attribute_values(":state", s(expected.state.as_str()))
            .send()
            .await;
        applied(result)
    }
}

#[async_trait]
impl Connections for DynamoStore {
    async fn put_connection(&self, connection: &Connection) -> Result<(), StoreError> {
        let mut item = item([
            ("connection_id", s(&connection.id)),
            ("connected_at", n(connection.connected_at)),
            (TTL_ATTRIBUTE, n(connection.expires_at)),
        ]);
        put_optional(&mut item, "source_ip", &connection.source_ip);
        put_optional(&mut item, "client", &connection.client);
        if !connection.subscriptions.is_empty() {
            item.insert(
                "subscriptions".into(),
                AttributeValue::Ss(connection.subscriptions.iter().cloned().collect()),
            );
        }
        self.client
            .put_item()
            .table_name(&self.tables.connections)
            .set_item(Some(item))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn delete_connection(&self, id: &str) -> Result<(), StoreError> {
        self.client
            .delete_item()
            .table_name(&self.tables.connections)
            .key("connection_id", s(id))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn subscribe(
        &self,
        id: &str,
        identifier: &str,
        client: &str,
    ) -> Result<bool, StoreError> {
        self.change_subscriptions(id, identifier, Some(client))
            .await
    }

    async fn unsubscribe(&self, id: &str, identifier: &str) -> Result<bool, StoreError> {
        self.change_subscriptions(id, identifier, None).await
    }

    async fn connections(&self, now: i64) -> Result<Vec<Connection>, StoreError> {
        let mut connections = Vec::new();
        let mut start = None;
        loop {
            let output = self
                .client
                .scan()
                .table_name(&self.tables.connections)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(unavailable)?;
            for item in output.items.unwrap_or_default() {
                let connection = Connection {
                    id: text(&item, "connection_id")?,
                    connected_at: number(&item, "connected_at")?,
                    source_ip: optional_text(&item, "source_ip"),
                    subscriptions: match item.get("subscriptions") {
                        Some(AttributeValue::Ss(set)) => set.iter().cloned().collect(),
                        _ => BTreeSet::new(),
                    },
                    client: optional_text(&item, "client"),
                    expires_at: number(&item, TTL_ATTRIBUTE)?,
                };
                if connection.expires_at > now {
                    connections.push(connection);
                }
            }
            match output.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => return Ok(connections),
            }
        }
    }
}

#[async_trait]
impl ClientKeys for DynamoStore {
    async fn add_client_key(&self, key: &ClientKey) -> Result<bool, StoreError> {
        let item = item([
            ("pk", s(CLIENT_KEYS_PK)),
            ("sk", s(format!("name#{}", key.name))),
            ("name", s(&key.name)),
            ("key_hash", s(&key.key_hash)),
            ("created_at", n(key.created_at)),
        ]);
        Ok(self.put_unless_present(item).await?.is_none())
    }

    async fn client_key_by_hash(&self, key_hash: &str) -> Result<Option<ClientKey>, StoreError> {
        // A handful of keys, one per Smokey instance: reading the partition is cheaper than
        // keeping a second item per key in step.
        Ok(self
            .client_keys()
            .await?
            .into_iter()
            .find(|k| k.key_hash == key_hash))
    }

    async fn client_keys(&self) -> Result<Vec<ClientKey>, StoreError> {
        self.query(CLIENT_KEYS_PK.to_string(), SortKeys::Prefix("name#"))
            .await?
            .iter()
            .map(|item| {
                Ok(ClientKey {
                    name: text(item, "name")?,
                    key_hash: text(item, "key_hash")?,
                    created_at: number(item, "created_at")?,
                })
            })
            .collect()
    }

    async fn revoke_client_key(&self, name: &str) -> Result<bool, StoreError> {
        let output = self
            .client
            .delete_item()
            .table_name(&self.tables.main)
            .key("pk", s(CLIENT_KEYS_PK))
            .key("sk", s(format!("name#{name}")))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(unavailable)?;
        Ok(output.attributes.is_some_and(|old| !old.is_empty()))
    }
}

#[async_trait]
impl Outbox for DynamoStore {
    async fn append_outbox(&self, message: &str, now: i64) -> Result<u64, StoreError> {
        let seq = self.reserve_place().await?;
        self.put_outbox_entry(seq, message, now).await?;
        Ok(seq)
    }

    async fn put_outbox_entry(
        &self,
        place: u64,
        message: &str,
        now: i64,
    ) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.tables.main)
            .set_item(Some(outbox_entry(place, message, now)))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn append_outbox_once(
        &self,
        message: &str,
        fingerprint: &str,
        now: i64,
        horizon: i64,
    ) -> Result<Option<u64>, StoreError> {
        let seq = self.reserve_place().await?;
        let sighting = item([
            ("pk", s(format!("sighting#{fingerprint}"))),
            ("sk", s("seen")),
            ("seen_at", n(now)),
            (TTL_ATTRIBUTE, n(now + ttl::SIGHTING)),
        ]);
        let unseen = "attribute_not_exists(pk) OR seen_at <= :horizon";
        let sighting = self.put(sighting, unseen, &[(":horizon", n(now - horizon))])?;
        // Both or neither: a sighting without its entry would make the frame a duplicate
        // of nothing, and an entry without its sighting would let another run add it again.
        let written = self
            .put_with_outbox_entry(sighting, outbox_entry(seq, message, now))
            .await?;
        Ok(written.then_some(seq))
    }

    async fn outbox_after(
        &self,
        after: u64,
        not_before: i64,
        limit: usize,
    ) -> Result<Vec<OutboxEntry>, StoreError> {
        let range = SortKeys::Between(outbox_sk(after + 1), outbox_sk(u64::MAX));
        let mut entries = Vec::new();
        for item in self.query(OUTBOX_PK.to_string(), range).await? {
            let at = number(&item, "at")?;
            if at < not_before {
                continue;
            }
            entries.push(OutboxEntry {
                seq: place(&item)?,
                message: text(&item, "message")?,
                at,
            });
            if entries.len() == limit {
                break;
            }
        }
        Ok(entries)
    }

    /// The counter's atomic `ADD`. A crash before the entry is written leaves a gap.
    async fn reserve_place(&self) -> Result<u64, StoreError> {
        let output = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .key("pk", s(OUTBOX_PK))
            .key("sk", s("head"))
            .update_expression("ADD #seq :one")
            .expression_attribute_names("#seq", "seq")
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(unavailable)?;
        place(&output.attributes.unwrap_or_default())
    }

    async fn release_place(&self, place: u64) -> Result<(), StoreError> {
        let released = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .key("pk", s(OUTBOX_PK))
            .key("sk", s("head"))
            .update_expression("SET #seq = :before")
            .condition_expression("#seq = :place")
            .expression_attribute_names("#seq", "seq")
            .expression_attribute_values(":place", n(place as i64))
            .expression_attribute_values(":before", n(place as i64 - 1))
            .send()
            .await;
        // Another place was given out since: this one stays a gap.
        applied(released).map(|_| ())
    }

    async fn outbox_head(&self) -> Result<u64, StoreError> {
        match self.get(OUTBOX_PK.to_string(), "head").await? {
            Some(item) => place(&item),
            None => Ok(0),
        }
    }

    async fn cursor_and_moved_at(
        &self,
        client: &str,
    ) -> Result<Option<(u64, Option<i64>)>, StoreError> {
        let Some(item) = self
            .get(CURSORS_PK.to_string(), &format!("client#{client}"))
            .await?
        else {
            return Ok(None);
        };
        Ok(Some((place(&item)?, number(&item, "moved_at").ok())))
    }

    async fn cursor(&self, client: &str) -> Result<Option<u64>, StoreError> {
        let cursor = self.cursor_and_moved_at(client).await?;
        Ok(cursor.map(|(seq, _)| seq))
    }

    async fn advance_cursor(&self, client: &str, seq: u64, now: i64) -> Result<(), StoreError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.tables.main)
            .key("pk", s(CURSORS_PK))
            .key("sk", s(format!("client#{client}")))
            .update_expression("SET #seq = :seq, #ttl = :ttl, moved_at = :now")
            .condition_expression("attribute_not_exists(#seq) OR #seq < :seq")
            .expression_attribute_values(":now", n(now))
            .expression_attribute_names("#seq", "seq")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":seq", n(seq as i64))
            .expression_attribute_values(":ttl", n(now + ttl::CURSOR))
            .send()
            .await;
        // False: already at or past `seq`, never moved back.
        applied(result).map(|_| ())
    }

    async fn start_cursor(&self, client: &str, seq: u64, now: i64) -> Result<(), StoreError> {
        self.client
            .put_item()
            .table_name(&self.tables.main)
            .item("pk", s(CURSORS_PK))
            .item("sk", s(format!("client#{client}")))
            .item("seq", n(seq as i64))
            .item("moved_at", n(now))
            .item(TTL_ATTRIBUTE, n(now + ttl::CURSOR))
            .send()
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

/// Creates both tables with on-demand billing and TTL, as template.yaml declares them. For
/// local servers (moto) and the local gateway; in AWS the template creates them.
pub async fn create_tables(client: &Client, tables: &Tables) -> Result<(), StoreError> {
    let string_key = |name: &str, key_type: KeyType| {
        (
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .expect("name and type are set"),
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .expect("name and type are set"),
        )
    };
    let layouts = [
        (
            &tables.main,
            vec![
                string_key("pk", KeyType::Hash),
                string_key("sk", KeyType::Range),
            ],
        ),
        (
            &tables.connections,
            vec![string_key("connection_id", KeyType::Hash)],
        ),
    ];
    for (table, keys) in layouts {
        let (definitions, schema): (Vec<_>, Vec<_>) = keys.into_iter().unzip();
        let created = client
            .create_table()
            .table_name(table)
            .set_attribute_definitions(Some(definitions))
            .set_key_schema(Some(schema))
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => {}
            Err(e) if e.code() == Some("ResourceInUseException") => continue,
            Err(e) => return Err(unavailable(e)),
        }
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL_ATTRIBUTE)
                    .build()
                    .expect("enabled and attribute name are set"),
            )
            .send()
            .await
            .map_err(unavailable)?;
    }
    Ok(())
}

fn item<const N: usize>(attributes: [(&str, AttributeValue); N]) -> Item {
    attributes
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
}

fn recent_pk(list: &str) -> String {
    format!("recent#{list}")
}

/// The keys and (string) values of a list item's entries.
fn list_entries(item: &Item) -> Vec<(String, String)> {
    item.iter()
        .filter_map(|(name, value)| {
            let key = name.strip_prefix(ENTRY_PREFIX)?;
            Some((key.to_string(), value.as_s().ok()?.clone()))
        })
        .collect()
}

fn recent_entries(item: &Item) -> Result<Vec<(String, HistoryEntry)>, StoreError> {
    list_entries(item)
        .into_iter()
        .map(|(key, value)| {
            let entry = serde_json::from_str(&value)
                .map_err(|e| StoreError::Corrupt(format!("recent entry {key}: {e}")))?;
            Ok((key, entry))
        })
        .collect()
}

fn claim_record(item: &Item) -> Result<ClaimRecord, StoreError> {
    let state = text(item, "state")?;
    Ok(ClaimRecord {
        owner: text(item, "owner")?,
        claimed_at: number(item, "claimed_at")?,
        state: ClaimState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown claim state {state:?}")))?,
    })
}

fn claim_item(key: &str, record: &ClaimRecord) -> Item {
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
fn outbox_sk(seq: u64) -> String {
    format!("frame#{seq:020}")
}

fn written_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: i64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn put_optional(item: &mut Item, name: &str, value: &Option<String>) {
    if let Some(value) = value {
        item.insert(name.to_string(), s(value));
    }
}

fn text(item: &Item, name: &str) -> Result<String, StoreError> {
    optional_text(item, name)
        .ok_or_else(|| StoreError::Corrupt(format!("attribute {name} is missing or not a string")))
}

/// A status item's source; items version one wrote have none and are statuses.
fn ci_source(item: &Item) -> Result<CiSource, StoreError> {
    match optional_text(item, "source") {
        None => Ok(CiSource::Status),
        Some(name) => CiSource::parse(&name)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown CI source {name:?}"))),
    }
}

fn optional_text(item: &Item, name: &str) -> Option<String> {
    item.get(name).and_then(|v| v.as_s().ok()).cloned()
}

fn number(item: &Item, name: &str) -> Result<i64, StoreError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("attribute {name} is missing or not a number")))
}

/// Whether a conditional write was made (false: its condition did not hold).
fn applied<T, E, R>(result: Result<T, SdkError<E, R>>) -> Result<bool, StoreError>
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
fn place(item: &Item) -> Result<u64, StoreError> {
    u64::try_from(number(item, "seq")?)
        .map_err(|e| StoreError::Corrupt(format!("attribute seq is not a place: {e}")))
}

fn condition_failed<E: ProvideErrorMetadata, R>(error: &SdkError<E, R>) -> bool {
    error.code() == Some("ConditionalCheckFailedException")
}

/// A transaction cancelled because one of its conditions did not hold (and not for a
/// conflict or a throttle, which a retry may get past).
fn transaction_condition_failed<R>(error: &SdkError<TransactWriteItemsError, R>) -> bool {
    match error.as_service_error() {
        Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) => cancelled
            .cancellation_reasons()
            .iter()
            .any(|reason| reason.code() == Some("ConditionalCheckFailed")),
        _ => false,
    }
}

fn outbox_entry(seq: u64, message: &str, now: i64) -> Item {
    item([
        ("pk", s(OUTBOX_PK)),
        ("sk", s(outbox_sk(seq))),
        ("seq", n(seq as i64)),
        ("message", s(message)),
        ("at", n(now)),
        (TTL_ATTRIBUTE, n(now + ttl::OUTBOX)),
    ])
}

fn unavailable<E: std::error::Error + 'static, R: std::fmt::Debug>(
    error: SdkError<E, R>,
) -> StoreError {
    StoreError::Unavailable(DisplayErrorContext(&error).to_string())
}
