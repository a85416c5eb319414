//! Cold start: settings read and clients built once, for the function binaries.
//!
//! The SDK configuration comes from the environment Lambda gives a function (region,
//! the role's credentials, endpoint overrides such as `AWS_ENDPOINT_URL_DYNAMODB`);
//! relay-local passes its own, from the SDK's whole chain. Nothing waits on the network at
//! start: Secrets Manager is asked only for settings given by ARN.

use std::sync::Arc;
use std::time::Duration;

use aws_types::SdkConfig;

use crate::bridge::{Bridge, Timings};
use crate::broadcast::{Broadcaster, ManagementApi};
use crate::clock;
use crate::config::{self, ConfigError, ProcessEnv, RelayConfig, Source, Tables};
use crate::github::GitHub;
use crate::github::octocrab_client::OctocrabGitHub;
use crate::github::retry::RetryPolicy;
use crate::handlers::Effects;
use crate::handlers::keepalive::{Keepalive, ScheduledRun};
use crate::handlers::pull_request::PullRequestRoutes;
use crate::handlers::push::PushHook;
use crate::handlers::reconcile::Reconcile;
use crate::handlers::status::StatusHook;
use crate::handlers::webhook::Webhook;
use crate::handlers::ws::Sockets;
use crate::relay::Relay;
use crate::secrets::{self, SecretReader};
use crate::store::Store;
use crate::store::dynamodb::DynamoStore;

/// The AWS SDK's configuration from the environment Lambda gives a function, with
/// `aws_timeouts`: `AWS_REGION` (or `AWS_DEFAULT_REGION`), the role's credentials
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) and `AWS_ENDPOINT_URL`;
/// each client adds its service's own endpoint override (`service_endpoint`). Not the
/// SDK's whole chain (profiles, SSO, web identity): on Lambda the environment holds all of
/// it, and the chain with its STS client is a tenth of each binary and most of its init.
pub fn sdk_config(env: &dyn Source) -> SdkConfig {
    use aws_sdk_dynamodb::config::{
        BehaviorVersion, Credentials, Region, SharedCredentialsProvider,
    };
    let region = env
        .get("AWS_REGION")
        .or_else(|| env.get("AWS_DEFAULT_REGION"));
    let credentials = match (
        env.get("AWS_ACCESS_KEY_ID"),
        env.get("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(id), Some(secret)) => Some(SharedCredentialsProvider::new(Credentials::new(
            id,
            secret,
            env.get("AWS_SESSION_TOKEN"),
            None,
            "environment",
        ))),
        _ => None,
    };
    let mut config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .timeout_config(aws_timeouts());
    config.set_region(region.map(Region::new));
    config.set_credentials_provider(credentials);
    config.set_endpoint_url(env.get("AWS_ENDPOINT_URL"));
    config.build()
}

/// The endpoint override for one service (`AWS_ENDPOINT_URL_DYNAMODB`,
/// `AWS_ENDPOINT_URL_SECRETS_MANAGER`), as the SDK's chain reads it.
pub fn service_endpoint(env: &dyn Source, service: &str) -> Option<String> {
    env.get(&format!("AWS_ENDPOINT_URL_{service}"))
}

/// Timeouts for every AWS call (DynamoDB, @connections, Secrets Manager): without them a
/// server that accepts and never answers holds a delivery for as long as the SDK likes.
/// Inside the 8 s answer budget, with room for a retry.
pub fn aws_timeouts() -> aws_types::sdk_config::TimeoutConfig {
    aws_types::sdk_config::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(4))
        .build()
}

/// The DynamoDB store named by `TABLE_NAME` and `CONNECTIONS_TABLE`.
pub fn store(sdk: &SdkConfig) -> Result<Arc<dyn Store>, ConfigError> {
    let tables = Tables::from_source(&ProcessEnv)?;
    let mut config = aws_sdk_dynamodb::config::Builder::from(sdk);
    if let Some(endpoint) = service_endpoint(&ProcessEnv, "DYNAMODB") {
        config.set_endpoint_url(Some(endpoint));
    }
    let config = config.build();
    Ok(Arc::new(DynamoStore::new(
        aws_sdk_dynamodb::Client::from_conf(config),
        tables,
    )))
}

/// The broadcaster posting through `WEBSOCKET_ENDPOINT`.
pub fn broadcaster(sdk: &SdkConfig, store: Arc<dyn Store>) -> Result<Broadcaster, ConfigError> {
    let endpoint = config::websocket_endpoint(&ProcessEnv)?;
    Ok(Broadcaster::new(
        store,
        Arc::new(ManagementApi::new(sdk, &endpoint)),
        clock::system(),
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
async fn relay(sdk: &SdkConfig) -> Result<Relay, ConfigError> {
    let config = RelayConfig::from_source(&ProcessEnv)?;
    let secrets = SecretReader::new(&ProcessEnv, sdk)
        .webhook_secrets()
        .await?;
    let store = store(sdk)?;
    let notifier = Arc::new(broadcaster(sdk, Arc::clone(&store))?);
    Ok(Relay {
        config,
        secrets,
        store,
        notifier,
        clock: clock::system(),
        retry: RetryPolicy::default(),
    })
}

/// `github-status`'s route.
pub async fn status_hook() -> Result<Webhook<StatusHook>, ConfigError> {
    let sdk = sdk_config(&ProcessEnv);
    let relay = relay(&sdk).await?;
    let github = github(&SecretReader::new(&ProcessEnv, &sdk), &relay.config).await?;
    Ok(relay.status_hook(github))
}

/// `github-push`'s route.
pub async fn push_hook() -> Result<Webhook<PushHook>, ConfigError> {
    let sdk = sdk_config(&ProcessEnv);
    let relay = relay(&sdk).await?;
    let github = github(&SecretReader::new(&ProcessEnv, &sdk), &relay.config).await?;
    Ok(relay.push_hook(github))
}

/// `status-page`'s parts: the store (read only), the token, `STATUS_PUBLIC`, `BOT_LOGIN`.
pub async fn status_page() -> Result<crate::overview::StatusPage, ConfigError> {
    let sdk = sdk_config(&ProcessEnv);
    let token = SecretReader::new(&ProcessEnv, &sdk).status_token().await?;
    Ok(crate::overview::StatusPage {
        store: store(&sdk)?,
        access: config::status_access(&ProcessEnv, token)?,
        bot_login: RelayConfig::from_source(&ProcessEnv)?.bot_login,
        clock: clock::system(),
    })
}

/// `reconcile`'s pass: the webhook routes' parts (no webhook secret: it takes no webhooks).
pub async fn reconcile() -> Result<Reconcile, ConfigError> {
    let sdk = sdk_config(&ProcessEnv);
    let config = RelayConfig::from_source(&ProcessEnv)?;
    let store = store(&sdk)?;
    let notifier = Arc::new(broadcaster(&sdk, Arc::clone(&store))?);
    let github = github(&SecretReader::new(&ProcessEnv, &sdk), &config).await?;
    Ok(Reconcile {
        effects: Arc::new(Effects {
            config,
            store,
            notifier,
            github,
            retry: RetryPolicy::default(),
            clock: clock::system(),
        }),
        stall_after_seconds: config::stall_alert(&ProcessEnv)?,
    })
}

/// `github-pull-request`'s two routes.
pub async fn pull_request_routes() -> Result<PullRequestRoutes, ConfigError> {
    let sdk = sdk_config(&ProcessEnv);
    let relay = relay(&sdk).await?;
    let github = github(&SecretReader::new(&ProcessEnv, &sdk), &relay.config).await?;
    Ok(relay.pull_request_routes(github))
}

/// The WebSocket routes' handlers.
pub async fn sockets() -> Result<Sockets, ConfigError> {
    let sdk = sdk_config(&ProcessEnv);
    Ok(Sockets {
        broadcaster: broadcaster(&sdk, store(&sdk)?)?,
        replay_window: config::replay_window(&ProcessEnv)?,
    })
}

/// `ws-keepalive`'s scheduled run: the pings and, when configured, the bridge.
pub async fn scheduled_run() -> Result<ScheduledRun, ConfigError> {
    let interval = config::ping_interval(&ProcessEnv)?;
    let window = config::keepalive_window(&ProcessEnv)?;
    let overlap = config::bridge_overlap(&ProcessEnv)?;
    let sdk = sdk_config(&ProcessEnv);
    let broadcaster = broadcaster(&sdk, store(&sdk)?)?;
    let key = SecretReader::new(&ProcessEnv, &sdk).metasmoke_key().await?;
    let bridge = config::bridge(&ProcessEnv, key)?.map(|config| Bridge {
        config,
        timings: Timings::default(),
        broadcaster: broadcaster.clone(),
    });
    Ok(ScheduledRun {
        keepalive: Keepalive {
            broadcaster,
            interval,
            clock: clock::system(),
        },
        window,
        bridge,
        overlap,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::config::ProvideCredentials;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Source {
        move |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    }

    #[tokio::test]
    async fn the_sdk_is_configured_from_what_lambda_sets() {
        let lambda = env(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "session"),
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:4566"),
        ]);
        let sdk = sdk_config(&lambda);
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(sdk.endpoint_url(), None);
        let credentials = sdk
            .credentials_provider()
            .expect("credentials from the environment")
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(credentials.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(credentials.secret_access_key(), "secret");
        assert_eq!(credentials.session_token(), Some("session"));
        assert_eq!(
            service_endpoint(&lambda, "DYNAMODB").as_deref(),
            Some("http://127.0.0.1:4566")
        );
        assert_eq!(service_endpoint(&lambda, "SECRETS_MANAGER"), None);
    }

    #[test]
    fn half_a_key_or_blanks_configure_nothing() {
        let sdk = sdk_config(&env(&[
            ("AWS_DEFAULT_REGION", "us-east-2"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", " "),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        ]));
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("us-east-2"));
        assert!(sdk.credentials_provider().is_none());
        assert_eq!(sdk.endpoint_url(), Some("http://127.0.0.1:4566"));
        assert!(sdk_config(&env(&[])).region().is_none());
    }
}
