//! `ws-keepalive`: run once a minute by a schedule; pings every connection each
//! `PING_INTERVAL_SECONDS` until the next run takes over.

use build_relay::config::{self, ProcessEnv};
use build_relay::handlers::keepalive::ScheduledEvent;
use build_relay::{logging, setup};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    logging::init();
    let window = config::or_exit(config::keepalive_window(&ProcessEnv));
    let keepalive = &config::or_exit(setup::keepalive().await);
    lambda_runtime::run(service_fn(|_: LambdaEvent<ScheduledEvent>| async move {
        Ok::<_, lambda_runtime::Error>(keepalive.run_for(window).await)
    }))
    .await
}
