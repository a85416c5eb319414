//! Merging a pull request GitHub will not merge (issue 14): the merge commit is built through
//! the Git Data API, with `.gitattributes`' union driver, and the base branch is moved to it
//! with `force: false`. Every file's merge is worked out before anything is written, so a
//! refusal writes nothing to GitHub.

use std::collections::HashMap;

use http::StatusCode;

use super::Effects;
use super::Failure;
use super::retried;
use crate::github::api::{GitHubError, NewCommit, PullRequest, TreeItem};
use crate::rules::merge as merge_rules;
use crate::rules::union::{self as rules, Attributes, Entry, Files};

/// How many times the merge is built again when the base branch moved while it was built.
pub const BASE_MOVED_RETRIES: u32 = 3;

/// How a union merge ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum UnionEnd {
    /// The base branch holds the pull request's head: the merge commit (or the base head
    /// that already held it).
    Merged(String),
    /// Not merged, and nothing written: why.
    Refused(String),
}

/// What building the merge commit gave.
enum Built {
    Commit(String),
    Refused(String),
}

/// Merges `pr` at `sha` into the base branch, starting over (a bounded number of times)
/// when the base moves between reading it and moving it.
pub(crate) async fn union_merge(
    fx: &Effects,
    pr: &PullRequest,
    sha: &str,
) -> Result<UnionEnd, Failure> {
    let base = &fx.config.source_branch;
    for _ in 0..=BASE_MOVED_RETRIES {
        let head = retried(fx, &format!("read {base}"), || fx.github.branch_head(base)).await?;
        let compared = retried(fx, &format!("compare {base} with #{}", pr.number), || {
            fx.github.compare(&head, sha)
        })
        .await?;
        let Some(merge_base) = compared.merge_base_commit.map(|c| c.sha) else {
            return Ok(UnionEnd::Refused(format!(
                "{base} and #{} have no commit in common",
                pr.number
            )));
        };
        if merge_base == sha {
            // The head is in the base branch already (an earlier attempt got this far).
            return Ok(UnionEnd::Merged(head));
        }
        let commit = match build(fx, pr, sha, &head, &merge_base).await? {
            Built::Commit(commit) => commit,
            Built::Refused(reason) => return Ok(UnionEnd::Refused(reason)),
        };
        let moved = fx
            .retry
            .run("move the base branch", || {
                fx.github.fast_forward(base, &commit)
            })
            .await;
        match moved {
            Ok(()) => return Ok(UnionEnd::Merged(commit)),
            Err(e) if is_protected(&e) => {
                return Ok(UnionEnd::Refused(format!(
                    "{base} is protected and GitHub refused the relay's merge commit ({}); \
                     let the relay's account push to {base}, as metasmoke's account may",
                    e.message
                )));
            }
            // Not a fast-forward: the base moved. The commit made for it is left unreferenced.
            Err(e) if e.is(StatusCode::UNPROCESSABLE_ENTITY) => continue,
            Err(e) => {
                return Err(super::github_failure(format!("could not move {base}"), &e));
            }
        }
    }
    Err(Failure::transient(format!(
        "{base} moved each of {} times the merge of #{} was built; a redelivery tries again",
        BASE_MOVED_RETRIES + 1,
        pr.number
    )))
}

/// Works out every file's merge from the three trees, then (only if all of them merge)
/// writes the blobs, the tree and the merge commit. Creating a Git object twice is
/// harmless (it is left unreferenced), so those calls are retried as reads are.
async fn build(
    fx: &Effects,
    pr: &PullRequest,
    sha: &str,
    head: &str,
    merge_base: &str,
) -> Result<Built, Failure> {
    let (ancestor, ours, theirs) = (
        files(fx, merge_base).await?,
        files(fx, head).await?,
        files(fx, sha).await?,
    );
    let (Some(ancestor), Some((ours_tree, ours)), Some(theirs)) =
        (ancestor.map(|(_, f)| f), ours, theirs.map(|(_, f)| f))
    else {
        return Ok(Built::Refused(
            "a tree is too large for GitHub to list; merge it by hand".into(),
        ));
    };
    let plan = rules::plan_trees(&ancestor, &ours, &theirs);
    if !plan.conflicts.is_empty() {
        return Ok(Built::Refused(conflicts(&plan.conflicts)));
    }
    let attributes = match ours.get(".gitattributes") {
        Some(entry) => Attributes::parse(&String::from_utf8_lossy(&blob(fx, &entry.sha).await?)),
        None => Attributes::default(),
    };
    let contents = blobs(fx, &plan.contents).await?;
    let merged =
        match rules::merge_contents(&plan.contents, |sha| contents[sha].clone(), &attributes) {
            Ok(merged) => merged,
            Err(refused) => return Ok(Built::Refused(conflicts(&refused))),
        };
    let mut entries: Vec<TreeItem> = plan
        .take_theirs
        .into_iter()
        .map(|(path, entry)| tree_item(path, entry))
        .collect();
    for (merge, content) in merged {
        let blob = retried(fx, "create a blob", || fx.github.create_blob(&content)).await?;
        entries.push(tree_item(
            merge.path,
            Some(Entry {
                mode: merge.mode,
                sha: blob,
            }),
        ));
    }
    let tree = retried(fx, "create the tree", || {
        fx.github.create_tree(&ours_tree, &entries)
    })
    .await?;
    Ok(Built::Commit(write_commit(fx, pr, tree, head, sha).await?))
}

/// Every blob the content merges read (each once), by sha.
async fn blobs(
    fx: &Effects,
    merges: &[rules::ContentMerge],
) -> Result<HashMap<String, Vec<u8>>, Failure> {
    let mut contents = HashMap::new();
    for merge in merges {
        let shas = [
            merge.ancestor.as_ref(),
            Some(&merge.ours),
            Some(&merge.theirs),
        ];
        for sha in shas.into_iter().flatten() {
            if !contents.contains_key(sha) {
                contents.insert(sha.clone(), blob(fx, sha).await?);
            }
        }
    }
    Ok(contents)
}

/// The merge commit of `tree`, with the base's head first and the approved commit second.
async fn write_commit(
    fx: &Effects,
    pr: &PullRequest,
    tree: String,
    head: &str,
    sha: &str,
) -> Result<String, Failure> {
    let commit = NewCommit {
        message: format!(
            "{}\n\n{}",
            merge_rules::merge_title(pr, &fx.config),
            pr.title
        ),
        tree,
        parents: vec![head.to_string(), sha.to_string()],
        committer: fx.config.merge_committer.clone(),
    };
    retried(fx, "create the merge commit", || {
        fx.github.create_commit(&commit)
    })
    .await
}

/// A commit's tree sha and its entries by path (files, symlinks and submodules; not the
/// directories); `None` when GitHub truncated the listing.
async fn files(fx: &Effects, commit: &str) -> Result<Option<(String, Files)>, Failure> {
    let tree = retried(fx, &format!("read the tree of {commit}"), || {
        fx.github.tree(commit)
    })
    .await?;
    if tree.truncated {
        return Ok(None);
    }
    let files = tree
        .tree
        .into_iter()
        .filter(|item| item.kind != "tree")
        .filter_map(|item| {
            Some((
                item.path,
                Entry {
                    mode: item.mode,
                    sha: item.sha?,
                },
            ))
        })
        .collect();
    Ok(Some((tree.sha, files)))
}

async fn blob(fx: &Effects, sha: &str) -> Result<Vec<u8>, Failure> {
    retried(fx, &format!("read blob {sha}"), || fx.github.blob(sha)).await
}

fn tree_item(path: String, entry: Option<Entry>) -> TreeItem {
    let mode = entry.as_ref().map_or("100644".into(), |e| e.mode.clone());
    TreeItem {
        path,
        // A submodule is a commit entry; files and symlinks are blobs.
        kind: if mode == "160000" { "commit" } else { "blob" }.into(),
        mode,
        sha: entry.map(|e| e.sha),
    }
}

/// The refusal naming every file that cannot be merged.
fn conflicts(paths: &[String]) -> String {
    format!(
        "conflicts a union merge cannot resolve in {}; nothing was written",
        paths.join(", ")
    )
}

/// GitHub's answers when branch protection refuses a ref update.
fn is_protected(error: &GitHubError) -> bool {
    (error.is(StatusCode::UNPROCESSABLE_ENTITY) || error.is(StatusCode::FORBIDDEN))
        && error
            .message
            .to_ascii_lowercase()
            .contains("protected branch")
}
