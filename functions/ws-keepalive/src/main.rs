//! `ws-keepalive`: run once a minute by a schedule; pings every connection each
//! `PING_INTERVAL_SECONDS` until the next run takes over.

use std::time::Duration;

use build_relay::{config, logging, setup};
use lambda_runtime::{LambdaEvent, service_fn};

/// The schedule's period.
const WINDOW: Duration = Duration::from_secs(60);

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    logging::init();
    let keepalive = &config::or_exit(setup::keepalive().await);
    lambda_runtime::run(service_fn(|_: LambdaEvent<serde_json::Value>| async move {
        Ok::<_, lambda_runtime::Error>(keepalive.run_for(WINDOW).await)
    }))
    .await
}
