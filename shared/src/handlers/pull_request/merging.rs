//! One delivery's part in merging an approved pull request: the claim per (PR, approved
//! commit) and its steps claimed -> merged -> announced -> branch-deleted, each done by the
//! claim's holder; a delivery that finds the claim held waits for it, or takes it over.

use std::time::Duration;

use serde_json::json;

use crate::domain::{HistoryOutcome, pull_stream};
use crate::github::PullRequest;
use crate::github::payloads::StatusEvent;
use crate::handlers::claims::{ClaimHandle, Taken};
use crate::handlers::union_merge::{self, UnionEnd};
use crate::handlers::{Effects, Failure};
use crate::notify::SmokeyMessage;
use crate::rules::merge::{self as rules, AfterMergeError, PullCheck};
use crate::store::{ClaimRecord, ClaimState};

/// How long a delivery waits for another one that holds the same claim (the merge of the
/// same PR, the announcement of the same opened PR).
pub(super) const WAIT_FOR_HOLDER: Duration = Duration::from_secs(5);

/// How often, and how far apart, a union-merged pull request is read until GitHub marks it
/// merged (GitHub notices a head that reached the base branch within moments).
const MARKED_MERGED_READS: u32 = 5;
const MARKED_MERGED_WAIT: Duration = Duration::from_millis(400);

/// One delivery's part in merging one pull request at one approved commit.
pub(super) struct Merging<'a> {
    pub(super) prs: &'a Effects,
    pub(super) claim: ClaimHandle<'a>,
    pub(super) sha: &'a str,
    /// The approval (its context and sender), for the record.
    pub(super) approval: &'a StatusEvent,
}

/// What the first step of a merge leads to.
enum Step {
    /// On to this state.
    Next(ClaimState),
    /// Done: the claim's final state, and the answer.
    End(ClaimState, String),
}

/// How the merge itself ended.
enum MergeEnd {
    /// Merged: the merge commit, and whether the relay built it with the union driver.
    Merged { sha: String, union: bool },
    Refused {
        outcome: HistoryOutcome,
        reason: String,
    },
}

impl Merging<'_> {
    pub(super) async fn run(&self, read: PullRequest) -> Result<String, Failure> {
        let taken = self.claim.take_or_wait(WAIT_FOR_HOLDER).await?;
        // A place in the outbox for the Merged line, given out as the merge is recorded.
        let mut place = None;
        let result = self.merge_once(taken, read, &mut place).await;
        crate::handlers::give_back_place(self.prs, place).await;
        result
    }

    async fn merge_once(
        &self,
        taken: Taken,
        read: PullRequest,
        place: &mut Option<u64>,
    ) -> Result<String, Failure> {
        let number = read.number;
        let (mut held, pr, fresh_claim) = match taken {
            Taken::Won(held) => (held, read, true),
            // Taken over, or our own redelivery: what GitHub says now, not what was read
            // before the claim, decides.
            Taken::Mine(held) => {
                let fresh = read_pull(self.prs, number).await;
                match fresh {
                    Ok(pr) => (held, pr, false),
                    Err(failure) => {
                        self.claim.release(&held).await;
                        return Err(failure);
                    }
                }
            }
            Taken::Finished(held) => return Ok(finished(number, &held)),
            Taken::Busy(held) => {
                return Err(Failure::transient(format!(
                    "The merge of #{number} is under way in delivery {}; redeliver if it does \
                     not finish",
                    held.owner
                )));
            }
        };
        let result = self.steps(&mut held, &pr, fresh_claim, place).await;
        if result.is_err() && !held.state.is_final() {
            self.claim.release(&held).await;
        }
        result
    }

    /// Carries the claim from its state to the end, one step at a time. `place`: where the
    /// Merged line goes in the outbox, taken when it is said.
    async fn steps(
        &self,
        held: &mut ClaimRecord,
        pr: &PullRequest,
        fresh_claim: bool,
        place: &mut Option<u64>,
    ) -> Result<String, Failure> {
        loop {
            let next = match held.state {
                ClaimState::Claimed | ClaimState::Failed => {
                    match self.merge_step(pr, fresh_claim, place).await? {
                        Step::Next(state) => state,
                        Step::End(state, answer) => {
                            self.advance(held, state).await?;
                            return Ok(answer);
                        }
                    }
                }
                ClaimState::Merged => {
                    self.announce(held, pr, place.take()).await?;
                    continue;
                }
                ClaimState::Announced => {
                    self.delete_branch(pr).await?;
                    ClaimState::BranchDeleted
                }
                _ => return Ok(finished(pr.number, held)),
            };
            self.advance(held, next).await?;
            if next == ClaimState::BranchDeleted {
                return Ok(format!(
                    "Merged #{} and deleted {}",
                    pr.number, pr.head.name
                ));
            }
        }
    }

    /// The first step: merge, or find it merged, or decide against it (recorded, and said
    /// when GitHub refused).
    async fn merge_step(
        &self,
        pr: &PullRequest,
        fresh_claim: bool,
        place: &mut Option<u64>,
    ) -> Result<Step, Failure> {
        let prs = self.prs;
        let stream = pull_stream(pr.number);
        let record = |outcome, detail| prs.record(&stream, self.claim.me, outcome, detail);
        // Recorded merged, with a place in the outbox for saying so.
        let merged = |detail| async {
            let reserve = async { Ok(prs.store.reserve_place().await?) };
            let ((), reserved) = tokio::try_join!(record(HistoryOutcome::Merged, detail), reserve)?;
            Ok::<_, Failure>(reserved)
        };
        match rules::check_pull(pr, self.sha, &prs.config) {
            PullCheck::AlreadyMerged if fresh_claim => {
                // Nobody of ours had tried: someone merged it by hand.
                let answer = format!("#{} is merged already; nothing to do", pr.number);
                Ok(Step::End(ClaimState::MergedElsewhere, answer))
            }
            PullCheck::AlreadyMerged => {
                // An earlier holder's merge went through before it could say so.
                *place = Some(merged(json!({ "merge_sha": null, "found_merged": true })).await?);
                Ok(Step::Next(ClaimState::Merged))
            }
            PullCheck::Refuse(reason) => {
                let detail = json!({ "sha": self.sha, "reason": reason });
                record(HistoryOutcome::NotMerged, detail).await?;
                Ok(Step::End(ClaimState::Refused, reason))
            }
            PullCheck::Merge => match self.merge(pr).await? {
                MergeEnd::Merged { sha, union } => {
                    let detail = json!({ "merge_sha": sha, "branch": pr.head.name,
                        "union": union, "pinned": self.sha, "context": self.approval.context,
                        "approved_by": self.approval.sender_login() });
                    *place = Some(merged(detail).await?);
                    Ok(Step::Next(ClaimState::Merged))
                }
                MergeEnd::Refused { outcome, reason } => {
                    let refused = outcome == HistoryOutcome::Refused;
                    let detail = json!({ "sha": self.sha, "reason": reason });
                    record(outcome, detail).await?;
                    if !refused {
                        return Ok(Step::End(ClaimState::Refused, reason));
                    }
                    // Said before the claim is final: a failed message is said again by
                    // the redelivery, which asks GitHub again.
                    prs.say(rules::not_merged_message(pr, &reason)).await?;
                    let answer = format!("GitHub would not merge #{}: {reason}", pr.number);
                    Ok(Step::End(ClaimState::Refused, answer))
                }
            },
        }
    }

    async fn advance(&self, held: &mut ClaimRecord, state: ClaimState) -> Result<(), Failure> {
        self.claim.step(held, state).await
    }

    /// Says the pull request was merged and moves the claim on to announced while the
    /// keys' cursors move; at `place` in the outbox, or a new one.
    async fn announce(
        &self,
        held: &mut ClaimRecord,
        pr: &PullRequest,
        place: Option<u64>,
    ) -> Result<(), Failure> {
        let store = &self.prs.store;
        let place = match place {
            Some(place) => place,
            None => store.reserve_place().await?,
        };
        let message = SmokeyMessage::Chat(rules::merged_message(pr));
        let now = self.prs.clock.now();
        store
            .put_outbox_entry(place, &message.to_json(), now)
            .await?;
        let notifier = self.prs.notifier.as_ref();
        self.claim
            .step_when_told(held, ClaimState::Announced, notifier, place, &message)
            .await
            .map(|_| ())
    }

    /// The merge request, pinned to the approved commit, with GitHub's refusals sorted out;
    /// a pull request GitHub cannot merge is merged with the union driver instead.
    async fn merge(&self, pr: &PullRequest) -> Result<MergeEnd, Failure> {
        let prs = self.prs;
        if rules::reads_unmergeable(pr) {
            return self.union_merge(pr).await;
        }
        let title = rules::merge_title(pr, &prs.config);
        let (mut tries, mut server_errors) = (0, 0);
        loop {
            let error = match prs.github.merge(pr.number, &title, self.sha).await {
                Ok(merged) => {
                    return Ok(MergeEnd::Merged {
                        sha: merged.sha,
                        union: false,
                    });
                }
                Err(error) => error,
            };
            if error.is_transient() {
                server_errors += 1;
            }
            match rules::after_merge_error(&error, tries, server_errors) {
                AfterMergeError::HeadMoved => {
                    return Ok(MergeEnd::Refused {
                        outcome: HistoryOutcome::HeadMoved,
                        reason: format!("#{} head moved since the approval; not merged", pr.number),
                    });
                }
                AfterMergeError::RetryAfter(wait) => {
                    tries += 1;
                    tokio::time::sleep(wait).await;
                }
                AfterMergeError::NotMergeable => return self.union_merge(pr).await,
                AfterMergeError::Refused(reason) => {
                    return Ok(MergeEnd::Refused {
                        outcome: HistoryOutcome::Refused,
                        reason,
                    });
                }
                AfterMergeError::Reread => {
                    let reread = read_pull(prs, pr.number).await?;
                    match rules::check_pull(&reread, self.sha, &prs.config) {
                        PullCheck::AlreadyMerged => {
                            return Ok(MergeEnd::Merged {
                                sha: "(unknown: GitHub answered 5xx)".into(),
                                union: false,
                            });
                        }
                        PullCheck::Refuse(reason) => {
                            return Ok(MergeEnd::Refused {
                                outcome: HistoryOutcome::NotMerged,
                                reason,
                            });
                        }
                        PullCheck::Merge => {
                            let wait = error.retry_after.unwrap_or(Duration::from_millis(500));
                            tokio::time::sleep(wait.min(Duration::from_secs(2))).await;
                        }
                    }
                }
                AfterMergeError::GiveUp => {
                    return Err(Failure::transient(format!(
                        "merging #{} failed and may be retried by a redelivery: {error}",
                        pr.number
                    )));
                }
            }
        }
    }

    /// Builds the merge commit with the union driver and moves the base branch to it, then
    /// waits for GitHub to mark the pull request merged: its branch is deleted only then,
    /// since deleting it first would close the pull request unmerged.
    async fn union_merge(&self, pr: &PullRequest) -> Result<MergeEnd, Failure> {
        let sha = match union_merge::union_merge(self.prs, pr, self.sha).await? {
            UnionEnd::Refused(reason) => {
                return Ok(MergeEnd::Refused {
                    outcome: HistoryOutcome::Refused,
                    reason,
                });
            }
            UnionEnd::Merged(sha) => sha,
        };
        for _ in 0..MARKED_MERGED_READS {
            if read_pull(self.prs, pr.number).await?.merged {
                return Ok(MergeEnd::Merged { sha, union: true });
            }
            tokio::time::sleep(MARKED_MERGED_WAIT).await;
        }
        Err(Failure::transient(format!(
            "#{} is in {} as {sha}, but GitHub has not marked it merged yet; a redelivery \
             announces it and deletes its branch",
            pr.number, self.prs.config.source_branch
        )))
    }

    /// Deletes the head branch; one that is gone already counts as deleted.
    async fn delete_branch(&self, pr: &PullRequest) -> Result<(), Failure> {
        let prs = self.prs;
        let deleted = prs
            .retry
            .run("delete head branch", || {
                prs.github.delete_branch(&pr.head.name)
            })
            .await;
        let stream = pull_stream(pr.number);
        match deleted {
            Ok(()) => {
                prs.record(
                    &stream,
                    self.claim.me,
                    HistoryOutcome::BranchDeleted,
                    json!({ "branch": pr.head.name }),
                )
                .await
            }
            Err(e)
                if e.is(http::StatusCode::UNPROCESSABLE_ENTITY)
                    || e.is(http::StatusCode::NOT_FOUND) =>
            {
                prs.record(
                    &stream,
                    self.claim.me,
                    HistoryOutcome::BranchDeleted,
                    json!({ "branch": pr.head.name, "already_gone": true }),
                )
                .await
            }
            Err(e) => {
                prs.record(
                    &stream,
                    self.claim.me,
                    HistoryOutcome::BranchNotDeleted,
                    json!({ "branch": pr.head.name, "error": e.to_string() }),
                )
                .await?;
                Err(Failure::transient(format!(
                    "merged and announced #{}, but {} was not deleted ({e}); a redelivery \
                     finishes it",
                    pr.number, pr.head.name
                )))
            }
        }
    }
}

/// The answer for a merge whose claim has nothing left to do.
pub(super) fn finished(number: u64, held: &ClaimRecord) -> String {
    match held.state {
        ClaimState::Refused => format!(
            "#{number} was refused already (delivery {}); not merging",
            held.owner
        ),
        ClaimState::MergedElsewhere => format!("#{number} is merged already; nothing to do"),
        _ => format!("#{number} was merged by delivery {}", held.owner),
    }
}

/// A pull request as GitHub reads it now.
pub(super) async fn read_pull(prs: &Effects, number: u64) -> Result<PullRequest, Failure> {
    prs.retry
        .run("read pull request", || prs.github.pull_request(number))
        .await
        .map_err(|e| crate::handlers::github_failure(format!("could not read #{number}"), &e))
}
