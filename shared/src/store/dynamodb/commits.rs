//! What is known of commits (`Commits`): latest statuses and Actions results, verdicts, the relay's deploy marks.

use super::*;

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
