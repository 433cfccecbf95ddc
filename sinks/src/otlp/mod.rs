//! An OTLP/HTTP exporter: the pipeline's measurements to an OpenTelemetry Collector (or any
//! OTLP receiver) as protobuf over HTTP, gzip'd, built with the official OpenTelemetry protobuf
//! types (`opentelemetry-proto`, encoded by `prost`) and sent with hyper's client. Every name,
//! attribute and setting is listed in `docs/otlp.md`.
//!
//! # What is exported
//! Metrics, every `interval` (default 10 s) and at each flush and shutdown, to
//! `{endpoint}/v1/metrics`, all **cumulative** since the pipeline was installed:
//! - `instrument.calls` (sum, monotonic): calls per callsite and outcome, including those
//!   whose durations were dropped under overload; `error` outcomes split by `error_kind`.
//! - `instrument.duration` (histogram, seconds, explicit buckets, default 1 us .. 10 s): the
//!   timed calls' durations, with sum, min and max.
//! - `counter!`s and counters registered at run time: monotonic sums named after them; gauges:
//!   gauges; value histograms: exponential histograms (at most 160 buckets).
//! - The pipeline's own metrics (`instrument.events_recorded`, `instrument.sink.errors` per
//!   `sink`, ...), and the exporter's (`instrument_otlp_*`, recorded through the pipeline so
//!   every other sink shows them too).
//!
//! Points carry the attributes `function`, `module`, `outcome` (timed calls) and the
//! callsite's labels; the resource carries `service.name`, `service.instance.id`,
//! `host.name`, `process.pid` and what is configured.
//!
//! Logs, opt-in ([`OtlpSinkBuilder::logs`]), to `{endpoint}/v1/logs`: events (errors, panics,
//! cancellations, slow and sampled calls), drop markers, audit entries and notices, one
//! record each, with the correlation id as the trace id (8 zero bytes, then the id).
//!
//! # Failures
//! Requests are encoded on the sink's worker and posted by a thread of their own
//! (`instrument-otlp`), so neither a down nor a slow collector holds up the sink's worker, the
//! drain or the other sinks. A request that fails (connection refused, timeout, 429, 502, 503,
//! 504) is retried after a pause (100 ms doubling to 30 s, or the answer's `Retry-After`); the
//! requests behind it wait in a **bounded backlog** (default 16 MiB and 1,024 requests),
//! oldest dropped first when full, and counted ([`OtlpStatus`] and `instrument_otlp_*`).
//! Because every metrics request carries totals since install, a dropped one loses only the
//! resolution of its moment, not counts: the next accepted request has them. Other 4xx
//! answers are not retried; partial-success answers are read and their rejected points
//! counted and reported.
//!
//! # Example
//! ```
//! use instrument_sinks::otlp::OtlpSink;
//!
//! // Nothing listens on this port: the export fails and waits in the backlog, the pipeline
//! // goes on.
//! let sink = OtlpSink::builder()
//!     .endpoint("http://127.0.0.1:9")
//!     .flush_timeout(std::time::Duration::from_millis(200))
//!     .shutdown_timeout(std::time::Duration::ZERO)
//!     .build()?;
//! let otlp = sink.handle();
//! let pipeline = instrument::builder().sink(sink).install()?;
//! drop(instrument::timer!("load_config"));
//! let flushed = pipeline.flush();
//! assert!(flushed.is_err()); // names the sink and what is still queued
//! assert_eq!(otlp.status().sent_requests, 0);
//! assert!(otlp.status().backlog_requests >= 1);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod encode;
mod export;

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use hyper::header::{HeaderName, HeaderValue};
use instrument::{Batch, Interests, Sink, SinkError, SinkHealth, StartInfo};
use opentelemetry_proto::tonic::common::v1::InstrumentationScope;
use opentelemetry_proto::tonic::logs::v1::LogRecord;
use opentelemetry_proto::tonic::resource::v1::Resource;

pub use self::config::{Compression, OtlpSinkBuilder};
pub use self::encode::MetricsEncoder;
pub use self::export::OtlpStatus;
pub use crate::buckets::DEFAULT_BUCKETS;

use self::encode::MetricsState;
use self::export::{Exporter, Request, Settings, Shared, Signal};

/// Log records gathered before they are sent without waiting for the next tick.
const LOG_BATCH: usize = 512;

/// Why an [`OtlpSink`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OtlpError {
    /// No endpoint was given in code, TOML or `OTEL_EXPORTER_OTLP_ENDPOINT`.
    #[error(
        "no OTLP endpoint: give one in code, in TOML (`endpoint`) or in OTEL_EXPORTER_OTLP_ENDPOINT"
    )]
    NoEndpoint,
    /// An endpoint URL cannot be used.
    #[error("invalid OTLP endpoint `{url}`: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A header name or value cannot be sent.
    #[error("invalid OTLP header `{name}`: {reason}")]
    Header {
        /// The header's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A setting (TOML key or value, environment variable, buckets) cannot be used.
    #[error("OTLP configuration: {message}")]
    Config {
        /// What is wrong, naming the key or variable.
        message: String,
    },
    /// The exporter's runtime could not be created.
    #[error("cannot start the OTLP exporter's runtime")]
    Runtime(#[source] std::io::Error),
    /// The exporter's thread could not be started.
    #[error("cannot start the OTLP exporter's thread")]
    Thread(#[source] std::io::Error),
}

/// The exporter's counters and gauges, recorded through the pipeline.
struct SelfMetrics {
    backlog_requests: instrument::Gauge,
    backlog_bytes: instrument::Gauge,
    sent: instrument::Counter,
    dropped: instrument::Counter,
    refused: instrument::Counter,
    retries: instrument::Counter,
    rejected: instrument::Counter,
    /// The status already recorded, for the counters' increases.
    recorded: OtlpStatus,
}

impl SelfMetrics {
    fn register() -> Result<SelfMetrics, instrument::Error> {
        use instrument::metric;
        Ok(SelfMetrics {
            backlog_requests: metric("instrument_otlp_backlog_requests")
                .description("OTLP requests waiting to be sent, the one in flight included.")
                .gauge()?,
            backlog_bytes: metric("instrument_otlp_backlog_bytes")
                .unit(instrument::Unit::Bytes)
                .description("Encoded bytes of the OTLP requests waiting to be sent.")
                .gauge()?,
            sent: metric("instrument_otlp_sent_requests_total")
                .description("OTLP requests the collector accepted.")
                .counter()?,
            dropped: metric("instrument_otlp_dropped_requests_total")
                .description(
                    "OTLP requests dropped, oldest first, from a full backlog or at shutdown.",
                )
                .counter()?,
            refused: metric("instrument_otlp_refused_requests_total")
                .description("OTLP requests the collector refused for good (4xx other than 429).")
                .counter()?,
            retries: metric("instrument_otlp_retries_total")
                .description("Failed OTLP attempts that were retried.")
                .counter()?,
            rejected: metric("instrument_otlp_rejected_points_total")
                .description("Data points and log records rejected in partial-success answers.")
                .counter()?,
            recorded: OtlpStatus::default(),
        })
    }

    fn record(&mut self, s: &OtlpStatus) {
        let r = &self.recorded;
        self.backlog_requests.set(s.backlog_requests as f64);
        self.backlog_bytes.set(s.backlog_bytes as f64);
        self.sent
            .add(s.sent_requests.saturating_sub(r.sent_requests));
        self.dropped
            .add(s.dropped_requests.saturating_sub(r.dropped_requests));
        self.refused
            .add(s.refused_requests.saturating_sub(r.refused_requests));
        self.retries.add(s.retries.saturating_sub(r.retries));
        self.rejected.add(
            (s.rejected_points + s.rejected_log_records)
                .saturating_sub(r.rejected_points + r.rejected_log_records),
        );
        self.recorded = s.clone();
    }
}

/// A cloneable view of an [`OtlpSink`]'s exporter, usable after the sink has moved into the
/// pipeline.
#[derive(Clone)]
pub struct OtlpHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for OtlpHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpHandle")
            .field("status", &self.status())
            .finish()
    }
}

impl OtlpHandle {
    /// What the exporter has done so far.
    #[must_use]
    pub fn status(&self) -> OtlpStatus {
        self.shared.status()
    }

    /// Waits until every queued request has been sent (or given up), at most `timeout`;
    /// whether the backlog is empty.
    #[must_use]
    pub fn wait_idle(&self, timeout: Duration) -> bool {
        self.shared.wait_idle(timeout)
    }
}

/// Exports the pipeline's measurements over OTLP/HTTP; see the [module docs](self).
pub struct OtlpSink {
    settings: OtlpSinkBuilder,
    endpoint: String,
    exporter: Exporter,
    bounds: Arc<[u64]>,
    resource: Resource,
    scope: InstrumentationScope,
    metrics: Option<MetricsState>,
    logs: Vec<LogRecord>,
    last_export: Instant,
    buffer: Vec<u8>,
    self_metrics: Option<SelfMetrics>,
}

impl std::fmt::Debug for OtlpSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpSink")
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

impl OtlpSinkBuilder {
    /// Checks the settings and starts the exporter's thread. Nothing is sent before the
    /// pipeline delivers its first snapshot.
    ///
    /// # Errors
    /// [`OtlpError`]: no endpoint, an endpoint that is not `http://`, a header that cannot be
    /// sent, empty buckets or a bound of zero, or the thread cannot start.
    pub fn build(self) -> Result<OtlpSink, OtlpError> {
        let metrics_uri = config::signal_uri(
            self.endpoint.as_deref(),
            self.metrics_endpoint.as_deref(),
            "metrics",
        )?;
        let logs_uri = if self.logs {
            Some(config::signal_uri(
                self.endpoint.as_deref(),
                self.logs_endpoint.as_deref(),
                "logs",
            )?)
        } else {
            None
        };
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, value) in &self.headers {
            let bad = |reason: String| OtlpError::Header {
                name: name.clone(),
                reason,
            };
            let n = HeaderName::from_bytes(name.as_bytes()).map_err(|e| bad(e.to_string()))?;
            let v = HeaderValue::from_str(value).map_err(|e| bad(e.to_string()))?;
            headers.push((n, v));
        }
        let mut bounds: Vec<u64> = self
            .buckets
            .iter()
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .collect();
        bounds.sort_unstable();
        bounds.dedup();
        if bounds.is_empty() || bounds[0] == 0 {
            return Err(OtlpError::Config {
                message: "the duration buckets must be non-empty and above zero".into(),
            });
        }
        let endpoint = metrics_uri.to_string();
        let exporter = Exporter::start(Settings {
            metrics_uri,
            logs_uri,
            headers,
            timeout: self.timeout,
            compression: self.compression,
            backlog_bytes: self.backlog_bytes,
            backlog_requests: self.backlog_requests,
            first_backoff: self.first_backoff,
            max_backoff: self.max_backoff,
        })?;
        Ok(OtlpSink {
            settings: self,
            endpoint,
            exporter,
            bounds: bounds.into(),
            resource: Resource::default(),
            scope: encode::scope(),
            metrics: None,
            logs: Vec::new(),
            last_export: Instant::now(),
            buffer: Vec::new(),
            self_metrics: None,
        })
    }
}

impl OtlpSink {
    /// A builder with the defaults (see [`OtlpSinkBuilder`]); give it an endpoint.
    #[must_use]
    pub fn builder() -> OtlpSinkBuilder {
        OtlpSinkBuilder::default()
    }

    /// The sink a program's `--otlp URL` flag and the environment ask for: the standard
    /// variables ([`OtlpSinkBuilder::env`]) applied, then `url`, when given, as the endpoint.
    /// `None` when neither `url` nor `OTEL_EXPORTER_OTLP_ENDPOINT` (or
    /// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`) gives an endpoint: nothing is to be sent.
    ///
    /// ```
    /// # // SAFETY: doctests run in their own process.
    /// # unsafe { std::env::remove_var("OTEL_EXPORTER_OTLP_ENDPOINT") };
    /// # unsafe { std::env::remove_var("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") };
    /// use instrument_sinks::otlp::OtlpSink;
    /// assert!(OtlpSink::from_env_or(None)?.is_none());
    /// let sink = OtlpSink::from_env_or(Some("http://127.0.0.1:4318"))?.expect("a sink");
    /// assert_eq!(sink.endpoint(), "http://127.0.0.1:4318/v1/metrics");
    /// # Ok::<(), instrument_sinks::otlp::OtlpError>(())
    /// ```
    ///
    /// # Errors
    /// As [`OtlpSinkBuilder::env`] and [`OtlpSinkBuilder::build`].
    pub fn from_env_or(url: Option<&str>) -> Result<Option<OtlpSink>, OtlpError> {
        OtlpSinkBuilder::from_env_or(url)?
            .map(OtlpSinkBuilder::build)
            .transpose()
    }

    /// The URL metrics are posted to.
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// A handle on the exporter: its status, and a wait for its backlog to empty.
    #[must_use]
    pub fn handle(&self) -> OtlpHandle {
        OtlpHandle {
            shared: Arc::clone(&self.exporter.shared),
        }
    }

    fn export_metrics(&mut self) {
        let Some(state) = self.metrics.as_mut() else {
            return;
        };
        let request = state.request(&self.resource, &self.scope);
        let items = encode::data_points(&request);
        let body = encode::body(&request, self.settings.compression, &mut self.buffer);
        self.exporter.push(Request {
            signal: Signal::Metrics,
            body: body.into(),
            items,
        });
        self.last_export = Instant::now();
    }

    fn export_logs(&mut self) {
        if self.logs.is_empty() {
            return;
        }
        let records = std::mem::take(&mut self.logs);
        let items = records.len() as u64;
        let request = encode::logs_request(&self.resource, &self.scope, records);
        let body = encode::body(&request, self.settings.compression, &mut self.buffer);
        self.exporter.push(Request {
            signal: Signal::Logs,
            body: body.into(),
            items,
        });
    }

    fn record_self_metrics(&mut self) {
        if let Some(m) = self.self_metrics.as_mut() {
            m.record(&self.exporter.shared.status());
        }
    }

    /// Waits up to `timeout` for the backlog to empty.
    fn wait(&self, timeout: Duration, what: &str) -> Result<(), SinkError> {
        if self.exporter.shared.wait_idle(timeout) {
            return Ok(());
        }
        let s = self.exporter.shared.status();
        Err(SinkError::new(format!(
            "OTLP {what}: {} request(s) ({} bytes) not yet accepted by {} after {}{}; they stay \
             queued and are retried",
            s.backlog_requests,
            s.backlog_bytes,
            self.endpoint,
            humantime::format_duration(timeout),
            s.last_error
                .map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        )))
    }
}

impl Sink for OtlpSink {
    fn name(&self) -> &'static str {
        "otlp"
    }

    fn interests(&self) -> Interests {
        Interests::NONE
            .with_snapshots(true)
            .with_events(self.settings.logs)
            .with_audit(self.settings.logs)
            .with_notices(self.settings.logs)
    }

    fn start(&mut self, info: &StartInfo) -> Result<(), SinkError> {
        self.resource = encode::resource(
            info,
            self.settings.service_name.as_deref(),
            self.settings.instance.as_deref(),
            &self.settings.resource,
        );
        self.metrics = Some(MetricsState::new(
            &self.settings.prefix,
            Arc::clone(&self.bounds),
            info.pipeline_start,
        ));
        if self.settings.self_metrics {
            self.self_metrics = Some(SelfMetrics::register().map_err(|e| {
                SinkError::with_source("cannot register the OTLP exporter's own metrics", e)
            })?);
        }
        Ok(())
    }

    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        if self.settings.logs {
            self.logs
                .extend(batch.events.iter().map(encode::event_record));
            self.logs
                .extend(batch.drops.iter().map(encode::marker_record));
            self.logs
                .extend(batch.audit.iter().map(encode::audit_record));
            self.logs
                .extend(batch.notices.iter().map(encode::notice_record));
            if self.logs.len() >= LOG_BATCH {
                self.export_logs();
            }
        }
        if let Some(snapshot) = &batch.snapshot
            && let Some(state) = self.metrics.as_mut()
        {
            state.apply(snapshot);
            let due = self.last_export.elapsed() >= self.settings.interval;
            if due || snapshot.reason != instrument::SnapshotReason::Window {
                self.export_metrics();
            }
        }
        Ok(())
    }

    fn tick(&mut self, _now: SystemTime) -> Result<(), SinkError> {
        self.export_logs();
        if self.last_export.elapsed() >= self.settings.interval
            && self.metrics.as_ref().is_some_and(|m| m.changed)
        {
            self.export_metrics();
        }
        self.record_self_metrics();
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.export_logs();
        if self.metrics.as_ref().is_some_and(|m| m.changed) {
            self.export_metrics();
        }
        let result = self.wait(self.settings.flush_timeout, "flush");
        self.record_self_metrics();
        result
    }

    fn shutdown(&mut self) -> Result<(), SinkError> {
        self.export_logs();
        if self.metrics.as_ref().is_some_and(|m| m.changed) {
            self.export_metrics();
        }
        let (requests, items) = self.exporter.stop(self.settings.shutdown_timeout);
        if requests == 0 {
            return Ok(());
        }
        let last = self.exporter.shared.status().last_error;
        Err(SinkError::new(format!(
            "OTLP shutdown: {requests} request(s) with {items} data point(s)/log record(s) not \
             accepted by {} within {}, given up{}",
            self.endpoint,
            humantime::format_duration(self.settings.shutdown_timeout),
            last.map(|e| format!(" (last error: {e})"))
                .unwrap_or_default()
        )))
    }

    fn health(&self) -> SinkHealth {
        let s = self.exporter.shared.status();
        if s.consecutive_failures == 0 {
            return SinkHealth::Healthy;
        }
        let message = format!(
            "{} failed attempt(s) in a row to {}, {} request(s) queued, {} dropped: {}",
            s.consecutive_failures,
            self.endpoint,
            s.backlog_requests,
            s.dropped_requests,
            s.last_error.unwrap_or_default()
        );
        if s.dropped_requests > 0 {
            SinkHealth::Unhealthy(message)
        } else {
            SinkHealth::Degraded(message)
        }
    }
}
