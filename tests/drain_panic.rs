//! A panic on the drain thread is caught, reported, and the pipeline keeps working (issue 6 of
//! the core's second round, failure mode 11).

use instrument::{ClockSource, Error, Outcome, testing};
use instrument_sinks::MemorySink;

mod support;

const HOUR: std::time::Duration = std::time::Duration::from_secs(3600);
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
    // Only flushes run cycles here: a timed cycle between two flushes would succeed and end
    // the run of panics.
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .drain_interval(HOUR)
        .window(HOUR)
        .sink(MemorySink::new())
        .install()
        .unwrap();
    testing::panic_next_drain_cycles(3);
    // Each flush runs at least one cycle; three panicking cycles in a row end the drain.
    let mut result = Ok(());
    for _ in 0..4 {
        result = pipeline.flush();
        if matches!(result, Err(Error::DrainFailed { .. })) {
            break;
        }
    }
    let err = result.expect_err("the drain gave up");
    assert!(matches!(err, Error::DrainFailed { .. }), "{err:?}");
    assert!(err.to_string().contains("recording is off"), "{err}");
    // Audit producers are refused rather than left waiting for a drain that is gone.
    let refused = instrument::audit(instrument::AuditEntry::new("after"));
    assert!(matches!(refused, Err(Error::NotInstalled)), "{refused:?}");
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
