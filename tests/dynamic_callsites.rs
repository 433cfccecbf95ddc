//! Callsites registered at run time (`instrument::metric`): interning, validation, the
//! cardinality limit's overflow series, and what reaches a sink, exactly.
//!
//! Registrations are process-wide and permanent, so every test uses names of its own. A pipeline
//! is process-wide too: every test that installs one takes `serial()` first.

use std::sync::{Arc, Barrier};
use std::time::Duration;

use instrument::testing::advance;
use instrument::{
    CallsiteKind, ClockSource, Counter, Error, Gauge, Outcome, PipelineGuard, TimerHandle, Unit,
    ValueHistogram,
};
use instrument_sinks::MemorySink;

mod support;
use support::{flushed_snapshot, install, install_counter_clock, serial};

/// The default number of label sets a name may register before the overflow series.
const CARDINALITY_LIMIT: usize = 10_000;

fn disk_reads(disk: &str, host: &str) -> Counter {
    instrument::metric("dyn_disk_reads_total")
        .label("disk", disk.to_owned())
        .label("host", host.to_owned())
        .counter()
        .expect("valid name and labels")
}

#[test]
fn handles_are_copy_send_and_sync() {
    fn check<T: Copy + Send + Sync + Eq + std::hash::Hash + std::fmt::Debug>() {}
    check::<Counter>();
    check::<Gauge>();
    check::<ValueHistogram>();
    check::<TimerHandle>();
}

#[test]
fn the_same_name_labels_and_kind_give_the_same_callsite() {
    let first = disk_reads("sda", "db1");
    // Labels in another order, as owned strings: the same callsite.
    let again = instrument::metric(String::from("dyn_disk_reads_total"))
        .labels([("host", "db1"), ("disk", "sda")])
        .counter()
        .unwrap();
    assert_eq!(first, again);
    assert!(std::ptr::eq(first.metadata(), again.metadata()));
    assert_eq!(
        first.metadata().labels_slice(),
        &[("disk", "sda"), ("host", "db1")]
    );
    assert_eq!(first.metadata().kind(), CallsiteKind::Counter);
    assert_eq!(first.metadata().file(), file!());

    // Another label value, another kind: other callsites.
    assert_ne!(first, disk_reads("sdb", "db1"));
    let as_gauge = instrument::metric("dyn_disk_reads_total")
        .label("disk", "sda")
        .label("host", "db1")
        .gauge()
        .unwrap();
    assert!(!std::ptr::eq(first.metadata(), as_gauge.metadata()));
}

#[test]
fn concurrent_registrations_of_one_key_give_one_callsite() {
    const THREADS: usize = 8;
    const REGISTRATIONS: u64 = 200;
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);
    let start = Arc::new(Barrier::new(THREADS));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let start = Arc::clone(&start);
            std::thread::spawn(move || {
                start.wait();
                let mut seen = Vec::new();
                for _ in 0..REGISTRATIONS {
                    // Half the threads name the labels in the other order.
                    let labels = if t % 2 == 0 {
                        [("stage", "parse"), ("queue", "in")]
                    } else {
                        [("queue", "in"), ("stage", "parse")]
                    };
                    let counter = instrument::metric("dyn_concurrent_total")
                        .labels(labels)
                        .counter()
                        .unwrap();
                    counter.add(1);
                    seen.push(std::ptr::from_ref(counter.metadata()) as usize);
                }
                seen
            })
        })
        .collect();
    let mut addresses: Vec<usize> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("registering thread"))
        .collect();
    addresses.dedup();
    assert_eq!(addresses.len(), 1, "more than one callsite: {addresses:?}");

    let snapshot = flushed_snapshot(&pipeline, &sink);
    let series: Vec<_> = snapshot
        .counters
        .iter()
        .filter(|c| c.callsite.name() == "dyn_concurrent_total")
        .collect();
    assert_eq!(series.len(), 1);
    assert_eq!(series[0].total, THREADS as u64 * REGISTRATIONS);
}

#[test]
fn invalid_names_and_labels_are_errors_that_name_the_cause() {
    let err = instrument::metric("9lives").counter().unwrap_err();
    assert!(
        matches!(&err, Error::InvalidMetricName { name } if name == "9lives"),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "invalid metric name `9lives`: metric names must match [a-zA-Z_:][a-zA-Z0-9_:]*"
    );
    let err = instrument::metric("disk.free").gauge().unwrap_err();
    assert!(err.to_string().contains("`disk.free`"), "{err}");
    let err = instrument::metric("").histogram().unwrap_err();
    assert!(matches!(err, Error::InvalidMetricName { .. }), "{err:?}");

    let cases = [
        ("1disk", "must match [a-zA-Z_][a-zA-Z0-9_]*"),
        ("disk-name", "must match [a-zA-Z_][a-zA-Z0-9_]*"),
        ("", "must match [a-zA-Z_][a-zA-Z0-9_]*"),
        ("__name__", "starting with `__` are reserved"),
        ("le", "the exporters set this label themselves"),
        ("outcome", "the exporters set this label themselves"),
    ];
    for (label, rule) in cases {
        let err = instrument::metric("dyn_invalid_total")
            .label(label, "x")
            .counter()
            .unwrap_err();
        let Error::InvalidLabelName {
            metric, label: got, ..
        } = &err
        else {
            panic!("{label:?}: expected InvalidLabelName, got {err:?}");
        };
        assert_eq!(
            (metric.as_str(), got.as_str()),
            ("dyn_invalid_total", label)
        );
        let text = err.to_string();
        assert!(
            text.starts_with(&format!(
                "invalid label name `{label}` on metric `dyn_invalid_total`: "
            )) && text.contains(rule),
            "{text}"
        );
    }

    let err = instrument::metric("dyn_invalid_total")
        .label("disk", "sda")
        .label("host", "a")
        .label("disk", "sdb")
        .counter()
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "label `disk` is given twice on metric `dyn_invalid_total`: label names must be unique"
    );

    // Timer and function names are used as given, like `timer!` names; labels are checked.
    assert!(instrument::metric("GET /users/{id}").timer().is_ok());
    assert!(instrument::metric("parse file").function().is_ok());
    assert!(
        instrument::metric("GET /users/{id}")
            .label("function", "x")
            .timer()
            .is_err()
    );
    // Label values are any text.
    assert!(
        instrument::metric("dyn_valid_total")
            .label("path", "C:\\Program Files\\ü \" =}")
            .counter()
            .is_ok()
    );
}

#[test]
fn label_sets_past_the_limit_fold_into_one_overflow_series() {
    const NAME: &str = "dyn_overflowing_total";
    const EXTRA: usize = 5;
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);
    let counters: Vec<Counter> = (0..CARDINALITY_LIMIT + EXTRA)
        .map(|i| {
            instrument::metric(NAME)
                .label("shard", i.to_string())
                .counter()
                .unwrap()
        })
        .collect();
    let (kept, folded) = counters.split_at(CARDINALITY_LIMIT);
    let overflow = folded[0];
    assert!(folded.iter().all(|c| *c == overflow));
    assert_eq!(overflow.metadata().labels_slice(), &[("overflow", "true")]);
    assert!(kept.iter().all(|c| *c != overflow));
    assert_eq!(
        kept[CARDINALITY_LIMIT - 1].metadata().labels_slice(),
        &[("shard", "9999")]
    );
    // A label set registered before the limit keeps its series.
    let again = instrument::metric(NAME)
        .label("shard", "17")
        .counter()
        .unwrap();
    assert_eq!(again, kept[17]);

    for (i, counter) in counters.iter().enumerate() {
        counter.add(i as u64 + 1);
    }
    let snapshot = flushed_snapshot(&pipeline, &sink);
    let series: Vec<_> = snapshot
        .counters
        .iter()
        .filter(|c| c.callsite.name() == NAME)
        .collect();
    assert_eq!(series.len(), CARDINALITY_LIMIT + 1);
    let overflowed: Vec<_> = series
        .iter()
        .filter(|c| c.callsite.labels_slice() == [("overflow", "true")])
        .collect();
    assert_eq!(overflowed.len(), 1);
    // The folded label sets added CARDINALITY_LIMIT + 1 ..= CARDINALITY_LIMIT + EXTRA.
    let expected: u64 = (CARDINALITY_LIMIT + 1..=CARDINALITY_LIMIT + EXTRA)
        .map(|n| n as u64)
        .sum();
    assert_eq!(overflowed[0].total, expected);
    let all = (CARDINALITY_LIMIT + EXTRA) as u64;
    assert_eq!(snapshot.counter(NAME), Some(all * (all + 1) / 2));
}

#[test]
fn counts_are_exact_from_many_threads() {
    const THREADS: usize = 8;
    const CALLS: u64 = 5_000;
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .queue_capacity(1 << 14)
        .sink(sink.clone())
        .install()
        .unwrap();
    support::on_threads(THREADS, |t| {
        // Each thread registers for itself: the handles are the same callsites.
        let bytes = instrument::metric("dyn_bytes_total")
            .unit(Unit::Bytes)
            .counter()
            .unwrap();
        let step = instrument::metric("dyn_step")
            .label("stage", "load")
            .function()
            .unwrap();
        for i in 0..CALLS {
            bytes.add(t as u64 + 1);
            let call = step.start();
            advance(Duration::from_micros(1 + i % 3));
            if i % 5 == 0 {
                call.error("Timeout");
            } else {
                call.finish();
            }
        }
    });
    let snapshot = flushed_snapshot(&pipeline, &sink);
    let per_thread: u64 = (1..=THREADS as u64).sum();
    assert_eq!(
        snapshot.counter("dyn_bytes_total"),
        Some(per_thread * CALLS)
    );
    let bytes = snapshot
        .counters
        .iter()
        .find(|c| c.callsite.name() == "dyn_bytes_total")
        .unwrap();
    assert_eq!(bytes.callsite.unit(), Some(Unit::Bytes));

    let calls = THREADS as u64 * CALLS;
    let errors = calls / 5;
    let ok = snapshot.call("dyn_step", Outcome::Ok).unwrap();
    let failed = snapshot.call("dyn_step", Outcome::Error).unwrap();
    assert_eq!(ok.total.count, calls - errors);
    assert_eq!(failed.total.count, errors);
    assert_eq!(failed.error_kinds[0].kind, "Timeout");
    assert_eq!(failed.error_kinds[0].total, errors);
    assert_eq!(ok.callsite.labels_slice(), &[("stage", "load")]);
    assert_eq!(ok.callsite.kind(), CallsiteKind::Function);
    // Every call advanced the mock clock by 1, 2 or 3 µs: exact min and max.
    assert_eq!(ok.total.min, Duration::from_micros(1));
    assert_eq!(ok.total.max, Duration::from_micros(3));
}

#[test]
fn timers_and_functions_end_like_their_static_twins() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);
    let block = instrument::metric("dyn_block").timer().unwrap();
    let function = instrument::metric("dyn_function").function().unwrap();
    {
        let _timer = block.start();
        advance(Duration::from_millis(5));
    }
    {
        let _call = function.start();
        advance(Duration::from_millis(7));
        // Dropped without `finish`: a function call that never returned.
    }
    let snapshot = flushed_snapshot(&pipeline, &sink);
    let block = snapshot.call("dyn_block", Outcome::Ok).unwrap();
    assert_eq!(block.total.count, 1);
    assert_eq!(block.total.max, Duration::from_millis(5));
    assert_eq!(block.callsite.kind(), CallsiteKind::Timer);
    let cancelled = snapshot.call("dyn_function", Outcome::Cancelled).unwrap();
    assert_eq!(cancelled.total.count, 1);
    assert_eq!(cancelled.total.max, Duration::from_millis(7));
    assert!(snapshot.call("dyn_function", Outcome::Ok).is_none());
}

#[test]
fn a_value_histogram_reports_its_values_exactly() {
    let _serial = serial();
    let sink = MemorySink::new();
    // The counter clock, whose ticks are not nanoseconds: values must reach the histogram as
    // recorded, not converted like durations.
    let pipeline = install_counter_clock(&sink);
    let rows = instrument::metric("dyn_batch_rows")
        .label("table", "files")
        .unit(Unit::Count)
        .description("Rows per written batch.")
        .histogram()
        .unwrap();
    // 1..=1000 in a scrambled order (389 is coprime to 1000).
    for i in 0..1000u64 {
        rows.record(i * 389 % 1000 + 1);
    }
    let snapshot = flushed_snapshot(&pipeline, &sink);
    let stats = snapshot.call("dyn_batch_rows", Outcome::Ok).unwrap();
    let meta = stats.callsite;
    assert_eq!(meta.kind(), CallsiteKind::Histogram);
    assert_eq!(meta.unit(), Some(Unit::Count));
    assert_eq!(meta.description(), Some("Rows per written batch."));
    let total = stats.total;
    assert_eq!((total.count, total.timed, total.dropped), (1000, 1000, 0));
    let value = |d: Duration| d.as_nanos();
    assert_eq!(value(total.min), 1);
    assert_eq!(value(total.max), 1000);
    assert_eq!(value(total.sum), 500_500);
    // Values below 2048 are exact in the histogram: the percentiles are order statistics.
    assert_eq!(value(total.p50), 500);
    assert_eq!(value(total.p90), 900);
    assert_eq!(value(total.p99), 990);
    assert_eq!(value(total.p999), 999);
    assert_eq!(stats.histogram.quantile(0.25), 250);
    assert!(snapshot.call("dyn_batch_rows", Outcome::Error).is_none());
}

#[test]
fn gauges_move_up_and_down() {
    const THREADS: usize = 4;
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);
    let depth = instrument::metric("dyn_queue_depth")
        .label("queue", "parse")
        .gauge()
        .unwrap();
    depth.add(5.0);
    depth.sub(2.0);
    depth.add(0.5);
    let snapshot = flushed_snapshot(&pipeline, &sink);
    assert_eq!(snapshot.gauge("dyn_queue_depth"), Some(3.5));

    depth.set(10.0);
    depth.sub(1.0);
    let snapshot = flushed_snapshot(&pipeline, &sink);
    assert_eq!(snapshot.gauge("dyn_queue_depth"), Some(9.0));

    // Moves from many threads all count.
    support::on_threads(THREADS, |t| {
        let depth = instrument::metric("dyn_queue_depth")
            .label("queue", "parse")
            .gauge()
            .unwrap();
        for _ in 0..1_000 {
            depth.add(if t % 2 == 0 { 3.0 } else { -1.0 });
        }
    });
    let snapshot = flushed_snapshot(&pipeline, &sink);
    assert_eq!(snapshot.gauge("dyn_queue_depth"), Some(9.0 + 2.0 * 2_000.0));
}

#[test]
fn nothing_is_recorded_without_a_pipeline() {
    let _serial = serial();
    let lost = instrument::metric("dyn_before_install_total")
        .counter()
        .unwrap();
    let depth = instrument::metric("dyn_before_install").gauge().unwrap();
    let sizes = instrument::metric("dyn_before_install_bytes")
        .histogram()
        .unwrap();
    lost.add(5);
    depth.add(4.0);
    sizes.record(7);
    let sink = MemorySink::new();
    let pipeline: PipelineGuard = install(&sink);
    lost.add(1);
    depth.add(1.0);
    let snapshot = flushed_snapshot(&pipeline, &sink);
    assert_eq!(snapshot.counter("dyn_before_install_total"), Some(1));
    assert_eq!(snapshot.gauge("dyn_before_install"), Some(1.0));
    assert!(
        snapshot
            .call("dyn_before_install_bytes", Outcome::Ok)
            .is_none()
    );
}
