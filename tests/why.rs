//! `why`: the chain of one blacklist PR run through the routes (opened, approved and
//! merged, deploy moved, CI passing), then told back from the records on each store.

use std::sync::Arc;

use build_relay::clock::ManualClock;
use build_relay::config::RelayConfig;
use build_relay::handlers::webhook::Endpoint;
use build_relay::why;
use http::StatusCode;
use integration_tests::fake_github::*;
use integration_tests::*;
use serde_json::{Value, json};

/// The merge commit GitHub's merge answer names (`pulls-merge.200.json`).
const MERGE_SHA: &str = "6dcb09b5b57875f334f61aebed695e2e4193db5e";
const APPROVED: &str = "c7e1a4c1d9d6c1f2b6c0f8a0d2f1e3b4a5c6d7e8";
/// 2027-01-15 08:00:00 UTC.
const START: i64 = 1_800_000_000;

struct Chain {
    store: Arc<SwitchableStore>,
}

/// Runs the chain, a minute between its steps.
async fn chain(backend: Backend) -> Chain {
    let store = Arc::new(SwitchableStore::new(store(backend).await));
    let clock = Arc::new(ManualClock::at(START));
    let relay = test_relay(
        RelayConfig::default(),
        store.clone(),
        Arc::new(FlakyNotifier::default()),
        clock.clone(),
    );
    let github = FakeGitHub::start().await;
    github
        .accept_merge(sample("github-api-pull-1234.json"))
        .await;
    github.accept_deploy_moves().await;
    let client = github.client_for("Charcoal-SE/SmokeDetector");
    let routes = relay.pull_request_routes(client.clone());
    let deliver = |path: &'static str, event: &'static str, delivery: &'static str, body: Value| {
        let routes = &routes;
        async move {
            let body = serde_json::to_vec(&body).unwrap();
            let headers = github_headers(event, delivery, &body, TEST_SECRET);
            routes.serve(path, &headers, body).await
        }
    };
    let opened = deliver(
        "/github/pull_request_hook",
        "pull_request",
        "opened-1",
        sample("pull-request-opened.json"),
    )
    .await;
    assert_eq!(opened.status, StatusCode::OK, "{opened:?}");
    clock.advance(120);
    let approved = deliver(
        "/github/pr_merge",
        "status",
        "approval-1",
        sample("status-approval.json"),
    )
    .await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");

    clock.advance(60);
    let mut push = sample("push-master.json");
    push["after"] = json!(MERGE_SHA);
    push["head_commit"]["id"] = json!(MERGE_SHA);
    let body = serde_json::to_vec(&push).unwrap();
    let pushed = relay
        .push_hook(client.clone())
        .handle(&github_headers("push", "push-1", &body, TEST_SECRET), body)
        .await;
    assert_eq!(pushed.status, StatusCode::OK, "{pushed:?}");

    clock.advance(360);
    let mut status = sample("status-deploy-success.json");
    status["sha"] = json!(MERGE_SHA);
    status["commit"]["sha"] = json!(MERGE_SHA);
    status["updated_at"] = json!("2027-01-15T08:09:00Z");
    let body = serde_json::to_vec(&status).unwrap();
    let decided = relay
        .status_hook(client)
        .handle(
            &github_headers("status", "status-1", &body, TEST_SECRET),
            body,
        )
        .await;
    assert_eq!(decided.status, StatusCode::OK, "{decided:?}");
    Chain { store }
}

async fn a_pull_request_is_told_from_opening_to_verdict(backend: Backend) {
    let c = chain(backend).await;
    let trail = why::pull(c.store.as_ref(), 1234).await.unwrap();
    assert_eq!(
        trail.summary,
        format!(
            "PR #1234: opened at 08:00; approved by pullapprove[bot] (code-review/pullapprove); \
             merged at 08:02 as 6dcb09b, pinned to {}; branch deleted at 08:02; deploy moved \
             at 08:03; CI success at 08:09 sent to 1 connection(s).",
            &APPROVED[..7]
        )
    );
    assert_eq!(trail.events.len(), 3, "{trail}");
    assert!(
        trail.events[0].starts_with("2027-01-15 08:00:00 UTC  opened"),
        "{trail}"
    );
    assert!(trail.events[1].contains("(delivery approval-1)"), "{trail}");
}

async fn deploy_and_a_commit_are_told(backend: Backend) {
    let c = chain(backend).await;
    let deploy = why::deploy(c.store.as_ref()).await.unwrap();
    assert_eq!(
        deploy.summary,
        "Deploy: at 6dcb09b since 08:03; CI success at 08:09 sent to 1 connection(s)."
    );
    assert!(deploy.events[0].contains("moved"), "{deploy}");
    let commit = why::commit(c.store.as_ref(), MERGE_SHA).await.unwrap();
    assert_eq!(
        commit.summary,
        "Commit 6dcb09b: ci/circleci success at 08:09 (status); deploy moved at 08:03; CI \
         success at 08:09 sent to 1 connection(s)."
    );
    assert!(commit.events[0].contains("(delivery status-1)"), "{commit}");
    let unknown = why::commit(c.store.as_ref(), "0000000000000000000000000000000000000000")
        .await
        .unwrap();
    assert_eq!(
        unknown.summary,
        "Commit 0000000: no CI result recorded; no CI verdict yet."
    );
    let never = why::pull(c.store.as_ref(), 99).await.unwrap();
    assert_eq!(never.summary, "PR #99: nothing recorded.");
}

on_both_stores!(
    a_pull_request_is_told_from_opening_to_verdict,
    deploy_and_a_commit_are_told,
);
