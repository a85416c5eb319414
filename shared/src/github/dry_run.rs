//! A `GitHub` that reads through another one and records writes instead of making them:
//! `relay-local` without a token. Every write is logged and kept for inspection.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use super::api::*;

/// A write the relay would have made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// `PATCH` of a branch to a commit, fast-forward only.
    FastForward {
        /// The branch moved.
        branch: String,
        /// Where to.
        sha: String,
    },
    /// `PUT` merge of a pull request.
    Merge {
        /// The pull request.
        number: u64,
        /// The merge commit's title.
        title: String,
        /// The head commit the merge is pinned to.
        sha: String,
    },
    /// `DELETE` of a branch.
    DeleteBranch {
        /// The branch.
        branch: String,
    },
    /// `POST` of a blob, a tree or a commit (for a union merge); answered with a made-up sha.
    GitObject {
        /// `blob`, `tree` or `commit`.
        kind: &'static str,
        /// The sha it was answered with.
        sha: String,
    },
    /// `POST` of a commit status.
    Status {
        /// The commit.
        sha: String,
        /// The status.
        status: NewStatus,
    },
}

/// GitHub that reads for real and only notes its writes (`relay-local` without a token).
pub struct DryRun {
    reads: Arc<dyn GitHub>,
    writes: Mutex<Vec<Write>>,
}

impl DryRun {
    /// Reads through `reads`; writes nothing.
    pub fn new(reads: Arc<dyn GitHub>) -> Self {
        Self {
            reads,
            writes: Mutex::new(Vec::new()),
        }
    }

    /// The writes it would have made, in order.
    pub fn writes(&self) -> Vec<Write> {
        self.writes.lock().expect("not poisoned").clone()
    }

    fn record(&self, write: Write) {
        tracing::info!(write = ?write, "dry run: GitHub write not sent");
        self.writes.lock().expect("not poisoned").push(write);
    }

    /// Records a Git object it would have created, under a made-up sha.
    fn object(&self, kind: &'static str) -> String {
        let count = self.writes.lock().expect("not poisoned").len();
        let sha = format!("{:040x}", count + 1);
        self.record(Write::GitObject {
            kind,
            sha: sha.clone(),
        });
        sha
    }
}

#[async_trait]
impl GitHub for DryRun {
    async fn fast_forward(&self, branch: &str, sha: &str) -> Result<(), GitHubError> {
        self.record(Write::FastForward {
            branch: branch.into(),
            sha: sha.into(),
        });
        Ok(())
    }

    async fn compare(&self, base: &str, head: &str) -> Result<Comparison, GitHubError> {
        self.reads.compare(base, head).await
    }

    async fn pull_request(&self, number: u64) -> Result<PullRequest, GitHubError> {
        self.reads.pull_request(number).await
    }

    async fn pull_requests_with_commit(&self, sha: &str) -> Result<Vec<PullRequest>, GitHubError> {
        self.reads.pull_requests_with_commit(sha).await
    }

    async fn merge(&self, number: u64, title: &str, sha: &str) -> Result<Merged, GitHubError> {
        self.record(Write::Merge {
            number,
            title: title.into(),
            sha: sha.into(),
        });
        Ok(Merged { sha: sha.into() })
    }

    async fn delete_branch(&self, branch: &str) -> Result<(), GitHubError> {
        self.record(Write::DeleteBranch {
            branch: branch.into(),
        });
        Ok(())
    }

    async fn branch_head(&self, branch: &str) -> Result<String, GitHubError> {
        self.reads.branch_head(branch).await
    }

    async fn commit_message(&self, sha: &str) -> Result<String, GitHubError> {
        self.reads.commit_message(sha).await
    }

    async fn create_status(&self, sha: &str, status: &NewStatus) -> Result<(), GitHubError> {
        self.record(Write::Status {
            sha: sha.into(),
            status: status.clone(),
        });
        Ok(())
    }

    async fn tree(&self, commit: &str) -> Result<Tree, GitHubError> {
        self.reads.tree(commit).await
    }

    async fn blob(&self, sha: &str) -> Result<Vec<u8>, GitHubError> {
        self.reads.blob(sha).await
    }

    async fn create_blob(&self, _: &[u8]) -> Result<String, GitHubError> {
        Ok(self.object("blob"))
    }

    async fn create_tree(&self, _: &str, _: &[TreeItem]) -> Result<String, GitHubError> {
        Ok(self.object("tree"))
    }

    async fn create_commit(&self, _: &NewCommit) -> Result<String, GitHubError> {
        Ok(self.object("commit"))
    }

    async fn rate_limit(&self) -> Result<RateLimit, GitHubError> {
        self.reads.rate_limit().await
    }

    async fn combined_status(&self, sha: &str) -> Result<Vec<CommitStatus>, GitHubError> {
        self.reads.combined_status(sha).await
    }

    async fn check_runs(
        &self,
        sha: &str,
    ) -> Result<Vec<crate::github::payloads::CheckRun>, GitHubError> {
        self.reads.check_runs(sha).await
    }

    async fn open_pulls(&self) -> Result<Vec<OpenPull>, GitHubError> {
        self.reads.open_pulls().await
    }
}
