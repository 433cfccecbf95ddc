//! The audit queue between producers and the drain, and [`audit`], which feeds it.
//!
//! Entries travel on their own bounded queue, apart from records, events and snapshots. When it
//! is full the producer waits for room (waking the drain), so under overload audit entries slow
//! the host down rather than vanish. The queue allocates as it fills, not up front.
//!
//! Every entry for which [`audit`] returned `Ok` reaches every audit sink, or the pipeline
//! names the sink that lacks it: the queue is closed under its lock at shutdown, so an entry is
//! either in the queue (and the drain takes it before stopping) or refused with an error.

use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use crate::audit::AuditEntry;
use crate::callsite::Callsite;
use crate::correlation::CorrelationId;
use crate::fields::Fields;
use crate::record::Outcome;

/// Records an audit entry and returns its sequence number. Waits while the audit queue is full
/// (only when every audit sink is full); never drops the entry.
///
/// # Errors
/// [`Error::NotInstalled`](crate::Error::NotInstalled) when no pipeline is installed, when the
/// pipeline shut down while the entry waited for room, or when its drain stopped after repeated
/// panics: the entry was not recorded, and the caller decides what to do with the operation.
///
/// ```
/// use instrument::{AuditEntry, audit};
///
/// let _pipeline = instrument::builder().install()?;
/// let first = audit(AuditEntry::new("parse_file").input("src/lib.rs").output("ast:42").actor("etl"))?;
/// let second = audit(AuditEntry::new("store").input("ast:42").output("row:7"))?;
/// assert!(second > first);
/// # Ok::<(), instrument::Error>(())
/// ```
pub fn audit(entry: AuditEntry) -> Result<u64, crate::Error> {
    let queue = current().ok_or(crate::Error::NotInstalled)?;
    queue.push(entry)
}

/// The audit entry of an instrumented call with the `audit` option.
pub(crate) fn from_call(
    callsite: &'static Callsite,
    state: u32,
    duration_ticks: u64,
    outcome: Outcome,
    error_kind: Option<&'static str>,
    fields: &Fields,
    correlation: u64,
) {
    let meta = callsite.metadata();
    let mut entry = AuditEntry::new(meta.name());
    if correlation != 0 {
        entry.correlation = CorrelationId::from_u64(correlation);
    }
    entry.outcome = Some(outcome);
    entry.error_kind = error_kind;
    entry.duration = crate::state::ticks_to_duration(state, duration_ticks);
    entry.callsite = Some(meta);
    entry.fields = fields
        .pairs()
        .into_iter()
        .map(|(name, value)| (Cow::Borrowed(name), value.to_string()))
        .collect();
    // A call that outlived the pipeline that timed it goes to the pipeline installed now; with
    // none, it is counted (`SelfMetrics::audit_orphaned` of the next pipeline) rather than lost
    // without a trace.
    if audit(entry).is_err() {
        ORPHANED.fetch_add(1, Ordering::Relaxed);
    }
}

/// Audit entries of audited calls that ended while no pipeline was installed.
static ORPHANED: AtomicU64 = AtomicU64::new(0);

/// See [`ORPHANED`].
pub(crate) fn orphaned() -> u64 {
    ORPHANED.load(Ordering::Relaxed)
}

/// Sequence numbers, unique over the process's life.
static NEXT_SEQUENCE: AtomicU64 = AtomicU64::new(1);

/// The last sequence number handed out: every entry accepted before this call has one at most
/// this large (a flush waits for the entries up to it).
pub(crate) fn last_sequence() -> u64 {
    NEXT_SEQUENCE.load(Ordering::SeqCst) - 1
}

/// The installed pipeline's queue.
static CURRENT: RwLock<Option<Arc<AuditQueue>>> = RwLock::new(None);

fn current() -> Option<Arc<AuditQueue>> {
    CURRENT
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Makes `queue` the one [`audit`] sends to (`None`: no pipeline).
pub(crate) fn set_current(queue: Option<Arc<AuditQueue>>) {
    *CURRENT.write().unwrap_or_else(PoisonError::into_inner) = queue;
}

/// The bounded queue between audit producers and the drain. A `VecDeque` under a lock rather
/// than a preallocated channel: an idle pipeline holds no memory for it.
#[derive(Debug)]
pub(crate) struct AuditQueue {
    inner: Mutex<Inner>,
    room: Condvar,
    capacity: usize,
}

#[derive(Debug)]
struct Inner {
    entries: VecDeque<AuditEntry>,
    open: bool,
    /// Approximate bytes held (`entry_bytes`), for `memory_bytes`.
    bytes: usize,
}

/// Approximate heap and inline bytes of an entry, for `memory_bytes`.
pub(crate) fn entry_bytes(entry: &AuditEntry) -> usize {
    std::mem::size_of::<AuditEntry>()
        + entry.operation.len()
        + entry.inputs.iter().map(|s| s.len() + 24).sum::<usize>()
        + entry.outputs.iter().map(|s| s.len() + 24).sum::<usize>()
        + entry.actor.as_ref().map_or(0, String::len)
        + entry
            .fields
            .iter()
            .map(|(k, v)| k.len() + v.len() + 40)
            .sum::<usize>()
}

impl AuditQueue {
    pub(crate) fn new(capacity: usize) -> Self {
        AuditQueue {
            inner: Mutex::new(Inner {
                entries: VecDeque::new(),
                open: true,
                bytes: 0,
            }),
            room: Condvar::new(),
            capacity,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn push(&self, mut entry: AuditEntry) -> Result<u64, crate::Error> {
        let mut inner = self.lock();
        loop {
            if !inner.open {
                return Err(crate::Error::NotInstalled);
            }
            if inner.entries.len() < self.capacity {
                break;
            }
            crate::wake::wake();
            inner = self
                .room
                .wait_timeout(inner, Duration::from_millis(50))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let sequence = NEXT_SEQUENCE.fetch_add(1, Ordering::SeqCst);
        entry.sequence = sequence;
        inner.bytes += entry_bytes(&entry);
        inner.entries.push_back(entry);
        let half = inner.entries.len() * 2 >= self.capacity;
        drop(inner);
        if half {
            crate::wake::wake();
        }
        Ok(sequence)
    }

    /// Moves up to `max` entries into `into` (drain side), waking producers waiting for room.
    pub(crate) fn take(&self, max: usize, into: &mut Vec<AuditEntry>) {
        let mut inner = self.lock();
        let n = max.min(inner.entries.len());
        let mut taken = 0;
        for entry in inner.entries.drain(..n) {
            taken += entry_bytes(&entry);
            into.push(entry);
        }
        inner.bytes = inner.bytes.saturating_sub(taken);
        drop(inner);
        if n > 0 {
            self.room.notify_all();
        }
    }

    /// The sequence number of the oldest entry waiting.
    pub(crate) fn first_sequence(&self) -> Option<u64> {
        self.lock().entries.front().map(|e| e.sequence)
    }

    /// Entries waiting.
    pub(crate) fn len(&self) -> usize {
        self.lock().entries.len()
    }

    /// Approximate bytes held.
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }

    /// Refuses entries from now on; those already accepted stay for the drain to take.
    pub(crate) fn close(&self) {
        self.lock().open = false;
        self.room.notify_all();
    }
}
