//! `github-push`: `POST /github/update_deploy_to_master`, GitHub `push` events.

use build_relay::{config, handlers::webhook, logging, setup};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    logging::init();
    let hook = config::or_exit(setup::push_hook().await);
    webhook::run_on_lambda(hook).await
}
