//! The gateway: binds, wires the handlers to routes, and runs the keepalive.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use build_relay::bridge::Timings;
use build_relay::broadcast::{Broadcaster, ManagementApi};
use build_relay::config::{BridgeConfig, RelayConfig, SocketLimits, WebhookSecrets};
use build_relay::github::GitHub;
use build_relay::github::retry::RetryPolicy;
use build_relay::handlers::webhook::Endpoint;
use build_relay::intake::MAX_BODY_BYTES;
use build_relay::keys;
use build_relay::overview::access::Access;
use build_relay::relay::Relay;
use build_relay::store::Store;
use http::{HeaderMap, StatusCode};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::app::{App, Deliveries, GOING_AWAY, STOPPING};
use crate::peers::Peers;
use crate::{cable_socket, management, server};

pub struct GatewayOptions {
    pub listen: SocketAddr,
    pub store: Arc<dyn Store>,
    pub relay: RelayConfig,
    pub secrets: WebhookSecrets,
    pub ping_interval: Duration,
    /// When a WebSocket client that does not subscribe or stops answering pings is closed
    /// (`WS_SUBSCRIBE_SECONDS`, `WS_PING_SECONDS`, `WS_IDLE_SECONDS`).
    pub socket_limits: SocketLimits,
    /// `REPLAY_WINDOW_SECONDS`: how far back a resubscribing key is sent what it missed.
    pub replay_window: i64,
    /// Client keys to install at start, `(name, key)`; a stored key of the same name is replaced.
    pub client_keys: Vec<(String, String)>,
    /// GitHub as the push and pull-request routes see it (octocrab, or a dry run).
    pub github: Arc<dyn GitHub>,
    /// The metasmoke bridge (`METASMOKE_WS_URL`), run as long as the gateway; `None`: none.
    pub bridge: Option<BridgeConfig>,
    pub bridge_timings: Timings,
    /// Added to every @connections post, to stand in for API Gateway's latency in
    /// benchmarks; zero otherwise.
    pub post_latency: Duration,
    /// `RECONCILE_SECONDS`: a reconcile pass at start and then this often; zero: none.
    pub reconcile_interval: Duration,
    /// `STALL_ALERT_MINUTES`, in seconds.
    pub stall_after_seconds: i64,
    /// Who may read `/status` (`STATUS_TOKEN`, `STATUS_PUBLIC`).
    pub status_access: Access,
}

/// A gateway that is serving.
pub struct Running {
    pub addr: SocketAddr,
    pub store: Arc<dyn Store>,
    app: Arc<App>,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
    /// The keepalive, and the bridge and reconcile passes when configured.
    background: Vec<JoinHandle<()>>,
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
        let bind_error = |source| StartError::Bind {
            addr: options.listen,
            source,
        };
        let listener = tokio::net::TcpListener::bind(options.listen)
            .await
            .map_err(bind_error)?;
        let addr = listener.local_addr().map_err(bind_error)?;
        let store = Arc::clone(&options.store);
        install_client_keys(store.as_ref(), &options.client_keys).await?;

        // The handlers post through the real SDK client, to this very gateway.
        let api = Arc::new(ManagementApi::local(&format!("http://{addr}")));
        let clock = build_relay::clock::system();
        let broadcaster = Broadcaster::new(Arc::clone(&store), api, Arc::clone(&clock));
        let relay = Relay {
            config: options.relay.clone(),
            secrets: options.secrets.clone(),
            store: Arc::clone(&store),
            notifier: Arc::new(broadcaster.clone()),
            clock,
            retry: RetryPolicy::default(),
        };
        let app = Arc::new(App {
            peers: Peers::default(),
            deliveries: Deliveries::default(),
            post_latency: options.post_latency,
            socket_limits: options.socket_limits,
            sockets: relay.sockets(&broadcaster, options.replay_window),
            status: relay.status_hook(Arc::clone(&options.github)),
            push: relay.push_hook(Arc::clone(&options.github)),
            pulls: relay.pull_request_routes(Arc::clone(&options.github)),
            status_page: relay.status_page(
                options.status_access.token.clone(),
                options.status_access.public,
            ),
        });

        let (shutdown, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(server::serve(listener, router(&app), async move {
            let _ = stopped.await;
        }));
        let background = background_tasks(&relay, &broadcaster, options);
        tracing::info!(%addr, "relay-local serving");
        Ok(Running {
            addr,
            store,
            app,
            shutdown,
            server,
            background,
        })
    }
}

/// What runs beside the routes: the keepalive, the bridge when configured, and reconcile
/// passes unless turned off.
fn background_tasks(
    relay: &Relay,
    broadcaster: &Broadcaster,
    options: GatewayOptions,
) -> Vec<JoinHandle<()>> {
    let keepalive = relay.keepalive(broadcaster, options.ping_interval);
    let mut tasks = vec![tokio::spawn(async move { keepalive.run_forever().await })];
    if let Some(config) = options.bridge {
        let bridge = relay.bridge(broadcaster, config, options.bridge_timings);
        tasks.push(tokio::spawn(async move {
            bridge.run(None, None).await;
        }));
    }
    if !options.reconcile_interval.is_zero() {
        let reconcile = relay.reconcile(options.github, options.stall_after_seconds);
        let interval = options.reconcile_interval;
        tasks.push(tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                reconcile.pass().await;
            }
        }));
    }
    tasks
}

/// Every route of the gateway: API Gateway's (webhooks, the WebSocket, @connections) and
/// an index.
fn router(app: &Arc<App>) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/github/status_hook", post(webhook))
        .route("/github/check_hook", post(webhook))
        .route("/github/update_deploy_to_master", post(webhook))
        .route("/github/pull_request_hook", post(webhook))
        .route("/github/pr_merge", post(webhook))
        .route("/cable", get(cable_socket::upgrade))
        .route("/status", get(status_page))
        .route("/status.json", get(status_page))
        .route(
            "/@connections/{id}",
            post(management::post)
                .get(management::describe)
                .delete(management::close),
        )
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES + 64 * 1024))
        .layer(axum::middleware::from_fn(|request, next| {
            server::refuse_oversized(MAX_BODY_BYTES, request, next)
        }))
        .with_state(Arc::clone(app))
}

impl Running {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Bytes of frames waiting to go out to connection `id`; `None` when it is not open.
    pub fn queued(&self, id: &str) -> Option<usize> {
        self.app.peers.queued(id)
    }

    /// How many WebSocket clients the gateway closed, by why (a protocol error, a frame
    /// over 32 KB, a client that does not read, no subscription in time, no answer to
    /// pings).
    pub fn closed_sockets(&self) -> std::collections::BTreeMap<&'static str, u64> {
        self.app.peers.closures()
    }

    /// How many WebSocket connections are open.
    pub fn open_sockets(&self) -> usize {
        self.app.peers.count()
    }

    /// What Smokey's `metasmoke_ws_host` should be.
    pub fn cable_url(&self) -> String {
        format!("ws://{}/cable", self.addr)
    }

    /// Stops gracefully. First nothing new is taken: new webhooks and WebSocket upgrades
    /// get 503, so a client that reconnects at once does not land on a process about to
    /// exit. Then the deliveries in flight finish (their answers and the frames they send:
    /// @connections keeps serving meanwhile), the pings stop, every WebSocket gets what is
    /// queued for it and then a close frame with 1001 "going away", and the server drains.
    pub async fn stop(self) {
        self.app.deliveries.stop_taking();
        self.app.deliveries.drain(server::DRAIN_TIMEOUT).await;
        self.stop_background();
        let closing = self.app.peers.close_all(GOING_AWAY, STOPPING);
        // Let the close frames go out before the runtime ends.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.app.peers.count() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = self.shutdown.send(());
        let _ =
            tokio::time::timeout(server::DRAIN_TIMEOUT + Duration::from_secs(1), self.server).await;
        tracing::info!(closed = closing, "relay-local stopped");
    }

    /// Serves until the server fails or the process is told to stop (SIGTERM, or SIGINT
    /// from Ctrl-C), then stops gracefully.
    pub async fn until_interrupted(mut self) -> std::io::Result<()> {
        tokio::select! {
            signal = stop_signal() => {
                tracing::info!(signal, "stopping");
                self.stop().await;
                Ok(())
            }
            result = &mut self.server => {
                self.stop_background();
                result.unwrap_or_else(|e| Err(std::io::Error::other(e)))
            }
        }
    }

    fn stop_background(&self) {
        for task in &self.background {
            task.abort();
        }
    }
}

/// Resolves with the name of the first stop signal received.
async fn stop_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate()).expect("a SIGTERM handler installs");
        tokio::select! {
            _ = tokio::signal::ctrl_c() => "SIGINT",
            _ = term.recv() => "SIGTERM",
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

async fn install_client_keys(
    store: &dyn Store,
    client_keys: &[(String, String)],
) -> Result<(), StartError> {
    for (name, key) in client_keys {
        // An unchanged key keeps its cursor, so a restart replays what it missed meanwhile.
        if keys::holds(store, name, key).await? {
            continue;
        }
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
    app: &App,
    endpoint: &dyn Endpoint,
    uri: &http::Uri,
    headers: &HeaderMap,
    body: Bytes,
) -> Response {
    let _counted = app.deliveries.begin();
    if app.deliveries.stopping() {
        return build_relay::answer::Answer::unavailable(
            "relay-local is stopping; redeliver later",
        )
        .into_http()
        .into_response();
    }
    endpoint
        .serve(uri.path(), headers, body.to_vec())
        .await
        .into_http()
        .into_response()
}

/// Every webhook route: the path picks the endpoint, as API Gateway's routes pick the
/// function.
async fn webhook(
    State(app): State<Arc<App>>,
    uri: http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let endpoint: &dyn Endpoint = match uri.path() {
        "/github/status_hook" | "/github/check_hook" => &app.status,
        "/github/update_deploy_to_master" => &app.push,
        _ => &app.pulls,
    };
    serve(&app, endpoint, &uri, &headers, body).await
}

async fn index() -> &'static str {
    "relay-local: build-relay on one machine\n\
     POST /github/status_hook          GitHub status, workflow_run, check_run, check_suite webhooks (CI results)\n\
     POST /github/check_hook           the same, for a webhook of its own\n\
     POST /github/update_deploy_to_master  GitHub push webhooks\n\
     POST /github/pull_request_hook    GitHub pull_request webhooks\n\
     POST /github/pr_merge             GitHub status webhooks (PullApprove approvals)\n\
     GET  /cable                       WebSocket for SmokeDetector (ActionCable)\n\
     GET  /status, /status.json        the chain at a glance (STATUS_TOKEN as a bearer, or ?token= once)\n\
     POST|GET|DELETE /@connections/ID  API Gateway Management API\n"
}

/// `GET /status` and `GET /status.json`: the chain at a glance, behind the operator token.
async fn status_page(State(app): State<Arc<App>>, uri: http::Uri, headers: HeaderMap) -> Response {
    let page = app
        .status_page
        .answer(uri.path(), &headers, uri.query())
        .await;
    let mut response = (
        StatusCode::from_u16(page.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        [("content-type", page.content_type)],
        page.body,
    )
        .into_response();
    for (name, value) in page.headers {
        if let Ok(value) = http::HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    response
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
