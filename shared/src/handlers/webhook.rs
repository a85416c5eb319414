//! The pipeline every GitHub route shares: intake, a plan without effects, the delivery
//! ledger, the effects, and one log line per delivery.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use http::HeaderMap;

use super::Failure;
use crate::answer::Answer;
use crate::clock::Clock;
use crate::config::WebhookSecrets;
use crate::domain::{HistoryEntry, HistoryOutcome};
use crate::intake;
use crate::store::{DeliveryEnd, DeliveryStart, Ledger, Store};

/// What a route makes of a verified delivery before anything is written.
pub enum Plan<W> {
    /// Not for us (another repository, an ignored action): 200 with the reason.
    Ignore(String),
    /// Carry out `work`.
    Act {
        /// The repository named in the payload, for the log.
        repository: String,
        /// What to do.
        work: W,
    },
}

/// How long a delivery may take before it is answered 503. GitHub waits 10 s at most.
pub const ANSWER_BUDGET: Duration = Duration::from_secs(8);

/// One webhook route: what it takes, how it reads a payload, what it does.
#[async_trait]
pub trait Route: Send + Sync + 'static {
    /// What `plan` hands `act`.
    type Work: Send + 'static;
    /// The name used in logs and the ledger, e.g. `status_hook`.
    const NAME: &'static str;
    /// `X-GitHub-Event` values this route takes (besides `ping`).
    const EVENTS: &'static [&'static str];

    /// Parses and screens a delivery; `Err` is a 400 with the reason. No effects.
    fn plan(&self, event: &str, body: &[u8]) -> Result<Plan<Self::Work>, String>;

    /// Carries out the work. `Ok` is the decision for the answer and the log.
    async fn act(&self, delivery_id: &str, work: Self::Work) -> Result<String, Failure>;
}

/// A route with the secrets, ledger and clock it is served with.
pub struct Webhook<R> {
    /// Shared with the task that carries out each delivery's work.
    pub route: Arc<R>,
    secrets: WebhookSecrets,
    /// The ledger, and the deliveries index the status page reads.
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    budget: Duration,
}

impl<R: Route> Webhook<R> {
    /// Serves `route` with `secrets`, admitting deliveries through the ledger in `store`.
    pub fn new(
        route: R,
        secrets: WebhookSecrets,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            route: Arc::new(route),
            secrets,
            store,
            clock,
            budget: ANSWER_BUDGET,
        }
    }

    /// Handles one HTTP request within the answer budget and logs one line about it.
    pub async fn handle(&self, headers: &HeaderMap, body: Vec<u8>) -> Answer {
        let started = Instant::now();
        let mut trace = Trace::default();
        let answered =
            tokio::time::timeout(self.budget, self.answer(headers, body, &mut trace)).await;
        let answer = answered.unwrap_or_else(|_| {
            // Out of time: an admitted delivery's work goes on in its own task; if the
            // process ends first, the ledger entry's lease and the claims let a redelivery
            // finish what was started.
            trace.outcome = Outcome::TimedOut;
            Answer::unavailable(format!(
                "Not handled within {} s; redeliver later",
                self.budget.as_secs()
            ))
        });
        tracing::info!(
            route = R::NAME,
            event = trace.event.as_deref().unwrap_or("-"),
            delivery = trace.delivery.as_deref().unwrap_or("-"),
            repository = trace.repository.as_deref().unwrap_or("-"),
            decision = %answer.reason,
            outcome = trace.outcome.as_str(),
            status = answer.status.as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "delivery"
        );
        self.index(&trace, &answer, started.elapsed());
        answer
    }

    /// Adds the delivery to the list the status page reads, off the answer's path (on
    /// Lambda the write may finish at the next invocation). Refused requests are not
    /// recorded, like everywhere else.
    fn index(&self, trace: &Trace, answer: &Answer, took: Duration) {
        let (Some(delivery), Some(event)) = (&trace.delivery, &trace.event) else {
            return;
        };
        if trace.outcome == Outcome::Refused {
            return;
        }
        let entry = HistoryEntry {
            at: self.clock.now(),
            delivery_id: delivery.clone(),
            outcome: HistoryOutcome::Event(trace.outcome.as_str().to_string()),
            detail: serde_json::json!({
                "route": R::NAME,
                "event": event,
                "status": answer.status.as_u16(),
                "duration_ms": took.as_secs_f64() * 1000.0,
            }),
        };
        let store = Arc::clone(&self.store);
        tokio::spawn(async move {
            let deliveries = &crate::store::recent::DELIVERIES;
            if let Err(error) = deliveries.note(store.as_ref(), None, &entry).await {
                tracing::warn!(%error, "delivery not added to the status page's list");
            }
        });
    }

    async fn answer(&self, headers: &HeaderMap, body: Vec<u8>, trace: &mut Trace) -> Answer {
        let delivery = match intake::accept(headers, body, &self.secrets) {
            Ok(delivery) => delivery,
            Err(refusal) => {
                trace.outcome = Outcome::Refused;
                return refusal;
            }
        };
        trace.event = Some(delivery.event.clone());
        trace.delivery = Some(delivery.id.clone());
        if delivery.event == "ping" {
            trace.outcome = Outcome::Ignored;
            return Answer::ok("pong");
        }
        if !R::EVENTS.contains(&delivery.event.as_str()) {
            trace.outcome = Outcome::Ignored;
            return Answer::ok(format!(
                "Not interested in {} events on this route",
                delivery.event
            ));
        }
        let (repository, work) = match self.route.plan(&delivery.event, &delivery.body) {
            Err(reason) => {
                trace.outcome = Outcome::Refused;
                return Answer::bad_request(reason);
            }
            Ok(Plan::Ignore(reason)) => {
                trace.outcome = Outcome::Ignored;
                return Answer::ok(reason);
            }
            Ok(Plan::Act { repository, work }) => (repository, work),
        };
        trace.repository = Some(repository);
        if let Some(refusal) = self.admit(&delivery.id, trace).await {
            return refusal;
        }
        // The work runs as a task of its own: when the answer budget runs out, the answer
        // is 503 but the work goes on to the end of its current step and records it, so a
        // budget never cuts a step (a merge, a message) from its record.
        let work = tokio::spawn(carry_out(
            Arc::clone(&self.route),
            Arc::clone(&self.store) as Arc<dyn Ledger>,
            Arc::clone(&self.clock),
            delivery.id.clone(),
            work,
        ));
        let (outcome, answer) = work.await.unwrap_or_else(|panicked| {
            let reason = format!("Not handled, redeliver later: the work failed: {panicked}");
            (Outcome::Failed, Answer::unavailable(reason))
        });
        trace.outcome = outcome;
        answer
    }

    /// Asks the ledger whether this delivery may be carried out here; `Some` is the answer
    /// when it may not.
    async fn admit(&self, id: &str, trace: &mut Trace) -> Option<Answer> {
        match self
            .store
            .begin_delivery(id, R::NAME, self.clock.now())
            .await
        {
            Err(e) => {
                trace.outcome = Outcome::Failed;
                Some(Answer::unavailable(format!(
                    "Delivery ledger unavailable; redeliver later: {e}"
                )))
            }
            Ok(DeliveryStart::AlreadyHandled { outcome }) => {
                trace.outcome = Outcome::Duplicate;
                Some(Answer::ok(format!(
                    "Delivery {} was handled already: {outcome}",
                    id
                )))
            }
            Ok(DeliveryStart::InFlight) => {
                // Not carried out here: a 2xx would tell GitHub it was, and if the other
                // invocation crashed the effect would be lost.
                trace.outcome = Outcome::InFlight;
                Some(Answer::unavailable(format!(
                    "Delivery {} is being handled by another invocation; redeliver later",
                    id
                )))
            }
            Ok(DeliveryStart::Fresh | DeliveryStart::Retry) => None,
        }
    }
}

/// Carries out one admitted delivery's work and records its end in the ledger.
async fn carry_out<R: Route>(
    route: Arc<R>,
    ledger: Arc<dyn Ledger>,
    clock: Arc<dyn Clock>,
    delivery_id: String,
    work: R::Work,
) -> (Outcome, Answer) {
    let (outcome, end, answer) = match route.act(&delivery_id, work).await {
        Ok(decision) => (Outcome::Handled, DeliveryEnd::Handled, Answer::ok(decision)),
        Err(Failure::Permanent(reason)) => (
            Outcome::Unactionable,
            DeliveryEnd::Handled,
            Answer::ok(reason),
        ),
        Err(Failure::Transient(reason)) => {
            let answer = Answer::unavailable(format!("Not handled, redeliver later: {reason}"));
            (Outcome::Failed, DeliveryEnd::Failed, answer)
        }
    };
    let ended = ledger
        .end_delivery(&delivery_id, end, &answer.reason, clock.now())
        .await;
    if let Err(e) = ended {
        // A handled delivery's effects are idempotent, and a failed one's lease lets a
        // redelivery through later: the answer stands either way.
        tracing::warn!(delivery = %delivery_id, error = %e, "could not record the delivery's end");
    }
    (outcome, answer)
}

/// What became of a delivery, as logged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Outcome {
    #[default]
    Refused,
    Ignored,
    Duplicate,
    InFlight,
    Handled,
    /// Handled as far as it can ever be: the reason is the answer.
    Unactionable,
    Failed,
    TimedOut,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Refused => "refused",
            Self::Ignored => "ignored",
            Self::Duplicate => "duplicate",
            Self::InFlight => "in-flight",
            Self::Handled => "handled",
            Self::Unactionable => "unactionable",
            Self::Failed => "failed",
            Self::TimedOut => "timed-out",
        }
    }
}

#[derive(Default)]
struct Trace {
    event: Option<String>,
    delivery: Option<String>,
    repository: Option<String>,
    outcome: Outcome,
}

/// What a function serves: one route, or several told apart by path.
#[async_trait]
pub trait Endpoint: Send + Sync {
    /// Answers one request to `path`.
    async fn serve(&self, path: &str, headers: &HeaderMap, body: Vec<u8>) -> Answer;
}

#[async_trait]
impl<R: Route> Endpoint for Webhook<R> {
    async fn serve(&self, _path: &str, headers: &HeaderMap, body: Vec<u8>) -> Answer {
        self.handle(headers, body).await
    }
}

/// Serves an endpoint on Lambda through `lambda_http` (which decodes base64 bodies).
pub async fn run_on_lambda<E: Endpoint + 'static>(endpoint: E) -> Result<(), lambda_http::Error> {
    let endpoint = Arc::new(endpoint);
    lambda_http::run(lambda_http::service_fn(
        move |request: lambda_http::Request| {
            let endpoint = Arc::clone(&endpoint);
            async move {
                Ok::<_, std::convert::Infallible>(lambda_response(endpoint.as_ref(), request).await)
            }
        },
    ))
    .await
}

/// One Lambda HTTP request through an endpoint; public so tests can drive the Lambda path.
pub async fn lambda_response<E: Endpoint + ?Sized>(
    endpoint: &E,
    request: lambda_http::Request,
) -> lambda_http::Response<lambda_http::Body> {
    let (parts, body) = request.into_parts();
    endpoint
        .serve(parts.uri.path(), &parts.headers, body.to_vec())
        .await
        .into_http()
        .map(lambda_http::Body::from)
}
