//! The sink boundary: what the drain hands to `SQLite`, log files, Prometheus or a test, and
//! the trait sinks implement. The contract is in the [`Sink`] docs.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::audit::AuditEntry;
use crate::correlation::CorrelationId;
use crate::fields::FieldValue;
use crate::metadata::Metadata;
use crate::record::Outcome;

/// Why a sink failed. Keeps its cause for `source()` chains.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct SinkError {
    message: Cow<'static, str>,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl SinkError {
    /// An error with a message and no underlying cause.
    #[must_use]
    pub fn new(message: impl Into<Cow<'static, str>>) -> Self {
        SinkError {
            message: message.into(),
            source: None,
        }
    }

    /// An error caused by `source`.
    #[must_use]
    pub fn with_source(
        message: impl Into<Cow<'static, str>>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        SinkError {
            message: message.into(),
            source: Some(Box::new(source)),
        }
    }
}

/// What a sink wants delivered. Parts nobody wants are not built.
///
/// ```
/// use instrument::Interests;
/// let audit_only = Interests::NONE.with_audit(true);
/// assert!(audit_only.audit && !audit_only.events);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)]
#[non_exhaustive]
pub struct Interests {
    /// Per-call events (errors, panics, cancellations, slow and sampled calls) and loss markers.
    pub events: bool,
    /// Aggregate snapshots, one per window and one per flush.
    pub snapshots: bool,
    /// Audit entries.
    pub audit: bool,
    /// Notices published by sources ([`publish`](crate::publish)): health changes, alerts,
    /// log lines of bridged frameworks.
    pub notices: bool,
}

impl Interests {
    /// Everything.
    pub const ALL: Interests = Interests {
        events: true,
        snapshots: true,
        audit: true,
        notices: true,
    };
    /// Nothing (a sink that only wants to be flushed, or the null sink).
    pub const NONE: Interests = Interests {
        events: false,
        snapshots: false,
        audit: false,
        notices: false,
    };

    /// These interests, with events (and drop markers) on or off.
    #[must_use]
    pub const fn with_events(mut self, on: bool) -> Self {
        self.events = on;
        self
    }

    /// These interests, with snapshots on or off.
    #[must_use]
    pub const fn with_snapshots(mut self, on: bool) -> Self {
        self.snapshots = on;
        self
    }

    /// These interests, with audit entries on or off.
    #[must_use]
    pub const fn with_audit(mut self, on: bool) -> Self {
        self.audit = on;
        self
    }

    /// These interests, with notices on or off.
    #[must_use]
    pub const fn with_notices(mut self, on: bool) -> Self {
        self.notices = on;
        self
    }
}

/// The process a pipeline runs in.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProcessInfo {
    /// The process id.
    pub pid: u32,
    /// The executable's file name, without directory.
    pub name: String,
    /// The host's name, when it can be read.
    pub hostname: Option<String>,
}

impl ProcessInfo {
    pub(crate) fn current() -> ProcessInfo {
        let name = std::env::current_exe()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| "unknown".to_owned());
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok());
        ProcessInfo {
            pid: std::process::id(),
            name,
            hostname,
        }
    }
}

/// What a sink learns when its worker starts ([`Sink::start`]).
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct StartInfo {
    /// When the pipeline was installed.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::ser::time"))]
    pub pipeline_start: SystemTime,
    /// The aggregation window length.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "window_ns", serialize_with = "crate::ser::nanos")
    )]
    pub window: Duration,
    /// How often [`Sink::tick`] is called.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "tick_ns", serialize_with = "crate::ser::nanos")
    )]
    pub tick: Duration,
    /// The process.
    pub process: ProcessInfo,
}

/// A sink's own view of its health.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(
    feature = "serde",
    serde(tag = "status", content = "message", rename_all = "snake_case")
)]
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SinkHealth {
    /// Working.
    #[default]
    Healthy,
    /// Working with problems, described.
    Degraded(String),
    /// Not working, described.
    Unhealthy(String),
}

/// A destination for measurements: `SQLite`, log files, Prometheus or a test.
///
/// # Contract
/// - Each sink runs on its own worker thread, so its methods are never called concurrently and
///   take `&mut self`; a sink needs no locks of its own. The worker calls [`Sink::start`] first,
///   then [`Sink::write`] for each batch, [`Sink::tick`] and [`Sink::health`] every tick (default
///   1 s, also when no data arrives), [`Sink::flush`] for each flush, and [`Sink::shutdown`] last.
/// - The drain never waits for a sink. Each sink has its own bounded queue: event and snapshot
///   batches beyond `sink_backlog` batches or `sink_backlog_events` events are dropped, oldest
///   first, and counted as [`Lost`]; audit entries travel apart, in batches of their own, so a
///   failing event batch never delays them.
/// - A method should not block indefinitely. If it does, only that sink falls behind: the drain
///   and the other sinks go on, and [`PipelineGuard::flush`](crate::PipelineGuard::flush) names
///   it when its timeout passes.
/// - An `Err` (or a panic, which is caught) is counted in `instrument_sink_errors_total{sink}`.
///   A failed event/snapshot batch stays at the head of the sink's queue and is retried with
///   exponential backoff (10 ms doubling to 5 s) up to `max_retries` times (default 14, about
///   30 s), then given up and counted as lost; batches arriving meanwhile wait behind it within
///   the queue's bounds, so a short outage loses nothing. The worker never sleeps meanwhile:
///   [`Sink::tick`], health polls and audit retries go on. A failed audit batch is retried without limit
///   (events keep flowing meanwhile); while it fails, the sink's audit backlog fills to
///   `audit_capacity` entries, after which further entries are lost *for that sink* and
///   reported by name. Audit producers wait only when every audit sink is full.
/// - [`PipelineGuard::flush`](crate::PipelineGuard::flush) returns `Ok` only when every sink
///   holds everything recorded before it; otherwise its error names each sink and what it lacks.
///
/// With the `serde` feature, every type a sink receives implements `serde::Serialize`, with the
/// stable field names and formats of `docs/data-types.md`.
///
/// # Example: a sink keeping the latest snapshot and ticking
/// ```
/// use std::sync::{Arc, Mutex};
/// use std::time::SystemTime;
/// use instrument::{Batch, Sink, SinkError, StartInfo};
///
/// #[derive(Clone, Default)]
/// struct Watch(Arc<Mutex<(Option<u32>, u64, u64)>>); // (pid, ticks, snapshots)
///
/// impl Sink for Watch {
///     fn name(&self) -> &str { "watch" }
///     fn start(&mut self, info: &StartInfo) -> Result<(), SinkError> {
///         self.0.lock().unwrap().0 = Some(info.process.pid);
///         Ok(())
///     }
///     fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
///         if batch.snapshot.is_some() { self.0.lock().unwrap().2 += 1; }
///         Ok(())
///     }
///     fn tick(&mut self, _now: SystemTime) -> Result<(), SinkError> {
///         self.0.lock().unwrap().1 += 1; // rotate files, prune, reconnect...
///         Ok(())
///     }
/// }
///
/// let watch = Watch::default();
/// let pipeline = instrument::builder().sink(watch.clone()).install()?;
/// pipeline.flush()?;
/// let (pid, _ticks, snapshots) = *watch.0.lock().unwrap();
/// assert_eq!(pid, Some(std::process::id()));
/// assert!(snapshots >= 1);
/// # Ok::<(), instrument::Error>(())
/// ```
pub trait Sink: Send + 'static {
    /// A short stable name, used as the `sink` label of the sink's self-metrics.
    fn name(&self) -> &str;

    /// What this sink wants delivered.
    fn interests(&self) -> Interests {
        Interests::ALL
    }

    /// Called once on the sink's worker thread before anything else.
    ///
    /// # Errors
    /// Any failure to start; counted and shown in the sink's status, and the worker goes on.
    fn start(&mut self, info: &StartInfo) -> Result<(), SinkError> {
        let _ = info;
        Ok(())
    }

    /// Called every tick (default 1 s) whether or not data arrived: rotation, retention,
    /// reconnects. [`Sink::health`] is polled right after.
    ///
    /// # Errors
    /// Any failure; counted and shown in the sink's status.
    fn tick(&mut self, now: SystemTime) -> Result<(), SinkError> {
        let _ = now;
        Ok(())
    }

    /// Receives one batch. Only the parts the sink is interested in are filled, and a batch with
    /// none of them is not delivered.
    ///
    /// # Errors
    /// Any failure to store the batch; the pipeline retries it with backoff.
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError>;

    /// Makes everything written so far durable or visible.
    ///
    /// # Errors
    /// Any failure to flush; reported by [`PipelineGuard::flush`](crate::PipelineGuard::flush).
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }

    /// Called once when the pipeline shuts down, after the final batch and flush.
    ///
    /// # Errors
    /// Any failure to close.
    fn shutdown(&mut self) -> Result<(), SinkError> {
        self.flush()
    }

    /// The sink's own view of its health, polled after each delivery and every tick.
    fn health(&self) -> SinkHealth {
        SinkHealth::Healthy
    }
}

impl<S: Sink + ?Sized> Sink for Box<S> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn interests(&self) -> Interests {
        (**self).interests()
    }
    fn start(&mut self, info: &StartInfo) -> Result<(), SinkError> {
        (**self).start(info)
    }
    fn tick(&mut self, now: SystemTime) -> Result<(), SinkError> {
        (**self).tick(now)
    }
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        (**self).write(batch)
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        (**self).flush()
    }
    fn shutdown(&mut self) -> Result<(), SinkError> {
        (**self).shutdown()
    }
    fn health(&self) -> SinkHealth {
        (**self).health()
    }
}

/// A sink that discards everything; measures the pipeline's own cost.
#[derive(Clone, Copy, Debug, Default)]
pub struct NullSink;

impl Sink for NullSink {
    fn name(&self) -> &'static str {
        "null"
    }
    fn interests(&self) -> Interests {
        Interests::NONE
    }
    fn write(&mut self, _batch: &Batch) -> Result<(), SinkError> {
        Ok(())
    }
}

/// What one drain cycle hands to a sink.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Batch {
    /// Per-call events.
    pub events: Vec<Event>,
    /// Markers for records whose durations were dropped because a queue was full.
    pub drops: Vec<DropMarker>,
    /// An aggregate snapshot, at the end of a window or on flush.
    pub snapshot: Option<Arc<Snapshot>>,
    /// Audit entries. They arrive in batches of their own, in sequence order, and never with
    /// events or snapshots.
    pub audit: Vec<AuditEntry>,
    /// Notices published by sources.
    pub notices: Vec<Notice>,
}

impl Batch {
    /// The parts of this batch that `interests` asks for; `None` when that is nothing.
    pub(crate) fn view(self: &Arc<Self>, interests: Interests) -> Option<Arc<Batch>> {
        let events = interests.events && (!self.events.is_empty() || !self.drops.is_empty());
        let snapshot = interests.snapshots && self.snapshot.is_some();
        let notices = interests.notices && !self.notices.is_empty();
        if !(events || snapshot || notices) {
            return None;
        }
        let all = (events || (self.events.is_empty() && self.drops.is_empty()))
            && (snapshot || self.snapshot.is_none())
            && (notices || self.notices.is_empty());
        if all {
            return Some(Arc::clone(self));
        }
        Some(Arc::new(Batch {
            events: if events {
                self.events.clone()
            } else {
                Vec::new()
            },
            drops: if events {
                self.drops.clone()
            } else {
                Vec::new()
            },
            snapshot: if snapshot {
                self.snapshot.clone()
            } else {
                None
            },
            audit: Vec::new(),
            notices: if notices {
                self.notices.clone()
            } else {
                Vec::new()
            },
        }))
    }

    /// Events and markers in the batch, the unit of `sink_backlog_events`; a snapshot counts
    /// as one per call group.
    pub(crate) fn weight(&self) -> usize {
        self.events.len()
            + self.drops.len()
            + self.notices.len()
            + self.snapshot.as_ref().map_or(0, |s| 1 + s.calls.len())
    }

    /// Whether the batch carries nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.drops.is_empty()
            && self.snapshot.is_none()
            && self.audit.is_empty()
            && self.notices.is_empty()
    }
}

/// How severe a [`Notice`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Level {
    /// Detail for debugging.
    Debug,
    /// Normal operation.
    Info,
    /// Something operators should look at.
    Warn,
    /// Something failed.
    Error,
}

impl Level {
    /// `debug`, `info`, `warn` or `error`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        }
    }
}

/// Written as [`Level::as_str`].
#[cfg(feature = "serde")]
impl serde::Serialize for Level {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Written as [`SnapshotReason::as_str`].
#[cfg(feature = "serde")]
impl serde::Serialize for SnapshotReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Something a source that is not a call publishes on its own schedule: a health status change,
/// an alert firing, a log line of a bridged framework. Published with
/// [`publish`](crate::publish), delivered to sinks interested in notices.
///
/// ```
/// use instrument::{Level, Notice};
/// let notice = Notice::new("health", Level::Warn, "disk 91% full")
///     .field("component", "disk")
///     .field("status", "degraded");
/// assert_eq!(notice.fields[1].1, "degraded");
/// ```
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Notice {
    /// When it happened.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::ser::time"))]
    pub time: SystemTime,
    /// Who published it, e.g. `health`, `alerts`, `tracing`.
    pub source: Cow<'static, str>,
    /// How severe it is.
    pub level: Level,
    /// What happened, for people.
    pub message: String,
    /// Structured detail as key/value pairs.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::ser::pairs"))]
    pub fields: Vec<(Cow<'static, str>, String)>,
    /// The unit of work it belongs to; defaults to the current id on the publishing thread.
    pub correlation: Option<CorrelationId>,
}

impl Notice {
    /// A notice stamped now, with the current correlation id.
    #[must_use]
    pub fn new(
        source: impl Into<Cow<'static, str>>,
        level: Level,
        message: impl Into<String>,
    ) -> Self {
        Notice {
            time: SystemTime::now(),
            source: source.into(),
            level,
            message: message.into(),
            fields: Vec::new(),
            correlation: CorrelationId::current(),
        }
    }

    /// Adds a key/value field.
    #[must_use]
    pub fn field(mut self, key: impl Into<Cow<'static, str>>, value: impl fmt::Display) -> Self {
        self.fields.push((key.into(), value.to_string()));
        self
    }
}

/// Why a call was sent as an event.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum EventReason {
    /// Its outcome was not `ok`.
    Outcome,
    /// It took at least the callsite's `slow` threshold.
    Slow,
    /// It was picked by the callsite's `sample` rate.
    Sampled,
}

impl EventReason {
    /// `outcome`, `slow` or `sampled`, the names of `docs/data-types.md`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            EventReason::Outcome => "outcome",
            EventReason::Slow => "slow",
            EventReason::Sampled => "sampled",
        }
    }
}

/// The thread a call ran on.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ThreadInfo {
    /// A process-unique number, never reused.
    pub id: u64,
    /// The thread's name, if it had one.
    pub name: Option<Arc<str>>,
}

/// One call, sent to event sinks.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Event {
    /// The instrumented function.
    pub callsite: &'static Metadata,
    /// How it ended.
    pub outcome: Outcome,
    /// The error kind, for `error` outcomes.
    pub error_kind: Option<&'static str>,
    /// When it started (wall clock).
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::ser::time"))]
    pub start: SystemTime,
    /// How long it took.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "duration_ns", serialize_with = "crate::ser::nanos")
    )]
    pub duration: Duration,
    /// Where it ran.
    pub thread: ThreadInfo,
    /// The correlation id current when it ran.
    pub correlation: Option<CorrelationId>,
    /// Captured arguments (`capture(..)`/`skip(..)`) as name/value pairs, in capture order;
    /// empty when the callsite captures nothing.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::ser::pairs"))]
    pub fields: Vec<(&'static str, FieldValue)>,
    /// Why it is an event.
    pub reason: EventReason,
}

/// Records whose durations were lost because a queue was full. Their calls are still counted.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DropMarker {
    /// The callsite whose records were dropped.
    pub callsite: &'static Metadata,
    /// How many since the previous marker for this callsite.
    pub count: u64,
    /// Start of the interval in which they were dropped.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::ser::time"))]
    pub since: SystemTime,
    /// End of that interval.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::ser::time"))]
    pub until: SystemTime,
}

/// Aggregates of one group of calls over an interval.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Calls, exact, including those whose durations were dropped.
    pub count: u64,
    /// Calls whose durations reached the histogram.
    pub timed: u64,
    /// Calls whose durations were dropped under overload (`count - timed`).
    pub dropped: u64,
    /// Sum of timed durations.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "sum_ns", serialize_with = "crate::ser::nanos")
    )]
    pub sum: Duration,
    /// Shortest timed duration.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "min_ns", serialize_with = "crate::ser::nanos")
    )]
    pub min: Duration,
    /// Longest timed duration.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "max_ns", serialize_with = "crate::ser::nanos")
    )]
    pub max: Duration,
    /// Median.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "p50_ns", serialize_with = "crate::ser::nanos")
    )]
    pub p50: Duration,
    /// 90th percentile.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "p90_ns", serialize_with = "crate::ser::nanos")
    )]
    pub p90: Duration,
    /// 99th percentile.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "p99_ns", serialize_with = "crate::ser::nanos")
    )]
    pub p99: Duration,
    /// 99.9th percentile.
    #[cfg_attr(
        feature = "serde",
        serde(rename = "p999_ns", serialize_with = "crate::ser::nanos")
    )]
    pub p999: Duration,
}

/// Error-kind breakdown of a callsite's `error` outcomes.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ErrorKindCount {
    /// The error kind.
    pub kind: &'static str,
    /// Errors of this kind in the window. Exact for a callsite's first four kinds (in order of
    /// first occurrence), whose dropped records are counted per kind too; for further kinds,
    /// only the timed errors are counted.
    pub window: u64,
    /// Errors of this kind since install.
    pub total: u64,
}

/// Aggregates of one callsite and outcome.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CallStats {
    /// The callsite.
    pub callsite: &'static Metadata,
    /// The outcome.
    pub outcome: Outcome,
    /// This window.
    pub window: Stats,
    /// Since install.
    pub total: Stats,
    /// Timed durations since install, for exporters that need the full distribution.
    pub histogram: Arc<crate::histogram::Histogram>,
    /// Timed durations of this window only. Windows' histograms merge
    /// ([`Histogram::merge`](crate::Histogram::merge)), so a store keeping them can compute
    /// percentiles over any range of windows later.
    pub window_histogram: Arc<crate::histogram::Histogram>,
    /// For `error`: counts per error kind.
    pub error_kinds: Vec<ErrorKindCount>,
}

/// A `counter!` total.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct CounterValue {
    /// The counter.
    pub callsite: &'static Metadata,
    /// Increase in the window.
    pub window: u64,
    /// Total since install.
    pub total: u64,
}

/// A `gauge!` value.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct GaugeValue {
    /// The gauge.
    pub callsite: &'static Metadata,
    /// The last value set.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::ser::float"))]
    pub value: f64,
}

/// The pipeline's measurements of itself.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SelfMetrics {
    /// Records that reached the drain since install (`instrument_events_recorded_total`).
    pub events_recorded: u64,
    /// Records whose durations were dropped because a queue was full
    /// (`instrument_dropped_events_total`).
    pub events_dropped: u64,
    /// The fullest any thread queue was seen by the drain (`instrument_queue_high_water`).
    pub queue_high_water: u64,
    /// Duration of the last drain cycle (`instrument_drain_cycle_seconds`).
    #[cfg_attr(
        feature = "serde",
        serde(rename = "drain_cycle_ns", serialize_with = "crate::ser::nanos")
    )]
    pub drain_cycle: Duration,
    /// Bytes held by thread buffers and aggregates (`instrument_memory_bytes`).
    pub memory_bytes: u64,
    /// Thread buffers registered.
    pub threads: u64,
    /// Drain cycles that panicked (caught; the drain goes on).
    pub drain_panics: u64,
    /// Audit entries waiting for the drain.
    pub audit_queued: u64,
    /// Audit entries of audited calls that ended while no pipeline was installed, since the
    /// process started.
    pub audit_orphaned: u64,
    /// Notices dropped because the notice queue was full.
    pub notices_dropped: u64,
    /// Run-time registrations folded into a name's overflow series by the cardinality limit,
    /// since the process started (`instrument_callsite_overflow_total`).
    pub callsite_overflows: u64,
    /// Per sink.
    pub sinks: Vec<SinkStatus>,
}

/// A sink's state as seen by the pipeline.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SinkStatus {
    /// The sink's name.
    pub name: String,
    /// Failed writes and flushes (`instrument_sink_errors_total{sink}`).
    pub errors: u64,
    /// Panics caught in the sink (also counted in `errors`).
    pub panics: u64,
    /// Batches delivered.
    pub delivered: u64,
    /// Event/snapshot batches given up on after retries or a full backlog.
    pub dropped_batches: u64,
    /// Batches waiting for the sink (`instrument_sink_lag_batches{sink}`).
    pub backlog: u64,
    /// Events, markers and notices in those batches.
    pub backlog_events: u64,
    /// Audit entries waiting for the sink.
    pub audit_backlog: u64,
    /// Audit entries delivered.
    pub audit_delivered: u64,
    /// What the sink lost since install.
    pub lost: Lost,
    /// The most recent error, if any.
    pub last_error: Option<String>,
    /// The sink's own health report.
    pub health: SinkHealth,
}

/// Why a snapshot was cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SnapshotReason {
    /// The window's time was up.
    Window,
    /// [`PipelineGuard::flush`](crate::PipelineGuard::flush) asked for it.
    Flush,
    /// The pipeline is shutting down.
    Shutdown,
}

impl SnapshotReason {
    /// `window`, `flush` or `shutdown`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            SnapshotReason::Window => "window",
            SnapshotReason::Flush => "flush",
            SnapshotReason::Shutdown => "shutdown",
        }
    }
}

/// What a sink lacks: data the pipeline gave up delivering to it.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Lost {
    /// Event/notice batches dropped (full backlog) or given up after retries.
    pub batches: u64,
    /// Events, drop markers and notices in those batches.
    pub events: u64,
    /// Snapshots in those batches.
    pub snapshots: u64,
    /// Audit entries the sink did not get (its audit backlog was full) or had not taken when
    /// a flush or shutdown ended.
    pub audit_entries: u64,
}

impl Lost {
    /// Whether nothing is lost.
    #[must_use]
    pub fn is_none(&self) -> bool {
        *self == Lost::default()
    }

    pub(crate) fn add(&mut self, other: Lost) {
        self.batches += other.batches;
        self.events += other.events;
        self.snapshots += other.snapshots;
        self.audit_entries += other.audit_entries;
    }
}

impl fmt::Display for Lost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts = Vec::new();
        if self.batches > 0 {
            parts.push(format!(
                "{} batch(es) with {} event(s) and {} snapshot(s)",
                self.batches, self.events, self.snapshots
            ));
        }
        if self.audit_entries > 0 {
            parts.push(format!("{} audit entries", self.audit_entries));
        }
        if parts.is_empty() {
            f.write_str("nothing")
        } else {
            f.write_str(&parts.join(" and "))
        }
    }
}

/// One sink's part in an incomplete flush or shutdown.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SinkShortfall {
    /// The sink's name.
    pub sink: String,
    /// It did not finish before the timeout.
    pub timed_out: bool,
    /// Its `flush` or `shutdown` failed, with the error's chain.
    pub error: Option<String>,
    /// What it lacks of the data recorded before the flush.
    pub lost: Lost,
}

impl fmt::Display for SinkShortfall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "sink `{}`", self.sink)?;
        let mut sep = " ";
        if self.timed_out {
            write!(f, "{sep}did not finish in time")?;
            sep = ", ";
        }
        if let Some(error) = &self.error {
            write!(f, "{sep}failed: {error}")?;
            sep = ", ";
        }
        if !self.lost.is_none() {
            write!(f, "{sep}lacks {}", self.lost)?;
        }
        Ok(())
    }
}

/// All aggregates at the end of a window.
#[cfg_attr(feature = "serde", derive(serde::Serialize))]
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Snapshot {
    /// Numbered from 1 in the order snapshots are cut by this pipeline.
    pub sequence: u64,
    /// Why it was cut.
    pub reason: SnapshotReason,
    /// Start of the window.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::ser::time"))]
    pub window_start: SystemTime,
    /// End of the window.
    #[cfg_attr(feature = "serde", serde(serialize_with = "crate::ser::time"))]
    pub window_end: SystemTime,
    /// One entry per callsite and outcome seen.
    pub calls: Vec<CallStats>,
    /// `counter!` totals.
    pub counters: Vec<CounterValue>,
    /// `gauge!` values.
    pub gauges: Vec<GaugeValue>,
    /// The pipeline's own metrics.
    pub self_metrics: SelfMetrics,
}

impl Snapshot {
    /// The aggregates of the callsite named `name` with `outcome`, if any.
    #[must_use]
    pub fn call(&self, name: &str, outcome: Outcome) -> Option<&CallStats> {
        self.calls
            .iter()
            .find(|c| c.callsite.name() == name && c.outcome == outcome)
    }

    /// The total of the counter named `name`, if it was used.
    #[must_use]
    pub fn counter(&self, name: &str) -> Option<u64> {
        self.counters
            .iter()
            .filter(|c| c.callsite.name() == name)
            .map(|c| c.total)
            .reduce(u64::saturating_add)
    }

    /// The value of the gauge named `name`, if it was set.
    #[must_use]
    pub fn gauge(&self, name: &str) -> Option<f64> {
        self.gauges
            .iter()
            .find(|g| g.callsite.name() == name)
            .map(|g| g.value)
    }
}
