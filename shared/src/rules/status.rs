//! What a CI status means for Smokey (DESIGN §4, "Status").

use crate::domain::{StatusRecord, Verdict, VerdictRecord};
use crate::github::payloads::StatusEvent;

/// A verdict claimed but not sent for this long may be sent by another delivery.
pub const VERDICT_LEASE_SECONDS: i64 = 60;

/// Who sends a commit's verdict, once the store has said who claimed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VerdictTurn {
    /// This delivery sends it: it claimed it now or before (a retry), or the claimant has
    /// not sent it within `VERDICT_LEASE_SECONDS`.
    Send(Verdict),
    /// Sent already; nothing to do.
    SentAlready(VerdictRecord),
    /// Another delivery claimed it recently and is sending it.
    Sending(VerdictRecord),
}

/// Decides the turn for `mine` (this delivery's claim, made at `mine.claimed_at`), given the
/// claim the store already held, if any.
pub fn verdict_turn(held: Option<VerdictRecord>, mine: VerdictRecord) -> VerdictTurn {
    let Some(held) = held else {
        return VerdictTurn::Send(mine.verdict);
    };
    if held.notified_at.is_some() {
        VerdictTurn::SentAlready(held)
    } else if held.delivery_id == mine.delivery_id
        || held.claimed_at < mine.claimed_at - VERDICT_LEASE_SECONDS
    {
        VerdictTurn::Send(held.verdict)
    } else {
        VerdictTurn::Sending(held)
    }
}

/// What a status means for the commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusDecision {
    /// Recorded, nothing to send yet; the reason says why.
    Undecided(String),
    /// CI has spoken on this commit.
    Decided(Verdict),
}

/// `success`, `failure` and `error` decide; `pending` and any state GitHub may add later do not.
pub fn is_final(state: &str) -> bool {
    matches!(state, "success" | "failure" | "error")
}

fn is_failure(state: &str) -> bool {
    matches!(state, "failure" | "error")
}

/// Whether GitHub lists `branch` in the status's `branches[]`. A commit counts for Smokey
/// when this holds for the deploy branch, or when the relay itself moved deploy there.
pub fn lists_branch(event: &StatusEvent, branch: &str) -> bool {
    event.branches.iter().any(|b| b.name == branch)
}

/// The record kept for a status event.
pub fn record_of(event: &StatusEvent, delivery_id: &str) -> StatusRecord {
    StatusRecord {
        sha: event.sha.clone(),
        context: event.context.clone(),
        state: event.state.clone(),
        target_url: event.target_url.clone(),
        description: event.description.clone(),
        sender: event.sender_login().map(String::from),
        updated_at: event.updated_at.timestamp(),
        status_id: event.id,
        delivery_id: delivery_id.to_string(),
    }
}

/// Decides a commit from the event and the latest stored status of every context.
///
/// With no required contexts the event itself decides when it is final (metasmoke's rule:
/// the first non-pending status wins; the verdict claim makes "first" hold across
/// deliveries). With required contexts, any required failure or error decides at once, and
/// success needs every required context to have succeeded.
pub fn decide(
    event: &StatusEvent,
    latest: &[StatusRecord],
    required_contexts: &[String],
    on_deploy: bool,
) -> StatusDecision {
    if !on_deploy {
        return StatusDecision::Undecided("Not a commit on deploy; recorded only".into());
    }
    let verdict = |state: &str, ci_url: Option<String>| {
        StatusDecision::Decided(Verdict {
            sha: event.sha.clone(),
            state: state.to_string(),
            ci_url,
            commit_message: event.commit_message().to_string(),
        })
    };
    if required_contexts.is_empty() {
        return if is_final(&event.state) {
            verdict(&event.state, event.target_url.clone())
        } else {
            StatusDecision::Undecided(format!(
                "A {} status never decides; recorded only",
                event.state
            ))
        };
    }
    let latest_of = |context: &str| latest.iter().find(|s| s.context == context);
    if let Some(failed) = required_contexts
        .iter()
        .filter_map(|c| latest_of(c))
        .find(|s| is_failure(&s.state))
    {
        return verdict(&failed.state, failed.target_url.clone());
    }
    let waiting: Vec<&str> = required_contexts
        .iter()
        .filter(|c| latest_of(c).is_none_or(|s| s.state != "success"))
        .map(String::as_str)
        .collect();
    if waiting.is_empty() {
        let ci_url = latest_of(&event.context)
            .filter(|_| required_contexts.contains(&event.context))
            .or_else(|| required_contexts.last().and_then(|c| latest_of(c)))
            .and_then(|s| s.target_url.clone());
        verdict("success", ci_url)
    } else {
        StatusDecision::Undecided(format!(
            "Waiting for required contexts: {}",
            waiting.join(", ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::payloads::{Branch, GitCommit, Repository, StatusCommit};

    fn event(context: &str, state: &str, branches: &[&str]) -> StatusEvent {
        StatusEvent {
            id: 1,
            sha: "a".repeat(40),
            state: state.into(),
            context: context.into(),
            description: None,
            target_url: Some(format!("https://ci.example/{context}")),
            branches: branches
                .iter()
                .map(|b| Branch {
                    name: b.to_string(),
                })
                .collect(),
            commit: StatusCommit {
                commit: GitCommit {
                    message: "Merge pull request #1 --autopull".into(),
                },
            },
            updated_at: chrono::DateTime::from_timestamp(1_700_000_000, 0).unwrap(),
            repository: Repository {
                full_name: "Charcoal-SE/SmokeDetector".into(),
            },
            sender: None,
        }
    }

    fn stored(context: &str, state: &str) -> StatusRecord {
        record_of(&event(context, state, &[]), "d")
    }

    fn required(contexts: &[&str]) -> Vec<String> {
        contexts.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn the_deploy_branch_is_read_from_branches() {
        assert!(lists_branch(
            &event("ci", "success", &["master", "deploy"]),
            "deploy"
        ));
        assert!(!lists_branch(
            &event("ci", "success", &["master"]),
            "deploy"
        ));
        assert!(!lists_branch(
            &event("ci", "success", &["deployment"]),
            "deploy"
        ));
    }

    #[test]
    fn a_commit_off_deploy_is_never_decided() {
        let e = event("ci", "success", &["master"]);
        assert!(matches!(
            decide(&e, &[], &[], false),
            StatusDecision::Undecided(_)
        ));
    }

    #[test]
    fn without_required_contexts_the_first_final_status_decides() {
        for state in ["success", "failure", "error"] {
            let e = event("ci", state, &["deploy"]);
            let StatusDecision::Decided(v) = decide(&e, &[], &[], true) else {
                panic!("{state} should decide");
            };
            assert_eq!(v.state, state);
            assert_eq!(v.ci_url.as_deref(), Some("https://ci.example/ci"));
            assert_eq!(v.commit_message, "Merge pull request #1 --autopull");
        }
    }

    #[test]
    fn pending_and_unknown_states_never_decide() {
        for state in ["pending", "queued-in-some-future-api"] {
            let e = event("ci", state, &["deploy"]);
            assert!(matches!(
                decide(&e, &[], &[], true),
                StatusDecision::Undecided(_)
            ));
            let r = required(&["ci"]);
            assert!(matches!(
                decide(&e, &[stored("ci", state)], &r, true),
                StatusDecision::Undecided(_)
            ));
        }
    }

    #[test]
    fn a_required_failure_decides_at_once() {
        let r = required(&["circleci", "actions"]);
        let e = event("actions", "error", &["deploy"]);
        let StatusDecision::Decided(v) = decide(&e, &[stored("actions", "error")], &r, true) else {
            panic!("a required error decides");
        };
        assert_eq!(
            (v.state.as_str(), v.ci_url.as_deref()),
            ("error", Some("https://ci.example/actions"))
        );
    }

    #[test]
    fn success_waits_for_every_required_context() {
        let r = required(&["circleci", "actions"]);
        let e = event("circleci", "success", &["deploy"]);
        let one = [stored("circleci", "success")];
        assert_eq!(
            decide(&e, &one, &r, true),
            StatusDecision::Undecided("Waiting for required contexts: actions".into())
        );
        let both = [stored("circleci", "success"), stored("actions", "success")];
        let StatusDecision::Decided(v) = decide(&e, &both, &r, true) else {
            panic!("all required succeeded");
        };
        assert_eq!(
            (v.state.as_str(), v.ci_url.as_deref()),
            ("success", Some("https://ci.example/circleci"))
        );
    }

    #[test]
    fn contexts_that_are_not_required_do_not_count() {
        let r = required(&["circleci"]);
        let e = event("lint", "failure", &["deploy"]);
        assert!(matches!(
            decide(&e, &[stored("lint", "failure")], &r, true),
            StatusDecision::Undecided(_)
        ));
    }

    #[test]
    fn a_later_success_does_not_hide_a_stored_required_failure() {
        let r = required(&["circleci", "actions"]);
        let e = event("circleci", "success", &["deploy"]);
        let latest = [stored("circleci", "success"), stored("actions", "failure")];
        let StatusDecision::Decided(v) = decide(&e, &latest, &r, true) else {
            panic!("the failure decides");
        };
        assert_eq!(v.state, "failure");
    }

    fn claim(delivery: &str, claimed_at: i64, notified_at: Option<i64>) -> VerdictRecord {
        VerdictRecord {
            verdict: Verdict {
                sha: "a".repeat(40),
                state: "success".into(),
                ci_url: None,
                commit_message: "m".into(),
            },
            delivery_id: delivery.into(),
            claimed_at,
            notified_at,
        }
    }

    #[test]
    fn a_verdict_is_sent_by_its_claimant_or_after_the_lease_by_anyone() {
        let mine = || claim("d2", 1000, None);
        assert!(matches!(verdict_turn(None, mine()), VerdictTurn::Send(_)));
        let sent = claim("d1", 990, Some(995));
        assert_eq!(
            verdict_turn(Some(sent.clone()), mine()),
            VerdictTurn::SentAlready(sent)
        );
        let recent = claim("d1", 1000 - VERDICT_LEASE_SECONDS, None);
        assert_eq!(
            verdict_turn(Some(recent.clone()), mine()),
            VerdictTurn::Sending(recent)
        );
        let stale = claim("d1", 999 - VERDICT_LEASE_SECONDS, None);
        assert!(matches!(
            verdict_turn(Some(stale), mine()),
            VerdictTurn::Send(_)
        ));
        let my_retry = claim("d2", 900, None);
        assert!(matches!(
            verdict_turn(Some(my_retry), mine()),
            VerdictTurn::Send(_)
        ));
    }
}
