//! Aggregation: records into histograms per callsite and outcome, notable calls into events,
//! the per-thread loss and counter tables into exact counts.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use crate::buffer::{self, ThreadBuffer};
use crate::callsite::{self, Callsite};
use crate::callsite::{COUNTER_SLOT, KIND_SLOT_BASE, SLOTS};
use crate::clock::Timebase;
use crate::config::Config;
use crate::histogram::Histogram;
use crate::record::{Detail, KINDS, Outcome, Record};
use crate::retire::{self, CounterScan};
use crate::sink::{Batch, DropMarker, Event, EventReason, SelfMetrics, ThreadInfo};

#[derive(Default)]
pub(super) struct OutcomeAgg {
    pub(super) window: Histogram,
    /// Shared with the snapshots that carry it; copied on the next merge only while a sink
    /// still holds one of them.
    pub(super) total: Arc<Histogram>,
    pub(super) dropped_window: u64,
    pub(super) dropped_total: u64,
}

pub(super) struct CallsiteAgg {
    pub(super) callsite: &'static Callsite,
    pub(super) outcomes: [OutcomeAgg; KINDS],
    /// Error kinds: (kind, this window, since install).
    pub(super) kinds: Vec<(&'static str, u64, u64)>,
    slow_ns: u64,
    sample_below: u64,
    /// `counter!` increase this window and total; both saturate at `u64::MAX`.
    pub(super) counter_window: u64,
    pub(super) counter_total: u64,
    drops_unmarked: u64,
    orphans_seen: [u64; SLOTS],
    large_seen: u64,
    pub(super) touched: bool,
}

impl CallsiteAgg {
    /// `existing`: the callsite was registered before this pipeline, whose counts recorded on
    /// the callsite itself so far belong to earlier pipelines.
    fn new(callsite: &'static Callsite, default_slow: Option<Duration>, existing: bool) -> Self {
        let meta = callsite.metadata();
        let slow = meta
            .slow_threshold()
            .or(default_slow)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        let sample = meta.sample_rate().clamp(0.0, 1.0);
        let sample_below = if sample >= 1.0 {
            u64::MAX
        } else {
            (sample * u64::MAX as f64) as u64
        };
        // Orphans counted before this pipeline belong to an earlier one.
        let orphans_seen = std::array::from_fn(|i| {
            if existing {
                callsite.orphaned[i].load(Ordering::Relaxed)
            } else {
                0
            }
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
            large_seen: if existing { callsite.large_added() } else { 0 },
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
            Some(entry) => entry.1 = entry.1.saturating_add(n),
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
            self.counter_window = self.counter_window.saturating_add(n);
            self.counter_total = self.counter_total.saturating_add(n);
        } else {
            let o = &mut self.outcomes[slot];
            o.dropped_window = o.dropped_window.saturating_add(n);
            o.dropped_total = o.dropped_total.saturating_add(n);
            self.drops_unmarked = self.drops_unmarked.saturating_add(n);
        }
    }
}

/// One pass over the thread tables, the drain's side of `retire::scan`.
struct TableScan<'a> {
    aggregates: &'a mut Aggregates,
    /// Only record the current values: counts made before the pipeline was installed.
    baseline: bool,
}

impl CounterScan<Arc<ThreadBuffer>> for TableScan<'_> {
    fn refresh_registry(&mut self) {
        self.aggregates.refresh_callsites();
    }

    fn read_counters(&mut self, buf: &Arc<ThreadBuffer>) {
        let Aggregates { aggs, seen, .. } = &mut *self.aggregates;
        let seen = seen.entry(buf.thread_id).or_default();
        if seen.len() < aggs.len() * SLOTS {
            seen.resize(aggs.len() * SLOTS, 0);
        }
        for (c, agg) in aggs.iter_mut().enumerate() {
            for slot in 0..SLOTS {
                let delta = buf.take_delta(c as u32, slot, &mut seen[c * SLOTS + slot]);
                if !self.baseline {
                    agg.add_drops(slot, delta);
                }
            }
        }
    }

    fn retire(&mut self, buf: &Arc<ThreadBuffer>) {
        buffer::retire(buf);
        self.aggregates.seen.remove(&buf.thread_id);
    }
}

/// Everything the drain has aggregated, and what it needs to go on.
pub(super) struct Aggregates {
    pub(super) state: u32,
    generation: u8,
    timebase: Timebase,
    default_slow: Option<Duration>,
    wants_events: bool,
    registered: Vec<&'static Callsite>,
    pub(super) aggs: Vec<CallsiteAgg>,
    /// Per thread buffer: the counter values already accounted for.
    seen: HashMap<u64, Vec<u64>>,
    scratch: Vec<Arc<ThreadBuffer>>,
    rng: u64,
    pub(super) window_start: SystemTime,
    last_scan: Instant,
    last_marker: SystemTime,
    pub(super) snapshots: u64,
    pub(super) metrics: SelfMetrics,
    /// Set once the install-time baseline is taken: callsites found later are new.
    started: bool,
}

impl Aggregates {
    pub(super) fn new(config: &Config, state: u32, wants_events: bool) -> Self {
        let now = SystemTime::now();
        let mut aggregates = Aggregates {
            state,
            generation: (state >> 8) as u8,
            timebase: Timebase::new(state & 0xff),
            default_slow: config.slow_threshold,
            wants_events,
            registered: Vec::new(),
            aggs: Vec::new(),
            seen: HashMap::new(),
            scratch: Vec::new(),
            rng: 0x9E37_79B9_7F4A_7C15 ^ u64::from(state),
            window_start: now,
            last_scan: Instant::now(),
            last_marker: now,
            snapshots: 0,
            metrics: SelfMetrics::default(),
            started: false,
        };
        // Counts already in thread tables belong to earlier pipelines: start from them.
        aggregates.refresh_callsites();
        aggregates.scan_buffers(true);
        aggregates.started = true;
        aggregates
    }

    fn refresh_callsites(&mut self) {
        let before = self.registered.len();
        callsite::registered_since(before, &mut self.registered);
        let existing = !self.started;
        for &cs in &self.registered[before..] {
            self.aggs
                .push(CallsiteAgg::new(cs, self.default_slow, existing));
        }
    }

    /// Empties every thread's record ring into the aggregates and `batch`. Returns whether a
    /// ring was at least half full (the drain should cycle again at once).
    pub(super) fn drain_buffers(&mut self, batch: &mut Batch) -> bool {
        self.refresh_callsites();
        let mut busy = false;
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
                    self.take(record, detail, buf, batch);
                }
            }
            if available * 2 >= buf.capacity && buf.capacity > 1 {
                busy = true;
            }
        }
        self.scratch = buffers;
        busy
    }

    /// Whether every thread's ring is empty.
    pub(super) fn rings_empty(&mut self) -> bool {
        buffer::buffers(&mut self.scratch);
        self.scratch.iter().all(|b| b.consumer().records.is_empty())
    }

    #[inline]
    fn take(
        &mut self,
        record: Record,
        detail: Option<Detail>,
        buf: &ThreadBuffer,
        batch: &mut Batch,
    ) {
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
        let nanos = value_of(&record, self.aggs[index].callsite, &self.timebase);
        let agg = &mut self.aggs[index];
        agg.touched = true;
        agg.outcomes[record.outcome.index()].window.record(nanos);
        if let Some(kind) = error_kind {
            agg.count_kind(kind, 1);
        }
        if !self.wants_events {
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
            batch.events.push(Event {
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

    /// Reads the loss and counter tables, at most every 10 ms unless `now`: reading a thread's
    /// counter lines takes them away from the thread that writes them on every overflowing
    /// call, and under overload the drain cycles back to back.
    pub(super) fn scan_tables(&mut self, now: bool) {
        if now || self.last_scan.elapsed() >= Duration::from_millis(10) {
            self.scan_buffers(false);
            self.last_scan = Instant::now();
        }
        self.scan_orphans();
    }

    /// Reads every thread's loss and counter tables and accounts for what is new, retiring the
    /// buffers of exited threads once read (`retire::scan`). `baseline` only records the
    /// current values (at install).
    fn scan_buffers(&mut self, baseline: bool) {
        buffer::buffers(&mut self.scratch);
        let buffers = std::mem::take(&mut self.scratch);
        retire::scan(
            &mut TableScan {
                aggregates: self,
                baseline,
            },
            &buffers,
        );
        self.metrics.threads = buffers.len() as u64;
        self.scratch = buffers;
    }

    /// Counts recorded straight on callsites: by threads tearing down, for callsites beyond
    /// the per-thread tables, and `counter!` additions too large for them.
    fn scan_orphans(&mut self) {
        for agg in &mut self.aggs {
            for slot in 0..SLOTS {
                let now = agg.callsite.orphaned[slot].load(Ordering::Relaxed);
                let delta = now.wrapping_sub(agg.orphans_seen[slot]);
                agg.orphans_seen[slot] = now;
                agg.add_drops(slot, delta);
            }
            // A saturating total, never wrapping: the difference is exact.
            let large = agg.callsite.large_added();
            let delta = large - agg.large_seen;
            agg.large_seen = large;
            agg.add_drops(COUNTER_SLOT, delta);
        }
    }

    /// Turns drops counted since the last marker into drop markers.
    pub(super) fn mark_drops(&mut self, batch: &mut Batch) {
        let now = SystemTime::now();
        let mut any = false;
        for agg in &mut self.aggs {
            if agg.drops_unmarked > 0 {
                self.metrics.events_dropped = self
                    .metrics
                    .events_dropped
                    .saturating_add(agg.drops_unmarked);
                if self.wants_events {
                    batch.drops.push(DropMarker {
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

    /// Bytes held by thread buffers and aggregates.
    pub(super) fn memory_bytes(&mut self) -> usize {
        buffer::buffers(&mut self.scratch);
        let buffers: usize = self.scratch.iter().map(|b| b.memory_bytes()).sum();
        let aggs: usize = self
            .aggs
            .iter()
            .map(|a| {
                std::mem::size_of::<CallsiteAgg>()
                    + a.outcomes
                        .iter()
                        .map(|o| o.window.memory_bytes() + o.total.memory_bytes())
                        .sum::<usize>()
            })
            .sum();
        let seen: usize = self.seen.values().map(|v| v.len() * 8).sum();
        buffers + aggs + seen
    }
}

/// What the drain aggregates for a record of `callsite`: the duration in nanoseconds for a
/// timed call, the value as it is for a value histogram, which records its value in `duration`.
#[inline]
fn value_of(record: &Record, callsite: &Callsite, timebase: &Timebase) -> u64 {
    if callsite.is_value_histogram() {
        record.duration
    } else {
        timebase.nanos(record.duration)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{CallsiteKind, Metadata};

    #[test]
    fn a_value_histogram_record_carries_its_value_as_it_is() {
        static VALUES: Callsite = Callsite::new(Metadata::new(
            "batch_rows",
            "m",
            "f",
            1,
            CallsiteKind::Histogram,
        ));
        static TIMED: Callsite =
            Callsite::new(Metadata::new("load", "m", "f", 1, CallsiteKind::Timer));
        let record = Record {
            start: 0,
            duration: 123_456_789,
            correlation: 0,
            callsite: 0,
            outcome: Outcome::Ok,
            generation: 0,
            detailed: false,
            kind: 0,
        };
        // The counter clock's ticks are not nanoseconds (on x86_64, the TSC's rate).
        let counter = Timebase::new(crate::clock::MODE_COUNTER);
        assert_eq!(value_of(&record, &VALUES, &counter), 123_456_789);
        assert_eq!(
            value_of(&record, &TIMED, &counter),
            crate::clock::ticks_to_nanos(crate::clock::MODE_COUNTER, 123_456_789)
        );
    }
}
