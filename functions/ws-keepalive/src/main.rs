//! `ws-keepalive`: run once a minute by a schedule; pings every connection each
//! `PING_INTERVAL_SECONDS` until the next run takes over, and holds the metasmoke bridge
//! when `METASMOKE_WS_URL` is set.

use build_relay::config;
use build_relay::handlers::keepalive::ScheduledEvent;
use build_relay::{logging, setup};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    logging::init();
    let run = &config::or_exit(setup::scheduled_run().await);
    lambda_runtime::run(service_fn(|_: LambdaEvent<ScheduledEvent>| async move {
        Ok::<_, lambda_runtime::Error>(run.run().await)
    }))
    .await
}
