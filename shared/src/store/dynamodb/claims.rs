//! Once-only claims (`Claims`): taken when unclaimed, then swapped from the record last read.

use super::*;

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
