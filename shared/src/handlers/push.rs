//! `github-push`: deploy follows master (DESIGN §4, "Push").

use std::sync::Arc;

use async_trait::async_trait;
use http::StatusCode;
use serde_json::{Value, json};

use super::webhook::{Plan, Route, Transient};
use crate::config::RelayConfig;
use crate::github::GitHub;
use crate::github::payloads::{self, PushEvent};
use crate::github::retry::RetryPolicy;
use crate::notify::{Notifier, SmokeyMessage};
use crate::rules::push::{self as rules, PushPlan};
use crate::store::Store;

pub struct PushHook {
    pub config: RelayConfig,
    pub store: Arc<dyn Store>,
    pub notifier: Arc<dyn Notifier>,
    pub github: Arc<dyn GitHub>,
    pub retry: RetryPolicy,
}

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
        match rules::plan(&push, &self.config) {
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

    async fn act(&self, delivery_id: &str, work: PushWork) -> Result<String, Transient> {
        match &work.plan {
            PushPlan::MoveDeploy { sha } => self.move_deploy(delivery_id, sha, &work).await,
            PushPlan::CheckDeploy { sha } => self.check_deploy(delivery_id, sha).await,
            PushPlan::Ignore(reason) => Ok(reason.clone()),
        }
    }
}

impl PushHook {
    async fn move_deploy(
        &self,
        delivery_id: &str,
        sha: &str,
        work: &PushWork,
    ) -> Result<String, Transient> {
        let deploy = &self.config.deploy_branch;
        let moved = self
            .retry
            .run("fast-forward deploy", || {
                self.github.fast_forward(deploy, sha)
            })
            .await;
        match moved {
            Ok(()) => {
                self.store
                    .mark_deployed(sha, delivery_id, crate::clock::now())
                    .await?;
                self.record(
                    delivery_id,
                    "moved",
                    json!({ "from_push": work.push.before, "to": sha }),
                )
                .await?;
                let whole: Value = serde_json::from_slice(&work.body)
                    .map_err(|e| Transient(format!("push payload unreadable: {e}")))?;
                let payload = rules::deploy_updated_payload(&whole);
                let reach = self
                    .notifier
                    .notify(&SmokeyMessage::DeployUpdated(payload))
                    .await
                    .map_err(|e| {
                        Transient(format!(
                            "deploy moved to {sha}, but deploy_updated not sent: {e}"
                        ))
                    })?;
                Ok(format!(
                    "Moved {deploy} to {sha}; told {} connection(s)",
                    reach.sent
                ))
            }
            Err(e) if e.is(StatusCode::UNPROCESSABLE_ENTITY) => {
                self.refused_fast_forward(delivery_id, sha).await
            }
            Err(e) => {
                self.record(
                    delivery_id,
                    "failed",
                    json!({ "to": sha, "error": e.to_string() }),
                )
                .await?;
                Err(Transient(format!("could not move {deploy} to {sha}: {e}")))
            }
        }
    }

    /// GitHub refused the fast-forward: either deploy already has the commit (a late or
    /// repeated push), or deploy has commits master lacks.
    async fn refused_fast_forward(
        &self,
        delivery_id: &str,
        sha: &str,
    ) -> Result<String, Transient> {
        let deploy = &self.config.deploy_branch;
        let comparison = self
            .retry
            .run("compare", || self.github.compare(sha, deploy))
            .await
            .map_err(|e| Transient(format!("fast-forward refused and compare failed: {e}")))?;
        if comparison.head_contains_base() {
            self.store
                .mark_deployed(sha, delivery_id, crate::clock::now())
                .await?;
            self.record(delivery_id, "already-contained", json!({ "to": sha }))
                .await?;
            return Ok(format!("{deploy} already contains {sha}; nothing to do"));
        }
        let cause = format!("{deploy} has diverged from {}", self.config.source_branch);
        self.report(delivery_id, "diverged", &cause, sha, &comparison)
            .await
    }

    /// A push to deploy itself: fine when the relay put it there or master has it.
    async fn check_deploy(&self, delivery_id: &str, sha: &str) -> Result<String, Transient> {
        if self.store.is_deployed(sha).await? {
            return Ok(format!(
                "{} is at {sha}, where the relay moved it",
                self.config.deploy_branch
            ));
        }
        let source = &self.config.source_branch;
        let comparison = self
            .retry
            .run("compare", || self.github.compare(source, sha))
            .await
            .map_err(|e| Transient(format!("could not compare {source} with {sha}: {e}")))?;
        if matches!(comparison.status.as_str(), "identical" | "behind") {
            self.store
                .mark_deployed(sha, delivery_id, crate::clock::now())
                .await?;
            return Ok(format!(
                "{} is at {sha}, which is on {source}",
                self.config.deploy_branch
            ));
        }
        let cause = format!(
            "a commit was pushed to {} directly",
            self.config.deploy_branch
        );
        self.report(delivery_id, "stray-commit", &cause, sha, &comparison)
            .await
    }

    async fn report(
        &self,
        delivery_id: &str,
        outcome: &str,
        cause: &str,
        sha: &str,
        comparison: &crate::github::Comparison,
    ) -> Result<String, Transient> {
        let commits: Vec<&str> = comparison.commits.iter().map(|c| c.sha.as_str()).collect();
        self.record(
            delivery_id,
            outcome,
            json!({ "to": sha, "extra_commits": commits }),
        )
        .await?;
        let message = rules::divergence_message(
            &self.config,
            cause,
            &comparison.commits,
            comparison.ahead_by,
        );
        self.notifier
            .notify(&SmokeyMessage::Chat(message))
            .await
            .map_err(|e| Transient(format!("{cause}, but the report was not sent: {e}")))?;
        Ok(format!(
            "{cause}; reported {} commit(s), nothing forced",
            comparison.ahead_by
        ))
    }

    async fn record(
        &self,
        delivery_id: &str,
        outcome: &str,
        detail: Value,
    ) -> Result<(), Transient> {
        super::record_history(
            self.store.as_ref(),
            DEPLOY_HISTORY,
            delivery_id,
            outcome,
            detail,
        )
        .await
    }
}
