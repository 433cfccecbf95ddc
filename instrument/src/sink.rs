//! The sink boundary: what the drain hands to `SQLite`, log files, Prometheus or a test.
//!
//! # Contract
//! - Each sink runs on its own worker thread, so its methods are never called concurrently and
//!   take `&mut self`; a sink needs no locks of its own.
//! - A method should not block indefinitely. If it does, only that sink falls behind: the drain
//!   and the other sinks go on, the stuck sink's backlog is bounded (older event and snapshot
//!   batches are dropped and counted; audit entries are held, and once its audit backlog is full
//!   audit producers wait), and [`PipelineGuard::flush`](crate::PipelineGuard::flush) reports it
//!   by name when its timeout passes.
//! - An `Err` (or a panic, which is caught) is counted in `instrument_sink_errors_total{sink}`
//!   and the same batch is retried with exponential backoff, up to the configured number of
//!   retries for event/snapshot batches, without limit for batches carrying audit entries.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::audit::AuditEntry;
use crate::callsite::Metadata;
use crate::correlation::CorrelationId;
use crate::fields::FieldValue;
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(clippy::struct_excessive_bools)]
pub struct Interests {
    /// Per-call events (errors, panics, cancellations, slow and sampled calls) and loss markers.
    pub events: bool,
    /// Aggregate snapshots, one per window and one per flush.
    pub snapshots: bool,
    /// Audit entries.
    pub audit: bool,
}

impl Interests {
    /// Everything.
    pub const ALL: Interests = Interests {
        events: true,
        snapshots: true,
        audit: true,
    };
    /// Nothing (a sink that only wants to be flushed, or the null sink).
    pub const NONE: Interests = Interests {
        events: false,
        snapshots: false,
        audit: false,
    };
}

/// A sink's own view of its health.
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

/// A destination for measurements. See the [module docs](self) for the contract.
pub trait Sink: Send + 'static {
    /// A short stable name, used as the `sink` label of the sink's self-metrics.
    fn name(&self) -> &str;

    /// What this sink wants delivered.
    fn interests(&self) -> Interests {
        Interests::ALL
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

    /// The sink's own view of its health, polled after each delivery.
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
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Batch {
    /// Per-call events.
    pub events: Vec<Event>,
    /// Markers for records whose durations were dropped because a queue was full.
    pub drops: Vec<DropMarker>,
    /// An aggregate snapshot, at the end of a window or on flush.
    pub snapshot: Option<Arc<Snapshot>>,
    /// Audit entries.
    pub audit: Vec<AuditEntry>,
}

impl Batch {
    /// Whether `interests` wants every part this batch carries.
    pub(crate) fn is_covered_by(&self, interests: Interests) -> bool {
        (interests.events || (self.events.is_empty() && self.drops.is_empty()))
            && (interests.snapshots || self.snapshot.is_none())
            && (interests.audit || self.audit.is_empty())
    }

    /// The parts of this batch that `interests` asks for.
    pub(crate) fn view(&self, interests: Interests) -> Batch {
        Batch {
            events: if interests.events {
                self.events.clone()
            } else {
                Vec::new()
            },
            drops: if interests.events {
                self.drops.clone()
            } else {
                Vec::new()
            },
            snapshot: if interests.snapshots {
                self.snapshot.clone()
            } else {
                None
            },
            audit: if interests.audit {
                self.audit.clone()
            } else {
                Vec::new()
            },
        }
    }

    /// Whether the batch carries nothing.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.drops.is_empty()
            && self.snapshot.is_none()
            && self.audit.is_empty()
    }
}

/// Why a call was sent as an event.
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

/// The thread a call ran on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ThreadInfo {
    /// A small process-unique number.
    pub id: u32,
    /// The thread's name, if it had one.
    pub name: Option<Arc<str>>,
}

/// One call, sent to event sinks.
#[derive(Clone, Debug)]
pub struct Event {
    /// The instrumented function.
    pub callsite: &'static Metadata,
    /// How it ended.
    pub outcome: Outcome,
    /// The error kind, for `error` outcomes.
    pub error_kind: Option<&'static str>,
    /// When it started (wall clock).
    pub start: SystemTime,
    /// How long it took.
    pub duration: Duration,
    /// Where it ran.
    pub thread: ThreadInfo,
    /// The correlation id current when it ran.
    pub correlation: Option<CorrelationId>,
    /// Captured arguments (`capture(..)`/`skip(..)`) as name/value pairs, in capture order;
    /// empty when the callsite captures nothing.
    pub fields: Vec<(&'static str, FieldValue)>,
    /// Why it is an event.
    pub reason: EventReason,
}

/// Records whose durations were lost because a queue was full. Their calls are still counted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DropMarker {
    /// The callsite whose records were dropped.
    pub callsite: &'static Metadata,
    /// How many since the previous marker for this callsite.
    pub count: u64,
    /// Start of the interval in which they were dropped.
    pub since: SystemTime,
    /// End of that interval.
    pub until: SystemTime,
}

/// Aggregates of one group of calls over an interval.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Calls, exact, including those whose durations were dropped.
    pub count: u64,
    /// Calls whose durations reached the histogram.
    pub timed: u64,
    /// Calls whose durations were dropped under overload (`count - timed`).
    pub dropped: u64,
    /// Sum of timed durations.
    pub sum: Duration,
    /// Shortest timed duration.
    pub min: Duration,
    /// Longest timed duration.
    pub max: Duration,
    /// Median.
    pub p50: Duration,
    /// 90th percentile.
    pub p90: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
}

/// Error-kind breakdown of a callsite's `error` outcomes.
#[derive(Clone, Debug, PartialEq, Eq)]
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
#[derive(Clone, Debug)]
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
    /// For `error`: counts per error kind.
    pub error_kinds: Vec<ErrorKindCount>,
}

/// A `counter!` total.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CounterValue {
    /// The counter.
    pub callsite: &'static Metadata,
    /// Increase in the window.
    pub window: u64,
    /// Total since install.
    pub total: u64,
}

/// A `gauge!` value.
#[derive(Clone, Debug, PartialEq)]
pub struct GaugeValue {
    /// The gauge.
    pub callsite: &'static Metadata,
    /// The last value set.
    pub value: f64,
}

/// The pipeline's measurements of itself.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SelfMetrics {
    /// Records that reached the drain since install (`instrument_events_recorded_total`).
    pub events_recorded: u64,
    /// Records whose durations were dropped because a queue was full
    /// (`instrument_dropped_events_total`).
    pub events_dropped: u64,
    /// The fullest any thread queue was seen by the drain (`instrument_queue_high_water`).
    pub queue_high_water: u64,
    /// Duration of the last drain cycle (`instrument_drain_cycle_seconds`).
    pub drain_cycle: Duration,
    /// Bytes held by thread buffers and aggregates (`instrument_memory_bytes`).
    pub memory_bytes: u64,
    /// Thread buffers registered.
    pub threads: u64,
    /// Per sink.
    pub sinks: Vec<SinkStatus>,
}

/// A sink's state as seen by the pipeline.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
    /// The most recent error, if any.
    pub last_error: Option<String>,
    /// The sink's own health report.
    pub health: SinkHealth,
}

/// All aggregates at the end of a window.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Start of the window.
    pub window_start: SystemTime,
    /// End of the window.
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
            .reduce(|a, b| a + b)
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
