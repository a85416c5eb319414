//! Cold start: settings read and clients built once, for the function binaries.
//!
//! The SDK configuration comes from the standard chain (region, credentials, endpoint
//! overrides such as `AWS_ENDPOINT_URL_DYNAMODB`). Credentials resolve at the first call,
//! and Secrets Manager is asked only for settings given by ARN, so a local configuration
//! waits on no network at start.

use std::sync::Arc;

use crate::broadcast::{Broadcaster, ManagementApi};
use crate::config::{self, ConfigError, ProcessEnv, RelayConfig, Tables};
use crate::github::GitHub;
use crate::github::octocrab_client::OctocrabGitHub;
use crate::github::retry::RetryPolicy;
use crate::handlers::keepalive::Keepalive;
use crate::handlers::pull_request::{PrMerge, PullRequestHook, PullRequestRoutes, PullRequests};
use crate::handlers::push::PushHook;
use crate::handlers::status::StatusHook;
use crate::handlers::webhook::Webhook;
use crate::handlers::ws::Sockets;
use crate::secrets::{self, SecretReader};
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

/// GitHub through octocrab with the configured credentials, which the functions require.
pub async fn github(
    reader: &SecretReader<'_>,
    relay: &RelayConfig,
) -> Result<Arc<dyn GitHub>, ConfigError> {
    let credentials = reader
        .github_credentials()
        .await?
        .ok_or(ConfigError::Missing {
            name: "GITHUB_TOKEN",
            what: "GitHub credentials: GITHUB_TOKEN or GITHUB_TOKEN_ARN, or GITHUB_APP_ID with \
               GITHUB_APP_PRIVATE_KEY(_ARN) and GITHUB_APP_INSTALLATION_ID",
        })?;
    let api_url = secrets::github_api_url(&ProcessEnv);
    Ok(Arc::new(OctocrabGitHub::new(
        &api_url,
        Some(&credentials),
        &relay.repository,
    )?))
}

/// What every webhook function shares: its settings, secrets, store and notifier.
struct WebhookParts {
    relay: RelayConfig,
    secrets: crate::config::WebhookSecrets,
    store: Arc<dyn Store>,
    broadcaster: Broadcaster,
    sdk: aws_config::SdkConfig,
}

async fn webhook_parts() -> Result<WebhookParts, ConfigError> {
    let relay = RelayConfig::from_source(&ProcessEnv)?;
    let sdk = sdk_config().await;
    let secrets = SecretReader::new(&ProcessEnv, &sdk)
        .webhook_secrets()
        .await?;
    let store = store(&sdk)?;
    let broadcaster = broadcaster(&sdk, Arc::clone(&store))?;
    Ok(WebhookParts {
        relay,
        secrets,
        store,
        broadcaster,
        sdk,
    })
}

pub async fn status_hook() -> Result<Webhook<StatusHook>, ConfigError> {
    let parts = webhook_parts().await?;
    let route = StatusHook {
        config: parts.relay,
        store: Arc::clone(&parts.store),
        notifier: Arc::new(parts.broadcaster),
    };
    Ok(Webhook::new(route, parts.secrets, parts.store))
}

pub async fn push_hook() -> Result<Webhook<PushHook>, ConfigError> {
    let parts = webhook_parts().await?;
    let github = github(&SecretReader::new(&ProcessEnv, &parts.sdk), &parts.relay).await?;
    let route = PushHook {
        config: parts.relay,
        store: Arc::clone(&parts.store),
        notifier: Arc::new(parts.broadcaster),
        github,
        retry: RetryPolicy::default(),
    };
    Ok(Webhook::new(route, parts.secrets, parts.store))
}

pub async fn pull_request_routes() -> Result<PullRequestRoutes, ConfigError> {
    let parts = webhook_parts().await?;
    let github = github(&SecretReader::new(&ProcessEnv, &parts.sdk), &parts.relay).await?;
    let shared = Arc::new(PullRequests {
        config: parts.relay,
        store: Arc::clone(&parts.store),
        notifier: Arc::new(parts.broadcaster),
        github,
        retry: RetryPolicy::default(),
    });
    Ok(PullRequestRoutes {
        hook: Webhook::new(
            PullRequestHook(Arc::clone(&shared)),
            parts.secrets.clone(),
            Arc::clone(&parts.store),
        ),
        merge: Webhook::new(PrMerge(shared), parts.secrets, parts.store),
    })
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
