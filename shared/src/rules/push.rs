//! Deploy follows master (DESIGN §4, "Push").

use serde_json::{Value, json};

use crate::cable::MAX_FRAME_BYTES;
use crate::config::RelayConfig;
use crate::github::api::{ComparedCommit, Comparison};
use crate::github::payloads::PushEvent;

/// What a push asks the relay to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PushPlan {
    /// Nothing; the reason says why.
    Ignore(String),
    /// A push to the source branch: move deploy to `sha`, fast-forward only.
    MoveDeploy {
        /// The pushed commit.
        sha: String,
    },
    /// A push to deploy itself: its head must be on the source branch.
    CheckDeploy {
        /// The pushed commit.
        sha: String,
    },
}

/// What a commit pushed to deploy itself is, given GitHub's comparison of the source branch
/// (base) with it (head).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployHead {
    /// The source branch has it (identical, or the commit is behind): nothing to say.
    OnSource,
    /// The commit is not on the source branch: report it, never force.
    Stray,
}

/// Judges a push to deploy by `source...head`.
pub fn judge_deploy_head(comparison: &Comparison) -> DeployHead {
    match comparison.status.as_str() {
        "identical" | "behind" => DeployHead::OnSource,
        _ => DeployHead::Stray,
    }
}

/// The git fix for a deploy branch with commits master lacks (DESIGN §4).
pub const FIX: &str = "git checkout master && git merge --rebase deploy && git push origin master";

/// Decides what a push asks for.
pub fn plan(push: &PushEvent, config: &RelayConfig) -> PushPlan {
    if !config.is_our_repository(&push.repository.full_name) {
        return PushPlan::Ignore(format!(
            "Push to {}, not {}; not interested",
            push.repository.full_name, config.repository
        ));
    }
    if push.deleted || push.after.bytes().all(|b| b == b'0') {
        return PushPlan::Ignore(format!("{} was deleted; not interested", push.git_ref));
    }
    let branch = push.git_ref.strip_prefix("refs/heads/");
    if branch == Some(config.source_branch.as_str()) {
        PushPlan::MoveDeploy {
            sha: push.after.clone(),
        }
    } else if branch == Some(config.deploy_branch.as_str()) {
        PushPlan::CheckDeploy {
            sha: push.after.clone(),
        }
    } else {
        PushPlan::Ignore(format!("Not on {}; not interested", config.source_branch))
    }
}

/// The chat line naming the commits on deploy that master lacks, and the fix.
pub fn divergence_message(
    config: &RelayConfig,
    cause: &str,
    extra: &[ComparedCommit],
    total: u64,
) -> String {
    const SHOWN: usize = 5;
    let mut listed: Vec<String> = extra
        .iter()
        .take(SHOWN)
        .map(|c| {
            let subject = c.commit.message.lines().next().unwrap_or_default();
            format!("{} {}", &c.sha[..c.sha.len().min(7)], subject)
        })
        .collect();
    if total as usize > listed.len() {
        listed.push(format!("and {} more", total as usize - listed.len()));
    }
    format!(
        "[build-relay] {cause}: {total} commit(s) on {deploy} are not on {source}: {}. To fix: {FIX}",
        listed.join("; "),
        deploy = config.deploy_branch,
        source = config.source_branch,
    )
}

/// The `deploy_updated` payload for Smokey: the whole push payload when its frame fits in
/// 32 KB, else the fields that matter without the commit list (DESIGN §5).
pub fn deploy_updated_payload(push: &Value) -> Value {
    // Room for the frame's envelope and identifier around the payload.
    const BUDGET: usize = MAX_FRAME_BYTES - 1024;
    if push.to_string().len() <= BUDGET {
        return push.clone();
    }
    let mut head_commit = push["head_commit"].clone();
    if let Some(commit) = head_commit.as_object_mut() {
        for list in ["added", "removed", "modified"] {
            commit.remove(list);
        }
    }
    let mut trimmed = json!({
        "ref": push["ref"],
        "before": push["before"],
        "after": push["after"],
        "compare": push["compare"],
        "head_commit": head_commit,
        "repository": { "full_name": push["repository"]["full_name"] },
        "pusher": push["pusher"],
    });
    if trimmed.to_string().len() > BUDGET
        && let Some(message) = trimmed["head_commit"]["message"].as_str()
    {
        let cut: String = message.chars().take(4096).collect();
        trimmed["head_commit"]["message"] = json!(cut);
    }
    trimmed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::api::CommitText;
    use crate::github::payloads::Repository;

    fn push(git_ref: &str, after: &str, deleted: bool) -> PushEvent {
        PushEvent {
            git_ref: git_ref.into(),
            before: "b".repeat(40),
            after: after.into(),
            deleted,
            head_commit: None,
            repository: Repository {
                full_name: "Charcoal-SE/SmokeDetector".into(),
            },
        }
    }

    #[test]
    fn master_moves_deploy_and_deploy_is_checked() {
        let config = RelayConfig::default();
        let sha = "a".repeat(40);
        assert_eq!(
            plan(&push("refs/heads/master", &sha, false), &config),
            PushPlan::MoveDeploy { sha: sha.clone() }
        );
        assert_eq!(
            plan(&push("refs/heads/deploy", &sha, false), &config),
            PushPlan::CheckDeploy { sha }
        );
    }

    #[test]
    fn other_branches_tags_deletions_and_repositories_are_ignored() {
        let config = RelayConfig::default();
        let sha = "a".repeat(40);
        let zero = "0".repeat(40);
        for event in [
            push("refs/heads/feature", &sha, false),
            push("refs/tags/master", &sha, false),
            push("refs/heads/master", &zero, true),
            push("refs/heads/masterful", &sha, false),
            PushEvent {
                repository: Repository {
                    full_name: "someone/else".into(),
                },
                ..push("refs/heads/master", &sha, false)
            },
        ] {
            assert!(
                matches!(plan(&event, &config), PushPlan::Ignore(_)),
                "{event:?}"
            );
        }
    }

    #[test]
    fn the_divergence_message_lists_commits_and_the_fix() {
        let commits: Vec<ComparedCommit> = (0..7)
            .map(|i| ComparedCommit {
                sha: format!("{i}").repeat(40),
                commit: CommitText {
                    message: format!("Commit {i}\n\nbody"),
                },
            })
            .collect();
        let message = divergence_message(
            &RelayConfig::default(),
            "deploy has diverged from master",
            &commits,
            7,
        );
        assert!(message.contains("7 commit(s) on deploy are not on master"));
        assert!(message.contains("0000000 Commit 0; 1111111 Commit 1"));
        assert!(message.contains("and 2 more"));
        assert!(message.ends_with(FIX));
        assert!(!message.contains('\n'));
    }

    #[test]
    fn large_pushes_drop_the_commit_list() {
        let commits: Vec<Value> = (0..2000)
            .map(|i| json!({ "id": format!("{i:040}"), "message": "Blacklist something", "added": [], "modified": ["blacklisted_websites.txt"] }))
            .collect();
        let push = json!({
            "ref": "refs/heads/master", "before": "b", "after": "a", "compare": "https://github.com/x/compare/b...a",
            "commits": commits, "head_commit": { "id": "a", "message": "m", "modified": ["x"] },
            "repository": { "full_name": "Charcoal-SE/SmokeDetector", "owner": {} }, "pusher": { "name": "SmokeDetector" },
        });
        let trimmed = deploy_updated_payload(&push);
        assert!(trimmed.to_string().len() < MAX_FRAME_BYTES);
        assert!(trimmed.get("commits").is_none());
        assert_eq!(trimmed["after"], "a");
        assert_eq!(trimmed["head_commit"]["message"], "m");
        let small = json!({ "ref": "refs/heads/master", "commits": [] });
        assert_eq!(deploy_updated_payload(&small), small);
    }

    #[test]
    fn a_deploy_head_is_stray_unless_the_source_branch_has_it() {
        let compared = |status: &str| Comparison {
            status: status.into(),
            ahead_by: 0,
            behind_by: 0,
            commits: Vec::new(),
            merge_base_commit: None,
        };
        assert_eq!(
            judge_deploy_head(&compared("identical")),
            DeployHead::OnSource
        );
        assert_eq!(judge_deploy_head(&compared("behind")), DeployHead::OnSource);
        assert_eq!(judge_deploy_head(&compared("ahead")), DeployHead::Stray);
        assert_eq!(judge_deploy_head(&compared("diverged")), DeployHead::Stray);
    }
}
