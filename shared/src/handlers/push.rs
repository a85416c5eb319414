//! `github-push`: deploy follows master (DESIGN §4, "Push").

use std::time::Duration;

use async_trait::async_trait;
use http::StatusCode;
use serde_json::{Value, json};

use super::Effects;
use super::claims::{self, ClaimHandle, Taken};
use super::webhook::{Failure, Plan, Route};
use crate::domain::HistoryOutcome;
use crate::github::payloads::{self, PushEvent};
use crate::notify::SmokeyMessage;
use crate::rules::push::{self as rules, DeployHead, PushPlan};
use crate::store::{ClaimRecord, ClaimState};

/// `POST /github/update_deploy_to_master`: `push` events.
pub struct PushHook(pub Effects);

/// How long a delivery waits for another one doing the same push's work.
const WAIT_FOR_HOLDER: Duration = Duration::from_secs(5);

/// What a push asks for, with the payload to relay.
pub struct PushWork {
    plan: PushPlan,
    push: PushEvent,
    /// The delivery's body, relayed to Smokey when deploy moves.
    body: Vec<u8>,
}

/// The deploy history's stream name.
pub const DEPLOY_HISTORY: &str = "deploy";

#[async_trait]
impl Route for PushHook {
    type Work = PushWork;
    const NAME: &'static str = "update_deploy_to_master";
    const EVENTS: &'static [&'static str] = &["push"];

    fn plan(&self, event: &str, body: &[u8]) -> Result<Plan<PushWork>, String> {
        let push: PushEvent = payloads::parse(event, body)?;
        match rules::plan(&push, &self.0.config) {
            PushPlan::Ignore(reason) => Ok(Plan::Ignore(reason)),
            plan => Ok(Plan::Act {
                repository: push.repository.full_name.clone(),
                work: PushWork {
                    plan,
                    push,
                    body: body.to_vec(),
                },
            }),
        }
    }

    /// A push's work is done once per commit it names, however often the push is
    /// delivered or replayed under a new delivery id: no second ref update, `deploy_updated`
    /// or report.
    async fn act(&self, delivery_id: &str, work: PushWork) -> Result<String, Failure> {
        let (key, what) = match &work.plan {
            PushPlan::MoveDeploy { sha } => (
                format!("deploy-move/{sha}"),
                format!("Moving {} to {sha}", self.0.config.deploy_branch),
            ),
            PushPlan::CheckDeploy { sha } => (
                format!("deploy-check/{sha}"),
                format!(
                    "Checking the push of {sha} to {}",
                    self.0.config.deploy_branch
                ),
            ),
            PushPlan::Ignore(reason) => return Ok(reason.clone()),
        };
        let claim = ClaimHandle::new(
            self.0.store.as_ref(),
            self.0.clock.as_ref(),
            key,
            delivery_id,
        );
        match &work.plan {
            PushPlan::MoveDeploy { sha } => {
                self.move_deploy_once(&claim, &what, delivery_id, sha, &work)
                    .await
            }
            PushPlan::CheckDeploy { sha } => {
                claims::once(&claim, WAIT_FOR_HOLDER, &what, || {
                    self.check_deploy(delivery_id, sha, &work)
                })
                .await
            }
            PushPlan::Ignore(reason) => Ok(reason.clone()),
        }
    }
}

/// Where a move of deploy got to.
enum Moved {
    /// Deploy is at the commit (moved there and `deploy_updated` sent, or it had it
    /// already); the commit's recorded results are to be judged.
    Deployed(String),
    /// Nothing more to do (deploy diverged: reported).
    Ended(String),
}

impl PushHook {
    /// Moves deploy to `sha` under the claim `deploy-move/<sha>`, in two steps: the move
    /// with its `deploy_updated` (the claim then `announced`), and the verdict on the
    /// commit (`done`). A delivery that takes over an announced claim only judges, so a
    /// crash after the message sends it again only if it fell before that record.
    async fn move_deploy_once(
        &self,
        claim: &ClaimHandle<'_>,
        what: &str,
        delivery_id: &str,
        sha: &str,
        work: &PushWork,
    ) -> Result<String, Failure> {
        let taken = claim.take_or_wait(WAIT_FOR_HOLDER).await?;
        let fresh = matches!(taken, Taken::Won(_));
        let mut held = match taken {
            Taken::Won(held) | Taken::Mine(held) => held,
            Taken::Finished(held) => {
                return Ok(format!(
                    "{what}: done already by delivery {}; nothing to do",
                    held.owner
                ));
            }
            Taken::Busy(held) => {
                return Err(Failure::transient(format!(
                    "{what}: under way in delivery {}; redeliver if it does not finish",
                    held.owner
                )));
            }
        };
        let result = self
            .move_and_judge(claim, &mut held, delivery_id, sha, work, fresh)
            .await;
        match &result {
            Ok(_) => claim.step(&mut held, ClaimState::Done).await?,
            Err(_) => claim.release(&held).await,
        }
        result
    }

    /// `fresh`: the claim was new, so no earlier attempt can have moved deploy.
    async fn move_and_judge(
        &self,
        claim: &ClaimHandle<'_>,
        held: &mut ClaimRecord,
        delivery_id: &str,
        sha: &str,
        work: &PushWork,
        fresh: bool,
    ) -> Result<String, Failure> {
        let moved = if held.state == ClaimState::Announced {
            format!(
                "{} was moved to {sha} and Smokeys told before",
                self.0.config.deploy_branch
            )
        } else {
            match self.move_deploy(delivery_id, sha, work, fresh).await? {
                Moved::Ended(answer) => return Ok(answer),
                Moved::Deployed(moved) => {
                    claim.step(held, ClaimState::Announced).await?;
                    moved
                }
            }
        };
        let verdict = self.judge_deployed(delivery_id, sha, work).await?;
        Ok(format!("{moved}; {verdict}"))
    }

    async fn move_deploy(
        &self,
        delivery_id: &str,
        sha: &str,
        work: &PushWork,
        fresh: bool,
    ) -> Result<Moved, Failure> {
        let deploy = &self.0.config.deploy_branch;
        let moved = self
            .0
            .retry
            .run("fast-forward deploy", || {
                self.0.github.fast_forward(deploy, sha)
            })
            .await;
        match moved {
            Ok(()) => {
                self.mark_deployed(delivery_id, sha).await?;
                self.record(
                    delivery_id,
                    HistoryOutcome::Moved,
                    json!({ "from_push": work.push.before, "to": sha, "message": work
                        .push
                        .head_commit
                        .as_ref()
                        .and_then(|c| c.message.lines().next()) }),
                )
                .await?;
                let sent = self.announce(work).await?;
                Ok(Moved::Deployed(format!(
                    "Moved {deploy} to {sha}; told {sent} connection(s)"
                )))
            }
            Err(e) if e.is(StatusCode::UNPROCESSABLE_ENTITY) => {
                self.refused_fast_forward(delivery_id, sha, work, fresh)
                    .await
            }
            Err(e) => {
                self.record(
                    delivery_id,
                    HistoryOutcome::Failed,
                    json!({ "to": sha, "error": e.to_string() }),
                )
                .await?;
                Err(super::github_failure(
                    format!("could not move {deploy} to {sha}"),
                    &e,
                ))
            }
        }
    }

    /// GitHub refused the fast-forward: either deploy already has the commit (a late or
    /// repeated push), or deploy has commits master lacks.
    ///
    /// An earlier attempt of this move (`fresh` false) may have moved deploy and died
    /// before telling the Smokeys: then "already contains" is told as a move.
    async fn refused_fast_forward(
        &self,
        delivery_id: &str,
        sha: &str,
        work: &PushWork,
        fresh: bool,
    ) -> Result<Moved, Failure> {
        let deploy = &self.0.config.deploy_branch;
        let compared = self
            .0
            .retry
            .run("compare", || self.0.github.compare(sha, deploy))
            .await;
        let comparison = match compared {
            Ok(comparison) => comparison,
            Err(e) => {
                let failure = super::github_failure(
                    format!("{deploy} was not moved to {sha}, and comparing them failed"),
                    &e,
                );
                if let Failure::Permanent(reason) = &failure {
                    // GitHub does not know the commit: no redelivery changes that.
                    self.record(
                        delivery_id,
                        HistoryOutcome::UnknownCommit,
                        json!({ "to": sha, "reason": reason }),
                    )
                    .await?;
                }
                return Err(failure);
            }
        };
        if comparison.head_contains_base() {
            self.mark_deployed(delivery_id, sha).await?;
            self.record(
                delivery_id,
                HistoryOutcome::AlreadyContained,
                json!({ "to": sha }),
            )
            .await?;
            if fresh {
                return Ok(Moved::Deployed(format!("{deploy} already contains {sha}")));
            }
            let sent = self.announce(work).await?;
            return Ok(Moved::Deployed(format!(
                "{deploy} already contains {sha}, maybe moved by an earlier attempt; told {sent} connection(s)"
            )));
        }
        let cause = format!("{deploy} has diverged from {}", self.0.config.source_branch);
        self.report(
            delivery_id,
            HistoryOutcome::Diverged,
            &cause,
            sha,
            &comparison,
        )
        .await
        .map(Moved::Ended)
    }

    /// Sends `deploy_updated` with the push payload; how many connections took it.
    async fn announce(&self, work: &PushWork) -> Result<usize, Failure> {
        let whole: Value = serde_json::from_slice(&work.body)
            .map_err(|e| Failure::Permanent(format!("push payload unreadable: {e}")))?;
        let payload = rules::deploy_updated_payload(&whole);
        super::say(
            self.0.notifier.as_ref(),
            SmokeyMessage::DeployUpdated(payload),
        )
        .await
    }

    /// A push to deploy itself: fine when the relay put it there or master has it.
    async fn check_deploy(
        &self,
        delivery_id: &str,
        sha: &str,
        work: &PushWork,
    ) -> Result<String, Failure> {
        if self.0.store.is_deployed(sha).await? {
            return Ok(format!(
                "{} is at {sha}, where the relay moved it",
                self.0.config.deploy_branch
            ));
        }
        let source = &self.0.config.source_branch;
        let comparison = self
            .0
            .retry
            .run("compare", || self.0.github.compare(source, sha))
            .await
            .map_err(|e| {
                super::github_failure(format!("could not compare {source} with {sha}"), &e)
            })?;
        if rules::judge_deploy_head(&comparison) == DeployHead::OnSource {
            self.mark_deployed(delivery_id, sha).await?;
            let verdict = self.judge_deployed(delivery_id, sha, work).await?;
            return Ok(format!(
                "{} is at {sha}, which is on {source}; {verdict}",
                self.0.config.deploy_branch
            ));
        }
        let cause = format!(
            "a commit was pushed to {} directly",
            self.0.config.deploy_branch
        );
        self.report(
            delivery_id,
            HistoryOutcome::StrayCommit,
            &cause,
            sha,
            &comparison,
        )
        .await
    }

    /// Records a divergence (or stray commit) of deploy and tells the chat rooms which
    /// commits deploy has that the source branch lacks, with the fix.
    pub(crate) async fn report(
        &self,
        delivery_id: &str,
        outcome: HistoryOutcome,
        cause: &str,
        sha: &str,
        comparison: &crate::github::Comparison,
    ) -> Result<String, Failure> {
        let commits: Vec<&str> = comparison.commits.iter().map(|c| c.sha.as_str()).collect();
        self.record(
            delivery_id,
            outcome,
            json!({ "to": sha, "extra_commits": commits }),
        )
        .await?;
        let message = rules::divergence_message(
            &self.0.config,
            cause,
            &comparison.commits,
            comparison.ahead_by,
        );
        super::say(self.0.notifier.as_ref(), SmokeyMessage::Chat(message)).await?;
        Ok(format!(
            "{cause}; reported {} commit(s), nothing forced",
            comparison.ahead_by
        ))
    }

    /// Decides the commit deploy is now at from the CI results recorded before it got there
    /// (a redelivery after a failure here comes back through "already contains").
    async fn judge_deployed(
        &self,
        delivery_id: &str,
        sha: &str,
        work: &PushWork,
    ) -> Result<String, Failure> {
        let message = work.push.head_commit.as_ref().map(|c| c.message.clone());
        super::verdict::judge_deployed(&self.0, delivery_id, sha, message).await
    }

    /// Notes that deploy is at `sha` with the relay's knowledge (statuses then count).
    async fn mark_deployed(&self, delivery_id: &str, sha: &str) -> Result<(), Failure> {
        let now = self.0.clock.now();
        Ok(self.0.store.mark_deployed(sha, delivery_id, now).await?)
    }

    async fn record(
        &self,
        delivery_id: &str,
        outcome: HistoryOutcome,
        detail: Value,
    ) -> Result<(), Failure> {
        super::record_history(
            self.0.store.as_ref(),
            self.0.clock.now(),
            DEPLOY_HISTORY,
            delivery_id,
            outcome,
            detail,
            Some(&crate::overview::DEPLOY_MOVES),
        )
        .await
    }
}
