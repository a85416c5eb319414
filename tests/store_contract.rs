//! The storage contract: every test runs against the embedded store and against DynamoDB
//! on moto, so the two implementations cannot drift apart.

use std::sync::Arc;

use build_relay::store::*;
use build_relay::store::{Claim, ClaimRecord, ClaimState, HistoryEntry};
use integration_tests::{Backend, on_both_stores, store};

const NOW: i64 = 1_700_000_000;

fn status(context: &str, state: &str, updated_at: i64, status_id: u64) -> StatusRecord {
    StatusRecord {
        sha: "c0ffee".repeat(6) + "cafe",
        context: context.into(),
        state: state.into(),
        target_url: Some("https://circleci.com/gh/x/1".into()),
        description: None,
        sender: Some("circleci".into()),
        updated_at,
        status_id,
        delivery_id: format!("d-{status_id}"),
        source: CiSource::Status,
    }
}

fn verdict_record(delivery: &str) -> VerdictRecord {
    VerdictRecord {
        verdict: Verdict {
            sha: "c0ffee".repeat(6) + "cafe",
            state: "success".into(),
            ci_url: None,
            commit_message: "Merge --autopull".into(),
        },
        delivery_id: delivery.into(),
        claimed_at: NOW,
        notified_at: None,
        sent_to: None,
    }
}

async fn ledger_runs_a_delivery_once(backend: Backend) {
    let store = store(backend).await;
    assert_eq!(
        store
            .begin_delivery("d1", "status_hook", NOW)
            .await
            .unwrap(),
        DeliveryStart::Fresh
    );
    assert_eq!(
        store
            .begin_delivery("d1", "status_hook", NOW + 1)
            .await
            .unwrap(),
        DeliveryStart::InFlight
    );
    store
        .end_delivery("d1", DeliveryEnd::Handled, "Sent success", NOW + 2)
        .await
        .unwrap();
    assert_eq!(
        store
            .begin_delivery("d1", "status_hook", NOW + 3)
            .await
            .unwrap(),
        DeliveryStart::AlreadyHandled {
            outcome: "Sent success".into()
        }
    );
}

async fn ledger_lets_failed_and_stale_deliveries_through(backend: Backend) {
    let store = store(backend).await;
    store.begin_delivery("failed", "r", NOW).await.unwrap();
    store
        .end_delivery("failed", DeliveryEnd::Failed, "GitHub down", NOW)
        .await
        .unwrap();
    assert_eq!(
        store.begin_delivery("failed", "r", NOW + 1).await.unwrap(),
        DeliveryStart::Retry
    );

    store.begin_delivery("crashed", "r", NOW).await.unwrap();
    let later = NOW + DELIVERY_LEASE_SECONDS + 1;
    assert_eq!(
        store.begin_delivery("crashed", "r", later).await.unwrap(),
        DeliveryStart::Retry
    );
    assert_eq!(
        store.begin_delivery("crashed", "r", later).await.unwrap(),
        DeliveryStart::InFlight
    );
}

async fn concurrent_begins_admit_exactly_one(backend: Backend) {
    let store = store(backend).await;
    let attempts = (0..8).map(|_| {
        let store = Arc::clone(&store);
        tokio::spawn(async move { store.begin_delivery("race", "r", NOW).await.unwrap() })
    });
    let starts = futures_util::future::join_all(attempts).await;
    let fresh = starts
        .iter()
        .filter(|s| matches!(s.as_ref().unwrap(), DeliveryStart::Fresh))
        .count();
    assert_eq!(fresh, 1, "{starts:?}");
}

async fn statuses_keep_the_newest_per_context(backend: Backend) {
    let store = store(backend).await;
    let newer = status("ci", "success", NOW + 10, 2);
    let older = status("ci", "pending", NOW, 1);
    assert_eq!(
        store.record_status(&newer).await.unwrap(),
        StatusWrite::Applied
    );
    assert_eq!(
        store.record_status(&older).await.unwrap(),
        StatusWrite::Stale
    );
    // Same second: the higher status id wins; the same status again is harmless.
    assert_eq!(
        store
            .record_status(&status("ci", "failure", NOW + 10, 1))
            .await
            .unwrap(),
        StatusWrite::Stale
    );
    assert_eq!(
        store.record_status(&newer).await.unwrap(),
        StatusWrite::Applied
    );
    store
        .record_status(&status("lint", "failure", NOW, 3))
        .await
        .unwrap();

    let mut latest = store.latest_statuses(&newer.sha).await.unwrap();
    latest.sort_by(|a, b| a.context.cmp(&b.context));
    assert_eq!(
        latest,
        vec![newer.clone(), status("lint", "failure", NOW, 3)]
    );
    assert!(store.latest_statuses("unknown").await.unwrap().is_empty());
}

async fn statuses_keep_every_field(backend: Backend) {
    let store = store(backend).await;
    let full = StatusRecord {
        description: Some("Your tests passed on CircleCI!".into()),
        ..status("ci/circleci", "success", NOW, 7)
    };
    let bare = StatusRecord {
        target_url: None,
        sender: None,
        ..status("bare", "error", NOW, 8)
    };
    store.record_status(&full).await.unwrap();
    store.record_status(&bare).await.unwrap();
    let mut checks = Vec::new();
    for (source, id) in [
        (CiSource::WorkflowRun, 9),
        (CiSource::CheckRun, 10),
        (CiSource::CheckSuite, 11),
    ] {
        let check = StatusRecord {
            source,
            description: None,
            ..status(&format!("{}:build", source.as_str()), "neutral", NOW, id)
        };
        store.record_status(&check).await.unwrap();
        checks.push(check);
    }
    let latest = store.latest_statuses(&full.sha).await.unwrap();
    assert!(
        latest.contains(&full) && latest.contains(&bare),
        "{latest:?}"
    );
    for check in &checks {
        assert!(latest.contains(check), "{check:?} in {latest:?}");
    }
}

async fn a_verdict_is_claimed_once(backend: Backend) {
    let store = store(backend).await;
    let first = verdict_record("d1");
    // The claim and its message, at a place given out before: both.
    let place = store.reserve_place().await.unwrap();
    assert_eq!(
        store
            .claim_verdict(&first, Some((place, "the verdict")))
            .await
            .unwrap(),
        VerdictClaim::Claimed
    );
    // A second claim, with a message of its own: neither.
    let later = store.reserve_place().await.unwrap();
    let VerdictClaim::Taken(existing) = store
        .claim_verdict(&verdict_record("d2"), Some((later, "again")))
        .await
        .unwrap()
    else {
        panic!("second claim must see the first");
    };
    assert_eq!(existing, first);
    let outbox = store.outbox_after(0, 0, 10).await.unwrap();
    assert_eq!(
        outbox
            .iter()
            .map(|e| (e.seq, e.message.as_str(), e.at))
            .collect::<Vec<_>>(),
        [(place, "the verdict", NOW)]
    );
    assert_eq!(store.outbox_head().await.unwrap(), later);
    store
        .mark_verdict_notified(&first.verdict.sha, NOW + 5, 3)
        .await
        .unwrap();
    let VerdictClaim::Taken(existing) = store
        .claim_verdict(&verdict_record("d3"), None)
        .await
        .unwrap()
    else {
        panic!("still taken");
    };
    assert_eq!(existing.notified_at, Some(NOW + 5));
    let read = store.verdict(&first.verdict.sha).await.unwrap().unwrap();
    assert_eq!(
        (read.verdict, read.notified_at, read.sent_to),
        (first.verdict, Some(NOW + 5), Some(3))
    );
    assert_eq!(store.verdict("unknown").await.unwrap(), None);
}

async fn stalls_are_kept_until_removed(backend: Backend) {
    let store = store(backend).await;
    assert!(store.stalls().await.unwrap().is_empty());
    let watched = Stall {
        since: NOW,
        alerted: false,
    };
    store.put_stall("approved/7", &watched).await.unwrap();
    store.put_stall("deploy-differs", &watched).await.unwrap();
    let alerted = Stall {
        alerted: true,
        ..watched
    };
    store.put_stall("approved/7", &alerted).await.unwrap();
    let mut stalls = store.stalls().await.unwrap();
    stalls.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        stalls,
        vec![
            ("approved/7".to_string(), alerted),
            ("deploy-differs".to_string(), watched),
        ]
    );
    store.remove_stall("approved/7").await.unwrap();
    store.remove_stall("never-there").await.unwrap();
    assert_eq!(
        store.stalls().await.unwrap(),
        vec![("deploy-differs".to_string(), watched)]
    );
}

async fn concurrent_claims_have_one_winner(backend: Backend) {
    let store = store(backend).await;
    let claims = (0..8).map(|i| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .claim_verdict(&verdict_record(&format!("d{i}")), None)
                .await
                .unwrap()
        })
    });
    let results = futures_util::future::join_all(claims).await;
    let won = results
        .iter()
        .filter(|r| matches!(r.as_ref().unwrap(), VerdictClaim::Claimed))
        .count();
    assert_eq!(won, 1);
}

async fn concurrent_claims_with_their_messages_add_one_message(backend: Backend) {
    let store = store(backend).await;
    let claims = (0..8).map(|i| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let place = store.reserve_place().await.unwrap();
            let message = format!("verdict of d{i}");
            let record = verdict_record(&format!("d{i}"));
            let claim = store.claim_verdict(&record, Some((place, &message)));
            (claim.await.unwrap(), place, message)
        })
    });
    let results = futures_util::future::join_all(claims).await;
    let won: Vec<(u64, String)> = results
        .into_iter()
        .map(Result::unwrap)
        .filter(|(claim, _, _)| matches!(claim, VerdictClaim::Claimed))
        .map(|(_, place, message)| (place, message))
        .collect();
    assert_eq!(won.len(), 1);
    let outbox: Vec<(u64, String)> = store
        .outbox_after(0, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e.message))
        .collect();
    assert_eq!(outbox, won, "the winner's message, and no other");
}

async fn concurrent_notes_all_reach_a_recent_list(backend: Backend) {
    let store = store(backend).await;
    let notes = (0..20).map(|i| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let entry = HistoryEntry {
                at: NOW + i,
                delivery_id: format!("d{i}"),
                outcome: HistoryOutcome::parse("handled"),
                detail: serde_json::Value::Null,
            };
            store
                .note_recent("deliveries", None, &entry, 50)
                .await
                .unwrap()
        })
    });
    futures_util::future::join_all(notes).await;
    let listed = store.recent(&["deliveries"]).await.unwrap().remove(0);
    let ids: Vec<String> = listed.into_iter().map(|e| e.delivery_id).collect();
    let expected: Vec<String> = (0..20).rev().map(|i| format!("d{i}")).collect();
    assert_eq!(ids, expected, "every note, newest first");
}

async fn deploy_marks_are_remembered(backend: Backend) {
    let store = store(backend).await;
    assert!(!store.is_deployed("abc").await.unwrap());
    store.mark_deployed("abc", "d1", NOW).await.unwrap();
    assert!(store.is_deployed("abc").await.unwrap());
}

async fn connections_subscribe_and_expire(backend: Backend) {
    let store = store(backend).await;
    store
        .put_connection(&Connection::new("A=", Some("192.0.2.1".into()), NOW))
        .await
        .unwrap();
    store
        .put_connection(&Connection::new("B=", None, NOW - ttl::CONNECTION - 1))
        .await
        .unwrap();
    assert!(
        store
            .subscribe("A=", "{\"channel\":\"X\"}", "smokey-1")
            .await
            .unwrap()
    );
    assert!(!store.subscribe("ghost", "{}", "smokey-1").await.unwrap());

    let live = store.connections(NOW).await.unwrap();
    assert_eq!(live.len(), 1, "the expired row is filtered: {live:?}");
    assert_eq!(live[0].source_ip.as_deref(), Some("192.0.2.1"));
    assert!(live[0].subscriptions.contains("{\"channel\":\"X\"}"));
    assert_eq!(live[0].client.as_deref(), Some("smokey-1"));

    assert!(
        store
            .unsubscribe("A=", "{\"channel\":\"X\"}")
            .await
            .unwrap()
    );
    assert!(!store.unsubscribe("ghost", "{}").await.unwrap());
    assert!(
        store.connections(NOW).await.unwrap()[0]
            .subscriptions
            .is_empty()
    );
    store.delete_connection("A=").await.unwrap();
    store.delete_connection("never-there").await.unwrap();
    assert!(store.connections(NOW).await.unwrap().is_empty());
}

async fn client_keys_are_named_hashes(backend: Backend) {
    let store = store(backend).await;
    let key = ClientKey {
        name: "smokey-1".into(),
        key_hash: "ab".repeat(32),
        created_at: NOW,
    };
    assert!(store.add_client_key(&key).await.unwrap());
    assert!(
        !store
            .add_client_key(&ClientKey {
                key_hash: "cd".repeat(32),
                ..key.clone()
            })
            .await
            .unwrap()
    );
    assert_eq!(
        store.client_key_by_hash(&"ab".repeat(32)).await.unwrap(),
        Some(key.clone())
    );
    assert_eq!(
        store.client_key_by_hash(&"cd".repeat(32)).await.unwrap(),
        None
    );
    assert_eq!(store.client_keys().await.unwrap(), vec![key]);
    assert!(store.revoke_client_key("smokey-1").await.unwrap());
    assert!(!store.revoke_client_key("smokey-1").await.unwrap());
    assert!(store.client_keys().await.unwrap().is_empty());
}

async fn history_is_kept_newest_first(backend: Backend) {
    let store = store(backend).await;
    for (at, outcome) in [
        (NOW, "moved"),
        (NOW + 2, "diverged"),
        (NOW + 1, "already-contained"),
    ] {
        let entry = HistoryEntry {
            at,
            delivery_id: format!("d{at}"),
            outcome: HistoryOutcome::parse(outcome),
            detail: serde_json::json!({ "sha": "abc", "commits": ["x", "y"] }),
        };
        store.append_history("deploy", &entry).await.unwrap();
    }
    let newest = store.history("deploy", 2).await.unwrap();
    let outcomes: Vec<&str> = newest.iter().map(|e| e.outcome.as_str()).collect();
    assert_eq!(outcomes, ["diverged", "already-contained"]);
    assert_eq!(newest[0].detail["commits"][1], "y");
    assert!(store.history("pull/1", 10).await.unwrap().is_empty());
    // Entries of the same second come back last written first.
    for outcome in ["first", "second", "third"] {
        let entry = HistoryEntry {
            at: NOW + 5,
            delivery_id: "d".into(),
            outcome: HistoryOutcome::parse(outcome),
            detail: serde_json::Value::Null,
        };
        store.append_history("same-second", &entry).await.unwrap();
    }
    let order: Vec<String> = store
        .history("same-second", 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.outcome.as_str().to_string())
        .collect();
    assert_eq!(order, ["third", "second", "first"]);
}

async fn recent_lists_keep_their_newest_entries(backend: Backend) {
    let store = store(backend).await;
    let entry = |at: i64, what: &str| HistoryEntry {
        at,
        delivery_id: format!("d{at}"),
        outcome: HistoryOutcome::parse(what),
        detail: serde_json::json!({ "what": what }),
    };
    assert_eq!(
        store.recent(&["deliveries", "nothing"]).await.unwrap(),
        vec![Vec::new(), Vec::new()]
    );
    // Twelve notes into a list of eight, out of time order, several in one second.
    let times = [3, 1, 2, 7, 5, 5, 6, 11, 9, 10, 8, 12];
    for (i, at) in times.into_iter().enumerate() {
        store
            .note_recent("deliveries", None, &entry(NOW + at, &format!("n{i}")), 8)
            .await
            .unwrap();
    }
    // Entries replaced by id: the same context noted twice is one entry.
    for (at, context) in [(1, "ci"), (2, "build"), (3, "ci")] {
        let seen = entry(NOW + at, context);
        store
            .note_recent("contexts", Some(context), &seen, 8)
            .await
            .unwrap();
    }
    let lists = store.recent(&["deliveries", "contexts"]).await.unwrap();
    let times: Vec<i64> = lists[0].iter().map(|e| e.at - NOW).collect();
    // Kept: the newest eight, newest first (up to a quarter more between trims).
    assert!(times.len() >= 8 && times.len() <= 10, "{times:?}");
    assert_eq!(times[..8], [12, 11, 10, 9, 8, 7, 6, 5]);
    assert_eq!(lists[0][0], entry(NOW + 12, "n11"));
    let contexts: Vec<(i64, &str)> = lists[1]
        .iter()
        .map(|e| (e.at - NOW, e.detail["what"].as_str().unwrap()))
        .collect();
    assert_eq!(contexts, [(3, "ci"), (2, "build")]);
}

async fn places_are_given_out_written_in_any_order_and_given_back(backend: Backend) {
    let store = store(backend).await;
    let first = store.reserve_place().await.unwrap();
    let second = store.reserve_place().await.unwrap();
    assert_eq!((first, second), (1, 2));
    // Written in the other order: read in the order of places.
    store.put_outbox_entry(second, "two", NOW).await.unwrap();
    store.put_outbox_entry(first, "one", NOW).await.unwrap();
    let read: Vec<(u64, String)> = store
        .outbox_after(0, 0, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.seq, e.message))
        .collect();
    assert_eq!(read, [(1, "one".to_string()), (2, "two".to_string())]);
    // Given back only while it is the last one given out; else it stays a gap.
    let unused = store.reserve_place().await.unwrap();
    let after = store.reserve_place().await.unwrap();
    store.release_place(unused).await.unwrap();
    assert_eq!(store.outbox_head().await.unwrap(), after);
    store.release_place(after).await.unwrap();
    assert_eq!(store.outbox_head().await.unwrap(), unused);
    assert_eq!(store.append_outbox("three", NOW).await.unwrap(), after);
}

async fn a_claim_has_one_holder(backend: Backend) {
    let store = store(backend).await;
    let claims = (0..6).map(|i| {
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            store
                .claim("merge/7@abc", &format!("d{i}"), NOW)
                .await
                .unwrap()
        })
    });
    let results = futures_util::future::join_all(claims).await;
    assert_eq!(
        results
            .iter()
            .filter(|r| matches!(r.as_ref().unwrap(), Claim::Won))
            .count(),
        1
    );
    let Claim::Held(held) = store.claim("merge/7@abc", "d9", NOW).await.unwrap() else {
        panic!("one of d0..d5 holds it");
    };
    assert_eq!(
        store.claim_holder("merge/7@abc").await.unwrap(),
        Some(held.clone()),
        "read as it stands"
    );
    assert_eq!(store.claim_holder("merge/8@abc").await.unwrap(), None);
    // Six deliveries try to move it on from what they all read: one succeeds.
    let swaps = (0..6).map(|i| {
        let (store, held) = (Arc::clone(&store), held.clone());
        tokio::spawn(async move {
            let mine = ClaimRecord {
                owner: format!("s{i}"),
                claimed_at: NOW + 1,
                state: ClaimState::Merged,
            };
            store.swap_claim("merge/7@abc", &held, &mine).await.unwrap()
        })
    });
    let swapped = futures_util::future::join_all(swaps).await;
    assert_eq!(swapped.iter().filter(|s| *s.as_ref().unwrap()).count(), 1);
    let Claim::Held(now_held) = store.claim("merge/7@abc", "d10", NOW + 2).await.unwrap() else {
        panic!("still held");
    };
    assert_eq!(now_held.state, ClaimState::Merged);
    assert_eq!(now_held.claimed_at, NOW + 1);
    assert!(now_held.owner.starts_with('s'));
    assert!(
        !store
            .swap_claim("merge/7@abc", &held, &now_held)
            .await
            .unwrap(),
        "a swap from a record that is no longer there changes nothing"
    );
}

/// Claims as version one wrote them (state names as plain strings) read back typed.
#[tokio::test]
async fn claims_written_by_version_one_read_back_on_dynamodb() {
    use aws_sdk_dynamodb::types::AttributeValue::{N, S};
    let store = integration_tests::moto_store().await;
    for (key, state) in [
        ("merge/1@a", "announced"),
        ("merge/2@b", "failed"),
        ("merge/3@c", "merged-elsewhere"),
    ] {
        integration_tests::dynamodb_client(&integration_tests::dynamodb_endpoint())
            .put_item()
            .table_name(&store.tables().main)
            .item("pk", S(format!("claim#{key}")))
            .item("sk", S("claim".into()))
            .item("owner", S("v1-delivery".into()))
            .item("claimed_at", N(NOW.to_string()))
            .item("state", S(state.into()))
            .item("expires_at", N((NOW + 86_400).to_string()))
            .send()
            .await
            .unwrap();
        let Claim::Held(held) = store.claim(key, "d", NOW).await.unwrap() else {
            panic!("{key} is held");
        };
        assert_eq!(held.state.as_str(), state);
        assert_eq!(held.owner, "v1-delivery");
    }
}

#[tokio::test]
async fn history_written_by_version_one_reads_back_typed_on_dynamodb() {
    use aws_sdk_dynamodb::types::AttributeValue::{N, S};
    let store = integration_tests::moto_store().await;
    let client = integration_tests::dynamodb_client(&integration_tests::dynamodb_endpoint());
    for (i, outcome) in ["stray-commit", "branch-not-deleted", "synchronize"]
        .iter()
        .enumerate()
    {
        client
            .put_item()
            .table_name(&store.tables().main)
            .item("pk", S("history#pull/7".into()))
            .item("sk", S(format!("{:012}#{:016}#{i}", NOW + i as i64, 0)))
            .item("at", N((NOW + i as i64).to_string()))
            .item("delivery_id", S(format!("v1-{i}")))
            .item("outcome", S((*outcome).into()))
            .item("detail", S("{}".into()))
            .send()
            .await
            .unwrap();
    }
    let read = outcomes(&store, "pull/7").await;
    assert_eq!(
        read,
        [
            HistoryOutcome::Event("synchronize".into()),
            HistoryOutcome::BranchNotDeleted,
            HistoryOutcome::StrayCommit,
        ]
    );
}

/// The embedded store's file as version one wrote it loads, claims included.
#[tokio::test]
async fn a_state_file_written_by_version_one_loads() {
    let dir = std::env::temp_dir().join(format!("relay-v1-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("relay.json");
    std::fs::write(
        &file,
        serde_json::json!({
            "deliveries": { "d1": { "started_at": NOW, "end": "handled", "outcome": "Merged #7" } },
            "statuses": {}, "verdicts": {}, "deployed": { "abc": NOW },
            "history": { "pull/7": [
                { "at": NOW, "delivery_id": "d0", "outcome": "opened", "detail": {} },
                { "at": NOW + 1, "delivery_id": "d1", "outcome": "merged", "detail": {} }
            ] },
            "claims": {
                "merge/7@abc": { "owner": "d1", "claimed_at": NOW, "state": "announced" },
                "merge/8@def": { "owner": "d2", "claimed_at": NOW, "state": "refused" }
            },
            "connections": {}, "client_keys": {}
        })
        .to_string(),
    )
    .unwrap();
    let store = build_relay::store::embedded::EmbeddedStore::open(&file).unwrap();
    for (key, state) in [
        ("merge/7@abc", ClaimState::Announced),
        ("merge/8@def", ClaimState::Refused),
    ] {
        let Claim::Held(held) = store.claim(key, "d9", NOW).await.unwrap() else {
            panic!("{key} is held");
        };
        assert_eq!(held.state, state);
    }
    assert!(store.is_deployed("abc").await.unwrap());
    let trail = outcomes(&store, "pull/7").await;
    assert_eq!(
        trail,
        [
            HistoryOutcome::Merged,
            HistoryOutcome::Event("opened".into())
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

async fn the_outbox_keeps_order_and_cursors_only_go_forward(backend: Backend) {
    let store = store(backend).await;
    assert_eq!(store.outbox_head().await.unwrap(), 0);
    let mut places = Vec::new();
    for (i, at) in [NOW - 100, NOW - 50, NOW].into_iter().enumerate() {
        let message = format!(r#"{{"message":"n{i}", "spaced" : true}}"#);
        places.push(store.append_outbox(&message, at).await.unwrap());
    }
    assert_eq!(places, [1, 2, 3]);
    assert_eq!(store.outbox_head().await.unwrap(), 3);

    let after_first = store.outbox_after(1, 0, 100).await.unwrap();
    assert_eq!(
        after_first.iter().map(|e| e.seq).collect::<Vec<_>>(),
        [2, 3]
    );
    assert_eq!(
        after_first[0].message,
        r#"{"message":"n1", "spaced" : true}"#
    );
    assert_eq!(after_first[0].at, NOW - 50);
    // The window leaves out what is older; the limit cuts the rest.
    let recent = store.outbox_after(0, NOW - 60, 100).await.unwrap();
    assert_eq!(recent.iter().map(|e| e.seq).collect::<Vec<_>>(), [2, 3]);
    assert_eq!(store.outbox_after(0, 0, 1).await.unwrap().len(), 1);
    assert!(store.outbox_after(3, 0, 100).await.unwrap().is_empty());

    assert_eq!(store.cursor("smokey-1").await.unwrap(), None);
    store.advance_cursor("smokey-1", 2, NOW).await.unwrap();
    store.advance_cursor("smokey-1", 1, NOW).await.unwrap();
    assert_eq!(store.cursor("smokey-1").await.unwrap(), Some(2));
    store.advance_cursor("smokey-1", 3, NOW + 7).await.unwrap();
    assert_eq!(store.cursor("smokey-1").await.unwrap(), Some(3));
    assert_eq!(
        store.cursor_and_moved_at("smokey-1").await.unwrap(),
        Some((3, Some(NOW + 7)))
    );
    // A cursor that does not move keeps its time.
    store.advance_cursor("smokey-1", 2, NOW + 9).await.unwrap();
    assert_eq!(
        store.cursor_and_moved_at("smokey-1").await.unwrap(),
        Some((3, Some(NOW + 7)))
    );
    assert_eq!(store.cursor_and_moved_at("smokey-2").await.unwrap(), None);
    assert_eq!(store.cursor("smokey-2").await.unwrap(), None);
    // A key added again starts over where it is added, back or forward.
    store.start_cursor("smokey-1", 1, NOW).await.unwrap();
    assert_eq!(store.cursor("smokey-1").await.unwrap(), Some(1));
    store.start_cursor("smokey-2", 3, NOW).await.unwrap();
    assert_eq!(store.cursor("smokey-2").await.unwrap(), Some(3));
}

async fn a_bridged_frame_enters_the_outbox_once_within_its_horizon(backend: Backend) {
    let store = store(backend).await;
    let first = store.append_outbox_once("m1", "f1", NOW, 15).await.unwrap();
    assert_eq!(first, Some(1));
    assert_eq!(
        store
            .append_outbox_once("m1", "f1", NOW + 10, 15)
            .await
            .unwrap(),
        None
    );
    let other = store
        .append_outbox_once("m2", "f2", NOW + 10, 15)
        .await
        .unwrap();
    assert!(other.is_some_and(|seq| seq > 1));
    // The second sighting did not restart the horizon: past it, the same frame is new.
    let again = store
        .append_outbox_once("m1", "f1", NOW + 16, 15)
        .await
        .unwrap();
    assert!(again.is_some());
    // Exactly the frames that counted are in the outbox, in order.
    let entries = store.outbox_after(0, 0, 10).await.unwrap();
    let messages: Vec<&str> = entries.iter().map(|e| e.message.as_str()).collect();
    assert_eq!(messages, ["m1", "m2", "m1"]);
    assert_eq!(entries[0].at, NOW);
}

async fn commit_summaries_read_verdicts_and_named_results_by_key(backend: Backend) {
    let store = store(backend).await;
    let first = "c0ffee".repeat(6) + "cafe";
    let mut other = status("ci/b", "failure", NOW, 2);
    other.sha = "ab".repeat(20);
    for record in [
        status("ci/a", "success", NOW, 1),
        status("ci/c", "success", NOW, 3),
        other.clone(),
    ] {
        store.record_status(&record).await.unwrap();
    }
    store
        .claim_verdict(&verdict_record("d1"), None)
        .await
        .unwrap();
    let shas = [first.clone(), other.sha.clone(), "00".repeat(20)];
    let contexts = ["ci/a".to_string(), "ci/b".to_string()];
    let summaries = store.commit_summaries(&shas, &contexts).await.unwrap();
    assert_eq!(summaries.len(), 3);
    assert_eq!(summaries[0].verdict, Some(verdict_record("d1")));
    assert_eq!(
        summaries[0].results,
        [status("ci/a", "success", NOW, 1)],
        "ci/c not asked for"
    );
    assert_eq!(
        (summaries[1].verdict.clone(), summaries[1].results.clone()),
        (None, vec![other])
    );
    assert_eq!(summaries[2], CommitSummary::default());
    assert!(
        store
            .commit_summaries(&[], &contexts)
            .await
            .unwrap()
            .is_empty()
    );
}

on_both_stores!(
    commit_summaries_read_verdicts_and_named_results_by_key,
    the_outbox_keeps_order_and_cursors_only_go_forward,
    a_bridged_frame_enters_the_outbox_once_within_its_horizon,
    history_is_kept_newest_first,
    recent_lists_keep_their_newest_entries,
    places_are_given_out_written_in_any_order_and_given_back,
    a_claim_has_one_holder,
    ledger_runs_a_delivery_once,
    ledger_lets_failed_and_stale_deliveries_through,
    concurrent_begins_admit_exactly_one,
    statuses_keep_the_newest_per_context,
    statuses_keep_every_field,
    a_verdict_is_claimed_once,
    concurrent_claims_have_one_winner,
    concurrent_claims_with_their_messages_add_one_message,
    concurrent_notes_all_reach_a_recent_list,
    deploy_marks_are_remembered,
    connections_subscribe_and_expire,
    client_keys_are_named_hashes,
    stalls_are_kept_until_removed,
);

#[tokio::test]
async fn the_embedded_store_survives_a_restart_when_kept_in_a_file() {
    let dir = std::env::temp_dir().join(format!("relay-embedded-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("state.json");
    let _ = std::fs::remove_file(&file);
    {
        let store = build_relay::store::embedded::EmbeddedStore::open(&file).unwrap();
        store.mark_deployed("abc", "d", NOW).await.unwrap();
    }
    let reopened = build_relay::store::embedded::EmbeddedStore::open(&file).unwrap();
    assert!(reopened.is_deployed("abc").await.unwrap());
    std::fs::write(&file, b"{not json").unwrap();
    assert!(matches!(
        build_relay::store::embedded::EmbeddedStore::open(&file),
        Err(StoreError::Corrupt(_))
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// The outcomes of a trail, newest first.
async fn outcomes(store: &dyn History, stream: &str) -> Vec<HistoryOutcome> {
    let entries = store.history(stream, 10).await.unwrap();
    entries.into_iter().map(|e| e.outcome).collect()
}
