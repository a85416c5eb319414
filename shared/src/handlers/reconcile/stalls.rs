//! Stall alerts: how long deploy has been behind, a deploy head without a verdict, or an
//! approved pull request not merged, told to Smokeys once when it passes the bound and once
//! when it is over.

use std::collections::BTreeSet;

use serde_json::json;

use super::{Found, PassReport, RECONCILE_HISTORY, Reconcile, WAIT_FOR_HOLDER, short};
use crate::domain::{HistoryOutcome, Stall};
use crate::handlers::Failure;
use crate::handlers::claims::{self, ClaimHandle};
use crate::notify::SmokeyMessage;
use crate::rules::reconcile::{self as rules, StallTurn};

impl Reconcile {
    /// One alert when a stall has lasted past its threshold, one when it clears.
    pub(super) async fn alert_stalls(
        &self,
        report: &mut PassReport,
        found: &Found,
    ) -> Result<(), Failure> {
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
            crate::handlers::record_history(
                fx.store.as_ref(),
                fx.clock.now(),
                RECONCILE_HISTORY,
                &report.pass,
                HistoryOutcome::Event(outcome.into()),
                json!({ "stall": key, "message": message }),
                None,
            )
            .await?;
            crate::handlers::say(fx.notifier.as_ref(), SmokeyMessage::Chat(message)).await
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
}
