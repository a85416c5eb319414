//! The GitHub calls the relay makes, as an interface, with GitHub's response shapes.

use std::time::Duration;

use async_trait::async_trait;
use http::StatusCode;
use serde::{Deserialize, Serialize};

pub use super::payloads::{Account, PullBranch, PullRequest, Repository};
pub use crate::domain::Person;

/// `GET /repos/{owner}/{repo}/compare/{base}...{head}` (the fields we read).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Comparison {
    /// `identical`, `ahead` (head has commits base lacks), `behind` or `diverged`.
    pub status: String,
    /// Commits head has that base lacks.
    pub ahead_by: u64,
    /// Commits base has that head lacks.
    pub behind_by: u64,
    /// The commits on head that base lacks (GitHub lists at most 250).
    #[serde(default)]
    pub commits: Vec<ComparedCommit>,
    /// The newest commit both have.
    #[serde(default)]
    pub merge_base_commit: Option<GitObject>,
}

/// A commit as `GET /repos/{repo}/commits/{sha}` and the commits of a comparison show it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ComparedCommit {
    /// Its sha.
    pub sha: String,
    /// Its git data.
    pub commit: CommitText,
}

/// A commit's git data (the part the relay reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CommitText {
    /// The full commit message.
    pub message: String,
}

impl Comparison {
    /// Whether head contains every commit of base.
    pub fn head_contains_base(&self) -> bool {
        matches!(self.status.as_str(), "identical" | "ahead")
    }
}

/// A failed GitHub call.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}{message}", status.map(|s| format!("GitHub answered {}: ", s.as_u16())).unwrap_or_else(|| "GitHub unreachable: ".into()))]
pub struct GitHubError {
    /// `None` when no response came (connection refused, timeout).
    pub status: Option<StatusCode>,
    /// GitHub's `message`, or the transport error.
    pub message: String,
    /// How long GitHub asked us to wait (rate limits), if it said.
    pub retry_after: Option<Duration>,
}

impl GitHubError {
    /// Whether GitHub answered `status`.
    pub fn is(&self, status: StatusCode) -> bool {
        self.status == Some(status)
    }

    /// A failure that waiting may fix: no response, a 5xx, or a rate limit.
    pub fn is_transient(&self) -> bool {
        match self.status {
            None => true,
            Some(s) if s.is_server_error() => true,
            Some(StatusCode::TOO_MANY_REQUESTS) => true,
            Some(StatusCode::FORBIDDEN) => self.is_rate_limit(),
            Some(_) => false,
        }
    }

    fn is_rate_limit(&self) -> bool {
        self.retry_after.is_some() || self.message.to_ascii_lowercase().contains("rate limit")
    }
}

/// `GET /repos/{repo}/git/ref/heads/{branch}` (the fields we read).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GitRef {
    /// What the ref points at.
    pub object: GitObject,
}

/// The object a ref points at.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GitObject {
    /// Its sha.
    pub sha: String,
}

/// `GET /repos/{repo}/git/trees/{sha}?recursive=1`: every entry of a commit's tree.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Tree {
    /// The tree's own sha.
    pub sha: String,
    /// Its entries, subtrees included, by full path.
    pub tree: Vec<TreeItem>,
    /// Whether GitHub left entries out (a tree over its limit).
    #[serde(default)]
    pub truncated: bool,
}

/// One entry of a tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TreeItem {
    /// The full path.
    pub path: String,
    /// Git's mode: `100644`, `100755`, `040000`, `120000`, `160000`.
    pub mode: String,
    /// `blob`, `tree` or `commit` (a submodule).
    #[serde(rename = "type")]
    pub kind: String,
    /// The object; `null` deletes the path when creating a tree.
    pub sha: Option<String>,
}

/// `POST /repos/{repo}/git/commits`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewCommit {
    /// The full message.
    pub message: String,
    /// Its tree.
    pub tree: String,
    /// Its parents, first parent first.
    pub parents: Vec<String>,
    /// Who made it; GitHub uses the same for the author.
    pub committer: Person,
}

/// `GET /rate_limit`'s core quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub struct RateLimit {
    /// Calls an hour.
    pub limit: u64,
    /// Calls left in this hour.
    pub remaining: u64,
}

/// A status as `GET /repos/{repo}/commits/{sha}/status` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct CommitStatus {
    /// GitHub's id for it.
    pub id: u64,
    /// `pending`, `success`, `failure` or `error`.
    pub state: String,
    /// Its context.
    pub context: String,
    /// CI's link.
    #[serde(default)]
    pub target_url: Option<String>,
    /// CI's line.
    #[serde(default)]
    pub description: Option<String>,
    /// When it last changed.
    pub updated_at: chrono::DateTime<chrono::Utc>,
    /// Who posted it.
    #[serde(default)]
    pub creator: Option<Account>,
}

/// An open pull request, with the statuses of its head commit (one GraphQL query lists
/// them all).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenPull {
    /// Its number.
    pub number: u64,
    /// Who opened it.
    pub author: Option<String>,
    /// The branch it targets.
    pub base: String,
    /// Its head commit.
    pub head_sha: String,
    /// The head commit's statuses, one per context.
    pub statuses: Vec<PullStatus>,
}

/// A status of an open pull request's head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PullStatus {
    /// Its context.
    pub context: String,
    /// `pending`, `success`, `failure`, `error` or `expected`.
    pub state: String,
    /// Its link.
    pub target_url: Option<String>,
    /// Who posted it.
    pub creator: Option<String>,
}

/// A commit status to post (`POST /repos/{repo}/statuses/{sha}`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewStatus {
    /// `success`, `failure` or `error`.
    pub state: String,
    /// Where the status links to.
    pub target_url: Option<String>,
    /// One line; GitHub keeps at most `MAX_STATUS_DESCRIPTION` characters.
    pub description: String,
    /// The status's context.
    pub context: String,
}

/// GitHub refuses a status description longer than this.
pub const MAX_STATUS_DESCRIPTION: usize = 140;

/// What a merge answered when it succeeded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Merged {
    /// The merge commit.
    pub sha: String,
}

/// The calls, on the configured repository. Implementations: octocrab (real GitHub), and a
/// dry run that records writes instead of making them.
#[async_trait]
pub trait GitHub: Send + Sync {
    /// Moves `refs/heads/{branch}` to `sha` with `force: false`: GitHub answers 422 unless
    /// it is a fast-forward.
    async fn fast_forward(&self, branch: &str, sha: &str) -> Result<(), GitHubError>;
    /// `GET /repos/{repo}/compare/{base}...{head}`.
    async fn compare(&self, base: &str, head: &str) -> Result<Comparison, GitHubError>;
    /// `GET /repos/{repo}/pulls/{number}`.
    async fn pull_request(&self, number: u64) -> Result<PullRequest, GitHubError>;
    /// The pull requests that contain the commit.
    async fn pull_requests_with_commit(&self, sha: &str) -> Result<Vec<PullRequest>, GitHubError>;
    /// Merges with method `merge`, the given title, and `sha` as the required head.
    async fn merge(&self, number: u64, title: &str, sha: &str) -> Result<Merged, GitHubError>;
    /// `DELETE /repos/{repo}/git/refs/heads/{branch}`.
    async fn delete_branch(&self, branch: &str) -> Result<(), GitHubError>;
    /// The commit `refs/heads/{branch}` points at (`GET /repos/{repo}/git/ref/heads/{branch}`).
    async fn branch_head(&self, branch: &str) -> Result<String, GitHubError>;
    /// A commit's full message (`GET /repos/{repo}/commits/{sha}`).
    async fn commit_message(&self, sha: &str) -> Result<String, GitHubError>;
    /// `POST /repos/{repo}/statuses/{sha}`.
    async fn create_status(&self, sha: &str, status: &NewStatus) -> Result<(), GitHubError>;
    /// A commit's whole tree (`GET /repos/{repo}/git/trees/{sha}?recursive=1`).
    async fn tree(&self, commit: &str) -> Result<Tree, GitHubError>;
    /// A blob's content (`GET /repos/{repo}/git/blobs/{sha}`).
    async fn blob(&self, sha: &str) -> Result<Vec<u8>, GitHubError>;
    /// `POST /repos/{repo}/git/blobs`; answers the new blob's sha.
    async fn create_blob(&self, content: &[u8]) -> Result<String, GitHubError>;
    /// `POST /repos/{repo}/git/trees`: `base_tree` with `entries` replaced; answers its sha.
    async fn create_tree(
        &self,
        base_tree: &str,
        entries: &[TreeItem],
    ) -> Result<String, GitHubError>;
    /// `POST /repos/{repo}/git/commits`; answers the new commit's sha.
    async fn create_commit(&self, commit: &NewCommit) -> Result<String, GitHubError>;
    /// `GET /rate_limit` (costs no quota).
    async fn rate_limit(&self) -> Result<RateLimit, GitHubError>;
    /// The statuses of a commit (`GET /repos/{repo}/commits/{sha}/status`).
    async fn combined_status(&self, sha: &str) -> Result<Vec<CommitStatus>, GitHubError>;
    /// The check runs of a commit (`GET /repos/{repo}/commits/{sha}/check-runs`).
    async fn check_runs(&self, sha: &str) -> Result<Vec<super::payloads::CheckRun>, GitHubError>;
    /// The open pull requests (up to 100) with their head commits' statuses, in one
    /// GraphQL query.
    async fn open_pulls(&self) -> Result<Vec<OpenPull>, GitHubError>;
}
