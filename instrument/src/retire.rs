//! Retiring the buffer of a thread that has exited: the drain's last read of its counters.
//!
//! A recording thread writes its counter table with plain stores (`SingleWriterCounter`) and
//! queues records in an `rtrb` ring. When it exits, its producer ends are dropped; the drain
//! then sees the ring abandoned and, once it has read everything the thread left, forgets the
//! buffer. Counts must stay exact: every increment made before the exit is read exactly once,
//! and a retired buffer is never read again. [`scan`] does one pass of the drain over every
//! registered buffer, in this order:
//!
//! 1. Note which threads have exited, before reading anything else. Everything read after this
//!    point includes every write those threads will ever make, so a buffer seen exited here may
//!    be retired after this pass's reads.
//! 2. An acquire fence. `rtrb` reports abandonment through `Arc::strong_count`, a relaxed load
//!    since Rust 1.74 (rtrb issue #114), of a count the producer's drop decrements with release
//!    ordering. The fence turns that load into synchronisation: the thread's counter writes,
//!    pushes and callsite registrations, all made before the drop, happen before what follows.
//! 3. Refresh the callsite registry. A thread may register a callsite, count into its slot and
//!    exit between two passes; a registry read before step 1 would not know that slot, and the
//!    buffer would be retired with the slot's counts unread.
//! 4. Per buffer: read every counter of every known callsite; then, if the thread was seen
//!    exited in step 1 and its ring is empty (checked now, so no record can be pushed after the
//!    check), retire it. Reading before retiring makes this pass's read the last one.
//!
//! A thread seen running in step 1 is only read, never retired, in that pass: its exit may race
//! with the reads, and the next pass picks up what it wrote meanwhile. Models in `mod tests`
//! (run through `tests/loom.rs`) check these steps against a writer thread that counts,
//! registers a callsite, queues a record and exits while the drain scans.

use crate::sync::{Ordering, fence};

/// A recording thread's buffer, as the drain sees it.
pub(crate) trait Retirable {
    /// Whether the owning thread has dropped its producer end, after its last write. May be a
    /// relaxed load: [`scan`] issues the fence that orders what it reads next after those writes.
    fn has_exited(&self) -> bool;

    /// Whether the drain has read every record queued in the buffer's ring.
    fn is_drained(&self) -> bool;
}

/// The drain's side of a pass over the thread buffers.
pub(crate) trait CounterScan<B> {
    /// Learns the callsites registered since the last call, so their counter slots are read.
    fn refresh_registry(&mut self);

    /// Reads every counter of `buffer` for every known callsite and accounts for the increase.
    fn read_counters(&mut self, buffer: &B);

    /// Forgets `buffer`: its thread has exited and everything it recorded is accounted for, so
    /// it must never be read again.
    fn retire(&mut self, buffer: &B);
}

/// One pass of the drain over `buffers`: reads every counter table and retires the buffers of
/// exited threads that hold nothing more to read (the steps are in the module docs).
pub(crate) fn scan<B: Retirable, S: CounterScan<B>>(scanner: &mut S, buffers: &[B]) {
    // Step 1: before any read, so that what is read below includes all an exited thread did.
    let exited: Vec<bool> = buffers.iter().map(Retirable::has_exited).collect();
    // Step 2: pairs with the release decrement in the producer's drop.
    fence(Ordering::Acquire);
    // Step 3: after the fence, so it includes callsites an exited thread registered.
    scanner.refresh_registry();
    for (buffer, exited) in buffers.iter().zip(exited) {
        // Step 4: the last read, then the emptiness check, both after the exit was observed.
        scanner.read_counters(buffer);
        if exited && buffer.is_drained() {
            scanner.retire(buffer);
        }
    }
}

#[cfg(all(test, loom))]
mod tests {
    //! The drain's side is the real [`scan`] and [`SingleWriterCounter`]; the writer's side and
    //! the registries are small stand-ins that keep the orderings of the code they replace:
    //!
    //! - `rtrb`'s abandonment is the strong count of an `Arc` shared by the two ends: the
    //!   producer's drop decrements it with `Release` (`Arc::drop`), the consumer's
    //!   `is_abandoned` loads it with `Relaxed` (`Arc::strong_count`);
    //! - a push is a `Release` store of the ring's tail, `is_empty` an `Acquire` load of it;
    //! - the callsite registry is a `Mutex<Vec>` (`callsite::REGISTRY`), the buffer registry a
    //!   list the drain removes retired buffers from (`buffer::retire`).
    //!
    //! Each model runs one drain cycle (empty the ring, then `scan`) concurrently with the
    //! writer, joins it, and runs one more: by then the buffer must be retired, with every count
    //! and record read once, and no read may have followed the retirement. The models are
    //! exhaustive (no preemption bound) and take well under a second.

    use super::*;
    use crate::signal::SingleWriterCounter;
    use loom::sync::atomic::{AtomicU32, AtomicUsize};
    use loom::sync::{Arc, Mutex};
    use std::cell::Cell;

    /// Callsites the models know of: 0 is registered before the writer starts, 1 is
    /// registered by the writer (or by a third thread) while the drain runs.
    const CALLSITES: usize = 2;

    /// What the writer and the drain share for one recording thread.
    struct Shared {
        counters: [SingleWriterCounter; CALLSITES],
        /// Records pushed: `rtrb`'s tail.
        tail: AtomicUsize,
        /// `Arc::strong_count` of the ring: 2 while the producer end lives.
        ends: AtomicUsize,
    }

    /// The recording thread's end of its buffer.
    struct Producer {
        shared: Arc<Shared>,
        /// `rtrb`'s cached tail: a push stores the tail without loading it. Keeping that matters
        /// here: loom 0.7 does not reorder a store before another thread's earlier load when
        /// the storing thread loaded the same atomic just before, so a load + store push would
        /// hide from the models every schedule where the drain sees the record early.
        tail: usize,
    }

    impl Producer {
        fn push(&mut self) {
            self.tail += 1;
            self.shared.tail.store(self.tail, Ordering::Release);
        }
    }

    impl Drop for Producer {
        /// The thread exits: `Arc::drop` of the ring.
        fn drop(&mut self) {
            self.shared.ends.fetch_sub(1, Ordering::Release);
        }
    }

    /// The drain's end of a buffer.
    struct Consumer {
        shared: Arc<Shared>,
        /// Records read: `rtrb`'s head, only the drain touches it.
        head: Cell<usize>,
    }

    impl Retirable for Consumer {
        fn has_exited(&self) -> bool {
            self.shared.ends.load(Ordering::Relaxed) < 2
        }

        fn is_drained(&self) -> bool {
            self.shared.tail.load(Ordering::Acquire) == self.head.get()
        }
    }

    fn buffer() -> (Producer, Consumer) {
        let shared = Arc::new(Shared {
            counters: std::array::from_fn(|_| SingleWriterCounter::default()),
            tail: AtomicUsize::new(0),
            ends: AtomicUsize::new(2),
        });
        let consumer = Consumer {
            shared: Arc::clone(&shared),
            head: Cell::new(0),
        };
        (Producer { shared, tail: 0 }, consumer)
    }

    /// The drain: what it has read, and the buffers it still reads.
    struct Drain {
        registry: Arc<Mutex<Vec<usize>>>,
        /// Callsites known: a prefix of the registry.
        known: usize,
        buffers: Vec<Consumer>,
        seen: [u64; CALLSITES],
        counted: [u64; CALLSITES],
        records: usize,
        retired: bool,
    }

    impl CounterScan<Consumer> for Drain {
        fn refresh_registry(&mut self) {
            self.known = self.registry.lock().unwrap().len();
        }

        fn read_counters(&mut self, buffer: &Consumer) {
            assert!(!self.retired, "a retired buffer was read");
            for callsite in 0..self.known {
                self.counted[callsite] +=
                    buffer.shared.counters[callsite].take_delta(&mut self.seen[callsite]);
            }
        }

        fn retire(&mut self, _buffer: &Consumer) {
            self.retired = true;
        }
    }

    impl Drain {
        fn new(registry: Arc<Mutex<Vec<usize>>>, consumer: Consumer) -> Self {
            Drain {
                registry,
                known: 0,
                buffers: vec![consumer],
                seen: [0; CALLSITES],
                counted: [0; CALLSITES],
                records: 0,
                retired: false,
            }
        }

        /// One drain cycle, as `collector::Drain::cycle` runs it: empty the rings (reading only
        /// what is there), then read the tables.
        fn cycle(&mut self) {
            for buffer in &self.buffers {
                let tail = buffer.shared.tail.load(Ordering::Acquire);
                self.records += tail - buffer.head.get();
                buffer.head.set(tail);
            }
            let buffers = std::mem::take(&mut self.buffers);
            scan(self, &buffers);
            // `buffer::retire`: later passes no longer see a retired buffer.
            if !self.retired {
                self.buffers = buffers;
            }
        }

        /// After the writer has exited and one more cycle has run: everything it did was read
        /// once, and its buffer is gone.
        fn check(&self, counted: [u64; CALLSITES], records: usize) {
            assert!(self.retired, "the buffer of an exited thread was kept");
            assert_eq!(self.counted, counted, "counts read");
            assert_eq!(self.records, records, "records read");
        }
    }

    /// A thread counts on a known callsite and queues a record, registers a new callsite and
    /// counts on it, and exits, while the drain runs a cycle. The cycle may see the thread
    /// running or exited at any point of its pass; whenever it retires the buffer it must have
    /// read the new callsite's slot and the record.
    ///
    /// Fails without the fence (the last read may miss the final counts), without the refresh
    /// or with it before the exit check (the new slot unknown when retiring), with the ring's
    /// emptiness checked before the exit or not at all (the record lost), with the exit
    /// checked after the reads (counts made in between lost), with the buffer retired before
    /// its last read, or never retired.
    #[test]
    fn retire_reads_every_count_once() {
        loom::model(|| {
            let registry = Arc::new(Mutex::new(vec![0]));
            let (mut producer, consumer) = buffer();
            let writer = {
                let registry = Arc::clone(&registry);
                loom::thread::spawn(move || {
                    producer.shared.counters[0].add(1);
                    producer.push();
                    // `Callsite::register`: before the callsite's index is first used. After
                    // the push, which would otherwise keep the buffer from being retired
                    // until a later pass, one that knows the callsite.
                    registry.lock().unwrap().push(1);
                    producer.shared.counters[1].add(2);
                    drop(producer);
                })
            };
            let mut drain = Drain::new(registry, consumer);
            drain.cycle();
            writer.join().unwrap();
            drain.cycle();
            drain.check([1, 2], 1);
        });
    }

    /// Another thread registers the callsite; the writer finds its id through the relaxed fast
    /// path of `Callsite::index`, without taking the registry lock, counts on it and exits. The
    /// exit still orders the registration before the drain's refresh: the writer read the id
    /// its registration stored, and the drain's fence orders everything before the writer's
    /// exit before the refresh.
    ///
    /// Fails without the fence, without the refresh or with it before the exit check, with the
    /// exit checked after the reads, and with the buffer retired before its last read.
    #[test]
    fn retire_sees_callsites_registered_elsewhere() {
        loom::model(|| {
            let registry = Arc::new(Mutex::new(vec![0]));
            // `Callsite::id`: index + 1 once registered.
            let id = Arc::new(AtomicU32::new(0));
            let (producer, consumer) = buffer();
            let registrar = {
                let (registry, id) = (Arc::clone(&registry), Arc::clone(&id));
                loom::thread::spawn(move || {
                    let mut registry = registry.lock().unwrap();
                    registry.push(1);
                    id.store(2, Ordering::Release);
                })
            };
            let writer = {
                let id = Arc::clone(&id);
                loom::thread::spawn(move || {
                    // Only the fast path: a writer that registers itself is the model above.
                    let counted = id.load(Ordering::Relaxed) == 2;
                    if counted {
                        producer.shared.counters[1].add(1);
                    }
                    drop(producer);
                    counted
                })
            };
            let mut drain = Drain::new(registry, consumer);
            drain.cycle();
            registrar.join().unwrap();
            let counted = writer.join().unwrap();
            drain.cycle();
            drain.check([0, u64::from(counted)], 0);
        });
    }
}
