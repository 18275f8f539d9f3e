//! Rate limits without I/O: a sliding-window estimate over two fixed
//! windows (what the stores count, across processes) and a token bucket
//! (one process's ceiling). Fixed windows alone let a client send twice the
//! limit across a boundary; the estimate weighs the previous window by how
//! much of it still overlaps the last `window_secs`.

use crate::Timestamp;

/// Counts of one key in the window `now` falls in and the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowCount {
    pub current: u64,
    pub previous: u64,
}

/// The window `now` falls in: its end, in Unix seconds. Stores key their
/// counters by it, so counters of different sizes never collide.
pub fn window_end(now: Timestamp, window_secs: i64) -> i64 {
    let size = window_secs.max(1);
    (now.unix_timestamp().div_euclid(size) + 1) * size
}

/// A limit of `limit` events per `window_secs`, sliding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SlidingLimit {
    pub limit: u64,
    pub window_secs: i64,
}

/// How long to wait before trying again, in whole seconds (at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

impl SlidingLimit {
    /// Whether the event just counted (it is included in `c.current`) is
    /// within the limit; if not, when an event would be.
    pub fn check(&self, c: WindowCount, now: Timestamp) -> Result<(), RetryAfter> {
        let size = self.window_secs.max(1) as f64;
        let end = window_end(now, self.window_secs) as f64;
        let now_s = now.unix_timestamp() as f64 + f64::from(now.millisecond()) / 1000.0;
        // Fraction of the current window gone by.
        let elapsed = ((now_s - (end - size)) / size).clamp(0.0, 1.0);
        let estimate = c.current as f64 + c.previous as f64 * (1.0 - elapsed);
        // The epsilon keeps float rounding from refusing an exact fit.
        if estimate <= self.limit as f64 + 1e-9 {
            return Ok(());
        }
        Err(self.retry_after(c, now))
    }

    /// When one more event would fit beside the `c` already counted: within
    /// this window, once the previous window's weight has shrunk enough;
    /// otherwise in the next one, where this window becomes "previous".
    /// For a refused event that was not counted (a store that counts only
    /// what it stores), `c` is the counts without it.
    pub fn retry_after(&self, c: WindowCount, now: Timestamp) -> RetryAfter {
        let size = self.window_secs.max(1) as f64;
        let end = window_end(now, self.window_secs) as f64;
        let now_s = now.unix_timestamp() as f64 + f64::from(now.millisecond()) / 1000.0;
        let elapsed = ((now_s - (end - size)) / size).clamp(0.0, 1.0);
        let room = self.limit as f64 - 1.0;
        let wait = if (c.current as f64) <= room && c.previous > 0 {
            let f = 1.0 - (room - c.current as f64) / c.previous as f64;
            (f - elapsed) * size
        } else {
            let f = if c.current == 0 {
                0.0
            } else {
                (1.0 - room.max(0.0) / c.current as f64).clamp(0.0, 1.0)
            };
            (1.0 - elapsed) * size + f * size
        };
        RetryAfter(wait.ceil().max(1.0) as u64)
    }
}

impl SlidingLimit {
    /// The most events the window `now` falls in may hold, with `previous`
    /// in the window before, for [`Self::check`] to pass: what a store
    /// checks its count against in a conditional write (the count before
    /// one more is added must be below it).
    pub fn most_current(&self, previous: u64, now: Timestamp) -> u64 {
        let fits = |n: u64| {
            self.check(
                WindowCount {
                    current: n,
                    previous,
                },
                now,
            )
            .is_ok()
        };
        if fits(self.limit) {
            return self.limit;
        }
        // check is monotonic in the current count: the largest that fits.
        let (mut lo, mut hi) = (0u64, self.limit);
        if !fits(lo) {
            return 0;
        }
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(mid) { lo = mid } else { hi = mid }
        }
        lo
    }
}

/// A token bucket: `capacity` events at once, refilled at `per_sec`.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    capacity: f64,
    per_sec: f64,
    tokens: f64,
    last: Option<Timestamp>,
}

impl TokenBucket {
    pub fn new(capacity: u32, per_sec: u32) -> Self {
        Self {
            capacity: f64::from(capacity.max(1)),
            per_sec: f64::from(per_sec.max(1)),
            tokens: f64::from(capacity.max(1)),
            last: None,
        }
    }

    /// Takes one token, or says how long until one is there.
    pub fn take(&mut self, now: Timestamp) -> Result<(), RetryAfter> {
        if let Some(last) = self.last {
            let gone = (now - last).as_seconds_f64().max(0.0);
            self.tokens = (self.tokens + gone * self.per_sec).min(self.capacity);
        }
        self.last = Some(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            let wait = (1.0 - self.tokens) / self.per_sec;
            Err(RetryAfter(wait.ceil().max(1.0) as u64))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::at;
    use time::Duration;

    const L: SlidingLimit = SlidingLimit {
        limit: 10,
        window_secs: 600,
    };

    #[test]
    fn the_most_a_window_may_hold_is_what_check_lets_through() {
        let start = at(1_800_000_000);
        for previous in [0, 1, 5, 10, 30] {
            for secs in [0, 59, 300, 599] {
                let now = start + Duration::seconds(secs);
                let most = L.most_current(previous, now);
                let check = |current| L.check(WindowCount { current, previous }, now);
                if most > 0 {
                    assert!(check(most).is_ok(), "{previous} {secs}: {most} fits");
                }
                assert!(
                    check(most + 1).is_err(),
                    "{previous} {secs}: {most} + 1 does not"
                );
            }
        }
        let none = SlidingLimit {
            limit: u64::MAX,
            window_secs: 600,
        };
        assert_eq!(none.most_current(7, start), u64::MAX);
    }

    #[test]
    fn under_the_limit_passes_and_over_it_says_when() {
        let start = at(1_800_000_000);
        assert_eq!(
            L.check(
                WindowCount {
                    current: 10,
                    previous: 0
                },
                start
            ),
            Ok(())
        );
        let r = L.check(
            WindowCount {
                current: 11,
                previous: 0,
            },
            start,
        );
        // Full window ahead: the next window starts with this one weighing
        // (nearly) all of it.
        assert!(matches!(r, Err(RetryAfter(s)) if s >= 600), "{r:?}");
    }

    #[test]
    fn no_double_burst_across_a_boundary() {
        // 10 at the very end of one window, then 10 right after the
        // boundary: a fixed window would let the second 10 through.
        let boundary = at(1_800_000_000 + 600);
        let just_after = boundary + Duration::seconds(1);
        let mut passed = 0;
        for n in 1..=10 {
            if L.check(
                WindowCount {
                    current: n,
                    previous: 10,
                },
                just_after,
            )
            .is_ok()
            {
                passed += 1;
            }
        }
        assert_eq!(passed, 0);
        // Half way through, half of the previous window still counts.
        let half = boundary + Duration::seconds(300);
        assert!(
            L.check(
                WindowCount {
                    current: 5,
                    previous: 10
                },
                half
            )
            .is_ok()
        );
        assert!(
            L.check(
                WindowCount {
                    current: 6,
                    previous: 10
                },
                half
            )
            .is_err()
        );
    }

    #[test]
    fn retry_after_is_when_an_event_fits_again() {
        let boundary = at(1_800_000_000 + 600);
        let t = boundary + Duration::seconds(60);
        let c = WindowCount {
            current: 3,
            previous: 10,
        };
        let Err(RetryAfter(wait)) = L.check(c, t) else {
            panic!("over the limit")
        };
        // The next attempt is counted too.
        let next = WindowCount {
            current: 4,
            previous: 10,
        };
        let later = t + Duration::seconds(wait as i64);
        assert!(L.check(next, later).is_ok(), "still refused after {wait} s");
        let earlier = t + Duration::seconds(wait as i64 - 2);
        assert!(
            L.check(next, earlier).is_err(),
            "{wait} s is not the earliest"
        );
    }

    #[test]
    fn bucket_refills_at_its_rate() {
        let t = at(1_800_000_000);
        let mut b = TokenBucket::new(3, 1);
        for _ in 0..3 {
            assert!(b.take(t).is_ok());
        }
        assert_eq!(b.take(t), Err(RetryAfter(1)));
        assert!(b.take(t + Duration::seconds(1)).is_ok());
        assert!(b.take(t + Duration::seconds(1)).is_err());
        // Idle time never stores more than the capacity.
        let idle = t + Duration::hours(1);
        for _ in 0..3 {
            assert!(b.take(idle).is_ok());
        }
        assert!(b.take(idle).is_err());
    }
}
