//! `relay-local why`: the trail the relay recorded for a pull request, for deploy, or for a
//! commit, told as plain sentences with times. Reads only, each a bounded query: a
//! history stream's newest entries, a commit's items.

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::domain::{DEPLOY_HISTORY, HistoryEntry, HistoryOutcome, VerdictRecord, pull_stream};
use crate::store::{Store, StoreError};

/// How many entries of a history stream a trail reads.
const READ: usize = 100;

/// A trail: one sentence that sums it up, then each recorded event on its own line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trail {
    /// E.g. "PR #1234: approved by X at 10:02 (code-review/pullapprove); merged ...".
    pub summary: String,
    /// "2026-12-06 10:02:13 UTC  merged as abc1234 ... (delivery ...)", oldest first.
    pub events: Vec<String>,
}

impl std::fmt::Display for Trail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.summary)?;
        for event in &self.events {
            writeln!(f, "  {event}")?;
        }
        Ok(())
    }
}

/// Pull request `number`: its events, the merge, and what became of the merge commit.
pub async fn pull(store: &dyn Store, number: u64) -> Result<Trail, StoreError> {
    let entries = oldest_first(store.history(&pull_stream(number), READ).await?);
    let mut clauses = Vec::new();
    let mut merge_sha = None;
    for entry in &entries {
        let d = &entry.detail;
        let at = clock(entry.at);
        clauses.push(match &entry.outcome {
            HistoryOutcome::Merged => {
                let sha = text(d, "merge_sha");
                merge_sha = sha.filter(|s| is_sha(s)).map(str::to_string);
                let approved = match (text(d, "approved_by"), text(d, "context")) {
                    (Some(by), Some(context)) => format!("approved by {by} ({context}); "),
                    _ => String::new(),
                };
                let how = match (sha, d["union"].as_bool()) {
                    (Some(sha), Some(true)) => format!(" as {} (a union merge)", short(sha)),
                    (Some(sha), _) => format!(" as {}", short(sha)),
                    (None, _) => " (found merged after a lost answer)".to_string(),
                };
                let pinned = text(d, "pinned")
                    .map(|p| format!(", pinned to {}", short(p)))
                    .unwrap_or_default();
                format!("{approved}merged at {at}{how}{pinned}")
            }
            HistoryOutcome::NotMerged | HistoryOutcome::HeadMoved | HistoryOutcome::Refused => {
                format!(
                    "not merged at {at}: {}",
                    text(d, "reason").unwrap_or("no reason recorded")
                )
            }
            HistoryOutcome::BranchDeleted => format!("branch deleted at {at}"),
            HistoryOutcome::BranchNotDeleted => format!("branch not deleted at {at}"),
            other => format!("{} at {at}", other.as_str()),
        });
    }
    if entries.is_empty() {
        clauses.push("nothing recorded".to_string());
    }
    if let Some(sha) = &merge_sha {
        clauses.extend(deployed(store, sha).await?);
        clauses.push(verdict_clause(store, sha).await?);
    }
    Ok(Trail {
        summary: format!("PR #{number}: {}.", clauses.join("; ")),
        events: entries.iter().map(event_line).collect(),
    })
}

/// Deploy: its recent moves, refusals and reports, and the verdict of where it is.
pub async fn deploy(store: &dyn Store) -> Result<Trail, StoreError> {
    let entries = oldest_first(store.history(DEPLOY_HISTORY, READ).await?);
    let head = entries
        .iter()
        .rev()
        .find(|e| {
            matches!(
                e.outcome,
                HistoryOutcome::Moved | HistoryOutcome::AlreadyContained
            )
        })
        .and_then(|e| text(&e.detail, "to"))
        .map(str::to_string);
    let summary = match &head {
        Some(sha) => {
            let moved = entries
                .iter()
                .rev()
                .find(|e| text(&e.detail, "to") == Some(sha.as_str()))
                .map(|e| clock(e.at))
                .unwrap_or_default();
            format!(
                "Deploy: at {} since {moved}; {}.",
                short(sha),
                verdict_clause(store, sha).await?
            )
        }
        None => "Deploy: no move recorded.".to_string(),
    };
    Ok(Trail {
        summary,
        events: entries.iter().map(event_line).collect(),
    })
}

/// A commit: its CI results, whether the relay moved deploy there, and its verdict.
pub async fn commit(store: &dyn Store, sha: &str) -> Result<Trail, StoreError> {
    let mut statuses = store.latest_statuses(sha).await?;
    statuses.sort_by_key(|s| (s.updated_at, s.status_id));
    let mut clauses: Vec<String> = statuses
        .iter()
        .map(|s| {
            format!(
                "{} {} at {} ({})",
                s.context,
                s.state,
                clock(s.updated_at),
                s.source.as_str()
            )
        })
        .collect();
    if clauses.is_empty() {
        clauses.push("no CI result recorded".to_string());
    }
    clauses.extend(deployed(store, sha).await?);
    clauses.push(verdict_clause(store, sha).await?);
    let events = statuses
        .iter()
        .map(|s| {
            format!(
                "{}  {} {}: {} (delivery {})",
                stamp(s.updated_at),
                s.context,
                s.state,
                s.description.as_deref().unwrap_or(""),
                s.delivery_id
            )
        })
        .collect();
    Ok(Trail {
        summary: format!("Commit {}: {}.", short(sha), clauses.join("; ")),
        events,
    })
}

/// What deploy's history says of `sha`, if anything.
async fn deployed(store: &dyn Store, sha: &str) -> Result<Vec<String>, StoreError> {
    let entries = oldest_first(store.history(DEPLOY_HISTORY, READ).await?);
    let about: Vec<String> = entries
        .iter()
        .filter(|e| text(&e.detail, "to") == Some(sha))
        .map(|e| match e.outcome {
            HistoryOutcome::Moved => format!("deploy moved at {}", clock(e.at)),
            HistoryOutcome::AlreadyContained => {
                format!("deploy already had it at {}", clock(e.at))
            }
            ref other => format!("deploy {} at {}", other.as_str(), clock(e.at)),
        })
        .collect();
    if about.is_empty() && store.is_deployed(sha).await? {
        return Ok(vec!["deploy is there".to_string()]);
    }
    Ok(about)
}

async fn verdict_clause(store: &dyn Store, sha: &str) -> Result<String, StoreError> {
    Ok(match store.verdict(sha).await? {
        Some(VerdictRecord {
            verdict,
            notified_at: Some(sent),
            sent_to,
            ..
        }) => match sent_to {
            Some(n) => format!(
                "CI {} at {} sent to {n} connection(s)",
                verdict.state,
                clock(sent)
            ),
            None => format!("CI {} sent at {}", verdict.state, clock(sent)),
        },
        Some(record) => format!(
            "CI {} decided at {}, not sent yet (delivery {})",
            record.verdict.state,
            clock(record.claimed_at),
            record.delivery_id
        ),
        None => "no CI verdict yet".to_string(),
    })
}

fn event_line(entry: &HistoryEntry) -> String {
    let detail = match &entry.detail {
        Value::Object(map) if map.is_empty() => String::new(),
        Value::Null => String::new(),
        other => format!(" {other}"),
    };
    format!(
        "{}  {}{detail} (delivery {})",
        stamp(entry.at),
        entry.outcome.as_str(),
        entry.delivery_id
    )
}

fn oldest_first(mut entries: Vec<HistoryEntry>) -> Vec<HistoryEntry> {
    entries.reverse();
    entries
}

fn text<'a>(detail: &'a Value, key: &str) -> Option<&'a str> {
    detail.get(key).and_then(Value::as_str)
}

fn is_sha(text: &str) -> bool {
    text.len() >= 7 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

fn short(sha: &str) -> &str {
    &sha[..sha.len().min(7)]
}

/// `10:02` (UTC).
fn clock(at: i64) -> String {
    time(at).format("%H:%M").to_string()
}

/// `2026-12-06 10:02:13 UTC`.
fn stamp(at: i64) -> String {
    time(at).format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn time(at: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(at, 0).unwrap_or_default()
}
