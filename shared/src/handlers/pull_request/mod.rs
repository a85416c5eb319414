//! `github-pull-request`: opened PRs are announced, approved bot PRs merge themselves
//! (DESIGN §1, §4 "Pull request").
//!
//! A merge is once-only work under a claim per (PR, approved commit), carried through the
//! steps claimed -> merged -> announced -> branch-deleted. Each step is done by the claim's
//! holder; a delivery that finds the claim held waits for the holder (then answers with
//! what it did) or, when the holder stopped answering, takes it over and finishes its step.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Value, json};

mod merging;

use merging::{Merging, WAIT_FOR_HOLDER, read_pull};

use super::Failure;
use super::claims::ClaimHandle;
use super::webhook::{Endpoint, Plan, Route, Webhook};
use crate::answer::Answer;
use crate::domain::{HistoryOutcome, pull_stream};
use crate::github::PullRequest;
use crate::github::payloads::{self, PullRequestEvent, StatusEvent};
use crate::notify::SmokeyMessage;
use crate::rules::merge::{self as rules, PullCheck};

/// What the two routes share.
pub type PullRequests = super::Effects;

impl PullRequests {
    async fn record(
        &self,
        stream: &str,
        delivery_id: &str,
        outcome: HistoryOutcome,
        detail: Value,
    ) -> Result<(), Failure> {
        let mut detail = detail;
        // In the status page's list of every PR's events, which needs the number.
        let listed = match stream.strip_prefix("pull/").map(str::parse::<u64>) {
            Some(Ok(number)) => {
                if let Value::Object(fields) = &mut detail {
                    fields.insert("number".into(), number.into());
                }
                Some(&crate::store::recent::PULL_EVENTS)
            }
            _ => None,
        };
        super::record_history(
            self.store.as_ref(),
            self.clock.now(),
            stream,
            delivery_id,
            outcome,
            detail,
            listed,
        )
        .await
    }

    async fn say(&self, message: String) -> Result<(), Failure> {
        super::say(self.notifier.as_ref(), SmokeyMessage::Chat(message))
            .await
            .map(|_| ())
    }

    fn claim<'a>(&'a self, key: String, delivery_id: &'a str) -> ClaimHandle<'a> {
        ClaimHandle::new(self.store.as_ref(), self.clock.as_ref(), key, delivery_id)
    }
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

    async fn act(&self, delivery_id: &str, event: PullRequestEvent) -> Result<String, Failure> {
        let prs = &self.0;
        let pr = &event.pull_request;
        let detail = json!({
            "action": event.action,
            "author": pr.author(),
            "head_sha": pr.head.sha,
            "base": pr.base.name,
            "merged": pr.merged,
        });
        prs.record(
            &pull_stream(event.number),
            delivery_id,
            HistoryOutcome::Event(event.action.clone()),
            detail,
        )
        .await?;
        if event.action != "opened" {
            return Ok(format!("Recorded {} of #{}", event.action, event.number));
        }
        // Once per pull request, however often the opening is delivered or replayed.
        let claim = prs.claim(format!("opened/{}", event.number), delivery_id);
        let what = format!("Announcing #{}", event.number);
        super::claims::once(&claim, WAIT_FOR_HOLDER, &what, || async {
            prs.say(rules::opened_message(pr)).await?;
            Ok(format!("Announced #{}", event.number))
        })
        .await
    }
}

/// `POST /github/pr_merge`: `status` events, where PullApprove's approval arrives.
pub struct PrMerge(pub Arc<PullRequests>);

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

    async fn act(&self, delivery_id: &str, status: StatusEvent) -> Result<String, Failure> {
        let prs = &self.0;
        let approval_stream = format!("approval/{}", status.sha);
        // Not merged, and why: recorded in `stream`, and the reason is the answer.
        let approval = &status;
        let not_merged = |stream: String, reason: String| async move {
            let detail = json!({ "sha": approval.sha, "context": approval.context,
                "state": approval.state, "sender": approval.sender_login(), "reason": reason });
            prs.record(&stream, delivery_id, HistoryOutcome::NotMerged, detail)
                .await
                .map(|()| reason)
        };
        if let Err(reason) = rules::screen_approval(&status, &prs.config) {
            return not_merged(approval_stream, reason).await;
        }
        let found = match self.find_pull(&status).await {
            Ok(found) => found,
            Err(Failure::Permanent(reason)) => return not_merged(approval_stream, reason).await,
            Err(transient) => return Err(transient),
        };
        let Some(pr) = found else {
            let reason = format!("No open pull request has head {}; not merging", status.sha);
            return not_merged(approval_stream, reason).await;
        };
        if let PullCheck::Refuse(reason) = rules::check_pull(&pr, &status.sha, &prs.config) {
            return not_merged(pull_stream(pr.number), reason).await;
        }
        let claim = prs.claim(format!("merge/{}@{}", pr.number, status.sha), delivery_id);
        Merging {
            prs,
            claim,
            sha: &status.sha,
            approval: &status,
        }
        .run(pr)
        .await
    }
}

impl PrMerge {
    /// The pull request named by PullApprove's target URL, else the open one whose head is
    /// the commit, as GitHub reads it now.
    async fn find_pull(&self, status: &StatusEvent) -> Result<Option<PullRequest>, Failure> {
        let prs = &self.0;
        if let Some(number) =
            rules::pull_number_from_target_url(status.target_url.as_deref(), &prs.config.repository)
        {
            return read_pull(prs, number).await.map(Some);
        }
        let candidates = prs
            .retry
            .run("pull requests of commit", || {
                prs.github.pull_requests_with_commit(&status.sha)
            })
            .await
            .map_err(|e| {
                super::github_failure(
                    format!("could not list pull requests of {}", status.sha),
                    &e,
                )
            })?;
        let Some(number) = candidates
            .into_iter()
            .find(|pr| pr.state == "open" && pr.head.sha == status.sha)
            .map(|pr| pr.number)
        else {
            return Ok(None);
        };
        read_pull(prs, number).await.map(Some)
    }
}

/// Whether the merge route's answer says the pull request is merged (by this delivery or
/// another, or by hand): the answers of `merging::Merging::steps` and `merging::finished`.
pub fn answer_says_merged(answer: &str) -> bool {
    answer.starts_with("Merged #")
        || answer.contains("is merged already")
        || answer.contains("was merged by delivery")
}

/// The function's two routes, told apart by path as API Gateway sends them.
pub struct PullRequestRoutes {
    /// `POST /github/pull_request_hook`.
    pub hook: Webhook<PullRequestHook>,
    /// `POST /github/pr_merge`.
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

#[cfg(test)]
mod tests {
    use super::merging::finished;
    use super::*;
    use crate::store::{ClaimRecord, ClaimState};

    #[test]
    fn the_answers_that_mean_merged_are_told_from_the_others() {
        let held = |state| ClaimRecord {
            owner: "d1".into(),
            claimed_at: 1,
            state,
        };
        assert!(answer_says_merged("Merged #7 and deleted auto-blacklist-7"));
        assert!(answer_says_merged(&finished(
            7,
            &held(ClaimState::BranchDeleted)
        )));
        assert!(answer_says_merged(&finished(
            7,
            &held(ClaimState::MergedElsewhere)
        )));
        assert!(!answer_says_merged(&finished(
            7,
            &held(ClaimState::Refused)
        )));
        assert!(!answer_says_merged(
            "GitHub would not merge #7: conflicts a union merge cannot resolve in x"
        ));
    }
}
