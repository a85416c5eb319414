//! `github-pull-request`: `POST /github/pull_request_hook` (GitHub `pull_request` events)
//! and `POST /github/pr_merge` (GitHub `status` events carrying PullApprove's approval).

use build_relay::{config, handlers::webhook, logging, setup};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    logging::init();
    let routes = config::or_exit(setup::pull_request_routes().await);
    webhook::run_on_lambda(routes).await
}
