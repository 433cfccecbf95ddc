//! What it costs to turn 10,000 series into an OTLP/HTTP metrics request: `cargo bench --bench
//! otlp`. Group `otlp_encode`, each side producing the gzip'd protobuf body of one cumulative
//! `ExportMetricsServiceRequest` with, per series, a call count (sum) and a duration histogram of
//! the same 15 explicit buckets:
//! - `instrument_sinks/steady`: the OTLP sink's encoder ([`MetricsEncoder`]) on a snapshot of
//!   10,000 timed callsites (`bench_op{series}`, three calls each) whose histograms did not
//!   change since its previous export (buckets cut before are reused), as in a long-running
//!   pipeline where most series are idle;
//! - `instrument_sinks/all_changed`: the same with a fresh encoder each time, so every series is
//!   registered and every histogram re-bucketed: the worst case, every series changed;
//! - `opentelemetry_sdk`: the OpenTelemetry SDK's metrics pipeline holding the same series (a
//!   counter and a histogram with the same attributes, values and buckets, cardinality limits
//!   raised to fit), exported by `opentelemetry-otlp` (http/protobuf, gzip) on
//!   `SdkMeterProvider::force_flush`, into an in-process HTTP client that takes the body and
//!   answers 200: collection, conversion to the protobuf types, encoding and gzip, no network.
//!
//! After criterion's figures, the bench runs each side once more, alternating, and prints the
//! medians and body sizes, with the sink's encoder without gzip for the share compression
//! takes.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::Criterion;
use instrument::Snapshot;
use instrument_sinks::MemorySink;
use instrument_sinks::otlp::{Compression, DEFAULT_BUCKETS, MetricsEncoder};
use opentelemetry::KeyValue;
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::metrics::{Aggregation, Instrument, SdkMeterProvider, Stream};

const SERIES: usize = 10_000;

/// Durations recorded into series `i`: spread over the buckets.
fn durations(i: usize) -> [u64; 3] {
    let base = 20_000 + (i as u64 % 50) * 40_000;
    [base, base * 3, base * 11]
}

/// The snapshot of a real pipeline after 10,000 run-time timers were each used three times.
fn snapshot() -> Arc<Snapshot> {
    let memory = MemorySink::new();
    let pipeline = instrument::builder()
        .cardinality_limit(SERIES * 2)
        .sink(memory.clone())
        .install()
        .expect("no other pipeline");
    for i in 0..SERIES {
        let timer = instrument::metric("bench_op")
            .label("series", i.to_string())
            .timer()
            .expect("under the cardinality limit");
        for _ in durations(i) {
            drop(timer.start());
        }
    }
    pipeline.flush().expect("flush");
    let snapshot = memory.last_snapshot().expect("a snapshot");
    pipeline.shutdown().expect("shutdown");
    assert!(snapshot.calls.len() >= SERIES);
    snapshot
}

/// An HTTP client that keeps the size of the last body and answers 200.
#[derive(Debug, Default, Clone)]
struct Capture(Arc<AtomicUsize>);

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for Capture {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        self.0.store(request.body().len(), Ordering::Relaxed);
        Ok(http::Response::builder()
            .status(200)
            .body(bytes::Bytes::new())
            .expect("a response"))
    }
}

/// The SDK holding the same series, and the body size its exporter last produced.
fn sdk() -> (SdkMeterProvider, Capture) {
    let capture = Capture::default();
    let exporter = opentelemetry_otlp::MetricExporter::builder()
        .with_http()
        .with_endpoint("http://127.0.0.1:4318/v1/metrics")
        .with_http_client(capture.clone())
        .with_compression(opentelemetry_otlp::Compression::Gzip)
        .build()
        .expect("an exporter");
    let reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter)
        .with_interval(Duration::from_secs(24 * 3600))
        .build();
    let boundaries: Vec<f64> = DEFAULT_BUCKETS.iter().map(Duration::as_secs_f64).collect();
    let provider = SdkMeterProvider::builder()
        .with_reader(reader)
        .with_view(move |i: &Instrument| {
            let stream = Stream::builder().with_cardinality_limit(SERIES * 2);
            let stream = if i.name() == "instrument.duration" {
                stream.with_aggregation(Aggregation::ExplicitBucketHistogram {
                    boundaries: boundaries.clone(),
                    record_min_max: true,
                })
            } else {
                stream
            };
            stream.build().ok()
        })
        .build();
    let meter = provider.meter("bench");
    let calls = meter.u64_counter("instrument.calls").build();
    let duration = meter
        .f64_histogram("instrument.duration")
        .with_unit("s")
        .build();
    for i in 0..SERIES {
        let attrs = [
            KeyValue::new("function", "bench_op"),
            KeyValue::new("module", ""),
            KeyValue::new("outcome", "ok"),
            KeyValue::new("series", i.to_string()),
        ];
        for nanos in durations(i) {
            duration.record(Duration::from_nanos(nanos).as_secs_f64(), &attrs);
            calls.add(1, &attrs);
        }
    }
    provider.force_flush().expect("a first export");
    assert!(capture.0.load(Ordering::Relaxed) > 0);
    (provider, capture)
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let snapshot = snapshot();
    let start = snapshot.window_start;
    let mut steady = MetricsEncoder::new("bench", start, Compression::Gzip);
    let (steady_body, points) = steady.encode(&snapshot);
    let (provider, capture) = sdk();

    let mut group = criterion.benchmark_group("otlp_encode");
    group.sample_size(20);
    group.bench_function("instrument_sinks/steady", |b| {
        b.iter(|| black_box(steady.encode(&snapshot).0.len()));
    });
    group.bench_function("instrument_sinks/all_changed", |b| {
        b.iter(|| {
            let mut fresh = MetricsEncoder::new("bench", start, Compression::Gzip);
            black_box(fresh.encode(&snapshot).0.len())
        });
    });
    group.bench_function("opentelemetry_sdk", |b| {
        b.iter(|| {
            provider.force_flush().expect("export");
            black_box(capture.0.load(Ordering::Relaxed))
        });
    });
    group.finish();

    // Side by side once more, alternating.
    let mut plain = MetricsEncoder::new("bench", start, Compression::None);
    let (plain_body, _) = plain.encode(&snapshot);
    let (mut steady_times, mut fresh_times, mut sdk_times) = (Vec::new(), Vec::new(), Vec::new());
    let mut plain_times = Vec::new();
    for _ in 0..15 {
        let started = Instant::now();
        black_box(plain.encode(&snapshot));
        plain_times.push(started.elapsed());
        let started = Instant::now();
        black_box(steady.encode(&snapshot));
        steady_times.push(started.elapsed());
        let started = Instant::now();
        black_box(MetricsEncoder::new("bench", start, Compression::Gzip).encode(&snapshot));
        fresh_times.push(started.elapsed());
        let started = Instant::now();
        provider.force_flush().expect("export");
        sdk_times.push(started.elapsed());
    }
    let (a, f, o) = (median(steady_times), median(fresh_times), median(sdk_times));
    let p = median(plain_times);
    println!(
        "otlp_encode, {SERIES} series ({points} data points), medians of 15 alternating runs:\n  \
         instrument_sinks steady      {a:>10.2?} ({} bytes gzip'd)\n  \
         instrument_sinks all changed {f:>10.2?}\n  \
         instrument_sinks no gzip     {p:>10.2?} ({} bytes)\n  \
         opentelemetry_sdk + otlp     {o:>10.2?} ({} bytes gzip'd)\n  \
         opentelemetry_sdk / steady = {:.2}, / all changed = {:.2}",
        steady_body.len(),
        plain_body.len(),
        capture.0.load(Ordering::Relaxed),
        o.as_secs_f64() / a.as_secs_f64(),
        o.as_secs_f64() / f.as_secs_f64(),
    );
    provider.shutdown().ok();
    criterion.final_summary();
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}
