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
        store,
        notifier,
        clock,
        repo,
    }
}

impl Harness {
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
    let h = Arc::new(harness(backend).await);
    let before = h.repo.head("deploy").unwrap();
    let head = h.commit_on_master("raced.com");
    let mut push = sample("push-master.json");
    push["before"] = json!(before);
    push["after"] = json!(head);
    push["head_commit"]["id"] = json!(head);
    let webhook = {
        let h = Arc::clone(&h);
        tokio::spawn(async move {
            let body = serde_json::to_vec(&push).unwrap();
            h.push
                .handle(&github_headers("push", "p1", &body, TEST_SECRET), body)
                .await
        })
    };
    let pass = {
        let h = Arc::clone(&h);
        tokio::spawn(async move { h.reconcile.pass().await })
    };
    assert_done_or_in_flight(&webhook.await.unwrap());
    pass.await.unwrap();
    assert_eq!(h.repo.head("deploy").unwrap(), head);
    assert_eq!(h.ref_updates("deploy").await, 1);
    assert_eq!(
        h.kinds().iter().filter(|k| **k == "deploy_updated").count(),
        1
    );
}

async fn a_stall_is_said_when_it_starts_and_when_it_clears(backend: Backend) {
    let h = harness(backend).await;
    // An approved PR that cannot merge: its change to findspam.py conflicts with master's.
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
);
