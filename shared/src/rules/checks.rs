//! What a GitHub Actions or checks result means as a CI result of a commit (issue 13): the
//! context name `REQUIRED_CONTEXTS` can list, and the state its conclusion stands for.
//!
//! Conclusions map to the states statuses use, so one rule decides over both services:
//! `success` is success; `failure`, `timed_out` and `startup_failure` are failures (the
//! code or its run failed); `cancelled`, `action_required` and `stale` are errors (no
//! verdict on the code, but not a pass either, as a status's `error` is); `neutral` and
//! `skipped` never decide, since they say nothing about the commit.

use chrono::{DateTime, Utc};

use super::status::Report;
use crate::domain::{CiSource, StatusRecord};
use crate::github::payloads::{
    Account, CheckRun, CheckRunEvent, CheckSuiteEvent, Progress, WorkflowRunEvent,
};

/// A completed result, as the relay records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CiResult {
    /// The commit.
    pub sha: String,
    /// `workflow:<name>`, `check_run:<name>` or `check_suite:<app slug, else app name>`.
    pub context: String,
    /// `success`, `failure` or `error`; `neutral` for a result that never decides.
    pub state: &'static str,
    /// Where to read it: the run's page; none for a check suite.
    pub url: Option<String>,
    /// The commit's message, when the payload carries it.
    pub commit_message: Option<String>,
    /// When the result last changed.
    pub updated_at: DateTime<Utc>,
    /// GitHub's id for it (orders updates of the same second).
    pub id: u64,
    /// Which event it came from.
    pub source: CiSource,
    /// Who caused the event.
    pub sender: Option<String>,
}

impl CiResult {
    /// The result as the relay records and judges it. Check events never name the deploy
    /// branch, so whether the commit counts is found out when the result could decide.
    pub fn into_report(self, delivery_id: &str) -> Report {
        Report {
            record: StatusRecord {
                sha: self.sha,
                context: self.context,
                state: self.state.to_string(),
                target_url: self.url,
                description: None,
                sender: self.sender,
                updated_at: self.updated_at.timestamp(),
                status_id: self.id,
                delivery_id: delivery_id.to_string(),
                source: self.source,
            },
            commit_message: self.commit_message,
            names_deploy: false,
        }
    }
}

fn login(sender: &Option<Account>) -> Option<String> {
    sender.as_ref().map(|account| account.login.clone())
}

/// The state a conclusion stands for; `None` for a conclusion GitHub may add later.
pub fn state_of(conclusion: &str) -> Option<&'static str> {
    match conclusion {
        "success" => Some("success"),
        "failure" | "timed_out" | "startup_failure" => Some("failure"),
        "cancelled" | "action_required" | "stale" => Some("error"),
        "neutral" | "skipped" => Some("neutral"),
        _ => None,
    }
}

/// A completed workflow run's result; `None` while it is not completed.
pub fn from_workflow_run(event: &WorkflowRunEvent) -> Option<CiResult> {
    let run = &event.workflow_run;
    let state = completed(&run.progress)?;
    let name = match (run.name.as_str(), &event.workflow) {
        ("", Some(workflow)) => workflow.name.as_str(),
        (name, _) => name,
    };
    Some(CiResult {
        sha: run.progress.head_sha.clone(),
        context: format!("workflow:{name}"),
        state,
        url: run.html_url.clone(),
        commit_message: run.head_commit.as_ref().map(|c| c.message.clone()),
        updated_at: run.updated_at,
        id: run.progress.id,
        source: CiSource::WorkflowRun,
        sender: login(&event.sender),
    })
}

/// A completed check run's result; `None` while it is not completed.
pub fn from_check_run(event: &CheckRunEvent) -> Option<CiResult> {
    from_run(&event.check_run, login(&event.sender))
}

/// A completed check run's result, as an event or `GET /commits/{sha}/check-runs` shows
/// the run; `None` while it is not completed.
pub fn from_run(run: &CheckRun, sender: Option<String>) -> Option<CiResult> {
    let state = completed(&run.progress)?;
    Some(CiResult {
        sha: run.progress.head_sha.clone(),
        context: format!("check_run:{}", run.name),
        state,
        url: run.html_url.clone().or_else(|| run.details_url.clone()),
        commit_message: None,
        updated_at: run.completed_at?,
        id: run.progress.id,
        source: CiSource::CheckRun,
        sender,
    })
}

/// A completed check suite's result; `None` while it is not completed.
pub fn from_check_suite(event: &CheckSuiteEvent) -> Option<CiResult> {
    let suite = &event.check_suite;
    let state = completed(&suite.progress)?;
    let app = suite.app.as_ref()?;
    let name = app.slug.as_deref().unwrap_or(&app.name);
    Some(CiResult {
        sha: suite.progress.head_sha.clone(),
        context: format!("check_suite:{name}"),
        state,
        url: None,
        commit_message: suite.head_commit.as_ref().map(|c| c.message.clone()),
        updated_at: suite.updated_at,
        id: suite.progress.id,
        source: CiSource::CheckSuite,
        sender: login(&event.sender),
    })
}

fn completed(progress: &Progress) -> Option<&'static str> {
    match progress.status.as_str() {
        "completed" => state_of(progress.conclusion.as_deref()?),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conclusions_map_to_the_states_statuses_use() {
        assert_eq!(state_of("success"), Some("success"));
        for failed in ["failure", "timed_out", "startup_failure"] {
            assert_eq!(state_of(failed), Some("failure"), "{failed}");
        }
        for errored in ["cancelled", "action_required", "stale"] {
            assert_eq!(state_of(errored), Some("error"), "{errored}");
        }
        for silent in ["neutral", "skipped"] {
            assert_eq!(state_of(silent), Some("neutral"), "{silent}");
        }
        assert_eq!(state_of("something_new"), None);
        let progress = |status: &str, conclusion: Option<&str>| Progress {
            id: 1,
            head_sha: "a".repeat(40),
            status: status.into(),
            conclusion: conclusion.map(String::from),
        };
        assert_eq!(completed(&progress("in_progress", Some("success"))), None);
        assert_eq!(completed(&progress("completed", None)), None);
        assert_eq!(
            completed(&progress("completed", Some("timed_out"))),
            Some("failure")
        );
    }
}
