//! What sinks see of a callsite: its static description ([`Metadata`]), what it measures
//! ([`CallsiteKind`]) and in which unit ([`Unit`]), and the Prometheus naming rules names and
//! labels are checked against (in `const fn`s, so the macros check them at compile time).

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

    /// The module the callsite is in; for one registered at run time, what its first
    /// registration gave to [`MetricBuilder::module`](crate::MetricBuilder::module), else empty.
    #[must_use]
    pub fn module_path(&self) -> &'static str {
        self.module_path
    }

    /// The source file of the callsite; for one registered at run time, of its first
    /// registration (or what that gave to
    /// [`MetricBuilder::location`](crate::MetricBuilder::location)).
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
}
