//! Sources: code that is not a call (a system-metrics sampler, health checks, an alert
//! evaluator) publishing on its own schedule.
//!
//! Gauges and counters are published through the ordinary metric paths; notices (status
//! changes, alerts, log lines) through [`publish`], which never blocks: the notice queue holds
//! [`NOTICE_CAPACITY`] notices between drain cycles, and a notice that finds it full is dropped
//! and counted in `SelfMetrics::notices_dropped`. An evaluator that needs every snapshot is a
//! [`Sink`](crate::Sink) interested in snapshots, and publishes what it concludes as notices.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::sink::Notice;

/// Notices held between drain cycles.
pub const NOTICE_CAPACITY: usize = 4096;

static NOTICES: Mutex<VecDeque<Notice>> = Mutex::new(VecDeque::new());
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// Whether the installed pipeline has a sink interested in notices.
static WANTED: AtomicBool = AtomicBool::new(false);

/// Publishes a notice to every sink interested in notices. Never blocks; returns whether the
/// notice was queued (`false`: no pipeline with such a sink is installed, or the queue was full
/// and the notice was dropped and counted).
///
/// A health checker on its own thread publishes a status change; a sink interested only in
/// notices receives it:
///
/// ```
/// use std::sync::{Arc, Mutex};
/// use instrument::{Batch, Interests, Level, Notice, Sink, SinkError, publish};
///
/// #[derive(Clone, Default)]
/// struct Notices(Arc<Mutex<Vec<Notice>>>);
///
/// impl Sink for Notices {
///     fn name(&self) -> &str { "notices" }
///     fn interests(&self) -> Interests { Interests::NONE.with_notices(true) }
///     fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
///         self.0.lock().unwrap().extend(batch.notices.iter().cloned());
///         Ok(())
///     }
/// }
///
/// let notices = Notices::default();
/// let pipeline = instrument::builder().sink(notices.clone()).install()?;
/// // A health checker running on its own thread and schedule:
/// std::thread::spawn(|| publish(Notice::new("health", Level::Warn, "disk 91% full")))
///     .join()
///     .unwrap();
/// pipeline.flush()?;
/// assert_eq!(notices.0.lock().unwrap()[0].message, "disk 91% full");
/// # Ok::<(), instrument::Error>(())
/// ```
pub fn publish(notice: Notice) -> bool {
    if !WANTED.load(Ordering::Relaxed) {
        return false;
    }
    let mut queue = NOTICES.lock().unwrap_or_else(PoisonError::into_inner);
    if queue.len() >= NOTICE_CAPACITY {
        drop(queue);
        DROPPED.fetch_add(1, Ordering::Relaxed);
        return false;
    }
    queue.push_back(notice);
    let half = queue.len() * 2 >= NOTICE_CAPACITY;
    drop(queue);
    if half {
        crate::wake::wake();
    }
    true
}

/// Whether a notice published now could be queued: a pipeline with a sink interested in
/// notices is installed. Lets a publisher skip building notices nobody receives.
#[cfg(feature = "tracing")]
pub(crate) fn wanted() -> bool {
    WANTED.load(Ordering::Relaxed)
}

/// Sets whether notices are wanted (at install and shutdown), clearing leftovers.
pub(crate) fn set_wanted(wanted: bool) {
    NOTICES
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clear();
    WANTED.store(wanted, Ordering::Relaxed);
}

/// Moves queued notices into `into` (drain side).
pub(crate) fn take_notices(into: &mut Vec<Notice>, wanted: bool) {
    if !wanted {
        return;
    }
    let mut queue = NOTICES.lock().unwrap_or_else(PoisonError::into_inner);
    into.extend(queue.drain(..));
}

/// Notices dropped since the process started.
pub(crate) fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}
