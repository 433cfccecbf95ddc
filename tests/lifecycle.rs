//! Installing, configuring and reinstalling a pipeline, and what each callsite option and manual
//! metric produces: slow and sampled events, captured fields, audit entries, counters, gauges
//! and timers.
//!
//! A pipeline is process-wide: every test takes `LOCK` before it records anything.

use std::path::PathBuf;
use std::thread;
use std::time::Duration;

use instrument::testing::advance;
use instrument::{
    AuditEntry, CallsiteKind, ClockSource, CorrelationId, Error, EventReason, FieldValue, Outcome,
    Unit, instrument_performance,
};
use instrument_sinks::MemorySink;

mod support;
use support::{count, events_of, flushed_snapshot, install, name, serial};

/// A TOML file in the temporary directory, removed when dropped.
struct TempToml(PathBuf);

impl TempToml {
    fn new(label: &str, text: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "instrument-lifecycle-{}-{label}.toml",
            std::process::id()
        ));
        std::fs::write(&path, text).expect("write the configuration file");
        TempToml(path)
    }
}

impl Drop for TempToml {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[derive(Debug, thiserror::Error)]
#[error("too slow")]
struct TooSlow;

#[instrument_performance]
fn plain(n: u32) -> u32 {
    n + 1
}

#[test]
fn a_second_install_is_an_error_and_leaves_the_first_working() {
    let _serial = serial();
    let first = MemorySink::new();
    let pipeline = install(&first);

    let second = MemorySink::new().named("second");
    let result = instrument::builder().sink(second.clone()).install();
    let err = result.expect_err("a pipeline is already installed");
    assert!(matches!(err, Error::AlreadyInstalled), "{err:?}");
    assert!(err.to_string().contains("already installed"), "{err}");

    assert_eq!(plain(1), 2);
    let snapshot = flushed_snapshot(&pipeline, &first);
    assert_eq!(count(&snapshot, name!("plain"), Outcome::Ok), 1);
    assert_eq!(second.batches(), 0);
    assert!(!second.is_shut_down());
    let sinks = pipeline.self_metrics().sinks;
    assert_eq!(sinks.len(), 1);
    assert_eq!(sinks[0].name, "memory");
}

#[test]
fn dropping_the_guard_allows_a_fresh_install() {
    let _serial = serial();
    let first = MemorySink::new();
    let pipeline = install(&first);
    for n in 0..3 {
        plain(n);
    }
    instrument::counter!("lifecycle_reinstalled_total", 5);
    pipeline.shutdown().expect("shutdown");
    assert!(first.is_shut_down());
    let batches = first.batches();

    let second = MemorySink::new();
    let pipeline = install(&second);
    for n in 0..2 {
        plain(n);
    }
    instrument::counter!("lifecycle_reinstalled_total", 1);
    let snapshot = flushed_snapshot(&pipeline, &second);
    // Nothing of the first pipeline carries over.
    assert_eq!(count(&snapshot, name!("plain"), Outcome::Ok), 2);
    assert_eq!(snapshot.counter("lifecycle_reinstalled_total"), Some(1));
    assert_eq!(first.batches(), batches, "the first sink is shut down");
    let first_snapshot = first.last_snapshot().unwrap();
    assert_eq!(count(&first_snapshot, name!("plain"), Outcome::Ok), 3);
    assert_eq!(
        first_snapshot.counter("lifecycle_reinstalled_total"),
        Some(5)
    );
}

#[test]
fn gauges_set_under_an_earlier_pipeline_are_not_reported() {
    let _serial = serial();
    let first = MemorySink::new();
    let pipeline = install(&first);
    instrument::gauge!("lifecycle_stale_gauge", 7.0);
    let snapshot = flushed_snapshot(&pipeline, &first);
    assert_eq!(snapshot.gauge("lifecycle_stale_gauge"), Some(7.0));
    drop(pipeline);

    let second = MemorySink::new();
    let pipeline = install(&second);
    let snapshot = flushed_snapshot(&pipeline, &second);
    // Like calls and counters, a gauge the new pipeline never saw set is absent from it.
    assert_eq!(
        snapshot.gauge("lifecycle_stale_gauge"),
        None,
        "a gauge set only under the previous pipeline is reported by the new one"
    );
}

/// Says it has started (from inside the call, so the call's start is before the signal), then
/// waits for `go`.
#[instrument_performance]
fn waits_for(
    started: &crossbeam_channel::Sender<()>,
    go: &crossbeam_channel::Receiver<()>,
) -> bool {
    started.send(()).is_ok() && go.recv().is_ok()
}

#[test]
fn nothing_is_recorded_before_install() {
    let _serial = serial();
    assert_eq!(plain(1), 2);
    instrument::counter!("lifecycle_before_total", 3);
    instrument::gauge!("lifecycle_before_gauge", 3.0);
    {
        let _timer = instrument::timer!("lifecycle_before_timer");
    }
    let err = instrument::audit(AuditEntry::new("before")).expect_err("not installed");
    assert!(matches!(err, Error::NotInstalled), "{err:?}");

    // A call that starts before install and ends after it belongs to no pipeline.
    let (go, wait) = crossbeam_channel::bounded(0);
    let (started, is_started) = crossbeam_channel::bounded(0);
    let straddling = thread::spawn(move || waits_for(&started, &wait));
    is_started.recv().unwrap();

    let sink = MemorySink::new();
    let pipeline = install(&sink);
    go.send(()).unwrap();
    assert!(straddling.join().unwrap());

    let snapshot = flushed_snapshot(&pipeline, &sink);
    assert!(snapshot.calls.is_empty(), "{:#?}", snapshot.calls);
    assert_eq!(snapshot.counter("lifecycle_before_total"), None);
    assert_eq!(snapshot.gauge("lifecycle_before_gauge"), None);
    assert!(sink.events().is_empty());
    assert!(sink.audit().is_empty());
    assert_eq!(pipeline.self_metrics().events_recorded, 0);
}

#[test]
fn invalid_settings_are_errors_naming_the_setting() {
    let _serial = serial();
    let err = instrument::builder()
        .queue_capacity(0)
        .install()
        .expect_err("queue_capacity 0");
    assert!(matches!(err, Error::InvalidConfig(_)), "{err:?}");
    assert!(err.to_string().contains("queue_capacity"), "{err}");
    let err = instrument::builder()
        .flush_timeout(Duration::ZERO)
        .install()
        .expect_err("flush_timeout 0");
    assert!(err.to_string().contains("flush_timeout"), "{err}");

    // A failed install leaves nothing behind.
    let sink = MemorySink::new();
    let pipeline = install(&sink);
    pipeline.shutdown().expect("shutdown");
}

#[test]
fn a_configuration_file_with_an_unknown_key_is_an_error_naming_the_key_and_file() {
    let _serial = serial();
    let file = TempToml::new("unknown", "drain_interval = \"10ms\"\nqueue_capacty = 64\n");
    let err = instrument::builder()
        .config_file(&file.0)
        .expect_err("unknown key");
    assert!(matches!(err, Error::ParseConfig { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("queue_capacty"), "{text}");
    assert!(text.contains(&*file.0.to_string_lossy()), "{text}");

    let file = TempToml::new("bad-duration", "window = \"soon\"\n");
    let err = instrument::builder().config_file(&file.0).unwrap_err();
    assert!(err.to_string().contains("`window`"), "{err}");

    let missing = std::env::temp_dir().join("instrument-lifecycle-missing.toml");
    let err = instrument::builder().config_file(&missing).unwrap_err();
    assert!(matches!(err, Error::ReadConfig { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("instrument-lifecycle-missing.toml"),
        "{err}"
    );
}

#[instrument_performance]
fn unconfigured(millis: u64) {
    advance(Duration::from_millis(millis));
}

#[test]
fn a_configuration_file_sets_up_the_pipeline() {
    let _serial = serial();
    let file = TempToml::new(
        "valid",
        "clock = \"mock\"\nslow_threshold = \"5ms\"\ndrain_interval = \"1h\"\nwindow = \"1h\"\n",
    );
    let sink = MemorySink::new();
    // A sink added before the file is read is kept.
    let pipeline = instrument::builder()
        .sink(sink.clone())
        .config_file(&file.0)
        .expect("valid configuration")
        .install()
        .expect("install");

    unconfigured(7);
    unconfigured(1);
    let snapshot = flushed_snapshot(&pipeline, &sink);
    let stats = snapshot.call(name!("unconfigured"), Outcome::Ok).unwrap();
    // The mock clock gives exact durations...
    assert_eq!(stats.total.sum, Duration::from_millis(8));
    // ...and the default slow threshold applies to callsites that set none.
    let events = events_of(&sink, name!("unconfigured"));
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].reason, EventReason::Slow);
    assert_eq!(events[0].duration, Duration::from_millis(7));
}

#[test]
fn counters_gauges_and_timers_reach_the_snapshot() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    let threads: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(|| {
                for _ in 0..10_000 {
                    instrument::counter!("lifecycle_rows_total");
                }
                instrument::counter!("lifecycle_bytes_total", 4096, "stage" => "read");
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    // A second callsite with the same name adds to the same total.
    instrument::counter!("lifecycle_rows_total", 7);

    for depth in [1.0, 17.5] {
        instrument::gauge!("lifecycle_depth", depth);
    }

    for _ in 0..3 {
        let _timer = instrument::timer!("lifecycle_load", "stage" => "load");
        advance(Duration::from_millis(2));
    }
    let timer = instrument::timer!("lifecycle_finish");
    advance(Duration::from_millis(1));
    timer.finish();
    advance(Duration::from_millis(50)); // after `finish`: not counted
    let timer = instrument::timer!("lifecycle_finish");
    advance(Duration::from_millis(4));
    timer.error("timeout");

    let snapshot = flushed_snapshot(&pipeline, &sink);
    assert_eq!(snapshot.counter("lifecycle_rows_total"), Some(80_007));
    assert_eq!(snapshot.counter("lifecycle_bytes_total"), Some(8 * 4096));
    let bytes = snapshot
        .counters
        .iter()
        .find(|c| c.callsite.name() == "lifecycle_bytes_total")
        .unwrap();
    assert_eq!(bytes.callsite.labels_slice(), [("stage", "read")]);
    assert_eq!(bytes.callsite.kind(), CallsiteKind::Counter);
    assert_eq!(snapshot.gauge("lifecycle_depth"), Some(17.5));

    let load = snapshot.call("lifecycle_load", Outcome::Ok).unwrap();
    assert_eq!(load.callsite.kind(), CallsiteKind::Timer);
    assert_eq!(load.callsite.labels_slice(), [("stage", "load")]);
    assert_eq!(load.total.count, 3);
    assert_eq!(load.total.sum, Duration::from_millis(6));
    let finished = snapshot.call("lifecycle_finish", Outcome::Ok).unwrap();
    assert_eq!(finished.total.sum, Duration::from_millis(1));
    let failed = snapshot.call("lifecycle_finish", Outcome::Error).unwrap();
    assert_eq!(failed.total.sum, Duration::from_millis(4));
    assert_eq!(failed.error_kinds[0].kind, "timeout");

    // Counters keep counting across snapshots: the window restarts, the total does not.
    instrument::counter!("lifecycle_rows_total", 3);
    let snapshot = flushed_snapshot(&pipeline, &sink);
    assert_eq!(snapshot.counter("lifecycle_rows_total"), Some(80_010));
    let window: u64 = snapshot
        .counters
        .iter()
        .filter(|c| c.callsite.name() == "lifecycle_rows_total")
        .map(|c| c.window)
        .sum();
    assert_eq!(window, 3);
}

#[test]
fn counter_and_gauge_options_reach_the_metadata() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);
    instrument::counter!("lifecycle_described_total", 2, "stage" => "read"; unit = Bytes,
        description = "Bytes read.");
    instrument::counter!("lifecycle_described_total"; description = "Bytes read.",);
    instrument::gauge!("lifecycle_described_ratio", 0.25; unit = Ratio);
    let snapshot = flushed_snapshot(&pipeline, &sink);
    assert_eq!(snapshot.counter("lifecycle_described_total"), Some(3));
    let labelled = snapshot
        .counters
        .iter()
        .find(|c| c.callsite.name() == "lifecycle_described_total" && c.total == 2)
        .unwrap();
    assert_eq!(labelled.callsite.unit(), Some(Unit::Bytes));
    assert_eq!(labelled.callsite.description(), Some("Bytes read."));
    assert_eq!(labelled.callsite.labels_slice(), [("stage", "read")]);
    let ratio = snapshot
        .gauges
        .iter()
        .find(|g| g.callsite.name() == "lifecycle_described_ratio")
        .unwrap();
    assert_eq!(snapshot.gauge("lifecycle_described_ratio"), Some(0.25));
    assert_eq!(ratio.callsite.unit(), Some(Unit::Ratio));
    assert_eq!(ratio.callsite.description(), None);
}

#[test]
fn a_gauge_set_in_two_places_reports_the_value_set_last() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    // Two callsites of one gauge, as when one function raises it and another resets it. Counters
    // of one name add up across callsites; a gauge of one name has one value: the last one set.
    instrument::gauge!("lifecycle_two_sites", 1.0);
    instrument::gauge!("lifecycle_two_sites", 17.5);
    let snapshot = flushed_snapshot(&pipeline, &sink);
    assert_eq!(
        snapshot.gauge("lifecycle_two_sites"),
        Some(17.5),
        "the gauge reports the first callsite's value, not the value set last"
    );

    instrument::gauge!("lifecycle_two_sites", 1.0);
    let snapshot = flushed_snapshot(&pipeline, &sink);
    assert_eq!(snapshot.gauge("lifecycle_two_sites"), Some(1.0));
}

#[instrument_performance(slow = "5ms")]
fn maybe_slow(millis: u64, fail: bool) -> Result<(), TooSlow> {
    advance(Duration::from_millis(millis));
    if fail { Err(TooSlow) } else { Ok(()) }
}

#[test]
fn calls_at_least_as_slow_as_the_threshold_are_events() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    maybe_slow(6, false).unwrap();
    maybe_slow(4, false).unwrap();
    maybe_slow(5, false).unwrap();
    maybe_slow(6, true).unwrap_err();
    pipeline.flush().unwrap();

    let events = events_of(&sink, name!("maybe_slow"));
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.reason, e.outcome, e.duration))
        .collect();
    assert_eq!(
        seen,
        [
            (EventReason::Slow, Outcome::Ok, Duration::from_millis(6)),
            (EventReason::Slow, Outcome::Ok, Duration::from_millis(5)),
            // One event per call: the outcome is the reason.
            (
                EventReason::Outcome,
                Outcome::Error,
                Duration::from_millis(6)
            ),
        ]
    );
}

#[instrument_performance(sample = 1.0)]
fn sampled(n: u32) -> u32 {
    n
}

#[test]
fn a_sample_rate_of_one_makes_every_call_an_event() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    for n in 0..200 {
        sampled(n);
    }
    plain(0);
    pipeline.flush().unwrap();

    let events = sink.events();
    assert_eq!(events.len(), 200, "only `sampled` calls are events");
    assert!(events.iter().all(|e| e.callsite.name() == name!("sampled")
        && e.reason == EventReason::Sampled
        && e.outcome == Outcome::Ok));
}

#[instrument_performance(capture(a, %b), sample = 1.0)]
fn captured(a: u32, b: &str, ignored: &[u8]) -> Result<usize, TooSlow> {
    if a == 0 {
        return Err(TooSlow);
    }
    Ok(b.len() + ignored.len())
}

#[instrument_performance(capture(text))]
fn debug_captured(text: &str) -> Result<(), TooSlow> {
    let _ = text;
    Err(TooSlow)
}

#[test]
fn captured_arguments_are_attached_to_events() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    assert_eq!(captured(1, "x", &[9]).unwrap(), 2);
    captured(0, "y z", &[]).unwrap_err();
    debug_captured("quoted").unwrap_err();
    pipeline.flush().unwrap();

    let fields: Vec<_> = events_of(&sink, name!("captured"))
        .into_iter()
        .map(|e| (e.outcome, e.fields))
        .collect();
    assert_eq!(
        fields,
        [
            (
                Outcome::Ok,
                vec![
                    ("a", FieldValue::U64(1)),
                    ("b", FieldValue::Str("x".into()))
                ]
            ),
            (
                Outcome::Error,
                vec![
                    ("a", FieldValue::U64(0)),
                    ("b", FieldValue::Str("y z".into()))
                ]
            ),
        ]
    );
    // A string captured with `Debug` is still the string, not its quoted form.
    let debug = events_of(&sink, name!("debug_captured"));
    assert_eq!(
        debug[0].fields,
        [("text", FieldValue::Str("quoted".into()))]
    );
}

#[derive(Debug)]
struct Opaque {
    id: u8,
}

impl std::fmt::Display for Opaque {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "opaque #{}", self.id)
    }
}

#[allow(
    clippy::too_many_arguments,
    clippy::needless_pass_by_value,
    clippy::trivially_copy_pass_by_ref,
    reason = "one argument of each captured type, references included"
)]
#[instrument_performance(capture(signed, unsigned, small, ratio, half, flag, letter, shown, %displayed, maybe, long), sample = 1)]
fn typed(
    signed: i64,
    unsigned: &usize,
    small: u8,
    ratio: f64,
    half: f32,
    flag: bool,
    letter: char,
    shown: Opaque,
    displayed: &Opaque,
    maybe: Option<u8>,
    long: String,
) -> usize {
    let _ = (
        signed, unsigned, small, ratio, half, flag, letter, shown, displayed, maybe,
    );
    long.len()
}

#[test]
fn captured_values_arrive_as_typed_name_value_pairs() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    // More than fits in place: the values move to the heap on the way.
    let long = "é".repeat(40);
    typed(
        -7,
        &9,
        200,
        2.5,
        0.1,
        true,
        'z',
        Opaque { id: 1 },
        &Opaque { id: 2 },
        Some(4),
        long.clone(),
    );
    pipeline.flush().unwrap();

    let events = events_of(&sink, name!("typed"));
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(
        events[0].fields,
        [
            ("signed", FieldValue::I64(-7)),
            ("unsigned", FieldValue::U64(9)),
            ("small", FieldValue::U64(200)),
            ("ratio", FieldValue::F64(2.5)),
            ("half", FieldValue::F64(0.1)),
            ("flag", FieldValue::Bool(true)),
            ("letter", FieldValue::Str("z".into())),
            ("shown", FieldValue::Formatted("Opaque { id: 1 }".into())),
            ("displayed", FieldValue::Formatted("opaque #2".into())),
            ("maybe", FieldValue::Formatted("Some(4)".into())),
            ("long", FieldValue::Str(long.into())),
        ]
    );
}

#[instrument_performance(audit, capture(%id))]
fn audited(id: &str, fail: bool) -> Result<(), TooSlow> {
    advance(Duration::from_millis(2));
    if fail { Err(TooSlow) } else { Ok(()) }
}

#[test]
fn audited_calls_and_manual_entries_arrive_in_order() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    let manual = AuditEntry::new("copy")
        .input("a.rs")
        .output("b.rs")
        .actor("etl")
        .field("bytes", &42);
    let sequence = instrument::audit(manual.clone()).unwrap();
    audited("first", false).unwrap();
    let id = CorrelationId::new();
    instrument::with_correlation(id, || audited("second", true)).unwrap_err();
    pipeline.flush().unwrap();

    let entries = sink.audit();
    assert_eq!(entries.len(), 3, "{entries:#?}");
    let mut expected = manual;
    expected.sequence = sequence;
    assert_eq!(entries[0], expected);
    assert!(
        entries.windows(2).all(|w| w[0].sequence < w[1].sequence),
        "sequence numbers follow the order of the entries: {entries:#?}"
    );

    let first = &entries[1];
    assert_eq!(first.operation, name!("audited"));
    assert_eq!(first.outcome, Some(Outcome::Ok));
    assert_eq!(first.error_kind, None);
    assert_eq!(first.duration, Some(Duration::from_millis(2)));
    assert_eq!(
        first.callsite.map(instrument::Metadata::name),
        Some(name!("audited"))
    );
    assert_eq!(first.fields, [("id".into(), "first".to_owned())]);
    assert_eq!(first.correlation, None);

    let second = &entries[2];
    assert_eq!(second.operation, name!("audited"));
    assert_eq!(second.outcome, Some(Outcome::Error));
    assert_eq!(second.error_kind, Some("lifecycle::TooSlow"));
    assert_eq!(second.duration, Some(Duration::from_millis(2)));
    assert_eq!(second.fields, [("id".into(), "second".to_owned())]);
    assert_eq!(second.correlation, Some(id));

    // The audited calls are counted like any other.
    let snapshot = sink.last_snapshot().unwrap();
    assert_eq!(count(&snapshot, name!("audited"), Outcome::Ok), 1);
    assert_eq!(count(&snapshot, name!("audited"), Outcome::Error), 1);
}

#[test]
fn a_snapshot_is_delivered_at_the_end_of_every_window_without_a_flush() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .window(Duration::from_millis(20))
        .drain_interval(Duration::from_millis(5))
        .sink(sink.clone())
        .install()
        .expect("install");
    for n in 0..3 {
        plain(n);
    }
    // Wait (at most 10 s) for two window snapshots; nothing asks for them.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while sink.snapshots().len() < 2 && std::time::Instant::now() < deadline {
        thread::yield_now();
    }
    let snapshots = sink.snapshots();
    assert!(snapshots.len() >= 2, "{} window snapshots", snapshots.len());
    assert_eq!(sink.flushes(), 0, "no flush was asked for");
    // The calls are in one window; the windows after it keep them in the total only.
    let last = snapshots.last().unwrap();
    let plain_stats = last.call(name!("plain"), Outcome::Ok).unwrap();
    assert_eq!(plain_stats.total.count, 3);
    let windows: u64 = snapshots
        .iter()
        .filter_map(|s| s.call(name!("plain"), Outcome::Ok))
        .map(|c| c.window.count)
        .sum();
    assert_eq!(windows, 3);
    assert!(
        snapshots
            .windows(2)
            .all(|w| w[0].window_end <= w[1].window_start)
    );
    drop(pipeline);
}

#[test]
fn concurrent_flushes_each_cover_the_calls_made_before_them() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);
    thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                for round in 1..=20u64 {
                    for n in 0..10 {
                        sampled(n);
                    }
                    pipeline.flush().expect("flush");
                    // This thread's calls so far are in the latest snapshot (later snapshots
                    // only add to them).
                    let snapshot = sink.last_snapshot().unwrap();
                    assert!(count(&snapshot, name!("sampled"), Outcome::Ok) >= round * 10);
                }
            });
        }
    });
    let snapshot = flushed_snapshot(&pipeline, &sink);
    assert_eq!(count(&snapshot, name!("sampled"), Outcome::Ok), 8 * 20 * 10);
    assert_eq!(sink.events().len(), 8 * 20 * 10);
}
