//! The items that hold a whole list, one attribute an entry: the watched stalls (`Stalls`) and the status page's recent lists (`Recent`).

use super::*;

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
