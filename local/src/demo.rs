//! `relay-local demo`: the product at work in one command. Starts a gateway with an
//! in-memory store, connects a client that subscribes exactly as SmokeDetector does, replays
//! signed GitHub deliveries for the whole chain (a blacklist PR opened and approved, the
//! merge, the push to master, CI passing on the deploy commit), and prints every answer,
//! every GitHub write the relay would make (a dry run: no token, no network), and every frame
//! the client received.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use build_relay::config::{RelayConfig, Secret, WebhookSecrets};
use build_relay::github::dry_run::DryRun;
use build_relay::store::embedded::EmbeddedStore;
use build_relay::{cable, intake, keys};
use demo_github::DemoGitHub;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::gateway::{Gateway, GatewayOptions};

const STATUS: &str = include_str!("../samples/status-deploy-success.json");
const PUSH: &str = include_str!("../samples/push-master.json");
const OPENED: &str = include_str!("../samples/pull-request-opened.json");
const APPROVAL: &str = include_str!("../samples/status-approval.json");
const PULL_1234: &str = include_str!("../samples/github-api-pull-1234.json");

type Client =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One delivery of the demo and what it shows.
struct Step {
    what: &'static str,
    path: &'static str,
    event: &'static str,
    delivery: &'static str,
    payload: Value,
    forged: bool,
}

pub async fn run(listen: SocketAddr) -> Result<(), String> {
    let secret = keys::generate();
    let client_key = keys::generate();
    let github = Arc::new(DryRun::new(Arc::new(DemoGitHub::new(PULL_1234))));
    let gateway = Gateway::start(GatewayOptions {
        listen,
        store: Arc::new(EmbeddedStore::in_memory()),
        relay: RelayConfig::default(),
        secrets: WebhookSecrets {
            current: Secret::new(secret.clone()),
            previous: None,
        },
        ping_interval: Duration::from_secs(3),
        socket_limits: Default::default(),
        client_keys: vec![("demo-smokey".into(), client_key.clone())],
        github: github.clone(),
        replay_window: 3600,
        bridge: None,
        bridge_timings: Default::default(),
        post_latency: Duration::ZERO,
        reconcile_interval: Duration::ZERO,
        stall_after_seconds: 15 * 60,
        status_access: Default::default(),
    })
    .await
    .map_err(|e| e.to_string())?;
    println!(
        "relay-local is up at {} (in-memory store, a fresh webhook secret, GitHub as a dry run)",
        gateway.url()
    );
    let result = replay(
        &gateway.url(),
        &gateway.cable_url(),
        &secret,
        &client_key,
        &github,
    )
    .await;
    gateway.stop().await;
    result
}

async fn replay(
    url: &str,
    cable_url: &str,
    secret: &str,
    client_key: &str,
    github: &DryRun,
) -> Result<(), String> {
    let (mut client, _) = tokio_tungstenite::connect_async(cable_url)
        .await
        .map_err(|e| format!("cannot connect to {cable_url}: {e}"))?;
    let identifier = json!({ "channel": cable::CHANNEL, "key": client_key }).to_string();
    let subscribe = json!({ "command": "subscribe", "identifier": identifier }).to_string();
    println!("\nA client connects to {cable_url} and subscribes as SmokeDetector does:");
    println!("  client -> {}", redact(&subscribe, client_key));
    client
        .send(Message::text(subscribe))
        .await
        .map_err(|e| format!("cannot subscribe: {e}"))?;
    print_frames(&mut client, client_key).await;

    let http = reqwest::Client::new();
    let mut received = 0;
    let mut writes_shown = 0;
    for step in steps() {
        println!("\n{}", step.what);
        let body = serde_json::to_vec(&step.payload).expect("JSON values serialize");
        let key = if step.forged {
            format!("not {secret}")
        } else {
            secret.to_string()
        };
        let response = http
            .post(format!("{url}{}", step.path))
            .header("content-type", "application/json")
            .header(intake::EVENT_HEADER, step.event)
            .header(intake::DELIVERY_HEADER, step.delivery)
            .header(
                intake::SIGNATURE_HEADER,
                intake::sign(key.as_bytes(), &body),
            )
            .body(body)
            .send()
            .await
            .map_err(|e| format!("POST {} failed: {e}", step.path))?;
        let status = response.status();
        let reason = response.text().await.unwrap_or_default();
        println!(
            "  GitHub -> POST {} ({} {}): {} {}",
            step.path,
            step.event,
            step.delivery,
            status.as_u16(),
            reason.trim()
        );
        for write in github.writes().iter().skip(writes_shown) {
            println!("  relay -> GitHub (dry run): {write:?}");
        }
        writes_shown = github.writes().len();
        received += print_frames(&mut client, client_key).await;
    }
    println!(
        "\nThe client received {received} message(s). Point SmokeDetector's metasmoke_ws_host at\n\
         {cable_url} to use a gateway like this one (relay-local serve; see the README)."
    );
    Ok(())
}

fn sample(text: &str) -> Value {
    serde_json::from_str(text).expect("the samples are JSON")
}

fn steps() -> Vec<Step> {
    let status = sample(STATUS);
    let with = |changes: &[(&str, Value)]| {
        let mut payload = status.clone();
        for (key, value) in changes {
            payload[*key] = value.clone();
        }
        payload
    };
    let step = |what, path, event, delivery, payload| Step {
        what,
        path,
        event,
        delivery,
        payload,
        forged: false,
    };
    vec![
        step(
            "1. SmokeDetector opens a blacklist pull request: the chat rooms hear of it.",
            "/github/pull_request_hook",
            "pull_request",
            "demo-pr-opened",
            sample(OPENED),
        ),
        step(
            "2. A reviewer approves it in PullApprove: the relay re-reads the PR and merges it, pinned to the approved commit.",
            "/github/pr_merge",
            "status",
            "demo-approval",
            sample(APPROVAL),
        ),
        step(
            "3. GitHub reports the push to master: deploy follows, fast-forward only.",
            "/github/update_deploy_to_master",
            "push",
            "demo-push",
            sample(PUSH),
        ),
        step(
            "4. CI starts on the deploy commit (pending): recorded, nothing sent.",
            "/github/status_hook",
            "status",
            "demo-ci-pending",
            with(&[
                ("state", json!("pending")),
                ("description", json!("Your tests are queued")),
            ]),
        ),
        step(
            "5. CI passes on the deploy commit: Smokey is told, and pulls (the merge title has --autopull).",
            "/github/status_hook",
            "status",
            "demo-ci-success",
            with(&[]),
        ),
        step(
            "6. GitHub redelivers the same delivery: not acted on twice.",
            "/github/status_hook",
            "status",
            "demo-ci-success",
            with(&[]),
        ),
        Step {
            forged: true,
            ..step(
                "7. Someone without the secret posts a failing status: refused, nothing recorded.",
                "/github/status_hook",
                "status",
                "demo-forged",
                with(&[("state", json!("failure"))]),
            )
        },
    ]
}

/// Prints what the client receives within a short wait; returns how many were messages.
async fn print_frames(client: &mut Client, client_key: &str) -> usize {
    let mut messages = 0;
    while let Ok(Some(Ok(frame))) =
        tokio::time::timeout(Duration::from_millis(400), client.next()).await
    {
        let Message::Text(text) = frame else { continue };
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if value["type"] == "ping" {
            continue;
        }
        if value.get("message").is_some() {
            messages += 1;
        }
        println!("  client <- {}", shorten(&redact(&text, client_key)));
    }
    messages
}

/// The demo prints frames as they are, except for the client key.
fn redact(frame: &str, client_key: &str) -> String {
    frame.replace(client_key, "<client key>")
}

/// Long frames (a whole push payload) are cut for the screen.
fn shorten(frame: &str) -> String {
    const SHOWN: usize = 400;
    match frame.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}... ({} bytes)", &frame[..cut], frame.len()),
        None => frame.to_string(),
    }
}

/// GitHub's read side for the demo: the sample blacklist PR, as `GET /pulls/1234` returns it.
mod demo_github {
    use async_trait::async_trait;
    use build_relay::github::api::{
        CommitStatus, Comparison, GitHub, GitHubError, Merged, NewCommit, NewStatus, OpenPull,
        PullRequest, RateLimit, Tree, TreeItem,
    };
    use build_relay::github::payloads::CheckRun;

    pub struct DemoGitHub {
        pull: PullRequest,
    }

    impl DemoGitHub {
        pub fn new(pull_json: &str) -> Self {
            Self {
                pull: serde_json::from_str(pull_json).expect("the sample is a pull request"),
            }
        }
    }

    fn not_in_demo(what: &str) -> GitHubError {
        GitHubError {
            status: None,
            message: format!("the demo's GitHub does not {what}"),
            retry_after: None,
        }
    }

    #[async_trait]
    impl GitHub for DemoGitHub {
        async fn fast_forward(&self, _: &str, _: &str) -> Result<(), GitHubError> {
            Err(not_in_demo("write"))
        }
        async fn compare(&self, _: &str, _: &str) -> Result<Comparison, GitHubError> {
            Err(not_in_demo("compare"))
        }
        async fn pull_request(&self, number: u64) -> Result<PullRequest, GitHubError> {
            match number == self.pull.number {
                true => Ok(self.pull.clone()),
                false => Err(not_in_demo("know that pull request")),
            }
        }
        async fn pull_requests_with_commit(
            &self,
            sha: &str,
        ) -> Result<Vec<PullRequest>, GitHubError> {
            Ok(self
                .pull
                .head
                .sha
                .eq(sha)
                .then(|| self.pull.clone())
                .into_iter()
                .collect())
        }
        async fn merge(&self, _: u64, _: &str, _: &str) -> Result<Merged, GitHubError> {
            Err(not_in_demo("write"))
        }
        async fn delete_branch(&self, _: &str) -> Result<(), GitHubError> {
            Err(not_in_demo("write"))
        }
        async fn branch_head(&self, _: &str) -> Result<String, GitHubError> {
            Err(not_in_demo("read refs"))
        }
        async fn commit_message(&self, _: &str) -> Result<String, GitHubError> {
            Err(not_in_demo("read commits"))
        }
        async fn create_status(&self, _: &str, _: &NewStatus) -> Result<(), GitHubError> {
            Err(not_in_demo("write"))
        }
        async fn tree(&self, _: &str) -> Result<Tree, GitHubError> {
            Err(not_in_demo("read trees"))
        }
        async fn blob(&self, _: &str) -> Result<Vec<u8>, GitHubError> {
            Err(not_in_demo("read blobs"))
        }
        async fn create_blob(&self, _: &[u8]) -> Result<String, GitHubError> {
            Err(not_in_demo("write"))
        }
        async fn create_tree(&self, _: &str, _: &[TreeItem]) -> Result<String, GitHubError> {
            Err(not_in_demo("write"))
        }
        async fn create_commit(&self, _: &NewCommit) -> Result<String, GitHubError> {
            Err(not_in_demo("write"))
        }
        async fn rate_limit(&self) -> Result<RateLimit, GitHubError> {
            Err(not_in_demo("read the rate limit"))
        }
        async fn combined_status(&self, _: &str) -> Result<Vec<CommitStatus>, GitHubError> {
            Err(not_in_demo("read statuses"))
        }
        async fn check_runs(&self, _: &str) -> Result<Vec<CheckRun>, GitHubError> {
            Err(not_in_demo("read check runs"))
        }
        async fn open_pulls(&self) -> Result<Vec<OpenPull>, GitHubError> {
            Err(not_in_demo("list pull requests"))
        }
    }
}
