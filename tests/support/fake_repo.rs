//! A stateful GitHub for SmokeDetector's repository: commits, trees, blobs and branches held
//! in memory, served through the REST calls the relay makes (Git Data, refs, compare, pulls
//! with `mergeable`, merge) with GitHub's response shapes and status codes. Its merge API
//! merges only what needs no merging, as GitHub's refuses a conflict: everything else is the
//! relay's to merge.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::{Value, json};
use sha2::Digest;
use wiremock::matchers::path_regex;
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

use crate::fake_github::{REPO, api_fixture, error_body};

/// A commit: its tree (path -> (mode, blob)), parents and message.
#[derive(Debug, Clone)]
pub struct Commit {
    pub files: BTreeMap<String, (String, String)>,
    pub parents: Vec<String>,
    pub message: String,
    pub committer: Value,
}

#[derive(Default)]
struct Repo {
    blobs: HashMap<String, Vec<u8>>,
    trees: HashMap<String, BTreeMap<String, (String, String)>>,
    commits: HashMap<String, Commit>,
    branches: HashMap<String, String>,
    /// number -> head branch
    pulls: BTreeMap<u64, String>,
    /// Head shas of pull requests once marked merged.
    merged: HashSet<u64>,
    protected: Option<String>,
    /// Commits to land on master just before the next ref update (the base moving meanwhile).
    race: VecDeque<Vec<(String, Option<String>)>>,
    /// Every write (method, path), in order.
    writes: Vec<(String, String)>,
    /// How long every answer takes.
    latency: std::time::Duration,
    /// Ref updates still to be answered 502 after they were carried out (a lost answer).
    lost_ref_answers: u32,
    /// Ref updates still to be answered 502 without being carried out.
    failed_ref_updates: u32,
    /// sha -> statuses posted on it (context, state, creator), oldest first.
    statuses: HashMap<String, Vec<(String, String, String)>>,
    /// sha -> (check run name, conclusion).
    check_runs: HashMap<String, Vec<(String, String)>>,
    /// Calls left in the hour, as `/rate_limit` reports them.
    remaining: u64,
}

/// A content address, 40 hex digits as GitHub's shas are.
fn address(kind: &str, content: &[u8]) -> String {
    let mut hash = sha2::Sha256::new();
    hash.update(kind.as_bytes());
    hash.update(content);
    hex::encode(hash.finalize())[..40].to_string()
}

impl Repo {
    fn put_blob(&mut self, content: &[u8]) -> String {
        let sha = address("blob", content);
        self.blobs.insert(sha.clone(), content.to_vec());
        sha
    }

    fn put_tree(&mut self, files: BTreeMap<String, (String, String)>) -> String {
        let sha = address("tree", format!("{files:?}").as_bytes());
        self.trees.insert(sha.clone(), files);
        sha
    }

    fn put_commit(&mut self, commit: Commit) -> String {
        let sha = address(
            "commit",
            format!("{:?}{:?}{}", commit.files, commit.parents, commit.message).as_bytes(),
        );
        self.commits.insert(sha.clone(), commit);
        sha
    }

    /// A new commit on `branch` with `changes` (path -> content, `None` deletes).
    fn commit_on(
        &mut self,
        branch: &str,
        changes: &[(String, Option<String>)],
        message: &str,
    ) -> String {
        let parent = self.branches.get(branch).cloned();
        let mut files = parent
            .as_ref()
            .map(|p| self.commits[p].files.clone())
            .unwrap_or_default();
        for (path, content) in changes {
            match content {
                Some(content) => {
                    let blob = self.put_blob(content.as_bytes());
                    files.insert(path.clone(), ("100644".into(), blob));
                }
                None => {
                    files.remove(path);
                }
            }
        }
        self.put_tree(files.clone());
        let sha = self.put_commit(Commit {
            files,
            parents: parent.into_iter().collect(),
            message: message.into(),
            committer: json!({ "name": "SmokeDetector", "email": "smokey@example.com" }),
        });
        self.branches.insert(branch.into(), sha.clone());
        sha
    }

    fn ancestors(&self, sha: &str) -> HashSet<String> {
        let mut seen = HashSet::new();
        let mut queue = VecDeque::from([sha.to_string()]);
        while let Some(next) = queue.pop_front() {
            if seen.insert(next.clone())
                && let Some(commit) = self.commits.get(&next)
            {
                queue.extend(commit.parents.iter().cloned());
            }
        }
        seen
    }

    /// The nearest common ancestor (breadth first from `head`).
    fn merge_base(&self, base: &str, head: &str) -> Option<String> {
        let of_base = self.ancestors(base);
        let mut queue = VecDeque::from([head.to_string()]);
        let mut seen = HashSet::new();
        while let Some(next) = queue.pop_front() {
            if of_base.contains(&next) {
                return Some(next);
            }
            if seen.insert(next.clone())
                && let Some(commit) = self.commits.get(&next)
            {
                queue.extend(commit.parents.iter().cloned());
            }
        }
        None
    }

    fn contains(&self, branch_head: &str, sha: &str) -> bool {
        self.ancestors(branch_head).contains(sha)
    }

    fn pull_json(&mut self, number: u64) -> Option<Value> {
        let branch = self.pulls.get(&number)?.clone();
        let master = self.branches["master"].clone();
        let head = match self.branches.get(&branch) {
            Some(head) => head.clone(),
            None => return None,
        };
        if self.contains(&master, &head) {
            self.merged.insert(number);
        }
        let merged = self.merged.contains(&number);
        // GitHub can merge without a conflict only when master has not moved since the
        // branch left it (this fake's simplification of its conflict check).
        let clean = self.merge_base(&master, &head).as_deref() == Some(master.as_str());
        let mut pull = api_fixture("pulls-get.200.json");
        pull["number"] = json!(number);
        pull["state"] = json!(if merged { "closed" } else { "open" });
        pull["merged"] = json!(merged);
        pull["mergeable"] = if merged { Value::Null } else { json!(clean) };
        pull["mergeable_state"] = json!(if clean { "clean" } else { "dirty" });
        pull["title"] = json!(format!("SmokeDetector: Blacklist example{number}\\.com"));
        pull["html_url"] = json!(format!("https://github.com/{REPO}/pull/{number}"));
        pull["user"]["login"] = json!("SmokeDetector");
        pull["head"]["ref"] = json!(branch);
        pull["head"]["sha"] = json!(head);
        pull["head"]["repo"]["full_name"] = json!(REPO);
        pull["base"]["ref"] = json!("master");
        pull["base"]["sha"] = json!(master);
        pull["base"]["repo"]["full_name"] = json!(REPO);
        Some(pull)
    }
}

/// The repository, served.
pub struct FakeRepo {
    pub server: MockServer,
    repo: Arc<Mutex<Repo>>,
}

fn created(status: u16, body: Value) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_json(body)
}

fn not_found() -> ResponseTemplate {
    created(404, error_body("Not Found"))
}

impl FakeRepo {
    /// `master` with one commit holding `files`.
    pub async fn start(files: &[(&str, &str)]) -> Self {
        let mut repo = Repo {
            remaining: 4_990,
            ..Repo::default()
        };
        let changes: Vec<(String, Option<String>)> = files
            .iter()
            .map(|(p, c)| (p.to_string(), Some(c.to_string())))
            .collect();
        repo.commit_on("master", &changes, "Initial commit");
        let repo = Arc::new(Mutex::new(repo));
        let server = MockServer::start().await;
        let shared = Arc::clone(&repo);
        Mock::given(path_regex(format!(
            "^/repos/{REPO}/|^/rate_limit$|^/graphql$"
        )))
        .respond_with(move |request: &Request| {
            let mut repo = shared.lock().unwrap();
            let answer = match request.url.path() {
                "/rate_limit" => rate_limit(&repo),
                "/graphql" => graphql(&mut repo),
                _ => respond(&mut repo, request),
            };
            answer.set_delay(repo.latency)
        })
        .mount(&server)
        .await;
        Self { server, repo }
    }

    pub fn client(&self) -> Arc<dyn build_relay::github::GitHub> {
        use build_relay::config::Secret;
        use build_relay::github::octocrab_client::{Credentials, OctocrabGitHub};
        let credentials = Credentials::Token(Secret::new(crate::fake_github::TOKEN));
        Arc::new(OctocrabGitHub::new(&self.server.uri(), Some(&credentials), REPO).unwrap())
    }

    /// A commit on `branch` (created from master when new) changing `changes`.
    pub fn commit(&self, branch: &str, changes: &[(&str, Option<&str>)], message: &str) -> String {
        let mut repo = self.repo.lock().unwrap();
        if !repo.branches.contains_key(branch) {
            let master = repo.branches["master"].clone();
            repo.branches.insert(branch.into(), master);
        }
        let changes: Vec<(String, Option<String>)> = changes
            .iter()
            .map(|(p, c)| (p.to_string(), c.map(String::from)))
            .collect();
        repo.commit_on(branch, &changes, message)
    }

    /// Opens pull request `number` from `branch` into master.
    pub fn open_pull(&self, number: u64, branch: &str) {
        self.repo
            .lock()
            .unwrap()
            .pulls
            .insert(number, branch.into());
    }

    /// A file on a branch, as text.
    pub fn file(&self, branch: &str, path: &str) -> Option<String> {
        let repo = self.repo.lock().unwrap();
        let head = repo.branches.get(branch)?;
        let (_, blob) = repo.commits[head].files.get(path)?;
        Some(String::from_utf8(repo.blobs[blob].clone()).unwrap())
    }

    pub fn head(&self, branch: &str) -> Option<String> {
        self.repo.lock().unwrap().branches.get(branch).cloned()
    }

    pub fn commit_of(&self, sha: &str) -> Commit {
        self.repo.lock().unwrap().commits[sha].clone()
    }

    /// Lands a commit with `changes` on master right before the next ref update.
    pub fn move_master_before_next_update(&self, changes: &[(&str, Option<&str>)]) {
        let changes = changes
            .iter()
            .map(|(p, c)| (p.to_string(), c.map(String::from)))
            .collect();
        self.repo.lock().unwrap().race.push_back(changes);
    }

    /// Answers the next `count` ref updates 502 without carrying them out.
    pub fn fail_ref_updates(&self, count: u32) {
        self.repo.lock().unwrap().failed_ref_updates = count;
    }

    /// Carries out the next `count` ref updates but answers them 502, as a lost answer.
    pub fn lose_ref_update_answers(&self, count: u32) {
        self.repo.lock().unwrap().lost_ref_answers = count;
    }

    /// A status posted on `sha` without a webhook reaching the relay.
    pub fn post_status(&self, sha: &str, context: &str, state: &str, creator: &str) {
        self.repo
            .lock()
            .unwrap()
            .statuses
            .entry(sha.into())
            .or_default()
            .push((context.into(), state.into(), creator.into()));
    }

    /// A completed check run on `sha`.
    pub fn add_check_run(&self, sha: &str, name: &str, conclusion: &str) {
        self.repo
            .lock()
            .unwrap()
            .check_runs
            .entry(sha.into())
            .or_default()
            .push((name.into(), conclusion.into()));
    }

    /// Points `branch` at `sha` (a push nobody told the relay about).
    pub fn set_branch(&self, branch: &str, sha: &str) {
        self.repo
            .lock()
            .unwrap()
            .branches
            .insert(branch.into(), sha.into());
    }

    /// Sets the calls left in the hour.
    /// Makes every answer take `latency` (a slow GitHub, a long pass).
    pub fn set_latency(&self, latency: std::time::Duration) {
        self.repo.lock().unwrap().latency = latency;
    }

    pub fn set_remaining(&self, remaining: u64) {
        self.repo.lock().unwrap().remaining = remaining;
    }

    /// Every request it got (method, path), in order.
    pub async fn requests(&self) -> Vec<(String, String)> {
        self.server
            .received_requests()
            .await
            .unwrap_or_default()
            .iter()
            .map(|r| (r.method.to_string(), r.url.path().to_string()))
            .collect()
    }

    /// Refuses every update of `branch` as branch protection does.
    pub fn protect(&self, branch: &str) {
        self.repo.lock().unwrap().protected = Some(branch.into());
    }

    /// Every write it got (method and path), in order.
    pub fn writes(&self) -> Vec<(String, String)> {
        self.repo.lock().unwrap().writes.clone()
    }
}

fn respond(repo: &mut Repo, request: &Request) -> ResponseTemplate {
    let method = request.method.as_str().to_string();
    let rest = request.url.path()[format!("/repos/{REPO}").len()..].to_string();
    let body: Value = serde_json::from_slice(&request.body).unwrap_or(Value::Null);
    if method != "GET" {
        repo.writes.push((method.clone(), rest.clone()));
    }
    let parts: Vec<&str> = rest.trim_start_matches('/').split('/').collect();
    match (method.as_str(), parts.as_slice()) {
        ("GET", ["pulls", number]) => match number.parse().ok().and_then(|n| repo.pull_json(n)) {
            Some(pull) => created(200, pull),
            None => not_found(),
        },
        ("PUT", ["pulls", number, "merge"]) => merge(repo, number.parse().unwrap_or(0), &body),
        ("GET", ["git", "ref", "heads", branch]) => match repo.branches.get(*branch) {
            Some(sha) => created(200, git_ref(branch, sha)),
            None => not_found(),
        },
        ("PATCH", ["git", "refs", "heads", branch]) => update_ref(repo, branch, &body),
        ("DELETE", ["git", "refs", "heads", branch]) => match repo.branches.remove(*branch) {
            Some(_) => ResponseTemplate::new(204),
            None => created(422, error_body("Reference does not exist")),
        },
        ("GET", ["compare", range]) => compare(repo, range),
        ("GET", ["commits", sha]) => match repo.commits.get(*sha) {
            Some(commit) => {
                let mut body = api_fixture("repos-compare-commits.200.json")["base_commit"].clone();
                body["sha"] = json!(sha);
                body["commit"]["message"] = json!(commit.message);
                created(200, body)
            }
            None => created(422, error_body(&format!("No commit found for SHA: {sha}"))),
        },
        ("GET", ["commits", sha, "status"]) => {
            let mut body = api_fixture("repos-get-combined-status-for-ref.200.json");
            let template = body["statuses"][0].clone();
            let statuses: Vec<Value> = repo
                .statuses
                .get(*sha)
                .cloned()
                .unwrap_or_default()
                .iter()
                .enumerate()
                .map(|(i, (context, state, creator))| {
                    let mut status = template.clone();
                    status["id"] = json!(1000 + i);
                    status["context"] = json!(context);
                    status["state"] = json!(state);
                    status["creator"]["login"] = json!(creator);
                    status["target_url"] = json!(format!("https://ci.example/{context}"));
                    status["updated_at"] = json!("2026-11-24T10:00:00Z");
                    status
                })
                .collect();
            body["sha"] = json!(sha);
            body["total_count"] = json!(statuses.len());
            body["statuses"] = json!(statuses);
            created(200, body)
        }
        ("GET", ["commits", sha, "check-runs"]) => {
            let runs: Vec<Value> = repo
                .check_runs
                .get(*sha)
                .cloned()
                .unwrap_or_default()
                .iter()
                .enumerate()
                .map(|(i, (name, conclusion))| {
                    json!({
                        "id": 5000 + i, "head_sha": sha, "name": name, "status": "completed",
                        "conclusion": conclusion, "started_at": "2026-11-24T09:58:00Z",
                        "completed_at": "2026-11-24T10:00:00Z",
                        "html_url": format!("https://github.com/{REPO}/runs/{}", 5000 + i),
                        "details_url": format!("https://github.com/{REPO}/runs/{}", 5000 + i),
                        "app": { "slug": "github-actions", "name": "GitHub Actions" }
                    })
                })
                .collect();
            created(
                200,
                json!({ "total_count": runs.len(), "check_runs": runs }),
            )
        }
        ("GET", ["git", "trees", sha]) => {
            let files = match repo.commits.get(*sha) {
                Some(commit) => commit.files.clone(),
                None => match repo.trees.get(*sha) {
                    Some(files) => files.clone(),
                    None => return not_found(),
                },
            };
            let tree_sha = address("tree", format!("{files:?}").as_bytes());
            created(200, tree_json(&tree_sha, &files, &repo.blobs))
        }
        ("GET", ["git", "blobs", sha]) => match repo.blobs.get(*sha) {
            Some(content) => created(200, blob_json(sha, content)),
            None => not_found(),
        },
        ("POST", ["git", "blobs"]) => {
            let content = base64::engine::general_purpose::STANDARD
                .decode(body["content"].as_str().unwrap_or_default())
                .expect("the relay sends base64");
            let sha = repo.put_blob(&content);
            created(
                201,
                json!({ "url": format!("https://api.github.com/repos/{REPO}/git/blobs/{sha}"), "sha": sha }),
            )
        }
        ("POST", ["git", "trees"]) => {
            let base = body["base_tree"].as_str().unwrap_or_default();
            let Some(mut files) = repo.trees.get(base).cloned() else {
                return created(422, error_body("base_tree is not a valid tree oid"));
            };
            for item in body["tree"].as_array().cloned().unwrap_or_default() {
                let path = item["path"].as_str().unwrap().to_string();
                match item["sha"].as_str() {
                    Some(sha) if repo.blobs.contains_key(sha) => {
                        files.insert(path, (item["mode"].as_str().unwrap().into(), sha.into()));
                    }
                    Some(_) => return created(422, error_body("tree.sha is not a valid blob")),
                    None => {
                        files.remove(&path);
                    }
                }
            }
            let sha = repo.put_tree(files.clone());
            created(201, tree_json(&sha, &files, &repo.blobs))
        }
        ("POST", ["git", "commits"]) => {
            let tree = body["tree"].as_str().unwrap_or_default();
            let Some(files) = repo.trees.get(tree).cloned() else {
                return created(422, error_body("Tree SHA does not exist"));
            };
            let parents: Vec<String> = body["parents"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p.as_str().unwrap().to_string())
                .collect();
            if parents.iter().any(|p| !repo.commits.contains_key(p)) {
                return created(
                    422,
                    error_body("Parent SHA does not exist or is not a commit object"),
                );
            }
            let commit = Commit {
                files,
                parents: parents.clone(),
                message: body["message"].as_str().unwrap().into(),
                committer: body["committer"].clone(),
            };
            let sha = repo.put_commit(commit);
            created(
                201,
                json!({
                    "sha": sha,
                    "node_id": "C_kwDOAE3WVdoAKGVhY2Q2YjQ4",
                    "url": format!("https://api.github.com/repos/{REPO}/git/commits/{sha}"),
                    "html_url": format!("https://github.com/{REPO}/commit/{sha}"),
                    "author": body["committer"],
                    "committer": body["committer"],
                    "tree": { "sha": tree, "url": format!("https://api.github.com/repos/{REPO}/git/trees/{tree}") },
                    "message": body["message"],
                    "parents": parents.iter().map(|p| json!({ "sha": p, "url": format!("https://api.github.com/repos/{REPO}/git/commits/{p}"), "html_url": format!("https://github.com/{REPO}/commit/{p}") })).collect::<Vec<_>>(),
                    "verification": { "verified": false, "reason": "unsigned", "signature": null, "payload": null, "verified_at": null }
                }),
            )
        }
        _ => not_found(),
    }
}

fn rate_limit(repo: &Repo) -> ResponseTemplate {
    let core = json!({ "limit": 5000, "used": 5000 - repo.remaining, "remaining": repo.remaining, "reset": 1_800_000_000, "resource": "core" });
    created(
        200,
        json!({ "resources": { "core": core, "graphql": core }, "rate": core }),
    )
}

/// The open pull requests with their head's statuses, as GitHub's GraphQL API answers the
/// relay's query.
fn graphql(repo: &mut Repo) -> ResponseTemplate {
    let numbers: Vec<u64> = repo.pulls.keys().copied().collect();
    let mut nodes = Vec::new();
    for number in numbers {
        let Some(pull) = repo.pull_json(number) else {
            continue;
        };
        if pull["state"] != "open" {
            continue;
        }
        let head = pull["head"]["sha"].as_str().unwrap().to_string();
        let contexts: Vec<Value> = repo
            .statuses
            .get(&head)
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|(context, state, creator)| {
                json!({ "context": context, "state": state.to_ascii_uppercase(),
                        "targetUrl": format!("https://pullapprove.com/{REPO}/pull-request/{number}/"),
                        "creator": { "login": creator } })
            })
            .collect();
        let status = if contexts.is_empty() {
            Value::Null
        } else {
            json!({ "contexts": contexts })
        };
        nodes.push(json!({
            "number": number, "author": { "login": "SmokeDetector" }, "baseRefName": "master",
            "headRefOid": head,
            "commits": { "nodes": [ { "commit": { "status": status } } ] }
        }));
    }
    created(
        200,
        json!({ "data": { "repository": { "pullRequests": { "nodes": nodes } } } }),
    )
}

fn git_ref(branch: &str, sha: &str) -> Value {
    let mut body = api_fixture("git-get-ref.200.json");
    body["ref"] = json!(format!("refs/heads/{branch}"));
    body["url"] = json!(format!(
        "https://api.github.com/repos/{REPO}/git/refs/heads/{branch}"
    ));
    body["object"]["sha"] = json!(sha);
    body["object"]["url"] = json!(format!(
        "https://api.github.com/repos/{REPO}/git/commits/{sha}"
    ));
    body
}

fn update_ref(repo: &mut Repo, branch: &str, body: &Value) -> ResponseTemplate {
    if repo.failed_ref_updates > 0 {
        repo.failed_ref_updates -= 1;
        return created(502, error_body("Server Error"));
    }
    if let Some(changes) = repo.race.pop_front() {
        repo.commit_on("master", &changes, "Meanwhile on master");
    }
    if repo.protected.as_deref() == Some(branch) {
        return created(
            422,
            error_body(&format!(
                "Protected branch update failed for refs/heads/{branch}."
            )),
        );
    }
    let sha = body["sha"].as_str().unwrap_or_default().to_string();
    let Some(current) = repo.branches.get(branch).cloned() else {
        return created(422, error_body("Reference does not exist"));
    };
    if !repo.commits.contains_key(&sha) {
        return created(422, error_body("Object does not exist"));
    }
    let forced = body["force"].as_bool().unwrap_or(false);
    if !forced && !repo.contains(&sha, &current) {
        return created(422, error_body("Update is not a fast forward"));
    }
    repo.branches.insert(branch.into(), sha.clone());
    if repo.lost_ref_answers > 0 {
        repo.lost_ref_answers -= 1;
        return created(502, error_body("Server Error"));
    }
    created(200, git_ref(branch, &sha))
}

fn merge(repo: &mut Repo, number: u64, body: &Value) -> ResponseTemplate {
    let Some(pull) = repo.pull_json(number) else {
        return not_found();
    };
    let head = pull["head"]["sha"].as_str().unwrap().to_string();
    if body["sha"].as_str().is_some_and(|sha| sha != head) {
        return created(409, api_fixture("pulls-merge.409.json"));
    }
    if pull["merged"] == json!(true) || pull["mergeable"] != json!(true) {
        return created(405, api_fixture("pulls-merge.405.json"));
    }
    let master = repo.branches["master"].clone();
    let files = repo.commits[&head].files.clone();
    let sha = repo.put_commit(Commit {
        files,
        parents: vec![master, head],
        message: body["commit_title"].as_str().unwrap_or_default().into(),
        committer: json!({ "name": "GitHub", "email": "noreply@github.com" }),
    });
    repo.branches.insert("master".into(), sha.clone());
    repo.merged.insert(number);
    let mut answer = api_fixture("pulls-merge.200.json");
    answer["sha"] = json!(sha);
    created(200, answer)
}

fn compare(repo: &Repo, range: &str) -> ResponseTemplate {
    let Some((base, head)) = range.split_once("...") else {
        return not_found();
    };
    if !repo.commits.contains_key(base) || !repo.commits.contains_key(head) {
        return not_found();
    }
    let merge_base = repo.merge_base(base, head).unwrap();
    let (of_base, of_head) = (repo.ancestors(base), repo.ancestors(head));
    let ahead_by = of_head.difference(&of_base).count();
    let behind_by = of_base.difference(&of_head).count();
    let status = match (ahead_by, behind_by) {
        (0, 0) => "identical",
        (_, 0) => "ahead",
        (0, _) => "behind",
        _ => "diverged",
    };
    let mut body = api_fixture("repos-compare-commits.200.json");
    body["status"] = json!(status);
    body["ahead_by"] = json!(ahead_by);
    body["behind_by"] = json!(behind_by);
    body["total_commits"] = json!(ahead_by);
    body["merge_base_commit"]["sha"] = json!(merge_base);
    body["base_commit"]["sha"] = json!(base);
    body["commits"] = json!([]);
    body["files"] = json!([]);
    created(200, body)
}

fn tree_json(
    sha: &str,
    files: &BTreeMap<String, (String, String)>,
    blobs: &HashMap<String, Vec<u8>>,
) -> Value {
    let mut items = Vec::new();
    let mut directories = std::collections::BTreeSet::new();
    for path in files.keys() {
        let mut parts: Vec<&str> = path.split('/').collect();
        parts.pop();
        for depth in 1..=parts.len() {
            directories.insert(parts[..depth].join("/"));
        }
    }
    for directory in directories {
        items.push(json!({ "path": directory, "mode": "040000", "type": "tree", "sha": address("tree", directory.as_bytes()), "url": "" }));
    }
    for (path, (mode, blob)) in files {
        items.push(json!({
            "path": path, "mode": mode, "type": "blob", "sha": blob,
            "size": blobs.get(blob).map_or(0, Vec::len),
            "url": format!("https://api.github.com/repos/{REPO}/git/blobs/{blob}")
        }));
    }
    json!({ "sha": sha, "url": format!("https://api.github.com/repos/{REPO}/git/trees/{sha}"), "tree": items, "truncated": false })
}

fn blob_json(sha: &str, content: &[u8]) -> Value {
    let encoded = base64::engine::general_purpose::STANDARD.encode(content);
    // GitHub wraps blob content at 60 characters.
    let wrapped: Vec<String> = encoded
        .as_bytes()
        .chunks(60)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    json!({
        "content": wrapped.join("\n") + "\n",
        "encoding": "base64",
        "url": format!("https://api.github.com/repos/{REPO}/git/blobs/{sha}"),
        "sha": sha,
        "size": content.len(),
        "node_id": "B_kwDOAE3WVdoAKGJsb2I",
    })
}
