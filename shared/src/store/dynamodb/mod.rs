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
use aws_sdk_dynamodb::error::ProvideErrorMetadata;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put, ReturnValue,
    ScalarAttributeType, TimeToLiveSpecification, TransactWriteItem,
};

mod claims;
mod commits;
mod connections;
mod history;
mod items;
mod ledger;
mod lists;
mod outbox;

pub use items::TTL_ATTRIBUTE;
use items::*;

use super::*;
use crate::config::Tables;

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
