//! The chain at a glance, for operators (`GET /status.json`, `GET /status`): what the relay
//! recorded, read by key only (short lists of the newest entries kept as one item each, the
//! recent commits' items, the connections table), so the page costs nothing while nobody
//! looks and the same after a year as on the first day.

pub mod access;
pub mod page;

use serde::Serialize;
use serde_json::Value;

use crate::bridge::HOLDER_KEY;
use crate::domain::{HistoryEntry, HistoryOutcome};
use crate::store::recent::{CI_CONTEXTS, DELIVERIES, DEPLOY_MOVES, PULL_EVENTS};
use crate::store::{CommitSummary, Store, StoreError};

/// How many merge decisions the page shows.
const MERGES: usize = 20;

/// The page's content.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Overview {
    /// When it was read, Unix seconds.
    pub generated_at: i64,
    /// Read for the public view: no key names.
    pub public: bool,
    /// Where the source and deploy branches were when the relay last saw them.
    pub heads: Heads,
    /// The newest deploy moves, refusals and reports, newest first.
    pub deploys: Vec<DeployRow>,
    /// Bot pull requests that were opened and have no final decision yet.
    pub open_pulls: Vec<PullRow>,
    /// The newest merge decisions, newest first.
    pub merges: Vec<PullRow>,
    /// Connected Smokeys.
    pub smokeys: Vec<SmokeyRow>,
    /// The newest deliveries, newest first.
    pub deliveries: Vec<DeliveryRow>,
    /// Stalls the reconcile passes are watching.
    pub stalls: Vec<StallRow>,
    /// The metasmoke bridge on AWS: the keepalive run that holds its socket.
    pub bridge: Option<BridgeRow>,
}

/// A branch head as recorded.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Head {
    /// The commit.
    pub sha: String,
    /// The first line of its message, when the relay knows it.
    pub message: Option<String>,
    /// Seconds since the relay recorded it there.
    pub age_seconds: i64,
}

/// The source and deploy heads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Heads {
    /// `SOURCE_BRANCH`'s head, from the newest push to it.
    pub source: Option<Head>,
    /// `DEPLOY_BRANCH`'s head, from the newest move (or push to it).
    pub deploy: Option<Head>,
    /// Whether they are the same commit.
    pub agree: bool,
}

/// One deploy history entry with its commit's CI results and verdict.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeployRow {
    /// When.
    pub at: i64,
    /// `moved`, `already-contained`, `diverged`, ...
    pub outcome: String,
    /// The commit it was about.
    pub sha: Option<String>,
    /// The first line of its message, when the relay knows it.
    pub message: Option<String>,
    /// The delivery (or reconcile pass) that did it.
    pub delivery_id: String,
    /// Each CI context's latest result on the commit, `context: state`.
    pub ci: Vec<String>,
    /// The verdict sent, if any: `success`, `failure`, `error`.
    pub verdict: Option<String>,
    /// When the verdict was sent.
    pub verdict_sent_at: Option<i64>,
    /// To how many connections.
    pub verdict_sent_to: Option<u64>,
}

/// A pull request event or decision.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PullRow {
    /// The pull request.
    pub number: u64,
    /// When.
    pub at: i64,
    /// `opened`, `merged`, `not-merged`, `refused`, `head-moved`, ...
    pub outcome: String,
    /// Why (a decision's reason), or the merge commit.
    pub detail: String,
    /// The delivery that recorded it.
    pub delivery_id: String,
}

/// A connected Smokey.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SmokeyRow {
    /// The name of the key it subscribed with; hidden in the public view.
    pub key_name: Option<String>,
    /// When it connected.
    pub connected_since: i64,
    /// The place in the outbox of the last frame its key took.
    pub last_frame: Option<u64>,
    /// When its key last took a frame (its last successful post), or was added.
    pub last_post: Option<i64>,
    /// The newest place in the outbox: a key behind it missed frames it gets on
    /// resubscription.
    pub outbox_head: u64,
}

/// A delivery as answered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeliveryRow {
    /// When it was answered.
    pub at: i64,
    /// `X-GitHub-Event`.
    pub event: String,
    /// `X-GitHub-Delivery`.
    pub delivery_id: String,
    /// The route's outcome: `handled`, `ignored`, `duplicate`, `failed`, ...
    pub outcome: String,
    /// The answer's status code.
    pub status: u16,
    /// How long the answer took.
    pub duration_ms: f64,
}

/// A stall being watched.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StallRow {
    /// `approved/<n>`, `deploy-differs`, `no-verdict`.
    pub key: String,
    /// Since when.
    pub since: i64,
    /// Whether its alert was said.
    pub alerted: bool,
}

/// Which keepalive run holds metasmoke's socket.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BridgeRow {
    /// The run.
    pub holder: String,
    /// Since when.
    pub since: i64,
}

/// Reads the overview at `now`; `public` leaves key names out. `bot_login` is whose pull
/// requests count as bot PRs. Key reads only: the recent lists in one batch, the stalls,
/// the outbox head, the bridge's claim and the cursors by key; then the deploy commits'
/// results in one batch. (The connections table is scanned, as every broadcast does.)
async fn read(
    store: &dyn Store,
    now: i64,
    public: bool,
    bot_login: &str,
) -> Result<Overview, StoreError> {
    let lists = [DEPLOY_MOVES, PULL_EVENTS, DELIVERIES, CI_CONTEXTS].map(|list| list.name);
    let (recent, stalls, connections, head, holder) = tokio::try_join!(
        store.recent(&lists),
        store.stalls(),
        store.connections(now),
        store.outbox_head(),
        store.claim_holder(HOLDER_KEY),
    )?;
    let [mut deploy_history, pulls, mut deliveries, contexts]: [Vec<HistoryEntry>; 4] = recent
        .try_into()
        .map_err(|_| StoreError::Corrupt("a recent list is missing".into()))?;
    deploy_history.truncate(DEPLOY_MOVES.keep);
    deliveries.truncate(DELIVERIES.keep);
    let mut contexts: Vec<String> = contexts
        .iter()
        .filter_map(|e| text(&e.detail, "context").map(str::to_string))
        .collect();
    contexts.sort();
    let (deploys, cursors) = tokio::try_join!(
        deploy_rows(store, &deploy_history, &contexts),
        cursors(store, &connections),
    )?;
    let cursor = |c: &crate::store::Connection| {
        cursors
            .iter()
            .find(|(client, _, _)| Some(client.as_str()) == c.client.as_deref())
    };
    let smokeys = connections
        .iter()
        .filter(|c| !c.subscriptions.is_empty())
        .map(|c| SmokeyRow {
            key_name: c.client.clone().filter(|_| !public),
            connected_since: c.connected_at,
            last_frame: cursor(c).and_then(|(_, seq, _)| *seq),
            last_post: cursor(c).and_then(|(_, _, moved)| *moved),
            outbox_head: head,
        })
        .collect();
    Ok(Overview {
        generated_at: now,
        public,
        heads: heads(&deploy_history, &deploys, now),
        open_pulls: open_pulls(&pulls, bot_login),
        merges: pulls
            .iter()
            .filter(|e| is_decision(&e.outcome))
            .take(MERGES)
            .filter_map(pull_row)
            .collect(),
        deploys,
        smokeys,
        deliveries: deliveries.iter().map(delivery_row).collect(),
        stalls: stalls
            .into_iter()
            .map(|(key, stall)| StallRow {
                key,
                since: stall.since,
                alerted: stall.alerted,
            })
            .collect(),
        bridge: holder.map(|held| BridgeRow {
            holder: held.owner,
            since: held.claimed_at,
        }),
    })
}

/// Each connected key's cursor: its place and when it last moved.
async fn cursors(
    store: &dyn Store,
    connections: &[crate::store::Connection],
) -> Result<Vec<(String, Option<u64>, Option<i64>)>, StoreError> {
    let clients: std::collections::BTreeSet<&str> = connections
        .iter()
        .filter_map(|c| c.client.as_deref())
        .collect();
    futures_util::future::try_join_all(clients.into_iter().map(|client| async move {
        let cursor = store.cursor_and_moved_at(client).await?;
        Ok::<_, StoreError>((
            client.to_string(),
            cursor.map(|(seq, _)| seq),
            cursor.and_then(|(_, moved)| moved),
        ))
    }))
    .await
}

/// The deploy entries with their commits' verdicts and results for `contexts`, read by
/// key in one batch.
async fn deploy_rows(
    store: &dyn Store,
    history: &[HistoryEntry],
    contexts: &[String],
) -> Result<Vec<DeployRow>, StoreError> {
    let mut shas: Vec<String> = Vec::new();
    for sha in history.iter().filter_map(|e| text(&e.detail, "to")) {
        if !shas.iter().any(|known| known == sha) {
            shas.push(sha.to_string());
        }
    }
    let summaries = store.commit_summaries(&shas, contexts).await?;
    Ok(history
        .iter()
        .map(|entry| {
            let sha = text(&entry.detail, "to");
            let summary = sha
                .and_then(|sha| shas.iter().position(|known| known == sha))
                .map(|i| summaries[i].clone())
                .unwrap_or_default();
            deploy_row(entry, summary)
        })
        .collect())
}

fn deploy_row(entry: &HistoryEntry, summary: CommitSummary) -> DeployRow {
    let sha = text(&entry.detail, "to");
    let ci = summary
        .results
        .iter()
        .map(|s| format!("{}: {}", s.context, s.state))
        .collect();
    let verdict = summary.verdict;
    let message = text(&entry.detail, "message").map(first_line).or_else(|| {
        verdict
            .as_ref()
            .map(|v| first_line(&v.verdict.commit_message))
    });
    DeployRow {
        at: entry.at,
        outcome: entry.outcome.as_str().to_string(),
        sha: sha.map(str::to_string),
        message,
        delivery_id: entry.delivery_id.clone(),
        ci,
        verdict: verdict.as_ref().map(|v| v.verdict.state.clone()),
        verdict_sent_at: verdict.as_ref().and_then(|v| v.notified_at),
        verdict_sent_to: verdict.as_ref().and_then(|v| v.sent_to),
    }
}

/// The newest push to the source branch names its head; the newest move names deploy's
/// (or a commit pushed to deploy directly, when newer).
fn heads(history: &[HistoryEntry], rows: &[DeployRow], now: i64) -> Heads {
    let head = |wanted: &dyn Fn(&HistoryOutcome) -> bool| {
        history
            .iter()
            .zip(rows)
            .find(|(entry, _)| wanted(&entry.outcome))
            .and_then(|(entry, row)| {
                Some(Head {
                    sha: row.sha.clone()?,
                    message: row.message.clone(),
                    age_seconds: now - entry.at,
                })
            })
    };
    let source = head(&|o| {
        matches!(
            o,
            HistoryOutcome::Moved | HistoryOutcome::AlreadyContained | HistoryOutcome::Diverged
        )
    });
    let deploy = head(&|o| {
        matches!(
            o,
            HistoryOutcome::Moved | HistoryOutcome::AlreadyContained | HistoryOutcome::StrayCommit
        )
    });
    let agree = matches!((&source, &deploy), (Some(s), Some(d)) if s.sha == d.sha);
    Heads {
        source,
        deploy,
        agree,
    }
}

/// Bot PRs whose newest entry in the index leaves them open: opened, or a decision not to
/// merge (yet).
fn open_pulls(entries: &[HistoryEntry], bot_login: &str) -> Vec<PullRow> {
    let bots: std::collections::BTreeSet<u64> = entries
        .iter()
        .filter(|e| text(&e.detail, "author").is_some_and(|a| a.eq_ignore_ascii_case(bot_login)))
        .filter_map(number)
        .collect();
    let mut seen = std::collections::BTreeSet::new();
    entries
        .iter()
        .filter_map(|e| Some((e, number(e)?)))
        .filter(|(_, n)| seen.insert(*n) && bots.contains(n))
        .filter(|(e, _)| match &e.outcome {
            HistoryOutcome::Event(action) => action != "closed",
            HistoryOutcome::NotMerged | HistoryOutcome::HeadMoved | HistoryOutcome::Refused => true,
            _ => false,
        })
        .filter_map(|(e, _)| pull_row(e))
        .collect()
}

fn is_decision(outcome: &HistoryOutcome) -> bool {
    matches!(
        outcome,
        HistoryOutcome::Merged
            | HistoryOutcome::NotMerged
            | HistoryOutcome::HeadMoved
            | HistoryOutcome::Refused
    )
}

fn pull_row(entry: &HistoryEntry) -> Option<PullRow> {
    let detail = &entry.detail;
    Some(PullRow {
        number: number(entry)?,
        at: entry.at,
        outcome: entry.outcome.as_str().to_string(),
        detail: text(detail, "reason")
            .or_else(|| text(detail, "merge_sha"))
            .or_else(|| text(detail, "title"))
            .unwrap_or_default()
            .to_string(),
        delivery_id: entry.delivery_id.clone(),
    })
}

fn delivery_row(entry: &HistoryEntry) -> DeliveryRow {
    let d = &entry.detail;
    DeliveryRow {
        at: entry.at,
        event: text(d, "event").unwrap_or("-").to_string(),
        delivery_id: entry.delivery_id.clone(),
        outcome: entry.outcome.as_str().to_string(),
        status: d["status"].as_u64().unwrap_or_default() as u16,
        duration_ms: d["duration_ms"].as_f64().unwrap_or_default(),
    }
}

fn number(entry: &HistoryEntry) -> Option<u64> {
    entry.detail.get("number").and_then(Value::as_u64)
}

fn text<'a>(detail: &'a Value, key: &str) -> Option<&'a str> {
    detail.get(key).and_then(Value::as_str)
}

fn first_line(text: &str) -> String {
    text.lines().next().unwrap_or_default().to_string()
}

/// What `GET /status` or `GET /status.json` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageAnswer {
    /// 200, 303 (after `?token=`), 401 or 503.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers: `Set-Cookie`, `Location`, `WWW-Authenticate`, `Cache-Control`.
    pub headers: Vec<(&'static str, String)>,
    /// The page, the JSON, or a one-line reason.
    pub body: String,
}

/// The page's parts: where it reads, who may see it, whose pull requests are bot PRs.
pub struct StatusPage {
    /// The relay's records.
    pub store: std::sync::Arc<dyn Store>,
    /// `STATUS_TOKEN`, `STATUS_PUBLIC`.
    pub access: access::Access,
    /// `BOT_LOGIN`.
    pub bot_login: String,
    /// Ages and "read at" are timed by it.
    pub clock: std::sync::Arc<dyn crate::clock::Clock>,
}

impl StatusPage {
    /// Answers `GET path` (`/status` or `/status.json`) with `headers` and `query`.
    pub async fn answer(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        query: Option<&str>,
    ) -> PageAnswer {
        let query_token = query
            .into_iter()
            .flat_map(|q| q.split('&'))
            .find_map(|pair| pair.strip_prefix("token="));
        let public = match self.access.check(headers, query_token) {
            access::Verdict::Operator => false,
            access::Verdict::Public => true,
            access::Verdict::SetCookie(cookie) => {
                return PageAnswer {
                    status: 303,
                    content_type: "text/plain; charset=utf-8",
                    headers: vec![("set-cookie", cookie), ("location", path.to_string())],
                    body: "Signed in; on to the page\n".into(),
                };
            }
            access::Verdict::Denied => {
                return PageAnswer {
                    status: 401,
                    content_type: "text/plain; charset=utf-8",
                    headers: vec![("www-authenticate", "Bearer".into())],
                    body: "The status page needs the operator token (STATUS_TOKEN): an \
                       `Authorization: Bearer` header, or visit /status?token=... once\n"
                        .into(),
                };
            }
        };
        let now = self.clock.now();
        let overview = match read(self.store.as_ref(), now, public, &self.bot_login).await {
            Ok(overview) => overview,
            Err(error) => {
                return PageAnswer {
                    status: 503,
                    content_type: "text/plain; charset=utf-8",
                    headers: Vec::new(),
                    body: format!("The relay's records cannot be read right now: {error}\n"),
                };
            }
        };
        let no_store = ("cache-control", "no-store".to_string());
        match path.ends_with(".json") {
            true => PageAnswer {
                status: 200,
                content_type: "application/json",
                headers: vec![no_store],
                body: serde_json::to_string(&overview).expect("an overview serialises"),
            },
            false => PageAnswer {
                status: 200,
                content_type: "text/html; charset=utf-8",
                headers: vec![no_store],
                body: page::render(&overview),
            },
        }
    }

    /// Serves the page as a Lambda function behind API Gateway's HTTP API.
    pub async fn run_on_lambda(self) -> Result<(), lambda_http::Error> {
        let page = std::sync::Arc::new(self);
        lambda_http::run(lambda_http::service_fn(
            move |request: lambda_http::Request| {
                let page = std::sync::Arc::clone(&page);
                async move {
                    let answer = page
                        .answer(
                            request.uri().path(),
                            request.headers(),
                            request.uri().query(),
                        )
                        .await;
                    Ok::<_, std::convert::Infallible>(answer.into_lambda())
                }
            },
        ))
        .await
    }
}

impl PageAnswer {
    /// As a Lambda HTTP response.
    pub fn into_lambda(self) -> lambda_http::Response<lambda_http::Body> {
        let mut response = lambda_http::Response::builder()
            .status(self.status)
            .header("content-type", self.content_type);
        for (name, value) in self.headers {
            response = response.header(name, value);
        }
        response
            .body(lambda_http::Body::from(self.body))
            .expect("status and headers are valid")
    }
}
