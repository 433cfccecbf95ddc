//! Waking the drain early: producers that published data the drain should see soon (a queue
//! past half full, an audit producer waiting for room) call [`wake`]. The flag protocol is
//! [`WakeFlag`](crate::signal::WakeFlag); this module holds the one flag and the drain thread it
//! unparks. Installing a pipeline clears the flag, so a request left over from an earlier
//! pipeline cannot suppress the new drain's wake-ups.

use std::sync::{Mutex, PoisonError};
use std::thread::Thread;

use crate::signal::WakeFlag;

static WAKE: WakeFlag = WakeFlag {
    pending: std::sync::atomic::AtomicBool::new(false),
};
static DRAIN_THREAD: Mutex<Option<Thread>> = Mutex::new(None);

/// Asks the drain to run a cycle now, after the caller published its data. Cheap when a wake
/// is already pending (a fence and one load).
pub(crate) fn wake() {
    if WAKE.request()
        && let Some(thread) = DRAIN_THREAD
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
    {
        thread.unpark();
    }
}

/// Called by the drain at the start of a cycle, before it reads any queue.
pub(crate) fn clear() {
    WAKE.clear();
}

/// Sets (or, with `None`, forgets) the thread that [`wake`] unparks, clearing any request
/// pending from before.
pub(crate) fn set_drain(thread: Option<Thread>) {
    *DRAIN_THREAD.lock().unwrap_or_else(PoisonError::into_inner) = thread;
    WAKE.clear();
}

/// Leaves a wake request pending, as a producer of an earlier pipeline may have (tests only).
#[cfg(test)]
pub(crate) fn leave_pending() {
    let _ = WAKE.request();
}
