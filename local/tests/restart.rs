//! `relay-local serve` restarted under a connected Smokey (SIGTERM, as a service manager
//! stops it, or SIGINT, as Ctrl-C does) on each store: a verdict sent while Smokey is away
//! reaches it exactly once, within 15 s of the restart.
//!
//! The client reconnects as `metasmoke.py` does: at once after the close frame (the
//! stopping process refuses it), then after its 10 s wait, to the new process, which
//! replays the verdict from the key's cursor.

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use common::{
    SmokeyLike, fail_the_deploy_commit, free_port, output_with_stdin, serve_command, unique_suffix,
    use_moto, wait_until_listening,
};
use serde_json::Value;

const SECRET: &str = "restart test secret";
const KEY: &str = "key-for-the-restart-test-0123";
const DEPLOY_SHA: &str = "9049f1265b7d61be4a8904a9a27120d2064dab3b";

/// Where the relay keeps its state across the restart.
enum Kept {
    /// The in-memory store: the key comes from `RELAY_CLIENT_KEYS` at each start.
    Memory,
    /// `--state FILE`: the key registered once with `keys add --stdin`.
    StateFile(PathBuf),
    /// `--dynamodb` (moto): the key from `RELAY_CLIENT_KEYS`, kept across starts.
    DynamoDb { endpoint: String, suffix: String },
}

impl Kept {
    fn memory() -> Self {
        Kept::Memory
    }

    fn state_file() -> Self {
        let dir = std::env::temp_dir().join(format!("relay-restart-{}", unique_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        let kept = Kept::StateFile(dir.join("state.json"));
        let mut add = kept.command(&["keys", "add", "smokey", "--stdin"]);
        let added = output_with_stdin(&mut add, &format!("{KEY}\n"));
        assert!(
            added.status.success(),
            "{}",
            String::from_utf8_lossy(&added.stderr)
        );
        kept
    }

    fn dynamodb() -> Self {
        let endpoint = std::env::var("RELAY_TEST_DYNAMODB_ENDPOINT").expect(
            "RELAY_TEST_DYNAMODB_ENDPOINT is not set: run scripts/test.sh, which starts moto_server",
        );
        Kept::DynamoDb {
            endpoint,
            suffix: unique_suffix(),
        }
    }

    /// `relay-local ARGS` with this store's flags and environment.
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_relay-local"));
        command.args(args);
        self.configure(&mut command);
        command
    }

    fn configure(&self, command: &mut Command) {
        match self {
            Kept::Memory => {
                command.env("RELAY_CLIENT_KEYS", format!("smokey:{KEY}"));
            }
            Kept::StateFile(file) => {
                command.arg("--state").arg(file);
            }
            Kept::DynamoDb { endpoint, suffix } => {
                command
                    .args(["--dynamodb", "--create-tables"])
                    .env("RELAY_CLIENT_KEYS", format!("smokey:{KEY}"));
                use_moto(command, endpoint, "restart", suffix);
            }
        }
    }

    fn serve(&self, port: u16) -> Child {
        let mut command = serve_command(port, SECRET);
        self.configure(&mut command);
        command
            .env("RECONCILE_SECONDS", "0")
            .spawn()
            .expect("relay-local starts")
    }
}

fn signal(relay: &Child, name: &str) {
    let sent = Command::new("kill")
        .args([&format!("-{name}"), &relay.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success(), "kill -{name}");
}

async fn wait_for_exit(relay: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(exit) = relay.try_wait().unwrap() {
            return exit;
        }
        assert!(Instant::now() < deadline, "relay-local did not exit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn verdicts(messages: &[Value]) -> usize {
    messages
        .iter()
        .filter(|m| {
            m["commit_status"]["commit_sha"] == DEPLOY_SHA
                && m["commit_status"]["status"] == "failure"
        })
        .count()
}

async fn a_verdict_sent_during_a_restart_reaches_smokey_once(kept: Kept, stop_signal: &str) {
    let port = free_port();
    let mut relay = kept.serve(port);
    wait_until_listening(port).await;
    let smokey = SmokeyLike::start(port, KEY);
    let subscribed = Instant::now() + Duration::from_secs(10);
    while smokey.confirmed() == 0 {
        assert!(Instant::now() < subscribed, "Smokey never subscribed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    signal(&relay, stop_signal);
    let restart = Instant::now();
    let exit = wait_for_exit(&mut relay).await;
    assert!(exit.success(), "{exit:?}");
    let mut relay = kept.serve(port);
    wait_until_listening(port).await;

    let (status, answer) = fail_the_deploy_commit(port, SECRET).await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer.contains("to 0 connection(s)"),
        "the verdict is sent while Smokey is away, not to a socket of the old process: {answer}"
    );
    let arrived = smokey
        .wait_for(restart + Duration::from_secs(15), |m| verdicts(m) > 0)
        .await;
    let took = restart.elapsed();
    assert!(
        arrived,
        "the verdict did not reach Smokey within 15 s of the restart; it got {:?}",
        smokey.messages()
    );
    eprintln!("{stop_signal} restart to the verdict at Smokey: {took:.2?}");
    assert_eq!(smokey.confirmed(), 2, "subscribed once to each process");

    // Long enough for a second copy to show: a reconnect, a replay, a live send.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(verdicts(&smokey.messages()), 1, "{:?}", smokey.messages());
    signal(&relay, "TERM");
    assert!(wait_for_exit(&mut relay).await.success());
}

macro_rules! restarts {
    ($($name:ident: $kept:ident, $signal:literal;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            a_verdict_sent_during_a_restart_reaches_smokey_once(Kept::$kept(), $signal).await;
        }
    )*};
}

restarts! {
    sigterm_on_the_memory_store: memory, "TERM";
    sigint_on_the_memory_store: memory, "INT";
    sigterm_on_a_state_file: state_file, "TERM";
    sigint_on_a_state_file: state_file, "INT";
    sigterm_on_dynamodb: dynamodb, "TERM";
    sigint_on_dynamodb: dynamodb, "INT";
}
