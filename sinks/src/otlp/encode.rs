//! Snapshots, events, audit entries and notices as OTLP messages (the official protobuf types
//! of `opentelemetry-proto`), and those messages as request bodies (prost's encoder, gzip).

use std::collections::HashMap;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use instrument::{
    AuditEntry, CallStats, CallsiteKind, DropMarker, Event, EventReason, Level, Metadata, Notice,
    Outcome, SelfMetrics, Snapshot, StartInfo, Unit,
};
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogram, ExponentialHistogramDataPoint, Gauge, Histogram,
    HistogramDataPoint, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum,
    exponential_histogram_data_point, metric, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

use super::config::Compression;

/// The most buckets of an exponential histogram (the SDKs' default `MaxSize`).
const MAX_EXPONENTIAL_BUCKETS: i64 = 160;
/// The finest scale tried first.
const MAX_SCALE: i32 = 20;

const CUMULATIVE: i32 = AggregationTemporality::Cumulative as i32;

/// A string attribute.
pub(crate) fn kv(key: impl Into<String>, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..KeyValue::default()
    }
}

fn kv_int(key: impl Into<String>, value: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::IntValue(value)),
        }),
        ..KeyValue::default()
    }
}

fn kv_strings(key: impl Into<String>, values: &[String]) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: values
                    .iter()
                    .map(|v| AnyValue {
                        value: Some(any_value::Value::StringValue(v.clone())),
                    })
                    .collect(),
            })),
        }),
        ..KeyValue::default()
    }
}

fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// The UCUM unit OTLP expects for a callsite's unit.
fn ucum(unit: Option<Unit>) -> &'static str {
    match unit {
        Some(Unit::Bytes) => "By",
        Some(Unit::Seconds) => "s",
        Some(Unit::Milliseconds) => "ms",
        Some(Unit::Microseconds) => "us",
        Some(Unit::Nanoseconds) => "ns",
        Some(Unit::Ratio) => "1",
        Some(Unit::Percent) => "%",
        _ => "",
    }
}

fn is_timed(kind: CallsiteKind) -> bool {
    matches!(
        kind,
        CallsiteKind::Function | CallsiteKind::Async | CallsiteKind::Timer
    )
}

/// The resource every request describes: `service.name`, `service.instance.id`, `host.name`,
/// `process.pid`, the SDK, and the attributes configured.
pub(crate) fn resource(
    info: &StartInfo,
    service_name: Option<&str>,
    instance: Option<&str>,
    extra: &[(String, String)],
) -> Resource {
    let host = info.process.hostname.clone();
    let instance = instance.map_or_else(
        || {
            format!(
                "{}:{}",
                host.as_deref().unwrap_or("unknown"),
                info.process.pid
            )
        },
        str::to_owned,
    );
    let mut attributes = vec![
        kv(
            "service.name",
            service_name.unwrap_or(info.process.name.as_str()),
        ),
        kv("service.instance.id", instance),
    ];
    if let Some(host) = host {
        attributes.push(kv("host.name", host));
    }
    attributes.push(kv_int("process.pid", i64::from(info.process.pid)));
    attributes.push(kv("process.executable.name", info.process.name.clone()));
    attributes.extend(sdk_attributes());
    for (key, value) in extra {
        attributes.retain(|a| a.key != *key);
        attributes.push(kv(key.clone(), value.clone()));
    }
    Resource {
        attributes,
        ..Resource::default()
    }
}

fn sdk_attributes() -> [KeyValue; 3] {
    [
        kv("telemetry.sdk.name", "instrument"),
        kv("telemetry.sdk.language", "rust"),
        kv("telemetry.sdk.version", env!("CARGO_PKG_VERSION")),
    ]
}

pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope {
        name: "instrument-sinks".to_owned(),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        ..InstrumentationScope::default()
    }
}

/// One callsite and outcome of timed calls or values, as the latest snapshot gave it.
struct CallEntry {
    meta: &'static Metadata,
    /// `function`, `module`, `outcome` (timed calls), then the callsite's labels.
    attrs: Vec<KeyValue>,
    /// What identifies its series: callsites of the same name and attributes share one.
    key: String,
    latest: Option<CallStats>,
    /// The timed count the buckets were cut at, and the buckets (the last is `+Inf`).
    bucketed: u64,
    buckets: Box<[u64]>,
}

/// A counter's or gauge's series.
struct ValueEntry<T> {
    meta: &'static Metadata,
    attrs: Vec<KeyValue>,
    key: String,
    value: T,
}

fn labels(meta: &Metadata) -> impl Iterator<Item = KeyValue> + '_ {
    meta.labels_slice().iter().map(|&(k, v)| kv(k, v))
}

fn series_key(name: &str, attrs: &[KeyValue]) -> String {
    let mut key = String::from(name);
    for a in attrs {
        key.push('\u{1f}');
        key.push_str(&a.key);
        key.push('=');
        if let Some(AnyValue {
            value: Some(any_value::Value::StringValue(v)),
        }) = &a.value
        {
            key.push_str(v);
        }
    }
    key
}

/// What the sink knows of the measurements: the latest state of every series, turned into an
/// `ExportMetricsServiceRequest` (cumulative) on demand.
pub(crate) struct MetricsState {
    prefix: String,
    bounds_ns: Arc<[u64]>,
    bounds_s: Vec<f64>,
    start_ns: u64,
    time_ns: u64,
    calls: Vec<CallEntry>,
    call_index: HashMap<(&'static Metadata, Outcome), usize>,
    counters: Vec<ValueEntry<u64>>,
    counter_index: HashMap<&'static Metadata, usize>,
    gauges: Vec<ValueEntry<f64>>,
    gauge_index: HashMap<&'static Metadata, usize>,
    self_metrics: SelfMetrics,
    /// Whether a snapshot arrived since the last export.
    pub(crate) changed: bool,
}

impl MetricsState {
    pub(crate) fn new(prefix: &str, bounds_ns: Arc<[u64]>, start: SystemTime) -> MetricsState {
        MetricsState {
            prefix: prefix.to_owned(),
            bounds_s: bounds_ns.iter().map(|&b| b as f64 / 1e9).collect(),
            bounds_ns,
            start_ns: unix_nanos(start),
            time_ns: unix_nanos(start),
            calls: Vec::new(),
            call_index: HashMap::new(),
            counters: Vec::new(),
            counter_index: HashMap::new(),
            gauges: Vec::new(),
            gauge_index: HashMap::new(),
            self_metrics: SelfMetrics::default(),
            changed: false,
        }
    }

    /// Takes in a snapshot: calls and gauges as they are now, counters' totals.
    pub(crate) fn apply(&mut self, snapshot: &Snapshot) {
        self.time_ns = unix_nanos(snapshot.window_end).max(self.start_ns);
        for call in &snapshot.calls {
            let kind = call.callsite.kind();
            if !is_timed(kind) && kind != CallsiteKind::Histogram {
                continue;
            }
            let buckets = self.bounds_ns.len() + 1;
            let i = *self
                .call_index
                .entry((call.callsite, call.outcome))
                .or_insert_with(|| {
                    let meta = call.callsite;
                    let mut attrs = Vec::new();
                    if kind != CallsiteKind::Histogram {
                        attrs.push(kv("function", meta.name()));
                        attrs.push(kv("module", meta.module_path()));
                        attrs.push(kv("outcome", call.outcome.as_str()));
                    }
                    attrs.extend(labels(meta));
                    let name = if kind == CallsiteKind::Histogram {
                        meta.name()
                    } else {
                        ""
                    };
                    self.calls.push(CallEntry {
                        meta,
                        key: series_key(name, &attrs),
                        attrs,
                        latest: None,
                        bucketed: u64::MAX,
                        buckets: vec![0; buckets].into(),
                    });
                    self.calls.len() - 1
                });
            self.calls[i].latest = Some(call.clone());
        }
        for counter in &snapshot.counters {
            let meta = counter.callsite;
            let i = *self.counter_index.entry(meta).or_insert_with(|| {
                let attrs: Vec<KeyValue> = labels(meta).collect();
                self.counters.push(ValueEntry {
                    meta,
                    key: series_key(meta.name(), &attrs),
                    attrs,
                    value: 0,
                });
                self.counters.len() - 1
            });
            let entry = &mut self.counters[i];
            entry.value = entry.value.max(counter.total);
        }
        for gauge in &snapshot.gauges {
            let meta = gauge.callsite;
            let i = *self.gauge_index.entry(meta).or_insert_with(|| {
                let attrs: Vec<KeyValue> = labels(meta).collect();
                self.gauges.push(ValueEntry {
                    meta,
                    key: series_key(meta.name(), &attrs),
                    attrs,
                    value: 0.0,
                });
                self.gauges.len() - 1
            });
            self.gauges[i].value = gauge.value;
        }
        self.self_metrics = snapshot.self_metrics.clone();
        self.changed = true;
    }

    /// Every series as one cumulative request.
    pub(crate) fn request(
        &mut self,
        resource: &Resource,
        scope: &InstrumentationScope,
    ) -> ExportMetricsServiceRequest {
        self.changed = false;
        let mut out = Families::default();
        self.encode_calls(&mut out);
        self.encode_value_histograms(&mut out);
        self.encode_values(&mut out);
        self.encode_self_metrics(&mut out);
        self.encode_sink_metrics(&mut out);
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(resource.clone()),
                scope_metrics: vec![ScopeMetrics {
                    scope: Some(scope.clone()),
                    metrics: out.metrics,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        }
    }

    fn number(&self, attrs: Vec<KeyValue>, value: number_data_point::Value) -> NumberDataPoint {
        NumberDataPoint {
            attributes: attrs,
            start_time_unix_nano: self.start_ns,
            time_unix_nano: self.time_ns,
            value: Some(value),
            ..NumberDataPoint::default()
        }
    }

    fn encode_calls(&mut self, out: &mut Families) {
        let calls_name = format!("{}.calls", self.prefix);
        let duration_name = format!("{}.duration", self.prefix);
        let calls_family = out.family(
            &calls_name,
            "{call}",
            "Calls per callsite and outcome, including those whose durations were dropped under overload.",
            Shape::Sum,
        );
        let duration_family = out.family(
            &duration_name,
            "s",
            "Durations of the timed calls per callsite and outcome.",
            Shape::Histogram,
        );
        let bounds = Arc::clone(&self.bounds_ns);
        for i in 0..self.calls.len() {
            let entry = &mut self.calls[i];
            let Some(call) = entry.latest.as_ref() else {
                continue;
            };
            if entry.meta.kind() == CallsiteKind::Histogram {
                continue;
            }
            if call.histogram.count() != entry.bucketed {
                rebucket(&call.histogram, &bounds, &mut entry.buckets);
                entry.bucketed = call.histogram.count();
            }
            let entry = &self.calls[i];
            let Some(call) = entry.latest.as_ref() else {
                continue;
            };
            // Calls: errors split by kind, as the Prometheus sink does.
            let mut rest = call.total.count;
            if call.outcome == Outcome::Error {
                for kind in &call.error_kinds {
                    rest = rest.saturating_sub(kind.total);
                    let mut key = entry.key.clone();
                    key.push_str("\u{1f}error_kind=");
                    key.push_str(kind.kind);
                    out.add_count(
                        calls_family,
                        key,
                        || {
                            let mut attrs = entry.attrs.clone();
                            attrs.insert(3, kv("error_kind", kind.kind));
                            self.number(attrs, number_data_point::Value::AsInt(0))
                        },
                        kind.total,
                    );
                }
            }
            if rest > 0 || call.outcome != Outcome::Error {
                out.add_count(
                    calls_family,
                    entry.key.clone(),
                    || self.number(entry.attrs.clone(), number_data_point::Value::AsInt(0)),
                    rest,
                );
            }
            let h = &call.histogram;
            let point = HistogramDataPoint {
                attributes: entry.attrs.clone(),
                start_time_unix_nano: self.start_ns,
                time_unix_nano: self.time_ns,
                count: h.count(),
                sum: Some(h.sum() as f64 / 1e9),
                bucket_counts: entry.buckets.to_vec(),
                explicit_bounds: self.bounds_s.clone(),
                min: (h.count() > 0).then(|| h.min() as f64 / 1e9),
                max: (h.count() > 0).then(|| h.max() as f64 / 1e9),
                ..HistogramDataPoint::default()
            };
            out.add_histogram(duration_family, entry.key.clone(), point);
        }
    }

    /// Value histograms: exponential, named after their callsites.
    fn encode_value_histograms(&self, out: &mut Families) {
        let mut merged: HashMap<&str, instrument::Histogram> = HashMap::new();
        let mut order: Vec<usize> = Vec::new();
        for (i, entry) in self.calls.iter().enumerate() {
            if entry.meta.kind() != CallsiteKind::Histogram {
                continue;
            }
            let Some(call) = entry.latest.as_ref() else {
                continue;
            };
            if let Some(h) = merged.get_mut(entry.key.as_str()) {
                h.merge(&call.histogram);
            } else {
                merged.insert(entry.key.as_str(), (*call.histogram).clone());
                order.push(i);
            }
        }
        for i in order {
            let entry = &self.calls[i];
            let h = &merged[entry.key.as_str()];
            let meta = entry.meta;
            let family = out.family(
                meta.name(),
                ucum(meta.unit()),
                meta.description().unwrap_or_default(),
                Shape::Exponential,
            );
            let mut point = exponential(h);
            point.attributes.clone_from(&entry.attrs);
            point.start_time_unix_nano = self.start_ns;
            point.time_unix_nano = self.time_ns;
            out.add_exponential(family, point);
        }
    }

    fn encode_values(&self, out: &mut Families) {
        for entry in &self.counters {
            let meta = entry.meta;
            let family = out.family(
                meta.name(),
                ucum(meta.unit()),
                meta.description().unwrap_or_default(),
                Shape::Sum,
            );
            out.add_count(
                family,
                entry.key.clone(),
                || self.number(entry.attrs.clone(), number_data_point::Value::AsInt(0)),
                entry.value,
            );
        }
        for entry in &self.gauges {
            let meta = entry.meta;
            let family = out.family(
                meta.name(),
                ucum(meta.unit()),
                meta.description().unwrap_or_default(),
                Shape::Gauge,
            );
            out.set_gauge(
                family,
                entry.key.clone(),
                self.number(
                    entry.attrs.clone(),
                    number_data_point::Value::AsDouble(entry.value),
                ),
            );
        }
    }

    fn encode_self_metrics(&self, out: &mut Families) {
        let m = &self.self_metrics;
        let p = &self.prefix;
        let totals: [(&str, &str, &str, u64); 5] = [
            (
                "events_recorded",
                "{record}",
                "Records that reached the drain since the pipeline was installed.",
                m.events_recorded,
            ),
            (
                "events_dropped",
                "{record}",
                "Records whose durations were dropped because a thread's queue was full.",
                m.events_dropped,
            ),
            (
                "drain_panics",
                "{cycle}",
                "Drain cycles that panicked (caught; the drain goes on).",
                m.drain_panics,
            ),
            (
                "notices_dropped",
                "{notice}",
                "Notices dropped because the notice queue was full.",
                m.notices_dropped,
            ),
            (
                "callsite_overflow",
                "{registration}",
                "Run-time registrations folded into their name's overflow series.",
                m.callsite_overflows,
            ),
        ];
        for (name, unit, help, value) in totals {
            let family = out.family(&format!("{p}.{name}"), unit, help, Shape::Sum);
            out.add_count(
                family,
                String::new(),
                || self.number(Vec::new(), number_data_point::Value::AsInt(0)),
                value,
            );
        }
        let gauges: [(&str, &str, &str, f64); 4] = [
            (
                "queue_high_water",
                "{record}",
                "The fullest any thread's queue was seen by the drain.",
                m.queue_high_water as f64,
            ),
            (
                "memory",
                "By",
                "Bytes held by thread buffers and aggregates.",
                m.memory_bytes as f64,
            ),
            (
                "drain_cycle",
                "s",
                "Duration of the last drain cycle.",
                m.drain_cycle.as_secs_f64(),
            ),
            (
                "threads",
                "{thread}",
                "Thread buffers registered.",
                m.threads as f64,
            ),
        ];
        for (name, unit, help, value) in gauges {
            let family = out.family(&format!("{p}.{name}"), unit, help, Shape::Gauge);
            out.set_gauge(
                family,
                String::new(),
                self.number(Vec::new(), number_data_point::Value::AsDouble(value)),
            );
        }
    }

    /// The pipeline's metrics per sink (attribute `sink`).
    fn encode_sink_metrics(&self, out: &mut Families) {
        let m = &self.self_metrics;
        let p = &self.prefix;
        let per_sink: [(&str, &str, &str, Shape, SinkRead); 5] = [
            (
                "sink.errors",
                "{error}",
                "Failed writes, flushes and other calls of the sink.",
                Shape::Sum,
                |s| s.errors,
            ),
            (
                "sink.delivered_batches",
                "{batch}",
                "Batches delivered to the sink.",
                Shape::Sum,
                |s| s.delivered,
            ),
            (
                "sink.dropped_batches",
                "{batch}",
                "Event and snapshot batches given up on after retries or a full backlog.",
                Shape::Sum,
                |s| s.dropped_batches,
            ),
            (
                "sink.lag",
                "{batch}",
                "Batches waiting for the sink.",
                Shape::Gauge,
                |s| s.backlog,
            ),
            (
                "sink.lost_events",
                "{event}",
                "Events, drop markers and notices the sink did not get.",
                Shape::Sum,
                |s| s.lost.events,
            ),
        ];
        for (name, unit, help, shape, read) in per_sink {
            let family = out.family(&format!("{p}.{name}"), unit, help, shape);
            for sink in &m.sinks {
                let attrs = vec![kv("sink", sink.name.clone())];
                let key = format!("sink={}", sink.name);
                let value = read(sink);
                match shape {
                    Shape::Gauge => out.set_gauge(
                        family,
                        key,
                        self.number(attrs, number_data_point::Value::AsDouble(value as f64)),
                    ),
                    _ => out.add_count(
                        family,
                        key,
                        || self.number(attrs.clone(), number_data_point::Value::AsInt(0)),
                        value,
                    ),
                }
            }
        }
    }
}

type SinkRead = fn(&instrument::SinkStatus) -> u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    Sum,
    Gauge,
    Histogram,
    Exponential,
}

/// The metrics of one request, by name; points of one name and attributes merged.
#[derive(Default)]
struct Families {
    metrics: Vec<Metric>,
    index: HashMap<(String, u8), usize>,
    points: HashMap<(usize, String), usize>,
}

impl Families {
    fn family(&mut self, name: &str, unit: &str, description: &str, shape: Shape) -> usize {
        let key = (name.to_owned(), shape as u8);
        if let Some(&i) = self.index.get(&key) {
            return i;
        }
        let data = match shape {
            Shape::Sum => metric::Data::Sum(Sum {
                data_points: Vec::new(),
                aggregation_temporality: CUMULATIVE,
                is_monotonic: true,
            }),
            Shape::Gauge => metric::Data::Gauge(Gauge {
                data_points: Vec::new(),
            }),
            Shape::Histogram => metric::Data::Histogram(Histogram {
                data_points: Vec::new(),
                aggregation_temporality: CUMULATIVE,
            }),
            Shape::Exponential => metric::Data::ExponentialHistogram(ExponentialHistogram {
                data_points: Vec::new(),
                aggregation_temporality: CUMULATIVE,
            }),
        };
        self.metrics.push(Metric {
            name: name.to_owned(),
            description: description.to_owned(),
            unit: unit.to_owned(),
            data: Some(data),
            ..Metric::default()
        });
        let i = self.metrics.len() - 1;
        self.index.insert(key, i);
        i
    }

    /// Adds `n` to the sum point of `key`, made by `new` when it is the first.
    fn add_count(
        &mut self,
        family: usize,
        key: String,
        new: impl FnOnce() -> NumberDataPoint,
        n: u64,
    ) {
        let Some(metric::Data::Sum(sum)) = &mut self.metrics[family].data else {
            return;
        };
        let i = *self.points.entry((family, key)).or_insert_with(|| {
            sum.data_points.push(new());
            sum.data_points.len() - 1
        });
        if let Some(number_data_point::Value::AsInt(v)) = &mut sum.data_points[i].value {
            *v = v.saturating_add(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }

    fn set_gauge(&mut self, family: usize, key: String, point: NumberDataPoint) {
        let Some(metric::Data::Gauge(gauge)) = &mut self.metrics[family].data else {
            return;
        };
        if let Some(&i) = self.points.get(&(family, key.clone())) {
            gauge.data_points[i] = point;
        } else {
            gauge.data_points.push(point);
            self.points
                .insert((family, key), gauge.data_points.len() - 1);
        }
    }

    fn add_histogram(&mut self, family: usize, key: String, point: HistogramDataPoint) {
        let Some(metric::Data::Histogram(histogram)) = &mut self.metrics[family].data else {
            return;
        };
        if let Some(&i) = self.points.get(&(family, key.clone())) {
            let p = &mut histogram.data_points[i];
            p.count += point.count;
            p.sum = Some(p.sum.unwrap_or(0.0) + point.sum.unwrap_or(0.0));
            for (a, b) in p.bucket_counts.iter_mut().zip(&point.bucket_counts) {
                *a += b;
            }
            p.min = match (p.min, point.min) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            p.max = match (p.max, point.max) {
                (Some(a), Some(b)) => Some(a.max(b)),
                (a, b) => a.or(b),
            };
        } else {
            histogram.data_points.push(point);
            self.points
                .insert((family, key), histogram.data_points.len() - 1);
        }
    }

    fn add_exponential(&mut self, family: usize, point: ExponentialHistogramDataPoint) {
        if let Some(metric::Data::ExponentialHistogram(h)) = &mut self.metrics[family].data {
            h.data_points.push(point);
        }
    }
}

/// `histogram`'s counts per bucket of `bounds` (the last `+Inf`), into `out`: a value `v`
/// falls in the first bucket whose bound is at least `v`, as OTLP's explicit buckets say.
pub(crate) fn rebucket(histogram: &instrument::Histogram, bounds: &[u64], out: &mut [u64]) {
    out.fill(0);
    let mut bucket = 0;
    for (value, n) in histogram.iter_buckets() {
        while bucket < bounds.len() && bounds[bucket] < value {
            bucket += 1;
        }
        out[bucket] += n;
    }
}

/// The bucket index of `value` (> 0) at `scale`: bucket `i` holds `(base^i, base^(i+1)]`,
/// `base = 2^(2^-scale)`.
fn exponential_index(value: u64, scale: i32) -> i64 {
    let scaled = (value as f64).log2() * 2f64.powi(scale);
    scaled.ceil() as i64 - 1
}

/// A value histogram as an exponential histogram: the finest scale (at most 20) at which its
/// values fit in 160 buckets. Values of zero go to `zero_count`.
pub(crate) fn exponential(h: &instrument::Histogram) -> ExponentialHistogramDataPoint {
    let mut zero_count = 0;
    let mut indices: Vec<(i64, u64)> = Vec::new();
    for (value, n) in h.iter_buckets() {
        if value == 0 {
            zero_count += n;
        } else {
            indices.push((exponential_index(value, MAX_SCALE), n));
        }
    }
    let mut scale = MAX_SCALE;
    let mut offset = 0i32;
    let mut counts = Vec::new();
    if let (Some(&(low, _)), Some(&(high, _))) = (indices.first(), indices.last()) {
        let mut shift = 0;
        while (high >> shift) - (low >> shift) + 1 > MAX_EXPONENTIAL_BUCKETS {
            shift += 1;
        }
        scale -= shift;
        let first = low >> shift;
        offset = i32::try_from(first).unwrap_or(i32::MIN);
        counts = vec![0u64; usize::try_from((high >> shift) - first + 1).unwrap_or(0)];
        for (index, n) in indices {
            counts[usize::try_from((index >> shift) - first).unwrap_or(0)] += n;
        }
    }
    let count = h.count();
    ExponentialHistogramDataPoint {
        count,
        sum: Some(h.sum() as f64),
        scale,
        zero_count,
        positive: Some(exponential_histogram_data_point::Buckets {
            offset,
            bucket_counts: counts,
        }),
        min: (count > 0).then(|| h.min() as f64),
        max: (count > 0).then(|| h.max() as f64),
        ..ExponentialHistogramDataPoint::default()
    }
}

/// The 16-byte trace id of a correlation id: its 8 bytes, big-endian, after 8 zero bytes (W3C
/// trace ids are 16 bytes; ours are 8, and never zero).
pub(crate) fn trace_id(id: instrument::CorrelationId) -> Vec<u8> {
    let mut bytes = vec![0u8; 8];
    bytes.extend_from_slice(&id.get().to_be_bytes());
    bytes
}

fn with_correlation(record: &mut LogRecord, id: Option<instrument::CorrelationId>) {
    if let Some(id) = id {
        record.trace_id = trace_id(id);
        record.attributes.push(kv("correlation_id", id.to_string()));
    }
}

fn severity(number: SeverityNumber) -> (i32, String) {
    let text = match number {
        SeverityNumber::Debug => "DEBUG",
        SeverityNumber::Warn => "WARN",
        SeverityNumber::Error => "ERROR",
        SeverityNumber::Fatal => "FATAL",
        _ => "INFO",
    };
    (number as i32, text.to_owned())
}

fn string_body(text: String) -> AnyValue {
    AnyValue {
        value: Some(any_value::Value::StringValue(text)),
    }
}

/// An event (an error, panic, cancellation, slow or sampled call) as a log record.
pub(crate) fn event_record(event: &Event) -> LogRecord {
    let meta = event.callsite;
    let number = match (event.outcome, event.reason) {
        (Outcome::Panic, _) => SeverityNumber::Fatal,
        (Outcome::Error, _) => SeverityNumber::Error,
        (Outcome::Cancelled, _) | (_, EventReason::Slow) => SeverityNumber::Warn,
        _ => SeverityNumber::Info,
    };
    let (severity_number, severity_text) = severity(number);
    let mut body = format!(
        "{} {} after {:?}",
        meta.name(),
        event.outcome.as_str(),
        event.duration
    );
    if let Some(kind) = event.error_kind {
        body.push_str(" (");
        body.push_str(kind);
        body.push(')');
    }
    let mut attributes = vec![
        kv("function", meta.name()),
        kv("module", meta.module_path()),
        kv("outcome", event.outcome.as_str()),
        kv("reason", event.reason.as_str()),
        kv_int(
            "duration_ns",
            i64::try_from(event.duration.as_nanos()).unwrap_or(i64::MAX),
        ),
        kv_int(
            "thread.id",
            i64::try_from(event.thread.id).unwrap_or(i64::MAX),
        ),
    ];
    if let Some(kind) = event.error_kind {
        attributes.push(kv("error_kind", kind));
    }
    if let Some(name) = &event.thread.name {
        attributes.push(kv("thread.name", name.to_string()));
    }
    attributes.extend(labels(meta));
    for (name, value) in &event.fields {
        attributes.push(kv(format!("field.{name}"), value.to_string()));
    }
    let mut record = LogRecord {
        time_unix_nano: unix_nanos(event.start),
        observed_time_unix_nano: unix_nanos(SystemTime::now()),
        severity_number,
        severity_text,
        body: Some(string_body(body)),
        attributes,
        event_name: "instrument.call".to_owned(),
        ..LogRecord::default()
    };
    with_correlation(&mut record, event.correlation);
    record
}

/// A drop marker (records whose durations were lost under overload) as a log record.
pub(crate) fn marker_record(marker: &DropMarker) -> LogRecord {
    let (severity_number, severity_text) = severity(SeverityNumber::Warn);
    LogRecord {
        time_unix_nano: unix_nanos(marker.until),
        observed_time_unix_nano: unix_nanos(SystemTime::now()),
        severity_number,
        severity_text,
        body: Some(string_body(format!(
            "{} record(s) of {} dropped: a thread's queue was full",
            marker.count,
            marker.callsite.name()
        ))),
        attributes: vec![
            kv("function", marker.callsite.name()),
            kv_int("count", i64::try_from(marker.count).unwrap_or(i64::MAX)),
        ],
        event_name: "instrument.dropped".to_owned(),
        ..LogRecord::default()
    }
}

/// An audit entry as a log record (`event_name` `instrument.audit`).
pub(crate) fn audit_record(entry: &AuditEntry) -> LogRecord {
    let number = match entry.outcome {
        Some(Outcome::Error | Outcome::Panic) => SeverityNumber::Error,
        _ => SeverityNumber::Info,
    };
    let (severity_number, severity_text) = severity(number);
    let mut attributes = vec![
        kv_int(
            "audit.sequence",
            i64::try_from(entry.sequence).unwrap_or(i64::MAX),
        ),
        kv("operation", entry.operation.to_string()),
        kv_strings("inputs", &entry.inputs),
        kv_strings("outputs", &entry.outputs),
    ];
    if let Some(actor) = &entry.actor {
        attributes.push(kv("actor", actor.clone()));
    }
    if let Some(outcome) = entry.outcome {
        attributes.push(kv("outcome", outcome.as_str()));
    }
    if let Some(kind) = entry.error_kind {
        attributes.push(kv("error_kind", kind));
    }
    if let Some(duration) = entry.duration {
        attributes.push(kv_int(
            "duration_ns",
            i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX),
        ));
    }
    if let Some(meta) = entry.callsite {
        attributes.push(kv("function", meta.name()));
    }
    for (key, value) in &entry.fields {
        attributes.push(kv(format!("field.{key}"), value.clone()));
    }
    let mut record = LogRecord {
        time_unix_nano: unix_nanos(entry.timestamp),
        observed_time_unix_nano: unix_nanos(SystemTime::now()),
        severity_number,
        severity_text,
        body: Some(string_body(entry.operation.to_string())),
        attributes,
        event_name: "instrument.audit".to_owned(),
        ..LogRecord::default()
    };
    with_correlation(&mut record, entry.correlation);
    record
}

/// A notice (health change, alert, bridged log line) as a log record.
pub(crate) fn notice_record(notice: &Notice) -> LogRecord {
    let number = match notice.level {
        Level::Debug => SeverityNumber::Debug,
        Level::Warn => SeverityNumber::Warn,
        Level::Error => SeverityNumber::Error,
        _ => SeverityNumber::Info,
    };
    let (severity_number, severity_text) = severity(number);
    let mut attributes = vec![kv("source", notice.source.to_string())];
    for (key, value) in &notice.fields {
        attributes.push(kv(key.to_string(), value.clone()));
    }
    let mut record = LogRecord {
        time_unix_nano: unix_nanos(notice.time),
        observed_time_unix_nano: unix_nanos(SystemTime::now()),
        severity_number,
        severity_text,
        body: Some(string_body(notice.message.clone())),
        attributes,
        event_name: "instrument.notice".to_owned(),
        ..LogRecord::default()
    };
    with_correlation(&mut record, notice.correlation);
    record
}

pub(crate) fn logs_request(
    resource: &Resource,
    scope: &InstrumentationScope,
    records: Vec<LogRecord>,
) -> ExportLogsServiceRequest {
    ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: Some(resource.clone()),
            scope_logs: vec![ScopeLogs {
                scope: Some(scope.clone()),
                log_records: records,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Data points in a metrics request (what `rejected_data_points` counts against).
pub(crate) fn data_points(request: &ExportMetricsServiceRequest) -> u64 {
    let mut n = 0;
    for rm in &request.resource_metrics {
        for sm in &rm.scope_metrics {
            for m in &sm.metrics {
                n += match &m.data {
                    Some(metric::Data::Sum(s)) => s.data_points.len(),
                    Some(metric::Data::Gauge(g)) => g.data_points.len(),
                    Some(metric::Data::Histogram(h)) => h.data_points.len(),
                    Some(metric::Data::ExponentialHistogram(h)) => h.data_points.len(),
                    Some(metric::Data::Summary(s)) => s.data_points.len(),
                    None => 0,
                } as u64;
            }
        }
    }
    n
}

/// A message as a request body: protobuf, gzip'd unless `compression` is `None`. `buffer` is
/// reused for the uncompressed encoding.
pub(crate) fn body(
    message: &impl prost::Message,
    compression: Compression,
    buffer: &mut Vec<u8>,
) -> Vec<u8> {
    buffer.clear();
    message
        .encode(buffer)
        .expect("a Vec grows to any encoded length");
    match compression {
        Compression::None => buffer.clone(),
        Compression::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(
                Vec::with_capacity(buffer.len() / 4 + 64),
                flate2::Compression::fast(),
            );
            gz.write_all(buffer).expect("writing to a Vec cannot fail");
            gz.finish().expect("writing to a Vec cannot fail")
        }
    }
}

/// What the bench and embedders measure: a snapshot as the body of an OTLP metrics request.
///
/// Builds the same request the sink sends (resource of `info`, cumulative points since
/// `info.pipeline_start`), encodes it and compresses it.
#[derive(Debug)]
pub struct MetricsEncoder {
    state: MetricsState,
    resource: Resource,
    scope: InstrumentationScope,
    compression: Compression,
    buffer: Vec<u8>,
}

impl std::fmt::Debug for MetricsState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsState")
            .field("calls", &self.calls.len())
            .field("counters", &self.counters.len())
            .field("gauges", &self.gauges.len())
            .finish_non_exhaustive()
    }
}

impl MetricsEncoder {
    /// An encoder with the sink's defaults (prefix `instrument`, [`DEFAULT_BUCKETS`]) for a
    /// pipeline installed at `pipeline_start`, under the resource `service.name` =
    /// `service_name`.
    ///
    /// [`DEFAULT_BUCKETS`]: crate::otlp::DEFAULT_BUCKETS
    #[must_use]
    pub fn new(
        service_name: &str,
        pipeline_start: SystemTime,
        compression: Compression,
    ) -> MetricsEncoder {
        let bounds: Arc<[u64]> = crate::buckets::DEFAULT_BUCKETS
            .iter()
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .collect();
        let mut attributes = vec![kv("service.name", service_name)];
        attributes.extend(sdk_attributes());
        MetricsEncoder {
            state: MetricsState::new("instrument", bounds, pipeline_start),
            resource: Resource {
                attributes,
                ..Resource::default()
            },
            scope: scope(),
            compression,
            buffer: Vec::new(),
        }
    }

    /// Takes in `snapshot` and returns the body of the request exporting everything known so
    /// far, with its number of data points.
    pub fn encode(&mut self, snapshot: &Snapshot) -> (Vec<u8>, u64) {
        self.state.apply(snapshot);
        let request = self.state.request(&self.resource, &self.scope);
        let points = data_points(&request);
        (body(&request, self.compression, &mut self.buffer), points)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_buckets_hold_their_values() {
        let mut h = instrument::Histogram::new();
        for v in [0u64, 1, 3, 1000, 1_000_000, 5_000_000_000] {
            h.record(v);
        }
        let p = exponential(&h);
        assert_eq!(p.count, 6);
        assert_eq!(p.zero_count, 1);
        let buckets = p.positive.unwrap();
        assert!(buckets.bucket_counts.len() <= 160);
        assert_eq!(buckets.bucket_counts.iter().sum::<u64>(), 5);
        let base = 2f64.powf(2f64.powi(-p.scale));
        // Each non-zero value lies in (base^i, base^(i+1)] of a bucket with a count.
        for v in [1u64, 3, 1000, 1_000_000, 5_000_000_000] {
            let hits = buckets
                .bucket_counts
                .iter()
                .enumerate()
                .filter(|&(j, &n)| {
                    let i = f64::from(buckets.offset) + j as f64;
                    // HDR keeps values to 1/1024; allow that much.
                    let (lo, hi) = (base.powf(i), base.powf(i + 1.0));
                    n > 0 && (v as f64) > lo * (1.0 - 1e-3) && (v as f64) <= hi * (1.0 + 1e-3)
                })
                .count();
            assert!(hits >= 1, "{v} has no bucket at scale {}", p.scale);
        }
    }

    #[test]
    fn rebucket_puts_a_bound_in_its_own_bucket() {
        let mut h = instrument::Histogram::new();
        h.record(1_000);
        h.record(1_001_000);
        h.record(20_000_000_000);
        let bounds = [1_000u64, 1_000_000, 10_000_000];
        let mut out = [0u64; 4];
        rebucket(&h, &bounds, &mut out);
        assert_eq!(out, [1, 0, 1, 1]);
    }
}
