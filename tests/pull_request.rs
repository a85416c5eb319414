//! `github-pull-request` (both routes) against a local fake GitHub answering with GitHub's
//! real bodies and codes, with the embedded store and DynamoDB on moto.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use build_relay::answer::Answer;
use build_relay::clock::Clock;
use build_relay::clock::ManualClock;
use build_relay::config::RelayConfig;
use build_relay::domain::pull_stream;
use build_relay::handlers::pull_request::PullRequestRoutes;
use build_relay::handlers::webhook::Endpoint;
use build_relay::store::{DELIVERY_LEASE_SECONDS, DeliveryStart};
use build_relay::store::{History, Ledger};
use http::StatusCode;
use integration_tests::fake_github::*;
use integration_tests::*;
use serde_json::{Value, json};
use wiremock::ResponseTemplate;

const HEAD: &str = "c7e1a4c1d9d6c1f2b6c0f8a0d2f1e3b4a5c6d7e8";
const PULL: &str = "/pulls/1234";
const MERGE: &str = "/pulls/1234/merge";
const BRANCH: &str = "/git/refs/heads/auto-blacklist-1700000000";
const TITLE: &str =
    "Merge pull request #1234 from Charcoal-SE/auto-blacklist-1700000000 --autopull";
const MERGED: &str =
    "Merged SmokeDetector [#1234](https://github.com/Charcoal-SE/SmokeDetector/pull/1234).";

struct Harness {
    routes: PullRequestRoutes,
    store: Arc<SwitchableStore>,
    notifier: Arc<FlakyNotifier>,
    github: FakeGitHub,
    clock: Arc<ManualClock>,
}

async fn harness_with(backend: Backend, config: RelayConfig) -> Harness {
    let store = Arc::new(SwitchableStore::new(store(backend).await));
    let notifier = Arc::new(FlakyNotifier::default());
    let github = FakeGitHub::start().await;
    let clock = Arc::new(ManualClock::at(build_relay::clock::now()));
    let client = github.client_for(&config.repository);
    let relay = test_relay(config, store.clone(), notifier.clone(), clock.clone());
    Harness {
        routes: relay.pull_request_routes(client),
        store,
        notifier,
        github,
        clock,
    }
}

async fn harness(backend: Backend) -> Harness {
    harness_with(backend, RelayConfig::default()).await
}

fn approval() -> Value {
    sample("status-approval.json")
}

fn bot_pull() -> Value {
    sample("github-api-pull-1234.json")
}

fn merged_answer() -> Value {
    let mut body = api_fixture("pulls-merge.200.json");
    body["sha"] = json!("d00dfeed".repeat(5));
    body
}

impl Harness {
    async fn deliver(&self, path: &str, event: &str, delivery: &str, payload: &Value) -> Answer {
        let body = serde_json::to_vec(payload).unwrap();
        self.routes
            .serve(
                path,
                &github_headers(event, delivery, &body, TEST_SECRET),
                body,
            )
            .await
    }

    async fn approve(&self, delivery: &str, payload: &Value) -> Answer {
        self.deliver("/github/pr_merge", "status", delivery, payload)
            .await
    }

    /// GitHub with the bot's PR open at HEAD, and merges and deletions that succeed.
    async fn github_accepts(&self, pull: Value) {
        self.github.accept_merge(pull).await;
    }

    async fn merges(&self) -> Vec<Value> {
        self.github
            .requests("PUT", MERGE)
            .await
            .iter()
            .map(json_of)
            .collect()
    }

    fn chat(&self) -> Vec<String> {
        self.notifier.chat()
    }

    async fn outcomes(&self, stream: &str) -> Vec<String> {
        self.store
            .history(stream, 20)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.outcome.as_str().to_string())
            .collect()
    }
}

fn expected_merge() -> Value {
    json!({ "commit_title": TITLE, "merge_method": "merge", "sha": HEAD })
}

async fn an_approved_bot_pr_is_merged_pinned_and_announced(backend: Backend) {
    let h = harness(backend).await;
    h.github_accepts(bot_pull()).await;
    let answer = h.approve("d1", &approval()).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(h.merges().await, vec![expected_merge()]);
    assert_eq!(h.github.requests("DELETE", BRANCH).await.len(), 1);
    assert_eq!(h.chat(), [MERGED]);
    assert_eq!(
        h.outcomes(&pull_stream(1234)).await,
        ["branch-deleted", "merged"]
    );
    let audit = h.store.history(&pull_stream(1234), 5).await.unwrap();
    assert_eq!(
        audit[1].detail["merge_sha"],
        api_fixture("pulls-merge.200.json")["sha"]
    );
}

async fn nothing_is_merged_without_every_condition(backend: Backend) {
    let mut cases: Vec<(&str, Value, Value)> = Vec::new();
    let mut human = bot_pull();
    human["user"]["login"] = json!("a-human");
    cases.push(("by a human", approval(), human));
    let mut closed = bot_pull();
    closed["state"] = json!("closed");
    cases.push(("closed", approval(), closed));
    let mut on_deploy = bot_pull();
    on_deploy["base"]["ref"] = json!("deploy");
    cases.push(("base not master", approval(), on_deploy));
    let mut moved = bot_pull();
    moved["head"]["sha"] = json!("e".repeat(40));
    cases.push(("head moved", approval(), moved));
    for (what, status, pull) in cases {
        let h = harness(backend).await;
        h.github_accepts(pull).await;
        let answer = h.approve("d1", &status).await;
        assert_eq!(answer.status, StatusCode::OK, "{what}: {answer:?}");
        assert!(answer.reason.contains("not merging"), "{what}: {answer:?}");
        assert!(h.merges().await.is_empty(), "{what}");
        let audit = h.store.history(&pull_stream(1234), 5).await.unwrap();
        assert_eq!(audit[0].outcome.as_str(), "not-merged", "{what}");
        assert_eq!(
            audit[0].detail["reason"],
            json!(answer.reason),
            "{what}: the reason is recorded"
        );
    }
}

async fn statuses_that_are_no_approval_make_no_call(backend: Backend) {
    let mut pending = approval();
    pending["state"] = json!("pending");
    let mut failure = approval();
    failure["state"] = json!("failure");
    let mut ci = approval();
    ci["context"] = json!("ci/circleci");
    let mut other_repo = approval();
    other_repo["repository"]["full_name"] = json!("someone/else");
    for (what, status) in [
        ("pending", pending),
        ("failure", failure),
        ("another context", ci),
        ("another repository", other_repo),
    ] {
        let h = harness(backend).await;
        let answer = h.approve("d1", &status).await;
        assert_eq!(answer.status, StatusCode::OK, "{what}");
        assert!(h.github.was_not_called().await, "{what}: no GitHub call");
        if what != "another repository" {
            let recorded = h.outcomes(&format!("approval/{HEAD}")).await;
            assert_eq!(recorded, ["not-merged"], "{what}");
        }
    }
}

async fn an_approval_from_an_unlisted_sender_is_refused(backend: Backend) {
    let config = RelayConfig {
        approval_senders: vec!["pullapprove[bot]".into()],
        ..RelayConfig::default()
    };
    let h = harness_with(backend, config).await;
    h.github_accepts(bot_pull()).await;
    let mut forged = approval();
    forged["sender"]["login"] = json!("mallory");
    let answer = h.approve("d1", &forged).await;
    assert!(
        answer
            .reason
            .contains("mallory, who is not in APPROVAL_SENDERS"),
        "{answer:?}"
    );
    assert!(h.github.was_not_called().await);
    assert_eq!(
        h.outcomes(&format!("approval/{HEAD}")).await,
        ["not-merged"]
    );
    let genuine = h.approve("d2", &approval()).await;
    assert!(genuine.reason.starts_with("Merged #1234"), "{genuine:?}");
}

async fn an_already_merged_pr_is_left_alone(backend: Backend) {
    let h = harness(backend).await;
    let mut merged = bot_pull();
    merged["merged"] = json!(true);
    merged["state"] = json!("closed");
    h.github_accepts(merged).await;
    let answer = h.approve("d1", &approval()).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(answer.reason.contains("merged already"), "{answer:?}");
    assert!(h.merges().await.is_empty());
    assert!(h.chat().is_empty());
}

async fn a_moved_head_409_is_recorded_not_merged(backend: Backend) {
    let h = harness(backend).await;
    h.github.answer("GET", PULL, 200, bot_pull()).await;
    h.github
        .answer("PUT", MERGE, 409, api_fixture("pulls-merge.409.json"))
        .await;
    let answer = h.approve("d1", &approval()).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(h.merges().await.len(), 1);
    assert!(h.chat().is_empty());
    assert_eq!(h.outcomes(&pull_stream(1234)).await, ["head-moved"]);
}

async fn a_modified_base_is_retried_until_it_merges(backend: Backend) {
    let h = harness(backend).await;
    h.github_accepts(bot_pull()).await;
    let base_modified = ResponseTemplate::new(405).set_body_json(error_body(
        "Base branch was modified. Review and try the merge again.",
    ));
    h.github.answer_first("PUT", MERGE, 2, base_modified).await;
    let answer = h.approve("d1", &approval()).await;
    assert!(answer.reason.starts_with("Merged #1234"), "{answer:?}");
    assert_eq!(h.merges().await, vec![expected_merge(); 3]);
    assert_eq!(h.chat(), [MERGED]);
}

async fn a_server_error_after_a_merge_is_not_merged_twice(backend: Backend) {
    let h = harness(backend).await;
    let mut merged = bot_pull();
    merged["merged"] = json!(true);
    merged["state"] = json!("closed");
    // The first read sees it open; the merge answers 502 although it went through.
    h.github
        .answer_first(
            "GET",
            PULL,
            1,
            ResponseTemplate::new(200).set_body_json(bot_pull()),
        )
        .await;
    h.github.answer("GET", PULL, 200, merged).await;
    h.github
        .answer("PUT", MERGE, 502, error_body("Server Error"))
        .await;
    h.github.answer("DELETE", BRANCH, 204, Value::Null).await;
    let answer = h.approve("d1", &approval()).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(h.merges().await.len(), 1, "re-read, not retried");
    assert_eq!(h.github.requests("GET", PULL).await.len(), 2);
    assert_eq!(h.chat(), [MERGED]);
}

async fn github_down_fails_the_delivery_for_a_redelivery(backend: Backend) {
    let h = harness(backend).await;
    h.github.answer("GET", PULL, 200, bot_pull()).await;
    h.github
        .answer_first(
            "PUT",
            MERGE,
            2,
            ResponseTemplate::new(503).set_body_json(error_body("Service Unavailable")),
        )
        .await;
    h.github.answer("PUT", MERGE, 200, merged_answer()).await;
    h.github.answer("DELETE", BRANCH, 204, Value::Null).await;
    let failed = h.approve("d1", &approval()).await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE, "{failed:?}");
    let redelivered = h.approve("d1", &approval()).await;
    assert!(
        redelivered.reason.starts_with("Merged #1234"),
        "{redelivered:?}"
    );
    assert_eq!(h.merges().await.len(), 3);
    assert_eq!(h.chat(), [MERGED]);
}

async fn duplicate_and_concurrent_approvals_merge_once(backend: Backend) {
    let h = Arc::new(harness(backend).await);
    h.github.answer("GET", PULL, 200, bot_pull()).await;
    let slow_merge = ResponseTemplate::new(200)
        .set_body_json(merged_answer())
        .set_delay(Duration::from_millis(300));
    h.github.answer_first("PUT", MERGE, 1, slow_merge).await;
    h.github
        .answer(
            "PUT",
            MERGE,
            405,
            error_body("Pull Request is not mergeable"),
        )
        .await;
    h.github.answer("DELETE", BRANCH, 204, Value::Null).await;
    let approvals = (0..6).map(|i| {
        let h = Arc::clone(&h);
        let delivery = if i < 2 {
            "same".to_string()
        } else {
            format!("d{i}")
        };
        tokio::spawn(async move { h.approve(&delivery, &approval()).await })
    });
    for answer in futures_util::future::join_all(approvals).await {
        assert_done_or_in_flight(&answer.unwrap());
    }
    assert_eq!(h.merges().await.len(), 1);
    assert_eq!(h.chat(), [MERGED]);
}

async fn a_pr_is_found_by_commit_without_a_pullapprove_url(backend: Backend) {
    for target_url in [Value::Null, json!("https://example.com/approvals/1234")] {
        let h = harness(backend).await;
        h.github_accepts(bot_pull()).await;
        let mut listed = bot_pull();
        listed.as_object_mut().unwrap().remove("merged");
        let mut closed_other = bot_pull();
        closed_other["number"] = json!(99);
        closed_other["state"] = json!("closed");
        h.github
            .answer(
                "GET",
                &format!("/commits/{HEAD}/pulls"),
                200,
                json!([closed_other, listed]),
            )
            .await;
        let mut status = approval();
        status["target_url"] = target_url.clone();
        let answer = h.approve("d1", &status).await;
        assert!(
            answer.reason.starts_with("Merged #1234"),
            "{target_url}: {answer:?}"
        );
        assert_eq!(h.merges().await, vec![expected_merge()]);
    }
}

async fn opened_prs_are_announced_and_every_event_recorded(backend: Backend) {
    let h = harness(backend).await;
    let opened = sample("pull-request-opened.json");
    let answer = h
        .deliver("/github/pull_request_hook", "pull_request", "o1", &opened)
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(
        h.chat(),
        [
            "[PR#1234](https://github.com/Charcoal-SE/SmokeDetector/pull/1234) (\"Codertocat: Blacklist example\\.com\") opened by SmokeDetector"
        ]
    );
    let mut labeled = opened.clone();
    labeled["action"] = json!("labeled");
    h.deliver("/github/pull_request_hook", "pull_request", "o2", &labeled)
        .await;
    assert_eq!(h.chat().len(), 1, "only opened PRs are announced");
    let history = h.store.history(&pull_stream(1234), 5).await.unwrap();
    assert_eq!(
        history
            .iter()
            .map(|e| e.outcome.as_str())
            .collect::<Vec<_>>(),
        ["labeled", "opened"]
    );
    assert_eq!(history[1].detail["author"], "SmokeDetector");
    assert_eq!(history[1].detail["head_sha"], HEAD);
    assert!(h.github.was_not_called().await);
}

async fn each_route_takes_only_its_event(backend: Backend) {
    let h = harness(backend).await;
    let on_hook = h
        .deliver("/github/pull_request_hook", "status", "x1", &approval())
        .await;
    assert!(
        on_hook.reason.contains("Not interested in status events"),
        "{on_hook:?}"
    );
    let on_merge = h
        .deliver(
            "/github/pr_merge",
            "pull_request",
            "x2",
            &sample("pull-request-opened.json"),
        )
        .await;
    assert!(
        on_merge
            .reason
            .contains("Not interested in pull_request events"),
        "{on_merge:?}"
    );
    assert!(h.chat().is_empty());
}

async fn the_store_failing_right_after_the_merge_loses_nothing(backend: Backend) {
    let h = harness(backend).await;
    let store = Arc::clone(&h.store);
    // GitHub merges; at that moment DynamoDB stops answering, as if the process died.
    h.github
        .stateful_merge(bot_pull(), move || store.set_down(true))
        .await;
    let failed = h.approve("d1", &approval()).await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE, "{failed:?}");
    assert!(h.chat().is_empty());
    h.store.set_down(false);
    // The ledger entry is still "in progress" (its end could not be written): past its
    // lease, the redelivery finishes the work.
    h.clock.advance(DELIVERY_LEASE_SECONDS + 1);
    let redelivered = h.approve("d1", &approval()).await;
    assert_eq!(redelivered.status, StatusCode::OK, "{redelivered:?}");
    assert!(
        redelivered.reason.starts_with("Merged #1234"),
        "{redelivered:?}"
    );
    assert_eq!(h.merges().await.len(), 1);
    assert_eq!(h.chat(), [MERGED]);
    assert_eq!(h.github.requests("DELETE", BRANCH).await.len(), 1);
    // And a later approval of the same commit does nothing more.
    let again = h.approve("d2", &approval()).await;
    assert_eq!(again.status, StatusCode::OK, "{again:?}");
    assert_eq!(h.chat(), [MERGED]);
}

async fn a_redelivery_after_a_crash_answers_5xx_until_it_can_act(backend: Backend) {
    let h = harness(backend).await;
    h.github.stateful_merge(bot_pull(), || {}).await;
    // The first invocation took the delivery and died.
    let start = h
        .store
        .begin_delivery("d1", "pr_merge", h.clock.now())
        .await;
    assert_eq!(start.unwrap(), DeliveryStart::Fresh);
    let early = h.approve("d1", &approval()).await;
    assert_eq!(early.status, StatusCode::SERVICE_UNAVAILABLE, "{early:?}");
    assert!(h.merges().await.is_empty());
    h.clock.advance(DELIVERY_LEASE_SECONDS + 1);
    let late = h.approve("d1", &approval()).await;
    assert_eq!(late.status, StatusCode::OK, "{late:?}");
    assert_eq!(h.merges().await.len(), 1);
    assert_eq!(h.chat(), [MERGED]);
    let again = h.approve("d1", &approval()).await;
    assert!(again.reason.contains("handled already"), "{again:?}");
    assert_eq!(h.merges().await.len(), 1);
}

async fn many_concurrent_approvals_merge_and_announce_once(backend: Backend) {
    const APPROVALS: usize = 200;
    let h = Arc::new(harness(backend).await);
    h.github.stateful_merge(bot_pull(), || {}).await;
    let approvals = (0..APPROVALS).map(|i| {
        let h = Arc::clone(&h);
        tokio::spawn(async move { (i, h.approve(&format!("a{i}"), &approval()).await) })
    });
    let mut unfinished = Vec::new();
    for joined in futures_util::future::join_all(approvals).await {
        let (i, answer) = joined.unwrap();
        match answer.status {
            StatusCode::OK => {}
            // Waited for the holder past its patience: not done here, so not 2xx.
            StatusCode::SERVICE_UNAVAILABLE => unfinished.push(i),
            _ => panic!("a{i}: {answer:?}"),
        }
    }
    // What an operator does with the failed ones: redeliver them.
    h.clock.advance(DELIVERY_LEASE_SECONDS + 1);
    for i in unfinished {
        let answer = h.approve(&format!("a{i}"), &approval()).await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "a{i} redelivered: {answer:?}"
        );
    }
    assert_eq!(h.merges().await.len(), 1);
    assert_eq!(h.chat(), [MERGED], "one Merged, no refusal");
    assert_eq!(h.github.requests("DELETE", BRANCH).await.len(), 1);
}

async fn a_branch_that_would_not_delete_is_finished_by_a_redelivery(backend: Backend) {
    let h = harness(backend).await;
    h.github.stateful_merge(bot_pull(), || {}).await;
    h.github
        .answer_first(
            "DELETE",
            BRANCH,
            3,
            ResponseTemplate::new(502).set_body_json(error_body("Server Error")),
        )
        .await;
    let first = h.approve("d1", &approval()).await;
    assert_eq!(first.status, StatusCode::SERVICE_UNAVAILABLE, "{first:?}");
    assert!(first.reason.contains("was not deleted"), "{first:?}");
    assert_eq!(h.chat(), [MERGED], "announced before the branch");
    let redelivered = h.approve("d1", &approval()).await;
    assert_eq!(redelivered.status, StatusCode::OK, "{redelivered:?}");
    assert_eq!(h.github.requests("DELETE", BRANCH).await.len(), 4);
    assert_eq!(h.merges().await.len(), 1);
    assert_eq!(h.chat(), [MERGED]);
    assert_eq!(
        h.outcomes(&pull_stream(1234)).await,
        ["branch-deleted", "branch-not-deleted", "merged"]
    );
}

async fn an_approval_for_a_pr_github_lacks_is_answered_200(backend: Backend) {
    let h = harness(backend).await;
    h.github
        .answer("GET", PULL, 404, error_body("Not Found"))
        .await;
    let answer = h.approve("d1", &approval()).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert!(answer.reason.contains("404"), "{answer:?}");
    assert!(h.merges().await.is_empty());
    assert_eq!(
        h.outcomes(&format!("approval/{HEAD}")).await,
        ["not-merged"]
    );
}

async fn a_refusal_that_could_not_be_said_is_said_by_the_redelivery(backend: Backend) {
    let h = harness(backend).await;
    h.github.answer("GET", PULL, 200, bot_pull()).await;
    h.github
        .answer(
            "PUT",
            MERGE,
            405,
            error_body("Merge commits are not allowed on this repository."),
        )
        .await;
    h.notifier.failing.store(true, Ordering::SeqCst);
    let failed = h.approve("d1", &approval()).await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE, "{failed:?}");
    h.notifier.failing.store(false, Ordering::SeqCst);
    let redelivered = h.approve("d1", &approval()).await;
    assert_eq!(redelivered.status, StatusCode::OK, "{redelivered:?}");
    assert_eq!(
        h.chat(),
        [
            "Could not merge SmokeDetector [#1234](https://github.com/Charcoal-SE/SmokeDetector/pull/1234): Merge commits are not allowed on this repository."
        ]
    );
    let again = h.approve("d2", &approval()).await;
    assert!(again.reason.contains("refused already"), "{again:?}");
    assert_eq!(h.merges().await.len(), 2, "asked again once, then never");
}

async fn an_opening_is_announced_once_across_a_failure_and_a_replay(backend: Backend) {
    let h = harness(backend).await;
    let opened = sample("pull-request-opened.json");
    h.notifier.failing.store(true, Ordering::SeqCst);
    let failed = h
        .deliver("/github/pull_request_hook", "pull_request", "o1", &opened)
        .await;
    assert_eq!(failed.status, StatusCode::SERVICE_UNAVAILABLE, "{failed:?}");
    h.notifier.failing.store(false, Ordering::SeqCst);
    for delivery in ["o1", "o2-replayed"] {
        let answer = h
            .deliver(
                "/github/pull_request_hook",
                "pull_request",
                delivery,
                &opened,
            )
            .await;
        assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    }
    assert_eq!(h.chat().len(), 1, "{:?}", h.chat());
}

on_both_stores!(
    a_refusal_that_could_not_be_said_is_said_by_the_redelivery,
    an_opening_is_announced_once_across_a_failure_and_a_replay,
    the_store_failing_right_after_the_merge_loses_nothing,
    a_redelivery_after_a_crash_answers_5xx_until_it_can_act,
    many_concurrent_approvals_merge_and_announce_once,
    a_branch_that_would_not_delete_is_finished_by_a_redelivery,
    an_approval_for_a_pr_github_lacks_is_answered_200,
    an_approved_bot_pr_is_merged_pinned_and_announced,
    nothing_is_merged_without_every_condition,
    statuses_that_are_no_approval_make_no_call,
    an_approval_from_an_unlisted_sender_is_refused,
    an_already_merged_pr_is_left_alone,
    a_moved_head_409_is_recorded_not_merged,
    a_modified_base_is_retried_until_it_merges,
    a_server_error_after_a_merge_is_not_merged_twice,
    github_down_fails_the_delivery_for_a_redelivery,
    duplicate_and_concurrent_approvals_merge_once,
    a_pr_is_found_by_commit_without_a_pullapprove_url,
    opened_prs_are_announced_and_every_event_recorded,
    each_route_takes_only_its_event,
);

#[tokio::test]
async fn every_real_pull_request_payload_is_accepted() {
    let config = RelayConfig {
        repository: "Codertocat/Hello-World".into(),
        ..RelayConfig::default()
    };
    let h = harness_with(Backend::Embedded, config).await;
    let mut opened = 0;
    for (n, file) in webhook_fixtures("pull_request").into_iter().enumerate() {
        let mut payload: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        // The fixtures all show pull request #2; each opening is a PR of its own here, as
        // one PR's opening is announced only once.
        payload["number"] = json!(100 + n);
        let answer = h
            .deliver(
                "/github/pull_request_hook",
                "pull_request",
                &format!("f{n}"),
                &payload,
            )
            .await;
        assert_eq!(
            answer.status,
            StatusCode::OK,
            "{}: {answer:?}",
            file.display()
        );
        if payload["action"] == "opened" {
            opened += 1;
            assert_eq!(h.chat().len(), opened, "{}", file.display());
            assert!(
                h.chat()[opened - 1].ends_with("opened by Codertocat"),
                "{:?}",
                h.chat()
            );
        }
    }
    assert_eq!(opened, 3);
}
