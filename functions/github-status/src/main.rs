//! `github-status`: `POST /github/status_hook`, GitHub `status` events.

use build_relay::{config, handlers::webhook, logging, setup};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    logging::init();
    let hook = config::or_exit(setup::status_hook().await);
    webhook::run_on_lambda(hook).await
}
