//! The intake hot path against its floor, on real GitHub payloads.
//!
//! For each of a status, a push and a pull_request payload from the handbook's fixtures:
//! - floor: HMAC-SHA256 of the bytes plus `serde_json::from_slice::<Value>` of them, the
//!   least any webhook receiver does;
//! - relay: what a function does before any I/O: `intake::accept` (size, signature,
//!   headers), the route's `plan` (typed parse, repository and branch screening) and the
//!   pure decision.
//!
//! Budget: relay at most 1.5 x floor. `cargo bench -p build-relay --bench intake`.

use std::path::PathBuf;
use std::sync::Arc;

use build_relay::config::{RelayConfig, Secret, WebhookSecrets};
use build_relay::github::dry_run::DryRun;
use build_relay::github::octocrab_client::OctocrabGitHub;
use build_relay::github::retry::RetryPolicy;
use build_relay::handlers::pull_request::PullRequestHook;
use build_relay::handlers::push::PushHook;
use build_relay::handlers::status::StatusHook;
use build_relay::handlers::webhook::{Plan, Route, Webhook};
use build_relay::intake;
use build_relay::notify::RecordingNotifier;
use build_relay::relay::Relay;
use build_relay::rules;
use build_relay::store::embedded::EmbeddedStore;
use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use std::hint::black_box;

const SECRET: &[u8] = b"build-relay bench secret";

fn fixture(path: &str) -> Vec<u8> {
    let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/fixtures/github")
        .join(path);
    std::fs::read(&file).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the handbook's fixtures sit beside the checkout)",
            file.display()
        )
    })
}

fn headers(event: &str, body: &[u8]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(intake::EVENT_HEADER, event.parse().unwrap());
    headers.insert(
        intake::DELIVERY_HEADER,
        "72d3162e-cc78-11e3-81ab-4c9367dc0958".parse().unwrap(),
    );
    headers.insert(
        intake::SIGNATURE_HEADER,
        intake::sign(SECRET, body).parse().unwrap(),
    );
    headers.insert("content-type", "application/json".parse().unwrap());
    headers
}

fn floor(body: &[u8]) -> serde_json::Value {
    black_box(intake::sign(SECRET, body));
    serde_json::from_slice(body).unwrap()
}

struct Routes {
    secrets: WebhookSecrets,
    status: Webhook<StatusHook>,
    push: Webhook<PushHook>,
    pull_request: Webhook<PullRequestHook>,
}

fn routes() -> Routes {
    // The fixtures are Codertocat/Hello-World's.
    let config = RelayConfig {
        repository: "Codertocat/Hello-World".into(),
        ..RelayConfig::default()
    };
    let store = Arc::new(EmbeddedStore::in_memory());
    let notifier = Arc::new(RecordingNotifier::default());
    let reads = OctocrabGitHub::new("http://127.0.0.1:9", None, &config.repository).unwrap();
    let github = Arc::new(DryRun::new(Arc::new(reads)));
    let secrets = WebhookSecrets {
        current: Secret::new(String::from_utf8(SECRET.to_vec()).unwrap()),
        previous: None,
    };
    let relay = Relay {
        config,
        secrets: secrets.clone(),
        store,
        notifier,
        clock: build_relay::clock::system(),
        retry: RetryPolicy::default(),
    };
    Routes {
        secrets,
        status: relay.status_hook(github.clone()),
        push: relay.push_hook(github.clone()),
        pull_request: relay.pull_request_routes(github).hook,
    }
}

fn bench(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let routes = runtime.block_on(async { routes() });
    let status = fixture("status/payload.json");
    let push = fixture("push/with-new-branch.payload.json");
    let opened = fixture("pull_request/opened.payload.json");

    let mut group = c.benchmark_group("intake");
    for (name, body) in [
        ("status", &status),
        ("push", &push),
        ("pull_request", &opened),
    ] {
        group.bench_function(format!("{name}/floor"), |b| {
            b.iter(|| floor(black_box(body)))
        });
    }

    let status_headers = headers("status", &status);
    let rules_config = build_relay::config::RelayConfig::default();
    group.bench_function("status/relay", |b| {
        b.iter(|| {
            let delivery =
                intake::accept(&status_headers, black_box(&status).clone(), &routes.secrets)
                    .unwrap();
            let Ok(Plan::Act { work, .. }) =
                routes.status.route.plan(&delivery.event, &delivery.body)
            else {
                panic!()
            };
            let report = work.report(&delivery.id, "deploy");
            rules::status::decide(&report.record, &[], &rules_config)
        })
    });
    let push_headers = headers("push", &push);
    group.bench_function("push/relay", |b| {
        b.iter(|| {
            let delivery =
                intake::accept(&push_headers, black_box(&push).clone(), &routes.secrets).unwrap();
            matches!(
                routes.push.route.plan(&delivery.event, &delivery.body),
                Ok(Plan::Act { .. })
            )
        })
    });
    let opened_headers = headers("pull_request", &opened);
    group.bench_function("pull_request/relay", |b| {
        b.iter(|| {
            let delivery =
                intake::accept(&opened_headers, black_box(&opened).clone(), &routes.secrets)
                    .unwrap();
            let Ok(Plan::Act { work, .. }) = routes
                .pull_request
                .route
                .plan(&delivery.event, &delivery.body)
            else {
                panic!()
            };
            (work.action == "opened").then(|| rules::merge::opened_message(&work.pull_request))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
