//! `github-status` end to end through its handler: intake, rules, ledger and verdicts,
//! against the embedded store and against DynamoDB on moto.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use build_relay::answer::Answer;
use build_relay::config::{RelayConfig, Secret};
use build_relay::handlers::status::StatusHook;
use build_relay::handlers::webhook::{Webhook, lambda_response};
use build_relay::notify::SmokeyMessage;
use build_relay::store::{Commits, Ledger, Outbox};
use build_relay::store::{DeliveryStart, Verdict};
use http::StatusCode;
use integration_tests::fake_github::FakeGitHub;
use integration_tests::*;
use serde_json::{Value, json};

const SHA: &str = "9049f1265b7d61be4a8904a9a27120d2064dab3b";

struct Harness {
    webhook: Webhook<StatusHook>,
    store: Arc<SwitchableStore>,
    notifier: Arc<FlakyNotifier>,
    github: FakeGitHub,
}

/// Where deploy is when a test does not put it at `SHA`.
const ELSEWHERE: &str = "aa218f56b14c9653891f9e74264a383fa43fefbd";

async fn harness_with(backend: Backend, config: RelayConfig) -> Harness {
    let store = Arc::new(SwitchableStore::new(store(backend).await));
    let notifier = Arc::new(FlakyNotifier::default());
    let mut relay = test_relay(
        config,
        store.clone(),
        notifier.clone(),
        build_relay::clock::system(),
    );
    relay.secrets.previous = Some(Secret::new("the secret before rotation"));
    let github = FakeGitHub::start().await;
    github.deploy_at(ELSEWHERE).await;
    Harness {
        webhook: relay.status_hook(github.client()),
        store,
        notifier,
        github,
    }
}

async fn harness(backend: Backend) -> Harness {
    harness_with(backend, RelayConfig::default()).await
}

fn required(contexts: &[&str]) -> RelayConfig {
    RelayConfig {
        required_contexts: contexts.iter().map(|c| c.to_string()).collect(),
        ..RelayConfig::default()
    }
}

/// A status payload of GitHub's real shape (the fixture), for SmokeDetector's repository.
fn status(context: &str, state: &str, branches: &[&str], updated_at: &str, id: u64) -> Value {
    let file = fixtures_dir().join("github/status/payload.json");
    let mut payload: Value = serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap();
    payload["id"] = json!(id);
    payload["sha"] = json!(SHA);
    payload["name"] = json!("Charcoal-SE/SmokeDetector");
    payload["repository"]["full_name"] = json!("Charcoal-SE/SmokeDetector");
    payload["context"] = json!(context);
    payload["state"] = json!(state);
    payload["target_url"] = json!(format!(
        "https://circleci.com/gh/Charcoal-SE/SmokeDetector/{id}"
    ));
    payload["description"] = json!(format!("{context} says {state}"));
    payload["updated_at"] = json!(updated_at);
    payload["commit"]["sha"] = json!(SHA);
    payload["commit"]["commit"]["message"] =
        json!("Merge pull request #1234 from Charcoal-SE/auto-blacklist-1700000000 --autopull");
    payload["branches"] = branches
        .iter()
        .map(|b| json!({"name": b, "commit": {"sha": SHA, "url": ""}, "protected": false}))
        .collect();
    payload
}

fn deploy_status(state: &str) -> Value {
    status(
        "ci/circleci",
        state,
        &["master", "deploy"],
        "2026-11-24T10:00:00Z",
        10,
    )
}

impl Harness {
    async fn deliver(&self, delivery: &str, payload: &Value) -> Answer {
        let body = serde_json::to_vec(payload).unwrap();
        self.webhook
            .handle(
                &github_headers("status", delivery, &body, TEST_SECRET),
                body,
            )
            .await
    }

    fn sent(&self) -> Vec<SmokeyMessage> {
        self.notifier.messages()
    }

    async fn assert_untouched(&self, delivery: &str) {
        assert!(self.store.latest_statuses(SHA).await.unwrap().is_empty());
        assert!(self.sent().is_empty());
        assert_eq!(
            self.store
                .begin_delivery(delivery, "probe", build_relay::clock::now())
                .await
                .unwrap(),
            DeliveryStart::Fresh,
            "a refused delivery must not reach the ledger"
        );
    }
}

fn expected_commit_status(state: &str) -> SmokeyMessage {
    SmokeyMessage::CommitStatus(Verdict {
        sha: SHA.into(),
        state: state.into(),
        ci_url: Some("https://circleci.com/gh/Charcoal-SE/SmokeDetector/10".into()),
        commit_message:
            "Merge pull request #1234 from Charcoal-SE/auto-blacklist-1700000000 --autopull".into(),
    })
}

async fn a_deploy_commit_success_is_sent(backend: Backend) {
    let h = harness(backend).await;
    let answer = h.deliver("d1", &deploy_status("success")).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(h.sent(), vec![expected_commit_status("success")]);
}

async fn refused_requests_change_nothing(backend: Backend) {
    let h = harness(backend).await;
    let body = serde_json::to_vec(&deploy_status("success")).unwrap();
    let cases: Vec<(&str, http::HeaderMap, Vec<u8>, StatusCode)> = vec![
        (
            "unsigned",
            {
                let mut headers = github_headers("status", "unsigned", &body, TEST_SECRET);
                headers.remove("x-hub-signature-256");
                headers
            },
            body.clone(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "wrong-secret",
            github_headers("status", "wrong-secret", &body, "not the secret"),
            body.clone(),
            StatusCode::UNAUTHORIZED,
        ),
        (
            "malformed",
            github_headers("status", "malformed", b"{\"sha\": ", TEST_SECRET),
            b"{\"sha\": ".to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "missing-fields",
            github_headers(
                "status",
                "missing-fields",
                br#"{"state":"success"}"#,
                TEST_SECRET,
            ),
            br#"{"state":"success"}"#.to_vec(),
            StatusCode::BAD_REQUEST,
        ),
        (
            "oversized",
            github_headers("status", "oversized", b"", TEST_SECRET),
            vec![b' '; build_relay::intake::MAX_BODY_BYTES + 1],
            StatusCode::PAYLOAD_TOO_LARGE,
        ),
    ];
    for (delivery, headers, body, expected) in cases {
        let answer = h.webhook.handle(&headers, body).await;
        assert_eq!(answer.status, expected, "{delivery}: {answer:?}");
        assert!(
            !answer.reason.is_empty() && !answer.reason.contains('\n'),
            "{delivery}: one-line reason"
        );
        h.assert_untouched(delivery).await;
    }
}

async fn a_rotated_secret_is_still_accepted(backend: Backend) {
    let h = harness(backend).await;
    let body = serde_json::to_vec(&deploy_status("success")).unwrap();
    let headers = github_headers("status", "rotated", &body, "the secret before rotation");
    assert_eq!(
        h.webhook.handle(&headers, body).await.status,
        StatusCode::OK
    );
    assert_eq!(h.sent().len(), 1);
}

async fn ping_and_other_events_are_answered_without_effects(backend: Backend) {
    let h = harness(backend).await;
    let ping = std::fs::read(fixtures_dir().join("github/ping/payload.json")).unwrap();
    let answer = h
        .webhook
        .handle(&github_headers("ping", "p", &ping, TEST_SECRET), ping)
        .await;
    assert_eq!(
        (answer.status, answer.reason.as_str()),
        (StatusCode::OK, "pong")
    );

    let push = std::fs::read(fixtures_dir().join("github/push/payload.json")).unwrap();
    let answer = h
        .webhook
        .handle(
            &github_headers("push", "wrong-event", &push, TEST_SECRET),
            push,
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.reason.contains("Not interested in push"),
        "{answer:?}"
    );
    h.assert_untouched("wrong-event").await;
}

async fn another_repository_is_ignored(backend: Backend) {
    let h = harness(backend).await;
    let mut payload = deploy_status("success");
    payload["repository"]["full_name"] = json!("someone/else");
    let answer = h.deliver("other-repo", &payload).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.reason.contains("not interested"), "{answer:?}");
    h.assert_untouched("other-repo").await;
}

async fn every_status_is_recorded_with_its_fields(backend: Backend) {
    let h = harness(backend).await;
    h.deliver(
        "d1",
        &status("lint", "pending", &["feature"], "2026-11-24T10:00:00Z", 7),
    )
    .await;
    let latest = h.store.latest_statuses(SHA).await.unwrap();
    assert_eq!(latest.len(), 1);
    let record = &latest[0];
    assert_eq!(
        (
            record.context.as_str(),
            record.state.as_str(),
            record.sender.as_deref(),
            record.delivery_id.as_str()
        ),
        ("lint", "pending", Some("Codertocat"), "d1")
    );
    assert_eq!(
        record.target_url.as_deref(),
        Some("https://circleci.com/gh/Charcoal-SE/SmokeDetector/7")
    );
    assert_eq!(record.description.as_deref(), Some("lint says pending"));
    assert_eq!(record.updated_at, 1_795_514_400);
    assert_eq!(record.status_id, 7);
}

async fn an_older_update_never_overwrites_a_newer_one(backend: Backend) {
    let h = harness(backend).await;
    h.deliver(
        "new",
        &status("ci", "failure", &["feature"], "2026-11-24T10:05:00Z", 2),
    )
    .await;
    let answer = h
        .deliver(
            "old",
            &status("ci", "pending", &["feature"], "2026-11-24T10:00:00Z", 1),
        )
        .await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.reason.contains("older update"), "{answer:?}");
    let latest = h.store.latest_statuses(SHA).await.unwrap();
    assert_eq!(latest[0].state, "failure");
}

async fn pending_never_decides(backend: Backend) {
    let h = harness(backend).await;
    let answer = h.deliver("p", &deploy_status("pending")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(h.sent().is_empty());
    h.deliver("s", &deploy_status("failure")).await;
    assert_eq!(h.sent(), vec![expected_commit_status("failure")]);
}

async fn only_deploy_commits_count(backend: Backend) {
    let h = harness(backend).await;
    let off_deploy = status(
        "ci/circleci",
        "success",
        &["master"],
        "2026-11-24T10:00:00Z",
        10,
    );
    let answer = h.deliver("off", &off_deploy).await;
    assert_eq!(
        answer.reason,
        format!("Not a commit on deploy (its head is {ELSEWHERE}); recorded only")
    );
    assert!(h.sent().is_empty());
    assert_eq!(
        h.github
            .requests("GET", "/git/ref/heads/deploy")
            .await
            .len(),
        1,
        "one read of the deploy branch"
    );

    // The relay's own deploy record makes it a deploy commit even when branches[] lags.
    h.store
        .mark_deployed(SHA, "push-1", build_relay::clock::now())
        .await
        .unwrap();
    h.deliver("off-again", &off_deploy).await;
    assert_eq!(h.sent(), vec![expected_commit_status("success")]);
    assert_eq!(
        h.github
            .requests("GET", "/git/ref/heads/deploy")
            .await
            .len(),
        1,
        "the deploy record spares the read"
    );
}

async fn a_commit_github_says_deploy_is_at_counts(backend: Backend) {
    let h = harness(backend).await;
    h.github.deploy_at(SHA).await;
    let off_deploy = status(
        "ci/circleci",
        "failure",
        &["master"],
        "2026-11-24T10:00:00Z",
        10,
    );
    let answer = h.deliver("lagging", &off_deploy).await;
    assert!(
        answer.reason.starts_with("Sent commit_status failure"),
        "{answer:?}"
    );
    assert_eq!(h.sent(), vec![expected_commit_status("failure")]);
}

async fn required_contexts_decide_together(backend: Backend) {
    let h = harness_with(backend, required(&["ci/circleci", "build"])).await;
    let at = |minute: u32| format!("2026-11-24T10:{minute:02}:00Z");
    h.deliver(
        "a",
        &status("ci/circleci", "success", &["deploy"], &at(1), 10),
    )
    .await;
    h.deliver("b", &status("codecov", "failure", &["deploy"], &at(2), 11))
        .await;
    assert!(
        h.sent().is_empty(),
        "one required success and an unrequired failure decide nothing"
    );
    h.deliver("c", &status("build", "success", &["deploy"], &at(3), 12))
        .await;
    let sent = h.sent();
    assert_eq!(sent.len(), 1);
    assert!(matches!(&sent[0], SmokeyMessage::CommitStatus(v) if v.state == "success"));
}

async fn a_required_failure_decides_at_once(backend: Backend) {
    let h = harness_with(backend, required(&["ci/circleci", "build"])).await;
    h.deliver(
        "a",
        &status("build", "error", &["deploy"], "2026-11-24T10:00:00Z", 10),
    )
    .await;
    h.deliver(
        "b",
        &status(
            "ci/circleci",
            "success",
            &["deploy"],
            "2026-11-24T10:01:00Z",
            11,
        ),
    )
    .await;
    let sent = h.sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(matches!(&sent[0], SmokeyMessage::CommitStatus(v) if v.state == "error"));
}

async fn the_verdict_is_sent_once_per_commit(backend: Backend) {
    let h = harness(backend).await;
    assert_eq!(
        h.deliver("d1", &deploy_status("success")).await.status,
        StatusCode::OK
    );
    let again = h.deliver("d1", &deploy_status("success")).await;
    assert!(again.reason.contains("handled already"), "{again:?}");
    let other = h.deliver("d2", &deploy_status("failure")).await;
    assert!(other.reason.contains("decided already"), "{other:?}");
    assert_eq!(h.sent(), vec![expected_commit_status("success")]);
    // The verdict's message is in the outbox, once; the later result's place was given back.
    let outbox = h.store.outbox_after(0, 0, 10).await.unwrap();
    assert_eq!(outbox.len(), 1);
    assert!(outbox[0].message.contains("commit_status"), "{outbox:?}");
    assert_eq!(h.store.outbox_head().await.unwrap(), outbox[0].seq);
}

async fn concurrent_deliveries_send_one_verdict(backend: Backend) {
    let h = Arc::new(harness(backend).await);
    let deliveries = (0..8).map(|i| {
        let h = Arc::clone(&h);
        // Half of them share one delivery id, as a redelivery racing the original would.
        let id = if i % 2 == 0 {
            "same".to_string()
        } else {
            format!("d{i}")
        };
        tokio::spawn(async move { h.deliver(&id, &deploy_status("success")).await })
    });
    for answer in futures_util::future::join_all(deliveries).await {
        assert_done_or_in_flight(&answer.unwrap());
    }
    assert_eq!(h.sent(), vec![expected_commit_status("success")]);
}

async fn a_failed_send_is_retried_on_redelivery(backend: Backend) {
    let h = harness(backend).await;
    h.notifier.failing.store(true, Ordering::SeqCst);
    let failed = h.deliver("d1", &deploy_status("success")).await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE, "{failed:?}");
    let meanwhile = h.deliver("d2", &deploy_status("success")).await;
    assert!(
        meanwhile.reason.contains("which is sending it"),
        "{meanwhile:?}"
    );
    h.notifier.failing.store(false, Ordering::SeqCst);
    let redelivered = h.deliver("d1", &deploy_status("success")).await;
    assert_eq!(redelivered.status, StatusCode::OK, "{redelivered:?}");
    assert_eq!(h.sent(), vec![expected_commit_status("success")]);
}

async fn a_storage_outage_loses_nothing(backend: Backend) {
    let h = harness(backend).await;
    h.store.set_down(true);
    let failed = h.deliver("d1", &deploy_status("success")).await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE, "{failed:?}");
    assert!(h.sent().is_empty());
    h.store.set_down(false);
    let redelivered = h.deliver("d1", &deploy_status("success")).await;
    assert_eq!(redelivered.status, StatusCode::OK, "{redelivered:?}");
    assert_eq!(h.sent(), vec![expected_commit_status("success")]);
}

async fn a_base64_body_through_the_lambda_path(backend: Backend) {
    use base64::Engine;
    let h = harness(backend).await;
    let body = serde_json::to_vec(&deploy_status("success")).unwrap();
    let signature = build_relay::intake::sign(TEST_SECRET.as_bytes(), &body);
    let event = json!({
        "version": "2.0",
        "routeKey": "POST /github/status_hook",
        "rawPath": "/github/status_hook",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "x-github-event": "status",
            "x-github-delivery": "b64",
            "x-hub-signature-256": signature,
        },
        "requestContext": {
            "accountId": "123456789012", "apiId": "api", "domainName": "api.example.com",
            "domainPrefix": "api", "requestId": "r", "routeKey": "POST /github/status_hook",
            "stage": "$default", "time": "24/Nov/2026:10:00:00 +0000", "timeEpoch": 1795514400000u64,
            "http": {"method": "POST", "path": "/github/status_hook", "protocol": "HTTP/1.1",
                     "sourceIp": "192.0.2.1", "userAgent": "GitHub-Hookshot/abc"}
        },
        "body": base64::engine::general_purpose::STANDARD.encode(&body),
        "isBase64Encoded": true
    });
    let request = lambda_http::request::from_str(&event.to_string()).unwrap();
    let response = lambda_response(&h.webhook, request).await;
    assert_eq!(response.status(), StatusCode::OK, "{:?}", response.body());
    assert_eq!(h.sent(), vec![expected_commit_status("success")]);
}

on_both_stores!(
    a_deploy_commit_success_is_sent,
    refused_requests_change_nothing,
    a_rotated_secret_is_still_accepted,
    ping_and_other_events_are_answered_without_effects,
    another_repository_is_ignored,
    every_status_is_recorded_with_its_fields,
    an_older_update_never_overwrites_a_newer_one,
    pending_never_decides,
    only_deploy_commits_count,
    a_commit_github_says_deploy_is_at_counts,
    required_contexts_decide_together,
    a_required_failure_decides_at_once,
    the_verdict_is_sent_once_per_commit,
    concurrent_deliveries_send_one_verdict,
    a_failed_send_is_retried_on_redelivery,
    a_storage_outage_loses_nothing,
    a_base64_body_through_the_lambda_path,
);
