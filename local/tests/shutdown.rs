//! `relay-local serve` stopped with SIGTERM while a delivery is in flight: new sockets are
//! refused with 503 at once, the delivery finishes with its answer and its frames, every
//! client then gets close code 1001, and the process exits 0.

mod common;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use common::{deliver, free_port, serve_command, smokey, wait_until_listening};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SECRET: &str = "shutdown test secret";
const KEY: &str = "key-for-the-shutdown-test-0123";
const REPO: &str = "/repos/Charcoal-SE/SmokeDetector";

fn sample(name: &str) -> Value {
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("samples")
        .join(name);
    serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap()
}

/// GitHub where reading the PR takes a while, so that the delivery is still in flight.
async fn slow_github() -> MockServer {
    let github = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(format!("{REPO}/pulls/1234")))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(sample("github-api-pull-1234.json"))
                .set_delay(Duration::from_millis(1500)),
        )
        .mount(&github)
        .await;
    Mock::given(method("PUT"))
        .and(path(format!("{REPO}/pulls/1234/merge")))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({
            "sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
            "merged": true,
            "message": "Pull Request successfully merged"
        })))
        .mount(&github)
        .await;
    Mock::given(method("DELETE"))
        .and(path(format!(
            "{REPO}/git/refs/heads/auto-blacklist-1700000000"
        )))
        .respond_with(ResponseTemplate::new(204))
        .mount(&github)
        .await;
    github
}

fn serve(port: u16, github: &str) -> Child {
    serve_command(port, SECRET)
        .env("RELAY_CLIENT_KEYS", format!("smokey:{KEY}"))
        .env("GITHUB_TOKEN", "ghp_shutdown_test")
        .env("GITHUB_API_URL", github)
        .env("PING_INTERVAL_SECONDS", "60")
        .spawn()
        .expect("relay-local starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_deliveries_then_closes_sockets_with_1001() {
    let github = slow_github().await;
    let port = free_port();
    let mut relay = serve(port, &github.uri());
    wait_until_listening(port).await;

    let (mut client, confirm) = smokey(port, KEY).await;
    assert!(confirm.contains("confirm_subscription"), "{confirm}");

    let body = serde_json::to_vec(&sample("status-approval.json")).unwrap();
    let approval = tokio::spawn(async move {
        deliver(
            port,
            "/github/pr_merge",
            "status",
            "in-flight-1",
            SECRET,
            body,
        )
        .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    let killed = Command::new("kill")
        .args(["-TERM", &relay.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());

    // While the delivery finishes, a Smokey that reconnects at once is turned away, not
    // confirmed by a process about to exit. (`kill` returns once the signal is sent, maybe
    // before the process has taken it: a socket opened before that is a socket of the
    // running gateway, closed with the others.)
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let attempt =
            tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{port}/cable")).await;
        match attempt {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 503);
                break;
            }
            Ok(_) if Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => panic!(
                "a new socket while stopping: {:?}",
                other.map(|_| "accepted")
            ),
        }
    }

    let (status, reason) = approval.await.unwrap();
    assert_eq!(status, 200, "{reason}");
    assert!(reason.starts_with("Merged #1234"), "{reason}");

    let mut got_merged = false;
    let close = loop {
        let frame = tokio::time::timeout(Duration::from_secs(15), client.next())
            .await
            .expect("the socket is closed, not left hanging");
        match frame {
            Some(Ok(Message::Text(text))) => got_merged |= text.contains("Merged SmokeDetector"),
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("socket ended without a close frame: {other:?}"),
        }
    };
    assert!(got_merged, "the delivery's frame came before the close");
    assert_eq!(close.map(|f| f.code), Some(CloseCode::Away));

    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = relay.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "relay-local did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "{exit:?}");
}
