//! Every real GitHub payload in the handbook's fixtures is accepted for its event.

use std::sync::Arc;

use build_relay::config::RelayConfig;
use build_relay::github::payloads::{self, StatusEvent};
use build_relay::notify::RecordingNotifier;
use build_relay::store::embedded::EmbeddedStore;
use integration_tests::fake_github::{self, FakeGitHub};
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

/// Every status, workflow_run, check_run and check_suite fixture is answered 200 by the
/// status route, configured for the fixture's own repository (deploy is elsewhere).
#[tokio::test]
async fn every_ci_fixture_is_handled_by_the_status_route() {
    let github = FakeGitHub::start().await;
    let mut handled = 0;
    for event in ["status", "workflow_run", "check_run", "check_suite"] {
        for (n, file) in webhook_fixtures(event).into_iter().enumerate() {
            let body = std::fs::read(&file).unwrap();
            let payload: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let repository = payload["repository"]["full_name"].as_str().unwrap();
            github
                .server
                .register(
                    wiremock::Mock::given(wiremock::matchers::method("GET"))
                        .and(wiremock::matchers::path(format!(
                            "/repos/{repository}/git/ref/heads/deploy"
                        )))
                        .respond_with(
                            wiremock::ResponseTemplate::new(200)
                                .set_body_json(fake_github::api_fixture("git-get-ref.200.json")),
                        ),
                )
                .await;
            let config = RelayConfig {
                repository: repository.into(),
                ..RelayConfig::default()
            };
            let webhook = test_relay(
                config,
                Arc::new(EmbeddedStore::in_memory()),
                Arc::new(RecordingNotifier::default()),
                build_relay::clock::system(),
            )
            .status_hook(github.client_for(repository));
            let headers = github_headers(event, &format!("fixture-{n}"), &body, TEST_SECRET);
            let answer = webhook.handle(&headers, body).await;
            assert_eq!(
                answer.status,
                http::StatusCode::OK,
                "{}: {answer:?}",
                file.display()
            );
            handled += 1;
        }
    }
    assert!(handled >= 20, "only {handled} fixtures");
}

/// Every `check_run`, `check_suite` and `workflow_run` fixture parses (some lack fields such
/// as `app.slug`), and each completed one maps to a CI result of its commit.
#[test]
fn every_actions_and_checks_fixture_parses_and_maps() {
    use build_relay::github::payloads::{CheckRunEvent, CheckSuiteEvent, WorkflowRunEvent};
    use build_relay::rules::checks::{self, CiResult};
    let parse = |event: &str, file: &std::path::Path| -> Option<CiResult> {
        let body = std::fs::read(file).unwrap();
        let unusable = |e: String| -> ! { panic!("{}: {e}", file.display()) };
        match event {
            "workflow_run" => checks::from_workflow_run(
                &payloads::parse::<WorkflowRunEvent>(event, &body).unwrap_or_else(|e| unusable(e)),
            ),
            "check_run" => checks::from_check_run(
                &payloads::parse::<CheckRunEvent>(event, &body).unwrap_or_else(|e| unusable(e)),
            ),
            _ => checks::from_check_suite(
                &payloads::parse::<CheckSuiteEvent>(event, &body).unwrap_or_else(|e| unusable(e)),
            ),
        }
    };
    let mut mapped = std::collections::BTreeMap::new();
    for event in ["workflow_run", "check_run", "check_suite"] {
        let files = webhook_fixtures(event);
        assert!(!files.is_empty(), "no {event} fixtures");
        for file in files {
            let name = format!("{event}/{}", file.file_name().unwrap().to_string_lossy());
            if let Some(result) = parse(event, &file) {
                assert_eq!(result.sha.len(), 40, "{name}");
                mapped.insert(name, (result.context, result.state, result.url));
            }
        }
    }
    let expect = |name: &str, context: &str, state: &str, url: Option<&str>| {
        let got = &mapped[name];
        assert_eq!(
            (got.0.as_str(), got.1, got.2.as_deref()),
            (context, state, url),
            "{name}"
        );
    };
    expect(
        "workflow_run/completed.payload.json",
        "workflow:test",
        "success",
        Some("https://github.com/octo-org/octo-repo/actions/runs/289782451"),
    );
    expect(
        "workflow_run/requested.with-conclusion.payload.json",
        "workflow:test",
        "error",
        Some("https://github.com/octo-org/octo-repo/actions/runs/289782451"),
    );
    expect(
        "check_run/completed.1.payload.json",
        "check_run:Octocoders-linter",
        "failure",
        Some("https://github.com/Codertocat/Hello-World/runs/128620228"),
    );
    expect(
        "check_run/rerequested.payload.json",
        "check_run:randscape",
        "neutral",
        Some("http://github.com/github/hello-world/runs/4"),
    );
    expect(
        "check_suite/completed.1.payload.json",
        "check_suite:github-actions",
        "success",
        None,
    );
    expect(
        "check_suite/completed.payload.json",
        "check_suite:octocoders-linter",
        "success",
        None,
    );
    assert!(
        !mapped.contains_key("check_run/created.payload.json"),
        "queued maps to nothing"
    );
    assert!(!mapped.contains_key("workflow_run/requested.payload.json"));
}
