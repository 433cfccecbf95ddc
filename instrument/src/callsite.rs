//! Callsites: one `static` per instrumented function or manual metric, or one leaked at run time
//! per metric name and label set (`dynamic.rs`).
//!
//! A callsite is registered lazily on its first recorded call: one relaxed load of its id after
//! that. Registration assigns a dense index so the drain can aggregate by array lookup.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

/// What a callsite measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CallsiteKind {
    /// A synchronous function.
    Function,
    /// An `async fn`: timed across awaits; dropping it early records `cancelled`.
    Async,
    /// A block timer from [`timer!`](crate::timer).
    Timer,
    /// A monotonic counter from [`counter!`](crate::counter).
    Counter,
    /// A gauge from [`gauge!`](crate::gauge).
    Gauge,
    /// A histogram of plain values (bytes, rows, queue depths) from
    /// [`MetricBuilder::histogram`](crate::MetricBuilder::histogram). Its values are aggregated
    /// like durations but never converted from clock ticks: in its [`CallStats`](crate::CallStats)
    /// (outcome `ok`), each [`Stats`](crate::Stats) field of type `Duration` holds a value as
    /// nanoseconds (`stats.p50.as_nanos()` is the median value), and `histogram` the values.
    Histogram,
}

/// The unit of a metric's values, for exporters (a Prometheus `# UNIT` line, an OTLP unit).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Unit {
    /// A number of things.
    Count,
    /// Bytes.
    Bytes,
    /// Seconds.
    Seconds,
    /// Milliseconds.
    Milliseconds,
    /// Microseconds.
    Microseconds,
    /// Nanoseconds.
    Nanoseconds,
    /// A ratio, 1.0 meaning all.
    Ratio,
    /// A percentage, 100.0 meaning all.
    Percent,
}

impl Unit {
    /// The unit's lower-case plural name, as Prometheus metric names end:
    /// `count`, `bytes`, `seconds`, `milliseconds`, `microseconds`, `nanoseconds`, `ratio`,
    /// `percent`.
    ///
    /// ```
    /// assert_eq!(instrument::Unit::Bytes.as_str(), "bytes");
    /// ```
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "count",
            Unit::Bytes => "bytes",
            Unit::Seconds => "seconds",
            Unit::Milliseconds => "milliseconds",
            Unit::Microseconds => "microseconds",
            Unit::Nanoseconds => "nanoseconds",
            Unit::Ratio => "ratio",
            Unit::Percent => "percent",
        }
    }
}

impl std::fmt::Display for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Static description of a callsite: where it is and how it was configured.
///
/// Sinks receive `&'static Metadata` for callsites declared by the macros and for callsites
/// registered at run time (see [`metric`](crate::metric)) alike. Metadata is compared and hashed
/// by identity (its address), so `&'static Metadata` is a cheap map key for a sink's own
/// per-callsite state: two callsites with the same name are different keys unless they are the
/// same callsite.
///
/// ```
/// use std::collections::HashMap;
///
/// let parsed = instrument::metric("files_parsed_total").counter()?.metadata();
/// let read = instrument::metric("bytes_read_total").counter()?.metadata();
/// let mut totals: HashMap<&'static instrument::Metadata, u64> = HashMap::new();
/// *totals.entry(parsed).or_default() += 3;
/// *totals.entry(read).or_default() += 4096;
/// *totals.entry(parsed).or_default() += 1;
/// assert_eq!(totals[parsed], 4);
/// assert_eq!(totals.len(), 2);
/// # Ok::<(), instrument::Error>(())
/// ```
#[derive(Debug)]
pub struct Metadata {
    name: &'static str,
    module_path: &'static str,
    file: &'static str,
    line: u32,
    kind: CallsiteKind,
    labels: &'static [(&'static str, &'static str)],
    slow_ns: u64,
    sample: f64,
    audit: bool,
    captures: bool,
    unit: Option<Unit>,
    /// Empty for none.
    description: &'static str,
}

/// Label names the exporters use themselves. Twin of `RESERVED_LABELS` in
/// `instrument-macros/src/args.rs` (checked by `#[instrument_performance]`): a proc-macro crate
/// cannot export it, so both lists must change together.
pub(crate) const RESERVED_LABELS: &[&str] = &[
    "le",
    "quantile",
    "function",
    "module",
    "outcome",
    "error_kind",
];

impl Metadata {
    #[doc(hidden)]
    #[must_use]
    pub const fn new(
        name: &'static str,
        module_path: &'static str,
        file: &'static str,
        line: u32,
        kind: CallsiteKind,
    ) -> Self {
        assert!(
            !matches!(
                kind,
                CallsiteKind::Counter | CallsiteKind::Gauge | CallsiteKind::Histogram
            ) || is_metric_name(name),
            "metric names must match [a-zA-Z_:][a-zA-Z0-9_:]*"
        );
        Metadata {
            name,
            module_path,
            file,
            line,
            kind,
            labels: &[],
            slow_ns: 0,
            sample: 0.0,
            audit: false,
            captures: false,
            unit: None,
            description: "",
        }
    }

    #[doc(hidden)]
    #[must_use]
    pub const fn labels(mut self, labels: &'static [(&'static str, &'static str)]) -> Self {
        let mut i = 0;
        while i < labels.len() {
            assert!(
                is_label_name(labels[i].0),
                "label names must match [a-zA-Z_][a-zA-Z0-9_]*, must not start with `__` and must not be one of le, quantile, function, module, outcome, error_kind"
            );
            let mut j = 0;
            while j < i {
                assert!(!str_eq(labels[i].0, labels[j].0), "duplicate label name");
                j += 1;
            }
            i += 1;
        }
        self.labels = labels;
        self
    }

    #[doc(hidden)]
    #[must_use]
    pub const fn slow_ns(mut self, nanos: u64) -> Self {
        self.slow_ns = nanos;
        self
    }

    #[doc(hidden)]
    #[must_use]
    pub const fn sample(mut self, fraction: f64) -> Self {
        self.sample = fraction;
        self
    }

    #[doc(hidden)]
    #[must_use]
    pub const fn audit(mut self) -> Self {
        self.audit = true;
        self
    }

    #[doc(hidden)]
    #[must_use]
    pub const fn captures(mut self) -> Self {
        self.captures = true;
        self
    }

    #[doc(hidden)]
    #[must_use]
    pub const fn with_unit(mut self, unit: Unit) -> Self {
        self.unit = Some(unit);
        self
    }

    #[doc(hidden)]
    #[must_use]
    pub const fn with_description(mut self, description: &'static str) -> Self {
        self.description = description;
        self
    }

    /// The callsite's name: `module::function` unless set with `name = "..."`.
    #[must_use]
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// The module the callsite is in; empty for a callsite registered at run time.
    #[must_use]
    pub fn module_path(&self) -> &'static str {
        self.module_path
    }

    /// The source file of the callsite; for one registered at run time, of its first
    /// registration.
    #[must_use]
    pub fn file(&self) -> &'static str {
        self.file
    }

    /// The source line of the callsite.
    #[must_use]
    pub fn line(&self) -> u32 {
        self.line
    }

    /// What the callsite measures.
    #[must_use]
    pub fn kind(&self) -> CallsiteKind {
        self.kind
    }

    /// Labels, validated against Prometheus label rules: as written for a static callsite,
    /// sorted by name for one registered at run time.
    #[must_use]
    pub fn labels_slice(&self) -> &'static [(&'static str, &'static str)] {
        self.labels
    }

    /// The `slow` threshold set on this callsite, if any.
    #[must_use]
    pub fn slow_threshold(&self) -> Option<std::time::Duration> {
        (self.slow_ns > 0).then(|| std::time::Duration::from_nanos(self.slow_ns))
    }

    /// The fraction of calls sent to event sinks regardless of outcome or duration.
    #[must_use]
    pub fn sample_rate(&self) -> f64 {
        self.sample
    }

    /// Whether every call produces an audit entry.
    #[must_use]
    pub fn is_audited(&self) -> bool {
        self.audit
    }

    /// Whether calls capture argument values.
    #[must_use]
    pub fn captures_arguments(&self) -> bool {
        self.captures
    }

    /// The unit of the metric's values, if one was given.
    #[must_use]
    pub fn unit(&self) -> Option<Unit> {
        self.unit
    }

    /// What the metric measures, if a description was given (a Prometheus `# HELP` text).
    #[must_use]
    pub fn description(&self) -> Option<&'static str> {
        (!self.description.is_empty()).then_some(self.description)
    }
}

/// Callsites are compared by identity: two metadata are equal only if they are the same static.
impl PartialEq for Metadata {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::eq(self, other)
    }
}

impl Eq for Metadata {}

/// Hashes the address, consistent with the identity comparison of `PartialEq`.
impl std::hash::Hash for Metadata {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        std::ptr::hash(self, state);
    }
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Prometheus metric name rule: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub(crate) const fn is_metric_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let ok = c.is_ascii_alphabetic() || c == b'_' || c == b':' || (i > 0 && c.is_ascii_digit());
        if !ok {
            return false;
        }
        i += 1;
    }
    true
}

/// Prometheus label name rule, minus reserved names: `[a-zA-Z_][a-zA-Z0-9_]*`, no `__` prefix.
pub(crate) const fn is_label_name(name: &str) -> bool {
    let b = name.as_bytes();
    if b.is_empty() || (b.len() >= 2 && b[0] == b'_' && b[1] == b'_') {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if !(c.is_ascii_alphabetic() || c == b'_' || (i > 0 && c.is_ascii_digit())) {
            return false;
        }
        i += 1;
    }
    let mut r = 0;
    while r < RESERVED_LABELS.len() {
        if str_eq(name, RESERVED_LABELS[r]) {
            return false;
        }
        r += 1;
    }
    true
}

/// A registered-on-first-use callsite. Created by the macros as a `static`.
#[doc(hidden)]
#[derive(Debug)]
pub struct Callsite {
    meta: Metadata,
    /// Dense index + 1 once registered; 0 before.
    id: AtomicU32,
    /// The last `gauge!` value of this callsite, with who set it when.
    pub(crate) gauge: Mutex<GaugeCell>,
    /// Records lost because their thread was tearing down its thread-locals, per record kind.
    pub(crate) orphaned: [AtomicU64; SLOTS],
    /// The first error kinds this callsite returned, in order of first sight. A record names
    /// one by its position (one byte instead of a string on the side), and a dropped record's
    /// kind is still counted by it.
    pub(crate) kinds: [OnceLock<&'static str>; KIND_SLOTS],
    /// `counter!` additions of 2^32 or more, summed saturating at `u64::MAX`.
    large: AtomicU64,
}

/// Error kinds per callsite that records name by position.
pub(crate) const KIND_SLOTS: usize = 4;

/// Counter slots per callsite: one loss counter per outcome, the `counter!` total, then one
/// loss counter per error kind position (`Callsite::kind_slot`).
pub(crate) const SLOTS: usize = crate::record::KINDS + 1 + KIND_SLOTS;
/// The slot of the `counter!` total.
pub(crate) const COUNTER_SLOT: usize = crate::record::KINDS;
/// Slot of the losses of error kind position 1; position `k` is at `KIND_SLOT_BASE + k - 1`.
pub(crate) const KIND_SLOT_BASE: usize = crate::record::KINDS + 1;

/// Whether two error kinds are the same. Kinds are `&'static str`s, usually the very same
/// string each time, so the pointers are compared before the text.
#[inline]
pub(crate) fn same_kind(a: &str, b: &str) -> bool {
    std::ptr::eq(a, b) || a == b
}

/// A gauge value, the pipeline state word it was set under, and a process-wide sequence number
/// that orders sets across callsites.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GaugeCell {
    pub(crate) state: u32,
    pub(crate) sequence: u64,
    pub(crate) value: f64,
}

static REGISTRY: Mutex<Vec<&'static Callsite>> = Mutex::new(Vec::new());

impl Callsite {
    #[doc(hidden)]
    #[must_use]
    pub const fn new(meta: Metadata) -> Self {
        Callsite {
            meta,
            id: AtomicU32::new(0),
            gauge: Mutex::new(GaugeCell {
                state: 0,
                sequence: 0,
                value: 0.0,
            }),
            orphaned: [const { AtomicU64::new(0) }; SLOTS],
            kinds: [const { OnceLock::new() }; KIND_SLOTS],
            large: AtomicU64::new(0),
        }
    }

    /// The position + 1 of `kind` among this callsite's error kinds, taking a free position
    /// for a new kind; 0 once all positions hold other kinds. Lock-free once a kind is known.
    #[inline]
    pub(crate) fn kind_slot(&self, kind: &'static str) -> u8 {
        for (i, cell) in self.kinds.iter().enumerate() {
            let known = match cell.get() {
                Some(known) => *known,
                None => *cell.get_or_init(|| kind),
            };
            if same_kind(known, kind) {
                return i as u8 + 1;
            }
        }
        0
    }

    /// Adds a large `counter!` increment, saturating at `u64::MAX`.
    #[cold]
    pub(crate) fn add_large(&'static self, n: u64) {
        let _ = self.index();
        let _ = self
            .large
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_add(n))
            });
    }

    /// The saturating total of large increments.
    pub(crate) fn large_added(&self) -> u64 {
        self.large.load(Ordering::Relaxed)
    }

    /// The error kind at `slot` (as returned by `kind_slot`).
    pub(crate) fn kind_at(&self, slot: u8) -> Option<&'static str> {
        self.kinds
            .get(usize::from(slot).checked_sub(1)?)?
            .get()
            .copied()
    }

    /// The callsite's static description.
    #[must_use]
    pub fn metadata(&'static self) -> &'static Metadata {
        &self.meta
    }
    /// Whether the callsite records plain values rather than durations
    /// (`CallsiteKind::Histogram`).
    #[inline]
    pub(crate) fn is_value_histogram(&self) -> bool {
        self.meta.kind == CallsiteKind::Histogram
    }

    /// Dense index of the callsite, registering it on first use.
    #[inline(always)]
    pub(crate) fn index(&'static self) -> u32 {
        let id = self.id.load(Ordering::Relaxed);
        if id != 0 { id - 1 } else { self.register() }
    }

    #[cold]
    #[inline(never)]
    fn register(&'static self) -> u32 {
        let mut registry = REGISTRY
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let id = self.id.load(Ordering::Acquire);
        if id != 0 {
            return id - 1;
        }
        registry.push(self);
        let index = u32::try_from(registry.len() - 1).expect("fewer than 2^32 callsites");
        self.id.store(index + 1, Ordering::Release);
        index
    }
}

/// Copies the registered callsites from index `from` on into `into`.
pub(crate) fn registered_since(from: usize, into: &mut Vec<&'static Callsite>) {
    let registry = REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if registry.len() > from {
        into.extend_from_slice(&registry[from..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_rules() {
        assert!(is_label_name("stage"));
        assert!(is_label_name("_x1"));
        assert!(!is_label_name("1x"));
        assert!(!is_label_name("__name"));
        assert!(!is_label_name("le"));
        assert!(!is_label_name("outcome"));
        assert!(!is_label_name("a-b"));
        assert!(!is_label_name(""));
    }

    #[test]
    fn metric_name_rules() {
        assert!(is_metric_name("files_parsed_total"));
        assert!(is_metric_name("ns:rate"));
        assert!(!is_metric_name("9lives"));
        assert!(!is_metric_name("a.b"));
        assert!(!is_metric_name(""));
    }

    #[test]
    fn registration_is_idempotent_and_dense() {
        static A: Callsite = Callsite::new(Metadata::new("a", "m", "f", 1, CallsiteKind::Function));
        static B: Callsite = Callsite::new(Metadata::new("b", "m", "f", 2, CallsiteKind::Function));
        let a = A.index();
        assert_eq!(A.index(), a);
        let b = B.index();
        assert_ne!(a, b);
        let mut all = Vec::new();
        registered_since(0, &mut all);
        assert!(std::ptr::eq(all[a as usize], &raw const A));
        assert!(std::ptr::eq(all[b as usize], &raw const B));
    }

    #[test]
    fn metadata_is_a_map_key_by_identity() {
        static A: Callsite = Callsite::new(Metadata::new("same", "m", "f", 1, CallsiteKind::Timer));
        static B: Callsite = Callsite::new(Metadata::new("same", "m", "f", 1, CallsiteKind::Timer));
        let mut seen: std::collections::HashMap<&'static Metadata, u32> =
            std::collections::HashMap::new();
        *seen.entry(A.metadata()).or_default() += 1;
        *seen.entry(B.metadata()).or_default() += 10;
        *seen.entry(A.metadata()).or_default() += 1;
        // Equal in every field, yet two callsites: two keys.
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[A.metadata()], 2);
        assert_eq!(seen[B.metadata()], 10);
    }

    #[test]
    fn unit_and_description_default_to_none() {
        let plain = Metadata::new("queue_depth", "m", "f", 1, CallsiteKind::Gauge);
        assert_eq!((plain.unit(), plain.description()), (None, None));
        let described = Metadata::new("read_bytes", "m", "f", 1, CallsiteKind::Histogram)
            .with_unit(Unit::Bytes)
            .with_description("Bytes per read call.");
        assert_eq!(described.unit(), Some(Unit::Bytes));
        assert_eq!(described.description(), Some("Bytes per read call."));
    }
}
