//! Blacklist pull requests that GitHub will not merge are merged with git's union driver
//! through the Git Data API (issue 14), against a stateful fake GitHub, with the embedded
//! store and DynamoDB on moto.

use std::sync::Arc;

use build_relay::answer::Answer;
use build_relay::config::RelayConfig;
use build_relay::domain::pull_stream;
use build_relay::handlers::pull_request::PullRequestRoutes;
use build_relay::handlers::webhook::Endpoint;
use build_relay::store::Store;
use integration_tests::fake_repo::FakeRepo;
use integration_tests::*;
use serde_json::{Value, json};

const LIST: &str = "blacklisted_websites.txt";
const ATTRIBUTES: &str =
    "*.txt text\nblacklisted_*.txt merge=union\nbad_keywords.txt merge=union\n";
const PNG: &str = "\u{89}PNG\r\n\u{1a}\n\0\0\0\rIHDR";

struct Harness {
    routes: PullRequestRoutes,
    store: Arc<dyn Store>,
    notifier: Arc<FlakyNotifier>,
    repo: FakeRepo,
}

async fn harness(backend: Backend) -> Harness {
    let repo = FakeRepo::start(&[
        (".gitattributes", ATTRIBUTES),
        (LIST, "a.com\nb.com\n"),
        ("findspam.py", "def find():\n    pass\n"),
        ("logo.png", PNG),
    ])
    .await;
    let store = store(backend).await;
    let notifier = Arc::new(FlakyNotifier::default());
    let relay = test_relay(
        RelayConfig::default(),
        Arc::clone(&store),
        notifier.clone(),
        build_relay::clock::system(),
    );
    Harness {
        routes: relay.pull_request_routes(repo.client()),
        store,
        notifier,
        repo,
    }
}

/// PullApprove's approval of pull request `number` at `sha`.
fn approval(number: u64, sha: &str) -> Value {
    let mut status = sample("status-approval.json");
    status["sha"] = json!(sha);
    status["commit"]["sha"] = json!(sha);
    status["target_url"] = json!(format!(
        "https://pullapprove.com/Charcoal-SE/SmokeDetector/pull-request/{number}/"
    ));
    status
}

fn merged(number: u64) -> String {
    format!(
        "Merged SmokeDetector [#{number}](https://github.com/Charcoal-SE/SmokeDetector/pull/{number})."
    )
}

impl Harness {
    /// SmokeDetector's pull request `number`, from master as it is now, appending `line`.
    fn blacklist_pull(&self, number: u64, line: &str) -> String {
        let mut list = self.repo.file("master", LIST).unwrap();
        list.push_str(line);
        list.push('\n');
        let branch = format!("auto-blacklist-{number}");
        let head = self.repo.commit(
            &branch,
            &[(LIST, Some(&list))],
            &format!("Blacklist {line}"),
        );
        self.repo.open_pull(number, &branch);
        head
    }

    async fn approve(&self, number: u64, sha: &str) -> Answer {
        let body = serde_json::to_vec(&approval(number, sha)).unwrap();
        let delivery = format!("approval-{number}-{sha}");
        self.routes
            .serve(
                "/github/pr_merge",
                &github_headers("status", &delivery, &body, TEST_SECRET),
                body,
            )
            .await
    }

    async fn merge_record(&self, number: u64) -> Value {
        let history = self.store.history(&pull_stream(number), 10).await.unwrap();
        history
            .into_iter()
            .find(|e| e.outcome.as_str() == "merged")
            .map(|e| e.detail)
            .unwrap_or(Value::Null)
    }
}

async fn two_blacklist_prs_from_one_base_both_merge(backend: Backend) {
    let h = harness(backend).await;
    let first = h.blacklist_pull(1, "first.com");
    let second = h.blacklist_pull(2, "second.com");

    let answer = h.approve(1, &first).await;
    assert!(answer.reason.starts_with("Merged #1"), "{answer:?}");
    let master_before = h.repo.head("master").unwrap();
    let answer = h.approve(2, &second).await;
    assert!(answer.reason.starts_with("Merged #2"), "{answer:?}");

    assert_eq!(
        h.repo.file("master", LIST).unwrap(),
        "a.com\nb.com\nfirst.com\nsecond.com\n"
    );
    let merge = h.repo.head("master").unwrap();
    let commit = h.repo.commit_of(&merge);
    assert_eq!(commit.parents, vec![master_before, second.clone()]);
    assert_eq!(
        commit.message.lines().next(),
        Some("Merge pull request #2 from Charcoal-SE/auto-blacklist-2 --autopull")
    );
    assert_eq!(
        commit.committer,
        json!({ "name": "build-relay", "email": "build-relay@users.noreply.github.com" })
    );
    assert_eq!(h.notifier.chat(), [merged(1), merged(2)]);
    assert_eq!(h.repo.head("auto-blacklist-1"), None, "branch deleted");
    assert_eq!(h.repo.head("auto-blacklist-2"), None, "branch deleted");
    let record = h.merge_record(2).await;
    assert_eq!(
        (record["merge_sha"].as_str(), record["union"].as_bool()),
        (Some(merge.as_str()), Some(true))
    );
    assert_eq!(h.merge_record(1).await["union"], json!(false));

    // Approved again: nothing more happens.
    let again = h.approve(2, &second).await;
    assert!(again.reason.contains("handled already"), "{again:?}");
    assert_eq!(h.notifier.chat().len(), 2);
}

async fn a_conflict_outside_union_files_is_refused_and_nothing_written(backend: Backend) {
    let h = harness(backend).await;
    let first = h.repo.commit(
        "feature-1",
        &[
            ("findspam.py", Some("def find():\n    return 1\n")),
            ("logo.png", Some("\u{89}PNG\r\n\u{1a}\n\0\0\0\rIHDR-one")),
        ],
        "One",
    );
    h.repo.open_pull(1, "feature-1");
    let second = h.repo.commit(
        "feature-2",
        &[
            ("findspam.py", Some("def find():\n    return 2\n")),
            ("logo.png", Some("\u{89}PNG\r\n\u{1a}\n\0\0\0\rIHDR-two")),
            (LIST, Some("a.com\nb.com\nsecond.com\n")),
        ],
        "Two",
    );
    h.repo.open_pull(2, "feature-2");
    assert!(h.approve(1, &first).await.reason.starts_with("Merged #1"));
    let master = h.repo.head("master");
    let writes = h.repo.writes().len();

    let answer = h.approve(2, &second).await;
    assert_eq!(answer.status, http::StatusCode::OK, "{answer:?}");
    assert_eq!(
        h.repo.writes().len(),
        writes,
        "no blob, tree, commit or ref was written"
    );
    assert_eq!(h.repo.head("master"), master);
    assert_eq!(
        h.notifier.chat().last().unwrap(),
        "Could not merge SmokeDetector [#2](https://github.com/Charcoal-SE/SmokeDetector/pull/2): \
         conflicts a union merge cannot resolve in findspam.py (not marked merge=union), \
         logo.png (binary); nothing was written"
    );
    assert!(h.repo.head("feature-2").is_some(), "its branch stays");
}

async fn a_base_that_moves_meanwhile_is_merged_again(backend: Backend) {
    let h = harness(backend).await;
    let first = h.blacklist_pull(1, "first.com");
    let second = h.blacklist_pull(2, "second.com");
    assert!(h.approve(1, &first).await.reason.starts_with("Merged #1"));
    let meanwhile = format!("{}meanwhile.com\n", h.repo.file("master", LIST).unwrap());
    h.repo
        .move_master_before_next_update(&[(LIST, Some(meanwhile.as_str()))]);
    let moved_to = {
        let answer = h.approve(2, &second).await;
        assert!(answer.reason.starts_with("Merged #2"), "{answer:?}");
        h.repo.head("master").unwrap()
    };
    assert_eq!(
        h.repo.file("master", LIST).unwrap(),
        "a.com\nb.com\nfirst.com\nmeanwhile.com\nsecond.com\n"
    );
    let commit = h.repo.commit_of(&moved_to);
    assert_eq!(commit.parents[1], second);
    assert_eq!(
        h.repo.commit_of(&commit.parents[0]).message,
        "Meanwhile on master",
        "built again on the moved base"
    );
    let ref_updates = h
        .repo
        .writes()
        .into_iter()
        .filter(|(method, path)| method == "PATCH" && path == "/git/refs/heads/master")
        .count();
    assert_eq!(
        ref_updates, 2,
        "one refused as not a fast-forward, one accepted"
    );
}

async fn a_protected_branch_is_reported_with_the_fix(backend: Backend) {
    let h = harness(backend).await;
    let first = h.blacklist_pull(1, "first.com");
    let second = h.blacklist_pull(2, "second.com");
    assert!(h.approve(1, &first).await.reason.starts_with("Merged #1"));
    h.repo.protect("master");
    let master = h.repo.head("master");
    let answer = h.approve(2, &second).await;
    assert_eq!(answer.status, http::StatusCode::OK, "{answer:?}");
    assert_eq!(h.repo.head("master"), master);
    let said = h.notifier.chat().last().unwrap().clone();
    assert!(
        said.starts_with("Could not merge SmokeDetector [#2](https://github.com/Charcoal-SE/SmokeDetector/pull/2): master is protected"),
        "{said}"
    );
    assert!(
        said.contains("let the relay's account push to master"),
        "{said}"
    );
    assert!(said.contains("Protected branch update failed"), "{said}");
    let outcomes: Vec<String> = h
        .store
        .history(&pull_stream(2), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.outcome.as_str().to_string())
        .collect();
    assert_eq!(outcomes, ["refused"]);
}

async fn a_merge_whose_answer_was_lost_is_finished_once(backend: Backend) {
    let h = harness(backend).await;
    let first = h.blacklist_pull(1, "first.com");
    let second = h.blacklist_pull(2, "second.com");
    assert!(h.approve(1, &first).await.reason.starts_with("Merged #1"));
    // master moves to the merge commit, but GitHub's answers are lost, every retry's too.
    h.repo.lose_ref_update_answers(10);
    let failed = h.approve(2, &second).await;
    assert_eq!(
        failed.status,
        http::StatusCode::SERVICE_UNAVAILABLE,
        "{failed:?}"
    );
    let merge = h.repo.head("master").unwrap();
    assert_eq!(h.repo.commit_of(&merge).parents[1], second);
    h.repo.lose_ref_update_answers(0);

    // The redelivery finds the head in master: announced and cleaned up, not merged again.
    let redelivered = h.approve(2, &second).await;
    assert!(
        redelivered.reason.starts_with("Merged #2"),
        "{redelivered:?}"
    );
    assert_eq!(h.repo.head("master").unwrap(), merge);
    assert_eq!(h.notifier.chat(), [merged(1), merged(2)]);
    assert_eq!(h.repo.head("auto-blacklist-2"), None);
    assert_eq!(
        h.repo.file("master", LIST).unwrap(),
        "a.com\nb.com\nfirst.com\nsecond.com\n"
    );
}

async fn a_merge_cut_off_before_master_moved_is_built_again(backend: Backend) {
    let h = harness(backend).await;
    let first = h.blacklist_pull(1, "first.com");
    let second = h.blacklist_pull(2, "second.com");
    assert!(h.approve(1, &first).await.reason.starts_with("Merged #1"));
    let master = h.repo.head("master").unwrap();
    // The merge commit is made, then every try to move master fails: as if the process
    // died between the two.
    h.repo.fail_ref_updates(10);
    let failed = h.approve(2, &second).await;
    assert_eq!(
        failed.status,
        http::StatusCode::SERVICE_UNAVAILABLE,
        "{failed:?}"
    );
    assert_eq!(
        h.repo.head("master").unwrap(),
        master,
        "master did not move"
    );
    assert_eq!(h.notifier.chat(), [merged(1)]);
    h.repo.fail_ref_updates(0);

    let redelivered = h.approve(2, &second).await;
    assert!(
        redelivered.reason.starts_with("Merged #2"),
        "{redelivered:?}"
    );
    assert_eq!(
        h.repo.file("master", LIST).unwrap(),
        "a.com\nb.com\nfirst.com\nsecond.com\n"
    );
    let merge = h.repo.commit_of(&h.repo.head("master").unwrap());
    assert_eq!(merge.parents, vec![master, second]);
    assert_eq!(h.notifier.chat(), [merged(1), merged(2)]);
}

on_both_stores!(
    a_merge_cut_off_before_master_moved_is_built_again,
    a_merge_whose_answer_was_lost_is_finished_once,
    two_blacklist_prs_from_one_base_both_merge,
    a_conflict_outside_union_files_is_refused_and_nothing_written,
    a_base_that_moves_meanwhile_is_merged_again,
    a_protected_branch_is_reported_with_the_fix,
);
