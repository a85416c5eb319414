//! `ws-message`: the WebSocket API's `$default` route.

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use build_relay::{config, logging, setup};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    logging::init();
    let sockets = &config::or_exit(setup::sockets().await);
    lambda_runtime::run(service_fn(
        |event: LambdaEvent<ApiGatewayWebsocketProxyRequest>| async move {
            Ok::<_, lambda_runtime::Error>(sockets.message(event.payload).await)
        },
    ))
    .await
}
