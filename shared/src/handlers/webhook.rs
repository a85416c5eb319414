//! The pipeline every GitHub route shares: intake, a plan without effects, the delivery
//! ledger, the effects, and one log line per delivery.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use http::HeaderMap;

use crate::answer::Answer;
use crate::config::WebhookSecrets;
use crate::intake;
use crate::store::{DeliveryEnd, DeliveryStart, Store};

/// What a route makes of a verified delivery before anything is written.
pub enum Plan<W> {
    /// Not for us (another repository, an ignored action): 200 with the reason.
    Ignore(String),
    Act {
        repository: String,
        work: W,
    },
}

/// A route's effects failed in a way a redelivery may fix (DynamoDB or GitHub down).
#[derive(Debug)]
pub struct Transient(pub String);

impl<E: std::fmt::Display> From<E> for Transient {
    fn from(error: E) -> Self {
        Self(error.to_string())
    }
}

#[async_trait]
pub trait Route: Send + Sync {
    type Work: Send;
    /// The name used in logs and the ledger, e.g. `status_hook`.
    const NAME: &'static str;
    /// `X-GitHub-Event` values this route takes (besides `ping`).
    const EVENTS: &'static [&'static str];

    /// Parses and screens a delivery; `Err` is a 400 with the reason. No effects.
    fn plan(&self, event: &str, body: &[u8]) -> Result<Plan<Self::Work>, String>;

    /// Carries out the work. `Ok` is the decision for the answer and the log.
    async fn act(&self, delivery_id: &str, work: Self::Work) -> Result<String, Transient>;
}

/// A route with the secrets and ledger it is served with.
pub struct Webhook<R> {
    pub route: R,
    secrets: WebhookSecrets,
    ledger: Arc<dyn Store>,
}

impl<R: Route> Webhook<R> {
    pub fn new(route: R, secrets: WebhookSecrets, ledger: Arc<dyn Store>) -> Self {
        Self {
            route,
            secrets,
            ledger,
        }
    }

    /// Handles one HTTP request and logs one line about it.
    pub async fn handle(&self, headers: &HeaderMap, body: Vec<u8>) -> Answer {
        let started = Instant::now();
        let mut trace = Trace::default();
        let answer = self.answer(headers, body, &mut trace).await;
        tracing::info!(
            route = R::NAME,
            event = trace.event.as_deref().unwrap_or("-"),
            delivery = trace.delivery.as_deref().unwrap_or("-"),
            repository = trace.repository.as_deref().unwrap_or("-"),
            decision = %answer.reason,
            outcome = trace.outcome,
            status = answer.status.as_u16(),
            duration_ms = started.elapsed().as_secs_f64() * 1000.0,
            "delivery"
        );
        answer
    }

    async fn answer(&self, headers: &HeaderMap, body: Vec<u8>, trace: &mut Trace) -> Answer {
        let delivery = match intake::accept(headers, body, &self.secrets) {
            Ok(delivery) => delivery,
            Err(refusal) => {
                trace.outcome = "refused";
                return refusal;
            }
        };
        trace.event = Some(delivery.event.clone());
        trace.delivery = Some(delivery.id.clone());
        if delivery.event == "ping" {
            trace.outcome = "ignored";
            return Answer::ok("pong");
        }
        if !R::EVENTS.contains(&delivery.event.as_str()) {
            trace.outcome = "ignored";
            return Answer::ok(format!(
                "Not interested in {} events on this route",
                delivery.event
            ));
        }
        let (repository, work) = match self.route.plan(&delivery.event, &delivery.body) {
            Err(reason) => {
                trace.outcome = "refused";
                return Answer::bad_request(reason);
            }
            Ok(Plan::Ignore(reason)) => {
                trace.outcome = "ignored";
                return Answer::ok(reason);
            }
            Ok(Plan::Act { repository, work }) => (repository, work),
        };
        trace.repository = Some(repository);
        let now = crate::clock::now();
        match self.ledger.begin_delivery(&delivery.id, R::NAME, now).await {
            Err(e) => {
                trace.outcome = "failed";
                return Answer::unavailable(format!(
                    "Delivery ledger unavailable; redeliver later: {e}"
                ));
            }
            Ok(DeliveryStart::AlreadyHandled { outcome }) => {
                trace.outcome = "duplicate";
                return Answer::ok(format!(
                    "Delivery {} was handled already: {outcome}",
                    delivery.id
                ));
            }
            Ok(DeliveryStart::InFlight) => {
                trace.outcome = "duplicate";
                return Answer::accepted(format!(
                    "Delivery {} is being handled by another invocation",
                    delivery.id
                ));
            }
            Ok(DeliveryStart::Fresh | DeliveryStart::Retry) => {}
        }
        match self.route.act(&delivery.id, work).await {
            Ok(decision) => {
                trace.outcome = "handled";
                if let Err(e) = self
                    .ledger
                    .end_delivery(
                        &delivery.id,
                        DeliveryEnd::Handled,
                        &decision,
                        crate::clock::now(),
                    )
                    .await
                {
                    // The effects are done and each is idempotent, so a redelivery would do
                    // no harm; the answer stays a success.
                    tracing::warn!(delivery = %delivery.id, error = %e, "could not mark delivery handled");
                }
                Answer::ok(decision)
            }
            Err(Transient(reason)) => {
                trace.outcome = "failed";
                if let Err(e) = self
                    .ledger
                    .end_delivery(
                        &delivery.id,
                        DeliveryEnd::Failed,
                        &reason,
                        crate::clock::now(),
                    )
                    .await
                {
                    // The lease on the ledger entry lets a redelivery through later anyway.
                    tracing::warn!(delivery = %delivery.id, error = %e, "could not mark delivery failed");
                }
                Answer::unavailable(format!("Not handled, redeliver later: {reason}"))
            }
        }
    }
}

#[derive(Default)]
struct Trace {
    event: Option<String>,
    delivery: Option<String>,
    repository: Option<String>,
    outcome: &'static str,
}

/// What a function serves: one route, or several told apart by path.
#[async_trait]
pub trait Endpoint: Send + Sync {
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
