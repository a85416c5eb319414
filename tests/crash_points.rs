//! Every crash point of every effect: the merge path (claimed -> merged -> announced ->
//! branch deleted), the verdict send and the deploy move. For each route the delivery is
//! run once cleanly to count its store calls; then, for every n below that count, a fresh
//! relay runs it with the store failing from call n on and nothing more sent to Smokeys,
//! as if the process had died right there. The store comes back, the leases run out, and
//! GitHub redelivers: the work is finished with each effect once.
//!
//! The one duplicate no design rules out is a message that went out while its record did
//! not (the crash falls between the two). The sweep finds exactly where that is, and
//! checks that the repeat is the same frame, which Smokey ignores (it skips a
//! `commit_status` whose commit it already has; `deploy_updated` is not acted on; a chat
//! line is said twice).

use std::sync::Arc;

use build_relay::answer::Answer;
use build_relay::clock::ManualClock;
use build_relay::config::RelayConfig;
use build_relay::handlers::webhook::Endpoint;
use build_relay::notify::SmokeyMessage;
use build_relay::relay::Relay;
use build_relay::store::Commits;
use http::StatusCode;
use integration_tests::fake_github::*;
use integration_tests::*;
use serde_json::Value;

/// Past every lease (a delivery's 30 s, a verdict's 60 s).
const PAST_LEASES: i64 = 120;
const DEPLOY_SHA: &str = "9049f1265b7d61be4a8904a9a27120d2064dab3b";
const MERGED: &str =
    "Merged SmokeDetector [#1234](https://github.com/Charcoal-SE/SmokeDetector/pull/1234).";

struct World {
    relay: Relay,
    store: Arc<SwitchableStore>,
    notifier: Arc<FlakyNotifier>,
    clock: Arc<ManualClock>,
    github: FakeGitHub,
}

async fn world(backend: Backend) -> World {
    let store = Arc::new(SwitchableStore::new(store(backend).await));
    let notifier = Arc::new(FlakyNotifier::default());
    notifier.dies_with(Arc::clone(&store));
    let clock = Arc::new(ManualClock::at(build_relay::clock::now()));
    let relay = test_relay(
        RelayConfig::default(),
        store.clone(),
        notifier.clone(),
        clock.clone(),
    );
    World {
        relay,
        store,
        notifier,
        clock,
        github: FakeGitHub::start().await,
    }
}

impl World {
    fn count(&self, kind: &str) -> usize {
        self.sent(kind).len()
    }

    fn sent(&self, kind: &str) -> Vec<SmokeyMessage> {
        self.notifier
            .messages()
            .into_iter()
            .filter(|m| m.kind() == kind || matches!(m, SmokeyMessage::Chat(t) if t == kind))
            .collect()
    }
}

/// One route's delivery, how to prepare the world for it, and what must hold after it.
struct Effect {
    setup: fn(&World) -> futures_util::future::BoxFuture<'_, ()>,
    deliver: fn(&World) -> futures_util::future::BoxFuture<'_, Answer>,
    /// The message that must reach Smokeys once (`SmokeyMessage::kind`, or a chat line).
    message: &'static str,
    /// What must hold of GitHub and the store once the work is finished.
    finished: fn(&World) -> futures_util::future::BoxFuture<'_, ()>,
}

/// Runs `effect` cleanly, then crashed at each store call and redelivered; returns the
/// crash points after which the message went out twice.
async fn sweep(backend: Backend, effect: &Effect) -> Vec<usize> {
    let clean = world(backend).await;
    (effect.setup)(&clean).await;
    let before = clean.store.calls();
    let answer = (effect.deliver)(&clean).await;
    assert_eq!(answer.status, StatusCode::OK, "clean run: {answer:?}");
    settle().await;
    let calls = clean.store.calls() - before;
    assert_eq!(clean.count(effect.message), 1, "clean run");
    (effect.finished)(&clean).await;

    let mut twice = Vec::new();
    for point in 0..calls {
        let w = world(backend).await;
        (effect.setup)(&w).await;
        w.store.crash_after(point);
        let crashed = (effect.deliver)(&w).await;
        settle().await;
        assert!(
            w.store.crashed(),
            "crash point {point} of {calls} was reached: {crashed:?}"
        );
        w.store.recover();
        let mut redelivered = crashed;
        for _ in 0..3 {
            if redelivered.status == StatusCode::OK && w.count(effect.message) > 0 {
                break;
            }
            w.clock.advance(PAST_LEASES);
            redelivered = (effect.deliver)(&w).await;
        }
        assert_eq!(
            redelivered.status,
            StatusCode::OK,
            "crash after {point} store call(s): the redelivery finishes ({redelivered:?})"
        );
        (effect.finished)(&w).await;
        let sent = w.sent(effect.message);
        match sent.len() {
            1 => {}
            2 => {
                assert_eq!(sent[0], sent[1], "a repeat is the same frame");
                twice.push(point);
            }
            n => panic!(
                "crash after {point} store call(s): {} sent {n} times",
                effect.message
            ),
        }
        // And another delivery of the same event has no effect at all.
        w.clock.advance(PAST_LEASES);
        let again = (effect.deliver)(&w).await;
        assert_eq!(again.status, StatusCode::OK, "{again:?}");
        assert_eq!(w.sent(effect.message).len(), sent.len(), "nothing more");
        (effect.finished)(&w).await;
    }
    println!(
        "{}: {calls} crash points, sent twice after {twice:?}",
        effect.message
    );
    twice
}

/// Lets the writes a delivery makes after its answer (the status page's index) land.
async fn settle() {
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
}

fn merge() -> Effect {
    Effect {
        setup: |w| {
            Box::pin(
                w.github
                    .stateful_merge(sample("github-api-pull-1234.json"), || {}),
            )
        },
        deliver: |w| {
            Box::pin(async {
                let routes = w
                    .relay
                    .pull_request_routes(w.github.client_for("Charcoal-SE/SmokeDetector"));
                let body = serde_json::to_vec(&sample("status-approval.json")).unwrap();
                let headers = github_headers("status", "approval-1", &body, TEST_SECRET);
                routes.serve("/github/pr_merge", &headers, body).await
            })
        },
        message: MERGED,
        finished: |w| {
            Box::pin(async {
                let merges = w.github.requests("PUT", "/pulls/1234/merge").await;
                assert_eq!(merges.len(), 1, "merged once");
                let deleted = w
                    .github
                    .requests("DELETE", "/git/refs/heads/auto-blacklist-1700000000")
                    .await;
                assert!(!deleted.is_empty(), "the branch is deleted");
            })
        },
    }
}

fn verdict() -> Effect {
    Effect {
        setup: |_| Box::pin(async {}),
        deliver: |w| {
            Box::pin(async {
                let hook = w.relay.status_hook(w.github.client());
                let body = serde_json::to_vec(&sample("status-deploy-success.json")).unwrap();
                let headers = github_headers("status", "status-1", &body, TEST_SECRET);
                hook.handle(&headers, body).await
            })
        },
        message: "commit_status",
        finished: |w| {
            Box::pin(async {
                let verdict = w.store.verdict(DEPLOY_SHA).await.unwrap();
                assert!(
                    verdict.is_some_and(|v| v.notified_at.is_some()),
                    "the verdict is recorded as sent"
                );
            })
        },
    }
}

fn deploy_move() -> Effect {
    Effect {
        setup: |w| Box::pin(w.github.accept_deploy_moves()),
        deliver: |w| {
            Box::pin(async {
                let hook = w.relay.push_hook(w.github.client());
                let body = serde_json::to_vec(&sample("push-master.json")).unwrap();
                let headers = github_headers("push", "push-1", &body, TEST_SECRET);
                hook.handle(&headers, body).await
            })
        },
        message: "deploy_updated",
        finished: |w| {
            Box::pin(async {
                let moves = w.github.requests("PATCH", "/git/refs/heads/deploy").await;
                assert!(!moves.is_empty(), "deploy moved");
                let sha = sample("push-master.json")["after"]
                    .as_str()
                    .unwrap()
                    .to_string();
                assert!(w.store.is_deployed(&sha).await.unwrap());
                for update in &moves {
                    let body: Value = json_of(update);
                    assert_eq!(body["force"], false, "never forced");
                }
            })
        },
    }
}

async fn the_merge_path_survives_a_crash_at_every_point(backend: Backend) {
    let twice = sweep(backend, &merge()).await;
    assert!(
        twice.len() <= 1,
        "only a crash between saying Merged and recording it repeats it: {twice:?}"
    );
}

async fn the_verdict_survives_a_crash_at_every_point(backend: Backend) {
    let twice = sweep(backend, &verdict()).await;
    assert!(
        twice.len() <= 1,
        "only a crash between sending the verdict and marking it sent repeats it: {twice:?}"
    );
}

async fn the_deploy_move_survives_a_crash_at_every_point(backend: Backend) {
    let twice = sweep(backend, &deploy_move()).await;
    assert!(
        twice.len() <= 1,
        "only a crash between sending deploy_updated and recording it repeats it: {twice:?}"
    );
}

on_both_stores!(
    the_merge_path_survives_a_crash_at_every_point,
    the_verdict_survives_a_crash_at_every_point,
    the_deploy_move_survives_a_crash_at_every_point,
);
