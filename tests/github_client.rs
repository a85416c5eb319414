//! How the functions get their secrets and authenticate to GitHub: Secrets Manager (on
//! moto) by ARN, and a GitHub App's installation token (against the fake GitHub).

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_secretsmanager::config::{Credentials, SharedCredentialsProvider};
use build_relay::config::Secret;
use build_relay::github::GitHub;
use build_relay::github::octocrab_client::{Credentials as GitHubCredentials, OctocrabGitHub};
use build_relay::secrets::SecretReader;
use integration_tests::fake_github::*;
use integration_tests::*;
use serde_json::json;
use std::collections::HashMap;
use wiremock::matchers::{method, path};
use wiremock::{Mock, ResponseTemplate};

fn moto_sdk() -> SdkConfig {
    SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "testing", "testing", None, None, "tests",
        )))
        .endpoint_url(dynamodb_endpoint())
        .build()
}

fn env(pairs: Vec<(&'static str, String)>) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<&str, String> = pairs.into_iter().collect();
    move |name: &str| map.get(name).cloned()
}

async fn secret_arn(sdk: &SdkConfig, name: &str, value: &str) -> String {
    let client = aws_sdk_secretsmanager::Client::new(sdk);
    let unique = format!(
        "{name}-{}-{}",
        std::process::id(),
        build_relay::clock::now()
    );
    client
        .create_secret()
        .name(unique)
        .secret_string(value)
        .send()
        .await
        .unwrap()
        .arn
        .unwrap()
}

#[tokio::test]
async fn secrets_given_by_arn_are_read_from_secrets_manager() {
    let sdk = moto_sdk();
    let webhook = secret_arn(&sdk, "webhook", "the webhook secret\n").await;
    let token = secret_arn(&sdk, "token", "ghp_from_secrets_manager").await;
    let env = env(vec![
        ("WEBHOOK_SECRET_ARN", webhook),
        ("GITHUB_TOKEN_ARN", token),
    ]);
    let reader = SecretReader::new(&env, &sdk);
    let secrets = reader.webhook_secrets().await.unwrap();
    assert_eq!(secrets.current, Secret::new("the webhook secret"));
    assert!(secrets.previous.is_none());
    let Some(GitHubCredentials::Token(token)) = reader.github_credentials().await.unwrap() else {
        panic!("a token");
    };
    assert_eq!(token.expose(), "ghp_from_secrets_manager");
}

#[tokio::test]
async fn an_unreadable_secret_stops_cold_start_naming_the_setting() {
    let sdk = moto_sdk();
    let env = env(vec![(
        "WEBHOOK_SECRET_ARN",
        "arn:aws:secretsmanager:us-east-1:123456789012:secret:missing-AbCdEf".into(),
    )]);
    let error = SecretReader::new(&env, &sdk)
        .webhook_secrets()
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with("configuration: WEBHOOK_SECRET_ARN is invalid"),
        "{error}"
    );
    assert!(!error.contains('\n'));
}

#[tokio::test]
async fn local_settings_never_ask_secrets_manager() {
    // An endpoint nothing listens on: any call would fail.
    let sdk = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .endpoint_url("http://127.0.0.1:9")
        .build();
    let env = env(vec![
        ("WEBHOOK_SECRET", "local".into()),
        ("GITHUB_TOKEN", "ghp_local".into()),
    ]);
    let reader = SecretReader::new(&env, &sdk);
    assert_eq!(
        reader.webhook_secrets().await.unwrap().current,
        Secret::new("local")
    );
    assert!(reader.github_credentials().await.unwrap().is_some());
}

fn rsa_private_key() -> String {
    let output = std::process::Command::new("openssl")
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
        ])
        .output()
        .expect("openssl makes the test's throwaway GitHub App key");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test]
async fn a_github_app_authenticates_with_its_installation_token() {
    let github = FakeGitHub::start().await;
    let token_body = api_fixture("apps-create-installation-access-token.201.json");
    let mut token_body_fresh = token_body.clone();
    token_body_fresh["expires_at"] =
        json!((chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339());
    Mock::given(method("POST"))
        .and(path("/app/installations/4242/access_tokens"))
        .respond_with(ResponseTemplate::new(201).set_body_json(token_body_fresh))
        .mount(&github.server)
        .await;
    github.accept_deploy_moves().await;

    let credentials = GitHubCredentials::App {
        app_id: 1234,
        private_key: Secret::new(rsa_private_key()),
        installation_id: 4242,
    };
    let client = OctocrabGitHub::new(&github.url(), Some(&credentials), REPO).unwrap();
    client
        .fast_forward("deploy", &"a".repeat(40))
        .await
        .unwrap();

    let token_requests: Vec<_> = github
        .server
        .received_requests()
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.url.path() == "/app/installations/4242/access_tokens")
        .collect();
    assert_eq!(token_requests.len(), 1);
    let jwt = token_requests[0].headers["authorization"].to_str().unwrap();
    assert!(jwt.starts_with("Bearer ey"), "the app signs a JWT: {jwt}");
    let patch = &github.requests("PATCH", "/git/refs/heads/deploy").await[0];
    let used = patch.headers["authorization"].to_str().unwrap();
    assert!(
        used.ends_with(token_body["token"].as_str().unwrap()),
        "{used}"
    );
}

#[test]
fn a_key_that_is_not_pem_is_a_clear_configuration_error() {
    let credentials = GitHubCredentials::App {
        app_id: 1,
        private_key: Secret::new("not a key"),
        installation_id: 2,
    };
    let error = OctocrabGitHub::new("http://127.0.0.1:9", Some(&credentials), REPO)
        .err()
        .unwrap()
        .to_string();
    assert!(error.contains("GITHUB_APP_PRIVATE_KEY"), "{error}");
}
