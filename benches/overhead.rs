//! What one instrumented call costs its caller, next to the clock it reads, an uninstrumented
//! call, and `tracing`, `metrics` and `fastrace` doing the same job.
//!
//! `cargo bench --bench overhead`. Every function of group `overhead` calls the same tiny
//! workload (`shared::work`: a black-boxed multiply, out of line):
//!
//! | function | what runs per iteration |
//! | --- | --- |
//! | `baseline` | the workload, uninstrumented |
//! | `clock_pair` | two `quanta::Clock::raw()` reads and their difference: the SDK's clock |
//! | `instrument_not_installed` | the workload under `#[instrument_performance]`, no pipeline installed |
//! | `tracing_instrument_no_subscriber` | the workload under `#[tracing::instrument]`, no subscriber |
//! | `instrument_performance` | annotated, pipeline installed with `NullSink`, drain thread running |
//! | `instrument_performance_err` | as above, the call returns `Err` |
//! | `instrument_performance_capture` | as `instrument_performance`, with `capture(x)` |
//! | `instrument_dynamic_callsite` | as `instrument_performance`, timed through a function callsite registered at run time (`instrument::metric`) once, before the loop |
//! | `tracing_instrument_fmt` | `#[tracing::instrument]` (argument recorded as a field) with a `fmt` subscriber writing to `io::sink` |
//! | `tracing_instrument_fmt_no_fields` | as above with `skip_all`: no fields |
//! | `tracing_instrument_fmt_close` | as `tracing_instrument_fmt`, plus `FmtSpan::CLOSE`: a line with the duration per call |
//! | `tracing_bridge` | the `#[tracing::instrument]` function of `tracing_instrument_fmt` with only `instrument::tracing::InstrumentLayer` on the registry, recording each span into a pipeline with `NullSink` |
//! | `metrics_prometheus` | an `Instant` pair, `histogram!` and `counter!` into the Prometheus recorder |
//! | `metrics_bridge` | the same `histogram!` and `counter!` calls into `instrument::metrics::MetricsRecorder` (scoped with `metrics::with_local_recorder`), pipeline installed with `NullSink` |
//! | `fastrace_trace` | `#[fastrace::trace]`, 1,000 calls per root span, reporter discarding |
//!
//! Group `overhead_sweep` runs 1, 10, 100 and 1,000 calls per iteration (throughput in calls)
//! for `baseline`, `instrument_not_installed` and `instrument_performance`.
//!
//! Group `overhead_queue` runs `instrument_performance/<capacity>` with the calling thread's
//! queue at 4,096, 8,192 (the default), 16,384, 32,768 and 65,536 records: how much of the
//! installed call's cost depends on the queue size while the drain reads it concurrently.
//!
//! After each installed function, the calls recorded and dropped (full queue) are printed on
//! stderr.
//!
//! The pipeline is process-global, so the order matters: everything that needs no pipeline runs
//! first, then the pipeline is installed for the `instrument_performance*` functions and shut
//! down before the other libraries are measured. Their subscribers and recorders are installed
//! after the no-subscriber baselines for the same reason.

mod shared;

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use tracing_subscriber::layer::SubscriberExt as _;

use shared::{
    Drops, dynamic_timed, instrumented, instrumented_capture, instrumented_err, run_on_threads,
    work,
};

/// The workload under `tracing`'s attribute as written by default: the argument becomes a field.
#[tracing::instrument]
#[inline(never)]
fn traced(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

/// The same with `skip_all`: no fields, like `#[instrument_performance]` without `capture`.
#[tracing::instrument(skip_all)]
#[inline(never)]
fn traced_no_fields(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

/// The workload timed and counted by hand with the `metrics` facade, the way an application
/// without an attribute macro would.
#[inline(never)]
fn metered(x: u64) -> u64 {
    let start = Instant::now();
    let out = black_box(x).wrapping_mul(3);
    metrics::histogram!("bench_call_duration_seconds").record(start.elapsed());
    metrics::counter!("bench_calls_total").increment(1);
    out
}

/// The workload under `fastrace`'s attribute.
#[fastrace::trace]
#[inline(never)]
fn fastraced(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

/// A `fastrace` reporter that drops every span: the cost measured is fastrace's own.
struct DiscardReporter;

impl fastrace::collector::Reporter for DiscardReporter {
    fn report(&mut self, spans: Vec<fastrace::collector::SpanRecord>) {
        drop(black_box(spans));
    }
}

/// Calls per `fastrace` root span.
const CALLS_PER_ROOT: u64 = 1_000;

/// Calls per iteration in `overhead_sweep`.
const SWEEP: [u64; 4] = [1, 10, 100, 1_000];

fn install() -> instrument::PipelineGuard {
    instrument::builder()
        .sink(instrument::NullSink)
        .install()
        .expect("no other pipeline is installed in this process")
}

/// Queue capacities of `overhead_queue`: half the default, the default (8,192 records), larger.
const QUEUE_CAPACITIES: [usize; 5] = [4_096, 8_192, 16_384, 32_768, 65_536];

fn overhead(c: &mut Criterion) {
    let mut group = c.benchmark_group("overhead");

    // Nothing installed anywhere yet.
    group.bench_function("baseline", |b| b.iter(|| work(black_box(7))));
    let clock = quanta::Clock::new();
    group.bench_function("clock_pair", |b| {
        b.iter(|| {
            let start = clock.raw();
            let end = clock.raw();
            end.wrapping_sub(start)
        });
    });
    group.bench_function("instrument_not_installed", |b| {
        b.iter(|| instrumented(black_box(7)));
    });
    group.bench_function("tracing_instrument_no_subscriber", |b| {
        b.iter(|| traced(black_box(7)));
    });

    let pipeline = install();
    let mut drops = Drops::default();
    group.bench_function("instrument_performance", |b| {
        b.iter(|| instrumented(black_box(7)));
    });
    drops.report("overhead/instrument_performance", &pipeline);
    group.bench_function("instrument_performance_err", |b| {
        b.iter(|| instrumented_err(black_box(7)));
    });
    drops.report("overhead/instrument_performance_err", &pipeline);
    group.bench_function("instrument_performance_capture", |b| {
        b.iter(|| instrumented_capture(black_box(7)));
    });
    drops.report("overhead/instrument_performance_capture", &pipeline);
    // Registered once: the lock and lookup are paid here, not per call.
    let dynamic = instrument::metric("bench_dynamic")
        .label("stage", "bench")
        .function()
        .expect("a valid registration");
    group.bench_function("instrument_dynamic_callsite", |b| {
        b.iter(|| dynamic_timed(dynamic, black_box(7)));
    });
    drops.report("overhead/instrument_dynamic_callsite", &pipeline);
    pipeline.shutdown().expect("shutdown");

    let fmt = || tracing_subscriber::fmt().with_writer(std::io::sink);
    tracing::subscriber::with_default(fmt().finish(), || {
        group.bench_function("tracing_instrument_fmt", |b| {
            b.iter(|| traced(black_box(7)));
        });
        group.bench_function("tracing_instrument_fmt_no_fields", |b| {
            b.iter(|| traced_no_fields(black_box(7)));
        });
    });
    // `FmtSpan::CLOSE` is how `fmt` reports a span's duration: one line per call, the same
    // information `#[instrument_performance]` aggregates.
    let close = fmt()
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .finish();
    tracing::subscriber::with_default(close, || {
        group.bench_function("tracing_instrument_fmt_close", |b| {
            b.iter(|| traced(black_box(7)));
        });
    });
    tracing_bridge(&mut group);

    // The Prometheus recorder keeps histogram samples until upkeep folds them in; its HTTP
    // exporter runs upkeep on a timer, so run it here too, as the exporter would.
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    metrics::set_global_recorder(recorder).expect("no other metrics recorder is installed");
    let stop = Arc::new(AtomicBool::new(false));
    let upkeep = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                handle.run_upkeep();
            }
        }
    });
    group.bench_function("metrics_prometheus", |b| {
        b.iter(|| metered(black_box(7)));
    });
    stop.store(true, Ordering::Relaxed);
    upkeep.join().expect("upkeep thread");
    metrics_bridge(&mut group);

    fastrace::set_reporter(DiscardReporter, fastrace::collector::Config::default());
    group.bench_function("fastrace_trace", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let n = left.min(CALLS_PER_ROOT);
                let start = Instant::now();
                {
                    let root =
                        fastrace::Span::root("bench", fastrace::collector::SpanContext::random());
                    let _parent = root.set_local_parent();
                    for _ in 0..n {
                        black_box(fastraced(black_box(7)));
                    }
                }
                elapsed += start.elapsed();
                left -= n;
            }
            elapsed
        });
    });
    fastrace::flush();
    group.finish();
}

/// The `tracing` bridge: the function of `tracing_instrument_fmt`, each span recorded as a timed
/// call with its field, the way `FmtSpan::CLOSE` reports each span's duration.
fn tracing_bridge(group: &mut BenchmarkGroup<'_, WallTime>) {
    let pipeline = install();
    let bridge = tracing_subscriber::registry().with(instrument::tracing::InstrumentLayer::new());
    tracing::subscriber::with_default(bridge, || {
        group.bench_function("tracing_bridge", |b| {
            b.iter(|| traced(black_box(7)));
        });
    });
    Drops::default().report("overhead/tracing_bridge", &pipeline);
    pipeline.shutdown().expect("shutdown");
}

/// `metered`'s calls into the `metrics` bridge, a pipeline installed with `NullSink`. `metrics`
/// has one global recorder (the Prometheus one, by the time this runs), so the bridge is scoped
/// to this thread, which `metrics` consults first on every macro call, global recorder or not.
fn metrics_bridge(group: &mut BenchmarkGroup<'_, WallTime>) {
    let pipeline = install();
    let bridge = instrument::metrics::MetricsRecorder::new();
    metrics::with_local_recorder(&bridge, || {
        group.bench_function("metrics_bridge", |b| {
            b.iter(|| metered(black_box(7)));
        });
    });
    Drops::default().report("overhead/metrics_bridge", &pipeline);
    pipeline.shutdown().expect("shutdown");
}

/// `n` calls of `f` per iteration.
fn calls(n: u64, f: impl Fn(u64) -> u64) {
    for i in 0..n {
        black_box(f(black_box(i)));
    }
}

fn overhead_sweep(c: &mut Criterion) {
    let mut group = c.benchmark_group("overhead_sweep");
    for n in SWEEP {
        group.throughput(Throughput::Elements(n));
        group.bench_with_input(BenchmarkId::new("baseline", n), &n, |b, &n| {
            b.iter(|| calls(n, work));
        });
        group.bench_with_input(
            BenchmarkId::new("instrument_not_installed", n),
            &n,
            |b, &n| b.iter(|| calls(n, instrumented)),
        );
    }
    let pipeline = install();
    let mut drops = Drops::default();
    for n in SWEEP {
        group.throughput(Throughput::Elements(n));
        group.bench_with_input(
            BenchmarkId::new("instrument_performance", n),
            &n,
            |b, &n| {
                b.iter(|| calls(n, instrumented));
            },
        );
        drops.report(
            &format!("overhead_sweep/instrument_performance/{n}"),
            &pipeline,
        );
    }
    pipeline.shutdown().expect("shutdown");
    group.finish();
}

/// The installed call with the thread's queue at several capacities. A queue's capacity is fixed
/// when its thread first records, so each sample runs on a new thread.
fn overhead_queue(c: &mut Criterion) {
    let mut group = c.benchmark_group("overhead_queue");
    for capacity in QUEUE_CAPACITIES {
        let pipeline = instrument::builder()
            .queue_capacity(capacity)
            .sink(instrument::NullSink)
            .install()
            .expect("no other pipeline is installed in this process");
        group.bench_with_input(
            BenchmarkId::new("instrument_performance", capacity),
            &capacity,
            |b, _| {
                b.iter_custom(|iters| {
                    run_on_threads(
                        1,
                        |_| {
                            black_box(instrumented(0));
                        },
                        |_| {
                            for _ in 0..iters {
                                black_box(instrumented(black_box(7)));
                            }
                        },
                    )
                });
            },
        );
        Drops::default().report(
            &format!("overhead_queue/instrument_performance/{capacity}"),
            &pipeline,
        );
        pipeline.shutdown().expect("shutdown");
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    overhead(&mut c);
    overhead_sweep(&mut c);
    overhead_queue(&mut c);
    c.final_summary();
}
