//! A Lambda Runtime API on 127.0.0.1, enough to run a function binary as Lambda does: it
//! hands out queued events on `next`, records responses and errors, and then holds `next`
//! open as Lambda does between invocations.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::Notify;

/// How an invocation ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Response { request_id: String, body: Value },
    Error { request_id: String, body: Value },
    InitError(Value),
}

#[derive(Default)]
struct Shared {
    events: Mutex<VecDeque<Value>>,
    outcomes: Mutex<Vec<(Outcome, Instant)>>,
    outcome_added: Notify,
    first_next: Mutex<Option<Instant>>,
    counter: Mutex<u64>,
}

pub struct RuntimeApi {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    server: tokio::task::JoinHandle<()>,
}

const PREFIX: &str = "/2018-06-01/runtime";

impl RuntimeApi {
    pub async fn start(events: Vec<Value>) -> Self {
        let shared = Arc::new(Shared {
            events: Mutex::new(events.into()),
            ..Shared::default()
        });
        let router = Router::new()
            .route(&format!("{PREFIX}/invocation/next"), get(next))
            .route(
                &format!("{PREFIX}/invocation/{{id}}/response"),
                post(response),
            )
            .route(&format!("{PREFIX}/invocation/{{id}}/error"), post(error))
            .route(&format!("{PREFIX}/init/error"), post(init_error))
            .with_state(Arc::clone(&shared));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, router).await.unwrap();
        });
        Self {
            addr,
            shared,
            server,
        }
    }

    /// When the function first asked for an event: the end of its init.
    pub fn first_next_at(&self) -> Option<Instant> {
        *self.shared.first_next.lock().unwrap()
    }

    /// Waits for the `n`th outcome (1-based).
    pub async fn outcome(&self, n: usize, wait: Duration) -> Option<Outcome> {
        self.outcome_with_time(n, wait)
            .await
            .map(|(outcome, _)| outcome)
    }

    /// The `n`th outcome and when it arrived.
    pub async fn outcome_with_time(&self, n: usize, wait: Duration) -> Option<(Outcome, Instant)> {
        let deadline = Instant::now() + wait;
        loop {
            let notified = self.shared.outcome_added.notified();
            if let Some(outcome) = self.shared.outcomes.lock().unwrap().get(n - 1).cloned() {
                return Some(outcome);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            if tokio::time::timeout(left, notified).await.is_err() {
                return None;
            }
        }
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> Response {
    shared
        .first_next
        .lock()
        .unwrap()
        .get_or_insert_with(Instant::now);
    let event = shared.events.lock().unwrap().pop_front();
    let Some(event) = event else {
        // Lambda keeps the request open until there is work; here there never is.
        std::future::pending::<()>().await;
        unreachable!()
    };
    let id = {
        let mut counter = shared.counter.lock().unwrap();
        *counter += 1;
        format!("request-{counter}")
    };
    let deadline = (chrono::Utc::now() + chrono::Duration::seconds(90)).timestamp_millis();
    (
        [
            ("lambda-runtime-aws-request-id", id),
            ("lambda-runtime-deadline-ms", deadline.to_string()),
            (
                "lambda-runtime-invoked-function-arn",
                "arn:aws:lambda:us-east-1:123456789012:function:build-relay-test".to_string(),
            ),
            (
                "lambda-runtime-trace-id",
                "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700".to_string(),
            ),
            ("content-type", "application/json".to_string()),
        ],
        event.to_string(),
    )
        .into_response()
}

fn record(shared: &Shared, outcome: Outcome) -> Response {
    shared
        .outcomes
        .lock()
        .unwrap()
        .push((outcome, Instant::now()));
    shared.outcome_added.notify_waiters();
    (http::StatusCode::ACCEPTED, r#"{"status":"OK"}"#).into_response()
}

fn json(body: &Bytes) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(body).into_owned()))
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    record(
        &shared,
        Outcome::Response {
            request_id: id,
            body: json(&body),
        },
    )
}

async fn error(State(shared): State<Arc<Shared>>, Path(id): Path<String>, body: Bytes) -> Response {
    record(
        &shared,
        Outcome::Error {
            request_id: id,
            body: json(&body),
        },
    )
}

async fn init_error(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    record(&shared, Outcome::InitError(json(&body)))
}

/// A function's binary as the test command builds it (`cargo build -p NAME`: the dev
/// profile, whose dependencies the tests' own build shares), e.g. `github-status`.
pub fn function_binary(name: &str) -> PathBuf {
    built_binary("debug", name, &format!("cargo build -p {name}"))
}

/// A release binary of the workspace, as deployed, e.g. `github-status`; for benchmarks.
pub fn release_binary(name: &str) -> PathBuf {
    built_binary("release", name, &format!("cargo build --release -p {name}"))
}

fn built_binary(profile: &str, name: &str, build: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let binary = target.join(profile).join(name);
    assert!(
        binary.is_file(),
        "{} is missing: build it first ({build}; scripts/test.sh and scripts/bench.sh do)",
        binary.display()
    );
    binary
}

/// A function binary running against a runtime API; killed when dropped.
pub struct FunctionProcess {
    pub child: tokio::process::Child,
    pub started: Instant,
}

/// This machine's CA bundle, which the functions are pointed at as template.yaml points
/// them at provided.al2023's.
fn ca_bundle() -> Option<&'static str> {
    [
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/certs/ca-certificates.crt",
    ]
    .into_iter()
    .find(|file| std::path::Path::new(file).exists())
}

impl FunctionProcess {
    /// Starts `binary` as Lambda would, with `env` on top of the Lambda variables and the
    /// CA bundle template.yaml names (an empty `SSL_CERT_FILE` in `env` unsets it).
    pub fn spawn(binary: &std::path::Path, api: &RuntimeApi, env: &[(&str, String)]) -> Self {
        let mut command = tokio::process::Command::new(binary);
        command
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_LAMBDA_RUNTIME_API", api.addr.to_string())
            .env("AWS_LAMBDA_FUNCTION_NAME", "build-relay-test")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/build-relay-test")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/24/[$LATEST]test")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .envs(ca_bundle().map(|file| ("SSL_CERT_FILE", file)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        for (name, value) in env {
            match (*name, value.as_str()) {
                // Unset, as before template.yaml set it: the TLS stack looks for itself.
                ("SSL_CERT_FILE", "") => command.env_remove(name),
                _ => command.env(name, value),
            };
        }
        let started = Instant::now();
        Self {
            child: command
                .spawn()
                .unwrap_or_else(|e| panic!("{}: {e}", binary.display())),
            started,
        }
    }
}
