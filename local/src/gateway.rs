//! The gateway: binds, wires the handlers to routes, and runs the keepalive.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use build_relay::broadcast::{Broadcaster, ManagementApi};
use build_relay::config::{RelayConfig, WebhookSecrets};
use build_relay::github::GitHub;
use build_relay::github::retry::RetryPolicy;
use build_relay::handlers::keepalive::Keepalive;
use build_relay::handlers::pull_request::{
    PrMerge, PullRequestHook, PullRequestRoutes, PullRequests,
};
use build_relay::handlers::push::PushHook;
use build_relay::handlers::status::StatusHook;
use build_relay::handlers::webhook::{Endpoint, Webhook};
use build_relay::handlers::ws::Sockets;
use build_relay::intake::MAX_BODY_BYTES;
use build_relay::keys;
use build_relay::store::Store;
use http::{HeaderMap, StatusCode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::peers::Peers;
use crate::{cable_socket, management};

pub struct GatewayOptions {
    pub listen: SocketAddr,
    pub store: Arc<dyn Store>,
    pub relay: RelayConfig,
    pub secrets: WebhookSecrets,
    pub ping_interval: Duration,
    /// Client keys to install at start, `(name, key)`; a stored key of the same name is replaced.
    pub client_keys: Vec<(String, String)>,
    /// GitHub as the push and pull-request routes see it (octocrab, or a dry run).
    pub github: Arc<dyn GitHub>,
    /// Added to every @connections post, to stand in for API Gateway's latency in
    /// benchmarks; zero otherwise.
    pub post_latency: Duration,
}

/// What the routes share.
pub struct App {
    pub peers: Peers,
    pub post_latency: Duration,
    pub sockets: Sockets,
    pub status: Webhook<StatusHook>,
    pub push: Webhook<PushHook>,
    pub pulls: PullRequestRoutes,
}

/// A gateway that is serving.
pub struct Running {
    pub addr: SocketAddr,
    pub store: Arc<dyn Store>,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
    keepalive: JoinHandle<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("client key {name:?} from RELAY_CLIENT_KEYS: {source}")]
    ClientKey {
        name: String,
        source: keys::KeyError,
    },
    #[error(transparent)]
    Store(#[from] build_relay::store::StoreError),
}

pub struct Gateway;

impl Gateway {
    pub async fn start(options: GatewayOptions) -> Result<Running, StartError> {
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(|source| StartError::Bind {
                addr: options.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Bind {
            addr: options.listen,
            source,
        })?;
        let store = options.store;
        install_client_keys(store.as_ref(), &options.client_keys).await?;

        // The handlers post through the real SDK client, to this very gateway.
        let api = Arc::new(ManagementApi::local(&format!("http://{addr}")));
        let broadcaster = Broadcaster::new(Arc::clone(&store), api.clone());
        let notifier = Arc::new(broadcaster.clone());
        let status = StatusHook {
            config: options.relay.clone(),
            store: Arc::clone(&store),
            notifier: notifier.clone(),
        };
        let push = PushHook {
            config: options.relay.clone(),
            store: Arc::clone(&store),
            notifier: notifier.clone(),
            github: Arc::clone(&options.github),
            retry: RetryPolicy::default(),
        };
        let pulls = Arc::new(PullRequests {
            config: options.relay,
            store: Arc::clone(&store),
            notifier,
            github: options.github,
            retry: RetryPolicy::default(),
        });
        let secrets = options.secrets;
        let app = Arc::new(App {
            peers: Peers::default(),
            post_latency: options.post_latency,
            sockets: Sockets {
                store: Arc::clone(&store),
                api,
            },
            status: Webhook::new(status, secrets.clone(), Arc::clone(&store)),
            push: Webhook::new(push, secrets.clone(), Arc::clone(&store)),
            pulls: PullRequestRoutes {
                hook: Webhook::new(
                    PullRequestHook(Arc::clone(&pulls)),
                    secrets.clone(),
                    Arc::clone(&store),
                ),
                merge: Webhook::new(PrMerge(pulls), secrets, Arc::clone(&store)),
            },
        });

        let router = Router::new()
            .route("/", get(index))
            .route("/github/status_hook", post(status_hook))
            .route("/github/update_deploy_to_master", post(push_hook))
            .route("/github/pull_request_hook", post(pull_requests))
            .route("/github/pr_merge", post(pull_requests))
            .route("/cable", get(cable_socket::upgrade))
            .route(
                "/@connections/{id}",
                post(management::post)
                    .get(management::describe)
                    .delete(management::close),
            )
            .fallback(not_found)
            .layer(DefaultBodyLimit::max(MAX_BODY_BYTES + 64 * 1024))
            .with_state(app);

        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                router.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
        });
        let keepalive = Keepalive {
            broadcaster,
            interval: options.ping_interval,
        };
        let keepalive = tokio::spawn(async move { keepalive.run_forever().await });
        tracing::info!(%addr, "relay-local serving");
        Ok(Running {
            addr,
            store,
            shutdown,
            server,
            keepalive,
        })
    }
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// What Smokey's `metasmoke_ws_host` should be.
    pub fn cable_url(&self) -> String {
        format!("ws://{}/cable", self.addr)
    }

    /// Stops accepting, lets requests in flight finish, and stops the pings.
    pub async fn stop(self) {
        self.keepalive.abort();
        let _ = self.shutdown.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.server).await;
    }

    /// Serves until the server fails or the process is interrupted (Ctrl-C).
    pub async fn until_interrupted(mut self) -> std::io::Result<()> {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {
                tracing::info!("interrupted; stopping");
                self.stop().await;
                Ok(())
            }
            result = &mut self.server => {
                self.keepalive.abort();
                result.unwrap_or_else(|e| Err(std::io::Error::other(e)))
            }
        }
    }
}

async fn install_client_keys(
    store: &dyn Store,
    client_keys: &[(String, String)],
) -> Result<(), StartError> {
    for (name, key) in client_keys {
        store.revoke_client_key(name).await?;
        keys::add(store, name, key, build_relay::clock::now())
            .await
            .map_err(|source| StartError::ClientKey {
                name: name.clone(),
                source,
            })?;
    }
    Ok(())
}

async fn serve(
    endpoint: &dyn Endpoint,
    uri: &http::Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    endpoint
        .serve(uri.path(), headers, body.to_vec())
        .await
        .into_http()
        .into_response()
}

async fn status_hook(
    State(app): State<Arc<App>>,
    uri: http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&app.status, &uri, &headers, body).await
}

async fn push_hook(
    State(app): State<Arc<App>>,
    uri: http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&app.push, &uri, &headers, body).await
}

async fn pull_requests(
    State(app): State<Arc<App>>,
    uri: http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    serve(&app.pulls, &uri, &headers, body).await
}

async fn index() -> &'static str {
    "relay-local: build-relay on one machine\n\
     POST /github/status_hook          GitHub status webhooks (CI results)\n\
     POST /github/update_deploy_to_master  GitHub push webhooks\n\
     POST /github/pull_request_hook    GitHub pull_request webhooks\n\
     POST /github/pr_merge             GitHub status webhooks (PullApprove approvals)\n\
     GET  /cable                       WebSocket for SmokeDetector (ActionCable)\n\
     POST|GET|DELETE /@connections/ID  API Gateway Management API\n"
}

/// What API Gateway answers for a route it does not have.
async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        [("content-type", "application/json")],
        r#"{"message":"Not Found"}"#,
    )
        .into_response()
}
