//! The status page against DynamoDB (moto) holding what a year at SmokeDetector's volume
//! leaves, TTLs applied (`seed`): 200 deliveries, 30 pull request events and 10 deploy moves
//! (each commit with three CI results and a verdict) a day, and three connected Smokeys. Measured: the page's
//! reads and its JSON (`StatusPage::answer`), median and p95 of 20; baseline in the same run:
//! one `GetItem` round trip to the same server. Budget: the median under 300 ms. Exits 1
//! past it. Seeding writes about 30,000 items and takes a minute or two. The page makes no
//! query (moto walks the whole table for each, about 300 ms here): key reads only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use build_relay::config::Secret;
use build_relay::domain::{CiSource, DEPLOY_HISTORY, HistoryEntry, HistoryOutcome, StatusRecord};
use build_relay::overview::StatusPage;
use build_relay::overview::access::Access;
use build_relay::store::recent::{CI_CONTEXTS, DELIVERIES, DEPLOY_MOVES, PULL_EVENTS, RecentList};
use build_relay::store::{Connection, Stall, Store, Verdict, VerdictRecord};
use futures_util::{StreamExt, stream};
use serde_json::json;

const DAYS: i64 = 365;
const DELIVERIES_A_DAY: i64 = 200;
const PULL_EVENTS_A_DAY: i64 = 30;
const DEPLOYS_A_DAY: i64 = 10;
const READS: usize = 20;
const BUDGET: Duration = Duration::from_millis(300);
const TOKEN: &str = "bench-operator-token";
const CONTEXTS: [&str; 3] = [
    "ci/circleci: build",
    "workflow:build",
    "code-review/pullapprove",
];

#[tokio::main]
async fn main() {
    let store: Arc<dyn Store> = Arc::new(integration_tests::moto_store().await);
    let now = build_relay::clock::now();
    let start = now - DAYS * 86_400;
    let seeding = Instant::now();
    seed(store.as_ref(), start, now).await;
    eprintln!("seeded a year of history in {:.0?}", seeding.elapsed());

    let page = StatusPage {
        store: Arc::clone(&store),
        access: Access {
            token: Some(Secret::new(TOKEN)),
            public: false,
        },
        bot_login: "SmokeDetector".into(),
        clock: build_relay::clock::system(),
    };
    let mut headers = http::HeaderMap::new();
    headers.insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let mut page_times = Vec::new();
    let mut baseline_times = Vec::new();
    for _ in 0..READS {
        let began = Instant::now();
        store
            .verdict("0000000000000000000000000000000000000000")
            .await
            .unwrap();
        baseline_times.push(began.elapsed());
        let began = Instant::now();
        let answer = page.answer("/status.json", &headers, None).await;
        page_times.push(began.elapsed());
        assert_eq!(answer.status, 200, "{}", answer.body);
        shows_a_full_page(&answer.body);
    }
    let (page_median, page_p95) = (
        percentile(&mut page_times, 50),
        percentile(&mut page_times, 95),
    );
    let baseline = percentile(&mut baseline_times, 50);
    println!("| what | median | p95 | x one GetItem |");
    println!("|---|---|---|---|");
    println!("| one GetItem (baseline) | {baseline:.1?} | | 1.00 |");
    println!(
        "| /status.json, a year of history | {page_median:.1?} | {page_p95:.1?} | {:.1} |",
        page_median.as_secs_f64() / baseline.as_secs_f64()
    );
    if page_median > BUDGET {
        eprintln!("over budget: median {page_median:?} > {BUDGET:?}");
        std::process::exit(1);
    }
}

/// The page read what the year left: full lists, CI results, stalls, Smokeys.
fn shows_a_full_page(body: &str) {
    let page: serde_json::Value = serde_json::from_str(body).unwrap();
    let count = |what: &str| page[what].as_array().map_or(0, Vec::len);
    assert_eq!(count("deploys"), 20, "{body}");
    assert_eq!(count("deliveries"), 50, "{body}");
    assert_eq!(count("stalls"), 2, "{body}");
    assert_eq!(count("smokeys"), 3, "{body}");
    assert!(count("open_pulls") > 100, "{body}");
    assert_eq!(
        page["deploys"][0]["ci"].as_array().map_or(0, Vec::len),
        3,
        "{body}"
    );
    assert_eq!(page["deploys"][0]["verdict"], "success", "{body}");
}

fn percentile(times: &mut [Duration], p: usize) -> Duration {
    times.sort();
    times[(times.len() * p / 100).min(times.len() - 1)]
}

/// What the store holds after a year, its TTLs applied: deploy histories, verdicts and pull
/// requests' own histories a year; statuses 90 days; the delivery ledger a week; the recent
/// lists as the handlers leave them (written in order, the last days' entries).
async fn seed(store: &dyn Store, start: i64, now: i64) {
    let entry = |at: i64, id: String, outcome: HistoryOutcome, detail| HistoryEntry {
        at,
        delivery_id: id,
        outcome,
        detail,
    };
    let kept = |at: i64, days: i64| at > now - days * 86_400;
    let mut writes: Vec<(String, HistoryEntry)> = Vec::new();
    let mut listed: Vec<(&RecentList, HistoryEntry)> = Vec::new();
    let mut deliveries = Vec::new();
    for day in 0..DAYS {
        let base = start + day * 86_400;
        for n in 0..DELIVERIES_A_DAY {
            let at = base + n * 86_400 / DELIVERIES_A_DAY;
            if kept(at, 8) {
                deliveries.push((format!("d-{day}-{n}"), at));
            }
            if kept(at, 1) {
                let detail = json!({ "route": "status_hook", "event": "status", "status": 200, "duration_ms": 12.5 });
                let id = format!("d-{day}-{n}");
                let handled = HistoryOutcome::Event("handled".into());
                listed.push((&DELIVERIES, entry(at, id, handled, detail)));
            }
        }
        for n in 0..PULL_EVENTS_A_DAY {
            let at = base + n * 86_400 / PULL_EVENTS_A_DAY;
            let number = day * PULL_EVENTS_A_DAY + n;
            let detail = json!({ "number": number, "author": "SmokeDetector", "action": "opened" });
            let opened = entry(
                at,
                format!("p-{number}"),
                HistoryOutcome::Event("opened".into()),
                detail,
            );
            writes.push((format!("pull/{number}"), opened.clone()));
            if kept(at, 10) {
                listed.push((&PULL_EVENTS, opened));
            }
        }
    }
    let mut commits = Vec::new();
    for n in 0..DAYS * DEPLOYS_A_DAY {
        let at = start + n * 86_400 / DEPLOYS_A_DAY;
        let sha = format!("{n:040x}");
        let moved = entry(
            at,
            format!("push-{n}"),
            HistoryOutcome::Moved,
            json!({ "to": sha, "message": "Merge pull request --autopull" }),
        );
        writes.push((DEPLOY_HISTORY.into(), moved.clone()));
        if kept(at, 3) {
            listed.push((&DEPLOY_MOVES, moved));
        }
        commits.push((at, sha, kept(at, 90)));
    }
    stream::iter(writes)
        .for_each_concurrent(32, |(stream, entry)| async move {
            store.append_history(&stream, &entry).await.unwrap();
        })
        .await;
    // One at a time, as moto's updates of one item are not atomic.
    listed.sort_by_key(|(_, entry)| entry.at);
    for (list, entry) in &listed {
        list.note(store, None, entry).await.unwrap();
    }
    for context in CONTEXTS {
        let seen = entry(
            now,
            "s-latest".into(),
            HistoryOutcome::Event("success".into()),
            json!({ "context": context }),
        );
        CI_CONTEXTS.note(store, Some(context), &seen).await.unwrap();
    }
    for (n, key) in ["deploy-differs", "approved/1234"].iter().enumerate() {
        let stall = Stall {
            since: now - 600 * n as i64,
            alerted: n == 0,
        };
        store.put_stall(key, &stall).await.unwrap();
    }
    stream::iter(deliveries)
        .for_each_concurrent(32, |(id, at)| async move {
            store.begin_delivery(&id, "status_hook", at).await.unwrap();
        })
        .await;
    stream::iter(commits)
        .for_each_concurrent(32, |(at, sha, statuses_kept)| async move {
            let contexts: &[&str] = match statuses_kept {
                true => &CONTEXTS,
                false => &[],
            };
            for context in contexts {
                store
                    .record_status(&StatusRecord {
                        sha: sha.clone(),
                        context: context.to_string(),
                        state: "success".into(),
                        target_url: None,
                        description: None,
                        sender: None,
                        updated_at: at,
                        status_id: at as u64,
                        delivery_id: format!("s-{sha}"),
                        source: CiSource::Status,
                    })
                    .await
                    .unwrap();
            }
            let record = VerdictRecord {
                verdict: Verdict {
                    sha: sha.clone(),
                    state: "success".into(),
                    ci_url: None,
                    commit_message: "Merge pull request --autopull".into(),
                },
                delivery_id: format!("s-{sha}"),
                claimed_at: at,
                notified_at: None,
                sent_to: None,
            };
            store.claim_verdict(&record, None).await.unwrap();
            store.mark_verdict_notified(&sha, at, 3).await.unwrap();
        })
        .await;
    for n in 0..3 {
        let mut connection = Connection::new(format!("conn-{n}"), None, now);
        connection.client = Some(format!("smokey-{n}"));
        connection
            .subscriptions
            .insert(json!({ "channel": "SmokeDetectorChannel", "key": n }).to_string());
        store.put_connection(&connection).await.unwrap();
    }
}
