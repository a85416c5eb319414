//! metasmoke's websocket as Rails serves it: `local/tests/metasmoke/config.ru` under puma,
//! with Debian's ruby-actioncable (Rails 6.1). `scripts/test.sh` installs both; without them
//! these tests fail, saying so.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// A puma process serving the ActionCable app on 127.0.0.1:`port`; killed when dropped.
pub struct RailsMetasmoke {
    pub port: u16,
    keys: Vec<String>,
    puma: Option<Child>,
}

impl RailsMetasmoke {
    /// Starts it on a free port, knowing `keys`.
    pub async fn start(keys: &[&str]) -> Self {
        Self::start_on(super::free_port(), keys).await
    }

    pub async fn start_on(port: u16, keys: &[&str]) -> Self {
        let mut server = Self {
            port,
            keys: keys.iter().map(|k| k.to_string()).collect(),
            puma: None,
        };
        server.boot().await;
        server
    }

    async fn boot(&mut self) {
        let app = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/metasmoke/config.ru");
        let puma = Command::new("puma")
            .args([
                "-b",
                &format!("tcp://127.0.0.1:{}", self.port),
                "-t",
                "4:16",
                app,
            ])
            .env("METASMOKE_KEYS", self.keys.join(","))
            .env("RACK_ENV", "production")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "puma runs (Debian's puma and ruby-actioncable; scripts/test.sh installs them)",
            );
        self.puma = Some(puma);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.seen_now().await.is_some() {
                return;
            }
            let exited = self.puma.as_mut().unwrap().try_wait().unwrap();
            assert!(
                exited.is_none(),
                "puma exited: {exited:?}; is ruby-actioncable installed?"
            );
            assert!(
                Instant::now() < deadline,
                "the ActionCable server never answered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// What Smokey's `metasmoke_ws_host` would be.
    pub fn cable_url(&self) -> String {
        format!("ws://127.0.0.1:{}/cable", self.port)
    }

    fn control(&self, route: &str) -> String {
        format!("http://127.0.0.1:{}/control/{route}", self.port)
    }

    /// `ActionCable.server.broadcast('smokedetector_messages', message)`.
    pub async fn broadcast(&self, message: &Value) {
        let answer = reqwest::Client::new()
            .post(self.control("broadcast"))
            .json(message)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }

    /// `ActionCable.server.restart`: every socket gets a `server_restart` disconnect frame.
    pub async fn restart(&self) {
        let answer = reqwest::Client::new()
            .post(self.control("restart"))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }

    /// Makes `keys` the only known keys (for new subscriptions).
    pub async fn set_keys(&mut self, keys: &[&str]) {
        self.keys = keys.iter().map(|k| k.to_string()).collect();
        let answer = reqwest::Client::new()
            .put(self.control("keys"))
            .json(&self.keys)
            .send()
            .await
            .unwrap();
        assert_eq!(answer.status(), 200);
    }

    /// Counts kept by the server: connections, open, most_open, confirmed, rejected, origins.
    pub async fn seen(&self) -> Value {
        self.seen_now()
            .await
            .expect("the ActionCable server answers")
    }

    async fn seen_now(&self) -> Option<Value> {
        let answer = reqwest::Client::new()
            .get(self.control("seen"))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        answer.json().await.ok()
    }

    /// Kills puma (SIGKILL): no close frames, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut puma) = self.puma.take() {
            let _ = puma.kill();
            let _ = puma.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts puma again on the same port with the same keys (its counts start over).
    pub async fn start_again(&mut self) {
        self.boot().await;
    }
}

impl Drop for RailsMetasmoke {
    fn drop(&mut self) {
        self.kill();
    }
}
