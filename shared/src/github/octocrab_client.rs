//! `GitHub` through octocrab. Calls go through octocrab's raw request methods so that the
//! status code and rate-limit headers of every answer are visible. octocrab is built without
//! its retry layer: a blindly repeated merge is exactly what must not happen (see `retry`).

use std::time::Duration;

use async_trait::async_trait;
use http::StatusCode;
use http_body_util::BodyExt;
use octocrab::Octocrab;
use octocrab::models::{AppId, InstallationId};
use serde::de::DeserializeOwned;
use serde_json::json;

use super::api::*;
use crate::config::{ConfigError, Secret};

/// How the relay authenticates to GitHub.
#[derive(Debug, Clone)]
pub enum Credentials {
    Token(Secret),
    App {
        app_id: u64,
        private_key: Secret,
        installation_id: u64,
    },
}

pub struct OctocrabGitHub {
    client: Octocrab,
    /// `/repos/{owner}/{repo}`
    repo_path: String,
}

type RawResponse =
    http::Response<http_body_util::combinators::BoxBody<bytes::Bytes, octocrab::Error>>;

impl OctocrabGitHub {
    /// Builds the client; no network I/O (an App's installation token is fetched at the
    /// first call and renewed by octocrab). Without credentials the calls are anonymous,
    /// enough to read a public repository.
    pub fn new(
        api_url: &str,
        credentials: Option<&Credentials>,
        repository: &str,
    ) -> Result<Self, ConfigError> {
        let invalid = |reason: String| ConfigError::Invalid {
            name: "GITHUB_API_URL",
            reason,
        };
        let builder = Octocrab::builder()
            .base_uri(api_url)
            .map_err(|e| invalid(e.to_string()))?
            .set_connect_timeout(Some(Duration::from_secs(3)))
            .set_read_timeout(Some(Duration::from_secs(8)));
        let client = match credentials {
            None => builder.build().map_err(|e| invalid(e.to_string()))?,
            Some(Credentials::Token(token)) => builder
                .personal_token(token.expose().to_string())
                .build()
                .map_err(|e| invalid(e.to_string()))?,
            Some(Credentials::App {
                app_id,
                private_key,
                installation_id,
            }) => builder
                .app_from_rsa_pem(AppId(*app_id), private_key.expose().as_bytes())
                .map_err(|e| ConfigError::Invalid {
                    name: "GITHUB_APP_PRIVATE_KEY",
                    reason: format!("not an RSA private key in PEM form: {e}"),
                })?
                .build()
                .map_err(|e| invalid(e.to_string()))?
                .installation(InstallationId(*installation_id))
                .map_err(|e| invalid(e.to_string()))?,
        };
        Ok(Self {
            client,
            repo_path: format!("/repos/{repository}"),
        })
    }

    async fn read<T: DeserializeOwned>(
        &self,
        response: Result<RawResponse, octocrab::Error>,
    ) -> Result<T, GitHubError> {
        let body = self.body(response).await?;
        serde_json::from_slice(&body).map_err(|e| GitHubError {
            status: None,
            message: format!("unreadable answer: {e}"),
            retry_after: None,
        })
    }

    /// The body of a 2xx answer, or the error GitHub gave.
    async fn body(
        &self,
        response: Result<RawResponse, octocrab::Error>,
    ) -> Result<bytes::Bytes, GitHubError> {
        let response = response.map_err(|e| GitHubError {
            status: None,
            message: e.to_string(),
            retry_after: None,
        })?;
        let status = response.status();
        let retry_after = retry_after(response.headers());
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| GitHubError {
                status: Some(status),
                message: format!("answer cut off: {e}"),
                retry_after: None,
            })?
            .to_bytes();
        if status.is_success() {
            return Ok(body);
        }
        let message = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["message"].as_str().map(String::from))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
        Err(GitHubError {
            status: Some(status),
            message,
            retry_after,
        })
    }
}

/// GitHub's documented rate-limit signals: `retry-after` seconds, else a reset time when
/// no requests remain.
fn retry_after(headers: &http::HeaderMap) -> Option<Duration> {
    let number = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<i64>().ok();
    if let Some(seconds) = number("retry-after") {
        return Some(Duration::from_secs(seconds.max(0) as u64));
    }
    if number("x-ratelimit-remaining") == Some(0) {
        let reset = number("x-ratelimit-reset")?;
        return Some(Duration::from_secs(
            (reset - crate::clock::now()).max(0) as u64
        ));
    }
    None
}

#[async_trait]
impl GitHub for OctocrabGitHub {
    async fn fast_forward(&self, branch: &str, sha: &str) -> Result<(), GitHubError> {
        let path = format!("{}/git/refs/heads/{branch}", self.repo_path);
        let body = json!({ "sha": sha, "force": false });
        self.body(self.client._patch(path, Some(&body)).await)
            .await
            .map(|_| ())
    }

    async fn compare(&self, base: &str, head: &str) -> Result<Comparison, GitHubError> {
        let path = format!("{}/compare/{base}...{head}", self.repo_path);
        self.read(self.client._get(path).await).await
    }

    async fn pull_request(&self, number: u64) -> Result<PullRequest, GitHubError> {
        let path = format!("{}/pulls/{number}", self.repo_path);
        self.read(self.client._get(path).await).await
    }

    async fn pull_requests_with_commit(&self, sha: &str) -> Result<Vec<PullRequest>, GitHubError> {
        let path = format!("{}/commits/{sha}/pulls", self.repo_path);
        self.read(self.client._get(path).await).await
    }

    async fn merge(&self, number: u64, title: &str, sha: &str) -> Result<Merged, GitHubError> {
        let path = format!("{}/pulls/{number}/merge", self.repo_path);
        let body = json!({ "commit_title": title, "merge_method": "merge", "sha": sha });
        self.read(self.client._put(path, Some(&body)).await).await
    }

    async fn delete_branch(&self, branch: &str) -> Result<(), GitHubError> {
        let path = format!("{}/git/refs/heads/{branch}", self.repo_path);
        match self
            .body(self.client._delete(path, None::<&()>).await)
            .await
        {
            Ok(_) => Ok(()),
            // Gone already (deleted by hand, or by GitHub's auto-delete setting).
            Err(e) if e.is(StatusCode::UNPROCESSABLE_ENTITY) || e.is(StatusCode::NOT_FOUND) => {
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}
