//! A pass's healing steps: deploy moved behind master or its divergence reported, a deploy
//! head's missing verdict judged from GitHub's results, approved bot pull requests merged;
//! each through the route that would have done it.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{PassReport, Reconcile, WAIT_FOR_HOLDER, short};
use crate::domain::{CiSource, HistoryOutcome, StatusRecord};
use crate::github::api::{Comparison, OpenPull};
use crate::github::payloads::StatusEvent;
use crate::handlers::Failure;
use crate::handlers::claims::{self, ClaimHandle};
use crate::handlers::pull_request::{PrMerge, answer_says_merged};
use crate::handlers::push::PushHook;
use crate::handlers::webhook::{Plan, Route};
use crate::rules::checks;
use crate::rules::reconcile::{self as rules, DeployStand};

impl Reconcile {
    /// Deploy behind: moved as a push would move it. Diverged: reported once per pair of
    /// heads. Answers where deploy is afterwards.
    pub(super) async fn heal_deploy(
        &self,
        report: &mut PassReport,
        source_head: &str,
        deploy_head: &str,
    ) -> Result<String, Failure> {
        let fx = &self.effects;
        let (source, deploy) = (&fx.config.source_branch, &fx.config.deploy_branch);
        let compared = self
            .call(report, "compare the branches", || {
                fx.github.compare(source_head, deploy_head)
            })
            .await?;
        match rules::deploy_stand(&compared) {
            DeployStand::InStep => Ok(deploy_head.to_string()),
            DeployStand::Behind if report.dry_run => {
                report.done.push(format!(
                    "would move {deploy} from {deploy_head} to {source_head} (fast-forward) \
                     and send deploy_updated"
                ));
                Ok(source_head.to_string())
            }
            DeployStand::Diverged if report.dry_run => {
                let key = rules::divergence_key(source_head, deploy_head);
                let said = fx.store.claim_holder(&key).await?;
                report.done.push(match said {
                    Some(held) if held.state.is_final() => {
                        format!("{deploy} diverged from {source}: reported already")
                    }
                    _ => format!(
                        "would report that {deploy} diverged from {source} ({} commit(s) only on {deploy})",
                        compared.ahead_by
                    ),
                });
                Ok(deploy_head.to_string())
            }
            DeployStand::Behind => {
                let message = self
                    .call(report, "read the source head", || {
                        fx.github.commit_message(source_head)
                    })
                    .await?;
                let push = self.push_payload(deploy_head, source_head, &message);
                let route = PushHook(fx.as_ref().clone());
                let body = serde_json::to_vec(&push).expect("a JSON value serialises");
                let answer = match route.plan("push", &body) {
                    Ok(Plan::Act { work, .. }) => route.act(&report.pass, work).await?,
                    Ok(Plan::Ignore(reason)) | Err(reason) => reason,
                };
                report
                    .done
                    .push(format!("{deploy} behind {source}: {answer}"));
                self.call(report, "read the deploy branch", || {
                    fx.github.branch_head(deploy)
                })
                .await
            }
            DeployStand::Diverged => {
                let answer = self
                    .report_divergence(report, source_head, deploy_head, &compared)
                    .await?;
                report
                    .done
                    .push(format!("{deploy} diverged from {source}: {answer}"));
                Ok(deploy_head.to_string())
            }
        }
    }

    /// The push payload a move needs, built from GitHub's data.
    fn push_payload(&self, before: &str, after: &str, message: &str) -> Value {
        let config = &self.effects.config;
        let mut push = rules::deploy_updated_payload(
            &config.repository,
            &config.source_branch,
            before,
            after,
            message,
        );
        push["repository"] = json!({ "full_name": config.repository });
        push["deleted"] = json!(false);
        push
    }

    async fn report_divergence(
        &self,
        report: &PassReport,
        source_head: &str,
        deploy_head: &str,
        compared: &Comparison,
    ) -> Result<String, Failure> {
        let fx = &self.effects;
        let claim = ClaimHandle::new(
            fx.store.as_ref(),
            fx.clock.as_ref(),
            rules::divergence_key(source_head, deploy_head),
            &report.pass,
        );
        let cause = format!(
            "{} has commits {} lacks",
            fx.config.deploy_branch, fx.config.source_branch
        );
        let route = PushHook(fx.as_ref().clone());
        claims::once(&claim, WAIT_FOR_HOLDER, "Reporting the divergence", || {
            route.report(
                &report.pass,
                HistoryOutcome::Diverged,
                &cause,
                deploy_head,
                compared,
            )
        })
        .await
    }

    /// A deploy head without a sent verdict: its statuses and check runs are read and
    /// recorded, and the commit decided by the status route's rule. Answers whether it is
    /// still without a verdict.
    pub(super) async fn heal_verdict(
        &self,
        report: &mut PassReport,
        sha: &str,
    ) -> Result<bool, Failure> {
        let fx = &self.effects;
        let sent = |record: Option<crate::domain::VerdictRecord>| {
            record.is_some_and(|r| r.notified_at.is_some())
        };
        if sent(fx.store.verdict(sha).await?) {
            report.checked.push(format!("{sha} has its verdict"));
            return Ok(false);
        }
        let records = self.read_results(report, sha).await?;
        if report.dry_run {
            report.done.push(
                match crate::rules::status::decide_recorded(&records, &fx.config) {
                    crate::rules::status::StatusDecision::Decided(decided) => format!(
                        "would send the verdict {} for {sha} ({})",
                        decided.state,
                        decided.contexts.join(", ")
                    ),
                    crate::rules::status::StatusDecision::Undecided(reason) => {
                        format!("no verdict for {sha} yet: {reason}")
                    }
                },
            );
            return Ok(true);
        }
        for record in records {
            crate::handlers::record_result(fx.store.as_ref(), &record).await?;
        }
        let answer = crate::handlers::verdict::judge_deployed(fx, &report.pass, sha, None).await?;
        report.done.push(format!("verdict for {sha}: {answer}"));
        Ok(!sent(fx.store.verdict(sha).await?))
    }

    /// A commit's statuses and check runs as GitHub has them, as the relay records them.
    async fn read_results(
        &self,
        report: &mut PassReport,
        sha: &str,
    ) -> Result<Vec<StatusRecord>, Failure> {
        let fx = &self.effects;
        let statuses = self
            .call(report, "read the statuses", || {
                fx.github.combined_status(sha)
            })
            .await?;
        let runs = self
            .call(report, "read the check runs", || fx.github.check_runs(sha))
            .await?;
        let records = statuses
            .into_iter()
            .map(|status| StatusRecord {
                sha: sha.to_string(),
                context: status.context,
                state: status.state,
                target_url: status.target_url,
                description: status.description,
                sender: status.creator.map(|c| c.login),
                updated_at: status.updated_at.timestamp(),
                status_id: status.id,
                delivery_id: report.pass.clone(),
                source: CiSource::Status,
            })
            .chain(
                runs.iter()
                    .filter_map(|run| checks::from_run(run, None))
                    .map(|result| result.into_report(&report.pass).record),
            );
        Ok(records.collect())
    }

    /// Every open bot pull request approved at its head is merged through the merge route.
    /// Answers the approved ones that are still not merged.
    pub(super) async fn heal_merges(
        &self,
        report: &mut PassReport,
        pulls: &[OpenPull],
    ) -> Result<Vec<u64>, Failure> {
        let fx = &self.effects;
        let route = PrMerge(Arc::clone(&self.effects));
        let mut unmerged = Vec::new();
        for pull in pulls {
            let Some(approval) = self.approval_of(pull) else {
                continue;
            };
            if report.dry_run {
                report.done.push(format!(
                    "would merge #{} (approved at {}), after the merge route's checks",
                    pull.number,
                    short(&pull.head_sha)
                ));
                unmerged.push(pull.number);
                continue;
            }
            let body = serde_json::to_vec(&approval).expect("a JSON value serialises");
            let answer = match route.plan("status", &body) {
                Ok(Plan::Act { work, .. }) => route.act(&report.pass, work).await?,
                Ok(Plan::Ignore(reason)) | Err(reason) => reason,
            };
            if !answer_says_merged(&answer) {
                unmerged.push(pull.number);
            }
            report
                .done
                .push(format!("approved #{}: {answer}", pull.number));
        }
        report.checked.push(format!(
            "{} open pull request(s), {} by {}",
            pulls.len(),
            pulls.iter().filter(|p| self.is_bot_pull(p)).count(),
            fx.config.bot_login
        ));
        Ok(unmerged)
    }

    fn is_bot_pull(&self, pull: &OpenPull) -> bool {
        let config = &self.effects.config;
        pull.author
            .as_deref()
            .is_some_and(|a| a.eq_ignore_ascii_case(&config.bot_login))
            && pull.base == config.source_branch
    }

    /// The approval status of a bot pull request's head, as the merge route takes it, when
    /// it is there (and from an allowed sender: the route checks that again).
    fn approval_of(&self, pull: &OpenPull) -> Option<Value> {
        let config = &self.effects.config;
        if !self.is_bot_pull(pull) {
            return None;
        }
        let status = pull
            .statuses
            .iter()
            .find(|s| s.context == config.approval_context && s.state == "success")?;
        let event = json!({
            "id": 0,
            "sha": pull.head_sha,
            "state": status.state,
            "context": status.context,
            "target_url": status.target_url,
            "branches": [],
            "commit": { "commit": { "message": "" } },
            "updated_at": chrono::DateTime::from_timestamp(self.effects.clock.now(), 0)
                .unwrap_or_default()
                .to_rfc3339(),
            "repository": { "full_name": config.repository },
            "sender": status.creator.as_ref().map(|login| json!({ "login": login })),
        });
        let screened: StatusEvent = serde_json::from_value(event.clone()).ok()?;
        crate::rules::merge::screen_approval(&screened, config).ok()?;
        Some(event)
    }
}
