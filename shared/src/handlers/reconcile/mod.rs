//! The reconcile pass (issue 15): compares the relay's records with GitHub's real state and
//! heals what a lost webhook left behind through the routes' own work (the push route's
//! move, the verdict, the merge route's merge), under the same claims and into the same
//! histories, with a delivery id `reconcile/<time>`; then raises or clears stall alerts.
//!
//! The pass itself (its lease, its report) is here; `heal` holds the healing steps and
//! `stalls` the alerts.

mod heal;
mod stalls;

use std::sync::Arc;
use std::time::Instant;

use serde::Serialize;

use super::Effects;
use super::Failure;
use crate::rules::reconcile as rules;
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
