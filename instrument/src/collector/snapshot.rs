//! Snapshots: every aggregate at the end of a window, or when a flush or shutdown cuts one.

use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};

use super::aggregate::Aggregates;
use crate::callsite::GaugeCell;
use crate::histogram::Histogram;
use crate::metadata::CallsiteKind;
use crate::record::Outcome;
use crate::sink::{
    CallStats, CounterValue, ErrorKindCount, GaugeValue, Snapshot, SnapshotReason, Stats,
};

impl Aggregates {
    /// Closes the window and, with `build`, returns its snapshot. Without (no sink wants
    /// snapshots), the window is merged into the totals and reset in place, keeping its
    /// allocations for the next one.
    pub(super) fn snapshot(&mut self, reason: SnapshotReason, build: bool) -> Option<Snapshot> {
        let now = SystemTime::now();
        let mut calls = Vec::new();
        let mut counters = Vec::new();
        let mut gauges = Vec::new();
        for agg in &mut self.aggs {
            let meta = agg.callsite.metadata();
            match meta.kind() {
                CallsiteKind::Counter => {
                    if build && agg.touched {
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
                    if build && cell.state == self.state {
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
                if !build {
                    Arc::make_mut(&mut o.total).merge(&o.window);
                    o.window.reset();
                    o.dropped_window = 0;
                    if i == Outcome::Error.index() {
                        for (_, window, total) in &mut agg.kinds {
                            *total = total.saturating_add(std::mem::take(window));
                        }
                    }
                    continue;
                }
                let window = stats(&o.window, o.dropped_window);
                Arc::make_mut(&mut o.total).merge(&o.window);
                let window_histogram = Arc::new(std::mem::take(&mut o.window));
                o.dropped_window = 0;
                let outcome = Outcome::ALL[i];
                let error_kinds = if outcome == Outcome::Error {
                    agg.kinds
                        .iter_mut()
                        .map(|(kind, window, total)| {
                            *total = total.saturating_add(*window);
                            ErrorKindCount {
                                kind,
                                window: std::mem::take(window),
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
                    histogram: Arc::clone(&o.total),
                    window_histogram,
                    error_kinds,
                });
            }
        }
        self.snapshots += 1;
        if !build {
            self.window_start = now;
            return None;
        }
        let snapshot = Snapshot {
            sequence: self.snapshots,
            reason,
            window_start: self.window_start,
            window_end: now,
            calls,
            counters,
            gauges: gauges.into_iter().map(|(g, _)| g).collect(),
            self_metrics: self.metrics.clone(),
        };
        self.window_start = now;
        Some(snapshot)
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
        count: h.count().saturating_add(dropped),
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
