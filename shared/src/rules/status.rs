//! What a CI status means for Smokey (DESIGN §4, "Status").

use crate::config::RelayConfig;
use crate::domain::{CiSource, StatusRecord, Verdict, VerdictRecord};
use crate::github::api::{MAX_STATUS_DESCRIPTION, NewStatus};
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

/// A CI result as it arrived: what is recorded, and what its payload says besides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// What is kept for (sha, context).
    pub record: StatusRecord,
    /// The commit's full message, when the payload carries it.
    pub commit_message: Option<String>,
    /// Whether GitHub named the deploy branch among those whose head is the commit (a
    /// status's `branches[]`; check events never name it).
    pub names_deploy: bool,
}

/// The report of a status event.
pub fn report_of_status(event: &StatusEvent, delivery_id: &str, deploy_branch: &str) -> Report {
    Report {
        record: record_of(event, delivery_id),
        commit_message: Some(event.commit_message().to_string()),
        names_deploy: lists_branch(event, deploy_branch),
    }
}

/// How CI decided a commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// `success`, `failure` or `error`.
    pub state: String,
    /// The deciding run's link.
    pub ci_url: Option<String>,
    /// The contexts that decided: every required one on success, the failing one on a
    /// failure, the deciding status's without required contexts.
    pub contexts: Vec<String>,
}

/// What a CI result means for the commit, if it is on deploy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusDecision {
    /// Recorded, nothing to send yet; the reason says why.
    Undecided(String),
    /// CI has spoken on this commit.
    Decided(Decided),
}

/// `success`, `failure` and `error` decide; `pending`, a check's `neutral` and any state
/// GitHub may add later do not.
pub fn is_final(state: &str) -> bool {
    matches!(state, "success" | "failure" | "error")
}

fn is_failure(state: &str) -> bool {
    matches!(state, "failure" | "error")
}

/// Whether GitHub lists `branch` in the status's `branches[]`. A commit counts for Smokey
/// when this holds for the deploy branch, or when deploy is known to be at it.
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
        source: CiSource::Status,
    }
}

/// Decides a deploy commit from the result that just arrived (`trigger`) and the latest
/// stored result of every context (needed only with required contexts).
///
/// The relay's own mirrored status never decides. With no required contexts a final status
/// decides by itself (metasmoke's rule: the first non-pending status wins; the verdict claim
/// makes "first" hold across deliveries), and Actions and check results are recorded only.
/// With required contexts, whatever their source, any required failure or error decides at
/// once, and success needs every required context to have succeeded.
pub fn decide(
    trigger: &StatusRecord,
    latest: &[StatusRecord],
    config: &RelayConfig,
) -> StatusDecision {
    if config.mirror_status_context.as_deref() == Some(trigger.context.as_str()) {
        return StatusDecision::Undecided("The relay's own mirrored status; recorded only".into());
    }
    let required = &config.required_contexts;
    if required.is_empty() {
        return if trigger.source != CiSource::Status {
            StatusDecision::Undecided(format!(
                "A {} result decides nothing while REQUIRED_CONTEXTS is empty; recorded only",
                trigger.source.as_str()
            ))
        } else if is_final(&trigger.state) {
            StatusDecision::Decided(Decided {
                state: trigger.state.clone(),
                ci_url: trigger.target_url.clone(),
                contexts: vec![trigger.context.clone()],
            })
        } else {
            StatusDecision::Undecided(format!(
                "A {} status never decides; recorded only",
                trigger.state
            ))
        };
    }
    let latest_of = |context: &str| latest.iter().find(|s| s.context == context);
    if let Some(failed) = required
        .iter()
        .filter_map(|c| latest_of(c))
        .find(|s| is_failure(&s.state))
    {
        return StatusDecision::Decided(Decided {
            state: failed.state.clone(),
            ci_url: failed.target_url.clone(),
            contexts: vec![failed.context.clone()],
        });
    }
    let waiting: Vec<&str> = required
        .iter()
        .filter(|c| latest_of(c).is_none_or(|s| s.state != "success"))
        .map(String::as_str)
        .collect();
    if !waiting.is_empty() {
        return StatusDecision::Undecided(format!(
            "Waiting for required contexts: {}",
            waiting.join(", ")
        ));
    }
    let ci_url = latest_of(&trigger.context)
        .filter(|_| required.contains(&trigger.context))
        .or_else(|| required.last().and_then(|c| latest_of(c)))
        .and_then(|s| s.target_url.clone());
    StatusDecision::Decided(Decided {
        state: "success".into(),
        ci_url,
        contexts: required.clone(),
    })
}

/// Decides a commit from what was recorded for it alone (when deploy has just moved there):
/// as if its earliest final status had just arrived, or, with required contexts, its latest
/// required result.
pub fn decide_recorded(latest: &[StatusRecord], config: &RelayConfig) -> StatusDecision {
    let mirror = config.mirror_status_context.as_deref();
    let order = |s: &&StatusRecord| (s.updated_at, s.status_id);
    let trigger = match config.required_contexts.is_empty() {
        true => latest
            .iter()
            .filter(|s| s.source == CiSource::Status && is_final(&s.state))
            .filter(|s| Some(s.context.as_str()) != mirror)
            .min_by_key(order),
        false => latest
            .iter()
            .filter(|s| config.required_contexts.contains(&s.context))
            .max_by_key(order),
    };
    match trigger {
        Some(trigger) => decide(trigger, latest, config),
        None => StatusDecision::Undecided("Nothing recorded for it decides it yet".into()),
    }
}

/// The commit status that mirrors a verdict (`MIRROR_STATUS_CONTEXT`), naming the contexts
/// that decided.
pub fn mirror_status(decided: &Decided, context: &str) -> NewStatus {
    let outcome = match decided.state.as_str() {
        "success" => "passed",
        "failure" => "failed",
        _ => "errored",
    };
    let mut description = format!("CI {outcome}: {}", decided.contexts.join(", "));
    if description.chars().count() > MAX_STATUS_DESCRIPTION {
        description = description
            .chars()
            .take(MAX_STATUS_DESCRIPTION - 1)
            .chain(['…'])
            .collect();
    }
    NewStatus {
        state: decided.state.clone(),
        target_url: decided.ci_url.clone(),
        description,
        context: context.to_string(),
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

    fn check(context: &str, state: &str) -> StatusRecord {
        StatusRecord {
            source: CiSource::WorkflowRun,
            ..stored(context, state)
        }
    }

    fn rules(required: &[&str]) -> RelayConfig {
        RelayConfig {
            required_contexts: required.iter().map(|c| c.to_string()).collect(),
            mirror_status_context: Some("build-relay/ci".into()),
            ..RelayConfig::default()
        }
    }

    fn decided(decision: StatusDecision) -> Decided {
        match decision {
            StatusDecision::Decided(decided) => decided,
            StatusDecision::Undecided(reason) => panic!("undecided: {reason}"),
        }
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
        let report = report_of_status(&event("ci", "success", &["deploy"]), "d", "deploy");
        assert!(report.names_deploy);
        assert_eq!(
            report.commit_message.as_deref(),
            Some("Merge pull request #1 --autopull")
        );
    }

    #[test]
    fn without_required_contexts_the_first_final_status_decides() {
        for state in ["success", "failure", "error"] {
            let v = decided(decide(&stored("ci", state), &[], &rules(&[])));
            assert_eq!(v.state, state);
            assert_eq!(v.ci_url.as_deref(), Some("https://ci.example/ci"));
            assert_eq!(v.contexts, ["ci"]);
        }
    }

    #[test]
    fn without_required_contexts_check_results_decide_nothing() {
        let workflow = check("workflow:build", "failure");
        assert!(matches!(
            decide(&workflow, std::slice::from_ref(&workflow), &rules(&[])),
            StatusDecision::Undecided(_)
        ));
        assert!(matches!(
            decide_recorded(&[workflow], &rules(&[])),
            StatusDecision::Undecided(_)
        ));
    }

    #[test]
    fn the_mirrored_status_never_decides() {
        let mirror = stored("build-relay/ci", "failure");
        for required in [&[][..], &["ci"][..]] {
            assert_eq!(
                decide(&mirror, std::slice::from_ref(&mirror), &rules(required)),
                StatusDecision::Undecided("The relay's own mirrored status; recorded only".into())
            );
            assert!(matches!(
                decide_recorded(std::slice::from_ref(&mirror), &rules(required)),
                StatusDecision::Undecided(_)
            ));
        }
    }

    #[test]
    fn pending_neutral_and_unknown_states_never_decide() {
        for state in ["pending", "neutral", "queued-in-some-future-api"] {
            assert!(matches!(
                decide(&stored("ci", state), &[], &rules(&[])),
                StatusDecision::Undecided(_)
            ));
            let latest = [check("ci", state)];
            assert!(matches!(
                decide(&latest[0], &latest, &rules(&["ci"])),
                StatusDecision::Undecided(_)
            ));
        }
    }

    #[test]
    fn a_required_failure_decides_at_once() {
        let r = rules(&["circleci", "workflow:build"]);
        let failed = check("workflow:build", "error");
        let v = decided(decide(&failed, std::slice::from_ref(&failed), &r));
        assert_eq!(
            (v.state.as_str(), v.ci_url.as_deref()),
            ("error", Some("https://ci.example/workflow:build"))
        );
        assert_eq!(v.contexts, ["workflow:build"]);
    }

    #[test]
    fn success_waits_for_every_required_context_whatever_its_source() {
        let r = rules(&["circleci", "workflow:build"]);
        let one = [stored("circleci", "success")];
        assert_eq!(
            decide(&one[0], &one, &r),
            StatusDecision::Undecided("Waiting for required contexts: workflow:build".into())
        );
        let both = [
            stored("circleci", "success"),
            check("workflow:build", "success"),
        ];
        let v = decided(decide(&both[0], &both, &r));
        assert_eq!(
            (v.state.as_str(), v.ci_url.as_deref()),
            ("success", Some("https://ci.example/circleci"))
        );
        assert_eq!(v.contexts, ["circleci", "workflow:build"]);
    }

    #[test]
    fn contexts_that_are_not_required_do_not_count() {
        let lint = stored("lint", "failure");
        assert!(matches!(
            decide(&lint, std::slice::from_ref(&lint), &rules(&["circleci"])),
            StatusDecision::Undecided(_)
        ));
    }

    #[test]
    fn a_later_success_does_not_hide_a_stored_required_failure() {
        let r = rules(&["circleci", "actions"]);
        let latest = [stored("circleci", "success"), stored("actions", "failure")];
        assert_eq!(decided(decide(&latest[0], &latest, &r)).state, "failure");
    }

    #[test]
    fn recorded_results_decide_as_their_first_final_status_would() {
        let mut first = stored("ci/circleci", "failure");
        first.updated_at -= 10;
        let later = stored("lint", "success");
        let pending = stored("other", "pending");
        let v = decided(decide_recorded(
            &[later.clone(), pending.clone(), first],
            &rules(&[]),
        ));
        assert_eq!(
            (v.state.as_str(), v.contexts.as_slice()),
            ("failure", &["ci/circleci".to_string()][..])
        );
        assert!(matches!(
            decide_recorded(&[pending], &rules(&[])),
            StatusDecision::Undecided(_)
        ));
        let r = rules(&["ci/circleci", "workflow:build"]);
        let waiting = [later.clone(), check("workflow:build", "success")];
        assert!(matches!(
            decide_recorded(&waiting, &r),
            StatusDecision::Undecided(_)
        ));
        let all = [
            stored("ci/circleci", "success"),
            check("workflow:build", "success"),
        ];
        assert_eq!(decided(decide_recorded(&all, &r)).state, "success");
    }

    #[test]
    fn the_mirror_names_the_deciding_contexts_within_githubs_limit() {
        let success = Decided {
            state: "success".into(),
            ci_url: Some("https://ci.example/1".into()),
            contexts: vec!["ci/circleci: build".into(), "workflow:build".into()],
        };
        let status = mirror_status(&success, "build-relay/ci");
        assert_eq!(
            (
                status.state.as_str(),
                status.context.as_str(),
                status.target_url.as_deref()
            ),
            ("success", "build-relay/ci", Some("https://ci.example/1"))
        );
        assert_eq!(
            status.description,
            "CI passed: ci/circleci: build, workflow:build"
        );
        let failure = Decided {
            state: "failure".into(),
            ci_url: None,
            contexts: vec!["x".repeat(300)],
        };
        let status = mirror_status(&failure, "build-relay/ci");
        assert!(status.description.starts_with("CI failed: xxx"));
        assert_eq!(status.description.chars().count(), MAX_STATUS_DESCRIPTION);
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
            sent_to: None,
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
