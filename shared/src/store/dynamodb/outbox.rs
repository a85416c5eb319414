//! The outbox (`Outbox`): places, entries, the keys' cursors and the bridged frames' sightings.

use super::*;

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
