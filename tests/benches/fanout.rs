//! Fan-out: one `commit_status` broadcast to 1,000 subscribed connections through the local
//! gateway's @connections (the real SDK client, real sockets), with 2 ms added to every post
//! to stand in for API Gateway. Baseline, in the same run: the ideal
//! `1,000 x 2 ms / FANOUT_CONCURRENCY`. Budget: within 2x of the ideal. Median of 7 runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use build_relay::broadcast::{Broadcaster, FANOUT_CONCURRENCY, ManagementApi};
use build_relay::cable;
use build_relay::notify::{Notifier, SmokeyMessage};
use build_relay::store::embedded::EmbeddedStore;
use build_relay::store::{Store, Verdict};
use futures_util::{SinkExt, StreamExt};
use relay_local::Gateway;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

const CONNECTIONS: usize = 1000;
const LATENCY: Duration = Duration::from_millis(2);
const RUNS: usize = 7;
const KEY: &str = "fanout-bench-client-key-000000";

#[tokio::main]
async fn main() {
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::in_memory());
    let mut options = integration_tests::gateway_options(
        Arc::clone(&store),
        Duration::from_secs(3600),
        integration_tests::no_github(),
        &[("bench", KEY)],
    );
    options.post_latency = LATENCY;
    let gateway = Gateway::start(options).await.unwrap();

    let received = Arc::new(AtomicUsize::new(0));
    let identifier = json!({ "channel": cable::CHANNEL, "key": KEY }).to_string();
    let subscribe = json!({ "command": "subscribe", "identifier": identifier }).to_string();
    for _ in 0..CONNECTIONS / 50 {
        let clients = (0..50).map(|_| {
            let (url, subscribe, received) = (
                gateway.cable_url(),
                subscribe.clone(),
                Arc::clone(&received),
            );
            async move {
                let (mut client, _) = tokio_tungstenite::connect_async(url).await.unwrap();
                client.send(Message::text(subscribe)).await.unwrap();
                tokio::spawn(async move {
                    while let Some(Ok(frame)) = client.next().await {
                        if matches!(&frame, Message::Text(t) if t.contains("commit_status")) {
                            received.fetch_add(1, Ordering::SeqCst);
                        }
                    }
                });
            }
        });
        futures_util::future::join_all(clients).await;
    }
    let subscribed = loop {
        let n = store
            .connections(build_relay::clock::now())
            .await
            .unwrap()
            .iter()
            .filter(|c| !c.subscriptions.is_empty())
            .count();
        if n == CONNECTIONS {
            break n;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    let broadcaster = Broadcaster::new(
        Arc::clone(&store),
        Arc::new(ManagementApi::local(&gateway.url())),
        build_relay::clock::system(),
    );
    let mut times = Vec::new();
    for run in 0..RUNS {
        let message = SmokeyMessage::CommitStatus(Verdict {
            sha: format!("{run:040x}"),
            state: "success".into(),
            ci_url: Some("https://circleci.com/gh/Charcoal-SE/SmokeDetector/1".into()),
            commit_message: "Merge pull request #1 --autopull".into(),
        });
        let started = Instant::now();
        let reach = broadcaster.notify(&message).await.unwrap();
        times.push(started.elapsed());
        assert_eq!(reach.sent, CONNECTIONS);
        while received.load(Ordering::SeqCst) < CONNECTIONS * (run + 1) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    times.sort();
    let median = times[RUNS / 2];
    let ideal = LATENCY * CONNECTIONS as u32 / FANOUT_CONCURRENCY as u32;
    println!(
        "fan-out to {subscribed} subscribed connections, {} ms per post, concurrency {FANOUT_CONCURRENCY}, median of {RUNS}\n",
        LATENCY.as_millis()
    );
    println!("| measure | time | x ideal |");
    println!("|---|---|---|");
    println!(
        "| ideal (1,000 x 2 ms / {FANOUT_CONCURRENCY}) | {:.1} ms | 1.00 |",
        ideal.as_secs_f64() * 1e3
    );
    println!(
        "| broadcast, all frames accepted | {:.1} ms | {:.2} |",
        median.as_secs_f64() * 1e3,
        median.as_secs_f64() / ideal.as_secs_f64()
    );
    gateway.stop().await;
}
