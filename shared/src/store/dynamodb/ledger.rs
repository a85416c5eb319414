//! The delivery ledger (`Ledger`): each delivery admitted once, its end recorded.

use super::*;

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
