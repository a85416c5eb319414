//! `GET /status.json` and `GET /status` on the local gateway after a replayed chain (a bot
//! PR opened, approved and merged, deploy moved, CI passing, a subscribed Smokey), on each
//! store; and who may read them.

use std::sync::Arc;
use std::time::{Duration, Instant};

use build_relay::cable;
use build_relay::config::Secret;
use build_relay::overview::access::Access;
use build_relay::store::Store;
use integration_tests::cable_client::*;
use integration_tests::fake_github::FakeGitHub;
use integration_tests::*;
use relay_local::Running;
use serde_json::{Value, json};

const TOKEN: &str = "operator-token-0123456789";
const KEY: &str = "key-for-the-status-page-test";
const DEPLOY_SHA: &str = "9049f1265b7d61be4a8904a9a27120d2064dab3b";

async fn gateway(store: Arc<dyn Store>, public: bool) -> (Running, FakeGitHub) {
    let github = FakeGitHub::start().await;
    github.accept_deploy_moves().await;
    github
        .accept_merge(sample("github-api-pull-1234.json"))
        .await;
    let mut options = gateway_options(
        store,
        Duration::from_secs(60),
        github.client(),
        &[("smokey-status", KEY)],
    );
    options.status_access = Access {
        token: Some(Secret::new(TOKEN)),
        public,
    };
    (relay_local::Gateway::start(options).await.unwrap(), github)
}

/// The chain the demo replays: a bot PR opened and approved (merged), the push to master,
/// CI success on the deploy commit; with a Smokey subscribed throughout.
async fn replay_chain(gateway: &Running) -> Client {
    let mut smokey = connect(gateway).await;
    subscribe(&mut smokey, &identifier(cable::CHANNEL, KEY)).await;
    for (route, event, file, delivery) in [
        (
            "/github/pull_request_hook",
            "pull_request",
            "pull-request-opened.json",
            "d-open",
        ),
        (
            "/github/pr_merge",
            "status",
            "status-approval.json",
            "d-approve",
        ),
        (
            "/github/update_deploy_to_master",
            "push",
            "push-master.json",
            "d-push",
        ),
        (
            "/github/status_hook",
            "status",
            "status-deploy-success.json",
            "d-ci",
        ),
    ] {
        let answer = post_sample(gateway, route, event, file, delivery).await;
        assert_eq!(answer.status(), 200, "{file}");
    }
    smokey
}

async fn get(gateway: &Running, path: &str, bearer: Option<&str>) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut request = client.get(format!("{}{path}", gateway.url()));
    if let Some(token) = bearer {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

/// The overview once the four deliveries are in its index (written off the answer's path).
async fn overview(gateway: &Running) -> Value {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let answer = get(gateway, "/status.json", Some(TOKEN)).await;
        assert_eq!(answer.status(), 200);
        assert_eq!(answer.headers()["cache-control"], "no-store");
        let body: Value = answer.json().await.unwrap();
        if body["deliveries"].as_array().unwrap().len() >= 4 || Instant::now() > deadline {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn the_json_tells_the_whole_chain(backend: Backend) {
    let (gateway, _github) = gateway(store(backend).await, false).await;
    let _smokey = replay_chain(&gateway).await;
    let o = overview(&gateway).await;

    assert_eq!(o["public"], false);
    assert_eq!(o["heads"]["source"]["sha"], DEPLOY_SHA);
    assert_eq!(o["heads"]["deploy"]["sha"], DEPLOY_SHA);
    assert_eq!(o["heads"]["agree"], true);
    let deploy = &o["deploys"][0];
    assert_eq!(deploy["outcome"], "moved");
    assert_eq!(deploy["sha"], DEPLOY_SHA);
    assert_eq!(deploy["ci"], json!(["ci/circleci: success"]));
    assert_eq!(deploy["verdict"], "success");
    assert_eq!(deploy["verdict_sent_to"], 1);
    assert!(
        deploy["message"].as_str().unwrap().contains("--autopull"),
        "{deploy}"
    );

    let merges = o["merges"].as_array().unwrap();
    assert_eq!(merges.len(), 1, "{o}");
    assert_eq!(
        (merges[0]["number"].clone(), merges[0]["outcome"].clone()),
        (json!(1234), json!("merged"))
    );
    assert_eq!(o["open_pulls"], json!([]), "merged: no longer open");

    let smokeys = o["smokeys"].as_array().unwrap();
    assert_eq!(smokeys.len(), 1);
    assert_eq!(smokeys[0]["key_name"], "smokey-status");
    assert_eq!(
        smokeys[0]["last_frame"], smokeys[0]["outbox_head"],
        "took every frame"
    );
    assert!(smokeys[0]["last_post"].as_i64().is_some(), "{o}");

    let deliveries: Vec<(String, String)> = o["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["delivery_id"].as_str().unwrap().into(),
                d["outcome"].as_str().unwrap().into(),
            )
        })
        .collect();
    for id in ["d-open", "d-approve", "d-push", "d-ci"] {
        assert!(
            deliveries.contains(&(id.to_string(), "handled".to_string())),
            "{id} in {deliveries:?}"
        );
    }
    gateway.stop().await;
}

async fn the_html_page_shows_the_same(backend: Backend) {
    let (gateway, _github) = gateway(store(backend).await, false).await;
    let _smokey = replay_chain(&gateway).await;
    overview(&gateway).await;
    let page = get(&gateway, "/status", Some(TOKEN)).await;
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.unwrap();
    for expected in [
        "<h2>Heads</h2>",
        "9049f12",
        "Deploy is at the source branch's head.",
        "to 1 connection(s)",
        "#1234",
        "smokey-status",
        "d-approve",
    ] {
        assert!(html.contains(expected), "{expected} missing from the page");
    }
    gateway.stop().await;
}

on_both_stores!(the_json_tells_the_whole_chain, the_html_page_shows_the_same);

#[tokio::test]
async fn without_the_token_it_is_401_and_the_query_token_sets_a_cookie() {
    let (gateway, _github) = gateway(
        Arc::new(build_relay::store::embedded::EmbeddedStore::in_memory()),
        false,
    )
    .await;
    for path in ["/status", "/status.json"] {
        let denied = get(&gateway, path, None).await;
        assert_eq!(denied.status(), 401, "{path}");
        assert_eq!(denied.headers()["www-authenticate"], "Bearer");
        assert_eq!(get(&gateway, path, Some("wrong")).await.status(), 401);
    }
    let signed_in = get(&gateway, &format!("/status?token={TOKEN}"), None).await;
    assert_eq!(signed_in.status(), 303);
    assert_eq!(signed_in.headers()["location"], "/status");
    let cookie = signed_in.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    let with_cookie = reqwest::Client::new()
        .get(format!("{}/status.json", gateway.url()))
        .header("cookie", cookie.split(';').next().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(with_cookie.status(), 200);
    gateway.stop().await;
}

#[tokio::test]
async fn the_public_page_needs_no_token_and_hides_key_names() {
    let (gateway, _github) = gateway(
        Arc::new(build_relay::store::embedded::EmbeddedStore::in_memory()),
        true,
    )
    .await;
    let _smokey = replay_chain(&gateway).await;
    let public: Value = get(&gateway, "/status.json", None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(public["public"], true);
    assert_eq!(public["smokeys"][0]["key_name"], Value::Null);
    let html = get(&gateway, "/status", None).await.text().await.unwrap();
    assert!(!html.contains("smokey-status") && html.contains("(hidden)"));
    let operator: Value = get(&gateway, "/status.json", Some(TOKEN))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(operator["smokeys"][0]["key_name"], "smokey-status");
    gateway.stop().await;
}

/// Debian's chromium, headless, with the flags this machine's closed network needs, and a
/// profile of its own; fails, never skips, when it is not installed.
fn chromium(profile: &std::path::Path) -> tokio::process::Command {
    let binary = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]
        .into_iter()
        .find(|b| std::path::Path::new(b).is_file())
        .expect("chromium is not installed: scripts/test.sh installs Debian's chromium");
    let mut command = tokio::process::Command::new(binary);
    command
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    command
}

/// The page in a real browser: signed in once with `?token=`, the cookie carries the token
/// through the redirect, and the rendered page shows the chain. Its screenshot is kept as
/// `target/status-page.png` (docs/status-page.png is one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_headless_browser_signs_in_and_shows_the_chain() {
    let (gateway, _github) = gateway(
        Arc::new(build_relay::store::embedded::EmbeddedStore::in_memory()),
        false,
    )
    .await;
    let _smokey = replay_chain(&gateway).await;
    overview(&gateway).await;
    let profile = std::env::temp_dir().join(format!("relay-chromium-{}", std::process::id()));
    let url = format!("{}/status?token={TOKEN}", gateway.url());

    let dom = tokio::time::timeout(
        Duration::from_secs(60),
        chromium(&profile).arg("--dump-dom").arg(&url).output(),
    )
    .await
    .expect("chromium answers within 60 s")
    .expect("chromium runs");
    let dom = String::from_utf8_lossy(&dom.stdout);
    for expected in [
        "<title>build-relay status</title>",
        "Deploy is at the source branch's head.",
        "9049f12",
        "success at",
        "to 1 connection(s)",
        "#1234",
        "smokey-status",
        "d-ci",
    ] {
        assert!(
            dom.contains(expected),
            "{expected} not in the rendered page:\n{dom}"
        );
    }

    let target = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target");
    let shot = target.join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    let taken = tokio::time::timeout(
        Duration::from_secs(60),
        chromium(&profile)
            .arg(format!("--screenshot={}", shot.display()))
            .arg("--window-size=900,1500")
            .arg(&url)
            .output(),
    )
    .await
    .expect("chromium answers within 60 s")
    .expect("chromium runs");
    assert!(taken.status.success());
    let png = std::fs::read(&shot).expect("a screenshot was written");
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "{} bytes",
        png.len()
    );
    std::fs::remove_dir_all(&profile).ok();
    gateway.stop().await;
}
