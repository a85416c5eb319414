//! The AWS SDK's settings, shared by every client the relay builds (DynamoDB,
//! @connections, Secrets Manager): the configuration from the environment Lambda gives a
//! function, each service's endpoint override, and the timeouts every call gets.

use std::time::Duration;

use aws_types::SdkConfig;

use crate::config::Source;

/// The AWS SDK's configuration from the environment Lambda gives a function, with
/// `timeouts`: `AWS_REGION` (or `AWS_DEFAULT_REGION`), the role's credentials
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) and `AWS_ENDPOINT_URL`;
/// each client adds its service's own endpoint override (`service_endpoint`). Not the
/// SDK's whole chain (profiles, SSO, web identity): on Lambda the environment holds all of
/// it, and the chain with its STS client is a tenth of each binary and most of its init.
pub fn sdk_config(env: &dyn Source) -> SdkConfig {
    use aws_sdk_dynamodb::config::{
        BehaviorVersion, Credentials, Region, SharedCredentialsProvider,
    };
    let region = env
        .get("AWS_REGION")
        .or_else(|| env.get("AWS_DEFAULT_REGION"));
    let credentials = match (
        env.get("AWS_ACCESS_KEY_ID"),
        env.get("AWS_SECRET_ACCESS_KEY"),
    ) {
        (Some(id), Some(secret)) => Some(SharedCredentialsProvider::new(Credentials::new(
            id,
            secret,
            env.get("AWS_SESSION_TOKEN"),
            None,
            "environment",
        ))),
        _ => None,
    };
    let mut config = SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .timeout_config(timeouts());
    config.set_region(region.map(Region::new));
    config.set_credentials_provider(credentials);
    config.set_endpoint_url(env.get("AWS_ENDPOINT_URL"));
    config.build()
}

/// The endpoint override for one service (`AWS_ENDPOINT_URL_DYNAMODB`,
/// `AWS_ENDPOINT_URL_SECRETS_MANAGER`), as the SDK's chain reads it.
pub fn service_endpoint(env: &dyn Source, service: &str) -> Option<String> {
    env.get(&format!("AWS_ENDPOINT_URL_{service}"))
}

/// Timeouts for every AWS call (DynamoDB, @connections, Secrets Manager): without them a
/// server that accepts and never answers holds a delivery for as long as the SDK likes.
/// Inside the 8 s answer budget, with room for a retry.
pub fn timeouts() -> aws_types::sdk_config::TimeoutConfig {
    aws_types::sdk_config::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(1))
        .operation_attempt_timeout(Duration::from_secs(2))
        .operation_timeout(Duration::from_secs(4))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use aws_sdk_dynamodb::config::ProvideCredentials;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Source {
        move |name: &str| {
            pairs
                .iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    }

    #[tokio::test]
    async fn the_sdk_is_configured_from_what_lambda_sets() {
        let lambda = env(&[
            ("AWS_REGION", "eu-west-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "secret"),
            ("AWS_SESSION_TOKEN", "session"),
            ("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:4566"),
        ]);
        let sdk = sdk_config(&lambda);
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-west-1"));
        assert_eq!(sdk.endpoint_url(), None);
        let credentials = sdk
            .credentials_provider()
            .expect("credentials from the environment")
            .provide_credentials()
            .await
            .unwrap();
        assert_eq!(credentials.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(credentials.secret_access_key(), "secret");
        assert_eq!(credentials.session_token(), Some("session"));
        assert_eq!(
            service_endpoint(&lambda, "DYNAMODB").as_deref(),
            Some("http://127.0.0.1:4566")
        );
        assert_eq!(service_endpoint(&lambda, "SECRETS_MANAGER"), None);
    }

    #[test]
    fn half_a_key_or_blanks_configure_nothing() {
        let sdk = sdk_config(&env(&[
            ("AWS_DEFAULT_REGION", "us-east-2"),
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", " "),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:4566"),
        ]));
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("us-east-2"));
        assert!(sdk.credentials_provider().is_none());
        assert_eq!(sdk.endpoint_url(), Some("http://127.0.0.1:4566"));
        assert!(sdk_config(&env(&[])).region().is_none());
    }
}
