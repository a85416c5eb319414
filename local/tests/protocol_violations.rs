//! Clients that break the WebSocket protocol, against `relay-local serve` as a process, over
//! raw TCP with hand-built frames (a client library would refuse to send them): each gets
//! RFC 6455's close code and its connection ends within 1 s, the connection list forgets
//! it, and a well-behaved Smokey on the same relay is not disturbed. A thousand of them
//! leave the process's file descriptors and memory where they were. Sockets that never
//! subscribe, or stop answering pings, are closed by the idle bounds.

mod common;

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use common::{
    SmokeyLike, fail_the_deploy_commit, free_port, serve_command, unique_suffix,
    wait_until_listening,
};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET: &str = "protocol test secret";
const KEY: &str = "key-for-the-protocol-test-0123";
const DEPLOY_SHA: &str = "9049f1265b7d61be4a8904a9a27120d2064dab3b";

const PROTOCOL_ERROR: u16 = 1002;
const INVALID_DATA: u16 = 1007;
const POLICY_VIOLATION: u16 = 1008;

/// One frame as a client would send it: `first` is FIN, RSV and the opcode; masked unless
/// told otherwise.
fn frame(first: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut bytes = vec![first];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => bytes.push(mask_bit | n as u8),
        n => {
            bytes.push(mask_bit | 126);
            bytes.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    if !masked {
        bytes.extend_from_slice(payload);
        return bytes;
    }
    let key = [0x37, 0xfa, 0x21, 0x3d];
    bytes.extend_from_slice(&key);
    bytes.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    bytes
}

/// The eight violations, each with the close code RFC 6455 asks for.
fn violations() -> Vec<(&'static str, Vec<u8>, u16)> {
    vec![
        (
            "reserved data opcode 0x3",
            frame(0x83, b"hi", true),
            PROTOCOL_ERROR,
        ),
        (
            "reserved control opcode 0xB",
            frame(0x8B, b"", true),
            PROTOCOL_ERROR,
        ),
        (
            "text that is not UTF-8",
            frame(0x81, &[0x68, 0xff, 0xfe, 0x69], true),
            INVALID_DATA,
        ),
        (
            "unmasked client frame",
            frame(0x81, b"hi", false),
            PROTOCOL_ERROR,
        ),
        (
            "continuation with nothing to continue",
            frame(0x80, b"hi", true),
            PROTOCOL_ERROR,
        ),
        (
            "control frame over 125 bytes",
            frame(0x89, &[b'p'; 126], true),
            PROTOCOL_ERROR,
        ),
        (
            "fragmented control frame",
            frame(0x09, b"p", true),
            PROTOCOL_ERROR,
        ),
        (
            "RSV1 set without an extension",
            frame(0xC1, b"hi", true),
            PROTOCOL_ERROR,
        ),
    ]
}

/// A TCP connection upgraded to a WebSocket at `/cable`, by hand.
async fn raw_socket(port: u16) -> TcpStream {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let request = format!(
        "GET /cable HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(
            tcp.read(&mut byte).await.unwrap(),
            1,
            "the handshake ended early"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    tcp
}

/// How a raw socket ended: the close frame's code, if one came, and whether the
/// connection ended (EOF or reset) within `patience`.
#[derive(Debug)]
struct Ended {
    close_code: Option<u16>,
    connection_ended: bool,
}

/// Reads what the server sends until the connection ends or `patience` runs out.
async fn read_until_end(tcp: &mut TcpStream, patience: Duration) -> Ended {
    let deadline = tokio::time::Instant::now() + patience;
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    let connection_ended = loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut buffer)).await {
            Err(_) => break false,
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    };
    Ended {
        close_code: close_code(&received),
        connection_ended,
    }
}

/// The code of the first close frame among the server's (unmasked) frames.
fn close_code(mut bytes: &[u8]) -> Option<u16> {
    while bytes.len() >= 2 {
        let opcode = bytes[0] & 0x0f;
        let (length, header) = match bytes[1] & 0x7f {
            126 if bytes.len() >= 4 => (u16::from_be_bytes([bytes[2], bytes[3]]) as usize, 4),
            127 => return None,
            n => (n as usize, 2),
        };
        let payload = bytes.get(header..header + length)?;
        if opcode == 0x8 {
            return payload
                .get(..2)
                .map(|code| u16::from_be_bytes([code[0], code[1]]));
        }
        bytes = &bytes[header + length..];
    }
    None
}

/// `relay-local serve` keeping its store in a state file, so that the test can read the
/// connection list as the relay keeps it.
struct Relay {
    port: u16,
    process: Child,
    state: PathBuf,
}

impl Relay {
    fn start(extra_env: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("relay-protocol-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let state = dir.join("state.json");
        let port = free_port();
        let mut command = serve_command(port, SECRET);
        command
            .arg("--state")
            .arg(&state)
            .env("RELAY_CLIENT_KEYS", format!("smokey:{KEY}"))
            .env("RECONCILE_SECONDS", "0");
        for (name, value) in extra_env {
            command.env(name, value);
        }
        let process = command.spawn().expect("relay-local starts");
        Self {
            port,
            process,
            state,
        }
    }

    /// The connections the store holds.
    fn connections(&self) -> usize {
        connections_in(&self.state)
    }

    /// Waits until the store holds `count` connections; how many it held at the end.
    async fn settle_connections(&self, count: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.connections() != count && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.connections()
    }

    fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.process.id()))
            .unwrap()
            .count()
    }

    fn rss_kib(&self) -> u64 {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.process.id())).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Waits until the process holds no more than `fds` descriptors; how many it held.
    async fn settle_fds(&self, fds: usize) -> usize {
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.open_fds() > fds && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.open_fds()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.process.kill();
        let _ = self.process.wait();
        let _ = std::fs::remove_dir_all(self.state.parent().unwrap());
    }
}

fn connections_in(state: &Path) -> usize {
    let Ok(bytes) = std::fs::read(state) else {
        return 0;
    };
    let state: Value = serde_json::from_slice(&bytes).unwrap();
    state["connections"].as_object().map_or(0, |c| c.len())
}

async fn subscribed_smokey(port: u16) -> SmokeyLike {
    let smokey = SmokeyLike::start(port, KEY);
    let deadline = Instant::now() + Duration::from_secs(10);
    while smokey.confirmed() == 0 {
        assert!(Instant::now() < deadline, "Smokey never subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    smokey
}

fn verdicts(messages: &[Value]) -> usize {
    messages
        .iter()
        .filter(|m| m["commit_status"]["commit_sha"] == DEPLOY_SHA)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_violation_gets_its_close_code_and_its_connection_ends_within_a_second() {
    let relay = Relay::start(&[]);
    wait_until_listening(relay.port).await;
    let smokey = subscribed_smokey(relay.port).await;
    let before = relay.settle_connections(1).await;
    assert_eq!(before, 1, "the subscribed Smokey");

    for (name, bytes, expected) in violations() {
        for attempt in 0..5 {
            let mut tcp = raw_socket(relay.port).await;
            tcp.write_all(&bytes).await.unwrap();
            let ended = read_until_end(&mut tcp, Duration::from_secs(1)).await;
            assert_eq!(
                ended.close_code,
                Some(expected),
                "{name} (socket {attempt}): {ended:?}"
            );
            assert!(
                ended.connection_ended,
                "{name} (socket {attempt}): the connection is still open after 1 s"
            );
        }
    }
    assert_eq!(
        relay.settle_connections(before).await,
        before,
        "the connection list forgets every violating socket"
    );

    let (code, answer) = fail_the_deploy_commit(relay.port, SECRET).await;
    assert_eq!(code, 200, "{answer}");
    let deadline = Instant::now() + Duration::from_secs(10);
    assert!(
        smokey.wait_for(deadline, |m| verdicts(m) > 0).await,
        "the good client got no verdict: {:?}",
        smokey.messages()
    );
    // Long enough for a second copy to show.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(verdicts(&smokey.messages()), 1, "{:?}", smokey.messages());
    assert_eq!(
        smokey.confirmed(),
        1,
        "the good client was never disconnected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_violating_connections_leave_descriptors_and_memory_where_they_were() {
    let relay = Relay::start(&[]);
    wait_until_listening(relay.port).await;
    let mut kinds = violations();
    // And clients that leave politely, whose sockets must be freed just the same.
    kinds.push((
        "close 1000",
        frame(0x88, &1000u16.to_be_bytes(), true),
        1000,
    ));
    let run = |count: usize| {
        let kinds = kinds.clone();
        let port = relay.port;
        async move {
            // Ten at a time, each to its end.
            let mut batch = Vec::new();
            for i in 0..count {
                let bytes = kinds[i % kinds.len()].1.clone();
                batch.push(tokio::spawn(async move {
                    let mut tcp = raw_socket(port).await;
                    tcp.write_all(&bytes).await.unwrap();
                    read_until_end(&mut tcp, Duration::from_secs(2)).await
                }));
                if batch.len() == 10 || i + 1 == count {
                    for ended in batch.drain(..) {
                        let ended = ended.await.unwrap();
                        assert!(
                            ended.connection_ended && ended.close_code.is_some(),
                            "{ended:?}"
                        );
                    }
                }
            }
        }
    };
    // Warm up: the runtime's threads and the allocator's pools reach their working size.
    run(200).await;
    let fds_before = relay.settle_fds(0).await;
    let rss_before = relay.rss_kib();

    run(1000).await;
    let fds_after = relay.settle_fds(fds_before).await;
    let rss_after = relay.rss_kib();
    eprintln!(
        "after 1,000 violating connections: fds {fds_before} -> {fds_after}, \
         RSS {rss_before} -> {rss_after} KiB"
    );
    assert_eq!(fds_after, fds_before, "every socket's descriptor is freed");
    assert!(
        rss_after <= rss_before + rss_before / 10,
        "RSS grew from {rss_before} to {rss_after} KiB"
    );
    assert_eq!(relay.settle_connections(0).await, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sockets_that_never_subscribe_or_stop_answering_pings_are_closed() {
    let relay = Relay::start(&[
        ("WS_SUBSCRIBE_SECONDS", "1"),
        ("WS_PING_SECONDS", "1"),
        ("WS_IDLE_SECONDS", "2"),
    ]);
    wait_until_listening(relay.port).await;
    let smokey = subscribed_smokey(relay.port).await;

    // Connected, never subscribed: closed after 1 s.
    let mut silent = raw_socket(relay.port).await;
    let ended = read_until_end(&mut silent, Duration::from_secs(3)).await;
    assert_eq!(ended.close_code, Some(POLICY_VIOLATION), "{ended:?}");
    assert!(ended.connection_ended, "{ended:?}");

    // Subscribed, then deaf to pings (a raw socket answers nothing): closed after 2 s of
    // silence, once its pings went unanswered.
    let mut deaf = raw_socket(relay.port).await;
    let identifier = serde_json::json!({ "channel": "SmokeDetectorChannel", "key": KEY });
    let subscribe =
        serde_json::json!({ "command": "subscribe", "identifier": identifier.to_string() });
    deaf.write_all(&frame(0x81, subscribe.to_string().as_bytes(), true))
        .await
        .unwrap();
    let started = Instant::now();
    let ended = read_until_end(&mut deaf, Duration::from_secs(5)).await;
    assert_eq!(ended.close_code, Some(POLICY_VIOLATION), "{ended:?}");
    assert!(ended.connection_ended, "{ended:?}");
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "closed for silence before its idle bound: {:?}",
        started.elapsed()
    );

    // The Smokey-like client answers pings as it reads: still on its first connection.
    assert_eq!(smokey.confirmed(), 1, "the good client was closed");
    assert_eq!(relay.settle_connections(1).await, 1);
}
