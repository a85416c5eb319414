//! What the tests that run `relay-local` as a process share. Each test file uses part.
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// `relay-local serve` on 127.0.0.1:`port` with `secret`, no keys from the environment and
/// its output discarded; add to it, then spawn it.
pub fn serve_command(port: u16, secret: &str) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_relay-local"));
    command
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .env("WEBHOOK_SECRET", secret)
        .env_remove("RELAY_CLIENT_KEYS")
        .env_remove("AWS_ENDPOINT_URL_DYNAMODB")
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    command
}

/// Runs `command` with `stdin` written to its standard input; collects its output.
pub fn output_with_stdin(command: &mut Command, stdin: &str) -> Output {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub async fn wait_until_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "relay-local never listened");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
