//! Callsites registered at run time, for metrics whose names and labels are known only while the
//! program runs: `tracing` spans, `metrics` facade keys, per-disk system metrics, alert states.
//!
//! A registration validates the name and labels, then looks the callsite up in an interning map
//! under a lock: the same name, labels (in any order) and kind always give the same callsite. A
//! new one is leaked (`Box::leak`), so it is a `&'static Callsite` exactly like the `static` a
//! macro declares, and recording through its handle costs what recording through the macro
//! costs: the lock is taken only at registration, never when recording.
//!
//! Leaked callsites are never freed, so their number is bounded twice:
//! - per name, by the cardinality limit (`DEFAULT_CARDINALITY_LIMIT` label sets): further label
//!   sets of the name fold into its one overflow series, labelled `overflow="true"`, and each
//!   folded registration is counted (`overflowed_registrations`);
//! - per process, by `MAX_DYNAMIC_CALLSITES`, three quarters of the callsites a thread's counter
//!   table can count (the rest is left to static callsites): past it, new label sets fold into
//!   their name's overflow series as well, and a name without one yet is refused.
//!
//! Strings are interned too: each distinct name, label name, label value and description is
//! stored once, however many callsites share it.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::panic::Location;
use std::sync::atomic::Ordering;
use std::sync::{LazyLock, Mutex, PoisonError};

use crate::callsite::Callsite;
use crate::clock::MODE_OFF;
use crate::error::Error;
use crate::guard::Timer;
use crate::metadata::{
    CallsiteKind, Metadata, RESERVED_LABELS, Unit, is_label_name, is_metric_name,
};
use crate::record::{Outcome, Record};
use crate::state::STATE;

/// Label sets per metric name before further ones fold into the name's overflow series.
pub(crate) const DEFAULT_CARDINALITY_LIMIT: usize = 10_000;

/// Callsites that may be registered at run time, process-wide: three quarters of what a thread's
/// counter table can count, leaving 16,384 indices to static callsites.
pub(crate) const MAX_DYNAMIC_CALLSITES: usize = crate::buffer::MAX_CALLSITES / 4 * 3;

/// The labels of a name's overflow series.
const OVERFLOW_LABELS: [(&str, &str); 1] = [("overflow", "true")];

/// Whether recording is compiled in (feature `enabled`); without it handles record nothing.
const ENABLED: bool = cfg!(feature = "enabled");

static REGISTRY: LazyLock<Mutex<Registry>> = LazyLock::new(|| {
    Mutex::new(Registry::new(
        DEFAULT_CARDINALITY_LIMIT,
        MAX_DYNAMIC_CALLSITES,
    ))
});

fn registry() -> std::sync::MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Sets how many label sets each metric name may register before further ones fold into its
/// overflow series (at least 1). Applies to registrations from now on.
pub(crate) fn set_cardinality_limit(limit: usize) {
    registry().limit = limit.max(1);
}

/// Registrations folded into an overflow series since the process started.
pub(crate) fn overflowed_registrations() -> u64 {
    registry().overflowed
}

/// Starts describing a metric or timed operation whose name and labels are known only at run
/// time; finish with [`counter`](MetricBuilder::counter), [`gauge`](MetricBuilder::gauge),
/// [`histogram`](MetricBuilder::histogram), [`timer`](MetricBuilder::timer) or
/// [`function`](MetricBuilder::function), which return a handle.
///
/// Registration takes a lock and may allocate; keep the handle and record through it, which
/// costs what the macros cost (a handle is `Copy`). Registering the same name, labels (in any
/// order) and kind again returns the same callsite, from any thread. Each name takes at most
/// 10,000 label sets; the label sets registered after that share one series of the name,
/// labelled `overflow="true"`.
///
/// ```
/// let pipeline = instrument::builder().sink(instrument::NullSink).install()?;
/// for disk in ["sda", "sdb"] {
///     let free = instrument::metric("disk_free_bytes")
///         .label("disk", disk)
///         .unit(instrument::Unit::Bytes)
///         .description("Free space per disk.")
///         .gauge()?;
///     free.set(1.5e9);
/// }
/// let rows = instrument::metric("rows_written_total").label("table", "files").counter()?;
/// rows.add(17);
/// let sizes = instrument::metric("file_size_bytes").histogram()?;
/// sizes.record(4096);
/// # drop(pipeline);
/// # Ok::<(), instrument::Error>(())
/// ```
///
/// Sinks see these callsites as `&'static Metadata`, like the ones the macros declare, and can
/// key their own state by it:
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::{Arc, Mutex};
/// use instrument::{Batch, Metadata, Sink, SinkError};
///
/// /// Counter totals per callsite, static or registered at run time.
/// #[derive(Clone, Default)]
/// struct Totals(Arc<Mutex<HashMap<&'static Metadata, u64>>>);
///
/// impl Sink for Totals {
///     fn name(&self) -> &str { "totals" }
///     fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
///         if let Some(snapshot) = &batch.snapshot {
///             let mut totals = self.0.lock().unwrap();
///             for counter in &snapshot.counters {
///                 totals.insert(counter.callsite, counter.total);
///             }
///         }
///         Ok(())
///     }
/// }
///
/// let totals = Totals::default();
/// let pipeline = instrument::builder().sink(totals.clone()).install()?;
/// let sda = instrument::metric("disk_reads_total").label("disk", "sda").counter()?;
/// let sdb = instrument::metric("disk_reads_total").label("disk", "sdb").counter()?;
/// sda.add(3);
/// sdb.add(5);
/// sda.add(1);
/// pipeline.flush()?;
///
/// let totals = totals.0.lock().unwrap();
/// assert_eq!(totals[sda.metadata()], 4);
/// assert_eq!(totals[sdb.metadata()], 5);
/// assert_eq!(sdb.metadata().labels_slice(), &[("disk", "sdb")]);
/// # Ok::<(), instrument::Error>(())
/// ```
pub fn metric(name: impl Into<Cow<'static, str>>) -> MetricBuilder {
    MetricBuilder {
        name: name.into(),
        labels: Vec::new(),
        unit: None,
        description: None,
        module: None,
        location: None,
    }
}

/// A metric being described: its name, labels, unit and description. See [`metric`].
#[derive(Clone, Debug)]
#[must_use = "a metric is registered by `counter`, `gauge`, `histogram`, `timer` or `function`"]
pub struct MetricBuilder {
    name: Cow<'static, str>,
    labels: Vec<(Cow<'static, str>, Cow<'static, str>)>,
    unit: Option<Unit>,
    description: Option<Cow<'static, str>>,
    module: Option<Cow<'static, str>>,
    location: Option<(Cow<'static, str>, u32)>,
}

impl MetricBuilder {
    /// Adds a label. Label names follow the Prometheus rules (`[a-zA-Z_][a-zA-Z0-9_]*`, not
    /// starting with `__`) and must not be one the exporters set themselves (`le`, `quantile`,
    /// `function`, `module`, `outcome`, `error_kind`); values are any text.
    pub fn label(
        mut self,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Cow<'static, str>>,
    ) -> Self {
        self.labels.push((name.into(), value.into()));
        self
    }

    /// Adds labels, as [`label`](Self::label) does for each.
    ///
    /// ```
    /// let reads = instrument::metric("disk_reads_total")
    ///     .labels([("disk", "sda"), ("host", "db1")])
    ///     .counter()?;
    /// assert_eq!(reads.metadata().labels_slice(), &[("disk", "sda"), ("host", "db1")]);
    /// # Ok::<(), instrument::Error>(())
    /// ```
    pub fn labels<K, V>(mut self, labels: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: Into<Cow<'static, str>>,
        V: Into<Cow<'static, str>>,
    {
        self.labels
            .extend(labels.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// Sets the unit of the metric's values.
    ///
    /// A name's unit and description are those of its first registration that gives them;
    /// series of the name registered later get them too, and cannot change them.
    pub fn unit(mut self, unit: Unit) -> Self {
        self.unit = Some(unit);
        self
    }

    /// Sets what the metric measures, for exporters (a Prometheus `# HELP` line). Shared by the
    /// name's series as [`unit`](Self::unit) is.
    pub fn description(mut self, description: impl Into<Cow<'static, str>>) -> Self {
        self.description = Some(description.into());
        self
    }

    /// Sets the module the callsite reports ([`Metadata::module_path`]), for a bridge that
    /// knows where the measured code is, such as a `tracing` span's target. Like the source
    /// location, it is not part of what identifies the callsite: a later registration of the
    /// same name, labels and kind gets the callsite as first registered.
    pub fn module(mut self, module: impl Into<Cow<'static, str>>) -> Self {
        self.module = Some(module.into());
        self
    }

    /// Sets the source file and line the callsite reports ([`Metadata::file`],
    /// [`Metadata::line`]) instead of where it is registered from, for a bridge that knows where
    /// the measured code is. Not part of what identifies the callsite, as for
    /// [`module`](Self::module).
    ///
    /// ```
    /// let handle = instrument::metric("app::server::handle")
    ///     .module("app::server")
    ///     .location("src/server.rs", 42)
    ///     .function()?;
    /// let meta = handle.metadata();
    /// assert_eq!((meta.module_path(), meta.file(), meta.line()), ("app::server", "src/server.rs", 42));
    /// # Ok::<(), instrument::Error>(())
    /// ```
    pub fn location(mut self, file: impl Into<Cow<'static, str>>, line: u32) -> Self {
        self.location = Some((file.into(), line));
        self
    }

    /// Registers a counter: a monotonic total, as [`counter!`](crate::counter) keeps.
    ///
    /// ```
    /// let written = instrument::metric("rows_written_total").label("table", "files").counter()?;
    /// written.add(128);
    /// # Ok::<(), instrument::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidMetricName`] unless the name matches `[a-zA-Z_:][a-zA-Z0-9_:]*`;
    /// [`Error::InvalidLabelName`] and [`Error::DuplicateLabel`] for a label name that breaks
    /// a rule of [`label`](Self::label); [`Error::TooManyCallsites`] when the process holds
    /// 49,152 run-time callsites and the name has no overflow series to fold into.
    #[track_caller]
    pub fn counter(&self) -> Result<Counter, Error> {
        self.register(CallsiteKind::Counter, Location::caller())
            .map(|callsite| Counter { callsite })
    }

    /// Registers a gauge: a value that is set, or moved up and down.
    ///
    /// ```
    /// let in_flight = instrument::metric("requests_in_flight").gauge()?;
    /// in_flight.add(1.0);
    /// in_flight.sub(1.0);
    /// # Ok::<(), instrument::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`counter`](Self::counter).
    #[track_caller]
    pub fn gauge(&self) -> Result<Gauge, Error> {
        self.register(CallsiteKind::Gauge, Location::caller())
            .map(|callsite| Gauge { callsite })
    }

    /// Registers a histogram of plain values (bytes, rows, queue depths): count, sum, min, max
    /// and percentiles, as for durations. See [`CallsiteKind::Histogram`] for how sinks see it.
    ///
    /// ```
    /// let batch_rows = instrument::metric("batch_rows").unit(instrument::Unit::Count).histogram()?;
    /// batch_rows.record(500);
    /// # Ok::<(), instrument::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`counter`](Self::counter).
    #[track_caller]
    pub fn histogram(&self) -> Result<ValueHistogram, Error> {
        self.register(CallsiteKind::Histogram, Location::caller())
            .map(|callsite| ValueHistogram { callsite })
    }

    /// Registers a block timer, as [`timer!`](crate::timer) declares: a [`Timer`] started from
    /// it records `ok` when dropped (or `panic` when dropped by unwinding). The name is used as
    /// given, like a `timer!` name: any text.
    ///
    /// ```
    /// let load = instrument::metric("load_config").label("source", "file").timer()?;
    /// {
    ///     let _timer = load.start();
    ///     // ... work ...
    /// }
    /// # Ok::<(), instrument::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`counter`](Self::counter), except that any name is valid.
    #[track_caller]
    pub fn timer(&self) -> Result<TimerHandle, Error> {
        self.register(CallsiteKind::Timer, Location::caller())
            .map(|callsite| TimerHandle { callsite })
    }

    /// Registers a function, as `#[instrument_performance]` declares for a synchronous one:
    /// a [`Timer`] started from it ends with [`Timer::finish`] or [`Timer::error`], and one
    /// dropped without either records `cancelled` (or `panic` when dropped by unwinding). For
    /// bridges from other instrumentation, such as `tracing` spans.
    ///
    /// ```
    /// let parse = instrument::metric("parse").label("language", "rust").function()?;
    /// let call = parse.start();
    /// match "42".parse::<u32>() {
    ///     Ok(_) => call.finish(),
    ///     Err(_) => call.error("ParseIntError"),
    /// }
    /// # Ok::<(), instrument::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`timer`](Self::timer).
    #[track_caller]
    pub fn function(&self) -> Result<TimerHandle, Error> {
        self.register(CallsiteKind::Function, Location::caller())
            .map(|callsite| TimerHandle { callsite })
    }

    fn register(
        &self,
        kind: CallsiteKind,
        location: &'static Location<'static>,
    ) -> Result<&'static Callsite, Error> {
        let labels = self.validate(kind)?;
        registry().register(self, kind, &labels, location)
    }

    /// Checks the name and labels, returning the labels sorted by name.
    fn validate(&self, kind: CallsiteKind) -> Result<Vec<Label<'_>>, Error> {
        let metric_kind = matches!(
            kind,
            CallsiteKind::Counter | CallsiteKind::Gauge | CallsiteKind::Histogram
        );
        if metric_kind && !is_metric_name(&self.name) {
            return Err(Error::InvalidMetricName {
                name: self.name.to_string(),
            });
        }
        let mut labels: Vec<Label<'_>> = self.labels.iter().map(|(k, v)| (k, v)).collect();
        for (label, _) in &labels {
            if let Some(rule) = label_name_rule(label) {
                return Err(Error::InvalidLabelName {
                    metric: self.name.to_string(),
                    label: label.to_string(),
                    rule,
                });
            }
        }
        labels.sort_unstable_by(|a, b| a.0.cmp(b.0));
        if let Some(pair) = labels.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(Error::DuplicateLabel {
                metric: self.name.to_string(),
                label: pair[0].0.to_string(),
            });
        }
        Ok(labels)
    }
}

/// A label name and value as given to a builder.
type Label<'a> = (&'a Cow<'static, str>, &'a Cow<'static, str>);

/// The label name rule `name` breaks, if any; agrees with `is_label_name`.
fn label_name_rule(name: &str) -> Option<&'static str> {
    if is_label_name(name) {
        None
    } else if name.starts_with("__") {
        Some("label names starting with `__` are reserved for Prometheus")
    } else if RESERVED_LABELS.contains(&name) {
        Some(
            "the exporters set this label themselves \
             (reserved: le, quantile, function, module, outcome, error_kind)",
        )
    } else {
        Some("label names must match [a-zA-Z_][a-zA-Z0-9_]*")
    }
}

/// The interning map and what bounds it. Behind `REGISTRY`'s lock, taken only to register.
struct Registry {
    /// Callsites by the hash of their key (name, kind, labels sorted by name); a hash shared
    /// by several keys holds each of their callsites.
    callsites: HashMap<u64, Vec<&'static Callsite>>,
    names: HashMap<&'static str, Name>,
    /// Every string the callsites refer to, each stored once.
    strings: HashSet<&'static str>,
    hasher: RandomState,
    /// Callsites registered, overflow series included.
    registered: usize,
    /// Label sets per name (`set_cardinality_limit`).
    limit: usize,
    /// Callsites per process.
    capacity: usize,
    /// Registrations folded into an overflow series.
    overflowed: u64,
}

/// What callsites of one name share.
struct Name {
    /// Label sets registered under the limit (the overflow series is not one of them).
    label_sets: usize,
    unit: Option<Unit>,
    description: &'static str,
}

impl Registry {
    fn new(limit: usize, capacity: usize) -> Self {
        Registry {
            callsites: HashMap::new(),
            names: HashMap::new(),
            strings: HashSet::new(),
            hasher: RandomState::new(),
            registered: 0,
            limit: limit.max(1),
            capacity,
            overflowed: 0,
        }
    }

    /// The callsite of `spec`'s name with `kind` and `labels` (validated, sorted by name): the
    /// one registered before, a new one, or the name's overflow series.
    fn register(
        &mut self,
        spec: &MetricBuilder,
        kind: CallsiteKind,
        labels: &[Label<'_>],
        location: &'static Location<'static>,
    ) -> Result<&'static Callsite, Error> {
        let text: Vec<(&str, &str)> = labels.iter().map(|(k, v)| (&***k, &***v)).collect();
        let hash = self.hash(&spec.name, kind, &text);
        if let Some(known) = self.find(hash, &spec.name, kind, &text) {
            return Ok(known);
        }
        let label_sets = self
            .names
            .get(&*spec.name)
            .map_or(0, |name| name.label_sets);
        if label_sets < self.limit && self.registered < self.capacity {
            let labels = labels.iter().map(|&(k, v)| (k.clone(), v.clone()));
            return Ok(self.create(hash, spec, kind, labels, location, true));
        }
        let hash = self.hash(&spec.name, kind, &OVERFLOW_LABELS);
        let callsite = match self.find(hash, &spec.name, kind, &OVERFLOW_LABELS) {
            Some(known) => known,
            None if self.registered < self.capacity => {
                let labels = OVERFLOW_LABELS
                    .iter()
                    .map(|&(k, v)| (Cow::Borrowed(k), Cow::Borrowed(v)));
                self.create(hash, spec, kind, labels, location, false)
            }
            None => {
                return Err(Error::TooManyCallsites {
                    metric: spec.name.to_string(),
                    limit: self.capacity,
                });
            }
        };
        self.overflowed += 1;
        Ok(callsite)
    }

    fn hash(&self, name: &str, kind: CallsiteKind, labels: &[(&str, &str)]) -> u64 {
        let mut hasher = self.hasher.build_hasher();
        name.hash(&mut hasher);
        kind.hash(&mut hasher);
        labels.hash(&mut hasher);
        hasher.finish()
    }

    fn find(
        &self,
        hash: u64,
        name: &str,
        kind: CallsiteKind,
        labels: &[(&str, &str)],
    ) -> Option<&'static Callsite> {
        self.callsites.get(&hash)?.iter().copied().find(|callsite| {
            let meta = callsite.metadata();
            meta.name() == name && meta.kind() == kind && meta.labels_slice() == labels
        })
    }

    /// Leaks a new callsite. `counted`: it is one of its name's label sets (not its overflow).
    fn create(
        &mut self,
        hash: u64,
        spec: &MetricBuilder,
        kind: CallsiteKind,
        labels: impl ExactSizeIterator<Item = (Cow<'static, str>, Cow<'static, str>)>,
        location: &'static Location<'static>,
        counted: bool,
    ) -> &'static Callsite {
        let name = self.intern(spec.name.clone());
        let labels: &'static [(&'static str, &'static str)] = if labels.len() == 0 {
            &[]
        } else {
            let interned: Box<[_]> = labels
                .map(|(k, v)| (self.intern(k), self.intern(v)))
                .collect();
            Box::leak(interned)
        };
        let module = match &spec.module {
            Some(module) => self.intern(module.clone()),
            None => "",
        };
        let (file, line) = match &spec.location {
            Some((file, line)) => (self.intern(file.clone()), *line),
            None => (location.file(), location.line()),
        };
        // A description is stored only while its name has none: later ones are not used.
        let undescribed = self
            .names
            .get(name)
            .is_none_or(|shared| shared.description.is_empty());
        let description = match &spec.description {
            Some(text) if undescribed => self.intern(text.clone()),
            _ => "",
        };
        let shared = self.names.entry(name).or_insert(Name {
            label_sets: 0,
            unit: None,
            description: "",
        });
        shared.label_sets += usize::from(counted);
        shared.unit = shared.unit.or(spec.unit);
        if shared.description.is_empty() {
            shared.description = description;
        }
        let mut meta = Metadata::new(name, module, file, line, kind)
            .labels(labels)
            .with_description(shared.description);
        if let Some(unit) = shared.unit {
            meta = meta.with_unit(unit);
        }
        let callsite: &'static Callsite = Box::leak(Box::new(Callsite::new(meta)));
        self.callsites.entry(hash).or_default().push(callsite);
        self.registered += 1;
        callsite
    }

    /// The stored copy of `text`, storing it on first sight (a `'static` borrow as it is).
    fn intern(&mut self, text: Cow<'static, str>) -> &'static str {
        if let Some(&known) = self.strings.get(&*text) {
            return known;
        }
        let stored: &'static str = match text {
            Cow::Borrowed(text) => text,
            Cow::Owned(text) => Box::leak(text.into_boxed_str()),
        };
        self.strings.insert(stored);
        stored
    }
}

/// Writes the `Debug` of a handle: its kind, name and labels.
fn debug_handle(
    f: &mut fmt::Formatter<'_>,
    what: &str,
    callsite: &'static Callsite,
) -> fmt::Result {
    let meta = callsite.metadata();
    f.debug_struct(what)
        .field("name", &meta.name())
        .field("labels", &meta.labels_slice())
        .finish()
}

macro_rules! handle {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy)]
        pub struct $name {
            callsite: &'static Callsite,
        }

        impl $name {
            /// The callsite's metadata, as sinks see it.
            #[must_use]
            pub fn metadata(&self) -> &'static Metadata {
                self.callsite.metadata()
            }
        }

        /// Handles are equal when they record to the same callsite.
        impl PartialEq for $name {
            fn eq(&self, other: &Self) -> bool {
                std::ptr::eq(self.callsite, other.callsite)
            }
        }

        impl Eq for $name {}

        impl Hash for $name {
            fn hash<H: Hasher>(&self, state: &mut H) {
                std::ptr::hash(self.callsite, state);
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                debug_handle(f, stringify!($name), self.callsite)
            }
        }
    };
}

handle! {
    /// A counter registered at run time ([`MetricBuilder::counter`]). Copy it freely: every copy
    /// records to the same callsite.
    Counter
}

handle! {
    /// A gauge registered at run time ([`MetricBuilder::gauge`]).
    ///
    /// Like [`gauge!`](crate::gauge), it records only while a pipeline is installed: a `set`,
    /// `add` or `sub` made with none installed changes nothing. The value carries over from one
    /// pipeline to the next.
    Gauge
}

handle! {
    /// A histogram of plain values registered at run time ([`MetricBuilder::histogram`]).
    ValueHistogram
}

handle! {
    /// A timer or function registered at run time ([`MetricBuilder::timer`],
    /// [`MetricBuilder::function`]): each [`start`](Self::start) times one call.
    TimerHandle
}

impl Counter {
    /// Adds `n` to the counter: the cost of [`counter!`](crate::counter), and like it nothing
    /// while no pipeline is installed.
    #[inline]
    pub fn add(&self, n: u64) {
        if ENABLED {
            crate::state::counter_add(self.callsite, n);
        }
    }
}

impl Gauge {
    /// Sets the gauge to `value`, as [`gauge!`](crate::gauge) does.
    #[inline]
    pub fn set(&self, value: f64) {
        if ENABLED {
            crate::state::gauge_set(self.callsite, value);
        }
    }

    /// Adds `delta` to the gauge's value (0 before anything was set).
    ///
    /// ```
    /// let _pipeline = instrument::builder().install()?;
    /// let queued = instrument::metric("files_queued").gauge()?;
    /// queued.add(3.0);
    /// queued.sub(1.0); // 2
    /// # Ok::<(), instrument::Error>(())
    /// ```
    #[inline]
    pub fn add(&self, delta: f64) {
        if ENABLED {
            crate::state::gauge_update(self.callsite, |v| *v += delta);
        }
    }

    /// Subtracts `delta` from the gauge's value.
    #[inline]
    pub fn sub(&self, delta: f64) {
        self.add(-delta);
    }
}

impl ValueHistogram {
    /// Records one value. Costs about what an instrumented call does: one record pushed into
    /// the calling thread's queue; under overload the value may be dropped, but it is still
    /// counted. Nothing while no pipeline is installed.
    #[inline]
    pub fn record(&self, value: u64) {
        if !ENABLED {
            return;
        }
        let state = STATE.load(Ordering::Relaxed);
        if state & 0xff != MODE_OFF {
            record_value(self.callsite, state, value);
        }
    }
}

/// Pushes a value record: the value travels where a timed call's duration does, and the drain
/// takes it as it is (see `Record::value`). Out of line, like `Guard::record`.
#[inline(never)]
fn record_value(callsite: &'static Callsite, state: u32, value: u64) {
    crate::buffer::push(
        callsite,
        Record {
            start: crate::clock::now(state & 0xff),
            duration: value,
            correlation: 0,
            callsite: 0,
            outcome: Outcome::Ok,
            generation: (state >> 8) as u8,
            detailed: false,
            kind: 0,
        },
        None,
        &mut crate::fields::Fields::default(),
    );
}

impl TimerHandle {
    /// Starts timing one call: the [`Timer`] that [`timer!`](crate::timer) returns, with the
    /// same cost.
    #[inline(always)]
    pub fn start(&self) -> Timer {
        if ENABLED {
            Timer::start(self.callsite)
        } else {
            Timer::inert(self.callsite)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn register(
        registry: &mut Registry,
        spec: &MetricBuilder,
        kind: CallsiteKind,
    ) -> Result<&'static Callsite, Error> {
        let labels = spec.validate(kind)?;
        registry.register(spec, kind, &labels, Location::caller())
    }

    #[test]
    fn label_name_rules_agree_with_is_label_name() {
        for name in [
            "stage", "_x1", "1x", "__name", "le", "outcome", "a-b", "", "é",
        ] {
            assert_eq!(
                label_name_rule(name).is_none(),
                is_label_name(name),
                "{name}"
            );
        }
        assert!(label_name_rule("__x").unwrap().contains("`__`"));
        assert!(label_name_rule("quantile").unwrap().contains("reserved"));
        assert!(label_name_rule("a-b").unwrap().contains("[a-zA-Z_]"));
    }

    #[test]
    fn labels_in_any_order_intern_to_one_callsite() {
        let mut registry = Registry::new(10, 100);
        let ab = metric("reads_total").label("a", "1").label("b", "2");
        let ba = metric("reads_total").label("b", "2").label("a", "1");
        let first = register(&mut registry, &ab, CallsiteKind::Counter).unwrap();
        let again = register(&mut registry, &ba, CallsiteKind::Counter).unwrap();
        assert!(std::ptr::eq(first, again));
        assert_eq!(first.metadata().labels_slice(), &[("a", "1"), ("b", "2")]);
        // Another kind, or another value, is another callsite.
        let gauge = register(&mut registry, &ab, CallsiteKind::Gauge).unwrap();
        let other = metric("reads_total").label("a", "1").label("b", "3");
        let other = register(&mut registry, &other, CallsiteKind::Counter).unwrap();
        assert!(!std::ptr::eq(first, gauge) && !std::ptr::eq(first, other));
        assert_eq!(registry.registered, 3);
        assert_eq!(registry.overflowed, 0);
    }

    #[test]
    fn strings_are_stored_once() {
        let mut registry = Registry::new(10, 100);
        let owned = |s: &str| Cow::<'static, str>::Owned(s.to_owned());
        let a = metric(owned("disk_reads_total")).label(owned("disk"), owned("sda"));
        let b = metric(owned("disk_reads_total")).label(owned("disk"), owned("sdb"));
        let a = register(&mut registry, &a, CallsiteKind::Counter)
            .unwrap()
            .metadata();
        let b = register(&mut registry, &b, CallsiteKind::Counter)
            .unwrap()
            .metadata();
        assert!(std::ptr::eq(a.name(), b.name()));
        assert!(std::ptr::eq(a.labels_slice()[0].0, b.labels_slice()[0].0));
        assert_eq!(registry.strings.len(), 4);
    }

    #[test]
    fn label_sets_past_the_limit_fold_into_one_counted_overflow_series() {
        let mut registry = Registry::new(3, 100);
        let disk = |d: &str| metric("disk_free_bytes").label("disk", d.to_owned());
        let mut kept = Vec::new();
        for d in ["a", "b", "c"] {
            kept.push(register(&mut registry, &disk(d), CallsiteKind::Gauge).unwrap());
        }
        let d = register(&mut registry, &disk("d"), CallsiteKind::Gauge).unwrap();
        let e = register(&mut registry, &disk("e"), CallsiteKind::Gauge).unwrap();
        assert!(std::ptr::eq(d, e));
        assert_eq!(d.metadata().name(), "disk_free_bytes");
        assert_eq!(d.metadata().labels_slice(), &[("overflow", "true")]);
        assert_eq!(d.metadata().kind(), CallsiteKind::Gauge);
        // Label sets registered before the limit keep their own series.
        let b = register(&mut registry, &disk("b"), CallsiteKind::Gauge).unwrap();
        assert!(std::ptr::eq(b, kept[1]));
        // Each folded registration is counted, repeated ones too.
        let _ = register(&mut registry, &disk("d"), CallsiteKind::Gauge).unwrap();
        assert_eq!(registry.overflowed, 3);
        // Other names have their own budget.
        let other = metric("disk_used_bytes").label("disk", "d");
        let other = register(&mut registry, &other, CallsiteKind::Gauge).unwrap();
        assert_eq!(other.metadata().labels_slice(), &[("disk", "d")]);
        assert_eq!(registry.registered, 5);
    }

    #[test]
    fn a_full_process_folds_or_refuses() {
        let mut registry = Registry::new(10, 2);
        let first = metric("a_total").label("k", "1");
        register(&mut registry, &first, CallsiteKind::Counter).unwrap();
        // The second slot goes to a new label set, so `a_total` has no overflow series yet
        // when the process is full.
        let second = metric("b_total");
        register(&mut registry, &second, CallsiteKind::Counter).unwrap();
        let refused = register(
            &mut registry,
            &metric("a_total").label("k", "2"),
            CallsiteKind::Counter,
        );
        let Err(Error::TooManyCallsites {
            metric: name,
            limit,
        }) = refused
        else {
            panic!("expected TooManyCallsites, got {refused:?}");
        };
        assert_eq!((name.as_str(), limit), ("a_total", 2));
        // Registered ones are still found.
        let again = register(&mut registry, &second, CallsiteKind::Counter).unwrap();
        assert_eq!(again.metadata().name(), "b_total");

        let mut registry = Registry::new(1, 3);
        register(
            &mut registry,
            &metric("c_total").label("k", "1"),
            CallsiteKind::Counter,
        )
        .unwrap();
        let overflow = register(
            &mut registry,
            &metric("c_total").label("k", "2"),
            CallsiteKind::Counter,
        )
        .unwrap();
        register(&mut registry, &metric("d_total"), CallsiteKind::Counter).unwrap();
        // Full: a new label set of `c_total` folds into its existing overflow series.
        let folded = register(
            &mut registry,
            &metric("c_total").label("k", "3"),
            CallsiteKind::Counter,
        )
        .unwrap();
        assert!(std::ptr::eq(folded, overflow));
        assert_eq!(registry.overflowed, 2);
    }

    #[test]
    fn a_name_shares_the_first_unit_and_description_given() {
        let mut registry = Registry::new(10, 100);
        let bare = register(
            &mut registry,
            &metric("read_bytes").label("k", "1"),
            CallsiteKind::Histogram,
        )
        .unwrap()
        .metadata();
        let described = metric("read_bytes")
            .label("k", "2")
            .unit(Unit::Bytes)
            .description("Bytes per read.");
        let described = register(&mut registry, &described, CallsiteKind::Histogram)
            .unwrap()
            .metadata();
        let later = metric("read_bytes")
            .label("k", "3")
            .unit(Unit::Count)
            .description("Something else.");
        let later = register(&mut registry, &later, CallsiteKind::Histogram)
            .unwrap()
            .metadata();
        assert_eq!((bare.unit(), bare.description()), (None, None));
        for meta in [described, later] {
            assert_eq!(meta.unit(), Some(Unit::Bytes));
            assert_eq!(meta.description(), Some("Bytes per read."));
        }
    }

    #[test]
    fn the_process_wide_limit_and_overflow_count() {
        // The only test of this module that touches the process-wide registry's limit; the
        // names are its own, so other tests running alongside are not affected.
        let before = overflowed_registrations();
        set_cardinality_limit(2);
        let handles: Vec<_> = (0..4)
            .map(|i| {
                metric("dynamic_unit_test_total")
                    .label("i", i.to_string())
                    .counter()
                    .unwrap()
            })
            .collect();
        set_cardinality_limit(DEFAULT_CARDINALITY_LIMIT);
        assert_ne!(handles[0], handles[1]);
        assert_eq!(handles[2], handles[3]);
        assert_eq!(
            handles[2].metadata().labels_slice(),
            &[("overflow", "true")]
        );
        assert_eq!(overflowed_registrations() - before, 2);
    }
}
