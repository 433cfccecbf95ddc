//! Dropping the pipeline guard: everything recorded before the drop reaches the sinks in a final
//! batch and snapshot, from threads that are still running, idle, or already gone, and the sinks
//! are shut down.
//!
//! The drain interval and window are an hour, so only the shutdown itself moves records.
//! A pipeline is process-wide: every test takes `LOCK` before it records anything.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use instrument::{AuditEntry, ClockSource, Error, Outcome, PipelineGuard, instrument_performance};
use instrument_sinks::MemorySink;

mod support;
use support::{name, serial};

const HOUR: Duration = Duration::from_secs(3600);

fn install(sink: &MemorySink) -> PipelineGuard {
    instrument::builder()
        .clock(ClockSource::Mock)
        .drain_interval(HOUR)
        .window(HOUR)
        .sink(sink.clone())
        .install()
        .expect("no other pipeline is installed")
}

#[derive(Debug, thiserror::Error)]
#[error("odd")]
struct Odd;

/// Fails for every fifth `i`.
#[instrument_performance]
fn work(i: u32) -> Result<u32, Odd> {
    if i.is_multiple_of(5) { Err(Odd) } else { Ok(i) }
}

#[instrument_performance(audit)]
fn commit(i: u32) -> u32 {
    i
}

const CALLS: u32 = 500;

/// `CALLS` calls of `work`, every hundredth call also audited and counted.
fn record_batch() {
    for i in 0..CALLS {
        let _ = work(i);
        if i % 100 == 0 {
            commit(i);
            instrument::counter!("shutdown_commits_total");
        }
    }
}

#[test]
fn the_final_batch_carries_every_call_made_before_the_drop() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    // Threads that record and exit before the drop.
    let exited: Vec<_> = (0..4).map(|_| thread::spawn(record_batch)).collect();
    for thread in exited {
        thread.join().unwrap();
    }
    // Threads that record, then sit idle (blocked on a channel) until after the drop.
    let (release, released) = crossbeam_channel::bounded::<()>(0);
    let (done, is_done) = crossbeam_channel::unbounded();
    let idle: Vec<_> = (0..4)
        .map(|_| {
            let (released, done) = (released.clone(), done.clone());
            thread::spawn(move || {
                record_batch();
                done.send(()).unwrap();
                // Returns when `release` is dropped.
                let _ = released.recv();
            })
        })
        .collect();
    for _ in 0..4 {
        is_done.recv().unwrap();
    }
    // And the thread that drops the guard.
    record_batch();
    assert_eq!(sink.batches(), 0, "nothing is drained before the drop");

    drop(pipeline);
    assert!(sink.is_shut_down());
    assert!(sink.flushes() >= 1);

    let batches = 9; // 4 exited + 4 idle + this thread
    let errors = u64::from(batches * CALLS / 5);
    let snapshot = sink.last_snapshot().expect("a final snapshot");
    let ok = snapshot.call(name!("work"), Outcome::Ok).unwrap().total;
    let err = snapshot.call(name!("work"), Outcome::Error).unwrap().total;
    assert_eq!(ok.count, u64::from(batches * CALLS) - errors);
    assert_eq!(err.count, errors);
    assert_eq!((ok.dropped, err.dropped), (0, 0));
    let commits = u64::from(batches * CALLS / 100);
    assert_eq!(
        snapshot
            .call(name!("commit"), Outcome::Ok)
            .unwrap()
            .total
            .count,
        commits
    );
    assert_eq!(snapshot.counter("shutdown_commits_total"), Some(commits));
    assert_eq!(
        snapshot.self_metrics.events_recorded,
        u64::from(batches * CALLS) + commits
    );
    assert_eq!(sink.events().len() as u64, errors);
    let audit = sink.audit();
    assert_eq!(audit.len() as u64, commits);
    assert!(audit.iter().all(|entry| entry.operation == name!("commit")));

    drop(release);
    for thread in idle {
        thread.join().unwrap();
    }
}

#[test]
fn shutdown_reports_success_and_later_calls_go_nowhere() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);
    let _ = work(1);
    pipeline.shutdown().expect("every sink shut down cleanly");
    assert!(sink.is_shut_down());
    let batches = sink.batches();
    let snapshot = sink.last_snapshot().unwrap();
    assert_eq!(
        snapshot
            .call(name!("work"), Outcome::Ok)
            .unwrap()
            .total
            .count,
        1
    );

    // After shutdown, instrumented code runs as if nothing were installed.
    assert_eq!(work(2).unwrap(), 2);
    commit(3);
    instrument::counter!("shutdown_after_total");
    let err = instrument::audit(AuditEntry::new("late")).unwrap_err();
    assert!(matches!(err, Error::NotInstalled), "{err:?}");
    assert_eq!(sink.batches(), batches);
}

const THREADS: u64 = 4;

#[test]
fn calls_that_finished_before_the_drop_are_in_the_final_snapshot_under_load() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    // Recording threads keep calling while the guard drops. `finished` counts calls that have
    // returned; every one counted before the drop starts must be in the final snapshot.
    let stop = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..THREADS)
        .map(|_| {
            let (stop, finished) = (Arc::clone(&stop), Arc::clone(&finished));
            thread::spawn(move || {
                let mut i = 1;
                while !stop.load(Ordering::Relaxed) {
                    let _ = work(i);
                    finished.fetch_add(1, Ordering::SeqCst);
                    i += 1;
                }
            })
        })
        .collect();
    while finished.load(Ordering::SeqCst) < 20_000 {
        thread::yield_now();
    }

    let before = finished.load(Ordering::SeqCst);
    drop(pipeline);
    let after = finished.load(Ordering::SeqCst);
    stop.store(true, Ordering::Relaxed);
    for thread in threads {
        thread.join().unwrap();
    }

    let snapshot = sink.last_snapshot().expect("a final snapshot");
    let recorded: u64 = [Outcome::Ok, Outcome::Error]
        .into_iter()
        .filter_map(|outcome| snapshot.call(name!("work"), outcome))
        .map(|stats| stats.total.count)
        .sum();
    support::assert_accounted(&snapshot);
    assert!(
        recorded >= before,
        "{recorded} calls recorded, but {before} had returned before the drop"
    );
    // At most one call per thread can have recorded without having been counted yet.
    assert!(
        recorded <= after + THREADS,
        "{recorded} calls recorded, but only {after} had returned after the drop"
    );
}
