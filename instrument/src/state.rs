//! The process-wide state word the hot path reads, and the manual metrics' entry points.
//!
//! `STATE` is `generation << 8 | clock mode`; mode 0 means "not installed". The hot path loads
//! it once per call (relaxed). Records carry the generation's low byte, so records written by a
//! call that straddled a shutdown are recognised and discarded by the next pipeline.

use std::sync::PoisonError;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use crate::clock::{self, MODE_OFF};

pub(crate) static STATE: AtomicU32 = AtomicU32::new(0);

/// Converts a span of raw ticks under `state`'s clock to a duration.
pub(crate) fn ticks_to_duration(state: u32, ticks: u64) -> Option<Duration> {
    let mode = state & 0xff;
    (mode != MODE_OFF).then(|| Duration::from_nanos(clock::ticks_to_nanos(mode, ticks)))
}

/// Adds to a counter (the `counter!` macro).
#[doc(hidden)]
#[inline]
pub fn counter_add(callsite: &'static crate::callsite::Callsite, n: u64) {
    if STATE.load(Ordering::Relaxed) & 0xff != MODE_OFF {
        crate::buffer::count(callsite, n);
    }
}

/// Sets a gauge (the `gauge!` macro).
#[doc(hidden)]
#[inline]
pub fn gauge_set(callsite: &'static crate::callsite::Callsite, value: f64) {
    gauge_update(callsite, |v| *v = value);
}

/// Changes a gauge's value under its callsite's lock. Gauges change at a modest rate; the lock
/// keeps value, pipeline and order consistent so the drain can report the value set last, and
/// concurrent moves add up. Nothing while no pipeline is installed.
pub(crate) fn gauge_update(
    callsite: &'static crate::callsite::Callsite,
    change: impl FnOnce(&mut f64),
) {
    let state = STATE.load(Ordering::Relaxed);
    if state & 0xff != MODE_OFF {
        let _ = callsite.index();
        let mut cell = callsite
            .gauge
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        cell.state = state;
        // One sequence for every gauge: of callsites naming the same series, the last wins.
        cell.sequence = next_gauge_sequence();
        change(&mut cell.value);
    }
}

/// Orders gauge sets and moves across callsites naming the same series.
static GAUGE_SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// The next gauge sequence number.
fn next_gauge_sequence() -> u64 {
    GAUGE_SEQUENCE.fetch_add(1, Ordering::Relaxed)
}
