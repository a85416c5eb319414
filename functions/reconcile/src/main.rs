//! `reconcile`: run every few minutes by a schedule; heals what lost webhooks left behind
//! and raises stall alerts (one reconcile pass per invocation).

use build_relay::{config, logging, setup};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    logging::init();
    let reconcile = &config::or_exit(setup::reconcile().await);
    lambda_runtime::run(service_fn(|_: LambdaEvent<serde_json::Value>| async move {
        Ok::<_, lambda_runtime::Error>(serde_json::to_value(reconcile.pass().await)?)
    }))
    .await
}
