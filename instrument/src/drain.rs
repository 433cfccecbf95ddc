//! The drain thread and the sink workers.
//!
//! One drain thread wakes every `drain_interval` (earlier when a queue passes half full, an audit
//! producer waits, or `flush` asks), empties every thread's queue, aggregates durations into
//! histograms per callsite x outcome, turns notable calls into events, reads the per-thread loss
//! and counter tables, and hands one shared batch per cycle to each sink's worker thread.
//!
//! Sink isolation: the drain only ever `try_send`s to a worker's bounded channel. A full channel
//! drops an event/snapshot batch for that sink (counted) or holds an audit batch in the drain,
//! which then stops taking new audit entries so that their producers wait: nothing audited is
//! lost, and a stuck sink never stalls the drain or the other sinks. Workers retry failed
//! batches with exponential backoff and catch panics.

use std::collections::{HashMap, VecDeque};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use crossbeam_channel::{Receiver, Sender, TrySendError};

use crate::audit::AuditEntry;
use crate::buffer::{self, COUNTER_SLOT, KIND_SLOT_BASE, SLOTS, ThreadBuffer};
use crate::callsite::{self, Callsite, CallsiteKind, GaugeCell};
use crate::clock::Timebase;
use crate::config::Config;
use crate::error::Error;
use crate::histogram::Histogram;
use crate::record::{Detail, KINDS, Outcome, Record};
use crate::sink::{
    Batch, CallStats, CounterValue, DropMarker, ErrorKindCount, Event, EventReason, GaugeValue,
    Interests, SelfMetrics, Sink, SinkError, SinkHealth, SinkStatus, Snapshot, Stats, ThreadInfo,
};

/// Requests from the pipeline guard.
pub(crate) enum Control {
    Flush(Sender<Result<(), Error>>),
    Shutdown(Sender<Result<(), Error>>),
}

enum SinkMsg {
    Batch(Arc<Batch>),
    Flush(Sender<Result<(), SinkError>>),
    Shutdown(Sender<Result<(), SinkError>>),
}

struct SinkHandle {
    name: String,
    interests: Interests,
    tx: Sender<SinkMsg>,
    status: Arc<Mutex<SinkStatus>>,
    /// Batches the sink's channel could not take yet (audit-carrying, or from a flush).
    held: VecDeque<Arc<Batch>>,
    worker: Option<JoinHandle<()>>,
}

impl SinkHandle {
    /// Hands held batches to the worker, oldest first, until its channel is full. Returns
    /// whether any was handed over; a batch is removed only once the channel took it.
    fn send_held(&mut self) -> bool {
        let mut sent = false;
        while let Some(held) = self.held.pop_front() {
            match self.tx.try_send(SinkMsg::Batch(held)) {
                Ok(()) => sent = true,
                Err(TrySendError::Full(SinkMsg::Batch(held))) => {
                    self.held.push_front(held);
                    break;
                }
                Err(_) => break,
            }
        }
        sent
    }
}

#[derive(Default)]
struct OutcomeAgg {
    window: Histogram,
    total: Histogram,
    dropped_window: u64,
    dropped_total: u64,
}

struct CallsiteAgg {
    callsite: &'static Callsite,
    outcomes: [OutcomeAgg; KINDS],
    kinds: Vec<(&'static str, u64, u64)>,
    slow_ns: u64,
    sample_below: u64,
    counter_window: u64,
    counter_total: u64,
    drops_unmarked: u64,
    orphans_seen: [u64; SLOTS],
    touched: bool,
}

impl CallsiteAgg {
    fn new(callsite: &'static Callsite, default_slow: Option<Duration>) -> Self {
        let meta = callsite.metadata();
        let slow = meta
            .slow_threshold()
            .or(default_slow)
            .map_or(0, |d| d.as_nanos() as u64);
        let sample = meta.sample_rate().clamp(0.0, 1.0);
        let sample_below = if sample >= 1.0 {
            u64::MAX
        } else {
            (sample * u64::MAX as f64) as u64
        };
        // Orphans counted before this pipeline belong to an earlier one.
        let orphans_seen = std::array::from_fn(|i| {
            callsite.orphaned[i].load(std::sync::atomic::Ordering::Relaxed)
        });
        CallsiteAgg {
            callsite,
            outcomes: Default::default(),
            kinds: Vec::new(),
            slow_ns: slow,
            sample_below,
            counter_window: 0,
            counter_total: 0,
            drops_unmarked: 0,
            orphans_seen,
            touched: false,
        }
    }

    /// Adds `n` errors of `kind` to this window.
    fn count_kind(&mut self, kind: &'static str, n: u64) {
        match self
            .kinds
            .iter_mut()
            .find(|(k, _, _)| callsite::same_kind(k, kind))
        {
            Some(entry) => entry.1 += n,
            None => self.kinds.push((kind, n, 0)),
        }
    }

    fn add_drops(&mut self, slot: usize, n: u64) {
        if n == 0 {
            return;
        }
        self.touched = true;
        if slot >= KIND_SLOT_BASE {
            // Dropped errors of a known kind; their count is in the `error` slot too.
            let position = (slot - KIND_SLOT_BASE + 1) as u8;
            if let Some(kind) = self.callsite.kind_at(position) {
                self.count_kind(kind, n);
            }
        } else if slot == COUNTER_SLOT {
            self.counter_window += n;
            self.counter_total += n;
        } else {
            self.outcomes[slot].dropped_window += n;
            self.outcomes[slot].dropped_total += n;
            self.drops_unmarked += n;
        }
    }
}

pub(crate) struct Drain {
    config: Config,
    state: u32,
    generation: u8,
    timebase: Timebase,
    sinks: Vec<SinkHandle>,
    wants: Interests,
    audit_rx: Receiver<AuditEntry>,
    control_rx: Receiver<Control>,
    metrics_out: Arc<Mutex<SelfMetrics>>,
    registered: Vec<&'static Callsite>,
    aggs: Vec<CallsiteAgg>,
    /// Per thread buffer: the counter values already accounted for.
    seen: HashMap<u32, Vec<u64>>,
    scratch: Vec<Arc<ThreadBuffer>>,
    rng: u64,
    window_start: SystemTime,
    window_started: Instant,
    last_scan: Instant,
    last_marker: SystemTime,
    batch: Batch,
    metrics: SelfMetrics,
    busy: bool,
}

impl Drain {
    pub(crate) fn new(
        config: &Config,
        sinks: Vec<Box<dyn Sink>>,
        state: u32,
        audit_rx: Receiver<AuditEntry>,
        control_rx: Receiver<Control>,
        metrics_out: Arc<Mutex<SelfMetrics>>,
    ) -> Result<Drain, Error> {
        let mut handles = Vec::with_capacity(sinks.len());
        let mut wants = Interests::NONE;
        for sink in sinks {
            let name = sink.name().to_owned();
            let interests = sink.interests();
            wants.events |= interests.events;
            wants.snapshots |= interests.snapshots;
            wants.audit |= interests.audit;
            let (tx, rx) = crossbeam_channel::bounded(config.sink_backlog);
            let status = Arc::new(Mutex::new(SinkStatus {
                name: name.clone(),
                ..SinkStatus::default()
            }));
            let worker_status = Arc::clone(&status);
            let max_retries = config.max_retries;
            let worker = std::thread::Builder::new()
                .name(format!("instrument-sink-{name}"))
                .spawn(move || run_sink(sink, interests, &rx, &worker_status, max_retries))
                .map_err(|source| Error::Spawn {
                    what: format!("sink `{name}`"),
                    source,
                })?;
            handles.push(SinkHandle {
                name,
                interests,
                tx,
                status,
                held: VecDeque::new(),
                worker: Some(worker),
            });
        }
        let timebase = Timebase::new(state & 0xff);
        let now = SystemTime::now();
        let mut drain = Drain {
            config: config.clone(),
            state,
            generation: (state >> 8) as u8,
            timebase,
            sinks: handles,
            wants,
            audit_rx,
            control_rx,
            metrics_out,
            registered: Vec::new(),
            aggs: Vec::new(),
            seen: HashMap::new(),
            scratch: Vec::new(),
            rng: 0x9E37_79B9_7F4A_7C15 ^ u64::from(state),
            window_start: now,
            window_started: Instant::now(),
            last_scan: Instant::now(),
            last_marker: now,
            batch: Batch::default(),
            metrics: SelfMetrics::default(),
            busy: false,
        };
        // Counts already in thread tables belong to earlier pipelines: start from them.
        drain.refresh_callsites();
        drain.scan_buffers(true);
        Ok(drain)
    }

    pub(crate) fn run(mut self) {
        loop {
            if !self.busy {
                let waited = self.window_started.elapsed();
                let until_window = self.config.window.saturating_sub(waited);
                std::thread::park_timeout(self.config.drain_interval.min(until_window));
            }
            crate::pipeline::clear_wake();
            let control = self.control_rx.try_recv().ok();
            let closing = matches!(control, Some(Control::Flush(_) | Control::Shutdown(_)));
            self.cycle(closing);
            match control {
                Some(Control::Flush(reply)) => {
                    let result = self.flush_sinks();
                    // What the caller reads next (deliveries, backlog) reflects the flush.
                    self.publish_metrics();
                    let _ = reply.send(result);
                }
                Some(Control::Shutdown(reply)) => {
                    let result = self.shutdown();
                    let _ = reply.send(result);
                    return;
                }
                None => {}
            }
            // More requests queued (several threads flushing): serve them without parking.
            self.busy |= !self.control_rx.is_empty();
        }
    }

    fn refresh_callsites(&mut self) {
        let before = self.registered.len();
        callsite::registered_since(before, &mut self.registered);
        let slow = self.config.slow_threshold;
        for &cs in &self.registered[before..] {
            self.aggs.push(CallsiteAgg::new(cs, slow));
        }
    }

    /// One pass: queues, counters, audit, then (at window end or when `closing`) a snapshot, then
    /// delivery.
    fn cycle(&mut self, closing: bool) {
        let started = Instant::now();
        self.refresh_callsites();
        self.busy = false;
        buffer::buffers(&mut self.scratch);
        let buffers = std::mem::take(&mut self.scratch);
        for buf in &buffers {
            let mut guard = buf.consumer();
            let rings = &mut *guard;
            // What is there now; records pushed meanwhile wait for the next cycle.
            let available = rings.records.slots();
            self.metrics.queue_high_water = self.metrics.queue_high_water.max(available as u64);
            if let Ok(chunk) = rings.records.read_chunk(available) {
                for record in chunk {
                    // Pushed before its record, so it is there (and must be taken even when
                    // the record itself is ignored, to keep the rings in step).
                    let detail = if record.detailed {
                        rings.details.pop().ok()
                    } else {
                        None
                    };
                    self.take(record, detail, buf);
                }
            }
            if available * 2 >= buf.capacity && buf.capacity > 1 {
                self.busy = true;
            }
        }
        self.scratch = buffers;
        // Reading a thread's counter lines takes them away from the thread that writes them on
        // every overflowing call; under overload the drain cycles back to back, so the tables
        // are read at most every 10 ms (and always when flushing).
        if closing || self.last_scan.elapsed() >= Duration::from_millis(10) {
            self.scan_buffers(false);
            self.last_scan = Instant::now();
        }
        self.scan_orphans();
        self.take_audit(closing);
        self.mark_drops();
        if closing || self.window_started.elapsed() >= self.config.window {
            self.snapshot();
        }
        self.metrics.drain_cycle = started.elapsed();
        self.deliver(closing);
        self.publish_metrics();
    }

    #[inline]
    fn take(&mut self, record: Record, detail: Option<Detail>, buf: &ThreadBuffer) {
        if record.generation != self.generation {
            return;
        }
        let index = record.callsite as usize;
        if index >= self.aggs.len() {
            self.refresh_callsites();
            if index >= self.aggs.len() {
                return;
            }
        }
        self.metrics.events_recorded += 1;
        let Detail { error_kind, fields } = detail.unwrap_or_default();
        let error_kind = error_kind.or_else(|| self.aggs[index].callsite.kind_at(record.kind));
        let nanos = self.timebase.nanos(record.duration);
        let agg = &mut self.aggs[index];
        agg.touched = true;
        agg.outcomes[record.outcome.index()].window.record(nanos);
        if let Some(kind) = error_kind {
            agg.count_kind(kind, 1);
        }
        if !self.wants.events {
            return;
        }
        let reason = if record.outcome != Outcome::Ok {
            Some(EventReason::Outcome)
        } else if agg.slow_ns > 0 && nanos >= agg.slow_ns {
            Some(EventReason::Slow)
        } else if agg.sample_below > 0 && {
            // xorshift64*: cheap, good enough to pick a fraction of calls.
            self.rng ^= self.rng >> 12;
            self.rng ^= self.rng << 25;
            self.rng ^= self.rng >> 27;
            self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) < agg.sample_below
        } {
            Some(EventReason::Sampled)
        } else {
            None
        };
        if let Some(reason) = reason {
            self.batch.events.push(Event {
                callsite: agg.callsite.metadata(),
                outcome: record.outcome,
                error_kind,
                start: self.timebase.wall(record.start),
                duration: Duration::from_nanos(nanos),
                thread: ThreadInfo {
                    id: buf.thread_id,
                    name: buf.thread_name.clone(),
                },
                correlation: crate::CorrelationId::from_u64(record.correlation),
                fields: fields.pairs(),
                reason,
            });
        }
    }

    /// Reads every thread's loss and counter tables and accounts for what is new. `baseline`
    /// only records the current values (at install).
    fn scan_buffers(&mut self, baseline: bool) {
        buffer::buffers(&mut self.scratch);
        let callsites = self.aggs.len();
        let mut threads = 0;
        let mut memory = 0;
        let mut retired = Vec::new();
        for buf in &self.scratch {
            threads += 1;
            memory += buf.memory_bytes();
            // Check for an exited thread *before* reading its counters: the producer end is
            // dropped after the thread's last write, and the acquire fence makes every write
            // before that drop visible to the reads below, so nothing is missed on retirement.
            let exited = buf.consumer().records.is_abandoned();
            if exited {
                std::sync::atomic::fence(std::sync::atomic::Ordering::Acquire);
            }
            let seen = self.seen.entry(buf.thread_id).or_default();
            if seen.len() < callsites * SLOTS {
                seen.resize(callsites * SLOTS, 0);
            }
            for (c, agg) in self.aggs.iter_mut().enumerate() {
                for slot in 0..SLOTS {
                    let delta = buf.take_delta(c as u32, slot, &mut seen[c * SLOTS + slot]);
                    if !baseline {
                        agg.add_drops(slot, delta);
                    }
                }
            }
            if exited && buf.consumer().records.is_empty() {
                retired.push(Arc::clone(buf));
            }
        }
        // Exited threads whose rings are empty are fully accounted for now.
        for buf in retired {
            buffer::retire(&buf);
            self.seen.remove(&buf.thread_id);
        }
        self.metrics.threads = threads;
        let aggs: usize = self
            .aggs
            .iter()
            .map(|a| {
                a.outcomes
                    .iter()
                    .map(|o| o.window.memory_bytes() + o.total.memory_bytes())
                    .sum::<usize>()
            })
            .sum();
        self.metrics.memory_bytes = (memory + aggs) as u64;
    }

    fn scan_orphans(&mut self) {
        for agg in &mut self.aggs {
            for slot in 0..SLOTS {
                let now = agg.callsite.orphaned[slot].load(std::sync::atomic::Ordering::Relaxed);
                let delta = now.wrapping_sub(agg.orphans_seen[slot]);
                agg.orphans_seen[slot] = now;
                agg.add_drops(slot, delta);
            }
        }
    }

    /// Takes audit entries, unless a sink still holds audit batches it could not accept: then
    /// the entries stay in the channel and their producers wait.
    fn take_audit(&mut self, closing: bool) {
        let held = self.sinks.iter().any(|s| !s.held.is_empty());
        if held && !closing {
            return;
        }
        let limit = self.config.audit_capacity.max(1);
        while self.batch.audit.len() < limit {
            match self.audit_rx.try_recv() {
                Ok(entry) => self.batch.audit.push(entry),
                Err(_) => break,
            }
        }
        if self.batch.audit.len() >= limit {
            self.busy = true;
        }
    }

    fn mark_drops(&mut self) {
        let now = SystemTime::now();
        let mut any = false;
        for agg in &mut self.aggs {
            if agg.drops_unmarked > 0 {
                self.metrics.events_dropped += agg.drops_unmarked;
                if self.wants.events {
                    self.batch.drops.push(DropMarker {
                        callsite: agg.callsite.metadata(),
                        count: agg.drops_unmarked,
                        since: self.last_marker,
                        until: now,
                    });
                }
                agg.drops_unmarked = 0;
                any = true;
            }
        }
        if any {
            self.last_marker = now;
        }
    }

    fn snapshot(&mut self) {
        let now = SystemTime::now();
        let mut calls = Vec::new();
        let mut counters = Vec::new();
        let mut gauges = Vec::new();
        for agg in &mut self.aggs {
            let meta = agg.callsite.metadata();
            match meta.kind() {
                CallsiteKind::Counter => {
                    if agg.touched {
                        counters.push(CounterValue {
                            callsite: meta,
                            window: agg.counter_window,
                            total: agg.counter_total,
                        });
                    }
                    agg.counter_window = 0;
                    continue;
                }
                CallsiteKind::Gauge => {
                    let cell = *agg
                        .callsite
                        .gauge
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner);
                    if cell.state == self.state {
                        merge_gauge(&mut gauges, meta, cell);
                    }
                    continue;
                }
                _ => {}
            }
            for (i, o) in agg.outcomes.iter_mut().enumerate() {
                if o.window.count() == 0 && o.total.count() == 0 && o.dropped_total == 0 {
                    continue;
                }
                let window = stats(&o.window, o.dropped_window);
                o.total.merge(&o.window);
                o.window.reset();
                o.dropped_window = 0;
                let outcome = Outcome::ALL[i];
                let error_kinds = if outcome == Outcome::Error {
                    agg.kinds
                        .iter_mut()
                        .map(|(kind, window, total)| {
                            *total += *window;
                            let w = std::mem::take(window);
                            ErrorKindCount {
                                kind,
                                window: w,
                                total: *total,
                            }
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                calls.push(CallStats {
                    callsite: meta,
                    outcome,
                    window,
                    total: stats(&o.total, o.dropped_total),
                    histogram: Arc::new(o.total.clone()),
                    error_kinds,
                });
            }
        }
        self.metrics.sinks = self.sink_statuses();
        if self.wants.snapshots {
            self.batch.snapshot = Some(Arc::new(Snapshot {
                window_start: self.window_start,
                window_end: now,
                calls,
                counters,
                gauges: gauges.into_iter().map(|(g, _)| g).collect(),
                self_metrics: self.metrics.clone(),
            }));
        }
        self.window_start = now;
        self.window_started = Instant::now();
    }

    fn sink_statuses(&self) -> Vec<SinkStatus> {
        self.sinks
            .iter()
            .map(|s| {
                let mut status = s
                    .status
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .clone();
                status.backlog = (s.tx.len() + s.held.len()) as u64;
                status
            })
            .collect()
    }

    /// Hands this cycle's batch to every interested sink without ever blocking. A batch a full
    /// channel cannot take is held when it carries audit entries, or when the cycle is closing
    /// (a flush or shutdown, which then delivers held batches before flushing); otherwise it is
    /// dropped for that sink and counted.
    fn deliver(&mut self, closing: bool) {
        let batch = std::mem::take(&mut self.batch);
        let batch = if batch.is_empty() {
            None
        } else {
            Some(Arc::new(batch))
        };
        // One view per distinct set of interests, so each sink gets only the parts it asked
        // for; with one kind of sink (the usual case) there is one shared batch.
        let mut views: Vec<(Interests, Arc<Batch>)> = Vec::new();
        for sink in &mut self.sinks {
            sink.send_held();
            let Some(full) = &batch else { continue };
            let known = views.iter().position(|(i, _)| *i == sink.interests);
            let index = known.unwrap_or_else(|| {
                let view = if full.is_covered_by(sink.interests) {
                    Arc::clone(full)
                } else {
                    Arc::new(full.view(sink.interests))
                };
                views.push((sink.interests, view));
                views.len() - 1
            });
            let batch = &views[index].1;
            let wanted = (sink.interests.events
                && (!batch.events.is_empty() || !batch.drops.is_empty()))
                || (sink.interests.snapshots && batch.snapshot.is_some())
                || (sink.interests.audit && !batch.audit.is_empty());
            if !wanted {
                continue;
            }
            let must_keep = closing || (sink.interests.audit && !batch.audit.is_empty());
            // Batches reach a sink in the order they were made: while some are held, a new
            // batch queues behind them, or is dropped like any batch meeting a full channel
            // (the worker may have made room since `send_held`, but not for this one).
            let sent = if sink.held.is_empty() {
                sink.tx.try_send(SinkMsg::Batch(Arc::clone(batch)))
            } else {
                Err(TrySendError::Full(SinkMsg::Batch(Arc::clone(batch))))
            };
            match sent {
                Ok(()) => {}
                Err(TrySendError::Full(_)) if must_keep => {
                    sink.held.push_back(Arc::clone(batch));
                }
                Err(_) => {
                    sink.status
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .dropped_batches += 1;
                }
            }
        }
    }

    fn publish_metrics(&mut self) {
        self.metrics.sinks = self.sink_statuses();
        *self
            .metrics_out
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = self.metrics.clone();
    }

    /// Delivers everything held, then asks each sink to flush, waiting at most the flush timeout.
    fn flush_sinks(&mut self) -> Result<(), Error> {
        // All sinks progress together, without blocking on any one of them: a stuck sink delays
        // nobody else, is named when the deadline passes, and keeps its held batches (nothing
        // is popped unless its channel took it).
        enum Stage {
            Delivering,
            Flushing(Receiver<Result<(), SinkError>>),
            Done,
        }
        let deadline = Instant::now() + self.config.flush_timeout;
        let mut stages: Vec<Stage> = self.sinks.iter().map(|_| Stage::Delivering).collect();
        let mut first_error = None;
        loop {
            let mut progressed = false;
            for (sink, stage) in self.sinks.iter_mut().zip(stages.iter_mut()) {
                if let Stage::Delivering = stage {
                    progressed |= sink.send_held();
                    if sink.held.is_empty() {
                        let (tx, rx) = crossbeam_channel::bounded(1);
                        if sink.tx.try_send(SinkMsg::Flush(tx)).is_ok() {
                            *stage = Stage::Flushing(rx);
                            progressed = true;
                        }
                    }
                }
                if let Stage::Flushing(rx) = stage {
                    match rx.try_recv() {
                        Ok(result) => {
                            if let Err(source) = result {
                                first_error.get_or_insert(Error::SinkFlush {
                                    sink: sink.name.clone(),
                                    source,
                                });
                            }
                            *stage = Stage::Done;
                            progressed = true;
                        }
                        Err(crossbeam_channel::TryRecvError::Disconnected) => *stage = Stage::Done,
                        Err(crossbeam_channel::TryRecvError::Empty) => {}
                    }
                }
            }
            if stages.iter().all(|s| matches!(s, Stage::Done)) {
                break;
            }
            if Instant::now() >= deadline {
                let late = self
                    .sinks
                    .iter()
                    .zip(&stages)
                    .filter(|(_, stage)| !matches!(stage, Stage::Done))
                    .map(|(sink, _)| sink.name.clone())
                    .collect();
                return Err(Error::FlushTimeout {
                    timeout: self.config.flush_timeout,
                    sinks: late,
                });
            }
            if !progressed {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn shutdown(&mut self) -> Result<(), Error> {
        // Take whatever arrived between the last cycle and now, including every audit entry.
        loop {
            self.cycle(true);
            if self.audit_rx.is_empty()
                && self.scratch.iter().all(|b| b.consumer().records.is_empty())
            {
                break;
            }
        }
        let flushed = self.flush_sinks();
        let deadline = Instant::now() + self.config.flush_timeout;
        let mut result = flushed;
        for sink in &mut self.sinks {
            let (tx, rx) = crossbeam_channel::bounded(1);
            if sink
                .tx
                .send_deadline(SinkMsg::Shutdown(tx), deadline)
                .is_err()
            {
                continue;
            }
            match rx.recv_deadline(deadline) {
                Ok(Ok(())) => {
                    if let Some(worker) = sink.worker.take() {
                        let _ = worker.join();
                    }
                }
                Ok(Err(source)) => {
                    if result.is_ok() {
                        result = Err(Error::SinkFlush {
                            sink: sink.name.clone(),
                            source,
                        });
                    }
                }
                // A stuck worker is left behind; it ends with the process.
                Err(_) => {}
            }
        }
        self.publish_metrics();
        result
    }
}

/// Adds a gauge value set under this pipeline; of callsites naming the same series (name and
/// labels), the value set last wins.
fn merge_gauge(
    gauges: &mut Vec<(GaugeValue, u64)>,
    meta: &'static crate::Metadata,
    cell: GaugeCell,
) {
    let value = GaugeValue {
        callsite: meta,
        value: cell.value,
    };
    let same = gauges.iter().position(|(g, _)| {
        g.callsite.name() == meta.name() && g.callsite.labels_slice() == meta.labels_slice()
    });
    match same {
        Some(i) if gauges[i].1 >= cell.sequence => {}
        Some(i) => gauges[i] = (value, cell.sequence),
        None => gauges.push((value, cell.sequence)),
    }
}

fn stats(h: &Histogram, dropped: u64) -> Stats {
    let d = Duration::from_nanos;
    Stats {
        count: h.count() + dropped,
        timed: h.count(),
        dropped,
        sum: Duration::from_nanos(u64::try_from(h.sum()).unwrap_or(u64::MAX)),
        min: d(h.min()),
        max: d(h.max()),
        p50: d(h.quantile(0.5)),
        p90: d(h.quantile(0.9)),
        p99: d(h.quantile(0.99)),
        p999: d(h.quantile(0.999)),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

/// Runs `f` against the sink, turning a panic into an error and counting failures.
fn guarded(
    status: &Mutex<SinkStatus>,
    f: impl FnOnce() -> Result<(), SinkError>,
) -> Result<(), SinkError> {
    let result = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => {
            status.lock().unwrap_or_else(PoisonError::into_inner).panics += 1;
            Err(SinkError::new(format!(
                "sink panicked: {}",
                panic_message(&*panic)
            )))
        }
    };
    if let Err(e) = &result {
        let mut status = status.lock().unwrap_or_else(PoisonError::into_inner);
        status.errors += 1;
        status.last_error = Some(error_chain(e));
    }
    result
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn run_sink(
    mut sink: Box<dyn Sink>,
    interests: Interests,
    rx: &Receiver<SinkMsg>,
    status: &Mutex<SinkStatus>,
    max_retries: u32,
) {
    for msg in rx {
        match msg {
            SinkMsg::Batch(batch) => {
                let unlimited = !batch.audit.is_empty() && interests.audit;
                let mut attempts = 0u32;
                let mut backoff = Duration::from_millis(10);
                loop {
                    if guarded(status, || sink.write(&batch)).is_ok() {
                        status
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .delivered += 1;
                        break;
                    }
                    attempts += 1;
                    if !unlimited && attempts > max_retries {
                        status
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .dropped_batches += 1;
                        break;
                    }
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
                let health = catch_unwind(AssertUnwindSafe(|| sink.health()))
                    .unwrap_or_else(|_| SinkHealth::Unhealthy("health check panicked".into()));
                status.lock().unwrap_or_else(PoisonError::into_inner).health = health;
            }
            SinkMsg::Flush(ack) => {
                let _ = ack.send(guarded(status, || sink.flush()));
            }
            SinkMsg::Shutdown(ack) => {
                let _ = ack.send(guarded(status, || sink.shutdown()));
                return;
            }
        }
    }
}
