//! Every file in `events/` sent to its function's binary (as the test command builds it)
//! through the Lambda Runtime API, against DynamoDB on moto, a local fake GitHub and a
//! recording @connections, and the answer checked.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use build_relay::config::Tables;
use build_relay::store::Connection;
use build_relay::store::dynamodb::DynamoStore;
use build_relay::store::{Commits, Connections, Outbox};
use build_relay::{clock, keys};
use integration_tests::fake_github::*;
use integration_tests::fake_metasmoke::FakeMetasmoke;
use integration_tests::runtime_api::{FunctionProcess, Outcome, RuntimeApi, function_binary};
use integration_tests::*;
use serde_json::{Value, json};
use wiremock::MockServer;

const EVENTS_SECRET: &str = "build-relay events secret";
const EVENTS_KEY: &str = "events-client-key-not-for-production";
const CONNECTION: &str = "L0SM9cOFvHcCIhw=";

/// The servers a function talks to, fresh for each invocation.
struct World {
    store: DynamoStore,
    tables: Tables,
    github: FakeGitHub,
    connections_api: MockServer,
}

impl World {
    async fn new() -> Self {
        let store = moto_store().await;
        let tables = store.tables().clone();
        keys::add(&store, "events", EVENTS_KEY, clock::now())
            .await
            .unwrap();
        let connections_api = accepting_connections_api().await;
        Self {
            store,
            tables,
            github: FakeGitHub::start().await,
            connections_api,
        }
    }

    /// A connection as `$connect` leaves it, subscribed to nothing yet.
    async fn connection(&self) {
        let connection = Connection::new(CONNECTION, None, clock::now());
        self.store.put_connection(&connection).await.unwrap();
    }

    /// A connection as `$connect` leaves it, subscribed as Smokey does.
    async fn subscribed_connection(&self) {
        let mut connection = Connection::new(CONNECTION, Some("192.0.2.10".into()), clock::now());
        connection
            .subscriptions
            .insert(json!({ "channel": "SmokeDetectorChannel", "key": EVENTS_KEY }).to_string());
        self.store.put_connection(&connection).await.unwrap();
    }

    /// Runs `binary` on the event `file` and returns what it answered.
    async fn invoke(&self, binary: &str, file: &str, extra_env: &[(&str, String)]) -> Value {
        let api = RuntimeApi::start(vec![event::<Value>(file)]).await;
        let _function =
            FunctionProcess::spawn(&function_binary(binary), &api, &self.env(extra_env));
        match api.outcome(1, Duration::from_secs(30)).await {
            Some(Outcome::Response { body, .. }) => body,
            other => panic!("{binary} on {file}: {other:?}"),
        }
    }

    /// The settings of a function against this world's servers, `extra` on top.
    fn env<'a>(&self, extra: &[(&'a str, String)]) -> Vec<(&'a str, String)> {
        let mut env = vec![
            ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint()),
            ("TABLE_NAME", self.tables.main.clone()),
            ("CONNECTIONS_TABLE", self.tables.connections.clone()),
            ("WEBSOCKET_ENDPOINT", self.connections_api.uri()),
            ("WEBHOOK_SECRET", EVENTS_SECRET.to_string()),
            ("GITHUB_TOKEN", TOKEN.to_string()),
            ("GITHUB_API_URL", self.github.url()),
        ];
        env.extend(extra.iter().cloned());
        env
    }

    /// The frames posted to @connections.
    async fn posted(&self) -> Vec<Value> {
        self.connections_api
            .received_requests()
            .await
            .unwrap()
            .iter()
            .map(|r| serde_json::from_slice(&r.body).unwrap())
            .collect()
    }
}

/// The event files every test below covers; `every_event_file_is_covered` holds them to it.
const COVERED: &[&str] = &[
    "github-status/deploy-success.json",
    "github-status/deploy-success.base64.json",
    "github-status/workflow-run-success.json",
    "github-status/check-run-success.json",
    "github-status/check-suite-failure.json",
    "github-push/push-master.json",
    "github-pull-request/opened.json",
    "github-pull-request/approval.json",
    "ws-connect/connect.json",
    "ws-disconnect/disconnect.json",
    "ws-message/subscribe.json",
    "ws-message/subscribe-unknown-key.json",
    "ws-message/unsubscribe.json",
    "ws-message/junk.json",
    "ws-keepalive/schedule.json",
    "reconcile/schedule.json",
    "status-page/status-json.json",
    "status-page/status-no-token.json",
    "status-page/sign-in.json",
];

fn status_code(answer: &Value) -> i64 {
    answer["statusCode"]
        .as_i64()
        .unwrap_or_else(|| panic!("no statusCode in {answer}"))
}

#[test]
fn every_event_file_is_covered() {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut found = BTreeSet::new();
    for dir in std::fs::read_dir(&root).unwrap() {
        let dir = dir.unwrap().path();
        if dir.is_dir() {
            for file in std::fs::read_dir(&dir).unwrap() {
                let file = file.unwrap().path();
                let name = file
                    .strip_prefix(&root)
                    .unwrap()
                    .to_string_lossy()
                    .into_owned();
                found.insert(name);
            }
        }
    }
    let covered: BTreeSet<String> = COVERED.iter().map(|s| s.to_string()).collect();
    assert_eq!(
        found, covered,
        "every file in events/ must be sent to its function by a test here"
    );
}

/// The status page through the Lambda path: the operator token opens the JSON, no token is
/// a 401, and `?token=` signs in with a Secure cookie (API Gateway's requests say https).
#[tokio::test]
async fn status_page_answers_by_the_token() {
    let world = World::new().await;
    world.subscribed_connection().await;
    let token = [(
        "STATUS_TOKEN",
        "events-status-token-not-for-production".to_string(),
    )];
    let json = world
        .invoke("status-page", "status-page/status-json.json", &token)
        .await;
    assert_eq!(status_code(&json), 200, "{json}");
    assert_eq!(json["headers"]["content-type"], "application/json");
    let overview: Value = serde_json::from_str(json["body"].as_str().unwrap()).unwrap();
    assert_eq!(overview["public"], false);
    assert_eq!(
        overview["smokeys"].as_array().unwrap().len(),
        1,
        "{overview}"
    );

    let denied = world
        .invoke("status-page", "status-page/status-no-token.json", &token)
        .await;
    assert_eq!(status_code(&denied), 401, "{denied}");

    let signed_in = world
        .invoke("status-page", "status-page/sign-in.json", &token)
        .await;
    assert_eq!(status_code(&signed_in), 303, "{signed_in}");
    let cookie = signed_in["headers"]["set-cookie"]
        .as_str()
        .unwrap_or_default();
    let cookie = match cookie.is_empty() {
        true => signed_in["cookies"][0].as_str().unwrap_or_default(),
        false => cookie,
    };
    assert!(cookie.contains("; Secure;"), "{signed_in}");
    assert_eq!(signed_in["headers"]["location"], "/status");
}

#[tokio::test]
async fn github_status_sends_the_verdict_to_subscribers() {
    for file in [
        "github-status/deploy-success.json",
        "github-status/deploy-success.base64.json",
    ] {
        let world = World::new().await;
        world.subscribed_connection().await;
        let answer = world.invoke("github-status", file, &[]).await;
        assert_eq!(status_code(&answer), 200, "{file}: {answer}");
        assert!(
            answer["body"]
                .as_str()
                .unwrap()
                .starts_with("Sent commit_status success"),
            "{answer}"
        );
        let frames = world.posted().await;
        assert_eq!(frames.len(), 1);
        assert_eq!(frames[0]["message"]["commit_status"]["status"], "success");
        assert_eq!(
            world
                .store
                .latest_statuses("9049f1265b7d61be4a8904a9a27120d2064dab3b")
                .await
                .unwrap()
                .len(),
            1
        );
    }
}

/// GitHub Actions results through `github-status`: a workflow run on `/github/check_hook`
/// decides a commit the relay deployed and is mirrored; a check run on `/github/status_hook`
/// decides after one read of the deploy branch and one of the commit; a check suite is
/// recorded only while `REQUIRED_CONTEXTS` is empty.
#[tokio::test]
async fn github_status_takes_actions_and_checks_results() {
    const SHA: &str = "9049f1265b7d61be4a8904a9a27120d2064dab3b";
    let world = World::new().await;
    world.subscribed_connection().await;
    world.github.accept_statuses().await;
    world
        .store
        .mark_deployed(SHA, "push", clock::now())
        .await
        .unwrap();
    let settings = [
        ("REQUIRED_CONTEXTS", "workflow:build".to_string()),
        ("MIRROR_STATUS_CONTEXT", "build-relay/ci".to_string()),
    ];
    let answer = world
        .invoke(
            "github-status",
            "github-status/workflow-run-success.json",
            &settings,
        )
        .await;
    assert_eq!(status_code(&answer), 200, "{answer}");
    let frames = world.posted().await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    let verdict = &frames[0]["message"]["commit_status"];
    assert_eq!(verdict["status"], "success");
    assert_eq!(
        verdict["ci_url"],
        "https://github.com/Charcoal-SE/SmokeDetector/actions/runs/4242"
    );
    assert_eq!(
        world.github.posted_statuses(SHA).await,
        vec![json!({
            "state": "success",
            "target_url": "https://github.com/Charcoal-SE/SmokeDetector/actions/runs/4242",
            "description": "CI passed: workflow:build",
            "context": "build-relay/ci",
        })]
    );

    let world = World::new().await;
    world.subscribed_connection().await;
    world.github.deploy_at(SHA).await;
    world
        .github
        .commit(SHA, "Merge pull request #1 --autopull")
        .await;
    let answer = world
        .invoke(
            "github-status",
            "github-status/check-run-success.json",
            &[("REQUIRED_CONTEXTS", "check_run:build".to_string())],
        )
        .await;
    assert_eq!(status_code(&answer), 200, "{answer}");
    let frames = world.posted().await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(
        frames[0]["message"]["commit_status"]["commit_message"],
        "Merge pull request #1 --autopull"
    );
    assert_eq!(
        world
            .github
            .requests("GET", "/git/ref/heads/deploy")
            .await
            .len(),
        1
    );

    let world = World::new().await;
    world.subscribed_connection().await;
    let answer = world
        .invoke(
            "github-status",
            "github-status/check-suite-failure.json",
            &[],
        )
        .await;
    assert_eq!(status_code(&answer), 200, "{answer}");
    assert!(
        answer["body"].as_str().unwrap().contains("recorded only"),
        "{answer}"
    );
    assert!(world.posted().await.is_empty());
    let recorded = world.store.latest_statuses(SHA).await.unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        (recorded[0].context.as_str(), recorded[0].state.as_str()),
        ("check_suite:github-actions", "failure")
    );
}

#[tokio::test]
async fn github_push_moves_deploy() {
    let world = World::new().await;
    world.subscribed_connection().await;
    world.github.accept_deploy_moves().await;
    let answer = world
        .invoke("github-push", "github-push/push-master.json", &[])
        .await;
    assert_eq!(status_code(&answer), 200, "{answer}");
    let patch = &world
        .github
        .requests("PATCH", "/git/refs/heads/deploy")
        .await[0];
    assert_eq!(
        json_of(patch),
        json!({ "sha": "9049f1265b7d61be4a8904a9a27120d2064dab3b", "force": false })
    );
    assert!(world.posted().await[0]["message"]["deploy_updated"].is_object());
}

#[tokio::test]
async fn github_pull_request_announces_and_merges() {
    let world = World::new().await;
    world.subscribed_connection().await;
    let answer = world
        .invoke(
            "github-pull-request",
            "github-pull-request/opened.json",
            &[],
        )
        .await;
    assert_eq!(
        (status_code(&answer), answer["body"].as_str().unwrap()),
        (200, "Announced #1234\n")
    );

    world
        .github
        .accept_merge(sample("github-api-pull-1234.json"))
        .await;
    let answer = world
        .invoke(
            "github-pull-request",
            "github-pull-request/approval.json",
            &[],
        )
        .await;
    assert_eq!(status_code(&answer), 200, "{answer}");
    assert!(
        answer["body"].as_str().unwrap().starts_with("Merged #1234"),
        "{answer}"
    );
    let merge = &world.github.requests("PUT", "/pulls/1234/merge").await[0];
    assert_eq!(json_of(merge)["merge_method"], "merge");
    let chat: Vec<String> = world
        .posted()
        .await
        .iter()
        .map(|f| f["message"]["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(chat.len(), 2);
    assert!(
        chat[1].starts_with("Merged SmokeDetector [#1234]"),
        "{chat:?}"
    );
}

#[tokio::test]
async fn ws_connect_and_disconnect_keep_the_table() {
    let world = World::new().await;
    let answer = world
        .invoke("ws-connect", "ws-connect/connect.json", &[])
        .await;
    assert_eq!(status_code(&answer), 200, "{answer}");
    let rows = world.store.connections(clock::now()).await.unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, CONNECTION);
    assert!(
        world.posted().await.is_empty(),
        "nothing is posted from $connect"
    );
    let answer = world
        .invoke("ws-disconnect", "ws-disconnect/disconnect.json", &[])
        .await;
    assert_eq!(status_code(&answer), 200, "{answer}");
    assert!(
        world
            .store
            .connections(clock::now())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn ws_message_answers_actioncable_commands() {
    let world = World::new().await;
    world.connection().await;
    for file in [
        "ws-message/subscribe.json",
        "ws-message/subscribe-unknown-key.json",
        "ws-message/junk.json",
        "ws-message/unsubscribe.json",
    ] {
        assert_eq!(
            status_code(&world.invoke("ws-message", file, &[]).await),
            200,
            "{file}"
        );
    }
    let kinds: Vec<Value> = world
        .posted()
        .await
        .iter()
        .map(|f| f["type"].clone())
        .collect();
    assert_eq!(
        kinds,
        [json!("confirm_subscription"), json!("reject_subscription")]
    );
    assert!(
        world.store.connections(clock::now()).await.unwrap()[0]
            .subscriptions
            .is_empty()
    );
}

#[tokio::test]
async fn ws_keepalive_pings_every_connection() {
    let world = World::new().await;
    world.subscribed_connection().await;
    let window = [
        ("KEEPALIVE_WINDOW_SECONDS", "2".to_string()),
        ("PING_INTERVAL_SECONDS", "1".to_string()),
    ];
    let answer = world
        .invoke("ws-keepalive", "ws-keepalive/schedule.json", &window)
        .await;
    assert_eq!(
        answer,
        json!({ "rounds": 2, "sent": 2, "gone": 0, "failed": 0, "stale_rounds": 0 })
    );
    assert!(world.posted().await.iter().all(|f| f["type"] == "ping"));
}

/// A reconcile pass through the Lambda Runtime API, against a stateful GitHub where master
/// moved and no push webhook came: deploy follows, and the subscriber hears of it.
#[tokio::test]
async fn reconcile_moves_a_deploy_left_behind() {
    let world = World::new().await;
    world.subscribed_connection().await;
    let repo = integration_tests::fake_repo::FakeRepo::start(&[("README.md", "hello\n")]).await;
    let first = repo.head("master").unwrap();
    repo.set_branch("deploy", &first);
    let head = repo.commit(
        "master",
        &[("README.md", Some("hello again\n"))],
        "Merge pull request #1 from Charcoal-SE/x --autopull",
    );
    let answer = world
        .invoke(
            "reconcile",
            "reconcile/schedule.json",
            &[("GITHUB_API_URL", repo.server.uri())],
        )
        .await;
    assert_eq!(answer["skipped"], Value::Null, "{answer}");
    assert!(
        answer["done"][0]
            .as_str()
            .unwrap()
            .contains("deploy behind master"),
        "{answer}"
    );
    assert_eq!(repo.head("deploy").unwrap(), head);
    let frames = world.posted().await;
    assert_eq!(
        frames[0]["message"]["deploy_updated"]["after"],
        head.as_str()
    );
    assert!(answer["github_calls"].as_u64().unwrap() >= 4, "{answer}");
}

#[tokio::test]
async fn ws_message_replays_what_a_returning_key_missed() {
    let world = World::new().await;
    world.connection().await;
    // The key got message 1 before it went away; 2 was sent while it was gone.
    let now = clock::now();
    for text in ["got it", "missed it"] {
        let message = json!({ "message": text }).to_string();
        world.store.append_outbox(&message, now).await.unwrap();
    }
    world.store.advance_cursor("events", 1, now).await.unwrap();
    let answer = world
        .invoke("ws-message", "ws-message/subscribe.json", &[])
        .await;
    assert_eq!(status_code(&answer), 200);
    let posted = world.posted().await;
    assert_eq!(posted.len(), 2, "{posted:?}");
    assert_eq!(posted[0]["type"], "confirm_subscription");
    assert_eq!(posted[1]["message"], json!({ "message": "missed it" }));
    assert_eq!(world.store.cursor("events").await.unwrap(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ws_keepalive_bridges_a_steady_stream_across_overlapping_windows_once_each() {
    const BRIDGE_KEY: &str = "the-bridges-own-metasmoke-key";
    const FRAMES: usize = 45;
    let world = World::new().await;
    world.subscribed_connection().await;
    let upstream = Arc::new(FakeMetasmoke::start(BRIDGE_KEY).await);
    // Both runs write the same fingerprints at once; moto is atomic only one at a time.
    let serial = serial_proxy(&dynamodb_endpoint()).await;
    let env = world.env(&[
        ("KEEPALIVE_WINDOW_SECONDS", "3".into()),
        ("BRIDGE_OVERLAP_SECONDS", "2".into()),
        ("PING_INTERVAL_SECONDS", "1".into()),
        ("METASMOKE_WS_URL", upstream.url()),
        ("METASMOKE_KEY", BRIDGE_KEY.into()),
        ("AWS_ENDPOINT_URL_DYNAMODB", serial),
    ]);
    let schedule = || vec![event::<Value>("ws-keepalive/schedule.json")];
    let binary = function_binary("ws-keepalive");

    // The first run subscribes; a steady stream starts; 1.5 s later the next run (another
    // Lambda instance) subscribes as well, while the first is still listening.
    let first_api = RuntimeApi::start(schedule()).await;
    let _first = FunctionProcess::spawn(&binary, &first_api, &env);
    upstream
        .wait_for_confirmed(1, Duration::from_secs(10))
        .await;
    let stream = {
        let upstream = Arc::clone(&upstream);
        tokio::spawn(async move {
            for n in 0..FRAMES {
                upstream.broadcast(&format!(r#"{{"naa":{{"post_link":"//so.com/q/{n}"}}}}"#));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let second_api = RuntimeApi::start(schedule()).await;
    let _second = FunctionProcess::spawn(&binary, &second_api, &env);
    upstream
        .wait_for_confirmed(2, Duration::from_secs(10))
        .await;
    stream.await.unwrap();

    let mut reports = Vec::new();
    for api in [&first_api, &second_api] {
        match api.outcome(1, Duration::from_secs(30)).await {
            Some(Outcome::Response { body, .. }) => reports.push(body),
            other => panic!("ws-keepalive: {other:?}"),
        }
    }
    let total = |key: &str| -> u64 {
        reports
            .iter()
            .map(|r| r["bridge"][key].as_u64().unwrap())
            .sum()
    };
    assert_eq!(total("forwarded"), FRAMES as u64, "{reports:?}");
    assert!(
        total("duplicates") > 0,
        "the windows overlapped: {reports:?}"
    );

    let mut seen = vec![0; FRAMES];
    for frame in world.posted().await {
        if let Some(link) = frame["message"]["naa"]["post_link"].as_str() {
            let n: usize = link.rsplit('/').next().unwrap().parse().unwrap();
            seen[n] += 1;
        }
    }
    assert_eq!(
        seen,
        vec![1; FRAMES],
        "each frame reached the client exactly once"
    );
}

#[tokio::test]
async fn a_missing_setting_stops_cold_start_with_one_line() {
    let api = RuntimeApi::start(vec![event::<Value>("ws-connect/connect.json")]).await;
    let mut function = FunctionProcess::spawn(&function_binary("ws-connect"), &api, &[]);
    let status = tokio::time::timeout(Duration::from_secs(10), function.child.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(!status.success());
    let mut stderr = String::new();
    use tokio::io::AsyncReadExt;
    function
        .child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .await
        .unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("TABLE_NAME is not set"), "{stderr}");
}
