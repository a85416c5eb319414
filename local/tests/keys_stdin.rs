//! A Smokey keeps its `metasmoke_key`: `relay-local keys add NAME --stdin` registers it,
//! only its hash is stored, and a subscription with it is confirmed.

mod common;

use std::process::{Command, Output};

use common::{free_port, output_with_stdin, serve_command, smokey, wait_until_listening};

/// What Smokey's config already holds as `metasmoke_key`.
const METASMOKE_KEY: &str = "d1e5a0c7b0f94a4c9a3f0e6b2f1c8d7e";

fn keys_add_from_stdin(name: &str, state: &str, stdin: &str) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_relay-local"));
    command
        .args(["keys", "add", name, "--stdin", "--state", state])
        .env_remove("AWS_ENDPOINT_URL_DYNAMODB");
    output_with_stdin(&mut command, stdin)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_existing_key_registered_from_stdin_is_confirmed_and_only_its_hash_is_stored() {
    let dir = std::env::temp_dir().join(format!("relay-local-stdin-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let state = dir.join("state.json");
    let state = state.to_str().unwrap();

    let empty = keys_add_from_stdin("smokey-empty", state, "\n");
    assert!(!empty.status.success());
    assert!(String::from_utf8_lossy(&empty.stderr).contains("held no key"));

    let added = keys_add_from_stdin("smokey-ms", state, &format!("{METASMOKE_KEY}\n"));
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    assert!(
        added.stdout.is_empty(),
        "nothing printed: the operator has the key"
    );
    let stored = std::fs::read_to_string(state).unwrap();
    assert!(
        !stored.contains(METASMOKE_KEY),
        "the key itself is not stored"
    );
    assert!(stored.contains(&build_relay::keys::hash(METASMOKE_KEY)));

    let port = free_port();
    let mut relay = serve_command(port, "stdin test secret")
        .args(["--state", state])
        .spawn()
        .unwrap();
    wait_until_listening(port).await;
    let (_client, reply) = smokey(port, METASMOKE_KEY).await;
    assert!(reply.contains("confirm_subscription"), "{reply}");
    relay.kill().unwrap();
    relay.wait().unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
}
