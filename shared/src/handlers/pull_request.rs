//! `github-pull-request`: opened PRs are announced, approved bot PRs merge themselves
//! (DESIGN §1, §4 "Pull request").

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use http::StatusCode;
use serde_json::{Value, json};

use super::webhook::{Endpoint, Plan, Route, Transient, Webhook};
use crate::answer::Answer;
use crate::config::RelayConfig;
use crate::github::payloads::{self, PullRequestEvent, StatusEvent};
use crate::github::retry::RetryPolicy;
use crate::github::{GitHub, GitHubError, PullRequest};
use crate::notify::{Notifier, SmokeyMessage};
use crate::rules::merge::{self as rules, PullCheck};
use crate::store::{Claim, Store};

/// Everything the two routes share.
pub struct PullRequests {
    pub config: RelayConfig,
    pub store: Arc<dyn Store>,
    pub notifier: Arc<dyn Notifier>,
    pub github: Arc<dyn GitHub>,
    pub retry: RetryPolicy,
}

impl PullRequests {
    async fn record(
        &self,
        stream: &str,
        delivery_id: &str,
        outcome: &str,
        detail: Value,
    ) -> Result<(), Transient> {
        super::record_history(self.store.as_ref(), stream, delivery_id, outcome, detail).await
    }

    async fn say(&self, message: String) -> Result<(), Transient> {
        self.notifier
            .notify(&SmokeyMessage::Chat(message))
            .await
            .map(|_| ())
            .map_err(|e| Transient(format!("chat message not sent: {e}")))
    }
}

/// The trail of one pull request: its events and every merge attempt.
pub fn pull_stream(number: u64) -> String {
    format!("pull/{number}")
}

/// `POST /github/pull_request_hook`: `pull_request` events.
pub struct PullRequestHook(pub Arc<PullRequests>);

#[async_trait]
impl Route for PullRequestHook {
    type Work = PullRequestEvent;
    const NAME: &'static str = "pull_request_hook";
    const EVENTS: &'static [&'static str] = &["pull_request"];

    fn plan(&self, event: &str, body: &[u8]) -> Result<Plan<PullRequestEvent>, String> {
        let pr: PullRequestEvent = payloads::parse(event, body)?;
        if !self.0.config.is_our_repository(&pr.repository.full_name) {
            return Ok(Plan::Ignore(format!(
                "Pull request in {}, not {}; not interested",
                pr.repository.full_name, self.0.config.repository
            )));
        }
        Ok(Plan::Act {
            repository: pr.repository.full_name.clone(),
            work: pr,
        })
    }

    async fn act(&self, delivery_id: &str, event: PullRequestEvent) -> Result<String, Transient> {
        let pr = &event.pull_request;
        let detail = json!({
            "action": event.action,
            "author": pr.author(),
            "head_sha": pr.head.sha,
            "base": pr.base.name,
            "merged": pr.merged,
        });
        self.0
            .record(
                &pull_stream(event.number),
                delivery_id,
                &event.action,
                detail,
            )
            .await?;
        if event.action != "opened" {
            return Ok(format!("Recorded {} of #{}", event.action, event.number));
        }
        self.0.say(rules::opened_message(pr)).await?;
        Ok(format!("Announced #{}", event.number))
    }
}

/// `POST /github/pr_merge`: `status` events, where PullApprove's approval arrives.
pub struct PrMerge(pub Arc<PullRequests>);

/// How many times a merge is tried when GitHub says the base moved meanwhile.
const BASE_MODIFIED_RETRIES: u32 = 3;
/// How many merge requests a 5xx may cost before the delivery fails for a redelivery.
const SERVER_ERROR_ATTEMPTS: u32 = 2;
/// A merge claim older than this belongs to a crashed invocation.
const MERGE_LEASE_SECONDS: i64 = 120;

#[async_trait]
impl Route for PrMerge {
    type Work = StatusEvent;
    const NAME: &'static str = "pr_merge";
    const EVENTS: &'static [&'static str] = &["status"];

    fn plan(&self, event: &str, body: &[u8]) -> Result<Plan<StatusEvent>, String> {
        let status: StatusEvent = payloads::parse(event, body)?;
        if !self
            .0
            .config
            .is_our_repository(&status.repository.full_name)
        {
            return Ok(Plan::Ignore(format!(
                "Status for {}, not {}; not interested",
                status.repository.full_name, self.0.config.repository
            )));
        }
        Ok(Plan::Act {
            repository: status.repository.full_name.clone(),
            work: status,
        })
    }

    async fn act(&self, delivery_id: &str, status: StatusEvent) -> Result<String, Transient> {
        let prs = &self.0;
        let approval_stream = format!("approval/{}", status.sha);
        let detail = |reason: &str| {
            json!({ "sha": status.sha, "context": status.context, "state": status.state,
                    "sender": status.sender_login(), "reason": reason })
        };
        if let Err(reason) = rules::screen_approval(&status, &prs.config) {
            prs.record(&approval_stream, delivery_id, "not-merged", detail(&reason))
                .await?;
            return Ok(reason);
        }
        let Some(number) = self.find_pull(&status).await? else {
            let reason = format!("No open pull request has head {}; not merging", status.sha);
            prs.record(&approval_stream, delivery_id, "not-merged", detail(&reason))
                .await?;
            return Ok(reason);
        };
        let stream = pull_stream(number);
        let pr = self.read_pull(number).await?;
        let claim_key = format!("merge/{number}@{}", status.sha);
        match rules::check_pull(&pr, &status.sha, &prs.config) {
            PullCheck::Refuse(reason) => {
                prs.record(&stream, delivery_id, "not-merged", detail(&reason))
                    .await?;
                Ok(reason)
            }
            PullCheck::AlreadyMerged => self.announce_if_ours(&claim_key, delivery_id, &pr).await,
            PullCheck::Merge => {
                let now = crate::clock::now();
                match prs.store.claim(&claim_key, delivery_id, now).await? {
                    Claim::Won => {}
                    Claim::Held(held)
                        if held.state == "claimed"
                            && held.owner != delivery_id
                            && held.claimed_at >= now - MERGE_LEASE_SECONDS =>
                    {
                        return Ok(format!(
                            "Merge of #{number} is under way in delivery {}",
                            held.owner
                        ));
                    }
                    Claim::Held(held) if held.state == "merged" => {
                        return self.announce_if_ours(&claim_key, delivery_id, &pr).await;
                    }
                    Claim::Held(_) => {
                        prs.store
                            .update_claim(&claim_key, delivery_id, "claimed", now)
                            .await?
                    }
                }
                self.merge(delivery_id, &claim_key, pr, &status).await
            }
        }
    }
}

impl PrMerge {
    /// From PullApprove's target URL, else the open pull request whose head is the commit.
    async fn find_pull(&self, status: &StatusEvent) -> Result<Option<u64>, Transient> {
        let prs = &self.0;
        if let Some(number) =
            rules::pull_number_from_target_url(status.target_url.as_deref(), &prs.config.repository)
        {
            return Ok(Some(number));
        }
        let candidates = prs
            .retry
            .run("pull requests of commit", || {
                prs.github.pull_requests_with_commit(&status.sha)
            })
            .await
            .map_err(|e| {
                Transient(format!(
                    "could not list pull requests of {}: {e}",
                    status.sha
                ))
            })?;
        Ok(candidates
            .into_iter()
            .find(|pr| pr.state == "open" && pr.head.sha == status.sha)
            .map(|pr| pr.number))
    }

    async fn read_pull(&self, number: u64) -> Result<PullRequest, Transient> {
        let prs = &self.0;
        prs.retry
            .run("read pull request", || prs.github.pull_request(number))
            .await
            .map_err(|e| Transient(format!("could not read #{number}: {e}")))
    }

    async fn merge(
        &self,
        delivery_id: &str,
        claim_key: &str,
        pr: PullRequest,
        status: &StatusEvent,
    ) -> Result<String, Transient> {
        let prs = &self.0;
        let stream = pull_stream(pr.number);
        let title = rules::merge_title(&pr, &prs.config);
        let (mut base_modified, mut server_errors) = (0, 0);
        loop {
            let error = match prs.github.merge(pr.number, &title, &status.sha).await {
                Ok(merged) => return self.merged(delivery_id, claim_key, &pr, &merged.sha).await,
                Err(error) => error,
            };
            let detail = json!({ "sha": status.sha, "title": title, "error": error.to_string() });
            if error.is(StatusCode::CONFLICT) {
                prs.store
                    .update_claim(claim_key, delivery_id, "refused", crate::clock::now())
                    .await?;
                prs.record(&stream, delivery_id, "head-moved", detail)
                    .await?;
                return Ok(format!(
                    "#{} head moved since the approval; not merged",
                    pr.number
                ));
            }
            if rules::is_base_modified(&error) && base_modified < BASE_MODIFIED_RETRIES {
                base_modified += 1;
                tokio::time::sleep(Duration::from_millis(250 << base_modified)).await;
                continue;
            }
            if error.is(StatusCode::METHOD_NOT_ALLOWED) {
                prs.store
                    .update_claim(claim_key, delivery_id, "refused", crate::clock::now())
                    .await?;
                prs.record(&stream, delivery_id, "refused", detail).await?;
                prs.say(rules::not_merged_message(&pr, &error.message))
                    .await?;
                return Ok(format!(
                    "GitHub would not merge #{}: {}",
                    pr.number, error.message
                ));
            }
            if !error.is_transient() {
                prs.store
                    .update_claim(claim_key, delivery_id, "failed", crate::clock::now())
                    .await?;
                prs.record(&stream, delivery_id, "failed", detail).await?;
                return Err(Transient(format!("merging #{} failed: {error}", pr.number)));
            }
            // A 5xx may hide a merge that happened: read the pull request before anything else.
            server_errors += 1;
            let reread = self.read_pull(pr.number).await?;
            if reread.merged {
                return self
                    .merged(delivery_id, claim_key, &reread, "(unknown)")
                    .await;
            }
            if rules::check_pull(&reread, &status.sha, &prs.config) != PullCheck::Merge
                || server_errors >= SERVER_ERROR_ATTEMPTS
            {
                prs.store
                    .update_claim(claim_key, delivery_id, "failed", crate::clock::now())
                    .await?;
                prs.record(&stream, delivery_id, "failed", detail).await?;
                return Err(Transient(merge_failure(&pr, &error)));
            }
            tokio::time::sleep(
                error
                    .retry_after
                    .unwrap_or(Duration::from_millis(500))
                    .min(Duration::from_secs(2)),
            )
            .await;
        }
    }

    /// After a merge: record it, delete the head branch, tell the chat rooms.
    async fn merged(
        &self,
        delivery_id: &str,
        claim_key: &str,
        pr: &PullRequest,
        merge_sha: &str,
    ) -> Result<String, Transient> {
        let prs = &self.0;
        prs.store
            .update_claim(claim_key, delivery_id, "merged", crate::clock::now())
            .await?;
        let deleted = prs
            .retry
            .run("delete head branch", || {
                prs.github.delete_branch(&pr.head.name)
            })
            .await;
        let detail = json!({ "merge_sha": merge_sha, "branch": pr.head.name, "branch_deleted": deleted.is_ok(),
                             "delete_error": deleted.as_ref().err().map(|e| e.to_string()) });
        prs.record(&pull_stream(pr.number), delivery_id, "merged", detail)
            .await?;
        self.announce(claim_key, delivery_id, pr).await?;
        Ok(match deleted {
            Ok(()) => format!("Merged #{} and deleted {}", pr.number, pr.head.name),
            Err(e) => format!(
                "Merged #{}; {} was not deleted: {e}",
                pr.number, pr.head.name
            ),
        })
    }

    async fn announce(
        &self,
        claim_key: &str,
        delivery_id: &str,
        pr: &PullRequest,
    ) -> Result<(), Transient> {
        self.0.say(rules::merged_message(pr)).await?;
        self.0
            .store
            .update_claim(claim_key, delivery_id, "announced", crate::clock::now())
            .await?;
        Ok(())
    }

    /// A merged pull request: announced now only if the relay merged it and the announcement
    /// was lost (the delivery failed after the merge).
    async fn announce_if_ours(
        &self,
        claim_key: &str,
        delivery_id: &str,
        pr: &PullRequest,
    ) -> Result<String, Transient> {
        match self
            .0
            .store
            .claim(claim_key, delivery_id, crate::clock::now())
            .await?
        {
            Claim::Held(held) if held.state == "merged" => {
                self.announce(claim_key, delivery_id, pr).await?;
                Ok(format!("#{} was merged; announced it now", pr.number))
            }
            Claim::Won => {
                // Merged by someone else: release nothing, just leave a note.
                self.0
                    .store
                    .update_claim(
                        claim_key,
                        delivery_id,
                        "merged-elsewhere",
                        crate::clock::now(),
                    )
                    .await?;
                Ok(format!("#{} is merged already; nothing to do", pr.number))
            }
            Claim::Held(_) => Ok(format!("#{} is merged already; nothing to do", pr.number)),
        }
    }
}

/// The function's two routes, told apart by path as API Gateway sends them.
pub struct PullRequestRoutes {
    pub hook: Webhook<PullRequestHook>,
    pub merge: Webhook<PrMerge>,
}

#[async_trait]
impl Endpoint for PullRequestRoutes {
    async fn serve(&self, path: &str, headers: &http::HeaderMap, body: Vec<u8>) -> Answer {
        if path.trim_end_matches('/').ends_with("/pr_merge") {
            self.merge.handle(headers, body).await
        } else {
            self.hook.handle(headers, body).await
        }
    }
}

fn merge_failure(pr: &PullRequest, error: &GitHubError) -> String {
    format!(
        "merging #{} failed and may be retried by a redelivery: {error}",
        pr.number
    )
}
