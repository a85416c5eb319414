//! What a reconcile pass makes of GitHub's real state (issue 15, groundwork): where deploy
//! stands against the source branch, the `deploy_updated` payload a pass sends when it moves
//! deploy without a push payload, whether the rate limit allows a pass, and the stall
//! alerts (one when a stall starts, one when it clears, never one per pass).

use serde_json::{Value, json};

use crate::domain::Stall;
use crate::github::api::Comparison;

/// Where deploy stands, from `compare(source...deploy)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeployStand {
    /// Deploy is the source branch's head.
    InStep,
    /// The source branch is ahead: move deploy, fast-forward only, as a push would.
    Behind,
    /// Deploy holds commits the source branch lacks (diverged, or ahead): report them once
    /// per (source head, deploy head).
    Diverged,
}

/// Reads a `compare(source...deploy)`: `ahead_by` counts deploy's commits the source lacks,
/// `behind_by` the source's commits deploy lacks.
pub fn deploy_stand(source_to_deploy: &Comparison) -> DeployStand {
    match (source_to_deploy.ahead_by, source_to_deploy.behind_by) {
        (0, 0) => DeployStand::InStep,
        (0, _) => DeployStand::Behind,
        _ => DeployStand::Diverged,
    }
}

/// The once-only key of a divergence report: one per distinct pair of heads.
pub fn divergence_key(source_head: &str, deploy_head: &str) -> String {
    format!("divergence/{source_head}..{deploy_head}")
}

/// The `deploy_updated` payload for a move no push delivered: what Smokey reads of a push
/// (`ref`, `before`, `after`, `compare`, `head_commit` with `id` and `message`).
pub fn deploy_updated_payload(
    repository: &str,
    source_branch: &str,
    before: &str,
    after: &str,
    message: &str,
) -> Value {
    json!({
        "ref": format!("refs/heads/{source_branch}"),
        "before": before,
        "after": after,
        "compare": format!("https://github.com/{repository}/compare/{before}...{after}"),
        "head_commit": { "id": after, "message": message },
    })
}

/// Whether GitHub's quota is too low for a pass: under 5 % of the limit, or under 50 calls.
pub fn quota_low(remaining: u64, limit: u64) -> bool {
    remaining < 50 || remaining.saturating_mul(20) < limit
}

/// What a pass does about one kind of stall.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StallTurn {
    /// Nothing to say or store.
    Quiet,
    /// First seen now: store it.
    Watch(Stall),
    /// It has lasted past its threshold: say so once and store that it was said.
    Alert(Stall),
    /// It ended after its alert: say so and forget it.
    Cleared,
    /// It ended before any alert: forget it silently.
    Forget,
}

/// Decides the turn for a stall that is (`present`) or is not there now, given what the
/// last pass stored, `now` and how long it may last before an alert.
pub fn stall_turn(
    held: Option<Stall>,
    present: bool,
    now: i64,
    threshold_seconds: i64,
) -> StallTurn {
    match (held, present) {
        (None, false) => StallTurn::Quiet,
        (None, true) => StallTurn::Watch(Stall {
            since: now,
            alerted: false,
        }),
        (Some(stall), true) if !stall.alerted && now - stall.since >= threshold_seconds => {
            StallTurn::Alert(Stall {
                alerted: true,
                ..stall
            })
        }
        (Some(_), true) => StallTurn::Quiet,
        (Some(stall), false) if stall.alerted => StallTurn::Cleared,
        (Some(_), false) => StallTurn::Forget,
    }
}

/// How long a pass may hold the pass lease before the next may take it (the holder died):
/// longer than the reconcile function may run (60 s).
pub const PASS_LEASE_SECONDS: i64 = 120;

/// Whether a pass may take the pass lease as `held` stands at `now`: handed back, or run
/// out.
pub fn lease_free(held: &crate::store::ClaimRecord, now: i64) -> bool {
    held.state == crate::store::ClaimState::Done || held.claimed_at <= now - PASS_LEASE_SECONDS
}

#[cfg(test)]
mod tests {
    use super::*;

    fn compared(ahead_by: u64, behind_by: u64) -> Comparison {
        Comparison {
            status: String::new(),
            ahead_by,
            behind_by,
            commits: Vec::new(),
            merge_base_commit: None,
        }
    }

    #[test]
    fn deploy_is_in_step_behind_or_diverged() {
        assert_eq!(deploy_stand(&compared(0, 0)), DeployStand::InStep);
        assert_eq!(deploy_stand(&compared(0, 3)), DeployStand::Behind);
        assert_eq!(deploy_stand(&compared(1, 0)), DeployStand::Diverged);
        assert_eq!(deploy_stand(&compared(2, 1)), DeployStand::Diverged);
        assert_ne!(divergence_key("a", "b"), divergence_key("a", "c"));
    }

    #[test]
    fn the_payload_carries_what_smokey_reads_of_a_push() {
        let payload = deploy_updated_payload("o/r", "master", "b1", "a2", "Merge --autopull");
        assert_eq!(payload["ref"], "refs/heads/master");
        assert_eq!(payload["compare"], "https://github.com/o/r/compare/b1...a2");
        assert_eq!(payload["head_commit"]["id"], "a2");
        assert_eq!(payload["head_commit"]["message"], "Merge --autopull");
    }

    #[test]
    fn a_low_quota_skips_the_pass() {
        assert!(!quota_low(4_000, 5_000));
        assert!(quota_low(249, 5_000));
        assert!(quota_low(49, 60));
        assert!(!quota_low(59, 60));
    }

    #[test]
    fn a_stall_alerts_once_when_it_lasts_and_once_when_it_clears() {
        let threshold = 15 * 60;
        let mut held = None;
        let mut said = Vec::new();
        // Passes every 5 minutes: there for 40 minutes, then gone for two passes.
        for (minute, present) in (0..=40)
            .step_by(5)
            .map(|m| (m, true))
            .chain([(45, false), (50, false)])
        {
            match stall_turn(held, present, minute * 60, threshold) {
                StallTurn::Quiet => {}
                StallTurn::Watch(stall) => held = Some(stall),
                StallTurn::Alert(stall) => {
                    held = Some(stall);
                    said.push(format!("alert at {minute}"));
                }
                StallTurn::Cleared => {
                    held = None;
                    said.push(format!("cleared at {minute}"));
                }
                StallTurn::Forget => held = None,
            }
        }
        assert_eq!(said, ["alert at 15", "cleared at 45"]);
    }

    #[test]
    fn a_short_stall_is_forgotten_silently() {
        let watched = Stall {
            since: 0,
            alerted: false,
        };
        assert_eq!(stall_turn(Some(watched), false, 60, 900), StallTurn::Forget);
        assert_eq!(stall_turn(None, false, 60, 900), StallTurn::Quiet);
    }

    #[test]
    fn the_pass_lease_is_free_when_handed_back_or_run_out() {
        use crate::store::{ClaimRecord, ClaimState};
        let held = |state, claimed_at| ClaimRecord {
            owner: "reconcile/1-a".into(),
            claimed_at,
            state,
        };
        assert!(!lease_free(&held(ClaimState::Claimed, 1_000), 1_000 + 119));
        assert!(lease_free(&held(ClaimState::Claimed, 1_000), 1_000 + 120));
        assert!(lease_free(&held(ClaimState::Done, 1_000), 1_001));
    }
}
