//! `github-push` against a local fake GitHub answering with GitHub's real bodies and codes,
//! with the embedded store and DynamoDB on moto.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use build_relay::answer::Answer;
use build_relay::cable;
use build_relay::config::RelayConfig;
use build_relay::domain::DEPLOY_HISTORY;
use build_relay::handlers::push::PushHook;
use build_relay::handlers::webhook::Webhook;
use build_relay::notify::SmokeyMessage;
use build_relay::store::Store;
use http::StatusCode;
use integration_tests::fake_github::*;
use integration_tests::*;
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

const AFTER: &str = "9049f1265b7d61be4a8904a9a27120d2064dab3b";
const REF_DEPLOY: &str = "/git/refs/heads/deploy";

struct Harness {
    webhook: Webhook<PushHook>,
    store: Arc<dyn Store>,
    notifier: Arc<FlakyNotifier>,
    github: FakeGitHub,
}

async fn harness_with(backend: Backend, config: RelayConfig) -> Harness {
    let store = store(backend).await;
    let notifier = Arc::new(FlakyNotifier::default());
    let github = FakeGitHub::start().await;
    let client = github.client_for(&config.repository);
    let relay = test_relay(
        config,
        Arc::clone(&store),
        notifier.clone(),
        build_relay::clock::system(),
    );
    Harness {
        webhook: relay.push_hook(client),
        store,
        notifier,
        github,
    }
}

async fn harness(backend: Backend) -> Harness {
    harness_with(backend, RelayConfig::default()).await
}

fn push(git_ref: &str, after: &str) -> Value {
    let mut payload = sample("push-master.json");
    payload["ref"] = json!(git_ref);
    payload["after"] = json!(after);
    payload
}

fn ref_updated() -> Value {
    let mut body = api_fixture("git-update-ref.200.json");
    body["ref"] = json!("refs/heads/deploy");
    body["object"]["sha"] = json!(AFTER);
    body
}

fn comparison(status: &str, extra: &[(&str, &str)]) -> Value {
    let mut body = api_fixture("repos-compare-commits.200.json");
    let template = body["commits"][0].clone();
    body["status"] = json!(status);
    body["ahead_by"] = json!(extra.len());
    body["behind_by"] = json!(if status == "diverged" { 3 } else { 0 });
    body["total_commits"] = json!(extra.len());
    body["commits"] = extra
        .iter()
        .map(|(sha, message)| {
            let mut commit = template.clone();
            commit["sha"] = json!(sha);
            commit["commit"]["message"] = json!(message);
            commit
        })
        .collect();
    body
}

fn not_fast_forward() -> Value {
    error_body("Update is not a fast forward")
}

impl Harness {
    async fn deliver(&self, delivery: &str, payload: &Value) -> Answer {
        let body = serde_json::to_vec(payload).unwrap();
        self.webhook
            .handle(&github_headers("push", delivery, &body, TEST_SECRET), body)
            .await
    }

    async fn ref_updates(&self) -> Vec<Value> {
        self.github
            .requests("PATCH", REF_DEPLOY)
            .await
            .iter()
            .map(json_of)
            .collect()
    }

    async fn history_outcomes(&self) -> Vec<String> {
        self.store
            .history(DEPLOY_HISTORY, 20)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.outcome.as_str().to_string())
            .collect()
    }

    fn chat(&self) -> Vec<String> {
        self.notifier.chat()
    }
}

async fn a_push_to_master_fast_forwards_deploy(backend: Backend) {
    let h = harness(backend).await;
    h.github
        .answer("PATCH", REF_DEPLOY, 200, ref_updated())
        .await;
    let answer = h.deliver("d1", &push("refs/heads/master", AFTER)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(
        h.ref_updates().await,
        vec![json!({ "sha": AFTER, "force": false })]
    );
    let request = &h.github.requests("PATCH", REF_DEPLOY).await[0];
    assert_eq!(request.headers["authorization"], format!("Bearer {TOKEN}"));
    let sent = h.notifier.messages();
    assert_eq!(sent.len(), 1);
    let SmokeyMessage::DeployUpdated(payload) = &sent[0] else {
        panic!("{sent:?}")
    };
    assert_eq!(
        payload,
        &push("refs/heads/master", AFTER),
        "a small push is relayed whole"
    );
    assert!(
        h.store.is_deployed(AFTER).await.unwrap(),
        "status rules now see the commit on deploy"
    );
    assert_eq!(h.history_outcomes().await, ["moved"]);
}

/// GitHub refuses to move deploy to `AFTER` (not a fast forward), and the comparison says
/// deploy holds it: `compared`.
async fn deploy_already_has_it(h: &Harness, compared: Value) {
    h.github
        .answer("PATCH", REF_DEPLOY, 422, not_fast_forward())
        .await;
    h.github
        .answer("GET", &format!("/compare/{AFTER}...deploy"), 200, compared)
        .await;
}

async fn a_late_push_already_on_deploy_is_fine(backend: Backend) {
    let h = harness(backend).await;
    deploy_already_has_it(&h, comparison("ahead", &[("abc", "newer")])).await;
    let answer = h.deliver("late", &push("refs/heads/master", AFTER)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert!(answer.reason.contains("already contains"), "{answer:?}");
    assert!(
        h.notifier.messages().is_empty(),
        "no alert, no deploy_updated"
    );
    assert_eq!(h.history_outcomes().await, ["already-contained"]);
}

/// The move went through but `deploy_updated` could not be sent; by the redelivery GitHub
/// answers the same move "not a fast forward" (deploy has it, or more). The redelivery,
/// taking over the claim of its own earlier attempt, tells the Smokeys: once.
async fn a_move_told_by_its_redelivery_through_already_contains(backend: Backend) {
    let h = harness(backend).await;
    h.github
        .answer_first(
            "PATCH",
            REF_DEPLOY,
            1,
            ResponseTemplate::new(200).set_body_json(ref_updated()),
        )
        .await;
    deploy_already_has_it(&h, comparison("identical", &[])).await;
    h.notifier.failing.store(true, Ordering::SeqCst);
    let failed = h.deliver("d1", &push("refs/heads/master", AFTER)).await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE, "{failed:?}");
    h.notifier.failing.store(false, Ordering::SeqCst);
    let redelivered = h.deliver("d1", &push("refs/heads/master", AFTER)).await;
    assert_eq!(redelivered.status, StatusCode::OK, "{redelivered:?}");
    assert!(
        redelivered.reason.contains("already contains"),
        "{redelivered:?}"
    );
    let kinds: Vec<&str> = h.notifier.messages().iter().map(|m| m.kind()).collect();
    assert_eq!(kinds, ["deploy_updated"]);
    // A replay under a new delivery id: done already, nothing more.
    let replay = h.deliver("d2", &push("refs/heads/master", AFTER)).await;
    assert_eq!(replay.status, StatusCode::OK, "{replay:?}");
    assert_eq!(h.notifier.messages().len(), 1);
    assert_eq!(h.ref_updates().await.len(), 2);
}

async fn a_diverged_deploy_is_reported_never_forced(backend: Backend) {
    let h = harness(backend).await;
    h.github
        .answer("PATCH", REF_DEPLOY, 422, not_fast_forward())
        .await;
    let extra = [
        (
            "1111111aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "Hotfix on deploy\n\ndetails",
        ),
        ("2222222bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "Another"),
    ];
    h.github
        .answer(
            "GET",
            &format!("/compare/{AFTER}...deploy"),
            200,
            comparison("diverged", &extra),
        )
        .await;
    let answer = h.deliver("d1", &push("refs/heads/master", AFTER)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(
        h.ref_updates().await,
        vec![json!({ "sha": AFTER, "force": false })],
        "one try, never forced"
    );
    let chat = h.chat();
    assert_eq!(chat.len(), 1);
    assert!(
        chat[0]
            .contains("deploy has diverged from master: 2 commit(s) on deploy are not on master"),
        "{}",
        chat[0]
    );
    assert!(
        chat[0].contains("1111111 Hotfix on deploy; 2222222 Another"),
        "{}",
        chat[0]
    );
    assert!(
        chat[0].ends_with(
            "git checkout master && git merge --rebase deploy && git push origin master"
        )
    );
    let history = h.store.history(DEPLOY_HISTORY, 5).await.unwrap();
    assert_eq!(history[0].outcome.as_str(), "diverged");
    assert_eq!(history[0].detail["extra_commits"][0], extra[0].0);
}

async fn a_stray_commit_on_deploy_is_reported(backend: Backend) {
    let h = harness(backend).await;
    let stray = "3333333ccccccccccccccccccccccccccccccccc";
    h.github
        .answer(
            "GET",
            &format!("/compare/master...{stray}"),
            200,
            comparison("ahead", &[(stray, "Committed to deploy by hand")]),
        )
        .await;
    let answer = h.deliver("d1", &push("refs/heads/deploy", stray)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let chat = h.chat();
    assert!(chat[0].contains("a commit was pushed to deploy directly: 1 commit(s) on deploy are not on master: 3333333 Committed to deploy by hand"), "{chat:?}");
    assert!(
        h.github.writes().await.is_empty(),
        "nothing is moved or forced"
    );
    assert_eq!(h.history_outcomes().await, ["stray-commit"]);
}

async fn the_relays_own_move_of_deploy_is_not_a_stray(backend: Backend) {
    let h = harness(backend).await;
    h.github
        .answer("PATCH", REF_DEPLOY, 200, ref_updated())
        .await;
    h.deliver("master", &push("refs/heads/master", AFTER)).await;
    let answer = h.deliver("deploy", &push("refs/heads/deploy", AFTER)).await;
    assert!(
        answer.reason.contains("where the relay moved it"),
        "{answer:?}"
    );
    assert!(
        h.github
            .requests("GET", &format!("/compare/master...{AFTER}"))
            .await
            .is_empty()
    );
    assert!(h.chat().is_empty());
}

async fn a_push_of_two_thousand_commits_fits_one_frame(backend: Backend) {
    let h = harness(backend).await;
    h.github
        .answer("PATCH", REF_DEPLOY, 200, ref_updated())
        .await;
    let mut payload = push("refs/heads/master", AFTER);
    let commit = payload["commits"][0].clone();
    payload["commits"] = (0..2000).map(|_| commit.clone()).collect();
    assert!(payload.to_string().len() > 1_000_000);
    assert_eq!(h.deliver("big", &payload).await.status, StatusCode::OK);
    let SmokeyMessage::DeployUpdated(sent) = &h.notifier.messages()[0] else {
        panic!()
    };
    let identifier = r#"{"channel":"SmokeDetectorChannel","key":"a-64-character-client-key-0000000000000000000000000000000000000"}"#;
    let frame = cable::message(
        identifier,
        &SmokeyMessage::DeployUpdated(sent.clone()).to_json(),
    );
    assert!(
        frame.len() < cable::MAX_FRAME_BYTES,
        "{} bytes",
        frame.len()
    );
    for key in ["ref", "before", "after", "compare", "pusher"] {
        assert_eq!(sent[key], payload[key], "{key}");
    }
    for key in ["id", "message", "timestamp", "url", "author"] {
        assert_eq!(
            sent["head_commit"][key], payload["head_commit"][key],
            "head_commit.{key}"
        );
    }
    assert!(
        sent["head_commit"].get("added").is_none(),
        "file lists are dropped"
    );
    assert_eq!(sent["repository"]["full_name"], "Charcoal-SE/SmokeDetector");
}

async fn a_server_error_then_success_moves_once(backend: Backend) {
    let h = harness(backend).await;
    h.github
        .answer_first(
            "PATCH",
            REF_DEPLOY,
            1,
            ResponseTemplate::new(502).set_body_json(error_body("Server Error")),
        )
        .await;
    h.github
        .answer("PATCH", REF_DEPLOY, 200, ref_updated())
        .await;
    assert_eq!(
        h.deliver("d1", &push("refs/heads/master", AFTER))
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(h.ref_updates().await.len(), 2, "one failed try, one move");
    assert_eq!(h.notifier.messages().len(), 1);
    assert_eq!(h.history_outcomes().await, ["moved"]);
}

async fn github_down_answers_5xx_and_the_redelivery_moves_it(backend: Backend) {
    let h = harness(backend).await;
    h.github
        .answer_first(
            "PATCH",
            REF_DEPLOY,
            3,
            ResponseTemplate::new(503).set_body_json(error_body("Service Unavailable")),
        )
        .await;
    let failed = h.deliver("d1", &push("refs/heads/master", AFTER)).await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE, "{failed:?}");
    assert!(h.notifier.messages().is_empty());
    h.github
        .answer("PATCH", REF_DEPLOY, 200, ref_updated())
        .await;
    let redelivered = h.deliver("d1", &push("refs/heads/master", AFTER)).await;
    assert_eq!(redelivered.status, StatusCode::OK, "{redelivered:?}");
    assert_eq!(h.notifier.messages().len(), 1);
    assert_eq!(h.history_outcomes().await, ["moved", "failed"]);
}

async fn a_rate_limit_is_waited_out_when_short(backend: Backend) {
    let h = harness(backend).await;
    let limited = ResponseTemplate::new(403)
        .insert_header("retry-after", "1")
        .set_body_json(error_body("You have exceeded a secondary rate limit. Please wait a few minutes before you try again."));
    h.github.answer_first("PATCH", REF_DEPLOY, 1, limited).await;
    h.github
        .answer("PATCH", REF_DEPLOY, 200, ref_updated())
        .await;
    let started = std::time::Instant::now();
    assert_eq!(
        h.deliver("d1", &push("refs/heads/master", AFTER))
            .await
            .status,
        StatusCode::OK
    );
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "retry-after was honoured"
    );
}

async fn a_long_rate_limit_fails_fast_for_a_redelivery(backend: Backend) {
    let h = harness(backend).await;
    let reset = build_relay::clock::now() + 3600;
    let limited = ResponseTemplate::new(429)
        .insert_header("x-ratelimit-remaining", "0")
        .insert_header("x-ratelimit-reset", reset.to_string().as_str())
        .set_body_json(error_body("API rate limit exceeded"));
    h.github.answer("PATCH", REF_DEPLOY, 429, json!({})).await;
    h.github.answer_first("PATCH", REF_DEPLOY, 5, limited).await;
    let started = std::time::Instant::now();
    let answer = h.deliver("d1", &push("refs/heads/master", AFTER)).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE, "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "GitHub waits 10 s for an answer"
    );
    assert_eq!(h.ref_updates().await.len(), 1);
}

async fn a_duplicate_delivery_updates_the_ref_once(backend: Backend) {
    let h = harness(backend).await;
    h.github
        .answer("PATCH", REF_DEPLOY, 200, ref_updated())
        .await;
    h.deliver("d1", &push("refs/heads/master", AFTER)).await;
    let again = h.deliver("d1", &push("refs/heads/master", AFTER)).await;
    assert!(again.reason.contains("handled already"), "{again:?}");
    assert_eq!(h.ref_updates().await.len(), 1);
    assert_eq!(h.notifier.messages().len(), 1);
}

async fn other_branches_tags_and_deletions_make_no_call(backend: Backend) {
    let h = harness(backend).await;
    let mut deletion = push("refs/heads/master", &"0".repeat(40));
    deletion["deleted"] = json!(true);
    for (delivery, payload) in [
        ("feature", push("refs/heads/feature", AFTER)),
        ("tag", push("refs/tags/v1", AFTER)),
        ("deletion", deletion),
    ] {
        let answer = h.deliver(delivery, &payload).await;
        assert_eq!(answer.status, StatusCode::OK, "{delivery}");
        assert!(
            answer.reason.contains("not interested"),
            "{delivery}: {answer:?}"
        );
    }
    assert!(h.github.was_not_called().await);
    assert!(h.history_outcomes().await.is_empty());
}

async fn a_replayed_push_has_no_second_effect(backend: Backend) {
    let h = harness(backend).await;
    h.github
        .answer("PATCH", REF_DEPLOY, 200, ref_updated())
        .await;
    let first = h.deliver("d1", &push("refs/heads/master", AFTER)).await;
    assert!(first.reason.starts_with("Moved deploy"), "{first:?}");
    // The same signed body again under a new delivery id, as a replay would send it.
    let replay = h.deliver("replay", &push("refs/heads/master", AFTER)).await;
    assert_eq!(replay.status, StatusCode::OK, "{replay:?}");
    assert!(replay.reason.contains("done already"), "{replay:?}");
    assert_eq!(h.ref_updates().await.len(), 1);
    assert_eq!(h.notifier.messages().len(), 1, "one deploy_updated");
}

async fn a_push_of_a_commit_github_lacks_is_answered_200(backend: Backend) {
    let h = harness(backend).await;
    h.github
        .answer(
            "PATCH",
            REF_DEPLOY,
            422,
            error_body("Object does not exist"),
        )
        .await;
    h.github
        .answer(
            "GET",
            &format!("/compare/{AFTER}...deploy"),
            404,
            error_body("Not Found"),
        )
        .await;
    let answer = h.deliver("d1", &push("refs/heads/master", AFTER)).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert!(answer.reason.contains("404"), "{answer:?}");
    assert!(h.notifier.messages().is_empty());
    assert_eq!(h.history_outcomes().await, ["unknown-commit"]);
}

on_both_stores!(
    a_replayed_push_has_no_second_effect,
    a_push_of_a_commit_github_lacks_is_answered_200,
    a_push_to_master_fast_forwards_deploy,
    a_late_push_already_on_deploy_is_fine,
    a_move_told_by_its_redelivery_through_already_contains,
    a_diverged_deploy_is_reported_never_forced,
    a_stray_commit_on_deploy_is_reported,
    the_relays_own_move_of_deploy_is_not_a_stray,
    a_push_of_two_thousand_commits_fits_one_frame,
    a_server_error_then_success_moves_once,
    github_down_answers_5xx_and_the_redelivery_moves_it,
    a_rate_limit_is_waited_out_when_short,
    a_long_rate_limit_fails_fast_for_a_redelivery,
    a_duplicate_delivery_updates_the_ref_once,
    other_branches_tags_and_deletions_make_no_call,
);

#[tokio::test]
async fn the_real_push_payloads_are_handled() {
    let config = RelayConfig {
        repository: "Codertocat/Hello-World".into(),
        ..RelayConfig::default()
    };
    let h = harness_with(Backend::Embedded, config).await;
    answer_deploy_moves_for_codertocat(&h).await;
    for (n, file) in webhook_fixtures("push").into_iter().enumerate() {
        let payload: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        let answer = h.deliver(&format!("fixture-{n}"), &payload).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{}: {answer:?}",
            file.display()
        );
        if payload["deleted"] == json!(true) {
            assert!(
                answer.reason.contains("deleted; not interested"),
                "{}: {answer:?}",
                file.display()
            );
        }
    }
}

async fn answer_deploy_moves_for_codertocat(h: &Harness) {
    use wiremock::Mock;
    use wiremock::matchers::{method, path};
    Mock::given(method("PATCH"))
        .and(path("/repos/Codertocat/Hello-World/git/refs/heads/deploy"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ref_updated()))
        .mount(&h.github.server)
        .await;
}
