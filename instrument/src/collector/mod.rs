//! The collector: the drain thread and the sink workers.
//!
//! One drain thread wakes every `drain_interval` (earlier when a queue passes half full, an audit
//! producer waits, or a flush asks), empties every thread's queue, aggregates durations into
//! histograms per callsite and outcome ([`aggregate`]), turns notable calls into events, cuts a
//! snapshot at the end of each window ([`snapshot`]), and appends the cycle's batch to each
//! interested sink's own queue ([`delivery`]), whose worker thread ([`worker`]) writes it.
//!
//! The drain never waits for a sink, so a stuck sink only ever hurts itself: while a flush
//! waits, the drain goes on draining. A flush is a marker queued behind the data of each sink;
//! the caller waits for every worker's answer, not for the drain. A panic in a drain cycle is
//! caught, counted and reported by the next flush; after [`MAX_PANICS_IN_A_ROW`] panicking
//! cycles the drain turns recording off and says so.

mod aggregate;
pub(crate) mod delivery;
mod snapshot;
mod worker;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime};

use crossbeam_channel::Receiver;

use self::aggregate::Aggregates;
use self::delivery::{Bounds, Item, Marker, SinkHandle, SinkQueue, Ticket};
use crate::audit_queue::AuditQueue;
use crate::config::Config;
use crate::error::Error;
use crate::sink::{Batch, Interests, SelfMetrics, Sink, SinkStatus, SnapshotReason, StartInfo};

/// The drain's pulse, readable from outside it (`PipelineMonitor`): when its last cycle ended,
/// and whether it stopped or gave up.
#[derive(Debug)]
pub(crate) struct Beat {
    base: Instant,
    /// Nanoseconds from `base` to the end of the last cycle (caught panics included).
    last_ns: AtomicU64,
    pub(crate) stopped: AtomicBool,
    pub(crate) failed: AtomicBool,
}

impl Beat {
    pub(crate) fn new() -> Beat {
        Beat {
            base: Instant::now(),
            last_ns: AtomicU64::new(0),
            stopped: AtomicBool::new(false),
            failed: AtomicBool::new(false),
        }
    }

    fn beat(&self) {
        let ns = u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_ns.store(ns, Ordering::Release);
    }

    /// How long ago the last cycle ended (since install, before the first).
    pub(crate) fn since_last(&self) -> std::time::Duration {
        let last = std::time::Duration::from_nanos(self.last_ns.load(Ordering::Acquire));
        self.base.elapsed().saturating_sub(last)
    }
}

/// Drain cycles that may panic in a row before the drain gives up and turns recording off.
pub(crate) const MAX_PANICS_IN_A_ROW: u32 = 3;

/// Requests from the pipeline guard.
pub(crate) enum Control {
    /// A flush, with the last audit sequence number accepted before it was asked for.
    Flush(Arc<Ticket>, u64),
    Shutdown(Arc<Ticket>),
}

pub(crate) struct Drain {
    config: Config,
    sinks: Vec<SinkHandle>,
    wants: Interests,
    bounds: Bounds,
    audit: Arc<AuditQueue>,
    control_rx: Receiver<Control>,
    metrics_out: Arc<Mutex<SelfMetrics>>,
    beat: Arc<Beat>,
    aggregates: Aggregates,
    batch: Batch,
    audit_scratch: Vec<crate::AuditEntry>,
    /// The last audit sequence number taken from the queue.
    audit_upto: u64,
    window_started: Instant,
    busy: bool,
    /// Flushes whose snapshot is cut but which wait for audit entries accepted before them to
    /// be taken from the queue (taken only as fast as the audit sinks make room).
    pending_flushes: Vec<(Arc<Ticket>, u64)>,
    panics_since_flush: u64,
    panics_in_a_row: u32,
    last_panic: Option<String>,
    failed: bool,
}

/// Test hook: how many of the next drain cycles panic.
pub(crate) static PANIC_NEXT_CYCLES: std::sync::atomic::AtomicU32 =
    std::sync::atomic::AtomicU32::new(0);

impl Drain {
    pub(crate) fn new(
        config: &Config,
        sinks: Vec<Box<dyn Sink>>,
        state: u32,
        audit: Arc<AuditQueue>,
        control_rx: Receiver<Control>,
        metrics_out: Arc<Mutex<SelfMetrics>>,
        beat: Arc<Beat>,
    ) -> Result<Drain, Error> {
        let mut handles = Vec::with_capacity(sinks.len());
        let mut wants = Interests::NONE;
        let start = StartInfo {
            pipeline_start: SystemTime::now(),
            window: config.window,
            tick: config.sink_tick,
            process: crate::sink::ProcessInfo::current(),
        };
        for sink in sinks {
            let name = sink.name().to_owned();
            let interests = sink.interests();
            wants.events |= interests.events;
            wants.snapshots |= interests.snapshots;
            wants.audit |= interests.audit;
            wants.notices |= interests.notices;
            let queue = Arc::new(SinkQueue::default());
            let status = Arc::new(Mutex::new(SinkStatus {
                name: name.clone(),
                ..SinkStatus::default()
            }));
            let worker = worker::Worker {
                sink,
                queue: Arc::clone(&queue),
                status: Arc::clone(&status),
                max_retries: config.max_retries,
                start: start.clone(),
            };
            let handle = std::thread::Builder::new()
                .name(format!("instrument-sink-{name}"))
                .spawn(move || worker.run())
                .map_err(|source| Error::Spawn {
                    what: format!("sink `{name}`"),
                    source,
                })?;
            handles.push(SinkHandle {
                name,
                interests,
                queue,
                status,
                worker: Some(handle),
                full_since: None,
            });
        }
        let bounds = Bounds {
            batches: config.sink_backlog,
            events: config.sink_backlog_events,
            audit: config.audit_capacity,
        };
        Ok(Drain {
            aggregates: Aggregates::new(config, state, wants.events),
            config: config.clone(),
            sinks: handles,
            wants,
            bounds,
            audit,
            control_rx,
            metrics_out,
            beat,
            batch: Batch::default(),
            audit_scratch: Vec::new(),
            audit_upto: 0,
            window_started: Instant::now(),
            busy: false,
            pending_flushes: Vec::new(),
            panics_since_flush: 0,
            panics_in_a_row: 0,
            last_panic: None,
            failed: false,
        })
    }

    pub(crate) fn run(mut self) {
        loop {
            if !self.busy {
                let waited = self.window_started.elapsed();
                let until_window = self.config.window.saturating_sub(waited);
                let mut timeout = self.config.drain_interval.min(until_window);
                if !self.pending_flushes.is_empty() {
                    // Audit sinks make room without waking the drain.
                    timeout = timeout.min(std::time::Duration::from_millis(1));
                }
                std::thread::park_timeout(timeout);
            }
            crate::wake::clear();
            let control = self.control_rx.try_recv().ok();
            match control {
                None => self.guarded_cycle(None),
                Some(Control::Flush(ticket, audit_upto)) => {
                    self.guarded_cycle(Some(SnapshotReason::Flush));
                    self.pending_flushes.push((ticket, audit_upto));
                }
                Some(Control::Shutdown(ticket)) => {
                    self.shutdown(&ticket);
                    return;
                }
            }
            self.release_flushes(false);
            // More requests queued (several threads flushing): serve them without parking.
            self.busy |= !self.control_rx.is_empty();
        }
    }

    /// Runs a cycle, catching a panic: counted, reported by the next flush, and after
    /// `MAX_PANICS_IN_A_ROW` in a row, recording is turned off.
    fn guarded_cycle(&mut self, closing: Option<SnapshotReason>) {
        if self.failed {
            return;
        }
        match catch_unwind(AssertUnwindSafe(|| self.cycle(closing))) {
            Ok(()) => self.panics_in_a_row = 0,
            Err(panic) => {
                let message = worker::panic_message(&*panic);
                self.panics_in_a_row += 1;
                self.panics_since_flush += 1;
                self.aggregates.metrics.drain_panics += 1;
                // What the panicking cycle had gathered is in an unknown state.
                self.batch = Batch::default();
                eprintln!("instrument: a drain cycle panicked ({message}); the drain goes on");
                self.last_panic = Some(message);
                if self.panics_in_a_row >= MAX_PANICS_IN_A_ROW {
                    self.failed = true;
                    self.beat.failed.store(true, Ordering::Release);
                    crate::state::STATE.store(0, Ordering::Release);
                    // Nothing will take audit entries any more: producers waiting for room get
                    // an error instead of waiting for ever.
                    self.audit.close();
                    eprintln!(
                        "instrument: the drain panicked {MAX_PANICS_IN_A_ROW} cycles in a row; recording is off"
                    );
                }
                self.publish_metrics();
            }
        }
    }

    /// Queues the markers of every pending flush whose audit entries have all been taken (or,
    /// with `all`, of every pending flush).
    fn release_flushes(&mut self, all: bool) {
        if self.pending_flushes.is_empty() {
            return;
        }
        let waiting_from = self.audit.first_sequence();
        let pending = std::mem::take(&mut self.pending_flushes);
        for (ticket, audit_upto) in pending {
            if all || self.failed || waiting_from.is_none_or(|first| first > audit_upto) {
                let report = self.take_panic_report();
                self.queue_markers(&ticket, report, false);
            } else {
                let full = self
                    .sinks
                    .iter()
                    .filter(|s| s.interests.audit && s.audit_room(self.bounds) == 0)
                    .map(|s| s.name.clone())
                    .collect();
                ticket.held_by(full);
                self.pending_flushes.push((ticket, audit_upto));
            }
        }
    }

    fn take_panic_report(&mut self) -> Option<Error> {
        let message = self.last_panic.clone().unwrap_or_default();
        if self.failed {
            return Some(Error::DrainFailed { message });
        }
        let count = std::mem::take(&mut self.panics_since_flush);
        (count > 0).then_some(Error::DrainPanicked { count, message })
    }

    /// One pass: thread queues and tables, audit, then (at window end or when `closing`) a
    /// snapshot, then delivery.
    fn cycle(&mut self, closing: Option<SnapshotReason>) {
        let injected = PANIC_NEXT_CYCLES
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_ok();
        assert!(!injected, "panic injected into a drain cycle");
        let started = Instant::now();
        self.busy = self.aggregates.drain_buffers(&mut self.batch);
        self.aggregates.scan_tables(closing.is_some());
        self.aggregates.mark_drops(&mut self.batch);
        crate::source::take_notices(&mut self.batch.notices, self.wants.notices);
        self.take_audit();
        let window_over = self.window_started.elapsed() >= self.config.window;
        if closing.is_some() || window_over {
            let reason = closing.unwrap_or(SnapshotReason::Window);
            self.aggregates.metrics.sinks = self.sink_statuses();
            self.fill_queue_metrics();
            self.batch.snapshot = self
                .aggregates
                .snapshot(reason, self.wants.snapshots)
                .map(Arc::new);
            self.window_started = Instant::now();
        }
        self.aggregates.metrics.drain_cycle = started.elapsed();
        self.deliver(closing.is_some());
        self.publish_metrics();
    }

    /// Takes audit entries and hands each audit sink its copy. A slow audit sink holds
    /// producers back (nothing is lost): entries are taken only as far as every audit sink has
    /// room. A sink whose audit backlog has stayed full for the flush timeout counts as down:
    /// it no longer holds the others back, and the entries it has no room for are lost for it
    /// and reported by name. With every audit sink full, producers wait.
    fn take_audit(&mut self) {
        let room = if self.wants.audit {
            let now = Instant::now();
            let stall = self.config.flush_timeout;
            let mut live_room: Option<usize> = None;
            let mut any_room = 0;
            for sink in self.sinks.iter_mut().filter(|s| s.interests.audit) {
                let room = sink.audit_room(self.bounds);
                any_room = any_room.max(room);
                let down = if room == 0 {
                    let since = *sink.full_since.get_or_insert(now);
                    now.duration_since(since) >= stall
                } else {
                    sink.full_since = None;
                    false
                };
                if !down {
                    live_room = Some(live_room.map_or(room, |r| r.min(room)));
                }
            }
            live_room.unwrap_or(any_room)
        } else {
            // Nobody wants audit entries: take them so producers never wait.
            usize::MAX
        };
        if room == 0 {
            self.busy |= self.audit.len() > 0;
            return;
        }
        self.hand_out_audit(room, self.bounds);
    }

    /// Takes up to `max` entries from the audit queue and appends them to every audit sink's
    /// queue within `bounds`.
    fn hand_out_audit(&mut self, max: usize, bounds: Bounds) {
        self.audit_scratch.clear();
        self.audit.take(max, &mut self.audit_scratch);
        if let Some(last) = self.audit_scratch.last() {
            self.audit_upto = last.sequence;
        }
        if self.audit_scratch.is_empty() || !self.wants.audit {
            return;
        }
        for sink in self.sinks.iter().filter(|s| s.interests.audit) {
            sink.push_audit(&self.audit_scratch, bounds);
        }
    }

    /// Appends this cycle's batch to every interested sink's queue, without ever waiting.
    fn deliver(&mut self, keep: bool) {
        let batch = std::mem::take(&mut self.batch);
        if batch.is_empty() {
            return;
        }
        let batch = Arc::new(batch);
        // One view per distinct set of interests; with one kind of sink there is one batch.
        let mut views: Vec<(Interests, Option<Arc<Batch>>)> = Vec::new();
        for sink in &self.sinks {
            let view = if let Some((_, view)) = views.iter().find(|(i, _)| *i == sink.interests) {
                view.clone()
            } else {
                let view = batch.view(sink.interests);
                views.push((sink.interests, view.clone()));
                view
            };
            if let Some(view) = view {
                sink.push_batch(view, keep, self.bounds);
            }
        }
    }

    fn queue_markers(&mut self, ticket: &Arc<Ticket>, report: Option<Error>, shutdown: bool) {
        // Before any marker: a worker may answer at once.
        let names = self.sinks.iter().map(|s| s.name.clone()).collect();
        ticket.queued(names, report);
        for (index, sink) in self.sinks.iter().enumerate() {
            let marker = Marker {
                ticket: Arc::clone(ticket),
                index,
                audit_upto: self.audit_upto,
            };
            sink.push_marker(if shutdown {
                Item::Shutdown(marker)
            } else {
                Item::Flush(marker)
            });
        }
    }

    fn shutdown(&mut self, ticket: &Arc<Ticket>) {
        // Producers are refused from now on (the guard closed the audit queue and turned
        // recording off before asking): take everything that was accepted.
        for _ in 0..1000 {
            self.guarded_cycle(Some(SnapshotReason::Shutdown));
            if self.failed || self.aggregates.rings_empty() {
                break;
            }
        }
        // The last accepted entries go to every audit sink past its bound (by at most
        // `audit_capacity`, the size of the closed queue): accepted means delivered or named.
        let unbounded = Bounds {
            audit: usize::MAX,
            ..self.bounds
        };
        self.hand_out_audit(usize::MAX, unbounded);
        self.release_flushes(true);
        let report = self.take_panic_report();
        self.queue_markers(ticket, report, true);
        self.publish_metrics();
        self.beat.stopped.store(true, Ordering::Release);
    }

    fn sink_statuses(&self) -> Vec<SinkStatus> {
        self.sinks.iter().map(|s| s.view().status()).collect()
    }

    fn fill_queue_metrics(&mut self) {
        let metrics = &mut self.aggregates.metrics;
        metrics.audit_queued = self.audit.len() as u64;
        metrics.audit_orphaned = crate::audit_queue::orphaned();
        metrics.notices_dropped = crate::source::dropped();
        metrics.callsite_overflows = crate::dynamic::overflowed_registrations();
        let backlog: u64 = metrics
            .sinks
            .iter()
            .map(|s| s.backlog_events * std::mem::size_of::<crate::Event>() as u64)
            .sum();
        let audit = self.audit.bytes() as u64
            + metrics
                .sinks
                .iter()
                .map(|s| s.audit_backlog * std::mem::size_of::<crate::AuditEntry>() as u64)
                .sum::<u64>();
        let held = backlog + audit;
        let own = self.aggregates.memory_bytes() as u64;
        self.aggregates.metrics.memory_bytes = own + held;
    }

    fn publish_metrics(&mut self) {
        self.aggregates.metrics.sinks = self.sink_statuses();
        self.fill_queue_metrics();
        *self
            .metrics_out
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = self.aggregates.metrics.clone();
        self.beat.beat();
    }

    /// Whether some sink wants notices.
    pub(crate) fn wants_notices(&self) -> bool {
        self.wants.notices
    }

    /// Views of the sinks' statuses and queues, for the guard.
    pub(crate) fn sink_views(&self) -> Vec<delivery::SinkView> {
        self.sinks.iter().map(SinkHandle::view).collect()
    }

    /// The worker threads, for the guard to join after shutdown.
    pub(crate) fn take_workers(&mut self) -> Vec<(String, std::thread::JoinHandle<()>)> {
        self.sinks
            .iter_mut()
            .filter_map(|s| s.worker.take().map(|w| (s.name.clone(), w)))
            .collect()
    }
}
