//! `relay-local why` as an operator runs it, on a state file holding one PR's trail.

use std::process::Command;

use build_relay::domain::{HistoryEntry, HistoryOutcome};
use build_relay::store::History;
use build_relay::store::embedded::EmbeddedStore;
use serde_json::json;

/// 2027-01-15 08:00:00 UTC.
const START: i64 = 1_800_000_000;

fn why(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_relay-local"))
        .arg("why")
        .args(args)
        .env_remove("AWS_ENDPOINT_URL_DYNAMODB")
        .output()
        .expect("relay-local runs")
}

#[tokio::test]
async fn a_pull_requests_trail_is_told_from_a_state_file() {
    let dir = std::env::temp_dir().join(format!("relay-why-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state.json");
    let _ = std::fs::remove_file(&state);
    {
        let store = EmbeddedStore::open(&state).unwrap();
        let entry = |at, delivery: &str, outcome, detail| HistoryEntry {
            at,
            delivery_id: delivery.into(),
            outcome,
            detail,
        };
        for record in [
            entry(
                START,
                "d-open",
                HistoryOutcome::Event("opened".into()),
                json!({}),
            ),
            entry(
                START + 120,
                "d-approval",
                HistoryOutcome::Merged,
                json!({ "merge_sha": "6dcb09b5b57875f334f61aebed695e2e4193db5e",
                    "pinned": "c7e1a4c1d9d6c1f2b6c0f8a0d2f1e3b4a5c6d7e8",
                    "approved_by": "pullapprove[bot]", "context": "code-review/pullapprove",
                    "union": false }),
            ),
            entry(
                START + 121,
                "d-approval",
                HistoryOutcome::BranchDeleted,
                json!({}),
            ),
        ] {
            store.append_history("pull/1234", &record).await.unwrap();
        }
    }

    let out = why(&["pr", "1234", "--state", state.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "PR #1234: opened at 08:00; approved by pullapprove[bot] (code-review/pullapprove); \
         merged at 08:02 as 6dcb09b, pinned to c7e1a4c; branch deleted at 08:02; no CI \
         verdict yet."
    );
    assert!(
        lines
            .next()
            .unwrap()
            .starts_with("  2027-01-15 08:00:00 UTC  opened"),
        "{text}"
    );
    assert_eq!(lines.count(), 2, "{text}");

    let nothing = why(&["commit", "0123456", "--state", state.to_str().unwrap()]);
    assert!(nothing.status.success());
    assert_eq!(
        String::from_utf8_lossy(&nothing.stdout),
        "Commit 0123456: no CI result recorded; no CI verdict yet.\n"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn without_a_store_it_says_which_to_give() {
    let out = why(&["deploy"]);
    assert!(!out.status.success());
    let error = String::from_utf8_lossy(&out.stderr);
    assert!(
        error.contains("--state FILE") && error.contains("--dynamodb"),
        "{error}"
    );
}
