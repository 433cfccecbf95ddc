//! Per-thread buffers: where the hot path writes, and where the drain reads.
//!
//! Each recording thread owns one [`ThreadBuffer`]: a bounded lock-free single-producer ring of
//! 32-byte records (`rtrb`), a second ring of half the capacity for the [`Detail`]s that only
//! some calls carry (captured arguments, error kinds past a callsite's fourth), plus a table of
//! per-callsite counters. A detailed call pushes its detail first and its record second, so the
//! drain, reading a record marked `detailed`, finds its detail at the head of the detail ring.
//! The producer ends live in the thread-local; the consumer ends are registered in a global list
//! the first time the thread records, so the drain reaches every thread's records, including
//! threads that are blocked, idle, or have exited since (an exited thread's rings stay readable
//! until they are empty, and its counters are read one last time before its buffer is retired:
//! `retire::scan`).
//!
//! A single-producer ring rather than a multi-producer queue: a push is a slot write and a
//! release store of the tail, with no locked instruction. A locked compare-and-swap would drain
//! the store buffer on every call, making each push wait for cache lines the drain just read.
//!
//! The counter table holds, per callsite, how many records of each outcome were lost because the
//! queue was full, and the running total of `counter!` increments. Only the owning thread writes
//! its table (plain load + store, no read-modify-write), the drain only reads it and sums across
//! threads: no cache line is shared between recording threads, which is what lets recording
//! scale with cores. Chunks of the table are allocated on first use and published through
//! `OnceLock`; the counter protocol itself is `signal::SingleWriterCounter`, and the last read
//! after the thread exits is `retire::scan`, both model-checked with loom.

use std::cell::{Cell, OnceCell, RefCell};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use rtrb::{Consumer, Producer, RingBuffer};

use crate::callsite::Callsite;
use crate::fields::Fields;
use crate::record::{Detail, Outcome, Record};
use crate::retire::Retirable;
use crate::signal::SingleWriterCounter;

pub(crate) use crate::callsite::{COUNTER_SLOT, KIND_SLOT_BASE, SLOTS};

/// The loss slot of error kind position `kind` (`Callsite::kind_slot`); `None` for 0, no kind.
#[inline]
fn kind_loss_slot(kind: u8) -> Option<usize> {
    usize::from(kind).checked_sub(1).map(|i| KIND_SLOT_BASE + i)
}
const CHUNK_CALLSITES: usize = 128;
/// Callsites with a per-thread table: 65,536. Counts of callsites beyond it go to shared
/// atomics on the callsite itself (`Callsite::orphaned`), exact but contended.
const CHUNKS: usize = 512;
/// Callsites a thread's counter table covers (65,536).
pub(crate) const MAX_CALLSITES: usize = CHUNK_CALLSITES * CHUNKS;

type Chunk = Box<[SingleWriterCounter]>;

/// Queue capacity for buffers created from now on (set by `install`).
pub(crate) static QUEUE_CAPACITY: AtomicU32 = AtomicU32::new(8192);

/// The consumer ends of a thread's two rings.
#[derive(Debug)]
pub(crate) struct Rings {
    pub(crate) records: Consumer<Record>,
    pub(crate) details: Consumer<Detail>,
}

/// The producer ends of a thread's two rings.
struct Producers {
    records: Producer<Record>,
    details: Producer<Detail>,
}

/// One recording thread's queue and counters.
#[derive(Debug)]
pub(crate) struct ThreadBuffer {
    /// The consumer ends; locked only by the drain, never by the recording thread.
    queue: Mutex<Rings>,
    pub(crate) capacity: usize,
    pub(crate) thread_id: u64,
    pub(crate) thread_name: Option<Arc<str>>,
    counters: Box<[OnceLock<Chunk>]>,
}

impl ThreadBuffer {
    fn new(consumer: Rings, capacity: usize, thread_id: u64) -> Self {
        ThreadBuffer {
            queue: Mutex::new(consumer),
            capacity,
            thread_id,
            thread_name: std::thread::current().name().map(Arc::from),
            counters: (0..CHUNKS).map(|_| OnceLock::new()).collect(),
        }
    }

    /// The consumer ends (drain side).
    pub(crate) fn consumer(&self) -> MutexGuard<'_, Rings> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn slot(&self, callsite: u32, slot: usize) -> Option<&SingleWriterCounter> {
        let callsite = callsite as usize;
        let chunk = self
            .counters
            .get(callsite / CHUNK_CALLSITES)?
            .get_or_init(|| {
                (0..CHUNK_CALLSITES * SLOTS)
                    .map(|_| SingleWriterCounter::default())
                    .collect()
            });
        chunk.get((callsite % CHUNK_CALLSITES) * SLOTS + slot)
    }

    /// Adds to one of this thread's counters. Called only by the owning thread. A callsite
    /// beyond the table is counted on the callsite itself.
    #[inline]
    pub(crate) fn add(&self, callsite: &'static Callsite, index: u32, slot: usize, n: u64) {
        match self.slot(index, slot) {
            Some(cell) => cell.add(n),
            None => {
                callsite.orphaned[slot].fetch_add(n, Ordering::Relaxed);
            }
        }
    }

    /// Counts a record lost with `outcome` (and error kind position `kind`, 0 for none).
    /// Called only by the owning thread.
    #[inline]
    fn lose(&self, callsite: &'static Callsite, index: u32, outcome: Outcome, kind: u8) {
        self.add(callsite, index, outcome.index(), 1);
        if let Some(slot) = kind_loss_slot(kind) {
            self.add(callsite, index, slot, 1);
        }
    }

    /// The increase of one counter since `seen` (drain side); 0 for chunks never touched.
    pub(crate) fn take_delta(&self, callsite: u32, slot: usize, seen: &mut u64) -> u64 {
        let callsite = callsite as usize;
        self.counters
            .get(callsite / CHUNK_CALLSITES)
            .and_then(OnceLock::get)
            .and_then(|chunk| chunk.get((callsite % CHUNK_CALLSITES) * SLOTS + slot))
            .map_or(0, |cell| cell.take_delta(seen))
    }

    /// Bytes this buffer holds (queue slots plus allocated counter chunks).
    pub(crate) fn memory_bytes(&self) -> usize {
        let chunks = self.counters.iter().filter(|c| c.get().is_some()).count();
        self.capacity * std::mem::size_of::<Record>()
            + detail_capacity(self.capacity) * std::mem::size_of::<Detail>()
            + chunks * CHUNK_CALLSITES * SLOTS * 8
            + CHUNKS * std::mem::size_of::<OnceLock<Chunk>>()
    }
}

/// Slots of a thread's detail ring: half its record ring. A detail is two records' size (it
/// holds up to 38 bytes of captured argument values in place), and only some calls have one.
fn detail_capacity(capacity: usize) -> usize {
    (capacity / 2).max(1)
}

/// Records counted straight into the loss table after a push finds the ring full.
const OVERFLOW_SKIP: u32 = 64;

static BUFFERS: Mutex<Vec<Arc<ThreadBuffer>>> = Mutex::new(Vec::new());
/// Thread ids: 64 bits, so a server starting a thread per request never reuses one.
static NEXT_THREAD_ID: AtomicU64 = AtomicU64::new(1);

fn registry() -> MutexGuard<'static, Vec<Arc<ThreadBuffer>>> {
    BUFFERS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A snapshot of the registered buffers.
pub(crate) fn buffers(into: &mut Vec<Arc<ThreadBuffer>>) {
    into.clear();
    into.extend(registry().iter().cloned());
}

/// Forgets a buffer whose thread has exited and whose ring the drain has emptied.
pub(crate) fn retire(buffer: &Arc<ThreadBuffer>) {
    registry().retain(|b| !Arc::ptr_eq(b, buffer));
}

impl Retirable for Arc<ThreadBuffer> {
    /// The record ring's producer end is dropped with the thread's [`Writer`], after its last
    /// record and counter write (the detail ring's goes with it).
    fn has_exited(&self) -> bool {
        self.consumer().records.is_abandoned()
    }

    fn is_drained(&self) -> bool {
        self.consumer().records.is_empty()
    }
}

/// The recording side of a thread's buffer. Dropped with the thread, which abandons the ring:
/// the drain then empties it and retires the buffer.
pub(crate) struct Writer {
    pub(crate) buffer: Arc<ThreadBuffer>,
    producer: RefCell<Producers>,
}

/// Thread-local state: the thread's writer.
pub(crate) struct Local {
    writer: OnceCell<Writer>,
    records: Cell<u32>,
}

impl Local {
    #[inline(always)]
    pub(crate) fn writer(&self) -> &Writer {
        self.writer.get_or_init(register_thread)
    }
}

#[cold]
fn register_thread() -> Writer {
    let id = NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed);
    let capacity = (QUEUE_CAPACITY.load(Ordering::Relaxed) as usize).max(1);
    let (records, record_consumer) = RingBuffer::new(capacity);
    let (details, detail_consumer) = RingBuffer::new(detail_capacity(capacity));
    let rings = Rings {
        records: record_consumer,
        details: detail_consumer,
    };
    let buffer = Arc::new(ThreadBuffer::new(rings, capacity, id));
    registry().push(Arc::clone(&buffer));
    Writer {
        buffer,
        producer: RefCell::new(Producers { records, details }),
    }
}

thread_local! {
    pub(crate) static LOCAL: Local = const {
        Local {
            writer: OnceCell::new(),
            records: Cell::new(0),
        }
    };
    /// Records still to count without trying the ring, after a push found it full. Apart from
    /// `LOCAL` because it has no destructor: reading it at the start of every installed call is
    /// one thread-local load, with no registration check.
    static SKIP: Cell<u32> = const { Cell::new(0) };
}

/// Writes a record (and its detail, if it has an error kind to carry or captured `fields`) into
/// the calling thread's rings; when a ring is full, counts the loss in the thread's counter table
/// instead so call counts stay exact. Queued fields are taken; others are left in place.
///
/// The fields are borrowed, not moved in: they are read once, straight into the detail ring's
/// slot. Passed by value through the calls between, they were copied on the stack at each step,
/// and each copy read bytes stored moments before in pieces of other sizes, which cannot be
/// forwarded from the store buffer and stalled until the stores retired.
#[inline]
pub(crate) fn push(
    callsite: &'static Callsite,
    mut record: Record,
    error_kind: Option<&'static str>,
    fields: &mut Fields,
) {
    let index = callsite.index();
    record.callsite = index;
    let (outcome, kind) = (record.outcome, record.kind);
    let pushed = LOCAL.try_with(|local| {
        if record.correlation == 0 {
            record.correlation = crate::correlation::current_raw();
        }
        let writer = local.writer();
        let Ok(mut producer) = writer.producer.try_borrow_mut() else {
            // Re-entered while pushing (a recording panic hook or allocator): count only.
            writer.buffer.lose(callsite, index, outcome, kind);
            return;
        };
        let skip = SKIP.get();
        if skip > 0 {
            SKIP.set(skip - 1);
            writer.buffer.lose(callsite, index, outcome, kind);
        } else if !try_push(&mut producer, record, error_kind, fields) {
            // Full: each further push would reload the drain's head index (a cache line the
            // drain keeps writing), so the next records are counted without trying the ring.
            SKIP.set(OVERFLOW_SKIP);
            writer.buffer.lose(callsite, index, outcome, kind);
        }
        // Every 512 records, ask for an early drain if the ring is over half full. Waking is
        // only a latency optimisation (the drain also runs every interval and on flush), so it
        // is rate-limited: a fence and possibly a syscall per call would dominate an overloaded
        // thread's cost.
        let records = local.records.get().wrapping_add(1);
        local.records.set(records);
        if records % 512 == 0
            && (producer.records.slots() * 2 < writer.buffer.capacity
                || producer.details.slots() * 2 < detail_capacity(writer.buffer.capacity))
        {
            crate::wake::wake();
        }
    });
    if pushed.is_err() {
        orphan(callsite, outcome, kind);
    }
}

/// Counts a record lost because its thread is tearing down its thread-locals.
#[cold]
fn orphan(callsite: &'static Callsite, outcome: Outcome, kind: u8) {
    callsite.orphaned[outcome.index()].fetch_add(1, Ordering::Relaxed);
    if let Some(slot) = kind_loss_slot(kind) {
        callsite.orphaned[slot].fetch_add(1, Ordering::Relaxed);
    }
}

/// Whether the calling thread is shedding: a push found its ring full within its last
/// `OVERFLOW_SKIP` records, so the records it makes now are counted without being queued. A call
/// starting now will have its duration dropped in any case, and need not read the clock.
#[inline(always)]
pub(crate) fn shedding() -> bool {
    SKIP.get() > 0
}

/// Counts a call that was not timed because its thread was shedding when it started: a dropped
/// record, exactly as if its push had found the ring full.
#[inline]
pub(crate) fn count_untimed(callsite: &'static Callsite, outcome: Outcome, kind: u8) {
    let index = callsite.index();
    let counted = LOCAL.try_with(|local| {
        SKIP.set(SKIP.get().saturating_sub(1));
        local.writer().buffer.lose(callsite, index, outcome, kind);
    });
    if counted.is_err() {
        orphan(callsite, outcome, kind);
    }
}

/// Pushes `record`, after its detail when it has one; `false` (nothing pushed) when either ring
/// is full. The record ring is checked first: a detail pushed without its record would be read
/// as the detail of a later record.
#[inline(always)]
fn try_push(
    producer: &mut Producers,
    mut record: Record,
    error_kind: Option<&'static str>,
    fields: &mut Fields,
) -> bool {
    if error_kind.is_some() || !fields.is_empty() {
        if producer.records.is_full() || producer.details.is_full() {
            return false;
        }
        let detail = Detail {
            error_kind,
            fields: std::mem::take(fields),
        };
        if producer.details.push(detail).is_err() {
            return false;
        }
        record.detailed = true;
    }
    producer.records.push(record).is_ok()
}

/// Additions at least this large go to the callsite's saturating total instead of the
/// thread's table: a per-thread counter must not wrap between two reads by the drain, and
/// 2^32 additions below this bound cannot happen between two reads (10 ms apart).
const LARGE_ADD: u64 = 1 << 32;

/// Adds to a `counter!` total on the calling thread.
#[inline]
pub(crate) fn count(callsite: &'static Callsite, n: u64) {
    if n >= LARGE_ADD {
        callsite.add_large(n);
        return;
    }
    let index = callsite.index();
    if LOCAL
        .try_with(|local| local.writer().buffer.add(callsite, index, COUNTER_SLOT, n))
        .is_err()
    {
        callsite.orphaned[COUNTER_SLOT].fetch_add(n, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{CallsiteKind, Metadata};

    /// Issue 4 of the core's second round: a callsite past the table's 65,536 lost its counts
    /// silently. They now go to the callsite's shared counters, which the drain reads.
    #[test]
    fn counts_of_callsites_beyond_the_table_go_to_the_callsite() {
        static FAR: Callsite = Callsite::new(Metadata::new(
            "far_total",
            "m",
            "f",
            1,
            CallsiteKind::Counter,
        ));
        let (_, records) = RingBuffer::new(1);
        let (_, details) = RingBuffer::new(1);
        let buffer = ThreadBuffer::new(Rings { records, details }, 1, 1);
        let beyond = u32::try_from(MAX_CALLSITES).unwrap() + 5;
        buffer.add(&FAR, beyond, COUNTER_SLOT, 7);
        buffer.lose(&FAR, beyond, Outcome::Error, 0);
        assert_eq!(FAR.orphaned[COUNTER_SLOT].load(Ordering::Relaxed), 7);
        assert_eq!(
            FAR.orphaned[Outcome::Error.index()].load(Ordering::Relaxed),
            1
        );
        let mut seen = 0;
        assert_eq!(buffer.take_delta(beyond, COUNTER_SLOT, &mut seen), 0);
    }
}
