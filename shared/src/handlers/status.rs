//! `github-status`: CI results, from statuses and from GitHub Actions and checks (DESIGN §4,
//! "Status" and "GitHub Actions").

use async_trait::async_trait;
use serde::de::DeserializeOwned;

use super::Effects;
use super::Failure;
use super::webhook::{Plan, Route};
use crate::github::payloads::{
    self, CheckRunEvent, CheckSuiteEvent, Repository, StatusEvent, WorkflowRunEvent,
};
use crate::rules::checks::{self, CiResult};
use crate::rules::status::{self as rules, Report};
use crate::store::StatusWrite;

/// `POST /github/status_hook` and `POST /github/check_hook`: `status`, `workflow_run`,
/// `check_run` and `check_suite` events decide commits.
pub struct StatusHook(pub Effects);

/// A CI result to record, as its event reported it.
pub enum CiEvent {
    /// A commit status.
    Status(StatusEvent),
    /// A completed workflow run, check run or check suite.
    Check(CiResult),
}

impl CiEvent {
    /// The result as recorded and judged, for the delivery that brought it.
    pub fn report(self, delivery_id: &str, deploy_branch: &str) -> Report {
        match self {
            Self::Status(status) => rules::report_of_status(&status, delivery_id, deploy_branch),
            Self::Check(result) => result.into_report(delivery_id),
        }
    }
}

#[async_trait]
impl Route for StatusHook {
    type Work = CiEvent;
    const NAME: &'static str = "status_hook";
    const EVENTS: &'static [&'static str] = &["status", "workflow_run", "check_run", "check_suite"];

    fn plan(&self, event: &str, body: &[u8]) -> Result<Plan<CiEvent>, String> {
        match event {
            "workflow_run" => self.plan_check::<WorkflowRunEvent>(
                event,
                body,
                |e| (&e.repository, &e.action),
                checks::from_workflow_run,
            ),
            "check_run" => self.plan_check::<CheckRunEvent>(
                event,
                body,
                |e| (&e.repository, &e.action),
                checks::from_check_run,
            ),
            "check_suite" => self.plan_check::<CheckSuiteEvent>(
                event,
                body,
                |e| (&e.repository, &e.action),
                checks::from_check_suite,
            ),
            _ => {
                let status: StatusEvent = payloads::parse(event, body)?;
                Ok(match self.screen(&status.repository, "Status") {
                    Err(reason) => Plan::Ignore(reason),
                    Ok(()) => Plan::Act {
                        repository: status.repository.full_name.clone(),
                        work: CiEvent::Status(status),
                    },
                })
            }
        }
    }

    async fn act(&self, delivery_id: &str, event: CiEvent) -> Result<String, Failure> {
        let report = event.report(delivery_id, &self.0.config.deploy_branch);
        let (write, prepared) = tokio::try_join!(
            async { Ok(super::record_result(self.0.store.as_ref(), &report.record).await?) },
            super::verdict::prepare(&self.0, &report),
        )?;
        let decision = super::verdict::judge(&self.0, delivery_id, &report, prepared).await?;
        Ok(match write {
            StatusWrite::Applied => decision,
            StatusWrite::Stale => {
                format!("{decision} (an older update: the stored newer one stands)")
            }
        })
    }
}

impl StatusHook {
    /// Whether a payload is about the configured repository; `Err` is the reason to ignore it.
    fn screen(&self, repository: &Repository, what: &str) -> Result<(), String> {
        match self.0.config.is_our_repository(&repository.full_name) {
            true => Ok(()),
            false => Err(format!(
                "{what} for {}, not {}; not interested",
                repository.full_name, self.0.config.repository
            )),
        }
    }

    /// Plans an Actions or checks event: a completed result of our repository is recorded;
    /// anything else (requested, in progress, a conclusion GitHub added later) is ignored.
    fn plan_check<E: DeserializeOwned>(
        &self,
        event: &str,
        body: &[u8],
        about: fn(&E) -> (&Repository, &String),
        result_of: fn(&E) -> Option<CiResult>,
    ) -> Result<Plan<CiEvent>, String> {
        let payload: E = payloads::parse(event, body)?;
        let (repository, action) = about(&payload);
        if let Err(reason) = self.screen(repository, event) {
            return Ok(Plan::Ignore(reason));
        }
        Ok(match result_of(&payload) {
            Some(result) => Plan::Act {
                repository: repository.full_name.clone(),
                work: CiEvent::Check(result),
            },
            None => Plan::Ignore(format!(
                "A {event} {action} event with no conclusion that decides or is recorded; \
                 nothing to do"
            )),
        })
    }
}
