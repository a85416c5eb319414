//! The append-only history streams (`History`).

use super::*;

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
