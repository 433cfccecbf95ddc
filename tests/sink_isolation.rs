//! Sink isolation: a sink that errors, panics, blocks or lags never costs another sink anything,
//! its trouble is counted in the self-metrics and named by `flush`, failed batches are retried,
//! and audit entries are never given up.
//!
//! Synchronisation uses channels signalled from inside the sinks (`gate`, `notifying`), never
//! sleeps. A pipeline is process-wide: every test takes `LOCK` before it records anything. The
//! panicking sink prints the usual panic message to stderr.

use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use instrument::{
    AuditEntry, Batch, ClockSource, Error, Interests, Outcome, Sink, SinkError, SinkHealth,
    SinkShortfall, instrument_performance,
};
use instrument_sinks::MemorySink;

mod support;
use support::{Hooked, gate, name, serial, status, timed_out_sinks};

const HOUR: Duration = Duration::from_secs(3600);

/// A mock-clock pipeline that drains only when asked (or when audit producers wake it).
fn builder() -> instrument::Builder {
    instrument::builder()
        .clock(ClockSource::Mock)
        .drain_interval(HOUR)
        .window(HOUR)
}

/// The one shortfall an incomplete flush or shutdown reports.
fn only_shortfall(result: Result<(), Error>) -> SinkShortfall {
    match result {
        Err(Error::Incomplete { mut sinks, .. }) if sinks.len() == 1 => sinks.remove(0),
        other => panic!("expected one sink's shortfall, got {other:?}"),
    }
}

/// Polls `condition` for at most `limit`.
fn poll_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        thread::yield_now();
    }
    condition()
}

const EVENTS_AND_SNAPSHOTS: Interests = Interests::NONE.with_events(true).with_snapshots(true);

const AUDIT_ONLY: Interests = Interests::NONE.with_audit(true);

/// Every write fails.
struct Failing;

impl Sink for Failing {
    fn name(&self) -> &'static str {
        "failing"
    }
    fn interests(&self) -> Interests {
        EVENTS_AND_SNAPSHOTS
    }
    fn write(&mut self, _batch: &Batch) -> Result<(), SinkError> {
        Err(SinkError::with_source(
            "cannot store batch",
            std::io::Error::other("disk full"),
        ))
    }
}

/// Every write panics.
struct Panicking;

impl Sink for Panicking {
    fn name(&self) -> &'static str {
        "panicking"
    }
    fn interests(&self) -> Interests {
        EVENTS_AND_SNAPSHOTS
    }
    fn write(&mut self, _batch: &Batch) -> Result<(), SinkError> {
        panic!("sink exploded");
    }
}

/// A sink storing into `inner` that tells the test about every batch it stores.
fn notifying(inner: MemorySink, wrote: Sender<()>) -> Hooked {
    Hooked::new(inner).after_write(move || {
        let _ = wrote.send(());
    })
}

/// A sink that fails its first `failures` writes, then stores batches into `inner`.
fn flaky(inner: MemorySink, mut failures: u32) -> Hooked {
    Hooked::new(inner).before_write(move || {
        if failures > 0 {
            failures -= 1;
            return Err(SinkError::new("flaky: not yet"));
        }
        Ok(())
    })
}

/// A healthy sink storing into `inner` whose flush takes `delay`.
fn slow_flush(inner: MemorySink, delay: Duration) -> Hooked {
    Hooked::new(inner).before_flush(move || thread::sleep(delay))
}

#[derive(Debug, thiserror::Error)]
#[error("odd")]
struct Odd;

/// Fails for every sixth `i`.
#[instrument_performance]
fn op(i: u32) -> Result<u32, Odd> {
    if i.is_multiple_of(6) {
        return Err(Odd);
    }
    Ok(i)
}

#[test]
fn failing_panicking_and_blocked_sinks_do_not_disturb_a_healthy_one() {
    let _serial = serial();
    let memory = MemorySink::new();
    let (blocked, blocked_entered, release) = gate(MemorySink::new().named("blocked"));
    let timeout = Duration::from_millis(300);
    let pipeline = builder()
        .max_retries(1)
        .flush_timeout(timeout)
        .sink(Failing)
        .sink(Panicking)
        .sink(blocked)
        .sink(memory.clone())
        .install()
        .expect("no other pipeline is installed");

    for i in 0..60 {
        let _ = op(i);
    }
    let err = pipeline.flush().expect_err("the blocked sink cannot flush");
    assert!(
        err.to_string()
            .contains("sink `blocked` did not finish in time"),
        "{err}"
    );
    // The failing and panicking sinks gave their batch up: the flush names them too, with
    // what they lack.
    let Error::Incomplete { sinks, .. } = &err else {
        panic!("{err:?}")
    };
    let named: Vec<_> = sinks.iter().map(|s| s.sink.as_str()).collect();
    assert_eq!(named, ["failing", "panicking", "blocked"], "{err}");
    assert_eq!(
        (sinks[0].lost.batches, sinks[0].lost.events),
        (1, 10),
        "{err}"
    );
    assert!(!sinks[0].timed_out && sinks[2].timed_out, "{err}");
    blocked_entered.recv().unwrap();

    // The healthy sink has everything.
    let snapshot = memory.last_snapshot().expect("the healthy sink's snapshot");
    let ok = snapshot.call(name!("op"), Outcome::Ok).unwrap();
    let errors = snapshot.call(name!("op"), Outcome::Error).unwrap();
    assert_eq!((ok.total.count, errors.total.count), (50, 10));
    assert_eq!(memory.events().len(), 10);

    // A second flush publishes the statuses of the first one's deliveries.
    let sinks = timed_out_sinks(pipeline.flush());
    assert_eq!(sinks, ["blocked"]);
    let _ = timeout;
    let failing = status(&pipeline, "failing");
    assert!(failing.errors >= 2, "a try and a retry: {failing:#?}");
    assert_eq!(failing.panics, 0);
    assert_eq!(failing.delivered, 0);
    assert!(failing.dropped_batches >= 1, "{failing:#?}");
    let last_error = failing.last_error.as_deref().unwrap_or_default();
    assert!(
        last_error.contains("cannot store batch") && last_error.contains("disk full"),
        "{last_error}"
    );
    let panicking = status(&pipeline, "panicking");
    assert!(panicking.panics >= 2, "{panicking:#?}");
    assert!(
        panicking.errors >= 2,
        "panics count as errors: {panicking:#?}"
    );
    assert_eq!(panicking.delivered, 0);
    let last_error = panicking.last_error.as_deref().unwrap_or_default();
    assert!(last_error.contains("sink exploded"), "{last_error}");
    let blocked = status(&pipeline, "blocked");
    assert_eq!(blocked.delivered, 0);
    assert!(blocked.backlog >= 1, "{blocked:#?}");
    let healthy = status(&pipeline, "memory");
    assert_eq!((healthy.errors, healthy.dropped_batches), (0, 0));
    assert!(healthy.delivered >= 1);

    // Once the blocked sink moves again, it shuts down cleanly; the failing and panicking
    // sinks lose the final batch too, and the shutdown says so.
    drop(release);
    let err = pipeline
        .shutdown()
        .expect_err("two sinks lack the final batch");
    let Error::Incomplete { sinks, .. } = &err else {
        panic!("{err:?}")
    };
    let named: Vec<_> = sinks.iter().map(|s| s.sink.as_str()).collect();
    assert_eq!(named, ["failing", "panicking"], "{err}");
    assert!(memory.is_shut_down());
}

#[test]
fn flush_names_only_the_stuck_sink_even_when_its_backlog_is_full() {
    let _serial = serial();
    let (stuck, stuck_entered, release) = gate(MemorySink::new().named("stuck"));
    // A healthy sink that needs a moment (well within the timeout) to flush.
    let healthy = MemorySink::new().named("healthy");
    let pipeline = builder()
        .sink_backlog(1)
        .flush_timeout(Duration::from_millis(300))
        .sink(stuck)
        .sink(slow_flush(healthy.clone(), Duration::from_millis(50)))
        .install()
        .expect("no other pipeline is installed");

    // The stuck sink takes the first batch and blocks in `write`.
    let _ = op(1);
    assert_eq!(timed_out_sinks(pipeline.flush()), ["stuck"]);
    stuck_entered.recv().unwrap();
    assert_eq!(healthy.flushes(), 1);

    // Its one-batch backlog is now full: flushing still waits for the healthy sink.
    let _ = op(2);
    let sinks = timed_out_sinks(pipeline.flush());
    assert_eq!(
        sinks,
        ["stuck"],
        "the healthy sink is only asked to flush after the stuck one's timeout has passed"
    );
    assert_eq!(healthy.flushes(), 2);

    drop(release);
    pipeline.shutdown().expect("clean shutdown");
}

#[test]
fn a_sink_that_recovers_gets_the_retried_batch() {
    let _serial = serial();
    let inner = MemorySink::new().named("flaky");
    let pipeline = builder()
        .max_retries(5)
        .sink(flaky(inner.clone(), 3))
        .install()
        .expect("no other pipeline is installed");

    for i in 0..60 {
        let _ = op(i);
    }
    pipeline
        .flush()
        .expect("the flaky sink recovers within its retries");
    let snapshot = inner.last_snapshot().expect("the retried batch");
    assert_eq!(
        snapshot
            .call(name!("op"), Outcome::Error)
            .unwrap()
            .total
            .count,
        10
    );
    assert_eq!(inner.events().len(), 10);

    pipeline.flush().unwrap();
    let flaky = status(&pipeline, "flaky");
    assert_eq!(flaky.errors, 3, "{flaky:#?}");
    assert_eq!(flaky.dropped_batches, 0, "{flaky:#?}");
    assert!(flaky.delivered >= 1, "{flaky:#?}");
    assert_eq!(flaky.last_error.as_deref(), Some("flaky: not yet"));
}

/// A store that is down until the test says its cause is gone, and that notices it only in its
/// `tick`, as a store reopening a lost file does.
struct Outage {
    inner: MemorySink,
    down: bool,
    cause_gone: Arc<std::sync::atomic::AtomicBool>,
}

impl Sink for Outage {
    fn name(&self) -> &'static str {
        "outage"
    }
    fn interests(&self) -> Interests {
        EVENTS_AND_SNAPSHOTS
    }
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        if self.down {
            return Err(SinkError::new("store unreachable"));
        }
        self.inner.write(batch)
    }
    fn tick(&mut self, _now: std::time::SystemTime) -> Result<(), SinkError> {
        if self.cause_gone.load(std::sync::atomic::Ordering::SeqCst) {
            self.down = false;
        }
        Ok(())
    }
}

#[test]
fn a_failed_batch_waits_while_the_sink_ticks_and_arrives_when_the_cause_goes_away() {
    let _serial = serial();
    let inner = MemorySink::new();
    let cause_gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pipeline = builder()
        .sink_tick(Duration::from_millis(10))
        .sink(Outage {
            inner: inner.clone(),
            down: true,
            cause_gone: Arc::clone(&cause_gone),
        })
        .install()
        .expect("no other pipeline is installed");

    for i in 0..60 {
        let _ = op(i);
    }
    thread::scope(|scope| {
        // The cause goes away only after the batch has failed several times: with a worker that
        // retried by sleeping, no tick would run in between and the batch would be given up.
        scope.spawn(|| {
            assert!(
                poll_until(Duration::from_secs(60), || status(&pipeline, "outage")
                    .errors
                    >= 6),
                "the batch is retried while the store is down"
            );
            cause_gone.store(true, std::sync::atomic::Ordering::SeqCst);
        });
        pipeline
            .flush()
            .expect("the batch waits for the store instead of being given up");
    });
    assert_eq!(inner.events().len(), 10);
    let outage = status(&pipeline, "outage");
    assert_eq!(outage.dropped_batches, 0, "{outage:#?}");
    assert!(outage.lost.is_none(), "{outage:#?}");
}

#[test]
fn event_batches_are_given_up_after_the_retries() {
    let _serial = serial();
    let inner = MemorySink::new().named("flaky");
    let pipeline = builder()
        .max_retries(1)
        .sink(flaky(inner.clone(), 2))
        .install()
        .expect("no other pipeline is installed");

    let _ = op(0);
    // Issue 6 of the core's second round: `flush` used to return `Ok` here.
    let shortfall = only_shortfall(pipeline.flush());
    assert_eq!(shortfall.sink, "flaky");
    assert_eq!(
        (
            shortfall.lost.batches,
            shortfall.lost.events,
            shortfall.lost.snapshots
        ),
        (1, 1, 1),
        "{shortfall}"
    );
    assert!(
        !shortfall.timed_out && shortfall.error.is_none(),
        "{shortfall}"
    );
    assert!(inner.events().is_empty());
    let _ = op(6);
    pipeline.flush().unwrap();
    // The second batch arrives; the first is lost for this sink and counted.
    assert_eq!(inner.events().len(), 1);
    assert_eq!(
        inner
            .last_snapshot()
            .unwrap()
            .call(name!("op"), Outcome::Error)
            .unwrap()
            .total
            .count,
        2
    );
    pipeline.flush().unwrap();
    let flaky = status(&pipeline, "flaky");
    assert_eq!((flaky.errors, flaky.dropped_batches), (2, 1), "{flaky:#?}");
}

#[test]
fn audit_batches_are_retried_beyond_the_retry_limit() {
    let _serial = serial();
    let inner = MemorySink::new().named("flaky");
    let pipeline = builder()
        .max_retries(1)
        .sink(flaky(inner.clone().with_interests(AUDIT_ONLY), 4))
        .install()
        .expect("no other pipeline is installed");

    instrument::audit(AuditEntry::new("load").input("a.rs")).unwrap();
    // The flush cannot keep its promise while the sink fails...
    let shortfall = only_shortfall(pipeline.flush());
    assert_eq!(
        (shortfall.sink.as_str(), shortfall.lost.audit_entries),
        ("flaky", 1)
    );
    // ...but the entry is never given up: retried in the background, it arrives.
    pipeline.flush().expect("the sink recovered");
    let audit = inner.audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].inputs, ["a.rs"]);
    pipeline.flush().unwrap();
    let flaky = status(&pipeline, "flaky");
    assert_eq!((flaky.errors, flaky.dropped_batches), (4, 0), "{flaky:#?}");
    assert_eq!(flaky.audit_delivered, 1, "{flaky:#?}");
}

#[test]
fn a_failing_flush_is_reported_with_the_sink_name() {
    struct Unflushable;
    impl Sink for Unflushable {
        fn name(&self) -> &'static str {
            "unflushable"
        }
        fn write(&mut self, _batch: &Batch) -> Result<(), SinkError> {
            Ok(())
        }
        fn flush(&mut self) -> Result<(), SinkError> {
            Err(SinkError::new("fsync failed"))
        }
        fn shutdown(&mut self) -> Result<(), SinkError> {
            Ok(())
        }
    }

    let _serial = serial();
    let memory = MemorySink::new();
    let pipeline = builder()
        .sink(Unflushable)
        .sink(memory.clone())
        .install()
        .expect("no other pipeline is installed");
    let _ = op(0);
    let shortfall = only_shortfall(pipeline.flush());
    assert_eq!(shortfall.sink, "unflushable");
    assert_eq!(shortfall.error.as_deref(), Some("fsync failed"));
    // The other sink flushed all the same.
    assert_eq!(memory.flushes(), 1);
    assert_eq!(memory.events().len(), 1);
    // Shutting down flushes again, and reports the same failure; every sink is still shut down.
    let shortfall = only_shortfall(pipeline.shutdown());
    assert_eq!(shortfall.sink, "unflushable");
    assert!(memory.is_shut_down());
}

#[test]
fn a_lagging_sink_still_receives_the_flush_snapshot() {
    let _serial = serial();
    let lagging = MemorySink::new()
        .named("lagging")
        .with_interests(EVENTS_AND_SNAPSHOTS);
    let (gated, entered, release) = gate(lagging.clone());
    let (wrote, has_written) = crossbeam_channel::unbounded();
    let pipeline = builder()
        .sink_backlog(1)
        .audit_capacity(1)
        .flush_timeout(Duration::from_secs(10))
        .sink(gated)
        .sink(notifying(
            MemorySink::new().named("notify").with_interests(AUDIT_ONLY),
            wrote,
        ))
        .install()
        .expect("no other pipeline is installed");

    // Each audit entry wakes the drain (the audit queue holds one), so each step is one batch.
    // 1: the lagging sink takes the first batch and blocks in `write`.
    let _ = op(0);
    instrument::audit(AuditEntry::new("step-1")).unwrap();
    has_written.recv().unwrap();
    entered.recv().unwrap();
    // 2: the second batch fills its one-batch backlog.
    let _ = op(6);
    instrument::audit(AuditEntry::new("step-2")).unwrap();
    has_written.recv().unwrap();
    // 3: a third error, then a flush while the sink still lags.
    let _ = op(12);
    thread::scope(|scope| {
        let flush = scope.spawn(|| pipeline.flush());
        // Release the sink once the flush's batch found its backlog full: the oldest waiting
        // batch (the second) is then dropped for it (or give up waiting after 2 s).
        poll_until(Duration::from_secs(2), || {
            status(&pipeline, "lagging").dropped_batches >= 1
        });
        drop(release);
        // The flush says what the sink lacks: the second batch, with its one event.
        let shortfall = only_shortfall(flush.join().unwrap());
        assert_eq!(shortfall.sink, "lagging");
        assert_eq!((shortfall.lost.batches, shortfall.lost.events), (1, 1));
    });

    let snapshot = lagging
        .last_snapshot()
        .expect("flush returned, but the lagging sink never received the flush snapshot");
    assert_eq!(
        snapshot
            .call(name!("op"), Outcome::Error)
            .unwrap()
            .total
            .count,
        3
    );
}

#[test]
fn audit_held_for_a_stuck_sink_survives_a_flush_timeout() {
    let _serial = serial();
    let stuck = MemorySink::new()
        .named("stuck-audit")
        .with_interests(AUDIT_ONLY);
    let (gated, entered, release) = gate(stuck.clone());
    let (wrote, has_written) = crossbeam_channel::unbounded();
    let notify = MemorySink::new().named("notify").with_interests(AUDIT_ONLY);
    let pipeline = builder()
        .sink_backlog(1)
        .audit_capacity(1)
        .flush_timeout(Duration::from_millis(200))
        .sink(gated)
        .sink(notifying(notify.clone(), wrote))
        .install()
        .expect("no other pipeline is installed");

    // One batch per entry: the first blocks the stuck sink in `write`, the second fills its
    // one-entry audit backlog; the third and fourth find it full and are lost for that sink
    // only. The other audit sink has room, so producers never wait.
    instrument::audit(AuditEntry::new("a1")).unwrap();
    has_written.recv().unwrap();
    entered.recv().unwrap();
    for op in ["a2", "a3", "a4"] {
        instrument::audit(AuditEntry::new(op)).unwrap();
        has_written.recv().unwrap();
    }

    let late = timed_out_sinks(pipeline.flush());
    assert_eq!(late, ["stuck-audit"]);
    drop(release);
    // The next flush names the sink and how many entries it lacks.
    let shortfall = only_shortfall(pipeline.flush());
    assert_eq!(
        (shortfall.sink.as_str(), shortfall.lost.audit_entries),
        ("stuck-audit", 2),
        "{shortfall}"
    );
    pipeline.flush().expect("nothing lost since");

    let operations = |sink: &MemorySink| -> Vec<String> {
        sink.audit()
            .iter()
            .map(|entry| entry.operation.to_string())
            .collect()
    };
    assert_eq!(operations(&notify), ["a1", "a2", "a3", "a4"]);
    assert_eq!(operations(&stuck), ["a1", "a2"]);
}

/// Records which parts of each batch it was handed.
struct Probe {
    interests: Interests,
    seen: Arc<Mutex<Vec<(bool, bool, bool)>>>,
}

impl Sink for Probe {
    fn name(&self) -> &'static str {
        "probe"
    }
    fn interests(&self) -> Interests {
        self.interests
    }
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.seen.lock().unwrap().push((
            !batch.events.is_empty(),
            batch.snapshot.is_some(),
            !batch.audit.is_empty(),
        ));
        Ok(())
    }
}

#[test]
fn sinks_are_handed_only_the_parts_they_want() {
    let _serial = serial();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let memory = MemorySink::new();
    let pipeline = builder()
        .sink(Probe {
            interests: Interests::NONE.with_events(true),
            seen: Arc::clone(&seen),
        })
        .sink(memory.clone())
        .install()
        .expect("no other pipeline is installed");

    let _ = op(0);
    instrument::audit(AuditEntry::new("copy")).unwrap();
    pipeline.flush().unwrap();
    assert_eq!(memory.audit().len(), 1);
    assert!(memory.last_snapshot().is_some());

    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen,
        [(true, false, false)],
        "(events, snapshot, audit) per batch: an events-only sink was handed a snapshot and audit entries"
    );
}

/// Reports itself degraded.
struct Degraded;

impl Sink for Degraded {
    fn name(&self) -> &'static str {
        "degraded"
    }
    fn write(&mut self, _batch: &Batch) -> Result<(), SinkError> {
        Ok(())
    }
    fn health(&self) -> SinkHealth {
        SinkHealth::Degraded("replica lagging".into())
    }
}

#[test]
fn a_sinks_own_health_report_reaches_the_self_metrics() {
    let _serial = serial();
    let memory = MemorySink::new();
    let pipeline = builder()
        .sink(Degraded)
        .sink(memory.clone())
        .install()
        .expect("no other pipeline is installed");
    let _ = op(0);
    pipeline.flush().unwrap();
    // The health is polled after each delivery; the next cycle publishes it.
    pipeline.flush().unwrap();
    assert_eq!(
        status(&pipeline, "degraded").health,
        SinkHealth::Degraded("replica lagging".into())
    );
    assert_eq!(status(&pipeline, "memory").health, SinkHealth::Healthy);
}

#[test]
fn shutting_down_with_a_stuck_sink_names_it_and_allows_a_new_install() {
    let _serial = serial();
    let memory = MemorySink::new();
    let (stuck, entered, release) = gate(MemorySink::new().named("stuck"));
    let pipeline = builder()
        .flush_timeout(Duration::from_millis(200))
        .sink(memory.clone())
        .sink(stuck)
        .install()
        .expect("no other pipeline is installed");
    let _ = op(0);
    let err = pipeline
        .shutdown()
        .expect_err("the stuck sink cannot shut down");
    assert!(err.to_string().starts_with("shutdown incomplete"), "{err}");
    assert_eq!(timed_out_sinks(Err(err)), ["stuck"]);
    entered.recv().unwrap();
    assert!(memory.is_shut_down());
    assert_eq!(memory.events().len(), 1);

    // The stuck sink's worker is left behind; the process can install a new pipeline.
    let next = MemorySink::new();
    let pipeline = builder()
        .sink(next.clone())
        .install()
        .expect("a new install after a failed shutdown");
    let _ = op(6);
    pipeline.flush().unwrap();
    assert_eq!(next.events().len(), 1);
    drop(pipeline);
    drop(release);
}
