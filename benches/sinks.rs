//! How fast sinks store what the drain hands them.
//!
//! `cargo bench --bench sinks -- sqlite`. Group `sqlite`, throughput in event rows:
//! - `sink_write/1000`: `SqliteSink::write` of a batch of 1,000 events (one transaction, cached
//!   prepared statements of 32 rows each, converting each event: callsite id, times, captured
//!   arguments as JSON);
//! - `bare_insert_loop/1000`: the floor, a bare rusqlite loop inserting the same 1,000 rows,
//!   converted before timing, through one prepared statement in one transaction, into the same
//!   schema with the same settings (WAL, `synchronous=NORMAL`).
//!
//! The events are real: error calls with two captured arguments and a correlation id, recorded
//! by a pipeline with a `MemorySink` before timing. Each timed batch is a copy moved forward
//! (start times by the batch's span, correlation ids by its size), prepared outside the timing,
//! so that the indexes on time and correlation id grow at their ends as they do in a running
//! pipeline; writing the same keys again would scatter every insert across the indexes. After criterion's figures, the bench measures
//! both side by side once more, alternating, and prints rows/s of each and their ratio (the bar
//! in issue 7: at least 400,000 rows/s, and at least 0.7 times the bare loop).
//!
//! `cargo bench --bench sinks -- prometheus_render`. Group `prometheus_render`: rendering
//! `/metrics` (text format) of the same data by `PrometheusSink` and by
//! `metrics-exporter-prometheus`, each into memory, no HTTP:
//! - `counters_10000/*`: 10,000 counter series (`bench_rows_total{table, series}`);
//! - `histograms_10000x12/*`: 10,000 histogram series of 12 buckets each. The sink also writes
//!   each callsite's `instrument_calls_total` series (10,000 more lines the exporter does not
//!   write); its quantile summaries are off, as the exporter writes none for histograms;
//! - `summaries_10000/metrics_exporter_prometheus`: the exporter's default for the same
//!   histograms, summaries of 6 quantiles.
//!
//! The sink's data comes from real pipelines (run-time counters and timers, flushed); the
//! exporter's from the same names, labels and values through its recorder, with its samples
//! folded in before timing. After criterion's figures the bench renders each side by side once
//! more, alternating, and prints the medians, their ratio and the bars of issue 9 (counters at
//! most 3 ms, histograms at most 20 ms, each at least 4 times faster than the exporter).
//!
//! `cargo bench --bench sinks -- jsonl`: the JSON-lines sink against `tracing`'s JSON output
//! and bare `serde_json`; see the comment above `fn jsonl`.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};
use instrument::{Batch, CorrelationId, Event, Sink, instrument_performance};
use instrument_sinks::JsonlSink;
use instrument_sinks::prometheus::{Format, PrometheusHandle, PrometheusSink};
use instrument_sinks::{MemorySink, SqliteSink};
use rusqlite::Connection;

/// Events per batch.
const BATCH: usize = 1_000;

#[instrument_performance(capture(path, attempt))]
fn load(path: &str, attempt: u64) -> Result<(), std::num::ParseIntError> {
    let _ = attempt;
    path.parse::<u64>().map(drop)
}

/// `BATCH` error events recorded by a real pipeline.
fn events() -> Vec<Event> {
    let sink = MemorySink::new();
    let pipeline = instrument::builder()
        .sink(sink.clone())
        .install()
        .expect("no other pipeline is installed");
    for attempt in 0..BATCH as u64 {
        let path = format!("src/module_{attempt}.rs");
        let _ = instrument::with_correlation(CorrelationId::new(), || load(&path, attempt));
    }
    pipeline.flush().expect("flush");
    drop(pipeline);
    let events = sink.events();
    assert_eq!(events.len(), BATCH, "every error call is an event");
    events
}

/// `events` moved forward by `round` batches: later start times and new correlation ids.
fn shifted(events: &[Event], round: u64) -> Vec<Event> {
    let first = events.first().map(|e| e.start).unwrap();
    let last = events.iter().map(|e| e.start).max().unwrap();
    let span = last.duration_since(first).unwrap() + Duration::from_micros(1);
    events
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut e = e.clone();
            e.start += span * u32::try_from(round).unwrap();
            e.correlation = CorrelationId::from_u64((1 << 40) + round * BATCH as u64 + i as u64);
            e
        })
        .collect()
}

fn batch_of(events: Vec<Event>) -> Batch {
    let mut batch = Batch::default();
    batch.events = events;
    batch
}

/// One `events` row, converted as the sink converts it.
struct Row {
    outcome: &'static str,
    error_kind: Option<&'static str>,
    start_us: i64,
    duration_ns: i64,
    thread_id: i64,
    thread_name: Option<String>,
    correlation: Option<String>,
    fields: String,
}

fn rows(events: &[Event]) -> Vec<Row> {
    events
        .iter()
        .map(|e| Row {
            outcome: e.outcome.as_str(),
            error_kind: e.error_kind,
            start_us: i64::try_from(
                e.start
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_micros(),
            )
            .unwrap(),
            duration_ns: i64::try_from(e.duration.as_nanos()).unwrap(),
            thread_id: i64::try_from(e.thread.id).unwrap(),
            thread_name: e.thread.name.as_deref().map(str::to_owned),
            correlation: e.correlation.map(|c| c.to_string()),
            fields: serde_json::to_string(
                &e.fields
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), serde_json::to_value(v).unwrap()))
                    .collect::<serde_json::Map<_, _>>(),
            )
            .unwrap(),
        })
        .collect()
}

/// A store with the sink's schema and settings, opened bare.
fn bare_store(path: &Path) -> (Connection, i64) {
    drop(
        SqliteSink::builder()
            .path(path)
            .build()
            .expect("creates the schema"),
    );
    let conn = Connection::open(path).unwrap();
    conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get::<_, String>(0))
        .unwrap();
    conn.pragma_update(None, "synchronous", "NORMAL").unwrap();
    conn.execute(
        "INSERT INTO callsites (name, module, file, line, kind, labels) \
         VALUES ('load', 'sinks', 'benches/sinks.rs', 1, 'function', '{}')",
        [],
    )
    .unwrap();
    let callsite = conn.last_insert_rowid();
    (conn, callsite)
}

fn bare_insert(conn: &mut Connection, callsite: i64, rows: &[Row]) {
    let tx = conn.transaction().unwrap();
    {
        let mut insert = tx
            .prepare_cached(
                "INSERT INTO events (callsite_id, outcome, error_kind, start_us, duration_ns,
                                     thread_id, thread_name, correlation, reason, fields)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .unwrap();
        for row in rows {
            insert
                .execute((
                    callsite,
                    row.outcome,
                    row.error_kind,
                    row.start_us,
                    row.duration_ns,
                    row.thread_id,
                    row.thread_name.as_deref(),
                    row.correlation.as_deref(),
                    "outcome",
                    row.fields.as_str(),
                ))
                .unwrap();
        }
    }
    tx.commit().unwrap();
}

fn sqlite(c: &mut Criterion) {
    if !selected(&["sqlite/sink_write/1000", "sqlite/bare_insert_loop/1000"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let events = events();
    let mut sink = SqliteSink::builder()
        .path(dir.path().join("sink.db"))
        .build()
        .unwrap();
    let (mut bare, callsite) = bare_store(&dir.path().join("bare.db"));
    let (mut sink_round, mut bare_round) = (0, 0);

    let mut group = c.benchmark_group("sqlite");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function(format!("sink_write/{BATCH}"), |b| {
        b.iter_batched_ref(
            || {
                sink_round += 1;
                batch_of(shifted(&events, sink_round))
            },
            |batch| sink.write(black_box(batch)).unwrap(),
            BatchSize::SmallInput,
        );
    });
    group.bench_function(format!("bare_insert_loop/{BATCH}"), |b| {
        b.iter_batched_ref(
            || {
                bare_round += 1;
                rows(&shifted(&events, bare_round))
            },
            |rows| bare_insert(&mut bare, callsite, black_box(rows)),
            BatchSize::SmallInput,
        );
    });
    group.finish();

    // Side by side once more, alternating batches so that both see the same machine state.
    let (mut sink_time, mut bare_time) = (Duration::ZERO, Duration::ZERO);
    let rounds = 200;
    for _ in 0..rounds {
        sink_round += 1;
        let batch = batch_of(shifted(&events, sink_round));
        let start = Instant::now();
        sink.write(&batch).unwrap();
        sink_time += start.elapsed();
        bare_round += 1;
        let rows = rows(&shifted(&events, bare_round));
        let start = Instant::now();
        bare_insert(&mut bare, callsite, &rows);
        bare_time += start.elapsed();
    }
    let per_second = |time: Duration| (rounds * BATCH) as f64 / time.as_secs_f64();
    let (sink_rate, bare_rate) = (per_second(sink_time), per_second(bare_time));
    eprintln!(
        "sqlite: sink {sink_rate:.0} rows/s, bare loop {bare_rate:.0} rows/s, ratio {:.2} \
         (bar: >= 400000 rows/s and >= 0.70)",
        sink_rate / bare_rate
    );
}

// ---- prometheus_render ----

/// Series per case.
const SERIES: usize = 10_000;

/// The 12 bucket bounds of the histogram case, in seconds.
const BOUNDS: [f64; 12] = [
    0.000_01, 0.000_05, 0.000_1, 0.000_5, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0,
];

/// A sink without an endpoint, after a pipeline ran `record` and flushed.
fn sink_after(record: impl FnOnce()) -> PrometheusHandle {
    let sink = PrometheusSink::builder()
        .serve(false)
        .quantiles(false)
        .buckets(BOUNDS.map(Duration::from_secs_f64))
        .build()
        .expect("valid settings");
    let handle = sink.handle();
    let pipeline = instrument::builder()
        .sink(sink)
        .install()
        .expect("no other pipeline is installed");
    record();
    pipeline.flush().expect("flush");
    drop(pipeline);
    handle
}

/// `(table, series)` labels of counter `i`.
fn counter_labels(i: usize) -> [(&'static str, String); 2] {
    [
        ("table", format!("t{}", i % 100)),
        ("series", i.to_string()),
    ]
}

/// Durations recorded into histogram `i`: spread over the buckets.
fn durations(i: usize) -> [u64; 3] {
    let base = 20_000 + (i as u64 % 50) * 40_000;
    [base, base * 3, base * 11]
}

fn counters_sink() -> PrometheusHandle {
    sink_after(|| {
        for i in 0..SERIES {
            instrument::metric("bench_rows_total")
                .labels(counter_labels(i))
                .counter()
                .expect("under the cardinality limit")
                .add(i as u64 + 1);
        }
    })
}

fn histograms_sink() -> PrometheusHandle {
    sink_after(|| {
        for i in 0..SERIES {
            let timer = instrument::metric("bench_op")
                .label("series", i.to_string())
                .timer()
                .expect("under the cardinality limit");
            // Real timed calls: the timer measures what it measures; the values only need to
            // exist, the render cost does not depend on them.
            for _ in durations(i) {
                drop(timer.start());
            }
        }
    })
}

fn exporter(buckets: bool) -> metrics_exporter_prometheus::PrometheusRecorder {
    let builder = metrics_exporter_prometheus::PrometheusBuilder::new();
    if buckets {
        builder.set_buckets(&BOUNDS).expect("valid buckets")
    } else {
        builder
    }
    .build_recorder()
}

fn counters_exporter() -> metrics_exporter_prometheus::PrometheusHandle {
    let recorder = exporter(true);
    metrics::with_local_recorder(&recorder, || {
        for i in 0..SERIES {
            let [(t, table), (s, series)] = counter_labels(i);
            metrics::counter!("bench_rows_total", t => table, s => series).increment(i as u64 + 1);
        }
    });
    recorder.handle()
}

fn histograms_exporter(buckets: bool) -> metrics_exporter_prometheus::PrometheusHandle {
    let recorder = exporter(buckets);
    metrics::with_local_recorder(&recorder, || {
        for i in 0..SERIES {
            // The sink's label set of the same series.
            let histogram = metrics::histogram!(
                "instrument_duration_seconds",
                "function" => "bench_op",
                "module" => "",
                "outcome" => "ok",
                "series" => i.to_string()
            );
            for nanos in durations(i) {
                histogram.record(Duration::from_nanos(nanos).as_secs_f64());
            }
        }
    });
    let handle = recorder.handle();
    // Fold the recorded samples in, as the exporter's upkeep would before a scrape.
    handle.run_upkeep();
    drop(handle.render());
    handle
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn prometheus_render(c: &mut Criterion) {
    let ours_counters = counters_sink();
    let ours_histograms = histograms_sink();
    let theirs_counters = counters_exporter();
    let theirs_histograms = histograms_exporter(true);
    let theirs_summaries = histograms_exporter(false);

    // The same series on both sides.
    let mut buffer = Vec::new();
    ours_counters.render_into(Format::Text, &mut buffer);
    let text = String::from_utf8_lossy(&buffer);
    assert_eq!(
        text.lines()
            .filter(|l| l.starts_with("bench_rows_total{"))
            .count(),
        SERIES
    );
    assert_eq!(
        theirs_counters
            .render()
            .lines()
            .filter(|l| l.starts_with("bench_rows_total{"))
            .count(),
        SERIES
    );
    ours_histograms.render_into(Format::Text, &mut buffer);
    let text = String::from_utf8_lossy(&buffer);
    let ours_buckets = text
        .lines()
        .filter(|l| l.starts_with("instrument_duration_seconds_bucket{function=\"bench_op\""))
        .count();
    assert_eq!(ours_buckets, SERIES * (BOUNDS.len() + 1));
    let theirs_buckets = theirs_histograms
        .render()
        .lines()
        .filter(|l| l.starts_with("instrument_duration_seconds_bucket{"))
        .count();
    assert_eq!(theirs_buckets, SERIES * (BOUNDS.len() + 1));

    let mut group = c.benchmark_group("prometheus_render");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function("counters_10000/instrument_sinks", |b| {
        b.iter(|| {
            ours_counters.render_into(Format::Text, &mut buffer);
            black_box(buffer.len())
        });
    });
    group.bench_function("counters_10000/metrics_exporter_prometheus", |b| {
        b.iter(|| black_box(theirs_counters.render().len()));
    });
    group.bench_function("histograms_10000x12/instrument_sinks", |b| {
        b.iter(|| {
            ours_histograms.render_into(Format::Text, &mut buffer);
            black_box(buffer.len())
        });
    });
    group.bench_function("histograms_10000x12/metrics_exporter_prometheus", |b| {
        b.iter(|| black_box(theirs_histograms.render().len()));
    });
    group.bench_function("summaries_10000/metrics_exporter_prometheus", |b| {
        b.iter(|| black_box(theirs_summaries.render().len()));
    });
    group.finish();

    // Side by side once more, alternating so that both see the same machine state.
    let rounds = 15;
    let time = |f: &mut dyn FnMut()| {
        let start = Instant::now();
        f();
        start.elapsed()
    };
    let (mut ours_c, mut theirs_c, mut ours_h, mut theirs_h, mut theirs_s) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        ours_c.push(time(&mut || {
            ours_counters.render_into(Format::Text, &mut buffer);
        }));
        theirs_c.push(time(&mut || drop(black_box(theirs_counters.render()))));
        ours_h.push(time(&mut || {
            ours_histograms.render_into(Format::Text, &mut buffer);
        }));
        theirs_h.push(time(&mut || drop(black_box(theirs_histograms.render()))));
        theirs_s.push(time(&mut || drop(black_box(theirs_summaries.render()))));
    }
    let (ours_c, theirs_c) = (median(ours_c), median(theirs_c));
    let (ours_h, theirs_h, theirs_s) = (median(ours_h), median(theirs_h), median(theirs_s));
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    eprintln!(
        "prometheus_render: 10,000 counters: sink {:.2} ms, exporter {:.2} ms, {:.1}x \
         (bar: <= 3 ms and >= 4x)",
        ms(ours_c),
        ms(theirs_c),
        theirs_c.as_secs_f64() / ours_c.as_secs_f64()
    );
    eprintln!(
        "prometheus_render: 10,000 histograms x 12 buckets: sink {:.2} ms, exporter {:.2} ms, \
         {:.1}x; exporter's default summaries {:.2} ms, {:.1}x (bar: <= 20 ms and >= 4x)",
        ms(ours_h),
        ms(theirs_h),
        theirs_h.as_secs_f64() / ours_h.as_secs_f64(),
        ms(theirs_s),
        theirs_s.as_secs_f64() / ours_h.as_secs_f64()
    );
}

/// Batches per side-by-side segment, and segments per path.
const JSONL_ROUNDS: usize = 100;
const JSONL_SEGMENTS: usize = 3;

/// Whether the command line's filters (criterion's, as substrings) select any of `ids`, or
/// there are none.
fn selected(ids: &[&str]) -> bool {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    filters.is_empty()
        || filters
            .iter()
            .any(|f| ids.iter().any(|id| id.contains(f.as_str())))
}

/// The same events as `tracing` events with the same values.
fn emit_tracing(events: &[Event]) {
    for e in events {
        let (path, attempt) = match (&e.fields[0].1, &e.fields[1].1) {
            (instrument::FieldValue::Str(path), instrument::FieldValue::U64(attempt)) => {
                (&**path, *attempt)
            }
            other => panic!("unexpected captures {other:?}"),
        };
        let correlation = e.correlation.map(|c| c.to_string()).unwrap_or_default();
        tracing::error!(
            name = e.callsite.name(),
            module = e.callsite.module_path(),
            duration_ns = u64::try_from(e.duration.as_nanos()).unwrap_or(u64::MAX),
            outcome = e.outcome.as_str(),
            error_kind = e.error_kind.unwrap_or_default(),
            reason = e.reason.as_str(),
            path,
            attempt,
            thread_id = e.thread.id,
            correlation_id = correlation.as_str(),
            "call"
        );
    }
}

/// A `tracing` dispatcher with the JSON layer writing through a lossless non-blocking writer
/// to `dir/tracing.jsonl`, and the guard whose drop waits for every line to be written.
fn tracing_json(
    dir: &Path,
) -> (
    tracing::Dispatch,
    tracing_appender::non_blocking::WorkerGuard,
) {
    use tracing_subscriber::layer::SubscriberExt as _;
    let file = tracing_appender::rolling::never(dir, "tracing.jsonl");
    let (writer, guard) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .lossy(false)
        .finish(file);
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::fmt::layer()
            .json()
            .with_thread_ids(true)
            .with_writer(writer),
    );
    (tracing::Dispatch::new(subscriber), guard)
}

fn bare_serde_json(buf: &mut Vec<u8>, events: &[Event]) {
    buf.clear();
    for e in events {
        serde_json::to_writer(&mut *buf, e).unwrap();
        buf.push(b'\n');
    }
}

fn jsonl(c: &mut Criterion) {
    if !selected(&[
        "jsonl/sink_write/1000",
        "jsonl/tracing_json_non_blocking/1000",
        "jsonl/bare_serde_json/1000",
    ]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let events = events();
    let batch = batch_of(events.clone());
    let mut sink = JsonlSink::builder()
        .dir(dir.path().join("sink"))
        .build()
        .unwrap();
    let mut buf = Vec::new();

    let mut group = c.benchmark_group("jsonl");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(30);
    group.measurement_time(Duration::from_secs(5));
    group.bench_function(format!("sink_write/{BATCH}"), |b| {
        b.iter(|| sink.write(black_box(&batch)).unwrap());
    });
    {
        let tracing_dir = dir.path().join("tracing-criterion");
        let (dispatch, guard) = tracing_json(&tracing_dir);
        group.bench_function(format!("tracing_json_non_blocking/{BATCH}"), |b| {
            b.iter(|| {
                tracing::dispatcher::with_default(&dispatch, || emit_tracing(black_box(&events)));
            });
        });
        drop(guard);
        let _ = std::fs::remove_dir_all(tracing_dir);
    }
    group.bench_function(format!("bare_serde_json/{BATCH}"), |b| {
        b.iter(|| bare_serde_json(&mut buf, black_box(&events)));
    });
    group.finish();

    // Side by side once more, in alternating segments.
    let (mut sink_time, mut tracing_time, mut bare_time) =
        (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for segment in 0..JSONL_SEGMENTS {
        let start = Instant::now();
        for _ in 0..JSONL_ROUNDS {
            sink.write(&batch).unwrap();
        }
        sink.flush().unwrap();
        sink_time += start.elapsed();

        let tracing_dir = dir.path().join(format!("tracing-{segment}"));
        let (dispatch, guard) = tracing_json(&tracing_dir);
        let start = Instant::now();
        tracing::dispatcher::with_default(&dispatch, || {
            for _ in 0..JSONL_ROUNDS {
                emit_tracing(&events);
            }
        });
        drop(guard);
        tracing_time += start.elapsed();
        let written = std::fs::read_to_string(tracing_dir.join("tracing.jsonl")).unwrap();
        assert_eq!(
            written.lines().count(),
            JSONL_ROUNDS * BATCH,
            "the tracing path wrote every line"
        );
        let _ = std::fs::remove_dir_all(tracing_dir);

        let start = Instant::now();
        for _ in 0..JSONL_ROUNDS {
            bare_serde_json(&mut buf, black_box(&events));
        }
        bare_time += start.elapsed();
    }
    let lines = (JSONL_SEGMENTS * JSONL_ROUNDS * BATCH) as f64;
    let (sink_rate, tracing_rate, bare_rate) = (
        lines / sink_time.as_secs_f64(),
        lines / tracing_time.as_secs_f64(),
        lines / bare_time.as_secs_f64(),
    );
    eprintln!(
        "jsonl: sink {sink_rate:.0} lines/s, tracing JSON + non-blocking appender {tracing_rate:.0} \
         lines/s, bare serde_json {bare_rate:.0} lines/s ({:.0} ns a line); sink / tracing = \
         {:.2} (bars: >= 1500000 lines/s and >= 3.00)",
        1e9 / bare_rate,
        sink_rate / tracing_rate
    );
    drop(sink);
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    sqlite(&mut c);
    // Each group's own side-by-side run follows its criterion figures, so a group the filter
    // leaves out is skipped whole.
    if selected(&[
        "prometheus_render/counters_10000/instrument_sinks",
        "prometheus_render/counters_10000/metrics_exporter_prometheus",
        "prometheus_render/histograms_10000x12/instrument_sinks",
        "prometheus_render/histograms_10000x12/metrics_exporter_prometheus",
        "prometheus_render/summaries_10000/metrics_exporter_prometheus",
    ]) {
        prometheus_render(&mut c);
    }
    jsonl(&mut c);
    c.final_summary();
}
