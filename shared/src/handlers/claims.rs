//! Carries out `rules::claim` against the store: take a claim (or wait for its holder),
//! move it on step by step, hand it back when a step fails.

use std::time::{Duration, Instant};

use super::Failure;
use crate::clock::Clock;
use crate::notify::{AfterPosts, Notifier, SmokeyMessage};
use crate::rules::claim::{self as rules, Turn};
use crate::store::{Claim, ClaimRecord, ClaimState, Claims, StoreError};

/// How often a delivery waiting for another one's claim looks again.
const WAIT_POLL: Duration = Duration::from_millis(250);

/// What a delivery got when it asked for a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// Nobody had it: this delivery holds it, fresh.
    Won(ClaimRecord),
    /// This delivery holds it (again, or taken over), at the record's step.
    Mine(ClaimRecord),
    /// All done, by whoever held it.
    Finished(ClaimRecord),
    /// Another delivery holds a live lease.
    Busy(ClaimRecord),
}

/// One claim key, for one delivery.
pub struct ClaimHandle<'a> {
    /// The claim's key, e.g. `merge/1234@<sha>`.
    pub key: String,
    /// Who asks (the delivery id).
    pub me: &'a str,
    store: &'a dyn Claims,
    clock: &'a dyn Clock,
}

impl<'a> ClaimHandle<'a> {
    /// A handle on claim `key` for delivery `me`.
    pub fn new(
        store: &'a dyn Claims,
        clock: &'a dyn Clock,
        key: impl Into<String>,
        me: &'a str,
    ) -> Self {
        Self {
            key: key.into(),
            me,
            store,
            clock,
        }
    }

    /// Takes the claim if it is free, ours, or its holder's lease ran out.
    pub async fn take(&self) -> Result<Taken, StoreError> {
        loop {
            let now = self.clock.now();
            let held = match self.store.claim(&self.key, self.me, now).await? {
                Claim::Won => {
                    return Ok(Taken::Won(ClaimRecord {
                        owner: self.me.to_string(),
                        claimed_at: now,
                        state: ClaimState::Claimed,
                    }));
                }
                Claim::Held(held) => held,
            };
            match rules::turn(&held, self.me, now) {
                Turn::Finished(record) => return Ok(Taken::Finished(record)),
                Turn::Wait(record) => return Ok(Taken::Busy(record)),
                Turn::Take { expected, mine } => {
                    if self.store.swap_claim(&self.key, &expected, &mine).await? {
                        return Ok(Taken::Mine(mine));
                    }
                    // Someone moved it meanwhile: look again.
                }
            }
        }
    }

    /// Takes the claim, waiting up to `patience` while another delivery holds it.
    pub async fn take_or_wait(&self, patience: Duration) -> Result<Taken, StoreError> {
        let started = Instant::now();
        loop {
            match self.take().await? {
                Taken::Busy(_) if started.elapsed() + WAIT_POLL <= patience => {
                    tokio::time::sleep(WAIT_POLL).await;
                }
                taken => return Ok(taken),
            }
        }
    }

    /// Moves the held claim on to `state`; false when another delivery took it over.
    pub async fn advance(
        &self,
        held: &mut ClaimRecord,
        state: ClaimState,
    ) -> Result<bool, StoreError> {
        let next = rules::advanced(held, state, self.clock.now());
        let swapped = self.store.swap_claim(&self.key, held, &next).await?;
        if swapped {
            *held = next;
        }
        Ok(swapped)
    }

    /// Moves the held claim on to `state`, or fails for a redelivery when another delivery
    /// took it over meanwhile.
    pub async fn step(&self, held: &mut ClaimRecord, state: ClaimState) -> Result<(), Failure> {
        match self.advance(held, state).await? {
            true => Ok(()),
            false => Err(self.taken_over(state)),
        }
    }

    /// Posts `message` (in the outbox at `place`) through `notifier` and moves the held
    /// claim on to `state` while the keys' cursors move: one round trip for both. How many
    /// connections took it; fails for a redelivery when another delivery took the claim
    /// over meanwhile.
    pub async fn step_when_told(
        &self,
        held: &mut ClaimRecord,
        state: ClaimState,
        notifier: &dyn Notifier,
        place: u64,
        message: &SmokeyMessage,
    ) -> Result<usize, Failure> {
        let stepped = std::sync::Mutex::new(None);
        let mut record = held.clone();
        let step: AfterPosts = Box::new(|_| {
            Box::pin(async {
                if self.advance(&mut record, state).await? {
                    *stepped.lock().expect("not poisoned") = Some(record);
                }
                Ok(())
            })
        });
        let reach = super::deliver(notifier, place, message, Some(step)).await?;
        match stepped.into_inner().expect("not poisoned") {
            Some(record) => {
                *held = record;
                Ok(reach.sent)
            }
            None => Err(self.taken_over(state)),
        }
    }

    fn taken_over(&self, state: ClaimState) -> Failure {
        Failure::transient(format!(
            "another delivery took over {} before it reached {}",
            self.key,
            state.as_str()
        ))
    }

    /// Hands the claim back at its step so that the next delivery may go on at once.
    pub async fn release(&self, held: &ClaimRecord) {
        if let Err(error) = self
            .store
            .swap_claim(&self.key, held, &rules::released(held))
            .await
        {
            // Its lease runs out on its own.
            tracing::warn!(claim = %self.key, %error, "could not release claim");
        }
    }
}

/// Does single-step work at most once per key (at least once across failures): the
/// delivery that takes the claim does `work`; a failure hands the claim back for the
/// redelivery; later deliveries of the same work are answered `done` without effect.
pub async fn once<F, Fut>(
    claim: &ClaimHandle<'_>,
    patience: Duration,
    what: &str,
    work: F,
) -> Result<String, Failure>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<String, Failure>>,
{
    match once_or_done(claim, patience, what, work).await? {
        Done::Now(answer) => Ok(answer),
        Done::Before(owner) => Ok(format!(
            "{what}: done already by delivery {owner}; nothing to do"
        )),
    }
}

/// Whether `once_or_done` did the work itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Done<T> {
    /// This caller did it; what the work answered.
    Now(T),
    /// Someone did it before (the claim's last holder).
    Before(String),
}

/// `once`, telling the caller whether it did the work itself.
pub async fn once_or_done<T, F, Fut>(
    claim: &ClaimHandle<'_>,
    patience: Duration,
    what: &str,
    work: F,
) -> Result<Done<T>, Failure>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<T, Failure>>,
{
    let mut held = match claim.take_or_wait(patience).await? {
        Taken::Won(held) | Taken::Mine(held) => held,
        Taken::Finished(held) => return Ok(Done::Before(held.owner)),
        Taken::Busy(held) => {
            return Err(Failure::transient(format!(
                "{what}: under way in delivery {}; redeliver if it does not finish",
                held.owner
            )));
        }
    };
    match work().await {
        Ok(done) => {
            claim.advance(&mut held, ClaimState::Done).await?;
            Ok(Done::Now(done))
        }
        Err(failure) => {
            claim.release(&held).await;
            Err(failure)
        }
    }
}
