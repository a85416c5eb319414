//! The reconcile pass (issue 15) against a stateful fake GitHub, with the embedded store and
//! DynamoDB on moto: what lost webhooks left behind is healed once, and stalls are said once
//! when they start and once when they clear.

use std::sync::Arc;
use std::time::Duration;

use build_relay::clock::{Clock, ManualClock};
use build_relay::config::RelayConfig;
use build_relay::handlers::Effects;
use build_relay::handlers::push::PushHook;
use build_relay::handlers::reconcile::{PassReport, Reconcile};
use build_relay::handlers::webhook::Webhook;
use build_relay::notify::SmokeyMessage;
use build_relay::store::Store;
use integration_tests::fake_repo::FakeRepo;
use integration_tests::*;
use serde_json::json;

const LIST: &str = "blacklisted_websites.txt";

struct Harness {
    reconcile: Reconcile,
    relay: build_relay::relay::Relay,
    push: Webhook<PushHook>,
    store: Arc<dyn Store>,
    notifier: Arc<FlakyNotifier>,
    clock: Arc<ManualClock>,
    repo: FakeRepo,
}

async fn harness(backend: Backend) -> Harness {
    let repo = FakeRepo::start(&[
        (".gitattributes", "blacklisted_*.txt merge=union\n"),
        (LIST, "a.com\n"),
        ("findspam.py", "def find():\n    pass\n"),
    ])
    .await;
    let master = repo.head("master").unwrap();
    repo.set_branch("deploy", &master);
    let store = store(backend).await;
    let notifier = Arc::new(FlakyNotifier::default());
    let clock = Arc::new(ManualClock::at(1_800_000_000));
    let relay = test_relay(
        RelayConfig::default(),
        Arc::clone(&store),
        notifier.clone(),
        clock.clone(),
    );
    let effects = Effects {
        config: relay.config.clone(),
        store: Arc::clone(&store),
        notifier: notifier.clone(),
        github: repo.client(),
        retry: quick_retry(),
        clock: clock.clone(),
    };
    Harness {
        reconcile: Reconcile {
            effects: Arc::new(effects),
            stall_after_seconds: 15 * 60,
        },
        push: relay.push_hook(repo.client()),
        relay,
        store,
        notifier,
        clock,
        repo,
    }
}

impl Harness {
    /// The same pass on the same store and GitHub, with its own clock at `clock`'s time plus
    /// `ahead` seconds (a pass started later, or a machine whose clock runs ahead).
    fn another_pass(&self, ahead: i64) -> Reconcile {
        let mut effects = (*self.reconcile.effects).clone();
        effects.clock = Arc::new(ManualClock::at(self.clock.now() + ahead));
        Reconcile {
            effects: Arc::new(effects),
            stall_after_seconds: self.reconcile.stall_after_seconds,
        }
    }

    fn chat_with(&self, text: &str) -> usize {
        self.notifier
            .chat()
            .iter()
            .filter(|m| m.contains(text))
            .count()
    }

    async fn pass(&self) -> PassReport {
        let report = self.reconcile.pass().await;
        assert_eq!(report.skipped, None, "{report:?}");
        report
    }

    fn kinds(&self) -> Vec<&'static str> {
        self.notifier.messages().iter().map(|m| m.kind()).collect()
    }

    async fn ref_updates(&self, branch: &str) -> usize {
        let path = format!("/git/refs/heads/{branch}");
        self.repo
            .writes()
            .into_iter()
            .filter(|(method, p)| method == "PATCH" && *p == path)
            .count()
    }

    /// A commit on master nobody told the relay about.
    fn commit_on_master(&self, line: &str) -> String {
        let list = format!("{}{line}\n", self.repo.file("master", LIST).unwrap());
        self.repo.commit(
            "master",
            &[(LIST, Some(&list))],
            &format!("Merge pull request #9 from Charcoal-SE/x --autopull\n\n{line}"),
        )
    }

    /// SmokeDetector's pull request `number`, appending `line`, approved by PullApprove.
    fn approved_pull(&self, number: u64, line: &str) -> String {
        let list = format!("{}{line}\n", self.repo.file("master", LIST).unwrap());
        let branch = format!("auto-blacklist-{number}");
        let head = self.repo.commit(&branch, &[(LIST, Some(&list))], line);
        self.repo.open_pull(number, &branch);
        self.repo.post_status(
            &head,
            "code-review/pullapprove",
            "success",
            "pullapprove[bot]",
        );
        head
    }
}

async fn a_push_whose_webhook_never_arrived_moves_deploy_once(backend: Backend) {
    let h = harness(backend).await;
    let head = h.commit_on_master("new.com");
    let report = h.pass().await;
    assert_eq!(h.repo.head("deploy").unwrap(), head, "{report:?}");
    assert_eq!(h.ref_updates("deploy").await, 1);
    let SmokeyMessage::DeployUpdated(payload) = &h.notifier.messages()[0] else {
        panic!("{:?}", h.notifier.messages());
    };
    assert_eq!(payload["after"], head.as_str());
    assert_eq!(payload["ref"], "refs/heads/master");
    assert!(
        payload["head_commit"]["message"]
            .as_str()
            .unwrap()
            .contains("--autopull")
    );
    let history = h.store.history("deploy", 5).await.unwrap();
    assert_eq!(
        history[0].delivery_id, report.pass,
        "marked as done by reconcile"
    );

    h.pass().await;
    assert_eq!(
        h.ref_updates("deploy").await,
        1,
        "a second pass moves nothing"
    );
    assert_eq!(h.kinds(), ["deploy_updated"]);
}

async fn a_status_whose_webhook_never_arrived_sends_the_verdict_once(backend: Backend) {
    let h = harness(backend).await;
    let head = h.repo.head("deploy").unwrap();
    h.repo
        .post_status(&head, "ci/circleci: build", "success", "circleci");
    h.pass().await;
    let verdicts: Vec<_> = h
        .notifier
        .messages()
        .into_iter()
        .filter_map(|m| match m {
            SmokeyMessage::CommitStatus(v) => Some(v),
            _ => None,
        })
        .collect();
    assert_eq!(verdicts.len(), 1, "{:?}", h.notifier.messages());
    assert_eq!(
        (verdicts[0].sha.as_str(), verdicts[0].state.as_str()),
        (head.as_str(), "success")
    );
    h.pass().await;
    assert_eq!(h.kinds(), ["commit_status"], "a second pass sends nothing");
}

async fn check_runs_count_with_required_contexts(backend: Backend) {
    let mut h = harness(backend).await;
    let mut effects = (*h.reconcile.effects).clone();
    effects.config.required_contexts = vec!["check_run:build".into()];
    h.reconcile.effects = Arc::new(effects);
    let head = h.repo.head("deploy").unwrap();
    h.repo.add_check_run(&head, "build", "failure");
    h.pass().await;
    assert_eq!(h.kinds(), ["commit_status"]);
}

async fn an_approval_whose_webhook_never_arrived_merges_once(backend: Backend) {
    let h = harness(backend).await;
    h.approved_pull(5, "five.com");
    let report = h.pass().await;
    assert!(
        h.repo.file("master", LIST).unwrap().contains("five.com"),
        "{report:?}"
    );
    assert_eq!(
        h.notifier.chat(),
        ["Merged SmokeDetector [#5](https://github.com/Charcoal-SE/SmokeDetector/pull/5)."]
    );
    h.pass().await;
    let merges = h
        .repo
        .requests()
        .await
        .into_iter()
        .filter(|(m, p)| m == "PUT" && p.ends_with("/pulls/5/merge"))
        .count();
    assert_eq!(merges, 1);
    assert_eq!(h.notifier.chat().len(), 1);
}

async fn a_webhook_and_a_pass_racing_have_one_effect(backend: Backend) {
    for round in 0..race_rounds() {
        let h = Arc::new(harness(backend).await);
        let before = h.repo.head("deploy").unwrap();
        let head = h.commit_on_master("raced.com");
        let mut push = sample("push-master.json");
        push["before"] = json!(before);
        push["after"] = json!(head);
        push["head_commit"]["id"] = json!(head);
        let (webhook, pass) = {
            let (a, b) = (Arc::clone(&h), Arc::clone(&h));
            at_once(
                async move {
                    let body = serde_json::to_vec(&push).unwrap();
                    a.push
                        .handle(&github_headers("push", "p1", &body, TEST_SECRET), body)
                        .await
                },
                async move { b.reconcile.pass().await },
            )
            .await
        };
        assert_done_or_in_flight(&webhook);
        assert_eq!(pass.skipped, None, "{pass:?}");
        assert_eq!(h.repo.head("deploy").unwrap(), head);
        assert_eq!(h.ref_updates("deploy").await, 1, "round {round}");
        assert_eq!(
            h.kinds().iter().filter(|k| **k == "deploy_updated").count(),
            1,
            "round {round}"
        );
    }
}

/// How many rounds each race runs: `RELAY_RACE_ROUNDS` (scripts/races.sh sets 100), else 3.
fn race_rounds() -> usize {
    std::env::var("RELAY_RACE_ROUNDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3)
}

/// Runs `a` and `b` released at the same instant.
async fn at_once<A, B>(a: A, b: B) -> (A::Output, B::Output)
where
    A: std::future::Future + Send + 'static,
    B: std::future::Future + Send + 'static,
    A::Output: Send + 'static,
    B::Output: Send + 'static,
{
    let start = Arc::new(tokio::sync::Barrier::new(2));
    let (start_a, start_b) = (Arc::clone(&start), start);
    let a = tokio::spawn(async move {
        start_a.wait().await;
        a.await
    });
    let b = tokio::spawn(async move {
        start_b.wait().await;
        b.await
    });
    (a.await.unwrap(), b.await.unwrap())
}

async fn two_passes_at_once_run_one_and_have_each_effect_once(backend: Backend) {
    for round in 0..race_rounds() {
        let h = Arc::new(harness(backend).await);
        let head = h.commit_on_master("both.com");
        h.approved_pull(5, "five.com");
        let (one, other) = {
            let (a, b) = (Arc::clone(&h), Arc::clone(&h));
            at_once(async move { a.reconcile.pass().await }, async move {
                b.reconcile.pass().await
            })
            .await
        };
        let skipped: Vec<_> = [&one, &other]
            .iter()
            .filter_map(|r| r.skipped.clone())
            .collect();
        assert_eq!(skipped.len(), 1, "round {round}: {one:?} {other:?}");
        assert!(
            skipped[0].contains("another pass is under way"),
            "{skipped:?}"
        );
        assert_eq!(h.ref_updates("deploy").await, 1, "round {round}");
        assert_eq!(h.repo.head("deploy").unwrap(), head);
        assert_eq!(h.chat_with("Merged SmokeDetector [#5]"), 1, "round {round}");
        // The lease was handed back: the next pass runs.
        h.pass().await;
    }
}

async fn a_pass_and_a_status_racing_send_one_verdict(backend: Backend) {
    for round in 0..race_rounds() {
        let h = Arc::new(harness(backend).await);
        let head = h.repo.head("deploy").unwrap();
        h.repo
            .post_status(&head, "ci/circleci: build", "success", "circleci");
        let mut status = sample("status-deploy-success.json");
        status["sha"] = json!(head);
        status["commit"]["sha"] = json!(head);
        let (webhook, pass) = {
            let (a, b) = (Arc::clone(&h), Arc::clone(&h));
            at_once(
                async move {
                    let hook = a.relay.status_hook(a.repo.client());
                    let body = serde_json::to_vec(&status).unwrap();
                    let headers = github_headers("status", "s1", &body, TEST_SECRET);
                    hook.handle(&headers, body).await
                },
                async move { b.reconcile.pass().await },
            )
            .await
        };
        assert_done_or_in_flight(&webhook);
        assert_eq!(pass.skipped, None, "{pass:?}");
        assert_eq!(h.kinds(), ["commit_status"], "round {round}");
    }
}

async fn a_pass_and_an_approval_racing_merge_once(backend: Backend) {
    use build_relay::handlers::webhook::Endpoint;
    for round in 0..race_rounds() {
        let h = Arc::new(harness(backend).await);
        let pr_head = h.approved_pull(5, "five.com");
        let mut approval = sample("status-approval.json");
        approval["sha"] = json!(pr_head);
        approval["target_url"] =
            json!("https://pullapprove.com/Charcoal-SE/SmokeDetector/pull-request/5/");
        let (webhook, pass) = {
            let (a, b) = (Arc::clone(&h), Arc::clone(&h));
            at_once(
                async move {
                    let routes = a.relay.pull_request_routes(a.repo.client());
                    let body = serde_json::to_vec(&approval).unwrap();
                    let headers = github_headers("status", "a1", &body, TEST_SECRET);
                    routes.serve("/github/pr_merge", &headers, body).await
                },
                async move { b.reconcile.pass().await },
            )
            .await
        };
        assert_done_or_in_flight(&webhook);
        assert_eq!(pass.skipped, None, "{pass:?}");
        let merges = h
            .repo
            .writes()
            .into_iter()
            .filter(|(m, p)| m == "PUT" && p.ends_with("/pulls/5/merge"))
            .count();
        assert!(merges <= 1, "round {round}: {merges} merge requests");
        assert!(h.repo.file("master", LIST).unwrap().contains("five.com"));
        assert_eq!(h.chat_with("Merged SmokeDetector [#5]"), 1, "round {round}");
    }
}

/// A conflicting PR #7, approved: a stall no pass can heal.
fn conflicting_approved_pull(h: &Harness) {
    let branch_head = h.repo.commit(
        "auto-blacklist-7",
        &[("findspam.py", Some("def find():\n    return 7\n"))],
        "seven",
    );
    h.repo.open_pull(7, "auto-blacklist-7");
    h.repo.post_status(
        &branch_head,
        "code-review/pullapprove",
        "success",
        "pullapprove[bot]",
    );
    h.repo.commit(
        "master",
        &[("findspam.py", Some("def find():\n    return 0\n"))],
        "master moves",
    );
    let deploy = h.repo.head("master").unwrap();
    h.repo.set_branch("deploy", &deploy);
    h.repo
        .post_status(&deploy, "ci/circleci: build", "success", "circleci");
}

/// A pass that overran its lease (GitHub slow) beside the next pass, which takes the
/// lease over: both run every step, and the stall is said once.
async fn an_overrunning_pass_beside_the_next_says_a_stall_once(backend: Backend) {
    use build_relay::handlers::reconcile::{PASS_LEASE_KEY, PASS_LEASE_SECONDS};
    const ALERT: &str = "has been approved but not merged";
    for round in 0..race_rounds() {
        let h = Arc::new(harness(backend).await);
        conflicting_approved_pull(&h);
        h.pass().await;
        h.clock.advance(15 * 60);
        h.repo.set_latency(Duration::from_millis(50));
        let slow = {
            let h = Arc::clone(&h);
            tokio::spawn(async move { h.reconcile.pass().await })
        };
        // Once the slow pass holds the lease, the next one starts past its expiry.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let held = h.store.claim_holder(PASS_LEASE_KEY).await.unwrap();
            if held.is_some_and(|l| l.claimed_at == h.clock.now()) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the slow pass took no lease"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let next = h.another_pass(PASS_LEASE_SECONDS + 1).pass().await;
        let slow = slow.await.unwrap();
        assert_eq!(slow.skipped, None, "{slow:?}");
        assert_eq!(next.skipped, None, "the lease had run out: {next:?}");
        assert_eq!(
            h.chat_with(ALERT),
            1,
            "round {round}: {:?}",
            h.notifier.chat()
        );
        assert_eq!(h.chat_with("Could not merge SmokeDetector [#7]"), 1);
    }
}

/// A stall that clears and comes back is a new stall: said again when it starts again.
async fn a_stall_that_comes_back_is_said_again(backend: Backend) {
    const ALERT: &str = "has differed from master";
    let h = harness(backend).await;
    for time in 1..=2 {
        // A commit pushed to deploy directly: deploy differs from master until fixed.
        let stray = h.repo.file("deploy", LIST).unwrap() + &format!("stray{time}.com\n");
        h.repo
            .commit("deploy", &[(LIST, Some(&stray))], &format!("stray {time}"));
        h.pass().await;
        h.clock.advance(15 * 60);
        h.pass().await;
        h.pass().await;
        assert_eq!(h.chat_with(ALERT), time, "{:?}", h.notifier.chat());
        let master = h.repo.head("master").unwrap();
        h.repo.set_branch("deploy", &master);
        h.clock.advance(60);
        h.pass().await;
        assert_eq!(h.chat_with("is in step with master again"), time);
        h.clock.advance(60);
    }
}

async fn a_dry_run_says_what_a_pass_would_do_and_does_nothing(backend: Backend) {
    let h = harness(backend).await;
    let head = h.commit_on_master("dry.com");
    h.approved_pull(5, "five.com");
    let before = h.repo.writes().len();
    let report = h.reconcile.dry_run().await;
    assert!(report.dry_run);
    assert_eq!(report.skipped, None, "{report:?}");
    let done = report.done.join("\n");
    assert!(done.contains("would move deploy from"), "{done}");
    assert!(done.contains(&format!("to {head}")), "{done}");
    assert!(done.contains("would merge #5"), "{done}");
    assert!(
        done.contains("would start watching stall approved/5"),
        "{done}"
    );
    assert_eq!(h.repo.writes().len(), before, "no GitHub write");
    assert!(h.notifier.messages().is_empty(), "nothing sent");
    assert!(h.store.stalls().await.unwrap().is_empty(), "nothing stored");
    assert!(h.store.history("deploy", 5).await.unwrap().is_empty());
    // The real pass then does what the dry run said.
    h.pass().await;
    assert_eq!(h.repo.head("deploy").unwrap(), head);
    assert_eq!(h.chat_with("Merged SmokeDetector [#5]"), 1);
}

async fn a_stall_is_said_when_it_starts_and_when_it_clears(backend: Backend) {
    let h = harness(backend).await;
    // An approved PR that cannot merge: its change to findspam.py conflicts with master's.
    conflicting_approved_pull(&h);

    let stalled = |h: &Harness| {
        h.notifier
            .chat()
            .into_iter()
            .filter(|m| m.starts_with("build-relay:"))
            .collect::<Vec<_>>()
    };
    for minutes in [0, 5, 10] {
        h.clock
            .advance(1_800_000_000 + minutes * 60 - h.clock.now());
        h.pass().await;
    }
    assert!(stalled(&h).is_empty(), "{:?}", h.notifier.chat());
    for minutes in [15, 20, 25] {
        h.clock
            .advance(1_800_000_000 + minutes * 60 - h.clock.now());
        h.pass().await;
    }
    assert_eq!(
        stalled(&h),
        [
            "build-relay: [#7](https://github.com/Charcoal-SE/SmokeDetector/pull/7) has been approved but not merged for 15 minutes."
        ]
    );
    // Someone merges it by hand, resolving the conflict: the stall clears, once.
    let resolved = h.repo.commit(
        "auto-blacklist-7",
        &[("findspam.py", Some("def find():\n    return 0\n"))],
        "resolve",
    );
    h.repo.set_branch("master", &resolved);
    h.repo.set_branch("deploy", &resolved);
    h.repo
        .post_status(&resolved, "ci/circleci: build", "success", "circleci");
    for minutes in [30, 35] {
        h.clock
            .advance(1_800_000_000 + minutes * 60 - h.clock.now());
        h.pass().await;
    }
    let said = stalled(&h);
    assert_eq!(said.len(), 2, "{said:?}");
    assert_eq!(
        said[1],
        "build-relay: [#7](https://github.com/Charcoal-SE/SmokeDetector/pull/7) no longer waits to be merged, after 30 minutes."
    );
    assert!(h.store.stalls().await.unwrap().is_empty());
    let trail: Vec<String> = h
        .store
        .history("reconcile", 5)
        .await
        .unwrap()
        .iter()
        .map(|e| e.outcome.as_str().to_string())
        .collect();
    assert_eq!(trail, ["stall-cleared", "stall-started"]);
}

async fn a_healthy_repository_costs_four_calls_and_no_writes(backend: Backend) {
    let h = harness(backend).await;
    let head = h.repo.head("deploy").unwrap();
    h.repo
        .post_status(&head, "ci/circleci: build", "success", "circleci");
    h.pass().await; // the verdict, once
    let (calls_before, messages_before) =
        (h.repo.requests().await.len(), h.notifier.messages().len());
    let report = h.pass().await;
    let calls = h.repo.requests().await.len() - calls_before;
    assert_eq!((calls, report.github_calls), (4, 4), "{report:?}");
    assert!(h.repo.writes().is_empty());
    assert_eq!(h.notifier.messages().len(), messages_before);
    assert!(report.done.is_empty(), "{report:?}");
    assert!(h.store.stalls().await.unwrap().is_empty());
}

async fn a_low_quota_skips_the_pass(backend: Backend) {
    let h = harness(backend).await;
    h.repo.set_remaining(10);
    h.commit_on_master("later.com");
    let report = h.reconcile.pass().await;
    assert!(report.skipped.unwrap().contains("quota low"));
    assert_eq!(
        h.repo.requests().await.len(),
        1,
        "only the rate limit was read"
    );
    tokio::time::sleep(Duration::from_millis(1)).await;
}

async fn a_diverged_deploy_is_reported_once_per_pair_of_heads(backend: Backend) {
    let h = harness(backend).await;
    h.repo.commit(
        "deploy",
        &[("hotfix.py", Some("x = 1\n"))],
        "hotfix on deploy",
    );
    h.pass().await;
    h.pass().await;
    let reports: Vec<String> = h
        .notifier
        .chat()
        .into_iter()
        .filter(|m| !m.starts_with("build-relay:"))
        .collect();
    assert_eq!(reports.len(), 1, "{reports:?}");
    assert!(
        reports[0].contains("git merge --rebase deploy"),
        "{}",
        reports[0]
    );
    assert_eq!(h.ref_updates("deploy").await, 0, "nothing forced");
    // master moves on: a new pair of heads, a new report.
    h.commit_on_master("more.com");
    h.pass().await;
    let reports = h
        .notifier
        .chat()
        .into_iter()
        .filter(|m| !m.starts_with("build-relay:"))
        .count();
    assert_eq!(reports, 2);
}

on_both_stores!(
    a_diverged_deploy_is_reported_once_per_pair_of_heads,
    a_push_whose_webhook_never_arrived_moves_deploy_once,
    a_status_whose_webhook_never_arrived_sends_the_verdict_once,
    check_runs_count_with_required_contexts,
    an_approval_whose_webhook_never_arrived_merges_once,
    a_webhook_and_a_pass_racing_have_one_effect,
    a_stall_is_said_when_it_starts_and_when_it_clears,
    a_healthy_repository_costs_four_calls_and_no_writes,
    a_low_quota_skips_the_pass,
    two_passes_at_once_run_one_and_have_each_effect_once,
    a_pass_and_a_status_racing_send_one_verdict,
    a_pass_and_an_approval_racing_merge_once,
    an_overrunning_pass_beside_the_next_says_a_stall_once,
    a_stall_that_comes_back_is_said_again,
    a_dry_run_says_what_a_pass_would_do_and_does_nothing,
);
