//! `status-page`: `GET /status` and `GET /status.json`, the chain at a glance for
//! operators, behind the operator token.

use build_relay::{config, logging, setup};

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    logging::init();
    let page = config::or_exit(setup::status_page().await);
    page.run_on_lambda().await
}
