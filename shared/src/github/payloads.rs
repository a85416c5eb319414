//! Webhook payload types. Only the fields the relay reads are declared; unknown fields are
//! ignored, optional ones accept `null`, and actions and states stay strings so that a new
//! name GitHub invents is handled as "not interesting" instead of as an error.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

/// A pull request as `GET /repos/{owner}/{repo}/pulls/{n}` returns it (the fields we read).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRequest {
    /// The pull request's number.
    pub number: u64,
    /// `open` or `closed`.
    pub state: String,
    /// Its title.
    pub title: String,
    /// Its page on GitHub.
    pub html_url: String,
    /// Missing from list responses; `GET` of one pull request has it.
    #[serde(default)]
    pub merged: bool,
    /// Whether GitHub can merge it; `null` while GitHub is still working it out.
    #[serde(default)]
    pub mergeable: Option<bool>,
    /// `clean`, `dirty` (conflicts), `blocked`, `unknown`, ...
    #[serde(default)]
    pub mergeable_state: Option<String>,
    /// Who opened it.
    pub user: Option<Account>,
    /// The branch to merge.
    pub head: PullBranch,
    /// The branch to merge into.
    pub base: PullBranch,
}

/// A GitHub user or bot, by login (a PR's author, a webhook's sender).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// e.g. `SmokeDetector`, `pullapprove[bot]`.
    pub login: String,
}

/// A pull request's head or base: a branch, its commit, and the repository it is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullBranch {
    /// The branch name (GitHub's `ref`, without `refs/heads/`).
    #[serde(rename = "ref")]
    pub name: String,
    /// The commit the branch pointed at.
    pub sha: String,
    /// `null` when the fork it came from was deleted.
    pub repo: Option<Repository>,
}

/// A repository, by `owner/name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Repository {
    /// `owner/name`, e.g. `Charcoal-SE/SmokeDetector`.
    pub full_name: String,
}

impl PullRequest {
    /// The login of who opened it.
    pub fn author(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.login.as_str())
    }
}

/// Deserializes `null` as the type's default (GitHub sends `null` for empty lists too).
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A `status` event: a commit status was created or updated.
#[derive(Debug, Clone, Deserialize)]
pub struct StatusEvent {
    /// The status id; GitHub hands them out in increasing order.
    #[serde(default)]
    pub id: u64,
    /// The commit.
    pub sha: String,
    /// `pending`, `success`, `failure` or `error`.
    pub state: String,
    /// The CI context, e.g. `ci/circleci`.
    pub context: String,
    /// CI's one-line description.
    #[serde(default)]
    pub description: Option<String>,
    /// CI's link for the run.
    #[serde(default)]
    pub target_url: Option<String>,
    /// Branches whose head contains the commit (GitHub lists up to ten).
    #[serde(default, deserialize_with = "null_as_default")]
    pub branches: Vec<Branch>,
    /// The commit, with its message.
    pub commit: StatusCommit,
    /// When the status was last updated.
    pub updated_at: DateTime<Utc>,
    /// Where the commit is.
    pub repository: Repository,
    /// Who posted it (PullApprove's bot, CircleCI's).
    #[serde(default)]
    pub sender: Option<Account>,
}

/// A branch whose head contains a status's commit, by name.
#[derive(Debug, Clone, Deserialize)]
pub struct Branch {
    /// e.g. `deploy`.
    pub name: String,
}

/// A status event's commit.
#[derive(Debug, Clone, Deserialize)]
pub struct StatusCommit {
    /// Its git data.
    pub commit: GitCommit,
}

/// A commit's git data (the part the relay reads).
#[derive(Debug, Clone, Deserialize)]
pub struct GitCommit {
    /// The full commit message; empty when GitHub sends none.
    #[serde(default, deserialize_with = "null_as_default")]
    pub message: String,
}

impl StatusEvent {
    /// The commit's full message.
    pub fn commit_message(&self) -> &str {
        &self.commit.commit.message
    }
    /// Who posted the status, if GitHub says.
    pub fn sender_login(&self) -> Option<&str> {
        self.sender.as_ref().map(|s| s.login.as_str())
    }
}

/// A `push` event (the fields the relay reads; the whole payload is relayed to Smokey).
#[derive(Debug, Clone, Deserialize)]
pub struct PushEvent {
    /// The full ref pushed, e.g. `refs/heads/master`.
    #[serde(rename = "ref")]
    pub git_ref: String,
    /// The ref's commit before the push.
    pub before: String,
    /// The ref's commit after it (all zeros when deleted).
    pub after: String,
    /// Whether the push deleted the ref.
    #[serde(default)]
    pub deleted: bool,
    /// The commit `after` names, with its message; `null` for a deletion.
    #[serde(default)]
    pub head_commit: Option<HeadCommit>,
    /// Where it was pushed.
    pub repository: Repository,
}

/// A `pull_request` event. The `pull_request` object has the same shape as the REST API's.
#[derive(Debug, Clone, Deserialize)]
pub struct PullRequestEvent {
    /// `opened`, `closed`, `synchronize`, ...
    pub action: String,
    /// The pull request's number.
    pub number: u64,
    /// The pull request as it is now.
    pub pull_request: PullRequest,
    /// Where it is.
    pub repository: Repository,
}

/// A `workflow_run` event (GitHub Actions): a workflow run was requested or completed.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkflowRunEvent {
    /// `requested`, `in_progress` or `completed`.
    pub action: String,
    /// The run.
    pub workflow_run: WorkflowRun,
    /// The workflow it is a run of.
    #[serde(default)]
    pub workflow: Option<Named>,
    /// Where it ran.
    pub repository: Repository,
    /// Who caused the event.
    #[serde(default)]
    pub sender: Option<Account>,
}

/// One run of a workflow.
#[derive(Debug, Clone, Deserialize)]
pub struct WorkflowRun {
    /// Its id, commit, status and conclusion.
    #[serde(flatten)]
    pub progress: Progress,
    /// The run's name; GitHub may send it empty (the workflow's name then stands).
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
    /// The run's page.
    #[serde(default)]
    pub html_url: Option<String>,
    /// When the run last changed.
    pub updated_at: DateTime<Utc>,
    /// The commit, with its message.
    #[serde(default)]
    pub head_commit: Option<HeadCommit>,
}

/// Where a workflow run, check run or check suite stands.
#[derive(Debug, Clone, Deserialize)]
pub struct Progress {
    /// GitHub's id for it.
    pub id: u64,
    /// The commit it is about.
    pub head_sha: String,
    /// `queued`, `in_progress`, `completed`, ...
    #[serde(default, deserialize_with = "null_as_default")]
    pub status: String,
    /// Set once completed: `success`, `failure`, `cancelled`, ...
    #[serde(default)]
    pub conclusion: Option<String>,
}

/// Something with a name (a workflow, an app).
#[derive(Debug, Clone, Deserialize)]
pub struct Named {
    /// Its name.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
}

/// The head commit of a run or suite.
#[derive(Debug, Clone, Deserialize)]
pub struct HeadCommit {
    /// The full commit message.
    #[serde(default, deserialize_with = "null_as_default")]
    pub message: String,
}

/// A `check_run` event: a check run was created, completed, re-requested, ...
#[derive(Debug, Clone, Deserialize)]
pub struct CheckRunEvent {
    /// `created`, `completed`, `rerequested`, `requested_action`.
    pub action: String,
    /// The check run.
    pub check_run: CheckRun,
    /// Where it ran.
    pub repository: Repository,
    /// Who caused the event.
    #[serde(default)]
    pub sender: Option<Account>,
}

/// One check run.
#[derive(Debug, Clone, Deserialize)]
pub struct CheckRun {
    /// Its id, commit, status and conclusion.
    #[serde(flatten)]
    pub progress: Progress,
    /// The check's name.
    pub name: String,
    /// The run's page on GitHub.
    #[serde(default)]
    pub html_url: Option<String>,
    /// The CI's own page for it.
    #[serde(default)]
    pub details_url: Option<String>,
    /// When it completed.
    #[serde(default)]
    pub completed_at: Option<DateTime<Utc>>,
}

/// A `check_suite` event: the suite of one app's checks on a commit.
#[derive(Debug, Clone, Deserialize)]
pub struct CheckSuiteEvent {
    /// `requested`, `rerequested` or `completed`.
    pub action: String,
    /// The suite.
    pub check_suite: CheckSuite,
    /// Where it ran.
    pub repository: Repository,
    /// Who caused the event.
    #[serde(default)]
    pub sender: Option<Account>,
}

/// One app's suite of checks on a commit.
#[derive(Debug, Clone, Deserialize)]
pub struct CheckSuite {
    /// Its id, commit, status and conclusion.
    #[serde(flatten)]
    pub progress: Progress,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
    /// The app that runs it; some payloads lack its `slug`.
    #[serde(default)]
    pub app: Option<App>,
    /// The commit, with its message.
    #[serde(default)]
    pub head_commit: Option<HeadCommit>,
}

/// A GitHub App, as events name it.
#[derive(Debug, Clone, Deserialize)]
pub struct App {
    /// e.g. `github-actions`; missing from some payloads.
    #[serde(default)]
    pub slug: Option<String>,
    /// e.g. `GitHub Actions`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub name: String,
}

/// Parses a payload, turning serde's error into the one-line reason a 400 carries.
pub fn parse<T: serde::de::DeserializeOwned>(event: &str, body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|error| {
        if error.is_syntax() || error.is_eof() {
            format!("Malformed JSON in {event} payload: {error}")
        } else {
            format!("Unusable {event} payload: {error}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nulls_and_unknown_fields_are_tolerated() {
        let body =
            br#"{"id":1,"sha":"abc","state":"brand-new-state","context":"ci","description":null,
            "target_url":null,"branches":null,"commit":{"commit":{"message":null}},
            "updated_at":"2019-05-15T15:20:55+00:00","repository":{"full_name":"o/r","x":1},
            "sender":null,"something_new":{"a":[1,2]}}"#;
        let event: StatusEvent = parse("status", body).unwrap();
        assert!(event.branches.is_empty());
        assert_eq!(event.commit_message(), "");
        assert_eq!(event.state, "brand-new-state");
    }

    #[test]
    fn missing_fields_and_bad_json_name_the_problem() {
        let missing = parse::<StatusEvent>("status", br#"{"state":"success"}"#).unwrap_err();
        assert!(missing.contains("missing field"), "{missing}");
        let malformed = parse::<StatusEvent>("status", b"{not json").unwrap_err();
        assert!(malformed.starts_with("Malformed JSON"), "{malformed}");
    }
}
