//! `GitHub` through octocrab. Calls go through octocrab's raw request methods so that the
//! status code and rate-limit headers of every answer are visible. octocrab is built without
//! its retry layer: a blindly repeated merge is exactly what must not happen (see `retry`).

use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
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
    /// A token: personal, fine-grained or an installation's.
    Token(Secret),
    /// A GitHub App, acting as one of its installations.
    App {
        /// The App's id.
        app_id: u64,
        /// The App's private key (PEM).
        private_key: Secret,
        /// The installation on the repository's owner.
        installation_id: u64,
    },
}

/// `GitHub` through octocrab, for one repository.
pub struct OctocrabGitHub {
    base_uri: http::Uri,
    auth: Auth,
    /// Built at the first call: building it loads the system's root certificates, which a
    /// cold start that never calls GitHub need not pay for.
    client: OnceLock<Octocrab>,
    /// `/repos/{owner}/{repo}`
    repo_path: String,
}

enum Auth {
    Anonymous,
    Token(Secret),
    App {
        app_id: u64,
        key: octocrab::EncodingKey,
        installation_id: u64,
    },
}

type RawResponse =
    http::Response<http_body_util::combinators::BoxBody<bytes::Bytes, octocrab::Error>>;

impl OctocrabGitHub {
    /// Checks the settings (the URL, an App's key) now, so that a bad one stops the cold
    /// start; the HTTP client itself is built at the first call. Without credentials the
    /// calls are anonymous, enough to read a public repository.
    pub fn new(
        api_url: &str,
        credentials: Option<&Credentials>,
        repository: &str,
    ) -> Result<Self, ConfigError> {
        let base_uri = http::Uri::try_from(api_url).map_err(|e| ConfigError::Invalid {
            name: "GITHUB_API_URL",
            reason: format!("{api_url:?} is not a URL: {e}"),
        })?;
        let auth = match credentials {
            None => Auth::Anonymous,
            Some(Credentials::Token(token)) => Auth::Token(token.clone()),
            Some(Credentials::App {
                app_id,
                private_key,
                installation_id,
            }) => Auth::App {
                app_id: *app_id,
                key: octocrab::EncodingKey::from_rsa_pem(private_key.expose().as_bytes()).map_err(
                    |e| ConfigError::Invalid {
                        name: "GITHUB_APP_PRIVATE_KEY",
                        reason: format!("not an RSA private key in PEM form: {e}"),
                    },
                )?,
                installation_id: *installation_id,
            },
        };
        Ok(Self {
            base_uri,
            auth,
            client: OnceLock::new(),
            repo_path: format!("/repos/{repository}"),
        })
    }

    fn client(&self) -> Result<&Octocrab, GitHubError> {
        if let Some(client) = self.client.get() {
            return Ok(client);
        }
        let unusable = |e: octocrab::Error| GitHubError {
            status: None,
            message: format!("could not set up the GitHub client: {e}"),
            retry_after: None,
        };
        let builder = Octocrab::builder()
            .base_uri(self.base_uri.clone())
            .map_err(unusable)?
            // Each call well inside the 8 s a delivery may take (handlers::webhook).
            .set_connect_timeout(Some(Duration::from_secs(2)))
            .set_read_timeout(Some(Duration::from_secs(4)))
            .set_write_timeout(Some(Duration::from_secs(4)));
        let client = match &self.auth {
            Auth::Anonymous => builder.build().map_err(unusable)?,
            Auth::Token(token) => builder
                .personal_token(token.expose().to_string())
                .build()
                .map_err(unusable)?,
            Auth::App {
                app_id,
                key,
                installation_id,
            } => builder
                .app(AppId(*app_id), key.clone())
                .build()
                .map_err(unusable)?
                .installation(InstallationId(*installation_id))
                .map_err(unusable)?,
        };
        // Two first calls at once may both build one; either is fine.
        Ok(self.client.get_or_init(|| client))
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
        self.body(self.client()?._patch(path, Some(&body)).await)
            .await
            .map(|_| ())
    }

    async fn compare(&self, base: &str, head: &str) -> Result<Comparison, GitHubError> {
        let path = format!("{}/compare/{base}...{head}", self.repo_path);
        self.read(self.client()?._get(path).await).await
    }

    async fn pull_request(&self, number: u64) -> Result<PullRequest, GitHubError> {
        let path = format!("{}/pulls/{number}", self.repo_path);
        self.read(self.client()?._get(path).await).await
    }

    async fn pull_requests_with_commit(&self, sha: &str) -> Result<Vec<PullRequest>, GitHubError> {
        let path = format!("{}/commits/{sha}/pulls", self.repo_path);
        self.read(self.client()?._get(path).await).await
    }

    async fn merge(&self, number: u64, title: &str, sha: &str) -> Result<Merged, GitHubError> {
        let path = format!("{}/pulls/{number}/merge", self.repo_path);
        let body = json!({ "commit_title": title, "merge_method": "merge", "sha": sha });
        self.read(self.client()?._put(path, Some(&body)).await)
            .await
    }

    async fn delete_branch(&self, branch: &str) -> Result<(), GitHubError> {
        let path = format!("{}/git/refs/heads/{branch}", self.repo_path);
        match self
            .body(self.client()?._delete(path, None::<&()>).await)
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

    async fn branch_head(&self, branch: &str) -> Result<String, GitHubError> {
        let path = format!("{}/git/ref/heads/{branch}", self.repo_path);
        let head: GitRef = self.read(self.client()?._get(path).await).await?;
        Ok(head.object.sha)
    }

    async fn commit_message(&self, sha: &str) -> Result<String, GitHubError> {
        let path = format!("{}/commits/{sha}", self.repo_path);
        let commit: ComparedCommit = self.read(self.client()?._get(path).await).await?;
        Ok(commit.commit.message)
    }

    async fn create_status(&self, sha: &str, status: &NewStatus) -> Result<(), GitHubError> {
        let path = format!("{}/statuses/{sha}", self.repo_path);
        self.body(self.client()?._post(path, Some(status)).await)
            .await
            .map(|_| ())
    }

    async fn tree(&self, commit: &str) -> Result<Tree, GitHubError> {
        let path = format!("{}/git/trees/{commit}?recursive=1", self.repo_path);
        self.read(self.client()?._get(path).await).await
    }

    async fn blob(&self, sha: &str) -> Result<Vec<u8>, GitHubError> {
        #[derive(serde::Deserialize)]
        struct Blob {
            content: String,
            encoding: String,
        }
        let path = format!("{}/git/blobs/{sha}", self.repo_path);
        let blob: Blob = self.read(self.client()?._get(path).await).await?;
        let unreadable = |message: String| GitHubError {
            status: None,
            message,
            retry_after: None,
        };
        match blob.encoding.as_str() {
            "base64" => {
                // GitHub wraps the base64 text at 60 characters.
                let text: String = blob.content.split_whitespace().collect();
                base64::engine::general_purpose::STANDARD
                    .decode(text)
                    .map_err(|e| unreadable(format!("blob {sha} is not base64: {e}")))
            }
            "utf-8" => Ok(blob.content.into_bytes()),
            other => Err(unreadable(format!("blob {sha} has encoding {other:?}"))),
        }
    }

    async fn create_blob(&self, content: &[u8]) -> Result<String, GitHubError> {
        let path = format!("{}/git/blobs", self.repo_path);
        let body = json!({
            "content": base64::engine::general_purpose::STANDARD.encode(content),
            "encoding": "base64",
        });
        let created: GitObject = self
            .read(self.client()?._post(path, Some(&body)).await)
            .await?;
        Ok(created.sha)
    }

    async fn create_tree(
        &self,
        base_tree: &str,
        entries: &[TreeItem],
    ) -> Result<String, GitHubError> {
        let path = format!("{}/git/trees", self.repo_path);
        let body = json!({ "base_tree": base_tree, "tree": entries });
        let created: GitObject = self
            .read(self.client()?._post(path, Some(&body)).await)
            .await?;
        Ok(created.sha)
    }

    async fn create_commit(&self, commit: &NewCommit) -> Result<String, GitHubError> {
        let path = format!("{}/git/commits", self.repo_path);
        let created: GitObject = self
            .read(self.client()?._post(path, Some(commit)).await)
            .await?;
        Ok(created.sha)
    }

    async fn rate_limit(&self) -> Result<RateLimit, GitHubError> {
        #[derive(serde::Deserialize)]
        struct Resources {
            core: RateLimit,
        }
        #[derive(serde::Deserialize)]
        struct Answer {
            resources: Resources,
        }
        let answer: Answer = self.read(self.client()?._get("/rate_limit").await).await?;
        Ok(answer.resources.core)
    }

    async fn combined_status(&self, sha: &str) -> Result<Vec<CommitStatus>, GitHubError> {
        #[derive(serde::Deserialize)]
        struct Combined {
            statuses: Vec<CommitStatus>,
        }
        let path = format!("{}/commits/{sha}/status?per_page=100", self.repo_path);
        let combined: Combined = self.read(self.client()?._get(path).await).await?;
        Ok(combined.statuses)
    }

    async fn check_runs(
        &self,
        sha: &str,
    ) -> Result<Vec<crate::github::payloads::CheckRun>, GitHubError> {
        #[derive(serde::Deserialize)]
        struct Runs {
            check_runs: Vec<crate::github::payloads::CheckRun>,
        }
        let path = format!("{}/commits/{sha}/check-runs?per_page=100", self.repo_path);
        let runs: Runs = self.read(self.client()?._get(path).await).await?;
        Ok(runs.check_runs)
    }

    async fn open_pulls(&self) -> Result<Vec<OpenPull>, GitHubError> {
        let mut names = self.repo_path.trim_start_matches("/repos/").splitn(2, '/');
        let (owner, name) = (
            names.next().unwrap_or_default(),
            names.next().unwrap_or_default(),
        );
        let body =
            json!({ "query": OPEN_PULLS_QUERY, "variables": { "owner": owner, "name": name } });
        let answer: serde_json::Value = self
            .read(self.client()?._post("/graphql", Some(&body)).await)
            .await?;
        open_pulls_of(&answer)
    }
}

/// The open pull requests and their head commits' statuses, oldest first.
const OPEN_PULLS_QUERY: &str = "query($owner: String!, $name: String!) { \
  repository(owner: $owner, name: $name) { \
    pullRequests(states: OPEN, first: 100, orderBy: {field: CREATED_AT, direction: ASC}) { \
      nodes { number author { login } baseRefName headRefOid \
        commits(last: 1) { nodes { commit { status { contexts { \
          context state targetUrl creator { login } } } } } } } } } }";

/// Reads GraphQL's answer to `OPEN_PULLS_QUERY`; GitHub answers errors with a 200 too.
fn open_pulls_of(answer: &serde_json::Value) -> Result<Vec<OpenPull>, GitHubError> {
    if let Some(errors) = answer.get("errors") {
        return Err(GitHubError {
            status: None,
            message: format!("GraphQL refused the query: {errors}"),
            retry_after: None,
        });
    }
    let text = |v: &serde_json::Value| v.as_str().map(String::from);
    let nodes = answer["data"]["repository"]["pullRequests"]["nodes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    Ok(nodes
        .iter()
        .filter_map(|pull| {
            let commit = &pull["commits"]["nodes"][0]["commit"];
            let statuses = commit["status"]["contexts"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|status| PullStatus {
                    context: text(&status["context"]).unwrap_or_default(),
                    state: text(&status["state"])
                        .unwrap_or_default()
                        .to_ascii_lowercase(),
                    target_url: text(&status["targetUrl"]),
                    creator: text(&status["creator"]["login"]),
                })
                .collect();
            Some(OpenPull {
                number: pull["number"].as_u64()?,
                author: text(&pull["author"]["login"]),
                base: text(&pull["baseRefName"])?,
                head_sha: text(&pull["headRefOid"])?,
                statuses,
            })
        })
        .collect())
}
