//! Secrets: from the environment when running locally, from AWS Secrets Manager (by ARN) in
//! AWS. Secrets Manager is only asked when an `*_ARN` variable is set, so a local
//! configuration does no network I/O at start.

use aws_types::SdkConfig;

use crate::config::{ConfigError, Secret, Source};
use crate::github::octocrab_client::Credentials;

/// Reads secrets, asking Secrets Manager only for values given by ARN.
pub struct SecretReader<'a> {
    env: &'a dyn Source,
    sdk: &'a SdkConfig,
    client: std::sync::OnceLock<aws_sdk_secretsmanager::Client>,
}

impl<'a> SecretReader<'a> {
    /// Reads `env`, and Secrets Manager through `sdk` when asked for an ARN.
    pub fn new(env: &'a dyn Source, sdk: &'a SdkConfig) -> Self {
        Self {
            env,
            sdk,
            client: std::sync::OnceLock::new(),
        }
    }

    /// `value_var` from the environment, else the secret `arn_var` names, else `None`.
    pub async fn optional(
        &self,
        value_var: &'static str,
        arn_var: &'static str,
    ) -> Result<Option<Secret>, ConfigError> {
        if let Some(value) = self.env.get(value_var) {
            return Ok(Some(Secret::new(value)));
        }
        let Some(arn) = self.env.get(arn_var) else {
            return Ok(None);
        };
        let client = self.client.get_or_init(|| {
            let mut config = aws_sdk_secretsmanager::config::Builder::from(self.sdk);
            if let Some(endpoint) = crate::aws::service_endpoint(self.env, "SECRETS_MANAGER") {
                config.set_endpoint_url(Some(endpoint));
            }
            let config = config.build();
            aws_sdk_secretsmanager::Client::from_conf(config)
        });
        let output = client
            .get_secret_value()
            .secret_id(&arn)
            .send()
            .await
            .map_err(|e| ConfigError::Invalid {
                name: arn_var,
                reason: format!(
                    "could not read the secret: {}",
                    aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                ),
            })?;
        let value = output.secret_string.ok_or(ConfigError::Invalid {
            name: arn_var,
            reason: "the secret has no string value".into(),
        })?;
        Ok(Some(Secret::new(value.trim().to_string())))
    }

    /// Like `optional`, but a missing value is an error naming `value_var`.
    pub async fn required(
        &self,
        value_var: &'static str,
        arn_var: &'static str,
        what: &'static str,
    ) -> Result<Secret, ConfigError> {
        self.optional(value_var, arn_var)
            .await?
            .ok_or(ConfigError::Missing {
                name: value_var,
                what,
            })
    }

    /// The status page's operator token, `STATUS_TOKEN` (or `STATUS_TOKEN_ARN`), if any.
    pub async fn status_token(&self) -> Result<Option<Secret>, ConfigError> {
        self.optional("STATUS_TOKEN", "STATUS_TOKEN_ARN").await
    }

    /// The metasmoke bridge's key, `METASMOKE_KEY` (or `METASMOKE_KEY_ARN`), if any.
    pub async fn metasmoke_key(&self) -> Result<Option<Secret>, ConfigError> {
        self.optional("METASMOKE_KEY", "METASMOKE_KEY_ARN").await
    }

    /// `WEBHOOK_SECRET` (or `WEBHOOK_SECRET_ARN`) and, during a rotation, `WEBHOOK_SECRET_PREVIOUS`.
    pub async fn webhook_secrets(&self) -> Result<crate::config::WebhookSecrets, ConfigError> {
        Ok(crate::config::WebhookSecrets {
            current: self
                .required(
                    "WEBHOOK_SECRET",
                    "WEBHOOK_SECRET_ARN",
                    "the secret GitHub signs webhook deliveries with, or WEBHOOK_SECRET_ARN",
                )
                .await?,
            previous: self
                .optional("WEBHOOK_SECRET_PREVIOUS", "WEBHOOK_SECRET_PREVIOUS_ARN")
                .await?,
        })
    }

    /// A token (`GITHUB_TOKEN` / `GITHUB_TOKEN_ARN`), or a GitHub App (`GITHUB_APP_ID`,
    /// `GITHUB_APP_PRIVATE_KEY` / `GITHUB_APP_PRIVATE_KEY_ARN`, `GITHUB_APP_INSTALLATION_ID`).
    pub async fn github_credentials(&self) -> Result<Option<Credentials>, ConfigError> {
        if let Some(token) = self.optional("GITHUB_TOKEN", "GITHUB_TOKEN_ARN").await? {
            return Ok(Some(Credentials::Token(token)));
        }
        let Some(app_id) = self.env.get("GITHUB_APP_ID") else {
            return Ok(None);
        };
        let number = |name: &'static str, value: String| {
            value
                .trim()
                .parse::<u64>()
                .map_err(|_| ConfigError::Invalid {
                    name,
                    reason: format!("expected a number, got {value:?}"),
                })
        };
        let installation =
            self.env
                .get("GITHUB_APP_INSTALLATION_ID")
                .ok_or(ConfigError::Missing {
                    name: "GITHUB_APP_INSTALLATION_ID",
                    what: "the installation of the GitHub App on the repository's owner",
                })?;
        Ok(Some(Credentials::App {
            app_id: number("GITHUB_APP_ID", app_id)?,
            private_key: self
                .required(
                    "GITHUB_APP_PRIVATE_KEY",
                    "GITHUB_APP_PRIVATE_KEY_ARN",
                    "the GitHub App's private key (PEM), or GITHUB_APP_PRIVATE_KEY_ARN",
                )
                .await?,
            installation_id: number("GITHUB_APP_INSTALLATION_ID", installation)?,
        }))
    }
}

/// `GITHUB_API_URL`, default `https://api.github.com`.
pub fn github_api_url(env: &dyn Source) -> String {
    env.get("GITHUB_API_URL")
        .unwrap_or_else(|| "https://api.github.com".into())
        .trim_end_matches('/')
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn reader_test(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name: &str| map.get(name).cloned()
    }

    #[tokio::test]
    async fn a_missing_webhook_secret_is_named_in_one_line() {
        let sdk = SdkConfig::builder().build();
        let env = reader_test(&[]);
        let error = SecretReader::new(&env, &sdk)
            .webhook_secrets()
            .await
            .unwrap_err()
            .to_string();
        assert!(error.contains("WEBHOOK_SECRET"), "{error}");
        assert!(!error.contains('\n'));
    }

    #[tokio::test]
    async fn github_credentials_from_the_environment() {
        let sdk = SdkConfig::builder().build();
        let env = reader_test(&[("GITHUB_TOKEN", "ghp_x")]);
        let reader = SecretReader::new(&env, &sdk);
        assert!(matches!(
            reader.github_credentials().await.unwrap(),
            Some(Credentials::Token(_))
        ));
        let none = reader_test(&[]);
        assert!(
            SecretReader::new(&none, &sdk)
                .github_credentials()
                .await
                .unwrap()
                .is_none()
        );
        let half_app = reader_test(&[("GITHUB_APP_ID", "12"), ("GITHUB_APP_PRIVATE_KEY", "pem")]);
        let error = SecretReader::new(&half_app, &sdk)
            .github_credentials()
            .await
            .unwrap_err();
        assert!(error.to_string().contains("GITHUB_APP_INSTALLATION_ID"));
    }
}
