//! Cold start: settings read and clients built once, for the function binaries.
//!
//! The SDK configuration comes from the standard chain (region, credentials, endpoint
//! overrides such as `AWS_ENDPOINT_URL_DYNAMODB`). Credentials resolve at the first call,
//! so nothing here waits on the network.

use std::sync::Arc;

use crate::broadcast::{Broadcaster, ManagementApi};
use crate::config::{self, ConfigError, ProcessEnv, RelayConfig, Tables, WebhookSecrets};
use crate::handlers::keepalive::Keepalive;
use crate::handlers::status::StatusHook;
use crate::handlers::webhook::Webhook;
use crate::handlers::ws::Sockets;
use crate::store::Store;
use crate::store::dynamodb::DynamoStore;

pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// The DynamoDB store named by `TABLE_NAME` and `CONNECTIONS_TABLE`.
pub fn store(sdk: &aws_config::SdkConfig) -> Result<Arc<dyn Store>, ConfigError> {
    let tables = Tables::from_source(&ProcessEnv)?;
    Ok(Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::new(sdk),
        tables,
    )))
}

/// The broadcaster posting through `WEBSOCKET_ENDPOINT`.
pub fn broadcaster(
    sdk: &aws_config::SdkConfig,
    store: Arc<dyn Store>,
) -> Result<Broadcaster, ConfigError> {
    let endpoint = config::websocket_endpoint(&ProcessEnv)?;
    Ok(Broadcaster::new(
        store,
        Arc::new(ManagementApi::new(sdk, &endpoint)),
    ))
}

pub async fn status_hook() -> Result<Webhook<StatusHook>, ConfigError> {
    let relay = RelayConfig::from_source(&ProcessEnv)?;
    let secrets = WebhookSecrets::from_source(&ProcessEnv)?;
    let sdk = sdk_config().await;
    let store = store(&sdk)?;
    let notifier = Arc::new(broadcaster(&sdk, Arc::clone(&store))?);
    let route = StatusHook {
        config: relay,
        store: Arc::clone(&store),
        notifier,
    };
    Ok(Webhook::new(route, secrets, store))
}

pub async fn sockets() -> Result<Sockets, ConfigError> {
    let sdk = sdk_config().await;
    let store = store(&sdk)?;
    let api = broadcaster(&sdk, Arc::clone(&store))?.api().clone();
    Ok(Sockets { store, api })
}

pub async fn keepalive() -> Result<Keepalive, ConfigError> {
    let interval = config::ping_interval(&ProcessEnv)?;
    let sdk = sdk_config().await;
    let store = store(&sdk)?;
    Ok(Keepalive {
        broadcaster: broadcaster(&sdk, store)?,
        interval,
    })
}
