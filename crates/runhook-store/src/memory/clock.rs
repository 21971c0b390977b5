//! The embedded store's clock: a coarse monotonic clock, and deadlines that allow for it.

use std::time::Duration;

use super::Deadline;

/// Reads the time for leases and done windows, as nanoseconds since the store was built.
///
/// On Linux and Android it reads `CLOCK_MONOTONIC_COARSE`, the kernel's last tick, which the
/// vDSO returns in about a third of the time of the precise clock `Instant` reads (measured
/// here: 11 ns against 32 ns a call; a claim and a complete each read the clock once). Its
/// resolution, the tick (typically 1 to 10 ms, 4 ms on these machines), is added to every
/// deadline, so a lease never lapses before its full length has passed, nor a done window
/// closes early: both may run up to two ticks longer. Elsewhere it reads `Instant`, with no
/// allowance.
pub(super) struct Clock {
    base: Reading,
    /// Added to every deadline: the clock's resolution.
    slack: Deadline,
}

impl Clock {
    pub(super) fn new() -> Self {
        Clock {
            base: Reading::now(),
            slack: nanos(Reading::resolution()),
        }
    }

    /// Nanoseconds since the store was built (enough for 584 years).
    pub(super) fn now(&self) -> Deadline {
        nanos(Reading::now().since(&self.base))
    }

    /// The first reading at which `length` has surely passed since `now` was read.
    pub(super) fn deadline(&self, now: Deadline, length: Duration) -> Deadline {
        now.saturating_add(nanos(length)).saturating_add(self.slack)
    }

    /// What is left at `now` of the length a `deadline` was set for, without the clock's
    /// allowance: never more than that length, so a caller told "the lease lapses in this
    /// long" hears at most what the holder was granted.
    pub(super) fn remaining(&self, now: Deadline, deadline: Deadline) -> Duration {
        Duration::from_nanos(deadline.saturating_sub(now).saturating_sub(self.slack))
    }
}

/// Durations are checked to be at most 30 years, far below `u64::MAX` nanoseconds.
pub(super) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
use coarse::Reading;

#[cfg(any(target_os = "linux", target_os = "android"))]
mod coarse {
    use std::time::Duration;

    use rustix::time::{clock_getres, clock_gettime, ClockId, Timespec};

    /// One reading of `CLOCK_MONOTONIC_COARSE`.
    pub(super) struct Reading(Timespec);

    impl Reading {
        pub(super) fn now() -> Self {
            Reading(clock_gettime(ClockId::MonotonicCoarse))
        }

        pub(super) fn resolution() -> Duration {
            duration(clock_getres(ClockId::MonotonicCoarse))
        }

        /// The time from `earlier` to this reading (zero if the clock went back, which a
        /// monotonic clock does not).
        pub(super) fn since(&self, earlier: &Reading) -> Duration {
            duration(self.0).saturating_sub(duration(earlier.0))
        }
    }

    fn duration(t: Timespec) -> Duration {
        let secs = u64::try_from(t.tv_sec).unwrap_or(0);
        let nanos = u32::try_from(t.tv_nsec).unwrap_or(0);
        Duration::new(secs, nanos)
    }
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
use precise::Reading;

#[cfg(not(any(target_os = "linux", target_os = "android")))]
mod precise {
    use std::time::{Duration, Instant};

    /// One reading of `Instant`, whose resolution needs no allowance.
    pub(super) struct Reading(Instant);

    impl Reading {
        pub(super) fn now() -> Self {
            Reading(Instant::now())
        }

        pub(super) fn resolution() -> Duration {
            Duration::ZERO
        }

        pub(super) fn since(&self, earlier: &Reading) -> Duration {
            self.0.saturating_duration_since(earlier.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deadline_is_never_read_as_passed_before_its_length() {
        let clock = Clock::new();
        let length = Duration::from_millis(3);
        for _ in 0..50 {
            let now = clock.now();
            // Taken after the reading, so the time it measures is at most the reading's.
            let start = std::time::Instant::now();
            let deadline = clock.deadline(now, length);
            // Spin until the clock says the deadline has come.
            while clock.now() < deadline {
                std::hint::spin_loop();
            }
            assert!(start.elapsed() >= length, "{:?}", start.elapsed());
        }
    }

    #[test]
    fn what_remains_is_never_more_than_the_length_granted() {
        let clock = Clock::new();
        let length = Duration::from_millis(150);
        let now = clock.now();
        let deadline = clock.deadline(now, length);
        assert_eq!(clock.remaining(now, deadline), length);
        assert!(clock.remaining(clock.now(), deadline) <= length);
        assert_eq!(clock.remaining(deadline, deadline), Duration::ZERO);
    }
}
