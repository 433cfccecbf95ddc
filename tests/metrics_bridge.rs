//! The `metrics` facade bridge end to end: `metrics::counter!`, `gauge!` and `histogram!` go
//! through `instrument::metrics::MetricsRecorder` into a pipeline with a memory sink, a real
//! `SQLite` store and the Prometheus sink, and each of them holds what was recorded.
//!
//! All but one test scope the recorder to their thread (`metrics::with_local_recorder`), which
//! `metrics` prefers to the global recorder; `install_refuses_a_second_global_recorder` is the
//! only one that sets the process's global recorder.

use std::time::Duration;

use instrument::metrics::{KEY_CACHE_CAPACITY, MetricsRecorder};
use instrument::{Outcome, PipelineGuard, Snapshot, Unit};
use instrument_sinks::MemorySink;
use instrument_sinks::SqliteSink;
use instrument_sinks::prometheus::{Format, PrometheusSink};
use rusqlite::Connection;

mod support;
use support::{flushed_snapshot as flushed, install_counter_clock as install, serial};

/// The total of the counter `name` with exactly these labels.
fn counter(snapshot: &Snapshot, name: &str, labels: &[(&str, &str)]) -> Option<u64> {
    snapshot
        .counters
        .iter()
        .find(|c| c.callsite.name() == name && c.callsite.labels_slice() == labels)
        .map(|c| c.total)
}

/// The process's folded registrations, as of a flush (self-metrics are published per cycle).
fn overflows(pipeline: &PipelineGuard) -> u64 {
    pipeline.flush().expect("flush");
    pipeline.self_metrics().callsite_overflows
}

#[test]
fn counters_gauges_and_histograms_reach_memory_sqlite_and_prometheus() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("instrument.db");
    let memory = MemorySink::new();
    let prometheus = PrometheusSink::builder().serve(false).build().unwrap();
    let metrics = prometheus.handle();
    let pipeline = instrument::builder()
        .sink(memory.clone())
        .sink(SqliteSink::builder().path(&db).build().unwrap())
        .sink(prometheus)
        .install()
        .unwrap();
    let recorder = MetricsRecorder::new();

    metrics::with_local_recorder(&recorder, || {
        metrics::describe_histogram!(
            "bridge_batch_rows",
            metrics::Unit::Count,
            "Rows per batch written."
        );
        let files = metrics::counter!("bridge_files_total", "stage" => "parse");
        files.increment(3);
        metrics::counter!("bridge_files_total", "stage" => "parse").increment(2);
        // A source that keeps its own total: the last value counts, a smaller one is a reset.
        let bytes = metrics::counter!("bridge_bytes_total");
        bytes.absolute(100);
        bytes.absolute(150);
        bytes.absolute(40);
        let queued = metrics::gauge!("bridge_queue_depth");
        queued.set(10.0);
        queued.increment(5.0);
        queued.decrement(3.0);
        metrics::histogram!("bridge_parse_duration_seconds").record(0.004);
        metrics::histogram!("bridge_parse_duration_seconds").record(Duration::from_millis(2));
        let rows = metrics::histogram!("bridge_batch_rows");
        rows.record(500.0);
        rows.record(2.4);
        rows.record(-1.0);
        rows.record(f64::NAN);
    });

    let snapshot = flushed(&pipeline, &memory);
    assert_eq!(
        counter(&snapshot, "bridge_files_total", &[("stage", "parse")]),
        Some(5)
    );
    assert_eq!(counter(&snapshot, "bridge_bytes_total", &[]), Some(190));
    assert_eq!(snapshot.gauge("bridge_queue_depth"), Some(12.0));
    let durations = snapshot
        .call("bridge_parse_duration_seconds", Outcome::Ok)
        .expect("the seconds histogram");
    assert_eq!(durations.callsite.unit(), Some(Unit::Nanoseconds));
    assert_eq!(durations.total.count, 2);
    // Values travel as nanoseconds in the `Duration` fields of a value histogram.
    assert_eq!(durations.total.sum, Duration::from_millis(6));
    let rows = snapshot
        .call("bridge_batch_rows", Outcome::Ok)
        .expect("the rows histogram");
    assert_eq!(rows.callsite.unit(), Some(Unit::Count));
    assert_eq!(rows.callsite.description(), Some("Rows per batch written."));
    assert_eq!(rows.total.count, 2);
    assert_eq!(rows.total.sum.as_nanos(), 502);
    assert_eq!(
        counter(
            &snapshot,
            "instrument_metrics_bridge_rejected_total",
            &[("reason", "value")]
        ),
        Some(2)
    );

    drop(pipeline);
    check_store(&db);
    check_prometheus(
        &metrics.render(Format::Text),
        &metrics.render(Format::OpenMetrics),
    );
}

/// What the `SQLite` store holds of the recording above.
fn check_store(db: &std::path::Path) {
    let store = Connection::open(db).unwrap();
    let total: i64 = store
        .query_row(
            "SELECT k.total FROM counters k JOIN callsites c ON c.id = k.callsite_id
             WHERE c.name = 'bridge_files_total' ORDER BY k.id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(total, 5);
    let gauge: f64 = store
        .query_row(
            "SELECT g.value FROM gauges g JOIN callsites c ON c.id = g.callsite_id
             WHERE c.name = 'bridge_queue_depth' ORDER BY g.id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!((gauge - 12.0).abs() < f64::EPSILON, "{gauge}");
    let (count, sum, unit): (i64, i64, String) = store
        .query_row(
            "SELECT sum(w.count), sum(w.sum_ns), c.unit FROM windows w
             JOIN callsites c ON c.id = w.callsite_id
             WHERE c.name = 'bridge_parse_duration_seconds'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((count, sum, unit.as_str()), (2, 6_000_000, "nanoseconds"));
}

/// What the Prometheus sink exports of it: the seconds histogram in seconds again.
fn check_prometheus(text: &str, open_metrics: &str) {
    for line in [
        "bridge_files_total{stage=\"parse\"} 5\n",
        "bridge_bytes_total 190\n",
        "bridge_queue_depth 12\n",
        "# TYPE bridge_parse_duration_seconds summary\n",
        "bridge_parse_duration_seconds_sum 0.006\n",
        "bridge_parse_duration_seconds_count 2\n",
        "bridge_batch_rows_sum 502\n",
        "bridge_batch_rows_count 2\n",
        "# HELP bridge_batch_rows Rows per batch written.\n",
        "instrument_metrics_bridge_rejected_total{reason=\"value\"} 2\n",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    assert!(
        open_metrics.contains("# UNIT bridge_parse_duration_seconds seconds\n"),
        "{open_metrics}"
    );
}

#[test]
fn names_and_labels_are_sanitized_for_prometheus() {
    let _serial = serial();
    let memory = MemorySink::new();
    let pipeline = install(&memory);
    let recorder = MetricsRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        metrics::counter!(
            "bridge.http.requests",
            "status.code" => "200",
            "function" => "get",
            "status_code" => "shadowed"
        )
        .increment(1);
    });
    let snapshot = flushed(&pipeline, &memory);
    assert_eq!(
        counter(
            &snapshot,
            "bridge_http_requests",
            &[("exported_function", "get"), ("status_code", "200")]
        ),
        Some(1),
        "{:?}",
        snapshot.counters
    );
}

#[test]
fn cardinality_is_bounded_and_overflow_is_counted() {
    let _serial = serial();
    let memory = MemorySink::new();
    let pipeline = instrument::builder()
        .cardinality_limit(5)
        .sink(memory.clone())
        .install()
        .unwrap();
    let recorder = MetricsRecorder::new();
    let before = overflows(&pipeline);
    metrics::with_local_recorder(&recorder, || {
        for round in 0..20 {
            for user in 0..50 {
                metrics::counter!("bridge_per_user_total", "user" => user.to_string()).increment(1);
            }
            assert_eq!(recorder.cached_keys(), 50, "round {round}");
        }
    });
    let snapshot = flushed(&pipeline, &memory);
    let series: Vec<_> = snapshot
        .counters
        .iter()
        .filter(|c| c.callsite.name() == "bridge_per_user_total")
        .collect();
    assert_eq!(series.len(), 6, "5 label sets and the overflow series");
    assert_eq!(
        counter(&snapshot, "bridge_per_user_total", &[("overflow", "true")]),
        Some(45 * 20)
    );
    assert_eq!(snapshot.counter("bridge_per_user_total"), Some(50 * 20));
    // Each folded key was registered once (then cached), and counted once.
    assert_eq!(overflows(&pipeline) - before, 45);
    drop(pipeline);
}

#[test]
fn keys_past_the_cache_still_record_at_bounded_memory() {
    let _serial = serial();
    let memory = MemorySink::new();
    let pipeline = instrument::builder()
        .cardinality_limit(1)
        .sink(memory.clone())
        .install()
        .unwrap();
    // Made first: under a limit of 1 its own counter's second label set folds too.
    let recorder = MetricsRecorder::new();
    let before = overflows(&pipeline);
    let keys = KEY_CACHE_CAPACITY + 1_000;
    metrics::with_local_recorder(&recorder, || {
        for key in 0..keys {
            metrics::counter!("bridge_many_keys_total", "key" => key.to_string()).increment(1);
        }
        assert_eq!(recorder.cached_keys(), KEY_CACHE_CAPACITY);
        // The keys past the cache again: recorded, looked up in the core's registry each time.
        for key in KEY_CACHE_CAPACITY..keys {
            metrics::counter!("bridge_many_keys_total", "key" => key.to_string()).increment(1);
        }
        assert_eq!(recorder.cached_keys(), KEY_CACHE_CAPACITY);
    });
    let snapshot = flushed(&pipeline, &memory);
    assert_eq!(
        snapshot.counter("bridge_many_keys_total"),
        Some((keys + 1_000) as u64)
    );
    assert_eq!(
        counter(&snapshot, "bridge_many_keys_total", &[("key", "0")]),
        Some(1)
    );
    // Every key but the first folded: once when first seen, and again on each use past the
    // cache.
    assert_eq!(overflows(&pipeline) - before, (keys - 1 + 1_000) as u64);
    drop(pipeline);
}

#[test]
fn install_refuses_a_second_global_recorder_and_a_fanout_feeds_both() {
    let _serial = serial();
    let memory = MemorySink::new();
    let pipeline = install(&memory);

    instrument::metrics::install().expect("the first global recorder");
    metrics::counter!("bridge_global_total").increment(7);
    let error = instrument::metrics::install().expect_err("metrics allows one global recorder");
    assert_eq!(
        error.to_string(),
        "cannot install the instrument metrics recorder: this process already has a global \
         `metrics` recorder (metrics allows one); install a `metrics_util::layers::Fanout` of \
         both instead (see instrument::metrics)"
    );
    // The refused recorder comes back, usable.
    let recorder = error.into_recorder();

    // A host that has a recorder of its own fans out to both.
    let theirs = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let their_output = theirs.handle();
    let both = metrics_util::layers::FanoutBuilder::default()
        .add_recorder(recorder)
        .add_recorder(theirs)
        .build();
    metrics::with_local_recorder(&both, || {
        metrics::counter!("bridge_fanout_total").increment(4);
        metrics::gauge!("bridge_fanout_level").set(2.5);
    });

    let snapshot = flushed(&pipeline, &memory);
    assert_eq!(snapshot.counter("bridge_global_total"), Some(7));
    assert_eq!(snapshot.counter("bridge_fanout_total"), Some(4));
    assert_eq!(snapshot.gauge("bridge_fanout_level"), Some(2.5));
    let theirs = their_output.render();
    assert!(theirs.contains("bridge_fanout_total 4\n"), "{theirs}");
    assert!(theirs.contains("bridge_fanout_level 2.5\n"), "{theirs}");
    drop(pipeline);
}

#[test]
fn a_histogram_name_keeps_the_scale_of_its_first_registration() {
    let _serial = serial();
    let memory = MemorySink::new();
    let pipeline = install(&memory);
    let recorder = MetricsRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        metrics::histogram!("bridge_wait", "queue" => "a").record(3.0);
        // Described in seconds after the name's first use: its other label sets stay unscaled.
        metrics::describe_histogram!("bridge_wait", metrics::Unit::Seconds, "Waits.");
        metrics::histogram!("bridge_wait", "queue" => "b").record(3.0);
    });
    let snapshot = flushed(&pipeline, &memory);
    let sums: Vec<u128> = snapshot
        .calls
        .iter()
        .filter(|c| c.callsite.name() == "bridge_wait")
        .map(|c| c.total.sum.as_nanos())
        .collect();
    assert_eq!(sums, [3, 3]);
    drop(pipeline);
}
