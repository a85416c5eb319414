//! `github-push`: deploy follows master (DESIGN §4, "Push").

use std::time::Duration;

use async_trait::async_trait;
use http::StatusCode;
use serde_json::{Value, json};

use super::Effects;
use super::Failure;
use super::claims::{self, ClaimHandle, Taken};
use super::webhook::{Plan, Route};
use crate::domain::{DEPLOY_HISTORY, HistoryOutcome};
use crate::github::payloads::{self, PushEvent};
use crate::notify::SmokeyMessage;
use crate::rules::push::{self as rules, DeployHead, PushPlan};
use crate::rules::status::StatusDecision;
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
            PushPlan::MoveDeploy { sha } => self.move_deploy_once(&claim, &what, sha, &work).await,
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
enum MoveEnd {
    /// Deploy is at the commit.
    Arrived(Arrival),
    /// Nothing more to do (deploy diverged: reported); the answer.
    Ended(String),
}

/// How deploy came to be at the commit.
enum Arrival {
    /// Deploy was fast-forwarded to it.
    Moved,
    /// Deploy had it already; `tell`: an earlier attempt of this move may have moved it
    /// and died before telling the Smokeys, so they are told now.
    AlreadyContained { tell: bool },
}

impl PushHook {
    /// Moves deploy to `sha` under the claim `deploy-move/<sha>`, in two steps: the move
    /// with its `deploy_updated` (the claim then `announced`, or `done` when the commit's
    /// recorded results do not decide it), and the verdict on the commit (`done`). A
    /// delivery that takes over an announced claim only judges, so a crash after the
    /// message sends it again only if it fell before that record.
    async fn move_deploy_once(
        &self,
        claim: &ClaimHandle<'_>,
        what: &str,
        sha: &str,
        work: &PushWork,
    ) -> Result<String, Failure> {
        // The claim, and at the same time a place in the outbox for deploy_updated.
        let (taken, place) = tokio::try_join!(
            claim.take_or_wait(WAIT_FOR_HOLDER),
            self.0.store.reserve_place()
        )?;
        let fresh = matches!(taken, Taken::Won(_));
        let mut held = match taken {
            Taken::Won(held) | Taken::Mine(held) => held,
            Taken::Finished(held) => {
                super::give_back_place(&self.0, Some(place)).await;
                return Ok(format!(
                    "{what}: done already by delivery {}; nothing to do",
                    held.owner
                ));
            }
            Taken::Busy(held) => {
                super::give_back_place(&self.0, Some(place)).await;
                return Err(Failure::transient(format!(
                    "{what}: under way in delivery {}; redeliver if it does not finish",
                    held.owner
                )));
            }
        };
        let result = self
            .move_and_judge(claim, &mut held, sha, work, fresh, place)
            .await;
        match &result {
            Ok(_) if held.state != ClaimState::Done => {
                claim.step(&mut held, ClaimState::Done).await?
            }
            Ok(_) => {}
            Err(_) => claim.release(&held).await,
        }
        result
    }

    /// `fresh`: the claim was new, so no earlier attempt can have moved deploy. `place`:
    /// where `deploy_updated` goes in the outbox. The delivery is the claim's.
    async fn move_and_judge(
        &self,
        claim: &ClaimHandle<'_>,
        held: &mut ClaimRecord,
        sha: &str,
        work: &PushWork,
        fresh: bool,
        place: u64,
    ) -> Result<String, Failure> {
        let delivery_id = claim.me;
        if held.state == ClaimState::Announced {
            super::give_back_place(&self.0, Some(place)).await;
            let verdict = self.judge_deployed(delivery_id, sha, work).await?;
            return Ok(format!(
                "{} was moved to {sha} and Smokeys told before; {verdict}",
                self.0.config.deploy_branch
            ));
        }
        match self.move_deploy(delivery_id, sha, fresh).await? {
            MoveEnd::Ended(answer) => {
                super::give_back_place(&self.0, Some(place)).await;
                Ok(answer)
            }
            MoveEnd::Arrived(arrival) => self.arrive(claim, held, sha, work, arrival, place).await,
        }
    }

    async fn move_deploy(
        &self,
        delivery_id: &str,
        sha: &str,
        fresh: bool,
    ) -> Result<MoveEnd, Failure> {
        let deploy = &self.0.config.deploy_branch;
        let moved = self
            .0
            .retry
            .run("fast-forward deploy", || {
                self.0.github.fast_forward(deploy, sha)
            })
            .await;
        match moved {
            Ok(()) => Ok(MoveEnd::Arrived(Arrival::Moved)),
            Err(e) if e.is(StatusCode::UNPROCESSABLE_ENTITY) => {
                self.refused_fast_forward(delivery_id, sha, fresh).await
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

    /// Deploy is at `sha`. At once: the relay's deploy mark, the history entry,
    /// `deploy_updated` in the outbox at `place` (when the Smokeys are to be told) and a
    /// read of the commit's recorded results (after the move, so that a result recorded
    /// meanwhile is either read here or finds the move). Then the Smokeys are told, the
    /// claim moving on as they are, and the verdict sent if the results decided the commit.
    async fn arrive(
        &self,
        claim: &ClaimHandle<'_>,
        held: &mut ClaimRecord,
        sha: &str,
        work: &PushWork,
        arrival: Arrival,
        place: u64,
    ) -> Result<String, Failure> {
        let (deploy, delivery_id) = (&self.0.config.deploy_branch, claim.me);
        let (outcome, detail, tell, done) = match arrival {
            Arrival::Moved => (
                HistoryOutcome::Moved,
                json!({ "from_push": work.push.before, "to": sha, "message": work
                    .push
                    .head_commit
                    .as_ref()
                    .and_then(|c| c.message.lines().next()) }),
                true,
                format!("Moved {deploy} to {sha}"),
            ),
            Arrival::AlreadyContained { tell: true } => (
                HistoryOutcome::AlreadyContained,
                json!({ "to": sha }),
                true,
                format!("{deploy} already contains {sha}, maybe moved by an earlier attempt"),
            ),
            Arrival::AlreadyContained { tell: false } => (
                HistoryOutcome::AlreadyContained,
                json!({ "to": sha }),
                false,
                format!("{deploy} already contains {sha}"),
            ),
        };
        let message = match tell {
            true => Some(self.deploy_updated(work)?),
            false => None,
        };
        let now = self.0.clock.now();
        let entry = async {
            match &message {
                Some(message) => {
                    let text = message.to_json();
                    Ok(self.0.store.put_outbox_entry(place, &text, now).await?)
                }
                None => Ok(()),
            }
        };
        let results = async { Ok(self.0.store.latest_statuses(sha).await?) };
        let ((), (), (), latest) = tokio::try_join!(
            self.mark_deployed(delivery_id, sha),
            self.record(delivery_id, outcome, detail),
            entry,
            results,
        )?;
        let decision = crate::rules::status::decide_recorded(&latest, &self.0.config);
        let next = match decision {
            StatusDecision::Undecided(_) => ClaimState::Done,
            StatusDecision::Decided(_) => ClaimState::Announced,
        };
        let done = match message {
            Some(message) => {
                let notifier = self.0.notifier.as_ref();
                let sent = claim
                    .step_when_told(held, next, notifier, place, &message)
                    .await?;
                format!("{done}; told {sent} connection(s)")
            }
            None => {
                super::give_back_place(&self.0, Some(place)).await;
                claim.step(held, next).await?;
                done
            }
        };
        let commit_message = work.push.head_commit.as_ref().map(|c| c.message.clone());
        let verdict =
            super::verdict::judge_recorded(&self.0, delivery_id, sha, commit_message, decision)
                .await?;
        Ok(format!("{done}; {verdict}"))
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
        fresh: bool,
    ) -> Result<MoveEnd, Failure> {
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
            return Ok(MoveEnd::Arrived(Arrival::AlreadyContained { tell: !fresh }));
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
        .map(MoveEnd::Ended)
    }

    /// `deploy_updated` with the push payload.
    fn deploy_updated(&self, work: &PushWork) -> Result<SmokeyMessage, Failure> {
        let whole: Value = serde_json::from_slice(&work.body)
            .map_err(|e| Failure::Permanent(format!("push payload unreadable: {e}")))?;
        Ok(SmokeyMessage::DeployUpdated(rules::deploy_updated_payload(
            &whole,
        )))
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
            Some(&crate::store::recent::DEPLOY_MOVES),
        )
        .await
    }
}
