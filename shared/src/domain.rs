//! The relay's own vocabulary: what it knows about commits, verdicts, once-only work,
//! client keys and the messages it sent. Pure data; `store/` keeps it, `rules/` reasons
//! about it.

use serde::{Deserialize, Serialize};

/// One commit status as last reported for a (sha, context).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRecord {
    /// The commit.
    pub sha: String,
    /// The CI context, e.g. `ci/circleci`.
    pub context: String,
    /// `pending`, `success`, `failure` or `error`.
    pub state: String,
    /// CI's link for the run.
    pub target_url: Option<String>,
    /// CI's one-line description.
    pub description: Option<String>,
    /// Who posted the status.
    pub sender: Option<String>,
    /// GitHub's `updated_at`, Unix seconds.
    pub updated_at: i64,
    /// GitHub's status id; breaks ties between updates within the same second.
    pub status_id: u64,
    /// The delivery that brought it.
    pub delivery_id: String,
    /// Which kind of GitHub event reported it (records version one wrote are statuses).
    #[serde(default)]
    pub source: CiSource,
}

/// Which kind of GitHub event reported a CI result.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CiSource {
    /// A commit status (`status` event): CircleCI, PullApprove, the relay's mirror.
    #[default]
    Status,
    /// A GitHub Actions `workflow_run` event.
    WorkflowRun,
    /// A `check_run` event.
    CheckRun,
    /// A `check_suite` event.
    CheckSuite,
}

impl CiSource {
    /// The stored name (GitHub's event name).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status => "status",
            Self::WorkflowRun => "workflow_run",
            Self::CheckRun => "check_run",
            Self::CheckSuite => "check_suite",
        }
    }

    /// Reads a stored name; `None` for a name no version wrote.
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(text.to_string())).ok()
    }
}

/// What CI says about a commit, as sent to Smokey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// The commit.
    pub sha: String,
    /// `success`, `failure` or `error`.
    pub state: String,
    /// CI's link for the deciding run.
    pub ci_url: Option<String>,
    /// The commit's message (Smokey pulls only when it asks to).
    pub commit_message: String,
}

/// A commit's verdict as stored: who decided it and whether it was sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictRecord {
    /// The verdict itself.
    pub verdict: Verdict,
    /// The delivery that decided it and is responsible for sending it.
    pub delivery_id: String,
    /// When it was claimed (the lease starts then).
    pub claimed_at: i64,
    /// When it was sent, once it was.
    pub notified_at: Option<i64>,
    /// How many connections took it when it was sent (none for a record written before
    /// this was kept).
    #[serde(default)]
    pub sent_to: Option<u64>,
}

/// A client key as stored: only its hash (see `keys`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientKey {
    /// The name the key was registered under (one per Smokey).
    pub name: String,
    /// SHA-256 of the key, hex.
    pub key_hash: String,
    /// When it was registered.
    pub created_at: i64,
}

/// A frame's message as it went out to Smokey, with its place in the order of all of them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxEntry {
    /// 1, 2, 3, ... in the order the messages were broadcast (gaps are possible).
    pub seq: u64,
    /// The JSON text of the frame's `message`, exactly as sent.
    pub message: String,
    /// When it was sent, in Unix seconds.
    pub at: i64,
}

/// One line of an audit trail: what happened, when, and because of which delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    /// When, in Unix seconds.
    pub at: i64,
    /// The delivery (or claim holder) that did it.
    pub delivery_id: String,
    /// What happened.
    pub outcome: HistoryOutcome,
    /// The particulars: shas, reasons, branch names.
    pub detail: serde_json::Value,
}

/// What a history entry records. Stored as the kebab-case names below, as version one
/// wrote them; a pull request's trail also records GitHub's event actions by name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum HistoryOutcome {
    /// Deploy was moved to the pushed commit.
    Moved,
    /// Moving deploy failed for a reason a redelivery may not fix.
    Failed,
    /// GitHub does not know the pushed commit.
    UnknownCommit,
    /// Deploy already had the commit.
    AlreadyContained,
    /// Deploy has commits the source branch lacks; reported.
    Diverged,
    /// A commit was pushed to deploy directly; reported.
    StrayCommit,
    /// The pull request was merged (by the relay, or found merged after a lost answer).
    Merged,
    /// The pull request was not merged; the detail says why.
    NotMerged,
    /// The pull request's head moved after the approval.
    HeadMoved,
    /// GitHub refused the merge.
    Refused,
    /// The merged pull request's branch was deleted (or was gone already).
    BranchDeleted,
    /// Deleting the branch failed.
    BranchNotDeleted,
    /// A `pull_request` event, by GitHub's action (`opened`, `closed`, ...).
    #[serde(untagged)]
    Event(String),
}

impl HistoryOutcome {
    /// The stored name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Moved => "moved",
            Self::Failed => "failed",
            Self::UnknownCommit => "unknown-commit",
            Self::AlreadyContained => "already-contained",
            Self::Diverged => "diverged",
            Self::StrayCommit => "stray-commit",
            Self::Merged => "merged",
            Self::NotMerged => "not-merged",
            Self::HeadMoved => "head-moved",
            Self::Refused => "refused",
            Self::BranchDeleted => "branch-deleted",
            Self::BranchNotDeleted => "branch-not-deleted",
            Self::Event(action) => action,
        }
    }

    /// Reads a stored name back; any name not listed is a GitHub event action.
    pub fn parse(name: &str) -> Self {
        serde_json::from_value(serde_json::Value::String(name.to_string()))
            .unwrap_or_else(|_| Self::Event(name.to_string()))
    }
}

/// Who holds a once-only claim, how far they got, and since when (the lease).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClaimRecord {
    /// The delivery holding it.
    pub owner: String,
    /// When the holder last moved it on; `0` when released for anyone to take over.
    pub claimed_at: i64,
    /// How far the work got.
    pub state: ClaimState,
}

/// The steps of a once-only piece of work, in the order they are done. Stored as the
/// lowercase names below (the names version one wrote, so its items read back).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ClaimState {
    /// Taken; the work itself (a merge, a message) is not known to be done.
    Claimed,
    /// The pull request is merged; the announcement is not known to be sent.
    Merged,
    /// Merged and announced; the head branch is not known to be deleted.
    Announced,
    /// Everything is done.
    BranchDeleted,
    /// The work is done (for claims with a single step).
    Done,
    /// Decided against for good (head moved, not mergeable): nothing more to do.
    Refused,
    /// Someone else merged it: nothing to announce or delete.
    MergedElsewhere,
    /// Version one's mark of a failed merge attempt: read as `Claimed`, free to take over.
    Failed,
}

impl ClaimState {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Claimed => "claimed",
            Self::Merged => "merged",
            Self::Announced => "announced",
            Self::BranchDeleted => "branch-deleted",
            Self::Done => "done",
            Self::Refused => "refused",
            Self::MergedElsewhere => "merged-elsewhere",
            Self::Failed => "failed",
        }
    }

    /// Reads a stored name; `None` for a name no version wrote.
    pub fn parse(text: &str) -> Option<Self> {
        serde_json::from_value(serde_json::Value::String(text.to_string())).ok()
    }

    /// Whether nothing is left to do.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Self::BranchDeleted | Self::Done | Self::Refused | Self::MergedElsewhere
        )
    }
}

/// A stall a reconcile pass is watching: since when, and whether its alert was sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stall {
    /// When a pass first saw it, Unix seconds.
    pub since: i64,
    /// Whether its alert was sent.
    pub alerted: bool,
}

/// Whether `new` may replace `old` for the same (sha, context): it is not older. An equal
/// one replaces, so that recording the same status twice is harmless.
pub fn supersedes(new: &StatusRecord, old: &StatusRecord) -> bool {
    (new.updated_at, new.status_id) >= (old.updated_at, old.status_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_outcomes_keep_their_stored_names() {
        for outcome in [
            HistoryOutcome::Moved,
            HistoryOutcome::UnknownCommit,
            HistoryOutcome::BranchNotDeleted,
            HistoryOutcome::Event("opened".into()),
        ] {
            let stored = serde_json::to_value(&outcome).unwrap();
            assert_eq!(stored, serde_json::Value::String(outcome.as_str().into()));
            assert_eq!(HistoryOutcome::parse(outcome.as_str()), outcome);
            assert_eq!(
                serde_json::from_value::<HistoryOutcome>(stored).unwrap(),
                outcome
            );
        }
        assert_eq!(
            HistoryOutcome::parse("stray-commit"),
            HistoryOutcome::StrayCommit
        );
        assert_eq!(
            HistoryOutcome::parse("synchronize"),
            HistoryOutcome::Event("synchronize".into())
        );
    }
}

/// A commit's author or committer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Person {
    /// The name.
    pub name: String,
    /// The email address.
    pub email: String,
}

/// The deploy history's stream name.
pub const DEPLOY_HISTORY: &str = "deploy";

/// The history stream of one pull request: its events and every merge attempt.
pub fn pull_stream(number: u64) -> String {
    format!("pull/{number}")
}
