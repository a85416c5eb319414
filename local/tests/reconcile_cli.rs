//! `relay-local reconcile` as an operator runs it: one pass against a --state file, GitHub
//! at GITHUB_API_URL (a local stand-in with GitHub's shapes), messages to WEBSOCKET_ENDPOINT.

use std::process::{Command, Output};

use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const REPO: &str = "/repos/Charcoal-SE/SmokeDetector";
const HEAD: &str = "9049f1265b7d61be4a8904a9a27120d2064dab3b";

fn reconcile(state: &std::path::Path, github: &str, endpoint: Option<&str>) -> Output {
    reconcile_with(&[], state, github, endpoint)
}

fn reconcile_with(
    flags: &[&str],
    state: &std::path::Path,
    github: &str,
    endpoint: Option<&str>,
) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_relay-local"));
    command
        .arg("reconcile")
        .args(flags)
        .arg("--state")
        .arg(state)
        .env_remove("AWS_ENDPOINT_URL_DYNAMODB")
        .env("GITHUB_API_URL", github)
        .env("GITHUB_TOKEN", "ghp_test_token_for_the_stand_in")
        .env("RUST_LOG", "warn")
        // As scripts/test.sh sets them: no region lookups in instance metadata.
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    match endpoint {
        Some(endpoint) => command.env("WEBSOCKET_ENDPOINT", endpoint),
        None => command.env_remove("WEBSOCKET_ENDPOINT"),
    };
    command.output().expect("relay-local runs")
}

async fn answer(server: &MockServer, route: &str, body: Value) {
    Mock::given(method(if route == "/graphql" { "POST" } else { "GET" }))
        .and(path(route))
        .respond_with(ResponseTemplate::new(200).set_body_json(body))
        .mount(server)
        .await;
}

/// GitHub with master and deploy at the same commit, no open pull request, and no CI
/// result on the commit yet.
async fn github() -> MockServer {
    let server = MockServer::start().await;
    let core = json!({ "limit": 5000, "remaining": 4990, "reset": 1800000000, "used": 10 });
    answer(
        &server,
        "/rate_limit",
        json!({ "resources": { "core": core }, "rate": core }),
    )
    .await;
    for branch in ["master", "deploy"] {
        let reference = json!({
            "ref": format!("refs/heads/{branch}"), "node_id": "REF",
            "url": format!("https://api.github.com{REPO}/git/refs/heads/{branch}"),
            "object": { "type": "commit", "sha": HEAD, "url": "" }
        });
        answer(
            &server,
            &format!("{REPO}/git/ref/heads/{branch}"),
            reference,
        )
        .await;
    }
    answer(
        &server,
        &format!("{REPO}/commits/{HEAD}/status"),
        json!({ "state": "pending", "statuses": [], "sha": HEAD, "total_count": 0 }),
    )
    .await;
    answer(
        &server,
        &format!("{REPO}/commits/{HEAD}/check-runs"),
        json!({ "total_count": 0, "check_runs": [] }),
    )
    .await;
    answer(
        &server,
        "/graphql",
        json!({ "data": { "repository": { "pullRequests": { "nodes": [] } } } }),
    )
    .await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pass_reads_github_and_prints_its_report() {
    let github = github().await;
    let connections = MockServer::start().await;
    let dir = std::env::temp_dir().join(format!("relay-reconcile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state.json");
    let _ = std::fs::remove_file(&state);

    let out = reconcile(&state, &github.uri(), Some(&connections.uri()));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert!(report["pass"].as_str().unwrap().starts_with("reconcile/"));
    assert_eq!(report["skipped"], Value::Null);
    assert_eq!(report["github_calls"], 6, "{report}");
    assert_eq!(
        report["checked"][0],
        format!("master at {HEAD}, deploy at {HEAD}")
    );
    // The deploy head has no verdict yet: watched in the state file, not yet said.
    let kept: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(kept["stalls"]["no-verdict"]["alerted"], false, "{kept}");
    assert!(connections.received_requests().await.unwrap().is_empty());
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_it_says_where_messages_would_go() {
    let github = github().await;
    let state =
        std::env::temp_dir().join(format!("relay-reconcile-none-{}.json", std::process::id()));
    let out = reconcile(&state, &github.uri(), None);
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(error.contains("WEBSOCKET_ENDPOINT"), "{error}");
    assert!(
        github.received_requests().await.unwrap().is_empty(),
        "nothing was read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_reads_and_says_and_changes_nothing() {
    let github = github().await;
    let dir = std::env::temp_dir().join(format!("relay-reconcile-dry-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state.json");
    let _ = std::fs::remove_file(&state);

    let out = reconcile_with(&["--dry-run"], &state, &github.uri(), None);
    assert!(
        out.status.success(),
        "no WEBSOCKET_ENDPOINT needed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stdout)));
    assert_eq!(report["dry_run"], true);
    assert_eq!(report["skipped"], Value::Null);
    // The deploy head has no verdict: the dry run says so, and would start watching it.
    let done: Vec<&str> = report["done"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap())
        .collect();
    assert!(
        done.iter()
            .any(|d| d.starts_with(&format!("no verdict for {HEAD} yet"))),
        "{done:?}"
    );
    assert!(
        done.contains(&"would start watching stall no-verdict"),
        "{done:?}"
    );
    let kept: Value =
        serde_json::from_slice(&std::fs::read(&state).unwrap_or_default()).unwrap_or(Value::Null);
    assert!(
        kept["stalls"].as_object().is_none_or(|s| s.is_empty()),
        "nothing stored: {kept}"
    );
    let requests = github.received_requests().await.unwrap();
    assert!(
        requests
            .iter()
            .all(|r| r.method.as_str() == "GET" || r.url.path() == "/graphql"),
        "GitHub was only read"
    );
    std::fs::remove_dir_all(&dir).ok();
}
