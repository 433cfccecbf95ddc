//! Sinks for the [`instrument`] SDK.
//!
//! - [`MemorySink`] (feature `memory`, default): keeps everything it receives in memory, behind a
//!   cloneable handle, so tests and embedding applications can read back events, snapshots, drop
//!   markers and audit entries.
//! - [`SqliteSink`] (feature `sqlite`): a `SQLite` database file with callsites, events, windows
//!   of aggregates, counters, gauges, drop markers, notices and a hash-chained audit table
//!   ([`verify_audit_chain`]), with retention, scheduled and online backups, and restore; tables
//!   and maintenance in the [`sqlite`] module docs.
//! - `PrometheusSink` (feature `prometheus`): `/metrics` in the Prometheus text format and in
//!   `OpenMetrics` with exemplars, served by the operations endpoint (module `http`, feature
//!   `http`); see the `prometheus` module docs.
//! - `JsonlSink` (feature `jsonl`): JSON-lines log files per stream (`main`, `error`,
//!   `performance`, `audit`) with rotation, retention, optional gzip and a hash-chained audit
//!   stream, plus an opt-in flush on `SIGTERM`, `SIGINT` and panics; see the `jsonl` module docs.
//! - `OtlpSink` (feature `otlp`): the measurements to an OpenTelemetry Collector over
//!   OTLP/HTTP (protobuf, gzip), with opt-in logs, a bounded backlog and retries; see the `otlp`
//!   module docs.
//! - `rules` (feature `rules`): Prometheus recording and alerting rules (error ratio and latency
//!   objectives with burn rates) for a pipeline's callsites, over the series the Prometheus
//!   sink exports; `instrumentctl prometheus rules` prints them for the callsites of a store.
//! - `ops` (feature `ops`): the operations page, a live web view of the pipeline on the
//!   operations endpoint, and its JSON API (`docs/operations-page.md`).
//!
//! ```
//! use instrument_sinks::MemorySink;
//!
//! let sink = MemorySink::new();
//! let pipeline = instrument::builder().sink(sink.clone()).install()?;
//! instrument::audit(instrument::AuditEntry::new("load").input("a.rs"))?;
//! pipeline.flush()?;
//! assert_eq!(sink.audit()[0].inputs, ["a.rs"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "memory")]
mod memory;

#[cfg(feature = "memory")]
pub use crate::memory::MemorySink;

#[cfg(any(
    feature = "sqlite",
    feature = "alerts",
    feature = "otlp",
    feature = "ops"
))]
mod errors;

#[cfg(any(feature = "sqlite", feature = "jsonl", feature = "otlp"))]
mod calendar;

#[cfg(feature = "sqlite")]
pub mod sqlite;

#[cfg(feature = "http")]
pub mod http;

#[cfg(any(feature = "prometheus", feature = "rules", feature = "otlp"))]
mod buckets;

#[cfg(feature = "rules")]
pub mod rules;

#[cfg(feature = "prometheus")]
pub mod prometheus;

#[cfg(feature = "prometheus")]
pub use crate::prometheus::{
    PrometheusError, PrometheusHandle, PrometheusSink, PrometheusSinkBuilder,
};

#[cfg(feature = "sqlite")]
pub use crate::sqlite::{
    ChainError, SqliteError, SqliteSink, SqliteSinkBuilder, verify_audit_chain,
};

#[cfg(feature = "jsonl")]
pub mod jsonl;

#[cfg(feature = "jsonl")]
pub use crate::jsonl::{JsonlError, JsonlSink, JsonlSinkBuilder};

#[cfg(feature = "system")]
pub mod system;

#[cfg(feature = "health")]
pub mod health;

#[cfg(feature = "alerts")]
pub mod alerts;

#[cfg(feature = "otlp")]
pub mod otlp;

#[cfg(feature = "otlp")]
pub use crate::otlp::{OtlpError, OtlpSink, OtlpSinkBuilder};

#[cfg(feature = "ops")]
pub mod ops;
