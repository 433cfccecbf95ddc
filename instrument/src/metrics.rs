//! A [`metrics`] recorder: `metrics::counter!`, `gauge!` and `histogram!` in the host
//! and its dependencies flow into the installed pipeline and reach every sink, like the
//! metrics registered with [`metric`](crate::metric).
//!
//! ```
//! let pipeline = instrument::builder().sink(instrument::NullSink).install()?;
//! instrument::metrics::install()?; // the process's one `metrics` recorder
//!
//! metrics::counter!("files_parsed_total", "stage" => "parse").increment(3);
//! metrics::gauge!("files_queued").increment(5.0);
//! metrics::gauge!("files_queued").decrement(2.0);
//! metrics::histogram!("parse_duration_seconds").record(0.0042);
//! pipeline.flush()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # How `metrics` maps onto the pipeline
//! Each key (name and labels) is registered once as a callsite of the core, with the key's
//! labels as the callsite's labels, and its handle is cached; a `counter!` call then costs a
//! lookup in that cache (the `metrics` macros look their key up on every call) plus what the
//! handle costs to record.
//!
//! | `metrics` | pipeline | notes |
//! | --- | --- | --- |
//! | `counter!(..).increment(n)` | [`Counter::add`](crate::Counter::add) | |
//! | `counter!(..).absolute(v)` | adds `v` minus the last absolute value | a smaller `v` is a reset: `v` is added |
//! | `gauge!(..).set(v)`, `increment`, `decrement` | [`Gauge::set`](crate::Gauge::set), [`add`](crate::Gauge::add), [`sub`](crate::Gauge::sub) | |
//! | `histogram!(..).record(v)` | [`ValueHistogram::record`](crate::ValueHistogram::record) | values are whole numbers: see below |
//!
//! The pipeline's value histograms hold whole numbers (`u64`), `metrics` records `f64`s:
//! - a histogram in seconds (its name ends in `_seconds`, or `describe_histogram!` gave it
//!   `Unit::Seconds` before its first use) is recorded in nanoseconds, with the unit
//!   [`Unit::Nanoseconds`]: `record(0.0042)` stores `4_200_000`. The
//!   Prometheus sink exports such a histogram (a name ending in `_seconds`, values in
//!   nanoseconds) in seconds again; the `SQLite` and JSON sinks store the nanoseconds;
//! - any other value is rounded to the nearest whole number (`2.4` stores `2`): record
//!   fractions in a unit that makes them whole (`_bytes`, `_microseconds`, per-mille);
//! - a negative, infinite or NaN value is not recorded; it is counted in
//!   `instrument_metrics_bridge_rejected_total{reason="value"}`.
//!
//! The scale of a histogram is decided by its name's first registration, so that all its label
//! sets agree. As with [`metric`](crate::metric) handles, nothing is recorded while no pipeline
//! is installed: a gauge `increment` made then is lost, not applied later.
//!
//! # Names and labels
//! `metrics` accepts any text; Prometheus does not. Names are sanitized as
//! `metrics-exporter-prometheus` does: every character outside `[a-zA-Z0-9_:]` becomes `_`, and
//! a name starting with a digit gets a leading `_` (`http.requests` becomes `http_requests`).
//! Label names become `[a-zA-Z_][a-zA-Z0-9_]*` the same way; a label name the exporters set
//! themselves (`le`, `quantile`, `function`, `module`, `outcome`, `error_kind`) or one starting
//! with `__` gets the prefix `exported_`, as Prometheus renames clashing target labels
//! (`function` becomes `exported_function`); of two labels that end up with the same name, the
//! first is kept. Label values are kept as they are.
//!
//! `describe_counter!`, `describe_gauge!` and `describe_histogram!` give the name's description
//! (a Prometheus `# HELP`) and unit, when called before the name's first use: a name's
//! description and unit are fixed by its first registration.
//!
//! # Memory at any rate
//! Recording allocates nothing and takes no lock. What is kept grows with the number of keys,
//! not with the call rate, and is bounded:
//! - the core's cardinality limit applies (10,000 label sets per name, see
//!   [`Builder::cardinality_limit`](crate::Builder::cardinality_limit)): further label sets of
//!   a name share its `overflow="true"` series, and each such registration counts in
//!   `instrument_callsite_overflow_total` ([`SelfMetrics::callsite_overflows`](crate::SelfMetrics::callsite_overflows));
//! - the cache of keys holds at most 65,536 keys ([`KEY_CACHE_CAPACITY`]); a key first seen
//!   after that still records to its callsite, but looks it up in the core's registry (under
//!   its lock) on every use;
//! - when the process holds as many run-time callsites as the core allows and a new name has
//!   no overflow series to fold into, its key records nothing and is counted in
//!   `instrument_metrics_bridge_rejected_total{reason="registration"}`.
//!
//! # Living with another recorder
//! `metrics` has one global recorder per process, set once. [`install`] sets this one, and
//! fails with [`InstallError`] (naming the problem, handing the recorder back) when the host
//! or a dependency has set one already; it never replaces it. To feed this recorder and
//! another one (`metrics-exporter-prometheus`, a `StatsD` exporter, ...), install a fan-out of
//! both instead, with `metrics-util`'s `Fanout` layer:
//!
//! ```
//! use metrics_util::layers::FanoutBuilder;
//!
//! # let theirs = metrics::NoopRecorder;
//! // `theirs`: the recorder the host used to install on its own.
//! let both = FanoutBuilder::default()
//!     .add_recorder(instrument::metrics::MetricsRecorder::new())
//!     .add_recorder(theirs)
//!     .build();
//! metrics::set_global_recorder(both).expect("no recorder installed yet");
//! ```
//!
//! Where the other recorder is installed out of the host's reach (a framework sets it), keep
//! that one and scope this one to the code that should reach the pipeline with
//! `metrics::with_local_recorder(&recorder, || ...)`, or forward from a recorder of your own
//! to both. A [`MetricsRecorder`] is cheap to clone; clones share their cache.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use ::metrics::{
    Counter as MetricsCounter, CounterFn, Gauge as MetricsGauge, GaugeFn,
    Histogram as MetricsHistogram, HistogramFn, Key, KeyName, Metadata as MetricsMetadata,
    Recorder, SharedString, Unit as MetricsUnit,
};

use crate::dynamic::{Counter, Gauge, MetricBuilder, ValueHistogram};
use crate::metadata::{RESERVED_LABELS, Unit};

/// Keys the recorder caches (all kinds together) before further keys are looked up in the
/// core's registry on every use.
pub const KEY_CACHE_CAPACITY: usize = 65_536;

/// Names whose `describe_*!` description and unit are kept for their first registration.
const DESCRIPTION_CAPACITY: usize = 10_000;

/// Shards of each key cache, so that threads recording different keys do not share a lock's
/// cache line.
const SHARDS: usize = 16;

/// The name of the bridge's own counter of what it could not record.
const REJECTED: &str = "instrument_metrics_bridge_rejected_total";

/// Installs a new [`MetricsRecorder`] as the process's global `metrics` recorder.
///
/// # Errors
/// [`InstallError`] when a global `metrics` recorder is already set (by the host, a
/// dependency, or an earlier `install`): `metrics` allows one per process. See the
/// [module docs](self) for feeding both.
pub fn install() -> Result<(), InstallError> {
    MetricsRecorder::new().install()
}

/// A `metrics::Recorder` that records into the installed pipeline. See the [module docs](self).
///
/// It records while a pipeline is installed, whichever one; with none installed it records
/// nothing (as [`metric`](crate::metric) handles do).
#[derive(Clone)]
pub struct MetricsRecorder {
    inner: Arc<Inner>,
}

impl fmt::Debug for MetricsRecorder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsRecorder")
            .field("cached_keys", &self.inner.cached.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for MetricsRecorder {
    fn default() -> Self {
        MetricsRecorder::new()
    }
}

/// Why [`install`] failed: a global `metrics` recorder was already set.
pub struct InstallError {
    recorder: MetricsRecorder,
}

impl InstallError {
    /// The recorder that was not installed, to use another way (a `Fanout`, a local recorder).
    #[must_use]
    pub fn into_recorder(self) -> MetricsRecorder {
        self.recorder
    }
}

impl fmt::Debug for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InstallError").finish_non_exhaustive()
    }
}

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "cannot install the instrument metrics recorder: this process already has a global \
             `metrics` recorder (metrics allows one); install a \
             `metrics_util::layers::Fanout` of both instead (see instrument::metrics)",
        )
    }
}

impl std::error::Error for InstallError {}

impl MetricsRecorder {
    /// A recorder with an empty cache.
    #[must_use]
    pub fn new() -> Self {
        let rejected = |reason: &'static str| {
            crate::metric(REJECTED)
                .label("reason", reason)
                .description(
                    "metrics facade values and keys the instrument bridge could not record",
                )
                .counter()
                .ok()
        };
        MetricsRecorder {
            inner: Arc::new(Inner {
                counters: Cache::new(),
                gauges: Cache::new(),
                histograms: Cache::new(),
                cached: AtomicUsize::new(0),
                descriptions: Mutex::new(HashMap::new()),
                seconds: Mutex::new(HashMap::new()),
                rejected_values: rejected("value"),
                rejected_keys: rejected("registration"),
            }),
        }
    }

    /// Installs this recorder as the process's global `metrics` recorder.
    ///
    /// # Errors
    /// [`InstallError`] when one is set already; see [`install`].
    pub fn install(self) -> Result<(), InstallError> {
        ::metrics::set_global_recorder(self.clone()).map_err(|_| InstallError { recorder: self })
    }

    /// The keys cached so far (at most [`KEY_CACHE_CAPACITY`]).
    #[must_use]
    pub fn cached_keys(&self) -> usize {
        self.inner.cached.load(Ordering::Relaxed)
    }
}

struct Inner {
    counters: Cache<CounterEntry>,
    gauges: Cache<GaugeEntry>,
    histograms: Cache<HistogramEntry>,
    /// Keys cached, all caches together.
    cached: AtomicUsize,
    /// Description and unit per kind and (sanitized) name, from `describe_*!`.
    descriptions: Mutex<HashMap<(Kind, String), Described>>,
    /// Per histogram name registered: whether it is in seconds (kept as nanoseconds). Decided
    /// by the name's first registration, so that all its label sets scale alike; bounded by
    /// the callsites the core registers.
    seconds: Mutex<HashMap<String, bool>>,
    /// `instrument_metrics_bridge_rejected_total{reason="value"}`; `None` if the process was
    /// full when the recorder was made.
    rejected_values: Option<Counter>,
    /// `...{reason="registration"}`.
    rejected_keys: Option<Counter>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

#[derive(Clone, Debug)]
struct Described {
    unit: Option<MetricsUnit>,
    description: String,
}

/// Hashes a [`Key`] by the hash it carries (`Key`'s `Hash` writes exactly that `u64`).
#[derive(Default)]
struct KeyHash(u64);

impl Hasher for KeyHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached for `Key`; a plain FNV-1a for anything else.
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

type Shard<E> = RwLock<HashMap<Key, Arc<E>, BuildHasherDefault<KeyHash>>>;

/// Entries by key, sharded by the key's hash.
struct Cache<E> {
    shards: [Shard<E>; SHARDS],
    /// Entries by callsite, for keys past the capacity and keys that share a callsite: bounded
    /// by the number of callsites the core registers.
    by_callsite: Mutex<HashMap<usize, Arc<E>>>,
}

impl<E> Cache<E> {
    fn new() -> Self {
        Cache {
            shards: std::array::from_fn(|_| RwLock::new(HashMap::default())),
            by_callsite: Mutex::new(HashMap::new()),
        }
    }

    fn shard(&self, key: &Key) -> &Shard<E> {
        &self.shards[(key.get_hash() % SHARDS as u64) as usize]
    }

    fn get(&self, key: &Key) -> Option<Arc<E>> {
        let shard = self
            .shard(key)
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        shard.get(key).cloned()
    }

    /// The entry of `key`: the cached one, or the one of the callsite `register` returns
    /// (created by `make`), cached while there is room.
    fn entry<H: Copy>(
        &self,
        key: &Key,
        cached: &AtomicUsize,
        register: impl FnOnce() -> Option<H>,
        callsite: impl Fn(H) -> usize,
        make: impl FnOnce(H) -> E,
    ) -> Option<Arc<E>> {
        if let Some(entry) = self.get(key) {
            return Some(entry);
        }
        let handle = register()?;
        let entry = {
            let mut by_callsite = self
                .by_callsite
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            Arc::clone(
                by_callsite
                    .entry(callsite(handle))
                    .or_insert_with(|| Arc::new(make(handle))),
            )
        };
        let mut shard = self
            .shard(key)
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if !shard.contains_key(key)
            && cached
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < KEY_CACHE_CAPACITY).then_some(n + 1)
                })
                .is_ok()
        {
            shard.insert(key.clone(), Arc::clone(&entry));
        }
        Some(entry)
    }
}

/// A counter and the last value `absolute` gave it.
struct CounterEntry {
    counter: Counter,
    absolute: AtomicU64,
}

impl CounterFn for CounterEntry {
    fn increment(&self, value: u64) {
        self.counter.add(value);
    }

    fn absolute(&self, value: u64) {
        let last = self.absolute.swap(value, Ordering::Relaxed);
        // A smaller value is a reset of the source's counter: it counted `value` since.
        self.counter.add(value.checked_sub(last).unwrap_or(value));
    }
}

struct GaugeEntry(Gauge);

impl GaugeFn for GaugeEntry {
    fn increment(&self, value: f64) {
        self.0.add(value);
    }

    fn decrement(&self, value: f64) {
        self.0.sub(value);
    }

    fn set(&self, value: f64) {
        self.0.set(value);
    }
}

/// A value histogram and the factor its values are multiplied by before rounding.
struct HistogramEntry {
    histogram: ValueHistogram,
    scale: f64,
    rejected: Option<Counter>,
}

impl HistogramFn for HistogramEntry {
    fn record(&self, value: f64) {
        match whole(value, self.scale) {
            Some(value) => self.histogram.record(value),
            None => {
                if let Some(rejected) = self.rejected {
                    rejected.add(1);
                }
            }
        }
    }

    fn record_many(&self, value: f64, count: usize) {
        match whole(value, self.scale) {
            Some(value) => {
                for _ in 0..count {
                    self.histogram.record(value);
                }
            }
            None => {
                if let Some(rejected) = self.rejected {
                    rejected.add(count as u64);
                }
            }
        }
    }
}

/// `value * scale` rounded to a whole number (saturating at `u64::MAX`); `None` for a
/// negative, infinite or NaN value.
fn whole(value: f64, scale: f64) -> Option<u64> {
    let scaled = value * scale;
    // `as` saturates; the checks keep out what it would turn into 0 or `u64::MAX` silently.
    (scaled.is_finite() && value >= 0.0).then(|| scaled.round() as u64)
}

/// `name` as a Prometheus metric name: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
fn metric_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// `name` as a label name of a callsite: `[a-zA-Z_][a-zA-Z0-9_]*`, not reserved, not `__*`.
fn label_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if out.is_empty() || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    if out.starts_with("__") || RESERVED_LABELS.contains(&out.as_str()) {
        out.insert_str(0, "exported_");
    }
    out
}

fn unit(unit: MetricsUnit) -> Option<Unit> {
    match unit {
        MetricsUnit::Count => Some(Unit::Count),
        MetricsUnit::Percent => Some(Unit::Percent),
        MetricsUnit::Seconds => Some(Unit::Seconds),
        MetricsUnit::Milliseconds => Some(Unit::Milliseconds),
        MetricsUnit::Microseconds => Some(Unit::Microseconds),
        MetricsUnit::Nanoseconds => Some(Unit::Nanoseconds),
        MetricsUnit::Bytes => Some(Unit::Bytes),
        _ => None,
    }
}

impl Inner {
    /// The builder of `key`'s callsite: sanitized name and labels, and what `describe_*!` said.
    fn builder(&self, kind: Kind, key: &Key) -> (MetricBuilder, Option<MetricsUnit>) {
        let name = metric_name(key.name());
        let mut labels: Vec<(String, String)> = Vec::new();
        for label in key.labels() {
            let label_name = label_name(label.key());
            if labels.iter().all(|(k, _)| *k != label_name) {
                labels.push((label_name, label.value().to_owned()));
            }
        }
        let described = self
            .descriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(kind, name.clone()))
            .cloned();
        let mut builder = crate::metric(name).labels(labels);
        let mut metrics_unit = None;
        if let Some(described) = described {
            if !described.description.is_empty() {
                builder = builder.description(described.description);
            }
            metrics_unit = described.unit;
            if let Some(unit) = described.unit.and_then(unit) {
                builder = builder.unit(unit);
            }
        }
        (builder, metrics_unit)
    }

    fn rejected_key(&self) {
        if let Some(rejected) = self.rejected_keys {
            rejected.add(1);
        }
    }

    fn describe(&self, kind: Kind, name: &KeyName, unit: Option<MetricsUnit>, text: &str) {
        let mut descriptions = self
            .descriptions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if descriptions.len() < DESCRIPTION_CAPACITY {
            descriptions
                .entry((kind, metric_name(name.as_str())))
                .or_insert_with(|| Described {
                    unit,
                    description: text.to_owned(),
                });
        }
    }
}

impl Recorder for MetricsRecorder {
    fn describe_counter(&self, key: KeyName, unit: Option<MetricsUnit>, text: SharedString) {
        self.inner.describe(Kind::Counter, &key, unit, &text);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<MetricsUnit>, text: SharedString) {
        self.inner.describe(Kind::Gauge, &key, unit, &text);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<MetricsUnit>, text: SharedString) {
        self.inner.describe(Kind::Histogram, &key, unit, &text);
    }

    fn register_counter(&self, key: &Key, _: &MetricsMetadata<'_>) -> MetricsCounter {
        let inner = &*self.inner;
        let entry = inner.counters.entry(
            key,
            &inner.cached,
            || {
                let registered = inner.builder(Kind::Counter, key).0.counter().ok();
                if registered.is_none() {
                    inner.rejected_key();
                }
                registered
            },
            |handle| std::ptr::from_ref(handle.metadata()) as usize,
            |counter| CounterEntry {
                counter,
                absolute: AtomicU64::new(0),
            },
        );
        entry.map_or_else(MetricsCounter::noop, MetricsCounter::from_arc)
    }

    fn register_gauge(&self, key: &Key, _: &MetricsMetadata<'_>) -> MetricsGauge {
        let inner = &*self.inner;
        let entry = inner.gauges.entry(
            key,
            &inner.cached,
            || {
                let registered = inner.builder(Kind::Gauge, key).0.gauge().ok();
                if registered.is_none() {
                    inner.rejected_key();
                }
                registered
            },
            |handle| std::ptr::from_ref(handle.metadata()) as usize,
            GaugeEntry,
        );
        entry.map_or_else(MetricsGauge::noop, MetricsGauge::from_arc)
    }

    fn register_histogram(&self, key: &Key, _: &MetricsMetadata<'_>) -> MetricsHistogram {
        let inner = &*self.inner;
        let entry = inner.histograms.entry(
            key,
            &inner.cached,
            || {
                let (builder, described) = inner.builder(Kind::Histogram, key);
                let name = metric_name(key.name());
                let decided = inner
                    .seconds
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .get(&name)
                    .copied();
                let seconds = decided.unwrap_or(match described {
                    Some(unit) => unit == MetricsUnit::Seconds,
                    None => name.ends_with("_seconds"),
                });
                let builder = if seconds {
                    builder.unit(Unit::Nanoseconds)
                } else {
                    builder
                };
                let registered = builder.histogram().ok().map(|h| (h, seconds));
                match registered {
                    Some(_) if decided.is_none() => {
                        inner
                            .seconds
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(name, seconds);
                    }
                    Some(_) => {}
                    None => inner.rejected_key(),
                }
                registered
            },
            |(handle, _)| std::ptr::from_ref(handle.metadata()) as usize,
            |(histogram, seconds)| HistogramEntry {
                histogram,
                scale: if seconds { 1e9 } else { 1.0 },
                rejected: inner.rejected_values,
            },
        );
        entry.map_or_else(MetricsHistogram::noop, MetricsHistogram::from_arc)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_sanitized_as_prometheus_needs() {
        assert_eq!(metric_name("http.requests"), "http_requests");
        assert_eq!(metric_name("rows_total"), "rows_total");
        assert_eq!(metric_name("a:b-c"), "a:b_c");
        assert_eq!(metric_name("5xx"), "_5xx");
        assert_eq!(metric_name(""), "_");
        assert_eq!(metric_name("débit"), "d_bit");
        assert_eq!(label_name("status.code"), "status_code");
        assert_eq!(label_name("a:b"), "a_b");
        assert_eq!(label_name("function"), "exported_function");
        assert_eq!(label_name("le"), "exported_le");
        assert_eq!(label_name("__meta"), "exported___meta");
        assert_eq!(label_name("1st"), "_1st");
        for name in ["http.requests", "5xx", "", "a b"] {
            assert!(
                crate::metadata::is_metric_name(&metric_name(name)),
                "{name}"
            );
        }
        for name in ["function", "__x", "1st", "a-b", "outcome"] {
            assert!(crate::metadata::is_label_name(&label_name(name)), "{name}");
        }
    }

    #[test]
    fn values_become_whole_numbers_or_are_refused() {
        assert_eq!(whole(2.4, 1.0), Some(2));
        assert_eq!(whole(2.5, 1.0), Some(3));
        assert_eq!(whole(0.0042, 1e9), Some(4_200_000));
        assert_eq!(whole(0.0, 1e9), Some(0));
        assert_eq!(whole(1e30, 1.0), Some(u64::MAX));
        assert_eq!(whole(-1.0, 1.0), None);
        assert_eq!(whole(f64::NAN, 1.0), None);
        assert_eq!(whole(f64::INFINITY, 1.0), None);
        assert_eq!(whole(1e19, 1.0), Some(10_000_000_000_000_000_000));
    }
}
