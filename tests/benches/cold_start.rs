//! Cold start of every function's release binary against a Lambda Runtime API on
//! 127.0.0.1, with a bare lambda_http binary of the same profile as the floor.
//!
//! Per binary, 20 runs: exec -> first `GET /invocation/next` (init), exec -> first response
//! (first invocation, against moto and local fakes), and peak RSS (`VmHWM` read from
//! /proc while the process waits for its second event). Medians, and ratios to the floor.
//! Budget: init median at most 3x the floor's. Run by scripts/bench.sh (which starts moto
//! and builds the release binaries). With `RELAY_BENCH_BEFORE` (a directory of another
//! revision's release binaries, `BEFORE=<rev> scripts/bench.sh`), each of those is measured
//! too, in the same run against the same floor, as it was deployed then (no
//! `SSL_CERT_FILE`).

use std::time::Duration;

use integration_tests::fake_github::{FakeGitHub, TOKEN};
use integration_tests::runtime_api::{FunctionProcess, Outcome, RuntimeApi, release_binary};
use integration_tests::{accepting_connections_api, dynamodb_endpoint, event, moto_store};
use serde_json::Value;
use wiremock::MockServer;

const RUNS: usize = 20;
/// Init of every function at most this many times the floor's.
const BUDGET: f64 = 3.0;

struct Case {
    binary: &'static str,
    event: &'static str,
    env: Vec<(&'static str, String)>,
}

/// Which build of a binary a run starts.
#[derive(Clone, Copy, PartialEq)]
enum Build {
    Now,
    Before,
}

struct Sample {
    init: Duration,
    first_response: Duration,
    peak_rss_kb: u64,
}

fn peak_rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

async fn run_once(
    case: &Case,
    build: Build,
    connections: &MockServer,
    github: &FakeGitHub,
) -> Sample {
    let store = moto_store().await;
    let tables = store.tables().clone();
    let mut env = vec![
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint()),
        ("TABLE_NAME", tables.main),
        ("CONNECTIONS_TABLE", tables.connections),
        ("WEBSOCKET_ENDPOINT", connections.uri()),
        ("WEBHOOK_SECRET", "build-relay events secret".to_string()),
        ("GITHUB_TOKEN", TOKEN.to_string()),
        ("GITHUB_API_URL", github.url()),
    ];
    env.extend(case.env.iter().cloned());
    let api = RuntimeApi::start(vec![event::<Value>(case.event)]).await;
    let binary = match build {
        Build::Now => release_binary(case.binary),
        Build::Before => {
            env.push(("SSL_CERT_FILE", String::new()));
            before_dir().expect("RELAY_BENCH_BEFORE").join(case.binary)
        }
    };
    let function = FunctionProcess::spawn(&binary, &api, &env);
    let (outcome, at) = api
        .outcome_with_time(1, Duration::from_secs(30))
        .await
        .unwrap_or_else(|| panic!("{}: no answer", case.binary));
    assert!(
        matches!(outcome, Outcome::Response { .. }),
        "{}: {outcome:?}",
        case.binary
    );
    // The process now waits on `next`; its high-water mark is final for this invocation.
    tokio::time::sleep(Duration::from_millis(20)).await;
    let pid = function.child.id().expect("still running");
    Sample {
        init: api.first_next_at().unwrap() - function.started,
        first_response: at - function.started,
        peak_rss_kb: peak_rss_kb(pid),
    }
}

fn before_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("RELAY_BENCH_BEFORE").map(std::path::PathBuf::from)
}

fn median<T: Ord + Copy>(mut values: Vec<T>) -> T {
    values.sort();
    values[values.len() / 2]
}

#[tokio::main]
async fn main() {
    let connections = accepting_connections_api().await;
    let github = FakeGitHub::start().await;
    github.accept_deploy_moves().await;
    let one_ping = vec![
        ("KEEPALIVE_WINDOW_SECONDS", "1".to_string()),
        ("PING_INTERVAL_SECONDS", "1".to_string()),
    ];
    // A repository where deploy is master: the reconcile pass reads and finds nothing to do.
    let repo = integration_tests::fake_repo::FakeRepo::start(&[("README.md", "hello\n")]).await;
    let head = repo.head("master").unwrap();
    repo.set_branch("deploy", &head);
    let cases = [
        Case {
            binary: "hello-lambda",
            event: "github-status/deploy-success.json",
            env: vec![],
        },
        Case {
            binary: "github-status",
            event: "github-status/deploy-success.json",
            env: vec![],
        },
        Case {
            binary: "github-push",
            event: "github-push/push-master.json",
            env: vec![],
        },
        Case {
            binary: "github-pull-request",
            event: "github-pull-request/opened.json",
            env: vec![],
        },
        Case {
            binary: "ws-connect",
            event: "ws-connect/connect.json",
            env: vec![],
        },
        Case {
            binary: "ws-disconnect",
            event: "ws-disconnect/disconnect.json",
            env: vec![],
        },
        Case {
            binary: "ws-message",
            event: "ws-message/junk.json",
            env: vec![],
        },
        Case {
            binary: "ws-keepalive",
            event: "ws-keepalive/schedule.json",
            env: one_ping,
        },
        Case {
            binary: "reconcile",
            event: "reconcile/schedule.json",
            env: vec![("GITHUB_API_URL", repo.server.uri())],
        },
        Case {
            binary: "status-page",
            event: "status-page/status-json.json",
            env: vec![(
                "STATUS_TOKEN",
                "events-status-token-not-for-production".to_string(),
            )],
        },
    ];
    println!(
        "cold start, {RUNS} runs each, medians (floor: hello-lambda, same profile, same run)\n"
    );
    println!("| binary | init | x floor | first response | peak RSS | x floor |");
    println!("|---|---|---|---|---|---|");
    let mut floor: Option<(Duration, u64)> = None;
    let mut over = Vec::new();
    for case in &cases {
        let builds: &[Build] = match (before_dir(), case.binary) {
            (Some(_), binary) if binary != "hello-lambda" => &[Build::Before, Build::Now],
            _ => &[Build::Now],
        };
        for &build in builds {
            let mut samples = Vec::new();
            for _ in 0..RUNS {
                samples.push(run_once(case, build, &connections, &github).await);
            }
            let init = median(samples.iter().map(|s| s.init).collect());
            let first = median(samples.iter().map(|s| s.first_response).collect());
            let rss = median(samples.iter().map(|s| s.peak_rss_kb).collect());
            let (floor_init, floor_rss) = *floor.get_or_insert((init, rss));
            let ratio = init.as_secs_f64() / floor_init.as_secs_f64();
            let label = match build {
                Build::Now => case.binary.to_string(),
                Build::Before => format!("{} (before)", case.binary),
            };
            println!(
                "| {label} | {:.2} ms | {ratio:.2} | {:.2} ms | {:.1} MB | {:.2} |",
                init.as_secs_f64() * 1e3,
                first.as_secs_f64() * 1e3,
                rss as f64 / 1024.0,
                rss as f64 / floor_rss as f64,
            );
            if build == Build::Now && ratio > BUDGET {
                over.push(case.binary);
            }
        }
    }
    if !over.is_empty() {
        eprintln!("init over {BUDGET}x the floor: {}", over.join(", "));
        std::process::exit(1);
    }
}
