//! The live part of the operations page: per callsite points of the drain's windows (calls per
//! second, error ratio, p50 and p99) in a bounded ring, the latest totals, the pipeline's own
//! metrics and the system gauges, as the [`OpsSink`](super::OpsSink) last saw them.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instrument::{CallsiteKind, Histogram, Metadata, Outcome, SinkHealth, Snapshot};
use serde::Serialize;
use serde_json::{Value, json};

/// One callsite's part of one window, before it joins the ring.
#[derive(Clone, Debug, Default)]
pub(crate) struct CallsitePoint {
    /// Calls in the window, whatever their outcome.
    pub(crate) calls: u64,
    /// Errors and panics in the window.
    pub(crate) failures: u64,
    /// Median and 99th percentile of the window's timed calls; `None` when none was timed.
    pub(crate) p50_ns: Option<u64>,
    pub(crate) p99_ns: Option<u64>,
}

/// A callsite's identity on the page: name, module, kind and labels. Callsites declared at
/// several places with the same identity are one row, as in `instrumentctl summary`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct CallsiteKey {
    pub(crate) name: String,
    pub(crate) module: String,
    pub(crate) kind: &'static str,
    pub(crate) labels: Vec<(String, String)>,
}

impl CallsiteKey {
    fn of(meta: &Metadata) -> CallsiteKey {
        CallsiteKey {
            name: meta.name().to_owned(),
            module: meta.module_path().to_owned(),
            kind: match meta.kind() {
                CallsiteKind::Async => "async",
                CallsiteKind::Timer => "timer",
                _ => "function",
            },
            labels: meta
                .labels_slice()
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        }
    }

    /// A stable text key for the page: the identity's parts joined.
    fn id(&self) -> String {
        let labels: Vec<String> = self
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!(
            "{}|{}|{}|{}",
            self.name,
            self.module,
            self.kind,
            labels.join(",")
        )
    }
}

/// Totals since install of one callsite and outcome, as the latest snapshot said.
#[derive(Clone, Debug)]
struct OutcomeTotal {
    outcome: Outcome,
    count: u64,
    histogram: Arc<Histogram>,
}

/// One callsite's ring and totals.
#[derive(Debug)]
struct Series {
    key: CallsiteKey,
    calls_per_second: VecDeque<Option<f64>>,
    error_ratio: VecDeque<Option<f64>>,
    p50_ns: VecDeque<Option<u64>>,
    p99_ns: VecDeque<Option<u64>>,
    /// Per declaring callsite and outcome, the totals since install.
    totals: HashMap<(usize, Outcome), OutcomeTotal>,
}

impl Series {
    fn new(key: CallsiteKey, len: usize) -> Series {
        Series {
            key,
            calls_per_second: std::iter::repeat_n(None, len).collect(),
            error_ratio: std::iter::repeat_n(None, len).collect(),
            p50_ns: std::iter::repeat_n(None, len).collect(),
            p99_ns: std::iter::repeat_n(None, len).collect(),
            totals: HashMap::new(),
        }
    }

    fn pop_front(&mut self) {
        self.calls_per_second.pop_front();
        self.error_ratio.pop_front();
        self.p50_ns.pop_front();
        self.p99_ns.pop_front();
    }

    fn push(&mut self, point: Option<&CallsitePoint>, seconds: f64) {
        let point = point.cloned().unwrap_or_default();
        self.calls_per_second
            .push_back(Some(point.calls as f64 / seconds));
        self.error_ratio
            .push_back((point.calls > 0).then(|| point.failures as f64 / point.calls as f64));
        self.p50_ns.push_back(point.p50_ns);
        self.p99_ns.push_back(point.p99_ns);
    }

    fn totals_json(&self) -> Value {
        let mut outcomes = [0u64; 4];
        let mut histogram = Histogram::new();
        for total in self.totals.values() {
            let slot = match total.outcome {
                Outcome::Ok => 0,
                Outcome::Error => 1,
                Outcome::Panic => 2,
                _ => 3,
            };
            outcomes[slot] = outcomes[slot].saturating_add(total.count);
            histogram.merge(&total.histogram);
        }
        let [ok, errors, panics, cancelled] = outcomes;
        let calls = outcomes.iter().fold(0u64, |a, b| a.saturating_add(*b));
        let timed = histogram.count();
        json!({
            "calls": calls,
            "ok": ok,
            "errors": errors,
            "panics": panics,
            "cancelled": cancelled,
            "error_ratio": if calls == 0 { 0.0 } else { errors.saturating_add(panics) as f64 / calls as f64 },
            "timed": timed,
            "mean_ns": if timed == 0 { 0 } else { u64::try_from(histogram.sum() / u128::from(timed)).unwrap_or(u64::MAX) },
            "p50_ns": histogram.quantile(0.5),
            "p99_ns": histogram.quantile(0.99),
            "max_ns": histogram.max(),
        })
    }
}

/// What the page shows of one sink.
#[derive(Clone, Debug, Serialize)]
struct SinkLine {
    name: String,
    health: &'static str,
    reason: Option<String>,
    errors: u64,
    delivered: u64,
    backlog: u64,
    backlog_events: u64,
    audit_backlog: u64,
    dropped_batches: u64,
    lost_events: u64,
    lost_snapshots: u64,
    lost_audit_entries: u64,
    last_error: Option<String>,
}

/// The latest value of a `system_*` or `process_*` gauge.
#[derive(Clone, Debug, Serialize)]
struct GaugeLine {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// One window as the ring takes it: what [`Live::push`] reads from a snapshot.
#[derive(Debug, Default)]
pub(crate) struct Window {
    pub(crate) sequence: u64,
    pub(crate) start: Option<SystemTime>,
    pub(crate) end: Option<SystemTime>,
    pub(crate) points: Vec<(CallsiteKey, CallsitePoint)>,
    pub(crate) cpu_percent: Option<f64>,
    pub(crate) memory_percent: Option<f64>,
}

/// The ring of windows and everything else the page reads live.
#[derive(Debug)]
pub(crate) struct Live {
    history: Duration,
    max_points: usize,
    max_callsites: usize,
    /// Window ends, seconds since the Unix epoch.
    times: VecDeque<f64>,
    sequences: VecDeque<u64>,
    series: Vec<Series>,
    index: HashMap<CallsiteKey, usize>,
    /// Callsites not kept because `max_callsites` were already kept.
    untracked: std::collections::HashSet<CallsiteKey>,
    cpu_percent: VecDeque<Option<f64>>,
    memory_percent: VecDeque<Option<f64>>,
    gauges: Vec<GaugeLine>,
    pipeline: Value,
    sinks: Vec<SinkLine>,
    updated_at: Option<SystemTime>,
    /// The snapshot's age when the sink received it: drain interval, delivery and queueing.
    snapshot_delay: Option<Duration>,
}

impl Live {
    pub(crate) fn new(history: Duration, max_points: usize, max_callsites: usize) -> Live {
        Live {
            history,
            max_points: max_points.max(1),
            max_callsites,
            times: VecDeque::new(),
            sequences: VecDeque::new(),
            series: Vec::new(),
            index: HashMap::new(),
            untracked: std::collections::HashSet::new(),
            cpu_percent: VecDeque::new(),
            memory_percent: VecDeque::new(),
            gauges: Vec::new(),
            pipeline: Value::Null,
            sinks: Vec::new(),
            updated_at: None,
            snapshot_delay: None,
        }
    }

    /// Points kept now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.times.len()
    }

    /// Callsites kept now.
    #[cfg(test)]
    pub(crate) fn callsites(&self) -> usize {
        self.series.len()
    }

    /// Adds a window's points; drops those older than the history or past the point limit.
    pub(crate) fn push(&mut self, window: &Window) {
        let (Some(start), Some(end)) = (window.start, window.end) else {
            return;
        };
        let seconds = end
            .duration_since(start)
            .unwrap_or(Duration::ZERO)
            .as_secs_f64()
            .max(0.001);
        let end_secs = end
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let len = self.times.len();
        let mut seen: HashMap<usize, &CallsitePoint> = HashMap::new();
        for (key, point) in &window.points {
            let i = match self.index.get(key) {
                Some(&i) => i,
                None if self.series.len() < self.max_callsites => {
                    self.series.push(Series::new(key.clone(), len));
                    self.index.insert(key.clone(), self.series.len() - 1);
                    self.series.len() - 1
                }
                None => {
                    if self.untracked.len() < 100_000 {
                        self.untracked.insert(key.clone());
                    }
                    continue;
                }
            };
            seen.insert(i, point);
        }
        for (i, series) in self.series.iter_mut().enumerate() {
            series.push(seen.get(&i).copied(), seconds);
        }
        self.times.push_back(end_secs);
        self.sequences.push_back(window.sequence);
        self.cpu_percent.push_back(window.cpu_percent);
        self.memory_percent.push_back(window.memory_percent);
        let oldest = end_secs - self.history.as_secs_f64();
        while self.times.len() > self.max_points || self.times.front().is_some_and(|&t| t <= oldest)
        {
            self.times.pop_front();
            self.sequences.pop_front();
            self.cpu_percent.pop_front();
            self.memory_percent.pop_front();
            for series in &mut self.series {
                series.pop_front();
            }
        }
    }

    /// Reads a snapshot: its window into the ring, its totals, gauges and self metrics.
    pub(crate) fn apply(&mut self, snapshot: &Snapshot, received: SystemTime) {
        let mut merged: BTreeMap<CallsiteKey, (CallsitePoint, Histogram)> = BTreeMap::new();
        let mut metas: HashMap<*const Metadata, CallsiteKey> = HashMap::new();
        for call in &snapshot.calls {
            if !matches!(
                call.callsite.kind(),
                CallsiteKind::Function | CallsiteKind::Async | CallsiteKind::Timer
            ) {
                continue;
            }
            let key = metas
                .entry(std::ptr::from_ref(call.callsite))
                .or_insert_with(|| CallsiteKey::of(call.callsite))
                .clone();
            let (point, histogram) = merged.entry(key).or_default();
            point.calls = point.calls.saturating_add(call.window.count);
            if matches!(call.outcome, Outcome::Error | Outcome::Panic) {
                point.failures = point.failures.saturating_add(call.window.count);
            }
            histogram.merge(&call.window_histogram);
        }
        let points = merged
            .into_iter()
            .map(|(key, (mut point, histogram))| {
                if histogram.count() > 0 {
                    point.p50_ns = Some(histogram.quantile(0.5));
                    point.p99_ns = Some(histogram.quantile(0.99));
                }
                (key, point)
            })
            .collect();
        let gauge = |name: &str| snapshot.gauge(name);
        self.push(&Window {
            sequence: snapshot.sequence,
            start: Some(snapshot.window_start),
            end: Some(snapshot.window_end),
            points,
            cpu_percent: gauge("system_cpu_usage_percent"),
            memory_percent: gauge("system_memory_usage_percent"),
        });
        // Totals since install, per declaring callsite and outcome.
        for call in &snapshot.calls {
            let Some(key) = metas.get(&std::ptr::from_ref(call.callsite)) else {
                continue;
            };
            let Some(&i) = self.index.get(key) else {
                continue;
            };
            let id = std::ptr::from_ref(call.callsite) as usize;
            self.series[i].totals.insert(
                (id, call.outcome),
                OutcomeTotal {
                    outcome: call.outcome,
                    count: call.total.count,
                    histogram: Arc::clone(&call.histogram),
                },
            );
        }
        self.apply_gauges(snapshot);
        self.apply_self_metrics(snapshot, received);
        self.updated_at = Some(received);
    }

    /// The latest `system_*` and `process_*` gauges.
    fn apply_gauges(&mut self, snapshot: &Snapshot) {
        self.gauges = snapshot
            .gauges
            .iter()
            .filter(|g| {
                let name = g.callsite.name();
                name.starts_with("system_") || name.starts_with("process_")
            })
            .map(|g| GaugeLine {
                name: g.callsite.name().to_owned(),
                labels: g
                    .callsite
                    .labels_slice()
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                value: g.value,
            })
            .filter(|g| g.value.is_finite())
            .collect();
        self.gauges
            .sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.labels.cmp(&b.labels)));
    }

    /// The pipeline's own metrics and each sink's state.
    fn apply_self_metrics(&mut self, snapshot: &Snapshot, received: SystemTime) {
        let m = &snapshot.self_metrics;
        self.snapshot_delay = received.duration_since(snapshot.window_end).ok();
        self.pipeline = json!({
            "events_recorded": m.events_recorded,
            "events_dropped": m.events_dropped,
            "queue_high_water": m.queue_high_water,
            "drain_cycle_ns": nanos(m.drain_cycle),
            "snapshot_delay_ns": self.snapshot_delay.map(nanos),
            "memory_bytes": m.memory_bytes,
            "threads": m.threads,
            "drain_panics": m.drain_panics,
            "audit_queued": m.audit_queued,
            "audit_orphaned": m.audit_orphaned,
            "notices_dropped": m.notices_dropped,
            "callsite_overflows": m.callsite_overflows,
        });
        self.sinks = m
            .sinks
            .iter()
            .map(|s| {
                let (health, reason) = match &s.health {
                    SinkHealth::Degraded(why) => ("degraded", Some(why.clone())),
                    SinkHealth::Unhealthy(why) => ("unhealthy", Some(why.clone())),
                    _ => ("healthy", None),
                };
                SinkLine {
                    name: s.name.clone(),
                    health,
                    reason,
                    errors: s.errors,
                    delivered: s.delivered,
                    backlog: s.backlog,
                    backlog_events: s.backlog_events,
                    audit_backlog: s.audit_backlog,
                    dropped_batches: s.dropped_batches,
                    lost_events: s.lost.events,
                    lost_snapshots: s.lost.snapshots,
                    lost_audit_entries: s.lost.audit_entries,
                    last_error: s.last_error.clone(),
                }
            })
            .collect();
    }

    /// The JSON of `/api/live`: every point after snapshot `after` (all of them when `after` is
    /// `None` or no longer in the ring, with `reset` true).
    pub(crate) fn to_json(&self, after: Option<u64>) -> Value {
        let first = self.sequences.front().copied();
        let last = self.sequences.back().copied();
        let from = match (after, first, last) {
            (Some(after), Some(first), Some(last))
                if after.saturating_add(1) >= first && after <= last =>
            {
                Some(self.sequences.partition_point(|&s| s <= after))
            }
            _ => None,
        };
        let reset = from.is_none();
        let from = from.unwrap_or(0);
        let tail = |d: &VecDeque<Option<f64>>| -> Vec<Option<f64>> {
            d.iter().skip(from).copied().collect()
        };
        let tail_u = |d: &VecDeque<Option<u64>>| -> Vec<Option<u64>> {
            d.iter().skip(from).copied().collect()
        };
        let mut order: Vec<&Series> = self.series.iter().collect();
        order.sort_by(|a, b| a.key.cmp(&b.key));
        let callsites: Vec<Value> = order
            .into_iter()
            .map(|s| {
                let labels: BTreeMap<&str, &str> = s
                    .key
                    .labels
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                json!({
                    "id": s.key.id(),
                    "name": s.key.name,
                    "module": s.key.module,
                    "kind": s.key.kind,
                    "labels": labels,
                    "calls_per_second": tail(&s.calls_per_second),
                    "error_ratio": tail(&s.error_ratio),
                    "p50_ns": tail_u(&s.p50_ns),
                    "p99_ns": tail_u(&s.p99_ns),
                    "totals": s.totals_json(),
                })
            })
            .collect();
        json!({
            "sequence": last,
            "reset": reset,
            "history_seconds": self.history.as_secs(),
            "updated_at": self.updated_at.map(|t| humantime::format_rfc3339_micros(t).to_string()),
            "time": self.times.iter().skip(from).copied().collect::<Vec<f64>>(),
            "callsites": callsites,
            "untracked_callsites": self.untracked.len(),
            "system": {
                "cpu_percent": tail(&self.cpu_percent),
                "memory_percent": tail(&self.memory_percent),
                "gauges": self.gauges,
            },
            "pipeline": self.pipeline,
            "sinks": self.sinks,
        })
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use super::{CallsiteKey, CallsitePoint, Live, Window};

    fn key(name: &str) -> CallsiteKey {
        CallsiteKey {
            name: name.to_owned(),
            module: "m".to_owned(),
            kind: "function",
            labels: Vec::new(),
        }
    }

    fn window(sequence: u64, names: &[&str]) -> Window {
        let start = UNIX_EPOCH + Duration::from_secs(1_000_000 + sequence);
        Window {
            sequence,
            start: Some(start),
            end: Some(start + Duration::from_secs(1)),
            points: names
                .iter()
                .map(|n| {
                    (
                        key(n),
                        CallsitePoint {
                            calls: 10,
                            failures: 1,
                            p50_ns: Some(1_000),
                            p99_ns: Some(9_000),
                        },
                    )
                })
                .collect(),
            cpu_percent: Some(50.0),
            memory_percent: None,
        }
    }

    #[test]
    fn the_ring_keeps_the_history_and_no_more() {
        let mut live = Live::new(Duration::from_secs(900), 3600, 10);
        for sequence in 1..=2_000 {
            live.push(&window(sequence, &["a", "b"]));
        }
        // 900 s of one-second windows: the window ending exactly 900 s before the last is out.
        assert_eq!(live.len(), 900);
        let all = live.to_json(None);
        assert_eq!(all["reset"], true);
        assert_eq!(all["time"].as_array().unwrap().len(), 900);
        let a = &all["callsites"][0];
        assert_eq!(a["name"], "a");
        assert_eq!(a["calls_per_second"][0], 10.0);
        assert_eq!(a["error_ratio"][0], 0.1);
        assert_eq!(a["p99_ns"][899], 9000);
        // After a known sequence: only the newer points.
        let recent = live.to_json(Some(1_998));
        assert_eq!(recent["reset"], false);
        assert_eq!(recent["time"].as_array().unwrap().len(), 2);
        assert_eq!(
            recent["callsites"][1]["p50_ns"].as_array().unwrap().len(),
            2
        );
        // A sequence no longer (or not yet) in the ring: everything again.
        assert_eq!(live.to_json(Some(5))["reset"], true);
        assert_eq!(live.to_json(Some(5_000))["reset"], true);
        // Up to date: nothing new.
        let none = live.to_json(Some(2_000));
        assert_eq!(none["reset"], false);
        assert!(none["time"].as_array().unwrap().is_empty());
    }

    #[test]
    fn the_point_limit_bounds_the_ring_whatever_the_window() {
        let mut live = Live::new(Duration::from_secs(900), 100, 10);
        for sequence in 1..=500 {
            live.push(&window(sequence, &["a"]));
        }
        assert_eq!(live.len(), 100);
    }

    #[test]
    fn callsites_past_the_limit_are_counted_not_kept() {
        let mut live = Live::new(Duration::from_secs(900), 3600, 2);
        live.push(&window(1, &["a", "b", "c"]));
        live.push(&window(2, &["d"]));
        assert_eq!(live.callsites(), 2);
        let json = live.to_json(None);
        assert_eq!(json["untracked_callsites"], 2);
        // A callsite that appears later has no points before it appeared, and a callsite with
        // no calls in a window has a rate of zero and no ratio.
        assert_eq!(json["callsites"][0]["calls_per_second"][1], 0.0);
        assert!(json["callsites"][0]["error_ratio"][1].is_null());
    }

    #[test]
    fn a_late_callsite_is_padded_to_the_time_axis() {
        let mut live = Live::new(Duration::from_secs(900), 3600, 10);
        live.push(&window(1, &["a"]));
        live.push(&window(2, &["a", "b"]));
        let json = live.to_json(None);
        let b = &json["callsites"][1];
        assert_eq!(b["name"], "b");
        assert!(b["calls_per_second"][0].is_null());
        assert_eq!(b["calls_per_second"][1], 10.0);
        assert_eq!(json["system"]["cpu_percent"][1], 50.0);
        let _ = SystemTime::now();
    }
}
