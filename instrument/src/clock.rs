//! The clock the hot path reads, and the conversions the drain applies.
//!
//! The hot path reads a raw counter (the `TSC` on `x86_64` through `quanta`, whose `raw()` is one
//! `rdtsc`) and stores raw ticks; the drain converts ticks to nanoseconds and to wall-clock time
//! off the hot path. A per-thread mock clock lets tests produce exact, sleep-free durations.

use std::cell::Cell;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime};

/// Which clock timestamps calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClockSource {
    /// The CPU's invariant counter where there is one (`TSC` on `x86_64`), else the monotonic clock.
    #[default]
    Counter,
    /// A per-thread clock that moves only when [`crate::testing::advance`] is called on that
    /// thread: deterministic durations for tests.
    Mock,
}

/// Hot-path clock modes, stored in the low byte of the global state word.
pub(crate) const MODE_OFF: u32 = 0;
pub(crate) const MODE_COUNTER: u32 = 1;
pub(crate) const MODE_MOCK: u32 = 2;

static COUNTER: OnceLock<quanta::Clock> = OnceLock::new();

thread_local! {
    static MOCK_NOW: Cell<u64> = const { Cell::new(0) };
}

/// The process-wide counter clock, calibrated once on first use.
pub(crate) fn counter() -> &'static quanta::Clock {
    COUNTER.get_or_init(quanta::Clock::new)
}

/// Reads the clock of `mode` in raw ticks. `mode` is never `MODE_OFF` here.
#[inline(always)]
pub(crate) fn now(mode: u32) -> u64 {
    if mode == MODE_COUNTER {
        // `install` initialises COUNTER before it publishes MODE_COUNTER.
        match COUNTER.get() {
            Some(clock) => clock.raw(),
            None => 0,
        }
    } else {
        MOCK_NOW.with(Cell::get)
    }
}

/// Advances this thread's mock clock.
pub(crate) fn advance_mock(by: Duration) {
    let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
    MOCK_NOW.with(|now| now.set(now.get().saturating_add(nanos)));
}

/// Nanoseconds in a span of `ticks` of the clock of `mode` (mock ticks are nanoseconds).
pub(crate) fn ticks_to_nanos(mode: u32, ticks: u64) -> u64 {
    if mode == MODE_COUNTER {
        counter().delta_as_nanos(0, ticks)
    } else {
        ticks
    }
}

/// Converts raw ticks of one pipeline's clock to nanoseconds and wall-clock time.
#[derive(Clone, Debug)]
pub(crate) struct Timebase {
    mode: u32,
    origin_ticks: u64,
    origin_wall: SystemTime,
}

impl Timebase {
    /// Captures the origin of a pipeline about to run with `mode`.
    pub(crate) fn new(mode: u32) -> Self {
        let origin_ticks = if mode == MODE_COUNTER {
            counter().raw()
        } else {
            0
        };
        Timebase {
            mode,
            origin_ticks,
            origin_wall: SystemTime::now(),
        }
    }

    /// Nanoseconds in a span of `ticks`.
    #[inline]
    pub(crate) fn nanos(&self, ticks: u64) -> u64 {
        ticks_to_nanos(self.mode, ticks)
    }

    /// Wall-clock time of a raw timestamp.
    pub(crate) fn wall(&self, ticks: u64) -> SystemTime {
        let after = self.nanos(ticks.saturating_sub(self.origin_ticks));
        self.origin_wall + Duration::from_nanos(after)
    }
}
