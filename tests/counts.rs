//! Call counts, durations and error kinds: exact per outcome, from many threads at once.
//!
//! Durations come from the mock clock (`instrument::testing::advance` inside the instrumented
//! function), so every duration is known and min, max and sum can be checked exactly and the
//! percentiles against the histogram's precision (3 significant digits).
//!
//! A pipeline is process-wide: every test takes `LOCK` before it records anything.

use std::num::ParseIntError;
use std::time::Duration;

use instrument::testing::advance;
use instrument::{
    CallStats, ClockSource, ErrorKind, Outcome, PipelineGuard, Snapshot, instrument_performance,
};
use instrument_sinks::MemorySink;

mod support;
use support::{count, flushed_snapshot, name, on_threads, serial};

/// A mock-clock pipeline whose thread queues hold every record these tests make, so that every
/// duration is timed (none dropped).
fn install(sink: &MemorySink) -> PipelineGuard {
    instrument::builder()
        .clock(ClockSource::Mock)
        .queue_capacity(1 << 14)
        .sink(sink.clone())
        .install()
        .expect("no other pipeline is installed")
}

fn stats<'a>(snapshot: &'a Snapshot, name: &str, outcome: Outcome) -> &'a CallStats {
    snapshot
        .call(name, outcome)
        .unwrap_or_else(|| panic!("no `{outcome}` stats for {name}"))
}

/// Error kinds of a callsite as sorted `(kind, total)` pairs.
fn kinds(snapshot: &Snapshot, name: &str) -> Vec<(&'static str, u64)> {
    let mut kinds: Vec<_> = stats(snapshot, name, Outcome::Error)
        .error_kinds
        .iter()
        .map(|k| (k.kind, k.total))
        .collect();
    kinds.sort_unstable();
    kinds
}

#[instrument_performance]
fn parse(text: &str) -> Result<u64, ParseIntError> {
    text.parse()
}

#[instrument_performance]
fn plain(n: u64) -> u64 {
    n.wrapping_mul(3)
}

const THREADS: usize = 8;
const CALLS: usize = 3000;

#[test]
fn outcomes_are_counted_exactly_across_threads() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    on_threads(THREADS, |t| {
        for i in 0..CALLS {
            // Every third call fails.
            let text = if i % 3 == 0 { "x" } else { "12" };
            assert_eq!(parse(text).is_ok(), i % 3 != 0);
            assert_eq!(plain((t * CALLS + i) as u64), (t * CALLS + i) as u64 * 3);
        }
    });

    let snapshot = flushed_snapshot(&pipeline, &sink);
    let all = (THREADS * CALLS) as u64;
    let errors = (THREADS * CALLS.div_ceil(3)) as u64;
    assert_eq!(count(&snapshot, name!("parse"), Outcome::Ok), all - errors);
    assert_eq!(count(&snapshot, name!("parse"), Outcome::Error), errors);
    assert_eq!(count(&snapshot, name!("parse"), Outcome::Panic), 0);
    assert_eq!(count(&snapshot, name!("parse"), Outcome::Cancelled), 0);
    assert_eq!(count(&snapshot, name!("plain"), Outcome::Ok), all);
    assert_eq!(count(&snapshot, name!("plain"), Outcome::Error), 0);

    for (name, outcome) in [
        (name!("parse"), Outcome::Ok),
        (name!("parse"), Outcome::Error),
        (name!("plain"), Outcome::Ok),
    ] {
        let total = stats(&snapshot, name, outcome).total;
        assert_eq!(total.timed, total.count, "{name} {outcome}: {total:?}");
        assert_eq!(total.dropped, 0, "{name} {outcome}: {total:?}");
    }
    assert_eq!(
        kinds(&snapshot, name!("parse")),
        [("core::num::error::ParseIntError", errors)]
    );

    // Every error is an event with its kind; `ok` calls are not.
    let events = sink.events();
    assert_eq!(events.len() as u64, errors);
    assert!(events.iter().all(|e| e.outcome == Outcome::Error
        && e.callsite.name() == name!("parse")
        && e.error_kind == Some("core::num::error::ParseIntError")));
    assert_eq!(pipeline.self_metrics().events_dropped, 0);
    assert_eq!(pipeline.self_metrics().events_recorded, all * 2);
}

#[instrument_performance]
fn sleeps_for(micros: u64) {
    advance(Duration::from_micros(micros));
}

fn assert_close(what: &str, got: Duration, exact: Duration) {
    let (got, exact) = (got.as_nanos(), exact.as_nanos());
    assert!(
        got.abs_diff(exact) * 1000 <= exact,
        "{what}: {got} ns is not within 1/1000 of {exact} ns"
    );
}

const TIMING_THREADS: u64 = 4;

#[test]
fn durations_give_exact_min_max_sum_and_precise_percentiles() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    // Each thread makes calls of 1 ..= 1000 µs, in a different order per thread.
    on_threads(TIMING_THREADS as usize, |t| {
        // Multiplying by a number coprime to 1000 permutes 0..1000.
        let step = [1, 3, 7, 9][t];
        for i in 0..1000u64 {
            sleeps_for((i * step) % 1000 + 1);
        }
    });

    let snapshot = flushed_snapshot(&pipeline, &sink);
    let total = stats(&snapshot, name!("sleeps_for"), Outcome::Ok).total;
    assert_eq!(total.count, TIMING_THREADS * 1000);
    assert_eq!(total.timed, TIMING_THREADS * 1000);
    assert_eq!(total.min, Duration::from_micros(1));
    assert_eq!(total.max, Duration::from_millis(1));
    assert_eq!(total.sum, Duration::from_micros(TIMING_THREADS * 500_500));
    assert_close("p50", total.p50, Duration::from_micros(500));
    assert_close("p90", total.p90, Duration::from_micros(900));
    assert_close("p99", total.p99, Duration::from_micros(990));
    assert_close("p99.9", total.p999, Duration::from_micros(999));
    let histogram = &stats(&snapshot, name!("sleeps_for"), Outcome::Ok).histogram;
    assert_eq!(histogram.count(), TIMING_THREADS * 1000);
    assert_eq!(histogram.sum(), u128::from(TIMING_THREADS * 500_500_000));
}

#[derive(Debug, thiserror::Error)]
#[error("too slow")]
struct TooSlow;

/// Succeeds within 500 µs, fails above: the two outcomes get separate distributions.
#[instrument_performance]
fn deadline(micros: u64) -> Result<(), TooSlow> {
    advance(Duration::from_micros(micros));
    if micros > 500 {
        return Err(TooSlow);
    }
    Ok(())
}

#[test]
fn each_outcome_has_its_own_distribution() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    on_threads(4, |_| {
        for micros in 1..=1000 {
            assert_eq!(deadline(micros).is_ok(), micros <= 500);
        }
    });

    let snapshot = flushed_snapshot(&pipeline, &sink);
    let ok = stats(&snapshot, name!("deadline"), Outcome::Ok).total;
    assert_eq!(ok.count, 2000);
    assert_eq!(
        (ok.min, ok.max),
        (Duration::from_micros(1), Duration::from_micros(500))
    );
    assert_eq!(ok.sum, Duration::from_millis(501));
    assert_close("ok p50", ok.p50, Duration::from_micros(250));
    let err = stats(&snapshot, name!("deadline"), Outcome::Error).total;
    assert_eq!(err.count, 2000);
    assert_eq!(
        (err.min, err.max),
        (Duration::from_micros(501), Duration::from_millis(1))
    );
    assert_eq!(err.sum, Duration::from_millis(1501));
    assert_close("error p50", err.p50, Duration::from_micros(750));
    assert_eq!(
        kinds(&snapshot, name!("deadline")),
        [("counts::TooSlow", 2000)]
    );

    // Error events carry their exact durations.
    let mut durations: Vec<_> = sink.events().iter().map(|e| e.duration).collect();
    durations.sort_unstable();
    durations.dedup();
    assert_eq!(durations.len(), 500);
    assert_eq!(durations[0], Duration::from_micros(501));
    assert_eq!(durations[499], Duration::from_millis(1));
}

#[derive(Debug, ErrorKind, thiserror::Error)]
enum StageError {
    #[error("syntax error on line {line}")]
    Syntax { line: u32 },
    #[error("i/o")]
    Io(#[from] std::io::Error),
    #[error("empty input")]
    Empty,
}

#[instrument_performance]
fn stage(input: &str) -> Result<usize, StageError> {
    if input.is_empty() {
        return Err(StageError::Empty);
    }
    if input == "io" {
        Err(std::io::Error::other("disk"))?;
    }
    if let Some(line) = input.strip_prefix("bad:") {
        return Err(StageError::Syntax {
            line: line.parse().unwrap_or(0),
        });
    }
    Ok(input.len())
}

/// An error type classified by hand.
#[derive(Debug)]
struct Code(u16);

impl ErrorKind for Code {
    fn error_kind(&self) -> &'static str {
        if self.0 >= 500 { "server" } else { "client" }
    }
}

#[instrument_performance]
fn request(status: u16) -> Result<u16, Code> {
    if status >= 400 {
        return Err(Code(status));
    }
    Ok(status)
}

fn io_kind(error: &std::io::Error) -> &'static str {
    match error.kind() {
        std::io::ErrorKind::NotFound => "not_found",
        std::io::ErrorKind::PermissionDenied => "denied",
        _ => "other_io",
    }
}

#[instrument_performance(err_kind = io_kind)]
fn open(kind: std::io::ErrorKind) -> std::io::Result<()> {
    Err(kind.into())
}

#[instrument_performance]
fn read(fail: bool) -> std::io::Result<u8> {
    if fail {
        return Err(std::io::Error::other("read"));
    }
    Ok(1)
}

#[instrument_performance]
fn load(text: &str) -> anyhow::Result<u32> {
    // `?` converts into `anyhow::Error`: the recorded kind is the returned type.
    let n: u32 = text.parse()?;
    if n == 0 {
        anyhow::bail!("zero");
    }
    Ok(n)
}

#[instrument_performance]
fn boxed(fail: bool) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    if fail {
        return Err("boxed".into());
    }
    Ok(())
}

/// Not a `Result`: every call is `ok`, `None` included.
#[instrument_performance]
fn find(haystack: &[u8], needle: u8) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

/// Only the outer `Err` is an error.
#[instrument_performance]
fn nested(outer: bool, inner: bool) -> Result<Result<(), Code>, TooSlow> {
    if outer {
        return Err(TooSlow);
    }
    Ok(if inner { Err(Code(404)) } else { Ok(()) })
}

/// Early `return` of `Ok` and `?` on the way.
#[instrument_performance]
fn sum_lines(text: &str) -> Result<u64, ParseIntError> {
    let mut sum = 0;
    for line in text.lines() {
        if line == "end" {
            return Ok(sum);
        }
        sum += line.trim().parse::<u64>()?;
    }
    Ok(sum)
}

#[test]
fn error_kinds_name_variants_types_or_what_err_kind_says() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    on_threads(4, |_| {
        for _ in 0..25 {
            assert_eq!(stage("abc").unwrap(), 3);
            assert!(matches!(stage(""), Err(StageError::Empty)));
            assert!(matches!(stage("io"), Err(StageError::Io(_))));
            assert!(matches!(
                stage("bad:7"),
                Err(StageError::Syntax { line: 7 })
            ));
            assert!(matches!(
                stage("bad:8"),
                Err(StageError::Syntax { line: 8 })
            ));

            assert_eq!(request(200).unwrap(), 200);
            assert_eq!(request(404).unwrap_err().0, 404);
            assert_eq!(request(503).unwrap_err().0, 503);

            assert!(open(std::io::ErrorKind::NotFound).is_err());
            assert!(open(std::io::ErrorKind::PermissionDenied).is_err());
            assert!(open(std::io::ErrorKind::TimedOut).is_err());

            assert_eq!(read(false).unwrap(), 1);
            assert!(read(true).is_err());

            assert_eq!(load("5").unwrap(), 5);
            assert!(load("five").is_err());
            assert!(load("0").is_err());

            assert!(boxed(false).is_ok());
            assert!(boxed(true).is_err());

            assert_eq!(find(b"abc", b'c'), Some(2));
            assert_eq!(find(b"abc", b'z'), None);

            assert!(nested(true, false).is_err());
            assert!(nested(false, true).unwrap().is_err());
            assert!(nested(false, false).unwrap().is_ok());

            assert_eq!(sum_lines("1\n2\nend\nx").unwrap(), 3);
            assert_eq!(sum_lines("1\n2").unwrap(), 3);
            assert!(sum_lines("1\nx\n3").is_err());
        }
    });

    let snapshot = flushed_snapshot(&pipeline, &sink);
    let n = 100; // 4 threads x 25 rounds
    assert_eq!(count(&snapshot, name!("stage"), Outcome::Ok), n);
    assert_eq!(
        kinds(&snapshot, name!("stage")),
        [("Empty", n), ("Io", n), ("Syntax", 2 * n)]
    );
    assert_eq!(count(&snapshot, name!("request"), Outcome::Ok), n);
    assert_eq!(
        kinds(&snapshot, name!("request")),
        [("client", n), ("server", n)]
    );
    assert_eq!(
        kinds(&snapshot, name!("open")),
        [("denied", n), ("not_found", n), ("other_io", n)]
    );
    assert_eq!(count(&snapshot, name!("read"), Outcome::Ok), n);
    assert_eq!(
        kinds(&snapshot, name!("read")),
        [("std::io::error::Error", n)]
    );
    assert_eq!(count(&snapshot, name!("load"), Outcome::Ok), n);
    assert_eq!(kinds(&snapshot, name!("load")), [("anyhow::Error", 2 * n)]);
    assert_eq!(count(&snapshot, name!("boxed"), Outcome::Ok), n);
    assert_eq!(
        kinds(&snapshot, name!("boxed")),
        [(
            "alloc::boxed::Box<dyn core::error::Error + core::marker::Send + core::marker::Sync>",
            n
        )]
    );
    assert_eq!(count(&snapshot, name!("find"), Outcome::Ok), 2 * n);
    assert!(snapshot.call(name!("find"), Outcome::Error).is_none());
    assert_eq!(count(&snapshot, name!("nested"), Outcome::Ok), 2 * n);
    assert_eq!(kinds(&snapshot, name!("nested")), [("counts::TooSlow", n)]);
    assert_eq!(count(&snapshot, name!("sum_lines"), Outcome::Ok), 2 * n);
    assert_eq!(
        kinds(&snapshot, name!("sum_lines")),
        [("core::num::error::ParseIntError", n)]
    );

    // The events say the same, call by call.
    let events = sink.events();
    let syntax = events
        .iter()
        .filter(|e| e.callsite.name() == name!("stage") && e.error_kind == Some("Syntax"))
        .count();
    assert_eq!(syntax as u64, 2 * n);
    let errors: u64 = snapshot
        .calls
        .iter()
        .filter(|c| c.outcome == Outcome::Error)
        .map(|c| c.total.count)
        .sum();
    assert_eq!(events.len() as u64, errors);
}

#[test]
fn window_and_total_agree_within_one_flush() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .window(Duration::from_secs(3600))
        .sink(sink.clone())
        .install()
        .expect("install");

    for micros in [3, 1, 2] {
        sleeps_for(micros);
    }
    let first = flushed_snapshot(&pipeline, &sink);
    let first = stats(&first, name!("sleeps_for"), Outcome::Ok);
    assert_eq!(first.window, first.total);
    assert_eq!(first.total.count, 3);
    assert_eq!(first.total.sum, Duration::from_micros(6));

    for micros in [600, 700] {
        deadline(micros).unwrap_err();
    }
    for micros in [10, 20] {
        sleeps_for(micros);
    }
    let snapshot = flushed_snapshot(&pipeline, &sink);
    let errors = stats(&snapshot, name!("deadline"), Outcome::Error);
    assert_eq!((errors.window.count, errors.total.count), (2, 2));
    let second = stats(&snapshot, name!("sleeps_for"), Outcome::Ok);
    // The window restarts at each snapshot; the total keeps everything since install.
    assert_eq!(second.window.count, 2);
    assert_eq!(second.window.sum, Duration::from_micros(30));
    assert_eq!(
        (second.window.min, second.window.max),
        (Duration::from_micros(10), Duration::from_micros(20))
    );
    assert_eq!(second.total.count, 5);
    assert_eq!(second.total.sum, Duration::from_micros(36));
    assert_eq!(
        (second.total.min, second.total.max),
        (Duration::from_micros(1), Duration::from_micros(20))
    );

    deadline(800).unwrap_err();
    let third = flushed_snapshot(&pipeline, &sink);
    let errors = stats(&third, name!("deadline"), Outcome::Error);
    assert_eq!((errors.window.count, errors.total.count), (1, 3));
    assert_eq!(errors.window.sum, Duration::from_micros(800));
    assert_eq!(errors.total.sum, Duration::from_micros(2100));
    let kind = &errors.error_kinds[0];
    assert_eq!(
        (kind.kind, kind.window, kind.total),
        ("counts::TooSlow", 1, 3)
    );
    // No calls in this window: the window is empty, the total unchanged.
    let idle = stats(&third, name!("sleeps_for"), Outcome::Ok);
    assert_eq!((idle.window.count, idle.total.count), (0, 5));
}

/// Six kinds, more than a callsite names by position (four): the others travel as text.
#[instrument_performance(err_kind = nth_kind)]
fn many_kinds(n: usize) -> Result<(), usize> {
    Err(n)
}

#[allow(clippy::trivially_copy_pass_by_ref)] // `err_kind` functions take the error by reference
fn nth_kind(n: &usize) -> &'static str {
    ["k0", "k1", "k2", "k3", "k4", "k5"][*n % 6]
}

#[test]
fn every_error_kind_is_counted_however_many_a_callsite_has() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    on_threads(3, |t| {
        for i in 0..600 {
            // Thread 0 starts with the last kinds, so positions go to kinds in any order.
            let n = if t == 0 { 5 - i % 6 } else { i };
            assert!(many_kinds(n).is_err());
        }
    });

    let snapshot = flushed_snapshot(&pipeline, &sink);
    assert_eq!(count(&snapshot, name!("many_kinds"), Outcome::Error), 1_800);
    assert_eq!(
        kinds(&snapshot, name!("many_kinds")),
        [
            ("k0", 300),
            ("k1", 300),
            ("k2", 300),
            ("k3", 300),
            ("k4", 300),
            ("k5", 300)
        ]
    );
}

/// Issue 7 of the core's second round: `counter!(name, u64::MAX)` twice killed the drain in
/// debug builds and wrapped in release. A counter saturates at `u64::MAX`.
#[test]
fn a_counter_saturates_instead_of_overflowing() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = support::install(&sink);
    instrument::counter!("saturating_total", u64::MAX);
    instrument::counter!("saturating_total", u64::MAX);
    instrument::counter!("saturating_total", 1);
    let snapshot = support::flushed_snapshot(&pipeline, &sink);
    assert_eq!(snapshot.counter("saturating_total"), Some(u64::MAX));
    // The drain lives on.
    instrument::counter!("after_saturation_total", 3);
    let snapshot = support::flushed_snapshot(&pipeline, &sink);
    assert_eq!(snapshot.counter("after_saturation_total"), Some(3));
}

/// 64 distinct counter callsites, each first used by its own short-lived thread.
macro_rules! fresh_counters {
    ($($n:literal)*) => {
        fn bump_fresh(index: usize, by: u64) {
            match index {
                $($n => instrument::counter!("fresh_total", by),)*
                _ => unreachable!(),
            }
        }
    };
}

fresh_counters!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29
    30 31 32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61
    62 63);

/// Issue 4 of the core's second round: a thread that registered a callsite during a drain cycle
/// and exited before the next one lost that callsite's counts. Threads here register a new
/// counter callsite each and exit at once while the drain cycles every millisecond.
#[test]
fn counts_of_callsites_registered_by_threads_that_exit_at_once_are_kept() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = instrument::builder()
        .drain_interval(std::time::Duration::from_millis(1))
        .sink(sink.clone())
        .install()
        .unwrap();
    let threads: Vec<_> = (0..64)
        .map(|i| std::thread::spawn(move || bump_fresh(i, i as u64 + 1)))
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let snapshot = support::flushed_snapshot(&pipeline, &sink);
    assert_eq!(snapshot.counter("fresh_total"), Some((1..=64).sum::<u64>()));
}
