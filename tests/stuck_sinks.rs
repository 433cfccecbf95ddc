//! A stuck sink only ever hurts itself: it cannot stop audit intake, the drain, or the other
//! sinks' flushes and shutdowns (issue 6 of the core's second round, failure modes 1 to 3).
//!
//! Stuck sinks block on channels the test releases; `within` guards against the hangs these
//! tests exist to catch, with limits far above what the behaviour needs.

use std::time::Duration;

use instrument::{AuditEntry, ClockSource, Error, Interests, Outcome, SinkError};
use instrument_sinks::MemorySink;

mod support;
use support::{Hooked, gate, name, serial, timed_out_sinks, within};

const HOUR: Duration = Duration::from_secs(3600);
const GUARD: Duration = Duration::from_secs(20);

#[instrument::instrument_performance]
fn op(i: u32) -> Result<u32, std::fmt::Error> {
    if i.is_multiple_of(2) {
        Ok(i)
    } else {
        Err(std::fmt::Error)
    }
}

/// Failure mode 1: an events-only sink stuck after one flush used to stop audit intake for
/// every producer in the process.
#[test]
fn a_stuck_sink_that_wants_no_audit_never_blocks_audit() {
    let _serial = serial();
    let (blocked, entered, release) = gate(
        MemorySink::new()
            .named("stuck-events")
            .with_interests(Interests::NONE.with_events(true)),
    );
    let audit = MemorySink::new()
        .named("audit")
        .with_interests(Interests::NONE.with_audit(true));
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .drain_interval(HOUR)
        .window(HOUR)
        .audit_capacity(4)
        .flush_timeout(Duration::from_millis(200))
        .sink(blocked)
        .sink(audit.clone())
        .install()
        .unwrap();
    let _ = op(1);
    assert_eq!(timed_out_sinks(pipeline.flush()), ["stuck-events"]);
    entered.recv().unwrap();

    // Ten times the audit capacity: producers must get through on the audit sink's pace.
    within("audit while an events-only sink is stuck", GUARD, || {
        for i in 0..40 {
            instrument::audit(AuditEntry::new("load").input(format!("file-{i}"))).unwrap();
        }
    });
    assert_eq!(timed_out_sinks(pipeline.flush()), ["stuck-events"]);
    assert_eq!(audit.audit().len(), 40);
    drop(release);
    drop(pipeline);
}

/// Failure mode 1, second half: an audit sink whose audit writes fail for ever holds back
/// neither its own events nor, once its backlog has been full for the flush timeout, the
/// other audit sinks' producers.
#[test]
fn an_audit_sink_failing_for_ever_holds_back_only_its_audit() {
    let _serial = serial();
    let failing_inner = MemorySink::new().named("failing-audit");
    let failing = AuditFails(Hooked::new(failing_inner.clone()));
    let other = MemorySink::new()
        .named("other")
        .with_interests(Interests::NONE.with_audit(true));
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .drain_interval(Duration::from_millis(5))
        .audit_capacity(8)
        .max_retries(1)
        .flush_timeout(Duration::from_millis(300))
        .sink(failing)
        .sink(other.clone())
        .install()
        .unwrap();
    within("audit past a failing audit sink", GUARD, || {
        for i in 0..64 {
            instrument::audit(AuditEntry::new("load").input(format!("file-{i}"))).unwrap();
        }
    });
    for i in 0..10 {
        let _ = op(i);
    }
    let err = pipeline
        .flush()
        .expect_err("the failing sink lacks audit entries");
    let Error::Incomplete { sinks, .. } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(sinks.len(), 1, "{err}");
    assert_eq!(sinks[0].sink, "failing-audit");
    assert!(sinks[0].lost.audit_entries >= 64 - 8, "{err}");
    assert_eq!(other.audit().len(), 64);
    // Its events arrived all the same.
    assert_eq!(failing_inner.events().len(), 5);
    let snapshot = failing_inner.last_snapshot().unwrap();
    assert_eq!(
        snapshot.call(name!("op"), Outcome::Ok).unwrap().total.count,
        5
    );
    drop(pipeline);
}

/// Stores everything but audit entries, whose writes always fail.
struct AuditFails(Hooked);

impl instrument::Sink for AuditFails {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn write(&mut self, batch: &instrument::Batch) -> Result<(), SinkError> {
        if !batch.audit.is_empty() {
            return Err(SinkError::new("audit store offline"));
        }
        self.0.write(batch)
    }
}

/// Failure mode 2: while a flush waits on a stuck sink, the drain keeps draining and the
/// other sinks keep receiving.
#[test]
fn the_drain_keeps_draining_while_a_flush_waits() {
    let _serial = serial();
    let (blocked, entered, release) = gate(MemorySink::new().named("stuck"));
    let (wrote, has_written) = crossbeam_channel::unbounded();
    let healthy = MemorySink::new().named("healthy");
    let notify = Hooked::new(healthy.clone()).after_write(move || {
        let _ = wrote.send(());
    });
    let pipeline = std::sync::Arc::new(
        instrument::builder()
            .clock(ClockSource::Mock)
            .drain_interval(Duration::from_millis(5))
            .flush_timeout(Duration::from_secs(60))
            .sink(blocked)
            .sink(notify)
            .install()
            .unwrap(),
    );
    let _ = op(0);
    let flushing = {
        let pipeline = std::sync::Arc::clone(&pipeline);
        std::thread::spawn(move || pipeline.flush())
    };
    entered.recv().unwrap();
    // The flush waits (60 s timeout) on the stuck sink; calls made now still reach the other.
    while has_written.try_recv().is_ok() {}
    let _ = op(1);
    let delivered = within("an event delivered during a flush", GUARD, move || {
        loop {
            has_written.recv().unwrap();
            if !healthy.events().is_empty() {
                return healthy.events();
            }
        }
    });
    assert_eq!(delivered.len(), 1);
    assert_eq!(delivered[0].outcome, Outcome::Error);
    drop(release);
    flushing
        .join()
        .unwrap()
        .expect("the released sink answers the flush");
}

/// Failure mode 3: every sink gets the whole timeout to shut down, in parallel, and each one
/// that did not finish is named.
#[test]
fn a_stuck_shutdown_does_not_cost_the_later_sinks_theirs() {
    let _serial = serial();
    let (release, released) = crossbeam_channel::bounded::<()>(0);
    let first = Hooked::new(MemorySink::new().named("first")).before_shutdown(move || {
        let _ = released.recv();
    });
    let later = MemorySink::new().named("later");
    let slow_later = Hooked::new(later.clone())
        .before_shutdown(|| std::thread::sleep(Duration::from_millis(100)));
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .flush_timeout(Duration::from_millis(500))
        .sink(first)
        .sink(slow_later)
        .install()
        .unwrap();
    let _ = op(0);
    let result = within("shutdown", GUARD, move || pipeline.shutdown());
    assert_eq!(timed_out_sinks(result), ["first"]);
    assert!(
        later.is_shut_down(),
        "the later sink's shutdown was not waited for"
    );
    // The pipeline is gone: a new one installs and works beside the stuck worker.
    let next = MemorySink::new();
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .sink(next.clone())
        .install()
        .expect("the old drain has ended");
    let _ = op(1);
    pipeline.flush().unwrap();
    assert_eq!(next.events().len(), 1);
    drop(release);
}
