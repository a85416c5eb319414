//! GitHub Actions and checks beside CircleCI statuses (issue 13): the status route and the
//! push route sharing one store, one set of Smokeys and a fake GitHub, with the embedded
//! store and DynamoDB on moto.

use std::sync::Arc;

use build_relay::answer::Answer;
use build_relay::config::RelayConfig;
use build_relay::domain::CiSource;
use build_relay::handlers::push::PushHook;
use build_relay::handlers::status::StatusHook;
use build_relay::handlers::webhook::Webhook;
use build_relay::notify::SmokeyMessage;
use build_relay::store::{Store, Verdict};
use http::StatusCode;
use integration_tests::fake_github::*;
use integration_tests::*;
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

/// The commit under test: the push sample's `after`.
const SHA: &str = "9049f1265b7d61be4a8904a9a27120d2064dab3b";
/// Where deploy is before the push moves it.
const BEFORE: &str = "aa218f56b14c9653891f9e74264a383fa43fefbd";
const CIRCLE: &str = "ci/circleci: build";
const WORKFLOW: &str = "workflow:build";
const MIRROR: &str = "build-relay/ci";
const RUN_URL: &str = "https://github.com/Charcoal-SE/SmokeDetector/actions/runs/4242";
const MESSAGE: &str =
    "Merge pull request #1234 from Charcoal-SE/auto-blacklist-1700000000 --autopull";

struct Harness {
    status: Webhook<StatusHook>,
    push: Webhook<PushHook>,
    store: Arc<dyn Store>,
    notifier: Arc<FlakyNotifier>,
    github: FakeGitHub,
}

async fn harness(backend: Backend, required: &[&str], mirror: Option<&str>) -> Harness {
    let config = RelayConfig {
        required_contexts: required.iter().map(|c| c.to_string()).collect(),
        mirror_status_context: mirror.map(String::from),
        ..RelayConfig::default()
    };
    let store = store(backend).await;
    let notifier = Arc::new(FlakyNotifier::default());
    let github = FakeGitHub::start().await;
    github.deploy_at(BEFORE).await;
    github.accept_deploy_moves().await;
    github.accept_statuses().await;
    let relay = test_relay(
        config,
        Arc::clone(&store),
        notifier.clone(),
        build_relay::clock::system(),
    );
    Harness {
        status: relay.status_hook(github.client()),
        push: relay.push_hook(github.client()),
        store,
        notifier,
        github,
    }
}

/// Deploy is at the commit, as the relay moved it there.
async fn deployed(h: &Harness) {
    h.store
        .mark_deployed(SHA, "push", build_relay::clock::now())
        .await
        .unwrap();
}

fn read(path: &str) -> Value {
    serde_json::from_slice(&std::fs::read(fixtures_dir().join(path)).unwrap()).unwrap()
}

fn ours(payload: &mut Value) {
    payload["repository"]["full_name"] = json!("Charcoal-SE/SmokeDetector");
}

/// A CircleCI status of GitHub's real shape, on master only (`branches[]` lacks deploy).
fn circle(state: &str, id: u64) -> (&'static str, Value) {
    let mut payload = read("github/status/payload.json");
    ours(&mut payload);
    payload["id"] = json!(id);
    payload["sha"] = json!(SHA);
    payload["context"] = json!(CIRCLE);
    payload["state"] = json!(state);
    payload["target_url"] = json!(format!(
        "https://circleci.com/gh/Charcoal-SE/SmokeDetector/{id}"
    ));
    payload["updated_at"] = json!("2026-11-24T10:00:00Z");
    payload["commit"]["commit"]["message"] = json!(MESSAGE);
    payload["branches"] =
        json!([{ "name": "master", "commit": { "sha": SHA, "url": "" }, "protected": false }]);
    ("status", payload)
}

/// The relay's own mirrored status coming back as a webhook.
fn mirrored(state: &str) -> (&'static str, Value) {
    let (event, mut payload) = circle(state, 77);
    payload["context"] = json!(MIRROR);
    payload["sender"]["login"] = json!("smokey-relay[bot]");
    (event, payload)
}

/// A completed run of the `build` workflow (GitHub's real `workflow_run` shape).
fn workflow(conclusion: &str) -> (&'static str, Value) {
    let mut payload = read("github/workflow_run/completed.payload.json");
    ours(&mut payload);
    let run = &mut payload["workflow_run"];
    run["name"] = json!("build");
    run["head_sha"] = json!(SHA);
    run["conclusion"] = json!(conclusion);
    run["html_url"] = json!(RUN_URL);
    run["updated_at"] = json!("2026-11-24T10:01:00Z");
    run["head_commit"]["message"] = json!(MESSAGE);
    payload["workflow"]["name"] = json!("build");
    ("workflow_run", payload)
}

/// A completed check run named `build` (its payload carries no commit message).
fn check_run(conclusion: &str) -> (&'static str, Value) {
    let mut payload = read("github/check_run/completed.payload.json");
    ours(&mut payload);
    let run = &mut payload["check_run"];
    run["name"] = json!("build");
    run["head_sha"] = json!(SHA);
    run["conclusion"] = json!(conclusion);
    run["html_url"] = json!(RUN_URL);
    ("check_run", payload)
}

/// A completed check suite of GitHub Actions.
fn check_suite(conclusion: &str) -> (&'static str, Value) {
    let mut payload = read("github/check_suite/completed.payload.json");
    ours(&mut payload);
    let suite = &mut payload["check_suite"];
    suite["head_sha"] = json!(SHA);
    suite["conclusion"] = json!(conclusion);
    suite["app"]["slug"] = json!("github-actions");
    ("check_suite", payload)
}

fn verdict(state: &str, ci_url: &str) -> SmokeyMessage {
    SmokeyMessage::CommitStatus(Verdict {
        sha: SHA.into(),
        state: state.into(),
        ci_url: Some(ci_url.into()),
        commit_message: MESSAGE.into(),
    })
}

fn circle_url(id: u64) -> String {
    format!("https://circleci.com/gh/Charcoal-SE/SmokeDetector/{id}")
}

impl Harness {
    async fn deliver(&self, delivery: &str, (event, payload): &(&str, Value)) -> Answer {
        let body = serde_json::to_vec(payload).unwrap();
        let answer = self
            .status
            .handle(&github_headers(event, delivery, &body, TEST_SECRET), body)
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{delivery}: {answer:?}");
        answer
    }

    /// GitHub's push of the commit to master: the push route moves deploy there.
    async fn push(&self, delivery: &str) -> Answer {
        let body = serde_json::to_vec(&sample("push-master.json")).unwrap();
        let answer = self
            .push
            .handle(&github_headers("push", delivery, &body, TEST_SECRET), body)
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
        answer
    }

    fn verdicts(&self) -> Vec<SmokeyMessage> {
        self.notifier
            .messages()
            .into_iter()
            .filter(|m| matches!(m, SmokeyMessage::CommitStatus(_)))
            .collect()
    }
}

async fn both_services_decide_in_either_order(backend: Backend) {
    for workflow_first in [true, false] {
        let h = harness(backend, &[CIRCLE, WORKFLOW], None).await;
        deployed(&h).await;
        let (first, second) = match workflow_first {
            true => (workflow("success"), circle("success", 10)),
            false => (circle("success", 10), workflow("success")),
        };
        let waiting = h.deliver("first", &first).await;
        assert!(
            waiting.reason.starts_with("Waiting for required contexts"),
            "{waiting:?}"
        );
        assert!(h.verdicts().is_empty());
        let decided = h.deliver("second", &second).await;
        assert!(
            decided.reason.starts_with("Sent commit_status success"),
            "{decided:?}"
        );
        let url = match workflow_first {
            true => circle_url(10),
            false => RUN_URL.to_string(),
        };
        assert_eq!(h.verdicts(), vec![verdict("success", &url)]);
        // Redeliveries and new deliveries of the same results send nothing more.
        h.deliver("first", &first).await;
        h.deliver("again", &second).await;
        h.deliver("suite", &check_suite("success")).await;
        assert_eq!(h.verdicts().len(), 1, "workflow first: {workflow_first}");
    }
}

async fn either_failure_decides_at_once(backend: Backend) {
    let h = harness(backend, &[CIRCLE, WORKFLOW], None).await;
    deployed(&h).await;
    let failed = h.deliver("wf", &workflow("timed_out")).await;
    assert!(
        failed.reason.starts_with("Sent commit_status failure"),
        "{failed:?}"
    );
    h.deliver("circle", &circle("success", 10)).await;
    assert_eq!(h.verdicts(), vec![verdict("failure", RUN_URL)]);

    let h = harness(backend, &[CIRCLE, WORKFLOW], None).await;
    deployed(&h).await;
    h.deliver("circle", &circle("error", 11)).await;
    h.deliver("wf", &workflow("success")).await;
    assert_eq!(h.verdicts(), vec![verdict("error", &circle_url(11))]);
}

async fn concurrent_deliveries_of_both_send_one_verdict(backend: Backend) {
    let h = Arc::new(harness(backend, &[CIRCLE, WORKFLOW], Some(MIRROR)).await);
    deployed(&h).await;
    let deliveries = (0..8).map(|i| {
        let h = Arc::clone(&h);
        let result = match i % 2 {
            0 => circle("success", 10),
            _ => workflow("success"),
        };
        // Some share a delivery id, as a redelivery racing its original would.
        let id = match i % 4 {
            0 | 1 => format!("same-{}", i % 2),
            _ => format!("d{i}"),
        };
        tokio::spawn(async move {
            let body = serde_json::to_vec(&result.1).unwrap();
            h.status
                .handle(&github_headers(result.0, &id, &body, TEST_SECRET), body)
                .await
        })
    });
    for delivery in deliveries.collect::<Vec<_>>() {
        assert_done_or_in_flight(&delivery.await.unwrap());
    }
    // Each delivery records its result before it reads the others, so at least one of
    // them saw both.
    assert_eq!(h.verdicts().len(), 1, "{:?}", h.verdicts());
    assert_eq!(h.github.posted_statuses(SHA).await.len(), 1);
}

async fn an_actions_only_commit_decides_through_workflow_run(backend: Backend) {
    let h = harness(backend, &[WORKFLOW], None).await;
    deployed(&h).await;
    h.deliver("wf", &workflow("success")).await;
    assert_eq!(h.verdicts(), vec![verdict("success", RUN_URL)]);
    assert!(
        h.github
            .requests("GET", &format!("/commits/{SHA}"))
            .await
            .is_empty(),
        "the workflow run carries the message"
    );
}

async fn a_check_run_verdict_reads_the_message_once(backend: Backend) {
    let h = harness(backend, &["check_run:build"], None).await;
    deployed(&h).await;
    h.github.commit(SHA, MESSAGE).await;
    h.deliver("run", &check_run("failure")).await;
    assert_eq!(h.verdicts(), vec![verdict("failure", RUN_URL)]);
    assert_eq!(
        h.github
            .requests("GET", &format!("/commits/{SHA}"))
            .await
            .len(),
        1
    );
    // Delivered again under a new id: decided already, and the commit is not read again.
    let again = h.deliver("run-again", &check_run("failure")).await;
    assert!(again.reason.contains("decided already"), "{again:?}");
    assert_eq!(
        h.github
            .requests("GET", &format!("/commits/{SHA}"))
            .await
            .len(),
        1
    );
}

async fn without_required_contexts_checks_are_recorded_only(backend: Backend) {
    let h = harness(backend, &[], None).await;
    deployed(&h).await;
    for (id, result) in [
        ("wf", workflow("failure")),
        ("run", check_run("failure")),
        ("suite", check_suite("failure")),
    ] {
        let answer = h.deliver(id, &result).await;
        assert!(answer.reason.contains("recorded only"), "{answer:?}");
    }
    let mut sources: Vec<(String, CiSource, String)> = h
        .store
        .latest_statuses(SHA)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.context, s.source, s.state))
        .collect();
    sources.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        sources,
        vec![
            (
                "check_run:build".into(),
                CiSource::CheckRun,
                "failure".into()
            ),
            (
                "check_suite:github-actions".into(),
                CiSource::CheckSuite,
                "failure".into()
            ),
            (WORKFLOW.into(), CiSource::WorkflowRun, "failure".into()),
        ]
    );
    assert!(h.verdicts().is_empty());
    assert!(h.github.was_not_called().await);
    // Statuses decide as they always did: the first final one.
    h.deliver("circle", &circle("success", 10)).await;
    assert_eq!(h.verdicts(), vec![verdict("success", &circle_url(10))]);
}

async fn a_result_before_the_push_is_decided_after_the_move(backend: Backend) {
    for (required, early) in [
        (&[WORKFLOW][..], workflow("success")),
        (&[][..], circle("failure", 12)),
    ] {
        let h = harness(backend, required, None).await;
        let recorded = h.deliver("early", &early).await;
        assert_eq!(
            recorded.reason,
            format!("Not a commit on deploy (its head is {BEFORE}); recorded only")
        );
        assert!(h.verdicts().is_empty());
        let moved = h.push("push").await;
        assert!(moved.reason.contains("Sent commit_status"), "{moved:?}");
        assert_eq!(h.verdicts().len(), 1, "{required:?}");
        let SmokeyMessage::CommitStatus(sent) = &h.verdicts()[0] else {
            unreachable!()
        };
        assert_eq!(sent.commit_message.lines().next(), Some(MESSAGE));
        // The same push again, and the same result again: nothing more.
        h.push("push-again").await;
        h.deliver("early-again", &early).await;
        assert_eq!(h.verdicts().len(), 1, "{required:?}");
        let order: Vec<&str> = h.notifier.messages().iter().map(|m| m.kind()).collect();
        assert_eq!(order, ["deploy_updated", "commit_status"]);
    }
}

async fn a_push_racing_a_result_sends_one_verdict(backend: Backend) {
    for round in 0..4 {
        let h = Arc::new(harness(backend, &[WORKFLOW], None).await);
        let pushing = {
            let h = Arc::clone(&h);
            tokio::spawn(async move { h.push("push").await })
        };
        let reporting = {
            let h = Arc::clone(&h);
            tokio::spawn(async move { h.deliver("wf", &workflow("success")).await })
        };
        pushing.await.unwrap();
        reporting.await.unwrap();
        // The result is recorded before the deploy record is read, and the deploy record
        // written before the results are read: one of the two always sees the other.
        assert_eq!(h.verdicts().len(), 1, "round {round}");
    }
}

async fn neutral_and_skipped_never_decide(backend: Backend) {
    let h = harness(backend, &[WORKFLOW], None).await;
    deployed(&h).await;
    for (id, conclusion) in [("neutral", "neutral"), ("skipped", "skipped")] {
        let answer = h.deliver(id, &workflow(conclusion)).await;
        assert!(
            answer.reason.starts_with("Waiting for required contexts"),
            "{answer:?}"
        );
    }
    let h = harness(backend, &[], None).await;
    deployed(&h).await;
    h.deliver("suite", &check_suite("skipped")).await;
    h.deliver("run", &check_run("neutral")).await;
    assert!(h.verdicts().is_empty());
    assert!(h.github.was_not_called().await);
}

async fn the_mirror_is_posted_once_and_never_decides(backend: Backend) {
    let h = harness(backend, &[CIRCLE, WORKFLOW], Some(MIRROR)).await;
    deployed(&h).await;
    h.deliver("circle", &circle("success", 10)).await;
    let decided = h.deliver("wf", &workflow("success")).await;
    assert!(
        decided.reason.ends_with(&format!("mirrored as {MIRROR}")),
        "{decided:?}"
    );
    h.deliver("wf-again", &workflow("success")).await;
    assert_eq!(
        h.github.posted_statuses(SHA).await,
        vec![json!({
            "state": "success",
            "target_url": RUN_URL,
            "description": format!("CI passed: {CIRCLE}, {WORKFLOW}"),
            "context": MIRROR,
        })]
    );
    // Its own status comes back: recorded, decides nothing, not mirrored again.
    let back = h.deliver("mirror", &mirrored("success")).await;
    assert!(
        back.reason.starts_with("The relay's own mirrored status"),
        "{back:?}"
    );
    assert!(
        h.store
            .latest_statuses(SHA)
            .await
            .unwrap()
            .iter()
            .any(|s| s.context == MIRROR)
    );
    assert_eq!(h.verdicts().len(), 1);
    assert_eq!(h.github.posted_statuses(SHA).await.len(), 1);

    // Without required contexts the deciding status is named, and the mirror still posts.
    let h = harness(backend, &[], Some(MIRROR)).await;
    deployed(&h).await;
    h.deliver("mirror-first", &mirrored("failure")).await;
    assert!(h.verdicts().is_empty(), "a mirrored status never decides");
    h.deliver("circle", &circle("failure", 13)).await;
    let posted = h.github.posted_statuses(SHA).await;
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0]["description"], format!("CI failed: {CIRCLE}"));
    assert_eq!(posted[0]["state"], "failure");
}

async fn a_failed_mirror_post_is_retried_and_posted_once(backend: Backend) {
    let h = harness(backend, &[], Some(MIRROR)).await;
    deployed(&h).await;
    h.github
        .answer_first(
            "POST",
            &format!("/statuses/{SHA}"),
            3,
            ResponseTemplate::new(502).set_body_json(error_body("Server Error")),
        )
        .await;
    let body = serde_json::to_vec(&circle("success", 10).1).unwrap();
    let failed = h
        .status
        .handle(
            &github_headers("status", "d1", &body, TEST_SECRET),
            body.clone(),
        )
        .await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE, "{failed:?}");
    let redelivered = h.deliver("d1", &circle("success", 10)).await;
    assert!(
        redelivered
            .reason
            .ends_with(&format!("mirrored as {MIRROR}")),
        "{redelivered:?}"
    );
    let accepted: Vec<_> = h.github.posted_statuses(SHA).await;
    assert_eq!(accepted.len(), 4, "three refused, then one accepted");
    assert!(!h.verdicts().is_empty(), "the verdict went out");
    h.deliver("d2", &circle("success", 10)).await;
    assert_eq!(h.github.posted_statuses(SHA).await.len(), 4);
}

on_both_stores!(
    both_services_decide_in_either_order,
    either_failure_decides_at_once,
    concurrent_deliveries_of_both_send_one_verdict,
    an_actions_only_commit_decides_through_workflow_run,
    a_check_run_verdict_reads_the_message_once,
    without_required_contexts_checks_are_recorded_only,
    a_result_before_the_push_is_decided_after_the_move,
    a_push_racing_a_result_sends_one_verdict,
    neutral_and_skipped_never_decide,
    the_mirror_is_posted_once_and_never_decides,
    a_failed_mirror_post_is_retried_and_posted_once,
);
