//! A local GitHub for tests: wiremock answering with GitHub's real response bodies (the
//! handbook's `fixtures/github-api/`) and status codes, and keeping every request it got.

use std::sync::Arc;

use build_relay::config::Secret;
use build_relay::github::GitHub;
use build_relay::github::octocrab_client::{Credentials, OctocrabGitHub};
use serde_json::{Value, json};
use wiremock::matchers::{method, path, path_regex};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

pub const REPO: &str = "Charcoal-SE/SmokeDetector";
pub const TOKEN: &str = "ghp_test_token_for_the_fake";

pub struct FakeGitHub {
    pub server: MockServer,
    /// The priority of the next `deploy_at`: each one outranks those before it.
    deploy_priority: std::sync::atomic::AtomicU8,
}

/// A body from `fixtures/github-api/`.
pub fn api_fixture(name: &str) -> Value {
    let file = crate::fixtures_dir().join("github-api").join(name);
    serde_json::from_slice(
        &std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display())),
    )
    .unwrap()
}

/// GitHub's documented error shape (`basic-error` / `validation-error`).
pub fn error_body(message: &str) -> Value {
    json!({ "message": message, "documentation_url": "https://docs.github.com/rest" })
}

impl FakeGitHub {
    pub async fn start() -> Self {
        Self {
            server: MockServer::start().await,
            deploy_priority: std::sync::atomic::AtomicU8::new(100),
        }
    }

    pub fn url(&self) -> String {
        self.server.uri()
    }

    /// The relay's real octocrab client, pointed here, for SmokeDetector's repository.
    pub fn client(&self) -> Arc<dyn GitHub> {
        self.client_for(REPO)
    }

    pub fn client_for(&self, repository: &str) -> Arc<dyn GitHub> {
        let credentials = Credentials::Token(Secret::new(TOKEN));
        Arc::new(OctocrabGitHub::new(&self.url(), Some(&credentials), repository).unwrap())
    }

    /// `/repos/Charcoal-SE/SmokeDetector` + `rest`.
    pub fn repo_path(rest: &str) -> String {
        format!("/repos/{REPO}{rest}")
    }

    /// Answers every `verb` request to the repository path `rest` this way.
    pub async fn answer(&self, verb: &str, rest: &str, status: u16, body: Value) {
        Mock::given(method(verb))
            .and(path(Self::repo_path(rest)))
            .respond_with(ResponseTemplate::new(status).set_body_json(body))
            .with_priority(10)
            .mount(&self.server)
            .await;
    }

    /// Accepts every fast-forward of `deploy` with GitHub's real answer.
    pub async fn accept_deploy_moves(&self) {
        self.answer(
            "PATCH",
            "/git/refs/heads/deploy",
            200,
            api_fixture("git-update-ref.200.json"),
        )
        .await;
    }

    /// GitHub with `pull` (#1234, head branch auto-blacklist-1700000000) as it reads, and
    /// merges and branch deletions that succeed.
    pub async fn accept_merge(&self, pull: Value) {
        self.answer("GET", "/pulls/1234", 200, pull).await;
        self.answer(
            "PUT",
            "/pulls/1234/merge",
            200,
            api_fixture("pulls-merge.200.json"),
        )
        .await;
        self.accept_branch_deletion().await;
    }

    /// GitHub as it behaves for `pull` (#1234): open until the first merge request merges
    /// it (`on_merge` runs then), merged for every read after that, 405 "not mergeable" for
    /// any later merge request, and branch deletions that succeed.
    pub async fn stateful_merge(&self, pull: Value, on_merge: impl Fn() + Send + Sync + 'static) {
        let merged = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let read = {
            let merged = Arc::clone(&merged);
            move |_: &Request| {
                let mut pull = pull.clone();
                if merged.load(std::sync::atomic::Ordering::SeqCst) {
                    pull["merged"] = json!(true);
                    pull["state"] = json!("closed");
                }
                ResponseTemplate::new(200).set_body_json(pull)
            }
        };
        let merge = move |_: &Request| {
            if merged.swap(true, std::sync::atomic::Ordering::SeqCst) {
                return ResponseTemplate::new(405)
                    .set_body_json(error_body("Pull Request is not mergeable"));
            }
            on_merge();
            ResponseTemplate::new(200).set_body_json(api_fixture("pulls-merge.200.json"))
        };
        Mock::given(method("GET"))
            .and(path(Self::repo_path("/pulls/1234")))
            .respond_with(read)
            .with_priority(5)
            .mount(&self.server)
            .await;
        Mock::given(method("PUT"))
            .and(path(Self::repo_path("/pulls/1234/merge")))
            .respond_with(merge)
            .with_priority(5)
            .mount(&self.server)
            .await;
        self.accept_branch_deletion().await;
    }

    /// `deploy` reads as being at `sha` (GitHub's `git/get-ref` answer), from now on.
    pub async fn deploy_at(&self, sha: &str) {
        let mut head = api_fixture("git-get-ref.200.json");
        head["ref"] = json!("refs/heads/deploy");
        head["object"]["sha"] = json!(sha);
        let priority = self
            .deploy_priority
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        Mock::given(method("GET"))
            .and(path(Self::repo_path("/git/ref/heads/deploy")))
            .respond_with(ResponseTemplate::new(200).set_body_json(head))
            .with_priority(priority)
            .mount(&self.server)
            .await;
    }

    /// `GET /commits/{sha}` answers the commit with `message` (GitHub's `commit` shape, as
    /// the compare fixture's `base_commit` has it).
    pub async fn commit(&self, sha: &str, message: &str) {
        let mut commit = api_fixture("repos-compare-commits.200.json")["base_commit"].clone();
        commit["sha"] = json!(sha);
        commit["commit"]["message"] = json!(message);
        self.answer("GET", &format!("/commits/{sha}"), 200, commit)
            .await;
    }

    /// Every `POST /statuses/{sha}` is answered 201 with the status GitHub recorded (the
    /// recorded create-status answer, with the posted state, context and description).
    pub async fn accept_statuses(&self) {
        let created = |request: &Request| {
            let posted = json_of(request);
            let mut status =
                api_fixture("repos-get-combined-status-for-ref.200.recorded.json")["statuses"][0]
                    .clone();
            for field in ["state", "context", "description", "target_url"] {
                status[field] = posted[field].clone();
            }
            ResponseTemplate::new(201).set_body_json(status)
        };
        Mock::given(method("POST"))
            .and(path_regex(format!(
                "^{}/[0-9a-f]{{40}}$",
                Self::repo_path("/statuses")
            )))
            .respond_with(created)
            .with_priority(10)
            .mount(&self.server)
            .await;
    }

    /// The statuses posted to commit `sha`.
    pub async fn posted_statuses(&self, sha: &str) -> Vec<Value> {
        self.requests("POST", &format!("/statuses/{sha}"))
            .await
            .iter()
            .map(json_of)
            .collect()
    }

    /// Deleting #1234's head branch succeeds.
    pub async fn accept_branch_deletion(&self) {
        self.answer(
            "DELETE",
            "/git/refs/heads/auto-blacklist-1700000000",
            204,
            Value::Null,
        )
        .await;
    }

    /// Answers the next `times` such requests this way, ahead of `answer`.
    pub async fn answer_first(
        &self,
        verb: &str,
        rest: &str,
        times: u64,
        response: ResponseTemplate,
    ) {
        Mock::given(method(verb))
            .and(path(Self::repo_path(rest)))
            .respond_with(response)
            .up_to_n_times(times)
            .with_priority(1)
            .mount(&self.server)
            .await;
    }

    /// The requests received for `verb` and the repository path `rest`.
    pub async fn requests(&self, verb: &str, rest: &str) -> Vec<Request> {
        let wanted = Self::repo_path(rest);
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.method.as_str() == verb && r.url.path() == wanted)
            .collect()
    }

    /// Whether no request at all reached it.
    pub async fn was_not_called(&self) -> bool {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .is_empty()
    }

    /// Every request that is not a read.
    pub async fn writes(&self) -> Vec<Request> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.method.as_str() != "GET")
            .collect()
    }
}

pub fn json_of(request: &Request) -> Value {
    serde_json::from_slice(&request.body).unwrap()
}
