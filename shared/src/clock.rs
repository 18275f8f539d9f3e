//! The clocks and id sources the adapters hand to the domain and the steps.
//! Steps read time only through a [`Clock`], so a test moves time by giving
//! a time, never by waiting or by rewriting stored state.

pub use crate::domain::Clock;
use crate::domain::{ProposalId, Timestamp, to_millis};
use std::sync::{Arc, Mutex};

/// The system clock, at millisecond precision (what the store keeps).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        to_millis(time::OffsetDateTime::now_utc())
    }
}

/// The clock of a process that has no other: `SystemClock` behind an `Arc`.
pub fn system() -> Arc<dyn Clock> {
    Arc::new(SystemClock)
}

/// A clock tests set and move by hand.
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    pub fn new(at: Timestamp) -> Arc<Self> {
        Arc::new(Self(Mutex::new(to_millis(at))))
    }

    /// Starts at the system's now.
    pub fn starting_now() -> Arc<Self> {
        Self::new(SystemClock.now())
    }

    pub fn set(&self, at: Timestamp) {
        *self.0.lock().expect("clock lock") = to_millis(at);
    }

    pub fn advance(&self, by: time::Duration) {
        let mut t = self.0.lock().expect("clock lock");
        *t += by;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().expect("clock lock")
    }
}

/// The system clock moved ahead by hand: time still flows, and a test can
/// jump past a deadline (a link's expiry, a pause) without waiting.
#[derive(Debug, Default)]
pub struct ShiftedClock(Mutex<time::Duration>);

impl ShiftedClock {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn advance(&self, by: time::Duration) {
        *self.0.lock().expect("clock lock") += by;
    }
}

impl Clock for ShiftedClock {
    fn now(&self) -> Timestamp {
        SystemClock.now() + *self.0.lock().expect("clock lock")
    }
}

/// A fresh proposal id at `now`, from the thread's CSPRNG.
pub fn new_proposal_id(now: Timestamp) -> ProposalId {
    ProposalId::generate(now, &mut rand::rng())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_clock_moves_only_when_told() {
        let c = ManualClock::new(crate::domain::fixtures::at(0));
        assert_eq!(c.now(), crate::domain::fixtures::at(0));
        c.advance(time::Duration::hours(2));
        assert_eq!(c.now(), crate::domain::fixtures::at(7200));
    }

    #[test]
    fn system_clock_is_millisecond_precise() {
        assert_eq!(SystemClock.now().nanosecond() % 1_000_000, 0);
    }
}
