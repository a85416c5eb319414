//! Approved blacklist pull requests merge themselves (DESIGN §1, §4 "Pull request").

use std::time::Duration;

use crate::config::RelayConfig;
use crate::github::api::{GitHubError, PullRequest};
use crate::github::payloads::StatusEvent;

/// Whether a status is an approval the relay acts on; `Err` says why not.
pub fn screen_approval(status: &StatusEvent, config: &RelayConfig) -> Result<(), String> {
    if status.context != config.approval_context {
        return Err(format!(
            "Status context {:?} is not the approval context {:?}; not merging",
            status.context, config.approval_context
        ));
    }
    if status.state != "success" {
        return Err(format!("Approval status is {}; not merging", status.state));
    }
    if !config.approval_senders.is_empty() {
        let sender = status.sender_login().unwrap_or("(unknown)");
        if !config
            .approval_senders
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(sender))
        {
            return Err(format!(
                "Approval posted by {sender}, who is not in APPROVAL_SENDERS; not merging"
            ));
        }
    }
    Ok(())
}

/// The pull request number in PullApprove's target URL,
/// `https://pullapprove.com/<owner>/<repo>/pull-request/<N>/`, when it names our repository.
pub fn pull_number_from_target_url(target_url: Option<&str>, repository: &str) -> Option<u64> {
    let rest = target_url?.strip_prefix("https://pullapprove.com/")?;
    let mut parts = rest.trim_end_matches('/').split('/');
    let (owner, repo, kind, number) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || kind != "pull-request" {
        return None;
    }
    if !format!("{owner}/{repo}").eq_ignore_ascii_case(repository) {
        return None;
    }
    number.parse().ok()
}

/// What the re-read pull request says about merging it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PullCheck {
    /// Every check passed: merge.
    Merge,
    /// It is merged already.
    AlreadyMerged,
    /// Not to be merged; the reason says why.
    Refuse(String),
}

/// Whether the pull request, as just re-read from GitHub, may be merged for this approval.
pub fn check_pull(pr: &PullRequest, approved_sha: &str, config: &RelayConfig) -> PullCheck {
    if pr.merged {
        return PullCheck::AlreadyMerged;
    }
    let author = pr.author().unwrap_or("(unknown)");
    let head_repo = pr
        .head
        .repo
        .as_ref()
        .map(|r| r.full_name.as_str())
        .unwrap_or("(deleted)");
    let refusal = if !author.eq_ignore_ascii_case(&config.bot_login) {
        format!(
            "#{} is by {author}, not {}; not merging",
            pr.number, config.bot_login
        )
    } else if pr.state != "open" {
        format!("#{} is {}; not merging", pr.number, pr.state)
    } else if pr.base.name != config.source_branch {
        format!(
            "#{} targets {}, not {}; not merging",
            pr.number, pr.base.name, config.source_branch
        )
    } else if pr.head.sha != approved_sha {
        format!(
            "#{} head is {}, not the approved {approved_sha}; not merging",
            pr.number, pr.head.sha
        )
    } else if !config.is_our_repository(head_repo) {
        format!(
            "#{} comes from {head_repo}, not {}; not merging",
            pr.number, config.repository
        )
    } else {
        return PullCheck::Merge;
    };
    PullCheck::Refuse(refusal)
}

/// Whether GitHub says, on re-reading the pull request, that it cannot merge it (conflicts).
pub fn reads_unmergeable(pr: &PullRequest) -> bool {
    pr.mergeable == Some(false) || pr.mergeable_state.as_deref() == Some("dirty")
}

/// `Merge pull request #<N> from <owner>/<head-ref> --autopull`: the `--autopull` makes
/// Smokey pull once CI passes on the merge commit.
pub fn merge_title(pr: &PullRequest, config: &RelayConfig) -> String {
    let owner = config.repository.split('/').next().unwrap_or_default();
    format!(
        "Merge pull request #{} from {owner}/{} --autopull",
        pr.number, pr.head.name
    )
}

/// GitHub's 405 when the base moved during the merge: worth a retry.
pub fn is_base_modified(error: &GitHubError) -> bool {
    error.is(http::StatusCode::METHOD_NOT_ALLOWED)
        && error.message.contains("Base branch was modified")
}

/// How many times a merge is tried again when GitHub says the base moved meanwhile.
pub const BASE_MODIFIED_RETRIES: u32 = 3;
/// How many merge requests that answered 5xx one delivery may make.
pub const SERVER_ERROR_ATTEMPTS: u32 = 2;

/// What to do after a merge request failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterMergeError {
    /// 409: the head moved since the approval. Never merged; nothing to say.
    HeadMoved,
    /// 405 "Base branch was modified": ask again after this wait.
    RetryAfter(Duration),
    /// 405 "not mergeable" (conflicts): build the merge with the union driver instead.
    NotMergeable,
    /// GitHub will not merge it (another 405, a 404 or 422): record it and say why.
    Refused(String),
    /// A 5xx or no answer: the merge may have happened. Re-read before anything else.
    Reread,
    /// Stop for now; a redelivery may succeed (credentials, rate limits, GitHub down).
    GiveUp,
}

/// Decides after the merge request failed with `error`; `tries` counts the earlier
/// base-modified retries and `server_errors` the 5xx answers so far, this one included.
pub fn after_merge_error(error: &GitHubError, tries: u32, server_errors: u32) -> AfterMergeError {
    use http::StatusCode;
    if error.is(StatusCode::CONFLICT) {
        return AfterMergeError::HeadMoved;
    }
    if is_base_modified(error) {
        return match tries < BASE_MODIFIED_RETRIES {
            true => AfterMergeError::RetryAfter(Duration::from_millis(250 << (tries + 1))),
            false => AfterMergeError::GiveUp,
        };
    }
    if error.is(StatusCode::METHOD_NOT_ALLOWED)
        && error.message.to_ascii_lowercase().contains("not mergeable")
    {
        return AfterMergeError::NotMergeable;
    }
    if [
        StatusCode::METHOD_NOT_ALLOWED,
        StatusCode::NOT_FOUND,
        StatusCode::UNPROCESSABLE_ENTITY,
    ]
    .into_iter()
    .any(|status| error.is(status))
    {
        return AfterMergeError::Refused(error.message.clone());
    }
    if error.is_transient() && server_errors < SERVER_ERROR_ATTEMPTS {
        return AfterMergeError::Reread;
    }
    AfterMergeError::GiveUp
}

/// The chat line for a pull request SmokeDetector opened.
pub fn opened_message(pr: &PullRequest) -> String {
    format!(
        "[PR#{}]({}) (\"{}\") opened by {}",
        pr.number,
        pr.html_url,
        pr.title,
        pr.author().unwrap_or("(unknown)")
    )
}

/// `Merged SmokeDetector [#N](url).`
pub fn merged_message(pr: &PullRequest) -> String {
    format!("Merged SmokeDetector [#{}]({}).", pr.number, pr.html_url)
}

/// The chat line for a merge GitHub refused.
pub fn not_merged_message(pr: &PullRequest, reason: &str) -> String {
    format!(
        "Could not merge SmokeDetector [#{}]({}): {reason}",
        pr.number, pr.html_url
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::github::api::{Account, PullBranch, Repository};

    fn bot_pr() -> PullRequest {
        PullRequest {
            number: 1234,
            state: "open".into(),
            title: "Codertocat: Blacklist example\\.com".into(),
            html_url: "https://github.com/Charcoal-SE/SmokeDetector/pull/1234".into(),
            merged: false,
            mergeable: None,
            mergeable_state: None,
            user: Some(Account {
                login: "SmokeDetector".into(),
            }),
            head: PullBranch {
                name: "auto-blacklist-1700000000".into(),
                sha: "a".repeat(40),
                repo: Some(Repository {
                    full_name: "Charcoal-SE/SmokeDetector".into(),
                }),
            },
            base: PullBranch {
                name: "master".into(),
                sha: "b".repeat(40),
                repo: Some(Repository {
                    full_name: "Charcoal-SE/SmokeDetector".into(),
                }),
            },
        }
    }

    #[test]
    fn pullapprove_urls_name_the_pull_request() {
        let repo = "Charcoal-SE/SmokeDetector";
        let url = |u: &str| pull_number_from_target_url(Some(u), repo);
        assert_eq!(
            url("https://pullapprove.com/Charcoal-SE/SmokeDetector/pull-request/1234/"),
            Some(1234)
        );
        assert_eq!(
            url("https://pullapprove.com/charcoal-se/smokedetector/pull-request/7"),
            Some(7)
        );
        assert_eq!(
            url("https://pullapprove.com/other/repo/pull-request/1234/"),
            None
        );
        assert_eq!(
            url("https://example.com/Charcoal-SE/SmokeDetector/pull-request/1/"),
            None
        );
        assert_eq!(
            url("https://pullapprove.com/Charcoal-SE/SmokeDetector/reviews/1/"),
            None
        );
        assert_eq!(pull_number_from_target_url(None, repo), None);
    }

    #[test]
    fn only_an_open_bot_pr_on_master_at_the_approved_sha_merges() {
        let config = RelayConfig::default();
        let sha = "a".repeat(40);
        assert_eq!(check_pull(&bot_pr(), &sha, &config), PullCheck::Merge);
        let refused =
            |pr: PullRequest| matches!(check_pull(&pr, &sha, &config), PullCheck::Refuse(_));
        assert!(refused(PullRequest {
            user: Some(Account {
                login: "a-human".into()
            }),
            ..bot_pr()
        }));
        assert!(refused(PullRequest {
            state: "closed".into(),
            ..bot_pr()
        }));
        let mut on_deploy = bot_pr();
        on_deploy.base.name = "deploy".into();
        assert!(refused(on_deploy));
        let mut moved = bot_pr();
        moved.head.sha = "c".repeat(40);
        assert!(refused(moved));
        let mut fork = bot_pr();
        fork.head.repo = Some(Repository {
            full_name: "mallory/SmokeDetector".into(),
        });
        assert!(refused(fork));
        assert_eq!(
            check_pull(
                &PullRequest {
                    merged: true,
                    ..bot_pr()
                },
                &sha,
                &config
            ),
            PullCheck::AlreadyMerged
        );
    }

    #[test]
    fn titles_and_messages_are_metasmokes() {
        let config = RelayConfig::default();
        assert_eq!(
            merge_title(&bot_pr(), &config),
            "Merge pull request #1234 from Charcoal-SE/auto-blacklist-1700000000 --autopull"
        );
        assert_eq!(
            merged_message(&bot_pr()),
            "Merged SmokeDetector [#1234](https://github.com/Charcoal-SE/SmokeDetector/pull/1234)."
        );
        assert_eq!(
            opened_message(&bot_pr()),
            "[PR#1234](https://github.com/Charcoal-SE/SmokeDetector/pull/1234) (\"Codertocat: Blacklist example\\.com\") opened by SmokeDetector"
        );
    }

    #[test]
    fn merge_errors_lead_to_one_next_step_each() {
        let error = |status: u16, message: &str| GitHubError {
            status: Some(http::StatusCode::from_u16(status).unwrap()),
            message: message.into(),
            retry_after: None,
        };
        let base = "Base branch was modified. Review and try the merge again.";
        assert_eq!(
            after_merge_error(&error(409, "Head branch was modified"), 0, 0),
            AfterMergeError::HeadMoved
        );
        assert_eq!(
            after_merge_error(&error(405, base), 0, 0),
            AfterMergeError::RetryAfter(Duration::from_millis(500))
        );
        assert_eq!(
            after_merge_error(&error(405, base), BASE_MODIFIED_RETRIES, 0),
            AfterMergeError::GiveUp
        );
        assert_eq!(
            after_merge_error(&error(405, "Pull Request is not mergeable"), 0, 0),
            AfterMergeError::NotMergeable
        );
        assert_eq!(
            after_merge_error(&error(404, "Not Found"), 0, 0),
            AfterMergeError::Refused("Not Found".into())
        );
        assert_eq!(
            after_merge_error(&error(502, "Server Error"), 0, 1),
            AfterMergeError::Reread
        );
        assert_eq!(
            after_merge_error(&error(502, "Server Error"), 0, SERVER_ERROR_ATTEMPTS),
            AfterMergeError::GiveUp
        );
        assert_eq!(
            after_merge_error(&error(401, "Bad credentials"), 0, 0),
            AfterMergeError::GiveUp
        );
    }

    #[test]
    fn base_modified_is_told_apart_from_other_405s() {
        let error = |message: &str| GitHubError {
            status: Some(http::StatusCode::METHOD_NOT_ALLOWED),
            message: message.into(),
            retry_after: None,
        };
        assert!(is_base_modified(&error(
            "Base branch was modified. Review and try the merge again."
        )));
        assert!(!is_base_modified(&error("Pull Request is not mergeable")));
    }
}
