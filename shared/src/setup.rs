//! Cold start for the function binaries: the environment and secrets to a `Relay`, and
//! from it the one part each function runs. Settings are read and clients built once.
//!
//! The SDK configuration comes from the environment Lambda gives a function (`aws`);
//! relay-local builds its own `Relay` from the SDK's whole chain. Nothing waits on the
//! network at start: Secrets Manager is asked only for settings given by ARN.

use std::sync::Arc;

use aws_types::SdkConfig;

use crate::aws;
use crate::broadcast::{Broadcaster, ManagementApi};
use crate::clock;
use crate::config::{self, ConfigError, ProcessEnv, RelayConfig, Tables, WebhookSecrets};
use crate::github::GitHub;
use crate::github::octocrab_client::OctocrabGitHub;
use crate::github::retry::RetryPolicy;
use crate::handlers::keepalive::ScheduledRun;
use crate::handlers::pull_request::PullRequestRoutes;
use crate::handlers::push::PushHook;
use crate::handlers::reconcile::Reconcile;
use crate::handlers::status::StatusHook;
use crate::handlers::webhook::Webhook;
use crate::handlers::ws::Sockets;
use crate::notify::{NoSmokeys, Notifier};
use crate::overview::StatusPage;
use crate::relay::Relay;
use crate::secrets::{self, SecretReader};
use crate::store::Store;
use crate::store::dynamodb::DynamoStore;

/// The DynamoDB store named by `TABLE_NAME` and `CONNECTIONS_TABLE`.
pub fn store(sdk: &SdkConfig) -> Result<Arc<dyn Store>, ConfigError> {
    let tables = Tables::from_source(&ProcessEnv)?;
    let mut config = aws_sdk_dynamodb::config::Builder::from(sdk);
    if let Some(endpoint) = aws::service_endpoint(&ProcessEnv, "DYNAMODB") {
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

/// What a function does, and so which pieces its cold start reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Takes webhooks and tells Smokeys: the webhook secrets and `WEBSOCKET_ENDPOINT`.
    Webhooks,
    /// Tells Smokeys, takes no webhook: `WEBSOCKET_ENDPOINT`.
    TellsSmokeys,
    /// Reads the records only (the status page): neither.
    ReadsOnly,
}

/// One function's cold start: its SDK configuration, secrets and the relay's pieces.
struct ColdStart {
    sdk: SdkConfig,
    relay: Relay,
    /// For the kinds that tell Smokeys.
    broadcaster: Option<Broadcaster>,
}

impl ColdStart {
    /// The relay's pieces for a function of `kind`.
    async fn new(kind: Kind) -> Result<Self, ConfigError> {
        let sdk = aws::sdk_config(&ProcessEnv);
        let store = store(&sdk)?;
        let secrets = match kind {
            Kind::Webhooks => {
                SecretReader::new(&ProcessEnv, &sdk)
                    .webhook_secrets()
                    .await?
            }
            Kind::TellsSmokeys | Kind::ReadsOnly => WebhookSecrets::none(),
        };
        let broadcaster = match kind {
            Kind::Webhooks | Kind::TellsSmokeys => Some(broadcaster(&sdk, Arc::clone(&store))?),
            Kind::ReadsOnly => None,
        };
        let notifier: Arc<dyn Notifier> = match &broadcaster {
            Some(broadcaster) => Arc::new(broadcaster.clone()),
            None => Arc::new(NoSmokeys),
        };
        let relay = Relay {
            config: RelayConfig::from_source(&ProcessEnv)?,
            secrets,
            store,
            notifier,
            clock: clock::system(),
            retry: RetryPolicy::default(),
        };
        Ok(Self {
            sdk,
            relay,
            broadcaster,
        })
    }

    fn secrets(&self) -> SecretReader<'_> {
        SecretReader::new(&ProcessEnv, &self.sdk)
    }

    async fn github(&self) -> Result<Arc<dyn GitHub>, ConfigError> {
        github(&self.secrets(), &self.relay.config).await
    }

    fn broadcaster(&self) -> &Broadcaster {
        self.broadcaster
            .as_ref()
            .expect("the parts that tell Smokeys are built by a kind that does")
    }
}

/// `github-status`'s route.
pub async fn status_hook() -> Result<Webhook<StatusHook>, ConfigError> {
    let start = ColdStart::new(Kind::Webhooks).await?;
    Ok(start.relay.status_hook(start.github().await?))
}

/// `github-push`'s route.
pub async fn push_hook() -> Result<Webhook<PushHook>, ConfigError> {
    let start = ColdStart::new(Kind::Webhooks).await?;
    Ok(start.relay.push_hook(start.github().await?))
}

/// `github-pull-request`'s two routes.
pub async fn pull_request_routes() -> Result<PullRequestRoutes, ConfigError> {
    let start = ColdStart::new(Kind::Webhooks).await?;
    Ok(start.relay.pull_request_routes(start.github().await?))
}

/// `status-page`'s page: the store (read only), the token, `STATUS_PUBLIC`, `BOT_LOGIN`.
pub async fn status_page() -> Result<StatusPage, ConfigError> {
    let start = ColdStart::new(Kind::ReadsOnly).await?;
    let token = start.secrets().status_token().await?;
    let public = config::status_public(&ProcessEnv)?;
    Ok(start.relay.status_page(token, public))
}

/// `reconcile`'s pass (it takes no webhooks).
pub async fn reconcile() -> Result<Reconcile, ConfigError> {
    let start = ColdStart::new(Kind::TellsSmokeys).await?;
    let stall_after_seconds = config::stall_alert(&ProcessEnv)?;
    Ok(start
        .relay
        .reconcile(start.github().await?, stall_after_seconds))
}

/// The WebSocket routes' handlers.
pub async fn sockets() -> Result<Sockets, ConfigError> {
    let start = ColdStart::new(Kind::TellsSmokeys).await?;
    let replay_window = config::replay_window(&ProcessEnv)?;
    Ok(start.relay.sockets(start.broadcaster(), replay_window))
}

/// `ws-keepalive`'s scheduled run: the pings and, when configured, the bridge.
pub async fn scheduled_run() -> Result<ScheduledRun, ConfigError> {
    let interval = config::ping_interval(&ProcessEnv)?;
    let window = config::keepalive_window(&ProcessEnv)?;
    let overlap = config::bridge_overlap(&ProcessEnv)?;
    let start = ColdStart::new(Kind::TellsSmokeys).await?;
    let key = start.secrets().metasmoke_key().await?;
    let broadcaster = start.broadcaster();
    let bridge = config::bridge(&ProcessEnv, key)?
        .map(|config| start.relay.bridge(broadcaster, config, Default::default()));
    Ok(ScheduledRun {
        keepalive: start.relay.keepalive(broadcaster, interval),
        window,
        bridge,
        overlap,
    })
}
