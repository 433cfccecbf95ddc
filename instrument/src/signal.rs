//! Two small synchronisation pieces, checked by loom models that `tests/loom.rs` compiles and
//! `.ci/test` runs.
//!
//! [`WakeFlag`]: producers ask the drain to run early without a syscall per request. A producer
//! publishes its data (a queue push), then calls [`WakeFlag::request`]; only the request that
//! flips the flag from clear to set unparks the drain. The drain clears the flag at the start of
//! a cycle, then reads the queues. The `SeqCst` fences on both sides (a Dekker pair) guarantee
//! that either the producer sees the flag clear (and unparks the drain) or the drain's reads see
//! the producer's data: no wake-up is lost even though the fast path is a plain load.
//!
//! [`SingleWriterCounter`]: a counter written only by its owning thread (load + store, no
//! locked read-modify-write, so no cache-line ping-pong between recording threads) and read by
//! the drain, which accounts for increases with [`SingleWriterCounter::take_delta`]. Because
//! there is one writer, no increment is lost and the reader sees a non-decreasing sequence.
//! Whatever the interleaving, the deltas add up to the last value read, so what can go wrong is
//! the drain's last read of a thread that has exited missing its final increments: that read is
//! ordered by `retire::scan`, and modelled there, with this counter.

use crate::sync::{AtomicBool, AtomicU64, Ordering, fence};

/// A "please run soon" flag between many producers and one consumer.
#[derive(Debug)]
pub(crate) struct WakeFlag {
    /// Built directly in a `static` (std atomics are const-constructible, loom's are not).
    pub(crate) pending: AtomicBool,
}

impl WakeFlag {
    /// Called after publishing data. Returns true when the caller must unpark the consumer.
    #[inline]
    pub(crate) fn request(&self) -> bool {
        fence(Ordering::SeqCst);
        !self.pending.load(Ordering::Relaxed) && !self.pending.swap(true, Ordering::AcqRel)
    }

    /// Called by the consumer before it reads the data.
    #[inline]
    pub(crate) fn clear(&self) {
        self.pending.store(false, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }
}

/// A counter with one writer (its owning thread) and any number of readers.
#[derive(Debug, Default)]
pub(crate) struct SingleWriterCounter(AtomicU64);

impl SingleWriterCounter {
    /// Adds `n`. Only the owning thread may call this.
    #[inline]
    pub(crate) fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Release,
        );
    }

    /// The current value.
    #[inline]
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Ordering::Acquire)
    }

    /// The increase since `seen`, updating `seen`.
    #[inline]
    pub(crate) fn take_delta(&self, seen: &mut u64) -> u64 {
        let now = self.get();
        let delta = now.wrapping_sub(*seen);
        *seen = now;
        delta
    }
}

#[cfg(all(test, loom))]
mod tests {
    use super::*;
    use loom::sync::Arc;
    use loom::sync::atomic::AtomicUsize;

    /// A producer publishes twice, requesting a wake each time; the consumer parks until it sees
    /// the second value.
    /// If a wake-up could be lost, loom reports the consumer parked forever (deadlock).
    #[test]
    fn wake_flag_loses_no_wakeup() {
        loom::model(|| {
            let flag = Arc::new(WakeFlag {
                pending: AtomicBool::new(false),
            });
            let data = Arc::new(AtomicUsize::new(0));
            let consumer = {
                let (flag, data) = (Arc::clone(&flag), Arc::clone(&data));
                loom::thread::spawn(move || {
                    loop {
                        flag.clear();
                        if data.load(Ordering::Relaxed) == 2 {
                            break;
                        }
                        loom::thread::park();
                    }
                })
            };
            let consumer_thread = consumer.thread().clone();
            // Two publications: the second may find the flag still set by the first, which is
            // where a lost wake-up would hide.
            for value in 1..=2 {
                data.store(value, Ordering::Relaxed);
                if flag.request() {
                    consumer_thread.unpark();
                }
            }
            consumer.join().unwrap();
        });
    }
}
