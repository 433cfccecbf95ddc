//! Instrumented code dropped while *other* code unwinds: an `async fn` future dropped by a
//! panicking owner, or inside a `Drop` impl that runs during a panic, was cancelled (it did not
//! panic), and a `timer!` that starts and ends inside such a `Drop` impl ended normally. Only a
//! panic raised in the future's own poll, or in the timer's own scope, is recorded as `panic`.
//!
//! Futures are polled by hand on the test thread with a no-op waker, so the mock clock applies.
//! A pipeline is process-wide: every test takes `serial()` before it records anything. The
//! panics print the usual panic message to stderr.

// The code under test panics on purpose, which `panic!` says more plainly than `assert!`.
#![allow(clippy::manual_assert)]

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use instrument::testing::advance;
use instrument::{FieldValue, Outcome, instrument_performance};
use instrument_sinks::MemorySink;

mod support;
use support::{count, events_of, flushed_snapshot, install, name, serial};

/// Polls `future` once on this thread.
fn poll_once<F: Future + ?Sized>(future: Pin<&mut F>) -> Poll<F::Output> {
    future.poll(&mut Context::from_waker(Waker::noop()))
}

/// Pending on its first poll, ready on the second.
#[derive(Default)]
struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            Poll::Pending
        }
    }
}

#[instrument_performance(capture(id))]
async fn parked(id: u32) -> u32 {
    advance(Duration::from_micros(30));
    std::future::pending::<()>().await;
    id
}

#[instrument_performance]
async fn two_polls(id: u32) -> u32 {
    YieldOnce::default().await;
    id
}

#[instrument_performance]
async fn panics_after_a_poll(id: u32) -> u32 {
    YieldOnce::default().await;
    advance(Duration::from_micros(70));
    if id > 0 {
        panic!("poll {id} failed");
    }
    id
}

/// Owns an instrumented future that was polled once and is waiting.
struct Owner {
    /// Held only to be dropped with its owner.
    _pending: Pin<Box<dyn Future<Output = u32>>>,
}

impl Owner {
    fn new(id: u32) -> Owner {
        let mut pending: Pin<Box<dyn Future<Output = u32>>> = Box::pin(parked(id));
        assert!(poll_once(pending.as_mut()).is_pending());
        Owner { _pending: pending }
    }
}

/// Polls `future` until it panics; returns the panic's message.
fn poll_until_panic<F: Future + ?Sized>(mut future: Pin<&mut F>) -> String {
    let payload = catch_unwind(AssertUnwindSafe(|| {
        while poll_once(future.as_mut()).is_pending() {}
    }))
    .expect_err("the future panics");
    payload
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_future_is_a_panic_only_when_its_own_poll_panics() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    let owner = Owner::new(5);
    let panicked = catch_unwind(AssertUnwindSafe(move || {
        let _owner = owner;
        panic!("the owner failed");
    }));
    assert!(panicked.is_err());
    let mut failing = Box::pin(panics_after_a_poll(3));
    assert_eq!(poll_until_panic(failing.as_mut()), "poll 3 failed");
    drop(failing);

    let snapshot = flushed_snapshot(&pipeline, &sink);
    assert_eq!(count(&snapshot, name!("parked"), Outcome::Cancelled), 1);
    assert_eq!(count(&snapshot, name!("parked"), Outcome::Panic), 0);
    let events = events_of(&sink, name!("parked"));
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0].outcome, Outcome::Cancelled);
    assert_eq!(events[0].duration, Duration::from_micros(30));
    let panics = snapshot
        .call(name!("panics_after_a_poll"), Outcome::Panic)
        .unwrap();
    assert_eq!(panics.total.count, 1);
    assert_eq!(panics.total.sum, Duration::from_micros(70));
    assert_eq!(
        count(&snapshot, name!("panics_after_a_poll"), Outcome::Cancelled),
        0
    );
}

/// Cleans up during a panic: drops a waiting future; creates, polls and drops another; runs
/// one to completion; and polls one whose own poll panics, catching that panic.
struct Cleanup {
    waiting: Option<Owner>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        assert!(std::thread::panicking(), "dropped by the panic");
        drop(self.waiting.take());
        let mut late = Box::pin(parked(6));
        assert!(poll_once(late.as_mut()).is_pending());
        drop(late);
        let mut finished = Box::pin(two_polls(7));
        assert!(poll_once(finished.as_mut()).is_pending());
        assert_eq!(poll_once(finished.as_mut()), Poll::Ready(7));
        let mut failing = Box::pin(panics_after_a_poll(4));
        assert_eq!(poll_until_panic(failing.as_mut()), "poll 4 failed");
    }
}

#[test]
fn futures_dropped_in_a_drop_impl_during_a_panic_are_cancelled() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    let cleanup = Cleanup {
        waiting: Some(Owner::new(5)),
    };
    let panicked = catch_unwind(AssertUnwindSafe(move || {
        let _cleanup = cleanup;
        panic!("unrelated failure");
    }));
    assert!(panicked.is_err());

    let snapshot = flushed_snapshot(&pipeline, &sink);
    assert_eq!(count(&snapshot, name!("parked"), Outcome::Cancelled), 2);
    assert_eq!(count(&snapshot, name!("parked"), Outcome::Panic), 0);
    // Completing while the thread unwinds is a normal return.
    assert_eq!(count(&snapshot, name!("two_polls"), Outcome::Ok), 1);
    assert_eq!(count(&snapshot, name!("two_polls"), Outcome::Panic), 0);
    // A panic in the future's own poll is its own, even while another panic unwinds.
    assert_eq!(
        count(&snapshot, name!("panics_after_a_poll"), Outcome::Panic),
        1
    );
    let parked: Vec<_> = events_of(&sink, name!("parked"))
        .iter()
        .map(|e| (e.outcome, e.fields.clone()))
        .collect();
    assert_eq!(
        parked,
        [
            (Outcome::Cancelled, vec![("id", FieldValue::U64(5))]),
            (Outcome::Cancelled, vec![("id", FieldValue::U64(6))])
        ]
    );
}

/// Times its own cleanup, which runs during a panic.
struct TimedCleanup;

impl Drop for TimedCleanup {
    fn drop(&mut self) {
        let _timer = instrument::timer!("timed_cleanup");
        advance(Duration::from_micros(90));
    }
}

#[test]
fn a_timer_in_a_drop_impl_during_a_panic_is_ok() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    let panicked = catch_unwind(|| {
        let _cleanup = TimedCleanup;
        panic!("unrelated failure");
    });
    assert!(panicked.is_err());
    // A timer whose own scope panics is still a panic.
    let panicked = catch_unwind(|| {
        let _timer = instrument::timer!("timed_cleanup");
        advance(Duration::from_micros(10));
        panic!("in the block");
    });
    assert!(panicked.is_err());

    let snapshot = flushed_snapshot(&pipeline, &sink);
    let ok = snapshot.call("timed_cleanup", Outcome::Ok).unwrap();
    assert_eq!(ok.total.count, 1);
    assert_eq!(ok.total.sum, Duration::from_micros(90));
    let panic = snapshot.call("timed_cleanup", Outcome::Panic).unwrap();
    assert_eq!(panic.total.count, 1);
    assert_eq!(panic.total.sum, Duration::from_micros(10));
}
