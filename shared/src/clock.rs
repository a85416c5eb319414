//! Time as the relay sees it: whole Unix seconds from a `Clock` that each route is given, so
//! that tests can choose the time (leases, TTLs) instead of waiting for it.

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

/// Where the routes and jobs read the time.
pub trait Clock: Send + Sync + Debug {
    /// Unix seconds.
    fn now(&self) -> i64;
}

/// The system's wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        now()
    }
}

/// The wall clock, shared.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock that stands still until moved; for tests.
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    /// A clock stopped at `now` (Unix seconds).
    pub fn at(now: i64) -> Self {
        Self(AtomicI64::new(now))
    }

    /// Moves the clock on by `seconds`.
    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The wall clock's Unix seconds, for what runs outside a route (operator commands, logs).
pub fn now() -> i64 {
    chrono::Utc::now().timestamp()
}
