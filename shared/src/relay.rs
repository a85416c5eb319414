//! The composition root: the one place where routes are built from their parts. The
//! function binaries (through `setup`), `relay-local` and the tests all build their routes
//! here, so a route's wiring exists once.
//!
//! Adding a webhook route: its handler in `handlers/` (a `Route`), a constructor below, and
//! its path in `template.yaml` and `relay-local`'s router (`local/src/gateway.rs`).

use std::sync::Arc;

use crate::clock::Clock;
use crate::config::{RelayConfig, WebhookSecrets};
use crate::github::GitHub;
use crate::github::retry::RetryPolicy;
use crate::handlers::Effects;
use crate::handlers::pull_request::{PrMerge, PullRequestHook, PullRequestRoutes};
use crate::handlers::push::PushHook;
use crate::handlers::status::StatusHook;
use crate::handlers::webhook::{Route, Webhook};
use crate::notify::Notifier;
use crate::store::Store;

/// The parts every webhook route is made of.
#[derive(Clone)]
pub struct Relay {
    /// The rules' settings.
    pub config: RelayConfig,
    /// What webhook deliveries are signed with.
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

    /// `POST /github/status_hook` and `POST /github/check_hook`.
    pub fn status_hook(&self, github: Arc<dyn GitHub>) -> Webhook<StatusHook> {
        self.webhook(StatusHook(self.effects(github)))
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
}
