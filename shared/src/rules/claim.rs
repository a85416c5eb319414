//! Once-only work that concurrent deliveries share (a merge and what follows it, a message
//! that must go out once): who may take the next step of a claim. A claim moves through
//! `ClaimState`s; each step is done by whoever holds the claim, and a holder that stopped
//! answering (its lease ran out) is taken over by the next delivery, which finishes its step.

use crate::domain::{ClaimRecord, ClaimState};

/// How long a holder may go without moving its claim on before another delivery may take
/// it over. Longer than any delivery may run (the answer budget is under 10 s).
pub const LEASE_SECONDS: i64 = 30;

/// What a delivery that found a claim held may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Turn {
    /// Nothing is left to do.
    Finished(ClaimRecord),
    /// Go on from the claim's state, after swapping `expected` for `mine`.
    Take {
        /// The record to swap from.
        expected: ClaimRecord,
        /// The record to swap in.
        mine: ClaimRecord,
    },
    /// Another delivery holds a live lease: wait for it, or fail for a redelivery.
    Wait(ClaimRecord),
}

/// Whose turn it is on a held claim, for delivery `me` at `now`.
pub fn turn(held: &ClaimRecord, me: &str, now: i64) -> Turn {
    if held.state.is_final() {
        return Turn::Finished(held.clone());
    }
    let lease_over = held.claimed_at <= now - LEASE_SECONDS;
    if held.owner != me && !lease_over {
        return Turn::Wait(held.clone());
    }
    let state = match held.state {
        ClaimState::Failed => ClaimState::Claimed,
        state => state,
    };
    Turn::Take {
        expected: held.clone(),
        mine: ClaimRecord {
            owner: me.to_string(),
            claimed_at: now,
            state,
        },
    }
}

/// The holder's claim moved on to `state` at `now`.
pub fn advanced(held: &ClaimRecord, state: ClaimState, now: i64) -> ClaimRecord {
    ClaimRecord {
        owner: held.owner.clone(),
        claimed_at: now,
        state,
    }
}

/// The holder's claim handed back at its current step: any delivery may take it over now.
pub fn released(held: &ClaimRecord) -> ClaimRecord {
    ClaimRecord {
        claimed_at: 0,
        ..held.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn held(owner: &str, claimed_at: i64, state: ClaimState) -> ClaimRecord {
        ClaimRecord {
            owner: owner.into(),
            claimed_at,
            state,
        }
    }

    #[test]
    fn a_live_lease_of_another_delivery_means_waiting() {
        let h = held("d1", 1000, ClaimState::Claimed);
        assert_eq!(turn(&h, "d2", 1000 + LEASE_SECONDS - 1), Turn::Wait(h));
    }

    #[test]
    fn the_holder_itself_goes_on_at_once() {
        let h = held("d1", 1000, ClaimState::Merged);
        let Turn::Take { expected, mine } = turn(&h, "d1", 1001) else {
            panic!("the holder's redelivery takes its turn");
        };
        assert_eq!(expected, h);
        assert_eq!(mine, held("d1", 1001, ClaimState::Merged));
    }

    #[test]
    fn an_expired_or_released_lease_is_taken_over_at_its_step() {
        for h in [
            held("d1", 1000, ClaimState::Announced),
            released(&held("d1", 5000, ClaimState::Announced)),
        ] {
            let Turn::Take { mine, .. } = turn(&h, "d2", 1000 + LEASE_SECONDS) else {
                panic!("{h:?} is free to take over");
            };
            assert_eq!(
                mine,
                held("d2", 1000 + LEASE_SECONDS, ClaimState::Announced)
            );
        }
    }

    #[test]
    fn final_states_are_never_taken_over() {
        for state in [
            ClaimState::BranchDeleted,
            ClaimState::Done,
            ClaimState::Refused,
            ClaimState::MergedElsewhere,
        ] {
            let h = held("d1", 0, state);
            assert_eq!(turn(&h, "d1", 9999), Turn::Finished(h));
        }
    }

    #[test]
    fn version_ones_failed_mark_restarts_the_work() {
        let h = held("d1", 1000, ClaimState::Failed);
        let Turn::Take { mine, .. } = turn(&h, "d2", 1000 + LEASE_SECONDS) else {
            panic!("a failed attempt is free to take over");
        };
        assert_eq!(mine.state, ClaimState::Claimed);
    }

    #[test]
    fn states_read_and_write_as_version_one_stored_them() {
        for (state, text) in [
            (ClaimState::Claimed, "claimed"),
            (ClaimState::Merged, "merged"),
            (ClaimState::Announced, "announced"),
            (ClaimState::Refused, "refused"),
            (ClaimState::MergedElsewhere, "merged-elsewhere"),
            (ClaimState::Failed, "failed"),
            (ClaimState::BranchDeleted, "branch-deleted"),
            (ClaimState::Done, "done"),
        ] {
            assert_eq!(state.as_str(), text);
            assert_eq!(ClaimState::parse(text), Some(state));
        }
        assert_eq!(ClaimState::parse("bogus"), None);
    }
}
