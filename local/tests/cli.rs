//! The `relay-local` binary as an operator uses it.

mod common;

use std::process::{Command, Output};

fn relay_local(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_relay-local"))
        .args(args)
        .env_remove("AWS_ENDPOINT_URL_DYNAMODB")
        .env_remove("RUST_LOG")
        .output()
        .expect("relay-local runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn help_names_every_command() {
    let out = relay_local(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for command in ["serve", "demo", "keys", "reconcile"] {
        assert!(help.contains(command), "{help}");
    }
    let serve = text(&relay_local(&["serve", "--help"]).stdout);
    for option in [
        "--listen",
        "WEBHOOK_SECRET",
        "RELAY_CLIENT_KEYS",
        "--state",
        "--dynamodb",
    ] {
        assert!(serve.contains(option), "{serve}");
    }
}

#[test]
fn serve_without_a_secret_says_what_is_missing() {
    let out = Command::new(env!("CARGO_BIN_EXE_relay-local"))
        .arg("serve")
        .env_remove("WEBHOOK_SECRET")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--webhook-secret"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn keys_are_added_listed_and_revoked_in_a_state_file() {
    let dir = std::env::temp_dir().join(format!("relay-local-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state.json");
    let state = state.to_str().unwrap();

    let added = relay_local(&["keys", "add", "smokey-1", "--state", state]);
    assert!(added.status.success(), "{}", text(&added.stderr));
    let key = text(&added.stdout).trim().to_string();
    assert_eq!(key.len(), 64, "the key alone on stdout: {key:?}");
    let stored = std::fs::read_to_string(dir.join("state.json")).unwrap();
    assert!(!stored.contains(&key), "only the hash is stored");

    let again = relay_local(&["keys", "add", "smokey-1", "--state", state]);
    assert!(!again.status.success());
    assert!(text(&again.stderr).contains("exists already"));

    let listed = relay_local(&["keys", "list", "--state", state]);
    assert!(
        text(&listed.stdout).starts_with("smokey-1\t"),
        "{}",
        text(&listed.stdout)
    );

    assert!(
        relay_local(&["keys", "revoke", "smokey-1", "--state", state])
            .status
            .success()
    );
    let missing = relay_local(&["keys", "revoke", "smokey-1", "--state", state]);
    assert!(!missing.status.success());
    assert!(text(&missing.stderr).contains("no client key named"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn keys_refuse_a_store_that_would_forget_them() {
    let out = relay_local(&["keys", "add", "smokey-1"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("--state FILE"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn the_demo_shows_the_whole_chain_reaching_the_client() {
    let out = relay_local(&["demo"]);
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    assert!(
        stdout.contains(r#""type":"confirm_subscription""#),
        "{stdout}"
    );
    assert_eq!(
        stdout
            .matches(r#""commit_status":{"status":"success""#)
            .count(),
        1,
        "{stdout}"
    );
    assert!(stdout.contains("handled already"), "{stdout}");
    assert!(stdout.contains("401 Signature does not match"), "{stdout}");
    assert!(stdout.contains("opened by SmokeDetector"), "{stdout}");
    assert!(stdout.contains(r#"Merge { number: 1234, title: "Merge pull request #1234 from Charcoal-SE/auto-blacklist-1700000000 --autopull""#), "{stdout}");
    assert!(stdout.contains("Merged SmokeDetector [#1234]"), "{stdout}");
    assert!(
        stdout.contains(r#"FastForward { branch: "deploy""#),
        "{stdout}"
    );
    assert!(stdout.contains(r#""deploy_updated":{"#), "{stdout}");
    assert!(
        stdout.contains("The client received 4 message(s)"),
        "{stdout}"
    );
}

#[test]
fn keys_work_against_dynamodb() {
    let endpoint = std::env::var("RELAY_TEST_DYNAMODB_ENDPOINT").expect(
        "RELAY_TEST_DYNAMODB_ENDPOINT is not set: run scripts/test.sh, which starts moto_server",
    );
    let suffix = common::unique_suffix();
    let run = |args: &[&str]| run_with_stdin(args, &endpoint, &suffix, "");
    let added = run(&["keys", "add", "smokey-aws", "--dynamodb", "--create-tables"]);
    assert!(added.status.success(), "{}", text(&added.stderr));
    let kept = run_with_stdin(
        &["keys", "add", "smokey-kept", "--stdin", "--dynamodb"],
        &endpoint,
        &suffix,
        "an-existing-metasmoke-key-0123\n",
    );
    assert!(kept.status.success(), "{}", text(&kept.stderr));
    let listed = run(&["keys", "list", "--dynamodb"]);
    assert_eq!(
        text(&listed.stdout)
            .lines()
            .map(|l| l.split('\t').next().unwrap())
            .collect::<Vec<_>>(),
        ["smokey-aws", "smokey-kept"],
        "{}",
        text(&listed.stderr)
    );
    assert!(
        run(&["keys", "revoke", "smokey-aws", "--dynamodb"])
            .status
            .success()
    );
}

/// `relay-local ARGS` against moto's DynamoDB, tables named with `suffix`, `stdin` fed in.
fn run_with_stdin(args: &[&str], endpoint: &str, suffix: &str, stdin: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_relay-local"));
    command.args(args);
    common::use_moto(&mut command, endpoint, "cli", suffix);
    common::output_with_stdin(&mut command, stdin)
}
