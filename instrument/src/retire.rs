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
//! with the reads, and the next pass picks up what it wrote meanwhile.

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
