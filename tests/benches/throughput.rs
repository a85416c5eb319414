//! Throughput of the local gateway with the embedded store: signed `status` deliveries for
//! deploy commits POSTed over loopback by 16 concurrent senders, each producing a
//! `commit_status` frame at a subscribed client. Reports deliveries per second and p50/p99
//! latency from POST to the frame's arrival. Baseline, in the same run and the same way:
//! signed `ping` deliveries (intake only, no storage, no frame).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use build_relay::store::embedded::EmbeddedStore;
use build_relay::{cable, intake};
use futures_util::{SinkExt, StreamExt};
use relay_local::{Gateway, Running};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const DELIVERIES: usize = 2000;
const SENDERS: usize = 16;
const KEY: &str = "throughput-bench-client-key-00";

struct Delivery {
    event: &'static str,
    id: String,
    sha: String,
    body: Vec<u8>,
    signature: String,
}

fn deliveries(event: &'static str) -> Vec<Delivery> {
    let sample: Value = serde_json::from_str(include_str!(
        "../../local/samples/status-deploy-success.json"
    ))
    .unwrap();
    (0..DELIVERIES)
        .map(|i| {
            let sha = format!("{:040x}", i + 1);
            let payload = if event == "ping" {
                json!({ "zen": "Design for failure.", "hook_id": i })
            } else {
                let mut payload = sample.clone();
                payload["sha"] = json!(sha);
                payload["commit"]["sha"] = json!(sha);
                payload
            };
            let body = serde_json::to_vec(&payload).unwrap();
            let signature = intake::sign(integration_tests::TEST_SECRET.as_bytes(), &body);
            Delivery {
                event,
                id: format!("{event}-{i}"),
                sha,
                body,
                signature,
            }
        })
        .collect()
}

/// Sends every delivery with SENDERS at a time; returns the elapsed time and each send time.
async fn load(
    gateway: &Running,
    deliveries: &[Delivery],
) -> (Duration, Vec<(String, Instant, Instant)>) {
    let http = reqwest::Client::new();
    let next = AtomicUsize::new(0);
    let url = format!("{}/github/status_hook", gateway.url());
    let started = Instant::now();
    let senders = (0..SENDERS).map(|_| async {
        let mut sent = Vec::new();
        loop {
            let i = next.fetch_add(1, Ordering::SeqCst);
            let Some(d) = deliveries.get(i) else {
                return sent;
            };
            let at = Instant::now();
            let response = http
                .post(&url)
                .header("content-type", "application/json")
                .header(intake::EVENT_HEADER, d.event)
                .header(intake::DELIVERY_HEADER, &d.id)
                .header(intake::SIGNATURE_HEADER, &d.signature)
                .body(d.body.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(
                response.status(),
                200,
                "{}",
                response.text().await.unwrap_or_default()
            );
            sent.push((d.sha.clone(), at, Instant::now()));
        }
    });
    let sent = futures_util::future::join_all(senders)
        .await
        .into_iter()
        .flatten()
        .collect();
    (started.elapsed(), sent)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let options = integration_tests::gateway_options(
        Arc::new(EmbeddedStore::in_memory()),
        Duration::from_secs(3600),
        integration_tests::no_github(),
        &[("bench", KEY)],
    );
    let gateway = Gateway::start(options).await.unwrap();

    let arrivals: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let (mut client, _) = tokio_tungstenite::connect_async(gateway.cable_url())
        .await
        .unwrap();
    let identifier = json!({ "channel": cable::CHANNEL, "key": KEY }).to_string();
    client
        .send(Message::text(
            json!({ "command": "subscribe", "identifier": identifier }).to_string(),
        ))
        .await
        .unwrap();
    // Read up to the confirmation (a keepalive ping may come first).
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(5), client.next())
            .await
            .expect("a reply to subscribe")
            .unwrap()
            .unwrap();
        if frame
            .to_text()
            .is_ok_and(|t| t.contains("confirm_subscription"))
        {
            break;
        }
    }
    let recorder = Arc::clone(&arrivals);
    tokio::spawn(async move {
        while let Some(Ok(Message::Text(text))) = client.next().await {
            let frame: Value = serde_json::from_str(&text).unwrap();
            if let Some(sha) = frame["message"]["commit_status"]["commit_sha"].as_str() {
                recorder
                    .lock()
                    .unwrap()
                    .insert(sha.to_string(), Instant::now());
            }
        }
    });

    let (ping_elapsed, ping_sent) = load(&gateway, &deliveries("ping")).await;
    let (status_elapsed, status_sent) = load(&gateway, &deliveries("status")).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while arrivals.lock().unwrap().len() < DELIVERIES && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let arrivals = arrivals.lock().unwrap().clone();
    assert_eq!(
        arrivals.len(),
        DELIVERIES,
        "every delivery reached the client"
    );

    let mut ping_latency: Vec<Duration> = ping_sent
        .iter()
        .map(|(_, sent, answered)| *answered - *sent)
        .collect();
    let mut frame_latency: Vec<Duration> = status_sent
        .iter()
        .map(|(sha, sent, _)| arrivals[sha] - *sent)
        .collect();
    ping_latency.sort();
    frame_latency.sort();
    let rate = |elapsed: Duration| DELIVERIES as f64 / elapsed.as_secs_f64();
    println!(
        "{DELIVERIES} signed deliveries, {SENDERS} concurrent senders over loopback, embedded store\n"
    );
    println!("| load | deliveries/s | x baseline | p50 | p99 |");
    println!("|---|---|---|---|---|");
    println!(
        "| baseline: ping (intake only), POST -> answer | {:.0} | 1.00 | {:.2} ms | {:.2} ms |",
        rate(ping_elapsed),
        percentile(&ping_latency, 0.5).as_secs_f64() * 1e3,
        percentile(&ping_latency, 0.99).as_secs_f64() * 1e3
    );
    println!(
        "| status for a deploy commit, POST -> commit_status frame at the client | {:.0} | {:.2} | {:.2} ms | {:.2} ms |",
        rate(status_elapsed),
        rate(status_elapsed) / rate(ping_elapsed),
        percentile(&frame_latency, 0.5).as_secs_f64() * 1e3,
        percentile(&frame_latency, 0.99).as_secs_f64() * 1e3
    );
    gateway.stop().await;
}
