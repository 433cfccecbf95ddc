//! Panics in instrumented functions: recorded as `panic`, and the panic itself continues exactly
//! as it would without instrumentation (same payload, same unwinding through the caller).
//!
//! A pipeline is process-wide: every test takes `LOCK` before it records anything. The panics
//! print the usual panic message to stderr.

// The functions under test panic on purpose, which `panic!` says more plainly than `assert!`.
#![allow(clippy::manual_assert)]

use std::any::Any;
use std::num::ParseIntError;
use std::panic::{AssertUnwindSafe, catch_unwind, panic_any};
use std::thread;
use std::time::Duration;

use instrument::testing::advance;
use instrument::{EventReason, FieldValue, Outcome, instrument_performance};
use instrument_sinks::MemorySink;

mod support;
use support::{count, flushed_snapshot, install, name, serial};

#[derive(Debug, PartialEq, Eq)]
struct Payload(u32);

#[instrument_performance]
fn formatted(id: u32) -> u32 {
    if id > 0 {
        panic!("failed on {id}");
    }
    id
}

#[instrument_performance]
fn literal() {
    panic!("static message");
}

#[instrument_performance]
fn custom(code: u32) -> Result<u32, ParseIntError> {
    advance(Duration::from_millis(3));
    if code > 0 {
        panic_any(Payload(code));
    }
    "1".parse()
}

fn payload_of<R>(f: impl FnOnce() -> R) -> Box<dyn Any + Send> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(_) => panic!("expected a panic"),
        Err(payload) => payload,
    }
}

#[test]
fn panics_are_recorded_and_continue_with_their_payload() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    let payload = payload_of(|| formatted(7));
    assert_eq!(
        payload.downcast_ref::<String>().map(String::as_str),
        Some("failed on 7")
    );
    let payload = payload_of(literal);
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"static message"));
    let payload = payload_of(|| custom(42));
    assert_eq!(payload.downcast_ref::<Payload>(), Some(&Payload(42)));
    // The same functions still return normally afterwards.
    assert_eq!(formatted(0), 0);
    assert_eq!(custom(0).unwrap(), 1);

    let snapshot = flushed_snapshot(&pipeline, &sink);
    assert_eq!(count(&snapshot, name!("formatted"), Outcome::Panic), 1);
    assert_eq!(count(&snapshot, name!("formatted"), Outcome::Ok), 1);
    assert_eq!(count(&snapshot, name!("literal"), Outcome::Panic), 1);
    assert_eq!(count(&snapshot, name!("literal"), Outcome::Ok), 0);
    // A panicking `Result` function is a panic, not an error.
    assert_eq!(count(&snapshot, name!("custom"), Outcome::Panic), 1);
    assert_eq!(count(&snapshot, name!("custom"), Outcome::Error), 0);
    assert_eq!(count(&snapshot, name!("custom"), Outcome::Ok), 1);
    // The duration runs until the unwinding guard records it.
    let panicked = snapshot.call(name!("custom"), Outcome::Panic).unwrap();
    assert_eq!(panicked.total.sum, Duration::from_millis(3));
    assert!(panicked.error_kinds.is_empty());

    let events = sink.events();
    assert_eq!(events.len(), 3, "{events:#?}");
    for event in &events {
        assert_eq!(event.outcome, Outcome::Panic);
        assert_eq!(event.reason, EventReason::Outcome);
        assert_eq!(event.error_kind, None);
    }
    let custom = events
        .iter()
        .find(|e| e.callsite.name() == name!("custom"))
        .unwrap();
    assert_eq!(custom.duration, Duration::from_millis(3));
}

#[instrument_performance]
fn inner(depth: u32) -> u32 {
    if depth == 0 {
        panic!("bottom");
    }
    inner(depth - 1) + 1
}

#[instrument_performance]
fn outer() -> u32 {
    inner(3)
}

#[test]
fn every_frame_the_panic_unwinds_through_is_recorded() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    let payload = payload_of(outer);
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"bottom"));

    let snapshot = flushed_snapshot(&pipeline, &sink);
    assert_eq!(count(&snapshot, name!("outer"), Outcome::Panic), 1);
    assert_eq!(count(&snapshot, name!("inner"), Outcome::Panic), 4);
    assert_eq!(count(&snapshot, name!("inner"), Outcome::Ok), 0);
}

#[test]
fn a_panic_that_ends_a_thread_is_recorded_with_the_thread() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    let joined = thread::Builder::new()
        .name("panicker".into())
        .spawn(|| formatted(9))
        .unwrap()
        .join();
    let payload = joined.expect_err("the thread panicked");
    assert_eq!(
        payload.downcast_ref::<String>().map(String::as_str),
        Some("failed on 9")
    );

    let snapshot = flushed_snapshot(&pipeline, &sink);
    assert_eq!(count(&snapshot, name!("formatted"), Outcome::Panic), 1);
    let events = sink.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].thread.name.as_deref(), Some("panicker"));
}

#[test]
fn a_timer_dropped_by_unwinding_records_a_panic() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    let payload = payload_of(|| {
        let _timer = instrument::timer!("panicky_block");
        advance(Duration::from_micros(250));
        panic!("in block");
    });
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"in block"));
    {
        let _timer = instrument::timer!("panicky_block");
    }

    let snapshot = flushed_snapshot(&pipeline, &sink);
    let panicked = snapshot.call("panicky_block", Outcome::Panic).unwrap();
    assert_eq!(panicked.total.count, 1);
    assert_eq!(panicked.total.sum, Duration::from_micros(250));
    // A timer that simply goes out of scope is `ok`, not `cancelled`.
    assert_eq!(count(&snapshot, "panicky_block", Outcome::Ok), 1);
    assert_eq!(count(&snapshot, "panicky_block", Outcome::Cancelled), 0);
}

#[instrument_performance(skip(reason))]
fn stop(job: u32, reason: &str) -> ! {
    advance(Duration::from_micros(40));
    panic!("job {job} stopped: {reason}");
}

#[test]
fn a_never_returning_function_records_its_captured_arguments_when_it_panics() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    let payload = payload_of(|| stop(17, "shutdown"));
    assert_eq!(
        payload.downcast_ref::<String>().map(String::as_str),
        Some("job 17 stopped: shutdown")
    );

    let snapshot = flushed_snapshot(&pipeline, &sink);
    let panicked = snapshot.call(name!("stop"), Outcome::Panic).unwrap();
    assert_eq!(panicked.total.count, 1);
    assert_eq!(panicked.total.sum, Duration::from_micros(40));
    let events = support::events_of(&sink, name!("stop"));
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].outcome, Outcome::Panic);
    assert_eq!(events[0].fields, [("job", FieldValue::U64(17))]);
}
