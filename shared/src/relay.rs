//! The composition root: the one place where every part is built from the same pieces.
//! The function binaries (through `setup`), `relay-local`'s gateway and the tests all build
//! their webhook routes, WebSocket routes, keepalive, bridge, reconcile pass and status
//! page here, so each part's wiring exists once.
//!
//! Adding a webhook route: its handler in `handlers/` (a `Route`), a constructor below, and
//! its path in `template.yaml` and `relay-local`'s router (`local/src/gateway.rs`).

use std::sync::Arc;
use std::time::Duration;

use crate::bridge::{Bridge, Timings};
use crate::broadcast::Broadcaster;
use crate::clock::Clock;
use crate::config::{BridgeConfig, RelayConfig, Secret, WebhookSecrets};
use crate::github::GitHub;
use crate::github::retry::RetryPolicy;
use crate::handlers::Effects;
use crate::handlers::keepalive::Keepalive;
use crate::handlers::pull_request::{PrMerge, PullRequestHook, PullRequestRoutes};
use crate::handlers::push::PushHook;
use crate::handlers::reconcile::Reconcile;
use crate::handlers::status::StatusHook;
use crate::handlers::webhook::{Route, Webhook};
use crate::handlers::ws::Sockets;
use crate::notify::Notifier;
use crate::overview::StatusPage;
use crate::overview::access::Access;
use crate::store::Store;

/// The pieces every part is made of.
#[derive(Clone)]
pub struct Relay {
    /// The rules' settings.
    pub config: RelayConfig,
    /// What webhook deliveries are signed with (`WebhookSecrets::none()` where no
    /// webhook is taken).
    pub secrets: WebhookSecrets,
    /// Everything kept.
    pub store: Arc<dyn Store>,
    /// What Smokeys are told.
    pub notifier: Arc<dyn Notifier>,
    /// Leases and records are timed by it.
    pub clock: Arc<dyn Clock>,
    /// How safe GitHub calls are retried.
    pub retry: RetryPolicy,
}

impl Relay {
    /// A route served with this relay's secrets, ledger and clock.
    pub fn webhook<R: Route>(&self, route: R) -> Webhook<R> {
        Webhook::new(
            route,
            self.secrets.clone(),
            self.store.clone(),
            Arc::clone(&self.clock),
        )
    }

    /// The parts of a route that acts on GitHub (and of a reconcile pass).
    pub fn effects(&self, github: Arc<dyn GitHub>) -> Effects {
        Effects {
            config: self.config.clone(),
            store: Arc::clone(&self.store),
            notifier: Arc::clone(&self.notifier),
            github,
            retry: self.retry,
            clock: Arc::clone(&self.clock),
        }
    }

    /// `POST /github/status_hook` and `POST /github/check_hook`.
    pub fn status_hook(&self, github: Arc<dyn GitHub>) -> Webhook<StatusHook> {
        self.webhook(StatusHook(self.effects(github)))
    }

    /// `POST /github/update_deploy_to_master`.
    pub fn push_hook(&self, github: Arc<dyn GitHub>) -> Webhook<PushHook> {
        self.webhook(PushHook(self.effects(github)))
    }

    /// `POST /github/pull_request_hook` and `POST /github/pr_merge`.
    pub fn pull_request_routes(&self, github: Arc<dyn GitHub>) -> PullRequestRoutes {
        let shared = Arc::new(self.effects(github));
        PullRequestRoutes {
            hook: self.webhook(PullRequestHook(Arc::clone(&shared))),
            merge: self.webhook(PrMerge(shared)),
        }
    }

    /// A reconcile pass: the routes' work against GitHub's real state, with stall alerts
    /// after `stall_after_seconds` (`STALL_ALERT_MINUTES`).
    pub fn reconcile(&self, github: Arc<dyn GitHub>, stall_after_seconds: i64) -> Reconcile {
        Reconcile {
            effects: Arc::new(self.effects(github)),
            stall_after_seconds,
        }
    }

    /// `GET /status` and `/status.json`, for the operators' `token` and, with `public`,
    /// for anyone.
    pub fn status_page(&self, token: Option<Secret>, public: bool) -> StatusPage {
        StatusPage {
            store: Arc::clone(&self.store),
            access: Access { token, public },
            bot_login: self.config.bot_login.clone(),
            clock: Arc::clone(&self.clock),
        }
    }

    /// The WebSocket API's routes; a resubscribing key is sent what it missed in
    /// `replay_window` seconds (`REPLAY_WINDOW_SECONDS`).
    pub fn sockets(&self, broadcaster: &Broadcaster, replay_window: i64) -> Sockets {
        Sockets {
            broadcaster: broadcaster.clone(),
            replay_window,
        }
    }

    /// The pings, every `interval` (`PING_INTERVAL_SECONDS`).
    pub fn keepalive(&self, broadcaster: &Broadcaster, interval: Duration) -> Keepalive {
        Keepalive {
            broadcaster: broadcaster.clone(),
            interval,
            clock: Arc::clone(&self.clock),
        }
    }

    /// The metasmoke bridge, as patient as `timings` says: its frames go out through
    /// `broadcaster`'s outbox.
    pub fn bridge(
        &self,
        broadcaster: &Broadcaster,
        config: BridgeConfig,
        timings: Timings,
    ) -> Bridge {
        Bridge {
            config,
            timings,
            broadcaster: broadcaster.clone(),
        }
    }
}
