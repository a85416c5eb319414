//! Every real GitHub payload in the handbook's fixtures is accepted for its event.

use std::sync::Arc;

use build_relay::config::RelayConfig;
use build_relay::github::payloads::{self, StatusEvent};
use build_relay::notify::RecordingNotifier;
use build_relay::store::embedded::EmbeddedStore;
use integration_tests::*;

#[test]
fn every_status_fixture_parses() {
    for file in webhook_fixtures("status") {
        let body = std::fs::read(&file).unwrap();
        let event: StatusEvent =
            payloads::parse("status", &body).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(event.sha.len(), 40, "{}", file.display());
    }
}

#[tokio::test]
async fn every_status_fixture_is_handled_by_the_status_route() {
    let config = RelayConfig {
        repository: "Codertocat/Hello-World".into(),
        ..RelayConfig::default()
    };
    let webhook = test_relay(
        config,
        Arc::new(EmbeddedStore::in_memory()),
        Arc::new(RecordingNotifier::default()),
        build_relay::clock::system(),
    )
    .status_hook();
    for (n, file) in webhook_fixtures("status").into_iter().enumerate() {
        let body = std::fs::read(&file).unwrap();
        let headers = github_headers("status", &format!("fixture-{n}"), &body, TEST_SECRET);
        let answer = webhook.handle(&headers, body).await;
        assert_eq!(
            answer.status,
            http::StatusCode::OK,
            "{}: {answer:?}",
            file.display()
        );
    }
}
