//! Delivery: each sink's own queue between the drain and the sink's worker, and the tickets that
//! flushes and shutdowns wait on.
//!
//! The drain never waits for a sink. It appends to a sink's queue under a short lock and goes
//! on; the worker takes from the other end. A queue holds three things apart:
//! - data batches (events, drop markers, snapshots, notices), bounded by `sink_backlog` batches
//!   and `sink_backlog_events` events; past either bound the oldest batch is dropped and counted
//!   as [`Lost`];
//! - audit entries, bounded by `audit_capacity`; an entry that finds a sink's audit backlog full
//!   is lost for that sink (counted, reported by name), and the drain stops taking entries from
//!   producers only when every audit sink is full;
//! - markers (flush, shutdown), never dropped, ordered with the data batches: a worker reaching
//!   a marker has written every batch queued before it, and writes the audit entries accepted
//!   before it too before answering.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::audit::AuditEntry;
use crate::error::Error;
use crate::sink::{Batch, Interests, Lost, SinkShortfall, SinkStatus};

/// What a flush or shutdown marker carries to a worker.
pub(crate) struct Marker {
    pub(crate) ticket: Arc<Ticket>,
    /// The sink's index in the ticket.
    pub(crate) index: usize,
    /// The last audit sequence number accepted before the marker.
    pub(crate) audit_upto: u64,
}

pub(crate) enum Item {
    /// A data batch; `true` when it was cut for a flush or shutdown, which is never dropped
    /// (its snapshot is what the flush promises).
    Batch(Arc<Batch>, bool),
    Flush(Marker),
    Shutdown(Marker),
}

#[derive(Default)]
pub(crate) struct QueueState {
    pub(crate) items: VecDeque<Item>,
    /// Data batches in `items`, and their weight (`Batch::weight`).
    pub(crate) batches: usize,
    pub(crate) events: usize,
    pub(crate) audit: VecDeque<AuditEntry>,
    /// Lost since the last flush marker the worker answered.
    pub(crate) lost: Lost,
}

/// One sink's queue, shared by the drain (producer) and the sink's worker (consumer).
#[derive(Default)]
pub(crate) struct SinkQueue {
    state: Mutex<QueueState>,
    ready: Condvar,
}

impl SinkQueue {
    pub(crate) fn lock(&self) -> MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for the worker's next piece of work, at most until `until`.
    pub(crate) fn wait<'a>(
        &self,
        guard: MutexGuard<'a, QueueState>,
        until: Instant,
    ) -> MutexGuard<'a, QueueState> {
        let timeout = until.saturating_duration_since(Instant::now());
        self.ready
            .wait_timeout(guard, timeout)
            .unwrap_or_else(PoisonError::into_inner)
            .0
    }

    fn notify(&self) {
        self.ready.notify_one();
    }
}

/// The drain's handle on one sink.
pub(crate) struct SinkHandle {
    pub(crate) name: String,
    pub(crate) interests: Interests,
    pub(crate) queue: Arc<SinkQueue>,
    pub(crate) status: Arc<Mutex<SinkStatus>>,
    pub(crate) worker: Option<JoinHandle<()>>,
    /// Since when the sink's audit backlog has been full, as last seen by the drain.
    pub(crate) full_since: Option<Instant>,
}

/// Limits of a sink queue (from the configuration).
#[derive(Clone, Copy)]
pub(crate) struct Bounds {
    pub(crate) batches: usize,
    pub(crate) events: usize,
    pub(crate) audit: usize,
}

impl SinkHandle {
    /// Appends a data batch, dropping the oldest droppable data batches past the bounds.
    pub(crate) fn push_batch(&self, batch: Arc<Batch>, keep: bool, bounds: Bounds) {
        let mut state = self.queue.lock();
        state.batches += 1;
        state.events += batch.weight();
        state.items.push_back(Item::Batch(batch, keep));
        let mut dropped = Lost::default();
        while state.batches > bounds.batches || state.events > bounds.events {
            let Some(i) = state
                .items
                .iter()
                .position(|i| matches!(i, Item::Batch(_, false)))
            else {
                break;
            };
            let Some(Item::Batch(old, _)) = state.items.remove(i) else {
                unreachable!("position found a batch")
            };
            state.batches -= 1;
            state.events -= old.weight();
            dropped.add(lost_batch(&old));
        }
        state.lost.add(dropped);
        drop(state);
        if !dropped.is_none() {
            let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            status.dropped_batches += dropped.batches;
            status.lost.add(dropped);
        }
        self.queue.notify();
    }

    /// Room for audit entries.
    pub(crate) fn audit_room(&self, bounds: Bounds) -> usize {
        bounds.audit.saturating_sub(self.queue.lock().audit.len())
    }

    /// Appends audit entries; those past the bound are lost for this sink and counted.
    pub(crate) fn push_audit(&self, entries: &[AuditEntry], bounds: Bounds) {
        let mut state = self.queue.lock();
        let room = bounds.audit.saturating_sub(state.audit.len());
        let take = room.min(entries.len());
        state.audit.extend(entries[..take].iter().cloned());
        let lost = (entries.len() - take) as u64;
        state.lost.audit_entries += lost;
        drop(state);
        if lost > 0 {
            self.status
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .lost
                .audit_entries += lost;
        }
        self.queue.notify();
    }

    /// Appends a marker; markers are never dropped.
    pub(crate) fn push_marker(&self, item: Item) {
        self.queue.lock().items.push_back(item);
        self.queue.notify();
    }
}

/// A sink's status and queue, readable from outside the drain (the guard's `self_metrics`).
#[derive(Clone)]
pub(crate) struct SinkView {
    status: Arc<Mutex<SinkStatus>>,
    queue: Arc<SinkQueue>,
}

impl SinkView {
    /// The sink's status as of now, backlogs included.
    pub(crate) fn status(&self) -> SinkStatus {
        let mut status = self
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let state = self.queue.lock();
        status.backlog = state.batches as u64;
        status.backlog_events = state.events as u64;
        status.audit_backlog = state.audit.len() as u64;
        status
    }
}

impl SinkHandle {
    pub(crate) fn view(&self) -> SinkView {
        SinkView {
            status: Arc::clone(&self.status),
            queue: Arc::clone(&self.queue),
        }
    }
}

/// What a batch that did not reach its sink takes with it.
pub(crate) fn lost_batch(batch: &Batch) -> Lost {
    Lost {
        batches: 1,
        events: (batch.events.len() + batch.drops.len() + batch.notices.len()) as u64,
        snapshots: u64::from(batch.snapshot.is_some()),
        audit_entries: 0,
    }
}

/// What a flush or shutdown caller waits on: one answer per sink, plus the drain's own report.
pub(crate) struct Ticket {
    operation: &'static str,
    state: Mutex<TicketState>,
    done: Condvar,
}

struct TicketState {
    /// Sink names, set by the drain when it queues the markers.
    names: Vec<String>,
    answers: Vec<Option<Result<(), SinkShortfall>>>,
    /// Whether the drain has queued the markers (or failed to).
    queued: bool,
    /// Whether the caller stopped waiting; later answers reach nobody.
    closed: bool,
    /// Before the markers are queued: the audit sinks whose full backlogs hold the flush back.
    held_by: Vec<String>,
    drain: Option<Error>,
}

impl Ticket {
    pub(crate) fn new(operation: &'static str) -> Arc<Ticket> {
        Arc::new(Ticket {
            operation,
            state: Mutex::new(TicketState {
                names: Vec::new(),
                answers: Vec::new(),
                queued: false,
                closed: false,
                held_by: Vec::new(),
                drain: None,
            }),
            done: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, TicketState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The drain has queued a marker for each of `names` (and reports `drain`, if any).
    pub(crate) fn queued(&self, names: Vec<String>, drain: Option<Error>) {
        let mut state = self.lock();
        state.answers = vec![None; names.len()];
        state.names = names;
        state.queued = true;
        state.drain = drain;
        drop(state);
        self.done.notify_all();
    }

    /// Names the audit sinks whose full backlogs keep the markers from being queued.
    pub(crate) fn held_by(&self, names: Vec<String>) {
        self.lock().held_by = names;
    }

    /// A worker's answer for sink `index`. Returns whether the caller will read it (it has not
    /// given up waiting), so that what the answer reports lost is reported again otherwise.
    pub(crate) fn answer(&self, index: usize, answer: Result<(), SinkShortfall>) -> bool {
        let mut state = self.lock();
        let read = !state.closed;
        if let Some(slot) = state.answers.get_mut(index) {
            *slot = Some(answer);
        }
        drop(state);
        self.done.notify_all();
        read
    }

    /// Waits until every sink answered or `timeout` passed, then reports. `drain_alive` tells
    /// whether the drain can still queue the markers.
    pub(crate) fn wait(
        &self,
        timeout: Duration,
        drain_alive: &dyn Fn() -> bool,
    ) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            let complete = state.queued && state.answers.iter().all(Option::is_some);
            if complete || Instant::now() >= deadline {
                state.closed = true;
                break;
            }
            if !state.queued && !drain_alive() {
                state.closed = true;
                return Err(Error::DrainFailed {
                    message: "the drain thread is gone".into(),
                });
            }
            let left = deadline.saturating_duration_since(Instant::now());
            state = self
                .done
                .wait_timeout(state, left.min(Duration::from_millis(100)))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        if let Some(error) = state.drain.take() {
            return Err(error);
        }
        if !state.queued {
            // Audit entries accepted before the flush were still waiting for room in these
            // sinks' backlogs (or, with none named, the drain did not get to the flush).
            let names = if state.held_by.is_empty() {
                vec!["(drain)".to_owned()]
            } else {
                state.held_by.clone()
            };
            return Err(Error::Incomplete {
                operation: self.operation,
                sinks: names
                    .into_iter()
                    .map(|sink| SinkShortfall {
                        sink,
                        timed_out: true,
                        error: None,
                        lost: Lost::default(),
                    })
                    .collect(),
            });
        }
        let sinks: Vec<SinkShortfall> = state
            .answers
            .iter()
            .zip(&state.names)
            .filter_map(|(answer, name)| match answer {
                Some(Ok(())) => None,
                Some(Err(shortfall)) => Some(shortfall.clone()),
                None => Some(SinkShortfall {
                    sink: name.clone(),
                    timed_out: true,
                    error: None,
                    lost: Lost::default(),
                }),
            })
            .collect();
        if sinks.is_empty() {
            Ok(())
        } else {
            Err(Error::Incomplete {
                operation: self.operation,
                sinks,
            })
        }
    }

    /// Whether sink `index` has answered.
    pub(crate) fn answered(&self, index: usize) -> bool {
        self.lock().answers.get(index).is_some_and(Option::is_some)
    }
}
