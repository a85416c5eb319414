//! `ws-message`: the WebSocket API's `$default` route.

use build_relay::handlers::ws::{self, SocketRoute};
use build_relay::{config, logging, setup};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    logging::init();
    let sockets = config::or_exit(setup::sockets().await);
    ws::run_on_lambda(sockets, SocketRoute::Message).await
}
