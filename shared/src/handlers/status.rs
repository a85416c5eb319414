//! `github-status`: CI statuses (DESIGN §4, "Status").

use std::sync::Arc;

use async_trait::async_trait;

use super::webhook::{Failure, Plan, Route};
use crate::clock::Clock;
use crate::config::RelayConfig;
use crate::github::payloads::{self, StatusEvent};
use crate::notify::{Notifier, SmokeyMessage};
use crate::rules::status::{self as rules, StatusDecision, VerdictTurn};
use crate::store::{Commits, StatusWrite, Verdict, VerdictClaim, VerdictRecord};

/// `POST /github/status_hook`: `status` events decide commits.
pub struct StatusHook {
    /// The rules' settings.
    pub config: RelayConfig,
    /// Statuses and verdicts.
    pub store: Arc<dyn Commits>,
    /// Sends the verdict.
    pub notifier: Arc<dyn Notifier>,
    /// Times the verdict's claim.
    pub clock: Arc<dyn Clock>,
}

#[async_trait]
impl Route for StatusHook {
    type Work = StatusEvent;
    const NAME: &'static str = "status_hook";
    const EVENTS: &'static [&'static str] = &["status"];

    fn plan(&self, event: &str, body: &[u8]) -> Result<Plan<StatusEvent>, String> {
        let status: StatusEvent = payloads::parse(event, body)?;
        if !self.config.is_our_repository(&status.repository.full_name) {
            return Ok(Plan::Ignore(format!(
                "Status for {}, not {}; not interested",
                status.repository.full_name, self.config.repository
            )));
        }
        Ok(Plan::Act {
            repository: status.repository.full_name.clone(),
            work: status,
        })
    }

    async fn act(&self, delivery_id: &str, status: StatusEvent) -> Result<String, Failure> {
        let write = self
            .store
            .record_status(&rules::record_of(&status, delivery_id))
            .await?;
        let on_deploy = rules::lists_branch(&status, &self.config.deploy_branch)
            || self.store.is_deployed(&status.sha).await?;
        let latest = match self.config.required_contexts.is_empty() || !on_deploy {
            true => Vec::new(),
            false => self.store.latest_statuses(&status.sha).await?,
        };
        let stale = match write {
            StatusWrite::Applied => "",
            StatusWrite::Stale => " (an older update: the stored newer one stands)",
        };
        match rules::decide(&status, &latest, &self.config.required_contexts, on_deploy) {
            StatusDecision::Undecided(reason) => Ok(format!("{reason}{stale}")),
            StatusDecision::Decided(verdict) => self.send_once(delivery_id, verdict).await,
        }
    }
}

impl StatusHook {
    /// Sends a commit's verdict at most once per commit, and at least once: the delivery
    /// that claims the verdict sends it, and a retry of that delivery (or any delivery once
    /// the claim is old) sends it again if it was never marked sent.
    async fn send_once(&self, delivery_id: &str, verdict: Verdict) -> Result<String, Failure> {
        let now = self.clock.now();
        let claim = VerdictRecord {
            verdict,
            delivery_id: delivery_id.to_string(),
            claimed_at: now,
            notified_at: None,
        };
        let held = match self.store.claim_verdict(&claim).await? {
            VerdictClaim::Claimed => None,
            VerdictClaim::Taken(held) => Some(held),
        };
        let verdict = match rules::verdict_turn(held, claim) {
            VerdictTurn::Send(verdict) => verdict,
            VerdictTurn::SentAlready(held) => {
                return Ok(format!(
                    "Commit {} was decided already ({}); not sent again",
                    held.verdict.sha, held.verdict.state
                ));
            }
            VerdictTurn::Sending(held) => {
                return Ok(format!(
                    "Commit {} was decided by delivery {}, which is sending it",
                    held.verdict.sha, held.delivery_id
                ));
            }
        };
        let sent = super::say(
            self.notifier.as_ref(),
            SmokeyMessage::CommitStatus(verdict.clone()),
        )
        .await?;
        self.store
            .mark_verdict_notified(&verdict.sha, self.clock.now())
            .await?;
        Ok(format!(
            "Sent commit_status {} for {} to {sent} connection(s)",
            verdict.state, verdict.sha
        ))
    }
}
