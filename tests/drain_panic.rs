//! A panic on the drain thread is caught, reported, and the pipeline keeps working (issue 6 of
//! the core's second round, failure mode 11).

use instrument::{ClockSource, Error, Outcome, testing};
use instrument_sinks::MemorySink;

mod support;
use support::{count, name, serial};

#[instrument::instrument_performance]
fn work() {}

#[test]
fn a_drain_panic_is_reported_by_the_next_flush_and_recording_goes_on() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .sink(sink.clone())
        .install()
        .unwrap();
    work();
    testing::panic_next_drain_cycle();
    match pipeline.flush() {
        Err(Error::DrainPanicked { count, message }) => {
            assert_eq!(count, 1);
            assert!(message.contains("injected"), "{message}");
        }
        other => panic!("expected the drain panic to be reported, got {other:?}"),
    }
    assert_eq!(pipeline.self_metrics().drain_panics, 1);
    // The panic came before the cycle read anything: nothing is lost, and recording goes on.
    work();
    pipeline.flush().expect("the drain recovered");
    let snapshot = sink.last_snapshot().unwrap();
    assert_eq!(count(&snapshot, name!("work"), Outcome::Ok), 2);
}

#[test]
fn a_drain_that_keeps_panicking_turns_recording_off_and_says_so() {
    let _serial = serial();
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .sink(MemorySink::new())
        .install()
        .unwrap();
    for _ in 0..3 {
        testing::panic_next_drain_cycle();
        let _ = pipeline.flush();
    }
    let err = pipeline.flush().expect_err("the drain gave up");
    assert!(matches!(err, Error::DrainFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("recording is off"), "{err}");
    drop(pipeline);
    // A new pipeline starts afresh.
    let sink = MemorySink::new();
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .sink(sink.clone())
        .install()
        .unwrap();
    work();
    pipeline.flush().unwrap();
    assert_eq!(
        count(&sink.last_snapshot().unwrap(), name!("work"), Outcome::Ok),
        1
    );
}
