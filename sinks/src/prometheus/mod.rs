//! A Prometheus sink: `/metrics` on the operations endpoint ([`http`](crate::http)), in the
//! Prometheus text format or, when the scraper asks for it, in `OpenMetrics` with exemplars.
//!
//! The sink keeps, on its worker thread, what the latest snapshot says (totals since install)
//! and, from events, a recent call per histogram bucket; a scrape renders that state on the
//! endpoint's thread. Every exported name, type and label is listed in `docs/prometheus.md`.
//!
//! # What is exported
//! Per function, `async fn` and `timer!` callsite and outcome (labels `function`, the callsite's
//! name; `module`; `outcome`; then the callsite's own labels):
//! - `instrument_calls_total`: calls, exact, including those whose durations were dropped under
//!   overload; `error` outcomes split by `error_kind`.
//! - `instrument_duration_seconds`: a histogram of the timed calls, buckets configurable
//!   (default 1 us .. 10 s, [`DEFAULT_BUCKETS`]); `+Inf` equals `_count`. In `OpenMetrics` its
//!   buckets carry exemplars `{correlation_id="..."}` of recent error, slow and sampled calls,
//!   so a latency spike leads to the calls behind it.
//! - `instrument_duration_quantile_seconds`: a summary of the last window's p50, p90, p99 and
//!   p99.9 from the HDR aggregates (`NaN` when the window had no calls); a summary, not a
//!   gauge, because Prometheus reserves the `quantile` label for summaries.
//!
//! `counter!`s and counters registered at run time are counters named after them (always with
//! the `_total` suffix), gauges are gauges, and value histograms are summaries with `_sum` and
//! `_count`. Series of the same name and labels from several callsites are merged (counters
//! and histograms summed), never duplicated; a name that clashes with another family's (a
//! gauge named like a counter, `x_count` next to a histogram `x`) is not exported, is counted in
//! `instrument_prometheus_name_clashes_total` and makes the sink degraded with a message naming
//! both callsites. The pipeline's own metrics follow (`instrument_events_recorded_total`,
//! `instrument_sink_errors_total{sink}`, ...). Counters never go backwards while the sink
//! lives. Label values are escaped; names were checked when their callsites were declared or
//! registered, and the run-time ones fall under the core's cardinality limit, whose overflow is
//! exported as `instrument_callsite_overflow_total`.
//!
//! # Formats
//! `Accept: application/openmetrics-text` gets `OpenMetrics` 1.0 (`# TYPE`, `# UNIT`, `# HELP`,
//! counters' `_total` samples, exemplars, `# EOF`), anything else the text format 0.0.4; each
//! with its exact `Content-Type` ([`Format::content_type`]). Responses are gzip-compressed when
//! `Accept-Encoding` allows it.
//!
//! # Cost
//! Label sets are rendered once, when a series first appears; a scrape writes every series into
//! one buffer that is reused from scrape to scrape, under a lock the sink's worker takes only
//! to apply a batch. Memory grows with the number of series, never with the call rate or
//! between scrapes. `cargo bench --bench sinks -- prometheus_render` measures rendering next to
//! `metrics-exporter-prometheus`.
//!
//! # Example
//! ```
//! use instrument_sinks::prometheus::{Format, PrometheusSink};
//!
//! let sink = PrometheusSink::builder()
//!     .listen("127.0.0.1:0".parse()?) // default 127.0.0.1:9464
//!     .build()?;
//! let addr = sink.local_addr().expect("listening");
//! let metrics = sink.handle();
//! let pipeline = instrument::builder().sink(sink).install()?;
//!
//! instrument::metric("files_parsed_total").label("stage", "parse").counter()?.add(3);
//! drop(instrument::timer!("load_config"));
//! pipeline.flush()?;
//!
//! // What `GET http://{addr}/metrics` answers:
//! let text = metrics.render(Format::Text);
//! assert!(text.contains("files_parsed_total{stage=\"parse\"} 3\n"));
//! assert!(text.contains("instrument_calls_total{function=\"load_config\""));
//! assert!(text.contains("# TYPE instrument_duration_seconds histogram\n"));
//! # let _ = addr;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod registry;
mod text;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use axum::routing::{MethodRouter, get};
use instrument::{
    Batch, CallStats, CallsiteKind, Event, Interests, Metadata, Outcome, SelfMetrics, Sink,
    SinkError, SinkHealth, Snapshot,
};

use self::registry::{Exemplar, FamilySpec, Registry, Scale, SeriesRef, Type, Value};
use self::text::{is_metric_name, label_set};
use crate::http::{Endpoint, EndpointBuilder, HttpError};

pub use crate::buckets::DEFAULT_BUCKETS;

/// The default prefix of the SDK's own metric names.
pub const DEFAULT_PREFIX: &str = "instrument";

/// An exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Format {
    /// The Prometheus text format, version 0.0.4.
    Text,
    /// `OpenMetrics` 1.0 text, with exemplars.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` of a response in this format.
    ///
    /// ```
    /// use instrument_sinks::prometheus::Format;
    /// assert_eq!(Format::Text.content_type(), "text/plain; version=0.0.4; charset=utf-8");
    /// assert_eq!(
    ///     Format::OpenMetrics.content_type(),
    ///     "application/openmetrics-text; version=1.0.0; charset=utf-8"
    /// );
    /// ```
    #[must_use]
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }

    /// The format to answer a request with this `Accept` header: `OpenMetrics` when the client
    /// accepts it at least as much as plain text, the text format otherwise.
    ///
    /// ```
    /// use instrument_sinks::prometheus::Format;
    /// // What Prometheus sends:
    /// let prometheus = "application/openmetrics-text;version=1.0.0,\
    ///     application/openmetrics-text;version=0.0.1;q=0.75,\
    ///     text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    /// assert_eq!(Format::negotiate(prometheus), Format::OpenMetrics);
    /// assert_eq!(Format::negotiate("text/plain"), Format::Text);
    /// assert_eq!(Format::negotiate(""), Format::Text);
    /// assert_eq!(
    ///     Format::negotiate("application/openmetrics-text;q=0.2, text/plain"),
    ///     Format::Text
    /// );
    /// ```
    #[must_use]
    pub fn negotiate(accept: &str) -> Format {
        let (mut openmetrics, mut text) = (0.0f32, 0.0f32);
        for range in accept.split(',') {
            let mut params = range.split(';').map(str::trim);
            let media = params.next().unwrap_or_default();
            let q = params
                .find_map(|p| p.strip_prefix("q=").and_then(|q| q.trim().parse().ok()))
                .unwrap_or(1.0f32);
            if media.eq_ignore_ascii_case("application/openmetrics-text") {
                openmetrics = openmetrics.max(q);
            } else if ["text/plain", "text/*", "*/*"]
                .iter()
                .any(|m| media.eq_ignore_ascii_case(m))
            {
                text = text.max(q);
            }
        }
        if openmetrics > 0.0 && openmetrics >= text {
            Format::OpenMetrics
        } else {
            Format::Text
        }
    }
}

/// What [`PrometheusSinkBuilder::build`] does when the address cannot be bound.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BindFailure {
    /// `build` fails with an error naming the address.
    #[default]
    Error,
    /// `build` succeeds; the sink reports itself unhealthy, naming the address, and tries
    /// again every tick (default 1 s) until the address is free.
    Unhealthy,
}

/// Why a [`PrometheusSink`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PrometheusError {
    /// The operations endpoint could not start (address in use, ...).
    #[error(transparent)]
    Endpoint(#[from] HttpError),
    /// The prefix is not a valid start of a metric name.
    #[error("invalid Prometheus metric prefix {prefix:?}: it must match [a-zA-Z_:][a-zA-Z0-9_:]*")]
    Prefix {
        /// The prefix.
        prefix: String,
    },
    /// The histogram buckets are unusable.
    #[error("invalid Prometheus histogram buckets: {reason}")]
    Buckets {
        /// Why.
        reason: &'static str,
    },
}

/// Configures a [`PrometheusSink`].
#[derive(Clone, Debug)]
pub struct PrometheusSinkBuilder {
    endpoint: EndpointBuilder,
    serve: bool,
    prefix: String,
    buckets: Vec<Duration>,
    quantiles: bool,
    exemplars: bool,
    bind_failure: BindFailure,
}

impl Default for PrometheusSinkBuilder {
    fn default() -> Self {
        PrometheusSinkBuilder {
            endpoint: Endpoint::builder(),
            serve: true,
            prefix: DEFAULT_PREFIX.to_owned(),
            buckets: DEFAULT_BUCKETS.to_vec(),
            quantiles: true,
            exemplars: true,
            bind_failure: BindFailure::Error,
        }
    }
}

impl PrometheusSinkBuilder {
    /// The address of the endpoint (default `127.0.0.1:9464`); port 0 picks a free one.
    #[must_use]
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.endpoint = self.endpoint.listen(addr);
        self
    }

    /// Serves `/metrics` on this endpoint, with its settings and the routes other parts put on
    /// it, instead of a default one. The sink starts it and stops it when the pipeline shuts
    /// down.
    #[must_use]
    pub fn endpoint(mut self, endpoint: EndpointBuilder) -> Self {
        self.endpoint = endpoint;
        self
    }

    /// Whether to start an endpoint at all (default `true`). Without one, mount
    /// [`PrometheusHandle::route`] on an endpoint of your own or call
    /// [`PrometheusHandle::render`].
    #[must_use]
    pub fn serve(mut self, serve: bool) -> Self {
        self.serve = serve;
        self
    }

    /// The prefix of the SDK's own metric names (default `instrument`):
    /// `<prefix>_calls_total`, `<prefix>_duration_seconds`, `<prefix>_sink_errors_total`, ...
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The upper bounds of the duration histogram's buckets (default [`DEFAULT_BUCKETS`]);
    /// sorted and deduplicated, `+Inf` added. Bounds are exact to 1/1024 of their value (the
    /// resolution of the HDR histograms they are cut from).
    #[must_use]
    pub fn buckets(mut self, bounds: impl IntoIterator<Item = Duration>) -> Self {
        self.buckets = bounds.into_iter().collect();
        self
    }

    /// Whether to export `<prefix>_duration_quantile_seconds` (default `true`).
    #[must_use]
    pub fn quantiles(mut self, on: bool) -> Self {
        self.quantiles = on;
        self
    }

    /// Whether to receive events and attach exemplars to histogram buckets (default `true`).
    #[must_use]
    pub fn exemplars(mut self, on: bool) -> Self {
        self.exemplars = on;
        self
    }

    /// What to do when the address cannot be bound (default [`BindFailure::Error`]).
    #[must_use]
    pub fn on_bind_failure(mut self, then: BindFailure) -> Self {
        self.bind_failure = then;
        self
    }

    /// Checks the settings and starts the endpoint, so that a busy port is reported when the
    /// pipeline is built.
    ///
    /// # Errors
    /// [`PrometheusError`]: the endpoint cannot start ([`HttpError::Bind`] names the address;
    /// with [`BindFailure::Unhealthy`] a bind failure is not an error), the endpoint already
    /// has a `/metrics` route, the prefix is not a metric name, or the buckets are empty or
    /// contain zero.
    pub fn build(self) -> Result<PrometheusSink, PrometheusError> {
        if !is_metric_name(&self.prefix) {
            return Err(PrometheusError::Prefix {
                prefix: self.prefix,
            });
        }
        let mut bounds: Vec<u64> = self
            .buckets
            .iter()
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .collect();
        bounds.sort_unstable();
        bounds.dedup();
        if bounds.is_empty() {
            return Err(PrometheusError::Buckets {
                reason: "no bucket bounds",
            });
        }
        if bounds[0] == 0 {
            return Err(PrometheusError::Buckets {
                reason: "a bound of zero",
            });
        }
        let bounds: Arc<[u64]> = bounds.into();
        let mut registry = Registry::new(&bounds);
        let families = Families::register(&mut registry, &self.prefix);
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                registry,
                buffer: Vec::new(),
                families,
            }),
        });
        let mut sink = PrometheusSink {
            shared: Arc::clone(&shared),
            families,
            bounds,
            endpoint: None,
            retry: None,
            bind_error: None,
            quantiles: self.quantiles,
            exemplars: self.exemplars,
            calls: Vec::new(),
            call_index: HashMap::new(),
            counters: HashMap::new(),
            gauges: HashMap::new(),
            touched: Vec::new(),
            clashes: 0,
            last_clash: None,
        };
        if self.serve {
            let endpoint = self.endpoint.route("/metrics", route(shared));
            match endpoint.clone().start() {
                Ok(running) => sink.endpoint = Some(running),
                Err(error @ HttpError::Bind { .. })
                    if self.bind_failure == BindFailure::Unhealthy =>
                {
                    sink.bind_error = Some(error.to_string());
                    sink.retry = Some(endpoint);
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(sink)
    }
}

/// The SDK's families, registered first so that user metrics cannot take their names.
#[derive(Clone, Copy, Debug)]
struct Families {
    calls: u32,
    duration: u32,
    quantiles: u32,
    self_metrics: [u32; SELF_METRICS.len()],
    sink_metrics: [u32; SINK_METRICS.len()],
    sink_health: u32,
    scrapes: u32,
    render_seconds: u32,
    series: u32,
    clashes: u32,
}

/// The pipeline's metrics without labels: name after the prefix, type, unit, help, and how to
/// read it from [`SelfMetrics`].
type SelfMetric = (
    &'static str,
    Type,
    Option<&'static str>,
    &'static str,
    fn(&SelfMetrics) -> f64,
);

const SELF_METRICS: [SelfMetric; 11] = [
    (
        "events_recorded_total",
        Type::Counter,
        None,
        "Records that reached the drain since the pipeline was installed.",
        |m| m.events_recorded as f64,
    ),
    (
        "dropped_events_total",
        Type::Counter,
        None,
        "Records whose durations were dropped because a thread's queue was full; their calls are still counted.",
        |m| m.events_dropped as f64,
    ),
    (
        "queue_high_water",
        Type::Gauge,
        None,
        "The fullest any thread's queue was seen by the drain, in records.",
        |m| m.queue_high_water as f64,
    ),
    (
        "drain_cycle_seconds",
        Type::Gauge,
        Some("seconds"),
        "Duration of the last drain cycle.",
        |m| m.drain_cycle.as_secs_f64(),
    ),
    (
        "memory_bytes",
        Type::Gauge,
        Some("bytes"),
        "Bytes held by thread buffers and aggregates.",
        |m| m.memory_bytes as f64,
    ),
    (
        "threads",
        Type::Gauge,
        None,
        "Thread buffers registered.",
        |m| m.threads as f64,
    ),
    (
        "drain_panics_total",
        Type::Counter,
        None,
        "Drain cycles that panicked (caught; the drain goes on).",
        |m| m.drain_panics as f64,
    ),
    (
        "audit_queued",
        Type::Gauge,
        None,
        "Audit entries waiting for the drain.",
        |m| m.audit_queued as f64,
    ),
    (
        "audit_orphaned_total",
        Type::Counter,
        None,
        "Audit entries of audited calls that ended while no pipeline was installed.",
        |m| m.audit_orphaned as f64,
    ),
    (
        "notices_dropped_total",
        Type::Counter,
        None,
        "Notices dropped because the notice queue was full.",
        |m| m.notices_dropped as f64,
    ),
    (
        "callsite_overflow_total",
        Type::Counter,
        None,
        "Run-time registrations folded into their name's overflow=\"true\" series by the cardinality limit.",
        |m| m.callsite_overflows as f64,
    ),
];

/// The pipeline's metrics per sink (label `sink`), read from its `SinkStatus`.
type SinkMetric = (
    &'static str,
    Type,
    &'static str,
    fn(&instrument::SinkStatus) -> u64,
);

const SINK_METRICS: [SinkMetric; 11] = [
    (
        "sink_errors_total",
        Type::Counter,
        "Failed writes, flushes and other calls of the sink.",
        |s| s.errors,
    ),
    (
        "sink_panics_total",
        Type::Counter,
        "Panics caught in the sink (also counted in errors).",
        |s| s.panics,
    ),
    (
        "sink_delivered_batches_total",
        Type::Counter,
        "Batches delivered to the sink.",
        |s| s.delivered,
    ),
    (
        "sink_dropped_batches_total",
        Type::Counter,
        "Event and snapshot batches given up on after retries or a full backlog.",
        |s| s.dropped_batches,
    ),
    (
        "sink_lag_batches",
        Type::Gauge,
        "Batches waiting for the sink.",
        |s| s.backlog,
    ),
    (
        "sink_lag_events",
        Type::Gauge,
        "Events, drop markers and notices in the batches waiting for the sink.",
        |s| s.backlog_events,
    ),
    (
        "sink_audit_lag_entries",
        Type::Gauge,
        "Audit entries waiting for the sink.",
        |s| s.audit_backlog,
    ),
    (
        "sink_audit_delivered_entries_total",
        Type::Counter,
        "Audit entries delivered to the sink.",
        |s| s.audit_delivered,
    ),
    (
        "sink_lost_events_total",
        Type::Counter,
        "Events, drop markers and notices the sink did not get.",
        |s| s.lost.events,
    ),
    (
        "sink_lost_snapshots_total",
        Type::Counter,
        "Snapshots the sink did not get.",
        |s| s.lost.snapshots,
    ),
    (
        "sink_lost_audit_entries_total",
        Type::Counter,
        "Audit entries the sink did not get.",
        |s| s.lost.audit_entries,
    ),
];

impl Families {
    fn register(registry: &mut Registry, prefix: &str) -> Families {
        let mut family = |name: &str, kind, scale, unit: Option<&str>, help: &str| {
            registry
                .family(&FamilySpec {
                    name: &format!("{prefix}_{name}"),
                    kind,
                    scale,
                    help,
                    unit,
                    origin: "built in".to_owned(),
                })
                .expect("the SDK's own names do not clash")
        };
        let calls = family(
            "calls_total",
            Type::Counter,
            Scale::Plain,
            None,
            "Calls per callsite and outcome, including those whose durations were dropped under overload.",
        );
        let duration = family(
            "duration_seconds",
            Type::Histogram,
            Scale::Seconds,
            Some("seconds"),
            "Durations of the timed calls per callsite and outcome.",
        );
        let quantiles = family(
            "duration_quantile_seconds",
            Type::Summary,
            Scale::Seconds,
            Some("seconds"),
            "Quantiles of the call durations of the last window per callsite and outcome (NaN when the window had no calls).",
        );
        let self_metrics = SELF_METRICS
            .map(|(name, kind, unit, help, _)| family(name, kind, Scale::Plain, unit, help));
        let sink_metrics =
            SINK_METRICS.map(|(name, kind, help, _)| family(name, kind, Scale::Plain, None, help));
        let sink_health = family(
            "sink_health",
            Type::Gauge,
            Scale::Plain,
            None,
            "1 for the sink's current health state (healthy, degraded, unhealthy), 0 for the others.",
        );
        let scrapes = family(
            "prometheus_scrapes_total",
            Type::Counter,
            Scale::Plain,
            None,
            "Renders of /metrics per format.",
        );
        let render_seconds = family(
            "prometheus_render_seconds",
            Type::Gauge,
            Scale::Plain,
            Some("seconds"),
            "How long the previous render of /metrics took.",
        );
        let series = family(
            "prometheus_series",
            Type::Gauge,
            Scale::Plain,
            None,
            "Series the Prometheus sink exports.",
        );
        let clashes = family(
            "prometheus_name_clashes_total",
            Type::Counter,
            Scale::Plain,
            None,
            "Callsites not exported because their metric name clashes with another family's.",
        );
        Families {
            calls,
            duration,
            quantiles,
            self_metrics,
            sink_metrics,
            sink_health,
            scrapes,
            render_seconds,
            series,
            clashes,
        }
    }
}

/// What the sink and the endpoint share.
struct Shared {
    state: Mutex<State>,
}

struct State {
    registry: Registry,
    /// Reused from scrape to scrape; grows to the largest exposition and stays there.
    buffer: Vec<u8>,
    families: Families,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Renders into `out` (cleared first).
    fn render_into(&self, format: Format, out: &mut Vec<u8>) {
        let mut state = self.lock();
        state.render(format, out);
    }

    /// Renders into the shared buffer and copies the result out.
    fn scrape(&self, format: Format) -> bytes::Bytes {
        let mut state = self.lock();
        let mut buffer = std::mem::take(&mut state.buffer);
        state.render(format, &mut buffer);
        let body = bytes::Bytes::copy_from_slice(&buffer);
        state.buffer = buffer;
        body
    }
}

impl State {
    fn render(&mut self, format: Format, out: &mut Vec<u8>) {
        let start = Instant::now();
        let label = match format {
            Format::Text => "text",
            Format::OpenMetrics => "openmetrics",
        };
        let scrapes = self
            .registry
            .series(self.families.scrapes, label_set([("format", label)]));
        self.registry.add(scrapes, 1);
        let series = self.registry.series(self.families.series, String::new());
        let count = self.registry.len() as f64;
        self.registry.set(series, count);
        out.clear();
        self.registry.render(out, format == Format::OpenMetrics);
        let seconds = self
            .registry
            .series(self.families.render_seconds, String::new());
        self.registry.set(seconds, start.elapsed().as_secs_f64());
    }
}

fn route(shared: Arc<Shared>) -> MethodRouter {
    get(move |headers: HeaderMap| {
        let shared = Arc::clone(&shared);
        async move {
            let accept = headers
                .get(ACCEPT)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default();
            let format = Format::negotiate(accept);
            let body = shared.scrape(format);
            ([(CONTENT_TYPE, format.content_type())], body)
        }
    })
}

/// A cloneable handle on what a [`PrometheusSink`] exports, usable after the sink has moved
/// into the pipeline.
#[derive(Clone)]
pub struct PrometheusHandle {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PrometheusHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusHandle").finish_non_exhaustive()
    }
}

impl PrometheusHandle {
    /// What `/metrics` answers in `format` now.
    #[must_use]
    pub fn render(&self, format: Format) -> String {
        let mut out = Vec::new();
        self.shared.render_into(format, &mut out);
        String::from_utf8(out).expect("the exposition is UTF-8")
    }

    /// Renders into `out`, which is cleared first; reusing it saves an allocation per render.
    pub fn render_into(&self, format: Format, out: &mut Vec<u8>) {
        self.shared.render_into(format, out);
    }

    /// The `/metrics` handler, to mount on an endpoint the sink does not start
    /// ([`serve(false)`](PrometheusSinkBuilder::serve)):
    /// `endpoint.route("/metrics", handle.route())`.
    pub fn route(&self) -> MethodRouter {
        route(Arc::clone(&self.shared))
    }
}

/// Exports what the pipeline delivers on `/metrics`; see the [module docs](self).
pub struct PrometheusSink {
    shared: Arc<Shared>,
    families: Families,
    /// Histogram bucket bounds in nanoseconds (`+Inf` not included).
    bounds: Arc<[u64]>,
    endpoint: Option<Endpoint>,
    /// The endpoint to start again at the next tick, after a bind failure.
    retry: Option<EndpointBuilder>,
    bind_error: Option<String>,
    quantiles: bool,
    exemplars: bool,
    /// Per callsite and outcome of timed calls or values.
    calls: Vec<CallSeries>,
    call_index: HashMap<(&'static Metadata, Outcome), usize>,
    /// Per counter callsite: its series (`None`: not exported) and the total applied.
    counters: HashMap<&'static Metadata, (Option<SeriesRef>, u64)>,
    gauges: HashMap<&'static Metadata, Option<SeriesRef>>,
    /// Indices into `calls` updated by the snapshot being applied.
    touched: Vec<usize>,
    clashes: u64,
    last_clash: Option<String>,
}

impl std::fmt::Debug for PrometheusSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PrometheusSink")
            .field("endpoint", &self.endpoint)
            .field("bind_error", &self.bind_error)
            .finish_non_exhaustive()
    }
}

/// The series one callsite and outcome feeds, what the latest snapshot said, and what has been
/// added to the series so far (series are shared by callsites of the same name and labels, so
/// each callsite adds its increase).
struct CallSeries {
    callsite: &'static Metadata,
    outcome: Outcome,
    /// Registered in the registry (`false` until the first lock after it was seen).
    registered: bool,
    /// `function`, `module` and `outcome` labels, rendered; empty for value histograms.
    head: String,
    /// The callsite's own labels, rendered.
    tail: String,
    /// Calls (outcome `ok`, `panic`, `cancelled`) or errors of no listed kind (`error`); for a
    /// value histogram, its summary.
    calls: Option<SeriesRef>,
    histogram: Option<SeriesRef>,
    quantiles: Option<SeriesRef>,
    /// Error kinds: kind, series, latest total, applied total.
    kinds: Vec<(&'static str, Option<SeriesRef>, u64, u64)>,
    latest_count: u64,
    applied_count: u64,
    latest_timed: u64,
    applied_timed: u64,
    latest_sum: u128,
    applied_sum: u128,
    latest_buckets: Box<[u64]>,
    applied_buckets: Box<[u64]>,
    window: Option<[u64; 4]>,
}

fn is_timed(kind: CallsiteKind) -> bool {
    matches!(
        kind,
        CallsiteKind::Function | CallsiteKind::Async | CallsiteKind::Timer
    )
}

fn join(parts: &[&str]) -> String {
    parts
        .iter()
        .filter(|p| !p.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(",")
}

fn origin(meta: &Metadata) -> String {
    let kind = match meta.kind() {
        CallsiteKind::Counter => "counter",
        CallsiteKind::Gauge => "gauge",
        CallsiteKind::Histogram => "histogram",
        _ => "callsite",
    };
    if meta.line() == 0 {
        format!("{kind} at {}", meta.file())
    } else {
        format!("{kind} at {}:{}", meta.file(), meta.line())
    }
}

fn help_of(meta: &Metadata) -> String {
    meta.description().map_or_else(
        || format!("`{}` ({}).", meta.name(), origin(meta)),
        str::to_owned,
    )
}

/// `histogram`'s counts per bucket of `bounds` (the last `+Inf`), into `out`.
fn rebucket(histogram: &instrument::Histogram, bounds: &[u64], out: &mut [u64]) {
    out.fill(0);
    let mut bucket = 0;
    for (value, n) in histogram.iter_buckets() {
        while bucket < bounds.len() && bounds[bucket] < value {
            bucket += 1;
        }
        out[bucket] += n;
    }
}

impl PrometheusSink {
    /// A builder with the defaults: endpoint `127.0.0.1:9464`, prefix `instrument`,
    /// [`DEFAULT_BUCKETS`], quantiles and exemplars on.
    #[must_use]
    pub fn builder() -> PrometheusSinkBuilder {
        PrometheusSinkBuilder::default()
    }

    /// The address `/metrics` is served on; `None` without an endpoint, or while the address
    /// could not be bound.
    #[must_use]
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.endpoint.as_ref().map(Endpoint::local_addr)
    }

    /// A handle that renders what this sink exports, for tests, benches and endpoints of your
    /// own.
    #[must_use]
    pub fn handle(&self) -> PrometheusHandle {
        PrometheusHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    fn call_series(&mut self, callsite: &'static Metadata, outcome: Outcome) -> usize {
        let buckets = self.bounds.len() + 1;
        *self
            .call_index
            .entry((callsite, outcome))
            .or_insert_with(|| {
                self.calls.push(CallSeries {
                    callsite,
                    outcome,
                    registered: false,
                    head: String::new(),
                    tail: String::new(),
                    calls: None,
                    histogram: None,
                    quantiles: None,
                    kinds: Vec::new(),
                    latest_count: 0,
                    applied_count: 0,
                    latest_timed: 0,
                    applied_timed: 0,
                    latest_sum: 0,
                    applied_sum: 0,
                    latest_buckets: vec![0; buckets].into(),
                    applied_buckets: vec![0; buckets].into(),
                    window: None,
                });
                self.calls.len() - 1
            })
    }

    /// Reads a snapshot's call aggregates into `calls` without the lock: re-bucketing a
    /// histogram is the expensive part, and only done when its count changed.
    fn read_calls(&mut self, snapshot: &Snapshot, bounds: &[u64]) {
        self.touched.clear();
        for call in &snapshot.calls {
            let kind = call.callsite.kind();
            if !is_timed(kind) && kind != CallsiteKind::Histogram {
                continue;
            }
            let i = self.call_series(call.callsite, call.outcome);
            self.touched.push(i);
            let c = &mut self.calls[i];
            read_call(c, call, bounds);
        }
    }

    fn register(&mut self, registry: &mut Registry, i: usize) {
        let families = self.families;
        let quantiles = self.quantiles;
        let c = &mut self.calls[i];
        if c.registered {
            return;
        }
        c.registered = true;
        let meta = c.callsite;
        c.tail = label_set(meta.labels_slice().iter().copied());
        if meta.kind() == CallsiteKind::Histogram {
            // Nanoseconds under a name in seconds (what the `metrics` bridge registers for a
            // histogram in seconds): exported in seconds, as the name says.
            let seconds = meta.unit() == Some(instrument::Unit::Nanoseconds)
                && meta.name().ends_with("_seconds");
            let spec = FamilySpec {
                name: meta.name(),
                kind: Type::Summary,
                scale: if seconds {
                    Scale::Seconds
                } else {
                    Scale::Plain
                },
                help: &help_of(meta),
                unit: if seconds {
                    Some("seconds")
                } else {
                    meta.unit().map(instrument::Unit::as_str)
                },
                origin: origin(meta),
            };
            match registry.family(&spec) {
                Ok(family) => c.calls = Some(registry.series(family, c.tail.clone())),
                Err(why) => {
                    self.clashes += 1;
                    self.last_clash = Some(why);
                }
            }
            return;
        }
        c.head = label_set([
            ("function", meta.name()),
            ("module", meta.module_path()),
            ("outcome", c.outcome.as_str()),
        ]);
        let labels = join(&[&c.head, &c.tail]);
        c.histogram = Some(registry.series(families.duration, labels.clone()));
        if quantiles {
            c.quantiles = Some(registry.series(families.quantiles, labels.clone()));
        }
        if c.outcome != Outcome::Error {
            c.calls = Some(registry.series(families.calls, labels));
        }
    }

    /// Adds each touched callsite's increase to its series.
    fn apply_calls(&mut self, registry: &mut Registry) {
        let families = self.families;
        for t in 0..self.touched.len() {
            let i = self.touched[t];
            self.register(registry, i);
            let c = &mut self.calls[i];
            if c.callsite.kind() == CallsiteKind::Histogram {
                apply_values(c, registry);
                continue;
            }
            if c.outcome == Outcome::Error {
                let mut attributed = 0u64;
                for (kind, series, latest, applied) in &mut c.kinds {
                    attributed = attributed.saturating_add(*latest);
                    let series = *series.get_or_insert_with(|| {
                        let error_kind = label_set([("error_kind", *kind)]);
                        registry.series(families.calls, join(&[&c.head, &error_kind, &c.tail]))
                    });
                    registry.add(series, latest.saturating_sub(*applied));
                    *applied = (*applied).max(*latest);
                }
                // Errors whose kind is not listed (dropped records of kinds past the first
                // four): without an `error_kind` label.
                let rest = c.latest_count.saturating_sub(attributed);
                if rest > c.applied_count {
                    let series = *c.calls.get_or_insert_with(|| {
                        registry.series(families.calls, join(&[&c.head, &c.tail]))
                    });
                    registry.add(series, rest - c.applied_count);
                    c.applied_count = rest;
                }
            } else if let Some(series) = c.calls {
                registry.add(series, c.latest_count.saturating_sub(c.applied_count));
                c.applied_count = c.applied_count.max(c.latest_count);
            }
            if let Some(series) = c.histogram
                && let Value::Histogram(h) = registry.value(series)
            {
                for ((count, latest), applied) in h
                    .counts
                    .iter_mut()
                    .zip(c.latest_buckets.iter())
                    .zip(c.applied_buckets.iter_mut())
                {
                    *count += latest.saturating_sub(*applied);
                    *applied = (*applied).max(*latest);
                }
                h.sum_nanos += c.latest_sum.saturating_sub(c.applied_sum);
                c.applied_sum = c.applied_sum.max(c.latest_sum);
            }
            if let Some(series) = c.quantiles
                && let Value::Summary(s) = registry.value(series)
            {
                s.quantiles = c.window.map_or([None; 4], |w| w.map(Some));
            }
        }
    }

    fn apply_counters_and_gauges(&mut self, registry: &mut Registry, snapshot: &Snapshot) {
        for counter in &snapshot.counters {
            let meta = counter.callsite;
            let (series, applied) = self.counters.entry(meta).or_insert_with(|| {
                let spec = FamilySpec {
                    name: meta.name(),
                    kind: Type::Counter,
                    scale: Scale::Plain,
                    help: &help_of(meta),
                    unit: meta.unit().map(instrument::Unit::as_str),
                    origin: origin(meta),
                };
                match registry.family(&spec) {
                    Ok(family) => {
                        let labels = label_set(meta.labels_slice().iter().copied());
                        (Some(registry.series(family, labels)), 0)
                    }
                    Err(why) => {
                        self.clashes += 1;
                        self.last_clash = Some(why);
                        (None, 0)
                    }
                }
            });
            if let Some(series) = *series {
                registry.add(series, counter.total.saturating_sub(*applied));
            }
            *applied = (*applied).max(counter.total);
        }
        for gauge in &snapshot.gauges {
            let meta = gauge.callsite;
            let series = *self.gauges.entry(meta).or_insert_with(|| {
                let spec = FamilySpec {
                    name: meta.name(),
                    kind: Type::Gauge,
                    scale: Scale::Plain,
                    help: &help_of(meta),
                    unit: meta.unit().map(instrument::Unit::as_str),
                    origin: origin(meta),
                };
                match registry.family(&spec) {
                    Ok(family) => {
                        let labels = label_set(meta.labels_slice().iter().copied());
                        Some(registry.series(family, labels))
                    }
                    Err(why) => {
                        self.clashes += 1;
                        self.last_clash = Some(why);
                        None
                    }
                }
            });
            if let Some(series) = series {
                registry.set(series, gauge.value);
            }
        }
    }

    fn apply_self_metrics(&self, registry: &mut Registry, metrics: &SelfMetrics) {
        let families = self.families;
        for (&family, (_, kind, _, _, read)) in families.self_metrics.iter().zip(&SELF_METRICS) {
            let series = registry.series(family, String::new());
            let value = read(metrics);
            match kind {
                Type::Counter => registry.raise(series, value as u64),
                _ => registry.set(series, value),
            }
        }
        for sink in &metrics.sinks {
            let labels = label_set([("sink", sink.name.as_str())]);
            for (&family, (_, kind, _, read)) in families.sink_metrics.iter().zip(&SINK_METRICS) {
                let series = registry.series(family, labels.clone());
                let value = read(sink);
                match kind {
                    Type::Counter => registry.raise(series, value),
                    _ => registry.set(series, value as f64),
                }
            }
            let state = match sink.health {
                SinkHealth::Degraded(_) => "degraded",
                SinkHealth::Unhealthy(_) => "unhealthy",
                _ => "healthy",
            };
            for candidate in ["healthy", "degraded", "unhealthy"] {
                let labels = label_set([("sink", sink.name.as_str()), ("state", candidate)]);
                let series = registry.series(families.sink_health, labels);
                registry.set(series, f64::from(u8::from(candidate == state)));
            }
        }
        let clashes = registry.series(families.clashes, String::new());
        registry.raise(clashes, self.clashes);
    }

    fn apply_snapshot(&mut self, snapshot: &Snapshot) {
        let bounds = Arc::clone(&self.bounds);
        self.read_calls(snapshot, &bounds);
        let shared = Arc::clone(&self.shared);
        let mut state = shared.lock();
        let registry = &mut state.registry;
        self.apply_calls(registry);
        self.apply_counters_and_gauges(registry, snapshot);
        self.apply_self_metrics(registry, &snapshot.self_metrics);
    }

    /// Keeps the latest event with a correlation id per histogram bucket as its exemplar.
    fn apply_events(&mut self, events: &[Event]) {
        let mut relevant = events
            .iter()
            .filter(|e| e.correlation.is_some() && is_timed(e.callsite.kind()))
            .peekable();
        if relevant.peek().is_none() {
            return;
        }
        let indices: Vec<(usize, &Event)> = relevant
            .map(|e| (self.call_series(e.callsite, e.outcome), e))
            .collect();
        let shared = Arc::clone(&self.shared);
        let mut state = shared.lock();
        let registry = &mut state.registry;
        let bounds = Arc::clone(&self.bounds);
        for (i, event) in indices {
            self.register(registry, i);
            let Some(series) = self.calls[i].histogram else {
                continue;
            };
            let Some(id) = event.correlation else {
                continue;
            };
            let nanos = u64::try_from(event.duration.as_nanos()).unwrap_or(u64::MAX);
            let bucket = bounds.partition_point(|&b| b < nanos);
            let end = event.start + event.duration;
            let at_ms = end
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
            if let Value::Histogram(h) = registry.value(series) {
                let slots = h
                    .exemplars
                    .get_or_insert_with(|| vec![None; bounds.len() + 1].into());
                slots[bucket] = Some(Exemplar {
                    correlation: id.get(),
                    nanos,
                    at_ms,
                });
            }
        }
    }

    fn start_endpoint(&mut self) {
        let Some(endpoint) = self.retry.take() else {
            return;
        };
        match endpoint.clone().start() {
            Ok(running) => {
                self.endpoint = Some(running);
                self.bind_error = None;
            }
            Err(error) => {
                self.bind_error = Some(error.to_string());
                self.retry = Some(endpoint);
            }
        }
    }
}

/// Takes what a snapshot says about one callsite and outcome.
fn read_call(c: &mut CallSeries, call: &CallStats, bounds: &[u64]) {
    c.latest_count = call.total.count;
    let histogram = &call.histogram;
    if histogram.count() != c.latest_timed {
        c.latest_timed = histogram.count();
        c.latest_sum = histogram.sum();
        if call.callsite.kind() != CallsiteKind::Histogram {
            rebucket(histogram, bounds, &mut c.latest_buckets);
        }
    }
    for kind in &call.error_kinds {
        match c.kinds.iter_mut().find(|k| k.0 == kind.kind) {
            Some(k) => k.2 = kind.total,
            None => c.kinds.push((kind.kind, None, kind.total, 0)),
        }
    }
    let w = &call.window;
    c.window = (w.timed > 0).then(|| {
        [w.p50, w.p90, w.p99, w.p999].map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
    });
}

/// A value histogram's summary: the window's quantiles, and the increase of sum and count.
fn apply_values(c: &mut CallSeries, registry: &mut Registry) {
    let Some(series) = c.calls else {
        return;
    };
    if let Value::Summary(s) = registry.value(series) {
        s.quantiles = c.window.map_or([None; 4], |w| w.map(Some));
        let (sum, count) = s.totals.get_or_insert((0, 0));
        *sum += c.latest_sum.saturating_sub(c.applied_sum);
        *count += c.latest_timed.saturating_sub(c.applied_timed);
    }
    c.applied_sum = c.applied_sum.max(c.latest_sum);
    c.applied_timed = c.applied_timed.max(c.latest_timed);
}

impl Sink for PrometheusSink {
    fn name(&self) -> &'static str {
        "prometheus"
    }

    fn interests(&self) -> Interests {
        Interests::NONE
            .with_snapshots(true)
            .with_events(self.exemplars)
    }

    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        if let Some(snapshot) = &batch.snapshot {
            self.apply_snapshot(snapshot);
        }
        if self.exemplars && !batch.events.is_empty() {
            self.apply_events(&batch.events);
        }
        Ok(())
    }

    fn tick(&mut self, _now: SystemTime) -> Result<(), SinkError> {
        self.start_endpoint();
        Ok(())
    }

    fn shutdown(&mut self) -> Result<(), SinkError> {
        self.retry = None;
        match self.endpoint.take() {
            Some(endpoint) => endpoint
                .shutdown()
                .map_err(|e| SinkError::with_source(e.to_string(), e)),
            None => Ok(()),
        }
    }

    fn health(&self) -> SinkHealth {
        if let Some(error) = &self.bind_error {
            return SinkHealth::Unhealthy(format!("not serving /metrics: {error}"));
        }
        match &self.last_clash {
            Some(why) => SinkHealth::Degraded(format!(
                "{} callsite(s) not exported; the latest: {why}",
                self.clashes
            )),
            None => SinkHealth::Healthy,
        }
    }
}
