//! The reconcile pass (issue 15): compares the relay's records with GitHub's real state and
//! heals what a lost webhook left behind through the routes' own work (the push route's
//! move, the verdict, the merge route's merge), under the same claims and into the same
//! histories, with a delivery id `reconcile/<time>`; then raises or clears stall alerts.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;
use serde_json::{Value, json};

use super::Effects;
use super::Failure;
use super::claims::{self, ClaimHandle};
use super::pull_request::{PrMerge, answer_says_merged};
use super::push::PushHook;
use super::webhook::{Plan, Route};
use crate::domain::{CiSource, HistoryOutcome, Stall, StatusRecord};
use crate::github::api::{Comparison, OpenPull};
use crate::github::payloads::StatusEvent;
use crate::notify::SmokeyMessage;
use crate::rules::checks;
use crate::rules::reconcile::{self as rules, DeployStand, StallTurn};
use crate::store::{Claim, ClaimRecord, ClaimState};

/// The history stream of stall alerts.
pub const RECONCILE_HISTORY: &str = "reconcile";

/// How long a delivery waits for another one doing the same divergence report.
const WAIT_FOR_HOLDER: std::time::Duration = std::time::Duration::from_secs(5);

/// The claim a pass holds while it runs, so that passes do not overlap.
pub const PASS_LEASE_KEY: &str = "reconcile/pass";

pub use crate::rules::reconcile::PASS_LEASE_SECONDS;

/// A reconcile pass's parts: every effect a webhook route may have, and when a stall alerts.
pub struct Reconcile {
    /// The routes' parts, shared with the routes the pass runs.
    pub effects: Arc<Effects>,
    /// How long a stall lasts before its alert (`STALL_ALERT_MINUTES`); a deploy head without
    /// a verdict gets four times as long.
    pub stall_after_seconds: i64,
}

/// What one pass did, logged as one JSON line and answered by the function.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PassReport {
    /// The pass's delivery id in histories: `reconcile/<unix time>-<random>`.
    pub pass: String,
    /// A dry run: `done` says what the pass would do; nothing was written or sent.
    pub dry_run: bool,
    /// Why the pass did nothing, when it did nothing.
    pub skipped: Option<String>,
    /// What it looked at.
    pub checked: Vec<String>,
    /// What it did, with each action's answer.
    pub done: Vec<String>,
    /// The GitHub calls the pass's own checks made (healing work makes its own).
    pub github_calls: u32,
    /// How long it took.
    pub duration_ms: f64,
}

/// The state a pass found, for its stall alerts.
struct Found {
    source_head: String,
    deploy_head: String,
    verdict_missing: bool,
    approved_unmerged: Vec<u64>,
}

impl Reconcile {
    /// One pass. A failure stops the pass where it happened (logged, in the report); the
    /// next pass starts over, as every step is idempotent. While another pass holds the
    /// lease (`PASS_LEASE_KEY`), this one is skipped and says so.
    pub async fn pass(&self) -> PassReport {
        self.pass_as(false).await
    }

    /// What a pass would do, read from GitHub and the store; writes and sends nothing.
    pub async fn dry_run(&self) -> PassReport {
        self.pass_as(true).await
    }

    async fn pass_as(&self, dry_run: bool) -> PassReport {
        let started = Instant::now();
        let mut report = PassReport {
            pass: pass_name(self.effects.clock.now()),
            dry_run,
            ..PassReport::default()
        };
        let outcome = match dry_run {
            true => self.run(&mut report).await,
            false => match self.take_lease(&report.pass).await {
                Ok(mine) => {
                    let outcome = self.run(&mut report).await;
                    self.give_back(&mine).await;
                    outcome
                }
                Err(skip) => {
                    report.skipped = Some(skip);
                    Ok(())
                }
            },
        };
        if let Err(failure) = outcome {
            let reason = match failure {
                Failure::Transient(reason) | Failure::Permanent(reason) => reason,
            };
            report.skipped = Some(format!("stopped: {reason}"));
        }
        report.duration_ms = started.elapsed().as_secs_f64() * 1000.0;
        tracing::info!(
            pass = %report.pass,
            skipped = report.skipped.as_deref().unwrap_or("-"),
            checked = ?report.checked,
            done = ?report.done,
            github_calls = report.github_calls,
            duration_ms = report.duration_ms,
            "reconcile pass"
        );
        report
    }

    /// Takes the pass lease for `me`; `Err` says why this pass is skipped (another pass
    /// under way, or the store unreadable).
    async fn take_lease(&self, me: &str) -> Result<ClaimRecord, String> {
        let fx = &self.effects;
        let now = fx.clock.now();
        let mine = ClaimRecord {
            owner: me.to_string(),
            claimed_at: now,
            state: ClaimState::Claimed,
        };
        let unreadable = |e: crate::store::StoreError| format!("the pass lease is unreadable: {e}");
        let held = match fx
            .store
            .claim(PASS_LEASE_KEY, me, now)
            .await
            .map_err(unreadable)?
        {
            Claim::Won => return Ok(mine),
            Claim::Held(held) => held,
        };
        if !rules::lease_free(&held, now) {
            return Err(format!(
                "another pass is under way ({}, for {} s)",
                held.owner,
                now - held.claimed_at
            ));
        }
        match fx.store.swap_claim(PASS_LEASE_KEY, &held, &mine).await {
            Ok(true) => Ok(mine),
            Ok(false) => Err("another pass took the lease at this moment".into()),
            Err(e) => Err(unreadable(e)),
        }
    }

    /// Hands the lease back; should that fail, it runs out by itself.
    async fn give_back(&self, mine: &ClaimRecord) {
        let fx = &self.effects;
        let done = ClaimRecord {
            state: ClaimState::Done,
            claimed_at: fx.clock.now(),
            ..mine.clone()
        };
        if let Err(error) = fx.store.swap_claim(PASS_LEASE_KEY, mine, &done).await {
            tracing::warn!(%error, "reconcile: the pass lease was not handed back; it runs out by itself");
        }
    }

    async fn run(&self, report: &mut PassReport) -> Result<(), Failure> {
        let fx = &self.effects;
        let quota = self
            .call(report, "read the rate limit", || fx.github.rate_limit())
            .await?;
        if rules::quota_low(quota.remaining, quota.limit) {
            report.skipped = Some(format!(
                "GitHub quota low: {} of {} calls left",
                quota.remaining, quota.limit
            ));
            return Ok(());
        }
        let (source, deploy) = (&fx.config.source_branch, &fx.config.deploy_branch);
        let source_head = self
            .call(report, "read the source branch", || {
                fx.github.branch_head(source)
            })
            .await?;
        let mut deploy_head = self
            .call(report, "read the deploy branch", || {
                fx.github.branch_head(deploy)
            })
            .await?;
        report.checked.push(format!(
            "{source} at {source_head}, {deploy} at {deploy_head}"
        ));
        if deploy_head != source_head {
            deploy_head = self.heal_deploy(report, &source_head, &deploy_head).await?;
        }
        let verdict_missing = self.heal_verdict(report, &deploy_head).await?;
        let pulls = self
            .call(report, "list open pull requests", || fx.github.open_pulls())
            .await?;
        let approved_unmerged = self.heal_merges(report, &pulls).await?;
        let found = Found {
            source_head,
            deploy_head,
            verdict_missing,
            approved_unmerged,
        };
        self.alert_stalls(report, &found).await
    }

    /// Deploy behind: moved as a push would move it. Diverged: reported once per pair of
    /// heads. Answers where deploy is afterwards.
    async fn heal_deploy(
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
    async fn heal_verdict(&self, report: &mut PassReport, sha: &str) -> Result<bool, Failure> {
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
            super::record_result(fx.store.as_ref(), &record).await?;
        }
        let answer = super::verdict::judge_deployed(fx, &report.pass, sha, None).await?;
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
    async fn heal_merges(
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

    /// One alert when a stall has lasted past its threshold, one when it clears.
    async fn alert_stalls(&self, report: &mut PassReport, found: &Found) -> Result<(), Failure> {
        let fx = &self.effects;
        let now = fx.clock.now();
        let mut present: BTreeSet<String> = found
            .approved_unmerged
            .iter()
            .map(|n| format!("approved/{n}"))
            .collect();
        if found.deploy_head != found.source_head {
            present.insert("deploy-differs".into());
        }
        if found.verdict_missing {
            present.insert("no-verdict".into());
        }
        let held = fx.store.stalls().await?;
        let keys: BTreeSet<String> = held
            .iter()
            .map(|(k, _)| k.clone())
            .chain(present.iter().cloned())
            .collect();
        for key in keys {
            let stall = held.iter().find(|(k, _)| *k == key).map(|(_, s)| *s);
            let threshold = match key.as_str() {
                "no-verdict" => 4 * self.stall_after_seconds,
                _ => self.stall_after_seconds,
            };
            let turn = rules::stall_turn(stall, present.contains(&key), now, threshold);
            if report.dry_run {
                if let Some(would) = self.would_say(&key, found, stall, &turn, now) {
                    report.done.push(would);
                }
                continue;
            }
            let said = match turn {
                StallTurn::Quiet => None,
                StallTurn::Watch(stall) => {
                    fx.store.put_stall(&key, &stall).await?;
                    None
                }
                StallTurn::Alert(stall) => {
                    let message = self.stall_message(&key, found, true, now - stall.since);
                    let said = self
                        .say_stall(report, &key, stall.since, "stall-started", message)
                        .await?;
                    fx.store.put_stall(&key, &stall).await?;
                    said.then(|| key.clone())
                }
                StallTurn::Cleared => {
                    let since = stall.map_or(now, |s| s.since);
                    let message = self.stall_message(&key, found, false, now - since);
                    let said = self
                        .say_stall(report, &key, since, "stall-cleared", message)
                        .await?;
                    fx.store.remove_stall(&key).await?;
                    said.then(|| key.clone())
                }
                StallTurn::Forget => {
                    fx.store.remove_stall(&key).await?;
                    None
                }
            };
            if let Some(key) = said {
                report.done.push(format!("stall {key}: said"));
            }
        }
        Ok(())
    }

    /// What a dry run says of a stall's turn.
    fn would_say(
        &self,
        key: &str,
        found: &Found,
        stall: Option<Stall>,
        turn: &StallTurn,
        now: i64,
    ) -> Option<String> {
        match turn {
            StallTurn::Quiet | StallTurn::Forget => None,
            StallTurn::Watch(_) => Some(format!("would start watching stall {key}")),
            StallTurn::Alert(stall) => Some(format!(
                "would say: {}",
                self.stall_message(key, found, true, now - stall.since)
            )),
            StallTurn::Cleared => {
                let since = stall.map_or(now, |s| s.since);
                Some(format!(
                    "would say: {}",
                    self.stall_message(key, found, false, now - since)
                ))
            }
        }
    }

    /// Says that stall `key` (watched since `since`) started or cleared, once across
    /// overlapping passes: a claim per stall, window and outcome. A stall that ends and
    /// comes back has a new `since`, so it is said again. Answers whether this pass said it.
    async fn say_stall(
        &self,
        report: &PassReport,
        key: &str,
        since: i64,
        outcome: &str,
        message: String,
    ) -> Result<bool, Failure> {
        let fx = &self.effects;
        let claim = ClaimHandle::new(
            fx.store.as_ref(),
            fx.clock.as_ref(),
            format!("stall/{key}@{since}/{outcome}"),
            &report.pass,
        );
        let said = claims::once_or_done(&claim, WAIT_FOR_HOLDER, "Saying a stall", || async {
            super::record_history(
                fx.store.as_ref(),
                fx.clock.now(),
                RECONCILE_HISTORY,
                &report.pass,
                HistoryOutcome::Event(outcome.into()),
                json!({ "stall": key, "message": message }),
                None,
            )
            .await?;
            super::say(fx.notifier.as_ref(), SmokeyMessage::Chat(message)).await
        })
        .await?;
        Ok(matches!(said, claims::Done::Now(_)))
    }

    fn stall_message(&self, key: &str, found: &Found, started: bool, seconds: i64) -> String {
        let config = &self.effects.config;
        let minutes = seconds / 60;
        let (deploy, source) = (&config.deploy_branch, &config.source_branch);
        let pull = |number: &str| {
            format!(
                "[#{number}](https://github.com/{}/pull/{number})",
                config.repository
            )
        };
        let text = match (key, started) {
            ("deploy-differs", true) => format!(
                "{deploy} ({}) has differed from {source} ({}) for {minutes} minutes",
                short(&found.deploy_head),
                short(&found.source_head)
            ),
            ("deploy-differs", false) => {
                format!("{deploy} is in step with {source} again, after {minutes} minutes")
            }
            ("no-verdict", true) => format!(
                "{deploy}'s head {} has had no CI verdict for {minutes} minutes",
                short(&found.deploy_head)
            ),
            ("no-verdict", false) => {
                format!("{deploy}'s head has a CI verdict again, after {minutes} minutes")
            }
            (approved, true) => format!(
                "{} has been approved but not merged for {minutes} minutes",
                pull(approved.trim_start_matches("approved/"))
            ),
            (approved, false) => format!(
                "{} no longer waits to be merged, after {minutes} minutes",
                pull(approved.trim_start_matches("approved/"))
            ),
        };
        format!("build-relay: {text}.")
    }

    /// A GitHub call of the pass's own, counted and retried as reads are.
    async fn call<T, F, Fut>(
        &self,
        report: &mut PassReport,
        what: &str,
        call: F,
    ) -> Result<T, Failure>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, crate::github::GitHubError>>,
    {
        report.github_calls += 1;
        super::retried(&self.effects, what, call).await
    }
}

/// A pass's name, also its delivery id in histories and its name in claims: the time and a
/// random part, so that two passes in one second are two holders.
fn pass_name(now: i64) -> String {
    let mut random = [0u8; 3];
    let _ = getrandom::fill(&mut random);
    format!("reconcile/{now}-{}", hex::encode(random))
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}
