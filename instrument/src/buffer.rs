//! Per-thread buffers: where the hot path writes, and where the drain reads.
//!
//! Each recording thread owns one [`ThreadBuffer`]: a bounded lock-free queue of records
//! (`crossbeam_queue::ArrayQueue`) plus a table of per-callsite counters. Buffers are registered
//! in a global list the first time their thread records, so the drain reaches every thread's
//! records, including threads that are blocked, idle, or have exited since.
//!
//! The counter table holds, per callsite, how many records of each outcome were lost because the
//! queue was full, and the running total of `counter!` increments. Only the owning thread writes
//! its table (plain load + store, no read-modify-write), the drain only reads it and sums across
//! threads: no cache line is shared between recording threads, which is what lets recording
//! scale with cores. Chunks of the table are allocated on first use and published through
//! `OnceLock`, so there is no custom unsafe synchronisation.

use std::cell::{Cell, OnceCell};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use crossbeam_queue::ArrayQueue;

use crate::callsite::Callsite;
use crate::record::{KINDS, Record};
use crate::signal::SingleWriterCounter;

/// Counter slots per callsite: one loss counter per outcome, then the `counter!` total.
pub(crate) const SLOTS: usize = KINDS + 1;
pub(crate) const COUNTER_SLOT: usize = KINDS;
const CHUNK_CALLSITES: usize = 128;
const CHUNKS: usize = 512; // 65,536 callsites

type Chunk = Box<[SingleWriterCounter]>;

/// Queue capacity for buffers created from now on (set by `install`).
pub(crate) static QUEUE_CAPACITY: AtomicU32 = AtomicU32::new(4096);

/// One recording thread's queue and counters.
#[derive(Debug)]
pub(crate) struct ThreadBuffer {
    pub(crate) queue: ArrayQueue<Record>,
    pub(crate) thread_id: u32,
    pub(crate) thread_name: Option<Arc<str>>,
    pub(crate) alive: AtomicBool,
    counters: Box<[OnceLock<Chunk>]>,
}

impl ThreadBuffer {
    fn new(capacity: usize, thread_id: u32) -> Self {
        ThreadBuffer {
            queue: ArrayQueue::new(capacity.max(1)),
            thread_id,
            thread_name: std::thread::current().name().map(Arc::from),
            alive: AtomicBool::new(true),
            counters: (0..CHUNKS).map(|_| OnceLock::new()).collect(),
        }
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

    /// Adds to one of this thread's counters. Called only by the owning thread.
    #[inline]
    pub(crate) fn add(&self, callsite: u32, slot: usize, n: u64) {
        if let Some(cell) = self.slot(callsite, slot) {
            cell.add(n);
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
        self.queue.capacity() * (std::mem::size_of::<Record>() + std::mem::size_of::<usize>())
            + chunks * CHUNK_CALLSITES * SLOTS * 8
            + CHUNKS * std::mem::size_of::<OnceLock<Chunk>>()
    }
}

static BUFFERS: Mutex<Vec<Arc<ThreadBuffer>>> = Mutex::new(Vec::new());
static NEXT_THREAD_ID: AtomicU32 = AtomicU32::new(1);

/// A snapshot of the registered buffers.
pub(crate) fn buffers(into: &mut Vec<Arc<ThreadBuffer>>) {
    into.clear();
    into.extend(
        BUFFERS
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .cloned(),
    );
}

/// Forgets buffers whose thread has exited and whose queue the drain has emptied.
pub(crate) fn retire(buffer: &Arc<ThreadBuffer>) {
    BUFFERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .retain(|b| !Arc::ptr_eq(b, buffer));
}

/// Thread-local state: the thread's buffer and its current correlation id.
pub(crate) struct Local {
    buffer: OnceCell<Arc<ThreadBuffer>>,
    pub(crate) correlation: Cell<u64>,
    records: Cell<u32>,
}

impl Local {
    #[inline(always)]
    pub(crate) fn buffer(&self) -> &ThreadBuffer {
        self.buffer.get_or_init(register_thread)
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if let Some(buffer) = self.buffer.get() {
            buffer.alive.store(false, Ordering::Release);
        }
    }
}

#[cold]
fn register_thread() -> Arc<ThreadBuffer> {
    let id = NEXT_THREAD_ID.fetch_add(1, Ordering::Relaxed);
    let capacity = QUEUE_CAPACITY.load(Ordering::Relaxed) as usize;
    let buffer = Arc::new(ThreadBuffer::new(capacity, id));
    BUFFERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .push(Arc::clone(&buffer));
    buffer
}

thread_local! {
    pub(crate) static LOCAL: Local = const {
        Local { buffer: OnceCell::new(), correlation: Cell::new(0), records: Cell::new(0) }
    };
}

/// Writes a record into the calling thread's queue; when the queue is full, counts the loss in
/// the thread's counter table instead so call counts stay exact.
#[inline]
pub(crate) fn push(callsite: &'static Callsite, mut record: Record) {
    let index = callsite.index();
    record.callsite = index;
    let outcome = record.outcome;
    let pushed = LOCAL.try_with(|local| {
        record.correlation = local.correlation.get();
        let buffer = local.buffer();
        if buffer.queue.push(record).is_err() {
            buffer.add(index, outcome.index(), 1);
        }
        // Every 512 records, ask for an early drain if the queue is over half full. Waking is
        // only a latency optimisation (the drain also runs every interval and on flush), so it
        // is rate-limited: a fence and possibly a syscall per call would dominate an overloaded
        // thread's cost.
        let records = local.records.get().wrapping_add(1);
        local.records.set(records);
        if records % 512 == 0 && buffer.queue.len() * 2 > buffer.queue.capacity() {
            crate::pipeline::wake();
        }
    });
    if pushed.is_err() {
        callsite.orphaned[outcome.index()].fetch_add(1, Ordering::Relaxed);
    }
}

/// Adds to a `counter!` total on the calling thread.
#[inline]
pub(crate) fn count(callsite: &'static Callsite, n: u64) {
    let index = callsite.index();
    if LOCAL
        .try_with(|local| local.buffer().add(index, COUNTER_SLOT, n))
        .is_err()
    {
        callsite.orphaned[COUNTER_SLOT].fetch_add(n, Ordering::Relaxed);
    }
}
