//! Nanosecond-cost instrumentation for high-throughput pipelines.
//!
//! Annotate pipeline functions with [`#[instrument_performance]`](instrument_performance); every
//! call is timed, counted and classified (`ok`, `error` with its kind, `panic`, `cancelled`).
//! Calls write fixed-size records into a lock-free queue owned by the calling thread; a
//! background drain aggregates them into histograms per function and outcome and hands events,
//! snapshots and audit entries to pluggable [`Sink`]s.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//! use instrument::{instrument_performance, Batch, Outcome, Sink, SinkError, Snapshot};
//!
//! #[instrument_performance]
//! fn parse(text: &str) -> Result<usize, std::num::ParseIntError> {
//!     text.trim().parse()
//! }
//!
//! // A sink keeping the latest aggregate snapshot (`instrument-sinks` ships complete ones).
//! #[derive(Clone, Default)]
//! struct Latest(Arc<Mutex<Option<Arc<Snapshot>>>>);
//!
//! impl Sink for Latest {
//!     fn name(&self) -> &str { "latest" }
//!     fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
//!         if let Some(snapshot) = &batch.snapshot {
//!             *self.0.lock().unwrap() = Some(Arc::clone(snapshot));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! let latest = Latest::default();
//! let pipeline = instrument::builder().sink(latest.clone()).install()?;
//! parse("42")?;
//! assert!(parse("forty-two").is_err());
//! pipeline.flush()?; // returns once both calls are aggregated and delivered
//!
//! let snapshot = latest.0.lock().unwrap().clone().expect("flush delivers a snapshot");
//! let name = concat!(module_path!(), "::parse");
//! assert_eq!(snapshot.call(name, Outcome::Ok).unwrap().total.count, 1);
//! let errors = snapshot.call(name, Outcome::Error).unwrap();
//! assert_eq!(errors.error_kinds[0].kind, "core::num::error::ParseIntError");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # In libraries
//! Annotate functions and use [`counter!`], [`gauge!`], [`timer!`] and [`audit`]. Until an
//! application installs a pipeline, each annotated call costs one relaxed atomic load and
//! records nothing.
//!
//! Metrics and timed operations whose names or labels are known only at run time (per disk, per
//! `tracing` span, per `metrics` key) are registered with [`metric`], which returns a handle
//! ([`Counter`], [`Gauge`], [`ValueHistogram`], [`TimerHandle`]) that records at the macros'
//! cost. Each name keeps at most 10,000 label sets; later ones share its `overflow="true"`
//! series.
//!
//! # In applications
//! Install a pipeline once in `main` with [`builder`]; keep the returned [`PipelineGuard`] alive.
//! [`PipelineGuard::flush`] returns when everything recorded before it is in every sink;
//! dropping the guard flushes and stops the pipeline. Settings come from the builder or a TOML
//! file ([`Config`]).
//!
//! # What is recorded
//! - Aggregates, always, for every call: count, sum, min, max, p50/p90/p99/p99.9 per callsite and
//!   outcome, per window (default 1 s) and since install, plus error counts per kind.
//! - Events for notable calls: every non-`ok` outcome, calls at least `slow`, and a `sample`
//!   fraction, with captured arguments and the correlation id.
//! - Audit entries for `audit` callsites and [`audit`] calls: never dropped.
//!
//! Under overload, when a thread's queue is full, a call's duration is dropped but the call is
//! still counted with its outcome; `instrument_dropped_events_total` and [`DropMarker`]s in
//! the event stream show the gap. Per callsite, `count = timed + dropped` always holds.
//!
//! # Crate features
//! - `macros` (default): re-exports `#[instrument_performance]`, `#[no_instrument]` and
//!   `#[derive(ErrorKind)]`.
//! - `enabled` (default): instrumentation on. Without it the attribute returns items unchanged,
//!   the manual macros compile to nothing and the handles [`metric`] returns record nothing, so
//!   a build can remove every trace of it.
//! - `metrics`: [`metrics::MetricsRecorder`], a recorder of the `metrics` facade: the
//!   `metrics::counter!`, `gauge!` and `histogram!` of the host and its dependencies become
//!   counters, gauges and value histograms of the pipeline and reach every sink.
//! - `serde`: `serde::Serialize` for every type a sink receives ([`Batch`], [`Event`],
//!   [`Snapshot`], [`AuditEntry`], [`SelfMetrics`], [`Metadata`], ...) and `Deserialize` for
//!   [`Histogram`], so a sink can write them as JSON or another serde format. Field names are
//!   stable; times are RFC 3339 UTC strings with microseconds, durations integer nanoseconds in
//!   fields ending `_ns`, enums their lower-case names (`docs/data-types.md` lists every field).
//! - `tracing`: `tracing::InstrumentLayer`, a `tracing-subscriber` layer that records the spans
//!   of existing `#[tracing::instrument]` code as timed calls (same aggregates, events and
//!   sinks) and forwards `tracing` warnings and errors as [`Notice`]s with their span path.
//!
//! # Performance
//! Not installed: one relaxed load and a predictable branch per call. Installed: two reads of
//! the CPU counter and one push into a thread-owned queue; no lock, allocation, hash lookup or
//! syscall. See `docs/performance.md` for measurements against `tracing`, `metrics` and
//! `fastrace`.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

// Dependencies run one way, top to bottom (rustfmt keeps each group sorted):
// 1. the data types sinks see, which depend on nothing below them;
mod audit;
mod config;
mod correlation;
mod error;
mod fields;
mod histogram;
mod metadata;
mod record;
#[cfg(feature = "serde")]
mod ser;
mod sink;

// 2. what a call touches: clock, callsite, guard, thread queue, wake, audit and notice intake;
mod audit_queue;
mod buffer;
mod callsite;
mod clock;
mod dynamic;
mod guard;
mod retire;
mod signal;
mod source;
mod state;
mod sync;
mod wake;

// 3. the collector (aggregation, snapshots, delivery, sink workers);
mod collector;

// 4. the pipeline: builder and guard;
mod pipeline;

// 5. bridges from other instrumentation, behind their features.
#[cfg(feature = "tracing")]
#[cfg_attr(docsrs, doc(cfg(feature = "tracing")))]
pub mod tracing;

pub use crate::audit::AuditEntry;
pub use crate::audit_queue::audit;
pub use crate::clock::ClockSource;
pub use crate::config::Config;
pub use crate::correlation::{
    Correlated, CorrelationId, CorrelationScope, FutureExt, with_correlation,
};
pub use crate::dynamic::{Counter, Gauge, MetricBuilder, TimerHandle, ValueHistogram, metric};
pub use crate::error::Error;
pub use crate::fields::FieldValue;
pub use crate::guard::{ErrorKind, Timer};
pub use crate::histogram::Histogram;
pub use crate::metadata::{CallsiteKind, Metadata, Unit};
pub use crate::pipeline::{Builder, MonitorSettings, PipelineGuard, PipelineMonitor, builder};
pub use crate::record::Outcome;
pub use crate::sink::{
    Batch, CallStats, CounterValue, DropMarker, ErrorKindCount, Event, EventReason, GaugeValue,
    Interests, Level, Lost, Notice, NullSink, ProcessInfo, SelfMetrics, Sink, SinkError,
    SinkHealth, SinkShortfall, SinkStatus, Snapshot, SnapshotReason, StartInfo, Stats, ThreadInfo,
};
pub use crate::source::{NOTICE_CAPACITY, publish};

#[cfg(feature = "macros")]
#[doc(inline)]
pub use instrument_macros::{ErrorKind, instrument_performance, no_instrument};

// The `metrics` facade bridge, behind its feature.
#[cfg(feature = "metrics")]
#[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
pub mod metrics;

/// Helpers for tests of instrumented code.
pub mod testing {
    /// Advances the calling thread's mock clock (pipelines installed with
    /// [`ClockSource::Mock`](crate::ClockSource::Mock)): a call that advances it by `d` inside an
    /// instrumented function records a duration of exactly `d`.
    pub fn advance(d: std::time::Duration) {
        crate::clock::advance_mock(d);
    }

    /// Makes the installed pipeline's next drain cycle panic, to test how a host (or a sink)
    /// copes: the panic is caught and counted in `SelfMetrics::drain_panics`, and the next
    /// [`flush`](crate::PipelineGuard::flush) returns [`Error::DrainPanicked`](crate::Error::DrainPanicked).
    pub fn panic_next_drain_cycle() {
        panic_next_drain_cycles(1);
    }

    /// Makes the next `n` drain cycles panic, whatever starts them. Three in a row make the
    /// drain give up: recording turns off and flushes return
    /// [`Error::DrainFailed`](crate::Error::DrainFailed).
    pub fn panic_next_drain_cycles(n: u32) {
        crate::collector::PANIC_NEXT_CYCLES.store(n, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Not public API: what macro expansions call. Unstable; may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use crate::callsite::Callsite;
    pub use crate::fields::capture::{Capture, ViaDebug, ViaDisplay, ViaRaw};
    pub use crate::fields::{FieldNames, Fields};
    pub use crate::guard::Guard;
    pub use crate::guard::classify::{KindViaTrait, KindViaTypeName, NoError, ViaAny, ViaResult};
    pub use crate::metadata::{CallsiteKind, Metadata};
    pub use crate::state::{counter_add, gauge_set};

    /// The pipeline state word (one relaxed load), for expansions that branch on it.
    #[inline(always)]
    #[must_use]
    pub fn state() -> u32 {
        crate::state::STATE.load(core::sync::atomic::Ordering::Relaxed)
    }

    /// Whether `state` has a pipeline installed.
    #[inline(always)]
    #[must_use]
    pub fn is_installed(state: u32) -> bool {
        state & 0xff != 0
    }

    /// Whether a call starting now under `state` would record captured arguments: a pipeline
    /// is installed and the calling thread is not shedding (see `Guard::enter_with`).
    #[inline(always)]
    #[must_use]
    pub fn wants_fields(state: u32) -> bool {
        is_installed(state) && !crate::buffer::shedding()
    }

    /// Whether the `enabled` feature is on, for the declarative macros.
    pub const ENABLED: bool = cfg!(feature = "enabled");
}

/// Adds to a counter: `counter!("name")` adds 1, `counter!("name", n)` adds `n`, and static labels
/// follow: `counter!("rows_written_total", n, "table" => "files")`.
///
/// Names follow Prometheus metric rules and label names Prometheus label rules; both are checked
/// at compile time. Each thread counts into its own table, so counting scales with cores.
///
/// After a `;`, options for exporters may follow: `unit = ` a [`Unit`] variant and
/// `description = ` a string literal, read through the callsite's [`Metadata`].
///
/// ```
/// let _pipeline = instrument::builder().install()?;
/// instrument::counter!("files_parsed_total");
/// instrument::counter!("bytes_read_total", 4096, "stage" => "read");
/// instrument::counter!("bytes_written_total", 512; unit = Bytes, description = "Bytes written.");
/// # Ok::<(), instrument::Error>(())
/// ```
#[macro_export]
macro_rules! counter {
    ($name:literal $(, $key:literal => $value:literal)* $(,)? $(; $($option:tt)*)?) => {
        $crate::counter!($name, 1u64 $(, $key => $value)* $(; $($option)*)?)
    };
    ($name:literal, $n:expr $(, $key:literal => $value:literal)* $(,)? $(; $($option:tt)*)?) => {{
        static __INSTRUMENT_CALLSITE: $crate::__private::Callsite = $crate::__private::Callsite::new(
            $crate::__metadata_options!(
                $crate::__private::Metadata::new(
                    $name, ::core::module_path!(), ::core::file!(), ::core::line!(),
                    $crate::__private::CallsiteKind::Counter,
                )
                .labels(&[$(($key, $value)),*])
                $(, $($option)*)?
            ),
        );
        if $crate::__private::ENABLED {
            $crate::__private::counter_add(&__INSTRUMENT_CALLSITE, $n);
        }
    }};
}

/// Sets a gauge to a value: `gauge!("queue_depth", 17.0)`, with optional static labels and
/// options (`unit`, `description`) as for [`counter!`].
///
/// ```
/// let _pipeline = instrument::builder().install()?;
/// instrument::gauge!("pending_files", 12.0, "stage" => "parse");
/// instrument::gauge!("heap_used_bytes", 3.5e6; unit = Bytes, description = "Heap in use.");
/// # Ok::<(), instrument::Error>(())
/// ```
#[macro_export]
macro_rules! gauge {
    ($name:literal, $v:expr $(, $key:literal => $value:literal)* $(,)? $(; $($option:tt)*)?) => {{
        static __INSTRUMENT_CALLSITE: $crate::__private::Callsite = $crate::__private::Callsite::new(
            $crate::__metadata_options!(
                $crate::__private::Metadata::new(
                    $name, ::core::module_path!(), ::core::file!(), ::core::line!(),
                    $crate::__private::CallsiteKind::Gauge,
                )
                .labels(&[$(($key, $value)),*])
                $(, $($option)*)?
            ),
        );
        if $crate::__private::ENABLED {
            $crate::__private::gauge_set(&__INSTRUMENT_CALLSITE, $v);
        }
    }};
}

/// Applies the options of [`counter!`] and [`gauge!`] to a `Metadata` expression, one at a time.
#[doc(hidden)]
#[macro_export]
macro_rules! __metadata_options {
    ($meta:expr $(,)?) => {
        $meta
    };
    ($meta:expr, unit = $unit:ident $(, $($rest:tt)*)?) => {
        $crate::__metadata_options!($meta.with_unit($crate::Unit::$unit) $(, $($rest)*)?)
    };
    ($meta:expr, description = $text:literal $(, $($rest:tt)*)?) => {
        $crate::__metadata_options!($meta.with_description($text) $(, $($rest)*)?)
    };
}

/// Times a block: returns a [`Timer`] that records when dropped (`ok`, or `panic` if dropped
/// by unwinding that began after it started), or when [`Timer::error`] is called. The name is
/// used as given.
///
/// ```
/// let _pipeline = instrument::builder().install()?;
/// {
///     let _timer = instrument::timer!("load_config");
///     // ... work ...
/// }
/// # Ok::<(), instrument::Error>(())
/// ```
#[macro_export]
macro_rules! timer {
    ($name:literal $(, $key:literal => $value:literal)* $(,)?) => {{
        static __INSTRUMENT_CALLSITE: $crate::__private::Callsite = $crate::__private::Callsite::new(
            $crate::__private::Metadata::new(
                $name, ::core::module_path!(), ::core::file!(), ::core::line!(),
                $crate::__private::CallsiteKind::Timer,
            )
            .labels(&[$(($key, $value)),*]),
        );
        if $crate::__private::ENABLED {
            $crate::Timer::start(&__INSTRUMENT_CALLSITE)
        } else {
            $crate::Timer::inert(&__INSTRUMENT_CALLSITE)
        }
    }};
}
