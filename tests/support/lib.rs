//! What the integration tests share: stores on real servers, failure injection, signing,
//! and the fixtures beside the checkout.

pub mod cable_client;
pub mod fake_github;
pub mod fake_metasmoke;
pub mod fake_repo;
pub mod runtime_api;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use async_trait::async_trait;
use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
use build_relay::config::Tables;
use build_relay::intake;
use build_relay::notify::{Notifier, NotifyError, Reach, SmokeyMessage};
use build_relay::store::dynamodb::{DynamoStore, create_tables};
use build_relay::store::embedded::EmbeddedStore;
use build_relay::store::*;
use http::HeaderMap;

/// Set by `scripts/test.sh` to the moto server it started.
pub const DYNAMODB_ENDPOINT_VAR: &str = "RELAY_TEST_DYNAMODB_ENDPOINT";

/// The DynamoDB-compatible server the tests use. Fails, never skips, when there is none.
pub fn dynamodb_endpoint() -> String {
    std::env::var(DYNAMODB_ENDPOINT_VAR).unwrap_or_else(|_| {
        panic!(
            "{DYNAMODB_ENDPOINT_VAR} is not set: these tests need a DynamoDB-compatible server. \
             Run them with scripts/test.sh, which installs and starts moto_server, or start \
             `moto_server -p PORT` yourself and export {DYNAMODB_ENDPOINT_VAR}=http://127.0.0.1:PORT"
        )
    })
}

pub fn dynamodb_client(endpoint: &str) -> aws_sdk_dynamodb::Client {
    let config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "tests"))
        .endpoint_url(endpoint)
        .build();
    aws_sdk_dynamodb::Client::from_conf(config)
}

/// Table names no other test uses.
pub fn fresh_tables() -> Tables {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let id = format!("{}-{}-{n}", std::process::id(), build_relay::clock::now());
    Tables {
        main: format!("relay-{id}"),
        connections: format!("relay-connections-{id}"),
    }
}

/// A DynamoDB store on moto with tables of its own.
pub async fn moto_store() -> DynamoStore {
    let client = dynamodb_client(&dynamodb_endpoint());
    let tables = fresh_tables();
    create_tables(&client, &tables).await.unwrap_or_else(|e| {
        panic!(
            "could not create tables on moto at {}: {e}",
            dynamodb_endpoint()
        )
    });
    DynamoStore::new(client, tables)
}

/// A DynamoDB store on moto whose requests reach moto one at a time, through
/// `serial_proxy`: moto checks a conditional write's condition and then writes on
/// unlocked threads, so concurrent conditional writes are not atomic on it as they are on
/// DynamoDB. Tests of concurrency use this.
pub async fn serial_moto_store() -> DynamoStore {
    let proxy = serial_proxy(&dynamodb_endpoint()).await;
    let client = dynamodb_client(&proxy);
    let tables = fresh_tables();
    create_tables(&client, &tables)
        .await
        .unwrap_or_else(|e| panic!("could not create tables through {proxy}: {e}"));
    DynamoStore::new(client, tables)
}

/// An HTTP proxy on 127.0.0.1 that forwards to `upstream` one request at a time; its URL.
/// It lives as long as the test's runtime.
pub async fn serial_proxy(upstream: &str) -> String {
    use axum::body::Bytes;
    use axum::extract::State;
    use axum::response::IntoResponse;
    struct Proxy {
        upstream: String,
        client: reqwest::Client,
        one_at_a_time: tokio::sync::Mutex<()>,
    }
    async fn forward(
        State(proxy): State<Arc<Proxy>>,
        method: http::Method,
        uri: http::Uri,
        headers: HeaderMap,
        body: Bytes,
    ) -> axum::response::Response {
        let url = format!(
            "{}{}",
            proxy.upstream,
            uri.path_and_query().map_or("/", |p| p.as_str())
        );
        let _turn = proxy.one_at_a_time.lock().await;
        let mut request = proxy.client.request(method, url).body(body);
        for (name, value) in &headers {
            if name != http::header::HOST {
                request = request.header(name, value);
            }
        }
        match request.send().await {
            Ok(answer) => {
                let status = answer.status();
                let headers = answer.headers().clone();
                let body = answer.bytes().await.unwrap_or_default();
                let mut response = (status, body).into_response();
                for (name, value) in &headers {
                    if name != http::header::CONTENT_LENGTH
                        && name != http::header::TRANSFER_ENCODING
                    {
                        response.headers_mut().insert(name, value.clone());
                    }
                }
                response
            }
            Err(e) => (http::StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
        }
    }
    let proxy = Arc::new(Proxy {
        upstream: upstream.trim_end_matches('/').to_string(),
        client: reqwest::Client::new(),
        one_at_a_time: tokio::sync::Mutex::new(()),
    });
    let router = axum::Router::new().fallback(forward).with_state(proxy);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

/// A TCP endpoint on 127.0.0.1 that accepts connections and never answers; its URL. It
/// lives as long as the test's runtime.
pub async fn black_hole() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    url
}

/// Which store a test runs against.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Embedded,
    Moto,
}

pub async fn store(backend: Backend) -> Arc<dyn Store> {
    match backend {
        Backend::Embedded => Arc::new(EmbeddedStore::in_memory()),
        // Serialised: the tests run deliveries concurrently (see `serial_moto_store`).
        Backend::Moto => Arc::new(serial_moto_store().await),
    }
}

/// Runs each listed async test body once per backend: `mod embedded` and `mod moto`.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Embedded).await
                }
            )*
        }
        mod moto {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::Backend::Moto).await
                }
            )*
        }
    };
}

/// A store that can be switched off: every call then fails as DynamoDB does when down, or
/// hangs as DynamoDB does when it accepts and never answers. It also counts its calls, so
/// that a test can make it fail from any one of them on, as if the process had died there
/// (`crash_after`).
pub struct SwitchableStore {
    inner: Arc<dyn Store>,
    down: AtomicBool,
    hanging: AtomicBool,
    calls: AtomicUsize,
    crash_at: AtomicUsize,
}

impl SwitchableStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self {
            inner,
            down: AtomicBool::new(false),
            hanging: AtomicBool::new(false),
            calls: AtomicUsize::new(0),
            crash_at: AtomicUsize::new(usize::MAX),
        }
    }
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
    pub fn set_hanging(&self, hanging: bool) {
        self.hanging.store(hanging, Ordering::SeqCst);
    }
    /// Calls made so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
    /// Lets `calls` more calls through, then fails every one until `recover`.
    pub fn crash_after(&self, calls: usize) {
        self.crash_at.store(self.calls() + calls, Ordering::SeqCst);
    }
    /// Whether a crash set by `crash_after` has happened.
    pub fn crashed(&self) -> bool {
        self.calls() > self.crash_at.load(Ordering::SeqCst)
    }
    /// Answers again after a crash.
    pub fn recover(&self) {
        self.crash_at.store(usize::MAX, Ordering::SeqCst);
    }
    async fn check(&self) -> Result<(), StoreError> {
        while self.hanging.load(Ordering::SeqCst) {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let call = self.calls.fetch_add(1, Ordering::SeqCst);
        if call >= self.crash_at.load(Ordering::SeqCst) {
            return Err(StoreError::Unavailable("injected crash".into()));
        }
        match self.down.load(Ordering::SeqCst) {
            true => Err(StoreError::Unavailable("injected outage".into())),
            false => Ok(()),
        }
    }
}

/// The store's capabilities for `SwitchableStore`: each method checks the switch, then asks
/// the inner store.
macro_rules! delegate {
    ($(impl $capability:ident { $($name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)* })*) => {
        $(
            #[async_trait]
            impl $capability for SwitchableStore {
                $(async fn $name(&self, $($arg: $ty),*) -> Result<$ret, StoreError> {
                    self.check().await?;
                    self.inner.$name($($arg),*).await
                })*
            }
        )*
    };
}

delegate! {
    impl Ledger {
        begin_delivery(id: &str, route: &str, now: i64) -> DeliveryStart;
        end_delivery(id: &str, end: DeliveryEnd, outcome: &str, now: i64) -> ();
    }
    impl Commits {
        record_status(status: &StatusRecord) -> StatusWrite;
        latest_statuses(sha: &str) -> Vec<StatusRecord>;
        commit_summaries(shas: &[String], contexts: &[String]) -> Vec<CommitSummary>;
        claim_verdict(record: &VerdictRecord, announce: Option<(u64, &str)>) -> VerdictClaim;
        mark_verdict_notified(sha: &str, now: i64, sent_to: u64) -> ();
        mark_deployed(sha: &str, delivery_id: &str, now: i64) -> ();
        is_deployed(sha: &str) -> bool;
        verdict(sha: &str) -> Option<VerdictRecord>;
    }
    impl Stalls {
        stalls() -> Vec<(String, Stall)>;
        put_stall(key: &str, stall: &Stall) -> ();
        remove_stall(key: &str) -> ();
    }
    impl History {
        append_history(stream: &str, entry: &HistoryEntry) -> ();
        history(stream: &str, limit: usize) -> Vec<HistoryEntry>;
    }
    impl Recent {
        note_recent(list: &str, id: Option<&str>, entry: &HistoryEntry, keep: usize) -> ();
        recent(lists: &[&str]) -> Vec<Vec<HistoryEntry>>;
    }
    impl Claims {
        claim(key: &str, owner: &str, now: i64) -> Claim;
        claim_holder(key: &str) -> Option<ClaimRecord>;
        swap_claim(key: &str, expected: &ClaimRecord, new: &ClaimRecord) -> bool;
    }
    impl Connections {
        put_connection(connection: &Connection) -> ();
        delete_connection(id: &str) -> ();
        subscribe(id: &str, identifier: &str, client: &str) -> bool;
        unsubscribe(id: &str, identifier: &str) -> bool;
        connections(now: i64) -> Vec<Connection>;
    }
    impl ClientKeys {
        add_client_key(key: &ClientKey) -> bool;
        client_key_by_hash(key_hash: &str) -> Option<ClientKey>;
        client_keys() -> Vec<ClientKey>;
        revoke_client_key(name: &str) -> bool;
    }
    impl Outbox {
        append_outbox(message: &str, now: i64) -> u64;
        outbox_after(after: u64, not_before: i64, limit: usize) -> Vec<OutboxEntry>;
        reserve_place() -> u64;
        put_outbox_entry(place: u64, message: &str, now: i64) -> ();
        release_place(place: u64) -> ();
        outbox_head() -> u64;
        cursor(client: &str) -> Option<u64>;
        cursor_and_moved_at(client: &str) -> Option<(u64, Option<i64>)>;
        advance_cursor(client: &str, seq: u64, now: i64) -> ();
        start_cursor(client: &str, seq: u64, now: i64) -> ();
        append_outbox_once(message: &str, fingerprint: &str, now: i64, horizon: i64) -> Option<u64>;
    }
}

/// A notifier that records what it is given and fails while told to, or once the store it
/// `dies_with` has crashed (the process is gone: nothing more is sent).
#[derive(Default)]
pub struct FlakyNotifier {
    pub failing: AtomicBool,
    messages: std::sync::Mutex<Vec<SmokeyMessage>>,
    dies_with: std::sync::OnceLock<Arc<SwitchableStore>>,
}

impl FlakyNotifier {
    pub fn messages(&self) -> Vec<SmokeyMessage> {
        self.messages.lock().unwrap().clone()
    }

    /// The chat lines among the messages.
    pub fn chat(&self) -> Vec<String> {
        self.messages()
            .into_iter()
            .filter_map(|m| match m {
                SmokeyMessage::Chat(text) => Some(text),
                _ => None,
            })
            .collect()
    }

    /// Fails from the moment `store` crashes (`SwitchableStore::crash_after`) until it
    /// recovers.
    pub fn dies_with(&self, store: Arc<SwitchableStore>) {
        let _ = self.dies_with.set(store);
    }
}

#[async_trait]
impl Notifier for FlakyNotifier {
    async fn notify(&self, message: &SmokeyMessage) -> Result<Reach, NotifyError> {
        let dead = self.dies_with.get().is_some_and(|store| store.crashed());
        if self.failing.load(Ordering::SeqCst) || dead {
            return Err(NotifyError::Incomplete {
                failed: 1,
                attempted: 1,
                last_error: "injected failure".into(),
            });
        }
        self.messages.lock().unwrap().push(message.clone());
        Ok(Reach {
            sent: 1,
            ..Reach::default()
        })
    }

    async fn deliver(
        &self,
        _place: u64,
        message: &SmokeyMessage,
        after: Option<build_relay::notify::AfterPosts<'_>>,
    ) -> Result<Reach, NotifyError> {
        let reach = self.notify(message).await?;
        if let Some(after) = after {
            after(reach).await?;
        }
        Ok(reach)
    }
}

pub const TEST_SECRET: &str = "build-relay test secret";

/// The headers GitHub sends with a delivery, signed with `secret`.
pub fn github_headers(event: &str, delivery: &str, body: &[u8], secret: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    headers.insert(intake::EVENT_HEADER, event.parse().unwrap());
    headers.insert(intake::DELIVERY_HEADER, delivery.parse().unwrap());
    headers.insert(
        intake::SIGNATURE_HEADER,
        intake::sign(secret.as_bytes(), body).parse().unwrap(),
    );
    headers
}

/// `../shared/fixtures` beside the checkout (override with `RELAY_FIXTURES`).
pub fn fixtures_dir() -> PathBuf {
    let dir = std::env::var_os("RELAY_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures"));
    assert!(
        dir.is_dir(),
        "fixtures not found at {}: the handbook folder shared/ must sit beside the checkout, \
         or RELAY_FIXTURES must name its fixtures folder",
        dir.display()
    );
    dir
}

/// Every `.json` file under `fixtures/github/<event>/`, sorted.
pub fn webhook_fixtures(event: &str) -> Vec<PathBuf> {
    let dir = fixtures_dir().join("github").join(event);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no fixtures in {}", dir.display());
    files
}

/// A sample payload from `local/samples/`, parsed.
pub fn sample(name: &str) -> serde_json::Value {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../local/samples")
        .join(name);
    serde_json::from_slice(
        &std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())),
    )
    .unwrap()
}

/// An @connections stand-in that accepts every post (and keeps them for inspection).
pub async fn accepting_connections_api() -> wiremock::MockServer {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .and(wiremock::matchers::path_regex("^/@connections/.+$"))
        .respond_with(wiremock::ResponseTemplate::new(200))
        .mount(&server)
        .await;
    server
}

/// A file from the repository's `events/` folder, parsed.
pub fn event<T: serde::de::DeserializeOwned>(path: &str) -> T {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../events")
        .join(path);
    let text = std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", file.display()))
}

/// An `@connections` stand-in that records posts; ids can be marked gone (410) or failing.
#[derive(Default)]
pub struct RecordingApi {
    posts: std::sync::Mutex<Vec<(String, String)>>,
    pub gone: std::sync::Mutex<std::collections::HashSet<String>>,
    pub failing: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl RecordingApi {
    pub fn posts(&self) -> Vec<(String, String)> {
        self.posts.lock().unwrap().clone()
    }
}

#[async_trait]
impl build_relay::broadcast::ConnectionsApi for RecordingApi {
    async fn post(
        &self,
        connection_id: &str,
        frame: &str,
    ) -> Result<(), build_relay::broadcast::PostError> {
        use build_relay::broadcast::PostError;
        if self.gone.lock().unwrap().contains(connection_id) {
            return Err(PostError::Gone);
        }
        if self.failing.lock().unwrap().contains(connection_id) {
            return Err(PostError::Failed("injected failure".into()));
        }
        self.posts
            .lock()
            .unwrap()
            .push((connection_id.to_string(), frame.to_string()));
        Ok(())
    }
}

/// The retry policy of the tests: as in production, but with short waits.
pub fn quick_retry() -> build_relay::github::retry::RetryPolicy {
    build_relay::github::retry::RetryPolicy {
        attempts: 3,
        first_backoff: std::time::Duration::from_millis(10),
        budget: std::time::Duration::from_secs(3),
    }
}

/// The relay's routes as the tests build them: through the composition root, signed with
/// `TEST_SECRET`, retrying quickly, at the time `clock` says.
pub fn test_relay(
    config: build_relay::config::RelayConfig,
    store: Arc<dyn Store>,
    notifier: Arc<dyn Notifier>,
    clock: Arc<dyn build_relay::clock::Clock>,
) -> build_relay::relay::Relay {
    build_relay::relay::Relay {
        config,
        secrets: build_relay::config::WebhookSecrets {
            current: build_relay::config::Secret::new(TEST_SECRET),
            previous: None,
        },
        store,
        notifier,
        clock,
        retry: quick_retry(),
    }
}

/// GitHub for tests that make no GitHub calls: a dry run whose reads go nowhere.
pub fn no_github() -> Arc<dyn build_relay::github::GitHub> {
    use build_relay::github::dry_run::DryRun;
    use build_relay::github::octocrab_client::OctocrabGitHub;
    let nowhere = OctocrabGitHub::new("http://127.0.0.1:9", None, fake_github::REPO).unwrap();
    Arc::new(DryRun::new(Arc::new(nowhere)))
}

/// A local gateway on a free port, signed with `TEST_SECRET`, accepting `client_keys`.
pub async fn local_gateway(
    store: Arc<dyn Store>,
    ping_interval: std::time::Duration,
    github: Arc<dyn build_relay::github::GitHub>,
    client_keys: &[(&str, &str)],
) -> relay_local::Running {
    let options = gateway_options(store, ping_interval, github, client_keys);
    relay_local::Gateway::start(options).await.unwrap()
}

/// What `local_gateway` starts, for a test to change before it starts it.
pub fn gateway_options(
    store: Arc<dyn Store>,
    ping_interval: std::time::Duration,
    github: Arc<dyn build_relay::github::GitHub>,
    client_keys: &[(&str, &str)],
) -> relay_local::GatewayOptions {
    relay_local::GatewayOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        store,
        relay: build_relay::config::RelayConfig::default(),
        secrets: build_relay::config::WebhookSecrets {
            current: build_relay::config::Secret::new(TEST_SECRET),
            previous: None,
        },
        ping_interval,
        socket_limits: Default::default(),
        client_keys: client_keys
            .iter()
            .map(|(name, key)| (name.to_string(), key.to_string()))
            .collect(),
        github,
        replay_window: 3600,
        bridge: None,
        bridge_timings: Default::default(),
        post_latency: std::time::Duration::ZERO,
        reconcile_interval: std::time::Duration::ZERO,
        stall_after_seconds: 15 * 60,
        status_access: Default::default(),
    }
}

/// A webhook answer that is either done (2xx), or a copy of a delivery racing its own
/// original, which is not carried out and so must not say 2xx.
pub fn assert_done_or_in_flight(answer: &build_relay::answer::Answer) {
    let in_flight = answer.status == http::StatusCode::SERVICE_UNAVAILABLE
        && answer
            .reason
            .contains("being handled by another invocation");
    assert!(answer.status.is_success() || in_flight, "{answer:?}");
}

/// POSTs a signed sample from `local/samples/` to a webhook route of a local gateway.
pub async fn post_sample(
    gateway: &relay_local::Running,
    route: &str,
    event: &str,
    sample: &str,
    delivery: &str,
) -> reqwest::Response {
    let body = serde_json::to_vec(&self::sample(sample)).unwrap();
    let headers = github_headers(event, delivery, &body, TEST_SECRET);
    reqwest::Client::new()
        .post(format!("{}{route}", gateway.url()))
        .headers(headers)
        .body(body)
        .send()
        .await
        .unwrap()
}

/// The ids of the connections `store` holds now.
pub async fn connection_ids(store: &dyn Store) -> Vec<String> {
    let connections = store.connections(build_relay::clock::now()).await.unwrap();
    connections.into_iter().map(|c| c.id).collect()
}
