//! Overload: tiny thread queues, a drain that rarely runs, slow sinks. Durations are dropped and
//! the loss is reported (self-metrics and drop markers), but call counts stay exact, and audit
//! entries are never dropped.
//!
//! The queue capacity applies to threads whose buffer is created after install, so every test
//! records from freshly spawned threads. A pipeline is process-wide: every test takes `LOCK`
//! before it records anything.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::Duration;

use instrument::{
    AuditEntry, ClockSource, FieldValue, Interests, Outcome, Snapshot, instrument_performance,
};
use instrument_sinks::MemorySink;

mod support;
use support::{Hooked, events_of, name, on_threads, serial, status};

const HOUR: Duration = Duration::from_secs(3600);

/// A mock-clock pipeline whose thread queues hold `capacity` records and whose drain runs only
/// when a queue passes half full or on `flush` (its interval and window are an hour).
fn woken_only(capacity: usize) -> instrument::Builder {
    instrument::builder()
        .clock(ClockSource::Mock)
        .queue_capacity(capacity)
        .drain_interval(HOUR)
        .window(HOUR)
}

/// A sink that takes `delay` to write each batch into `inner`.
fn slow_writes(inner: MemorySink, delay: Duration) -> Hooked {
    Hooked::new(inner).before_write(move || {
        thread::sleep(delay);
        Ok(())
    })
}

#[derive(Debug, thiserror::Error)]
#[error("odd")]
struct Odd;

/// Fails for every tenth `i`.
#[instrument_performance]
fn hot(i: u32) -> Result<u32, Odd> {
    if i.is_multiple_of(10) {
        return Err(Odd);
    }
    Ok(i)
}

#[instrument_performance]
fn cold(i: u32) -> u32 {
    i
}

/// Calls per outcome of one callsite, summed over the snapshot.
fn per_callsite(snapshot: &Snapshot, name: &str) -> HashMap<Outcome, instrument::Stats> {
    snapshot
        .calls
        .iter()
        .filter(|c| c.callsite.name() == name)
        .map(|c| (c.outcome, c.total))
        .collect()
}

const THREADS: u32 = 4;
const CALLS: u32 = 20_000;

#[test]
fn full_queues_drop_durations_but_every_call_is_counted() {
    let _serial = serial();
    let memory = MemorySink::new();
    let slow = MemorySink::new().named("slow");
    let pipeline = woken_only(8)
        .sink_backlog(4096)
        .sink(memory.clone())
        .sink(slow_writes(slow.clone(), Duration::from_millis(1)))
        .install()
        .expect("no other pipeline is installed");

    on_threads(THREADS as usize, |_| {
        for i in 0..CALLS {
            let _ = hot(i);
            if i % 100 == 0 {
                cold(i);
            }
        }
    });
    pipeline.flush().expect("flush");

    let metrics = pipeline.self_metrics();
    assert!(metrics.events_dropped > 0, "{metrics:#?}");
    assert!(
        metrics.queue_high_water <= 8,
        "queues hold at most 8 records: {metrics:#?}"
    );
    assert_eq!(status(&pipeline, "memory").dropped_batches, 0);

    let snapshot = memory.last_snapshot().expect("a snapshot");
    let hot_stats = per_callsite(&snapshot, name!("hot"));
    let cold_stats = per_callsite(&snapshot, name!("cold"));
    let expected = [
        (&hot_stats, Outcome::Ok, u64::from(THREADS * CALLS * 9 / 10)),
        (&hot_stats, Outcome::Error, u64::from(THREADS * CALLS / 10)),
        (&cold_stats, Outcome::Ok, u64::from(THREADS * CALLS / 100)),
    ];
    for (stats, outcome, calls) in expected {
        let total = stats[&outcome];
        assert_eq!(total.count, calls, "{outcome}: {total:?}");
    }
    support::assert_accounted(&snapshot);
    // Every timed error became an event: the events are a third account of `timed`.
    let error_events = memory
        .events()
        .iter()
        .filter(|e| e.callsite.name() == name!("hot") && e.outcome == Outcome::Error)
        .count() as u64;
    assert_eq!(error_events, hot_stats[&Outcome::Error].timed);
    assert_eq!(hot_stats.len(), 2);
    assert_eq!(cold_stats.len(), 1);

    // Per callsite, the drop markers account for exactly the dropped durations.
    let drops = memory.drops();
    assert!(drops.iter().all(|d| d.count > 0 && d.since <= d.until));
    for (name, stats) in [(name!("hot"), &hot_stats), (name!("cold"), &cold_stats)] {
        let marked: u64 = drops
            .iter()
            .filter(|d| d.callsite.name() == name)
            .map(|d| d.count)
            .sum();
        let dropped: u64 = stats.values().map(|s| s.dropped).sum();
        assert_eq!(marked, dropped, "{name}");
    }
    let marked: u64 = drops.iter().map(|d| d.count).sum();
    assert_eq!(marked, metrics.events_dropped);
    let timed: u64 = hot_stats
        .values()
        .chain(cold_stats.values())
        .map(|s| s.timed)
        .sum();
    assert_eq!(metrics.events_recorded, timed);
    // Only timed errors are events; dropped ones are only counted.
    let errors = memory.events();
    assert_eq!(errors.len() as u64, hot_stats[&Outcome::Error].timed);
    assert!(errors.iter().all(|e| e.outcome == Outcome::Error));

    // The slow sink saw the same snapshot, however late.
    let slow_snapshot = slow.last_snapshot().expect("the slow sink's snapshot");
    assert_eq!(
        per_callsite(&slow_snapshot, name!("hot"))[&Outcome::Ok].count,
        u64::from(THREADS * CALLS * 9 / 10)
    );
}

#[derive(Debug, instrument::ErrorKind)]
enum Rejected {
    Small,
    Large,
}

/// Error kind `Small` for `i % 3 == 0`, `Large` for 1, ok for 2; every timed call is an event
/// carrying `i`, so each event shows whether its kind and fields belong to the same call.
#[instrument_performance(capture(i), sample = 1.0)]
fn judged(i: u32) -> Result<u32, Rejected> {
    match i % 3 {
        0 => Err(Rejected::Small),
        1 => Err(Rejected::Large),
        _ => Ok(i),
    }
}

#[test]
fn error_kinds_and_fields_stay_with_their_calls_when_queues_overflow() {
    let _serial = serial();
    let memory = MemorySink::new();
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .queue_capacity(8)
        .drain_interval(Duration::from_micros(50))
        .window(HOUR)
        .sink_backlog(1 << 16)
        .sink(memory.clone())
        .install()
        .expect("no other pipeline is installed");

    on_threads(THREADS as usize, |_| {
        for i in 0..CALLS {
            let _ = judged(i);
        }
    });
    pipeline.flush().expect("flush");

    let snapshot = memory.last_snapshot().expect("a snapshot");
    let stats = per_callsite(&snapshot, name!("judged"));
    let calls: u64 = stats.values().map(|s| s.count).sum();
    assert_eq!(calls, u64::from(THREADS * CALLS));
    assert!(
        stats.values().any(|s| s.dropped > 0),
        "queues overflowed: {stats:?}"
    );

    // Each event's kind matches its own captured `i`: a record never picks up another call's
    // detail, however many were dropped around it.
    let events = events_of(&memory, name!("judged"));
    let mut kinds: HashMap<&str, u64> = HashMap::new();
    for event in &events {
        let [("i", FieldValue::U64(i))] = event.fields[..] else {
            panic!("unexpected fields {:?}", event.fields);
        };
        let expected = match i % 3 {
            0 => (Outcome::Error, Some("Small")),
            1 => (Outcome::Error, Some("Large")),
            _ => (Outcome::Ok, None),
        };
        assert_eq!((event.outcome, event.error_kind), expected, "{event:?}");
        if let Some(kind) = event.error_kind {
            *kinds.entry(kind).or_default() += 1;
        }
    }
    let timed: u64 = stats.values().map(|s| s.timed).sum();
    assert_eq!(events.len() as u64, timed, "every timed call is an event");

    // The events show the timed errors of each kind; the snapshot counts every error of each
    // kind exactly, the dropped ones included.
    let errors = snapshot
        .call(name!("judged"), Outcome::Error)
        .expect("errors");
    assert_eq!(kinds.values().sum::<u64>(), errors.total.timed);
    let counted: HashMap<&str, u64> = errors
        .error_kinds
        .iter()
        .map(|k| (k.kind, k.total))
        .collect();
    let per_kind = |rest| u64::from(THREADS) * (0..CALLS).filter(|i| i % 3 == rest).count() as u64;
    assert_eq!(
        counted,
        HashMap::from([("Small", per_kind(0)), ("Large", per_kind(1))])
    );
    assert!(
        kinds["Small"] < counted["Small"],
        "some errors were dropped"
    );
}

/// Counts how often a `Probe` argument was formatted for capture.
static FORMATTED: AtomicU64 = AtomicU64::new(0);

struct Probe;

impl fmt::Display for Probe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        FORMATTED.fetch_add(1, Ordering::Relaxed);
        f.write_str("probe")
    }
}

#[instrument_performance(capture(%probe))]
fn probed(probe: &Probe) -> usize {
    std::hint::black_box(std::ptr::from_ref(probe) as usize)
}

#[test]
fn calls_started_while_a_thread_sheds_are_counted_without_being_timed_or_formatted() {
    const CALLS: u64 = 10_000;
    let _serial = serial();
    let memory = MemorySink::new();
    let pipeline = woken_only(8)
        .sink(memory.clone())
        .install()
        .expect("no other pipeline is installed");
    FORMATTED.store(0, Ordering::Relaxed);

    on_threads(1, |_| {
        for _ in 0..CALLS {
            probed(&Probe);
        }
    });
    pipeline.flush().expect("flush");

    let snapshot = memory.last_snapshot().expect("a snapshot");
    let total = snapshot.call(name!("probed"), Outcome::Ok).unwrap().total;
    assert_eq!(total.count, CALLS, "{total:?}");
    support::assert_accounted(&snapshot);
    assert!(
        total.dropped > CALLS / 2,
        "the ring of 8 overflowed: {total:?}"
    );
    // Arguments are formatted for timed calls, and for the few calls whose push found the ring
    // full. Calls that start while their thread is shedding (after such a push) are only
    // counted: without shedding, every dropped call would have been formatted too.
    let formatted = FORMATTED.load(Ordering::Relaxed);
    assert!(formatted >= total.timed, "{formatted} < {total:?}");
    assert!(
        formatted - total.timed < total.dropped / 10,
        "{formatted} formatted for {total:?}"
    );
}

#[test]
fn a_filling_detail_ring_wakes_the_drain() {
    const CALLS: u64 = 100_000;
    const CAPACITY: usize = 1024;
    let _serial = serial();
    let memory = MemorySink::new();
    let pipeline = woken_only(CAPACITY)
        .sink(memory.clone())
        .install()
        .expect("no other pipeline is installed");

    // Every call carries captured arguments, so the detail ring (half the record ring's slots)
    // fills first; if only the record ring could wake the drain, it would never run, and all
    // but the first ring-full of calls would be dropped.
    // The recording thread yields now and then, so that a woken drain gets a core even when
    // the machine is busy; a drain that is never woken stays parked for its hour all the same.
    on_threads(1, |_| {
        for i in 0..CALLS {
            probed(&Probe);
            if i % 256 == 0 {
                std::thread::yield_now();
            }
        }
    });
    pipeline.flush().expect("flush");

    let total = memory
        .last_snapshot()
        .expect("a snapshot")
        .call(name!("probed"), Outcome::Ok)
        .unwrap()
        .total;
    assert_eq!(total.count, CALLS, "{total:?}");
    assert!(
        total.timed >= 5 * CAPACITY as u64,
        "the drain ran while the thread recorded: {total:?}"
    );
}

#[test]
fn the_queue_capacity_applies_to_threads_that_start_recording_after_install() {
    let _serial = serial();
    let build = |capacity, sink: &MemorySink| {
        woken_only(capacity)
            .sink(sink.clone())
            .install()
            .expect("install")
    };

    // A thread that starts recording under a pipeline with large queues...
    let (go, wait) = crossbeam_channel::bounded::<()>(0);
    let (done, is_done) = crossbeam_channel::bounded::<()>(0);
    let veteran = thread::spawn(move || {
        while wait.recv().is_ok() {
            for i in 0..100 {
                cold(i);
            }
            done.send(()).unwrap();
        }
    });
    let first = MemorySink::new();
    let pipeline = build(4096, &first);
    go.send(()).unwrap();
    is_done.recv().unwrap();
    drop(pipeline);

    // ...keeps its queue under the next one; a new thread gets a queue of 8.
    let sink = MemorySink::new();
    let pipeline = build(8, &sink);
    go.send(()).unwrap();
    is_done.recv().unwrap();
    thread::spawn(|| {
        for i in 0..100 {
            hot(i * 10 + 1).unwrap();
        }
    })
    .join()
    .unwrap();
    pipeline.flush().unwrap();
    drop(go);
    veteran.join().unwrap();

    let snapshot = sink.last_snapshot().unwrap();
    let veteran = snapshot.call(name!("cold"), Outcome::Ok).unwrap().total;
    assert_eq!((veteran.count, veteran.timed), (100, 100));
    let newcomer = snapshot.call(name!("hot"), Outcome::Ok).unwrap().total;
    assert_eq!(
        (newcomer.count, newcomer.timed, newcomer.dropped),
        (100, 8, 92)
    );
}

#[instrument_performance(audit, capture(%id))]
fn audited(id: &str) -> usize {
    id.len()
}

/// The ids of audit entries: inputs of manual entries, captured `id`s of audited calls.
fn audit_ids(entries: &[AuditEntry]) -> Vec<String> {
    entries
        .iter()
        .map(|entry| match entry.operation.as_ref() {
            "manual" => entry.inputs[0].clone(),
            name!("audited") => {
                assert_eq!(entry.fields[0].0, "id");
                entry.fields[0].1.clone()
            }
            other => panic!("unexpected audit entry {other}"),
        })
        .collect()
}

#[test]
fn audit_entries_all_arrive_under_load() {
    const PER_THREAD: usize = 50;
    let _serial = serial();
    let memory = MemorySink::new();
    let slow = MemorySink::new()
        .named("slow-audit")
        .with_interests(Interests::NONE.with_audit(true));
    let pipeline = woken_only(8)
        .audit_capacity(2)
        .sink_backlog(2)
        .sink(memory.clone())
        .sink(slow_writes(slow.clone(), Duration::from_millis(1)))
        .install()
        .expect("no other pipeline is installed");

    on_threads(12, |t| match t % 3 {
        0 => {
            for i in 0..PER_THREAD {
                let id = format!("call-{t}-{i}");
                assert_eq!(audited(&id), id.len());
            }
        }
        1 => {
            for i in 0..PER_THREAD {
                instrument::audit(AuditEntry::new("manual").input(format!("manual-{t}-{i}")))
                    .expect("installed");
            }
        }
        _ => {
            for i in 0..CALLS {
                let _ = hot(i);
            }
        }
    });
    // Event batches beyond the two-batch backlog are dropped (and the flush says so); no
    // audit entry is.
    match pipeline.flush() {
        Ok(()) => {}
        Err(instrument::Error::Incomplete { sinks, .. }) => assert!(
            sinks
                .iter()
                .all(|s| !s.timed_out && s.error.is_none() && s.lost.audit_entries == 0),
            "{sinks:?}"
        ),
        Err(other) => panic!("flush: {other}"),
    }

    let mut expected = BTreeSet::new();
    for t in 0..12 {
        for i in 0..PER_THREAD {
            match t % 3 {
                0 => expected.insert(format!("call-{t}-{i}")),
                1 => expected.insert(format!("manual-{t}-{i}")),
                _ => false,
            };
        }
    }
    for sink in [&memory, &slow] {
        let ids = audit_ids(&sink.audit());
        let unique: BTreeSet<_> = ids.iter().cloned().collect();
        assert_eq!(ids.len(), unique.len(), "no entry arrives twice");
        assert_eq!(unique, expected, "every entry arrives");
    }
    assert_eq!(status(&pipeline, "slow-audit").dropped_batches, 0);
    // The queues did overflow meanwhile.
    assert!(pipeline.self_metrics().events_dropped > 0);
}

#[instrument_performance]
fn brief(i: u32) -> u32 {
    i
}

#[test]
fn calls_of_threads_that_exit_while_the_drain_runs_are_exact() {
    const ROUNDS: u32 = 25;
    const PER_ROUND: u32 = 8;
    const CALLS: u32 = 200;
    let _serial = serial();
    let sink = MemorySink::new();
    // The drain runs continuously while short-lived threads record, overflow and exit.
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .queue_capacity(8)
        .drain_interval(Duration::from_micros(10))
        .sink_backlog(1 << 16)
        .sink(sink.clone())
        .install()
        .expect("no other pipeline is installed");

    for _ in 0..ROUNDS {
        on_threads(PER_ROUND as usize, |_| {
            for i in 0..CALLS {
                brief(i);
                instrument::counter!("overload_recording_total");
            }
        });
    }
    pipeline.flush().unwrap();

    let snapshot = sink.last_snapshot().unwrap();
    let all = u64::from(ROUNDS * PER_ROUND * CALLS);
    assert_eq!(snapshot.counter("overload_recording_total"), Some(all));
    let total = snapshot.call(name!("brief"), Outcome::Ok).unwrap().total;
    assert_eq!(total.count, all, "{total:?}");
    support::assert_accounted(&snapshot);
}

/// Registers 128 more counter callsites, which makes each drain cycle's scan of a thread's
/// counter table long.
fn register_padding_counters() {
    macro_rules! padding {
        ($($n:literal)*) => {
            $(
                let _ = $n;
                instrument::counter!("overload_padding_total", 0);
            )*
        };
    }
    padding!(
        0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31
        32 33 34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61
        62 63 64 65 66 67 68 69 70 71 72 73 74 75 76 77 78 79 80 81 82 83 84 85 86 87 88 89 90 91
        92 93 94 95 96 97 98 99 100 101 102 103 104 105 106 107 108 109 110 111 112 113 114 115
        116 117 118 119 120 121 122 123 124 125 126 127
    );
}

#[test]
fn counters_of_threads_that_exit_while_the_drain_runs_are_exact() {
    const ROUNDS: u32 = 250;
    const PER_ROUND: u32 = 16;
    const COUNTS: u32 = 20;
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = instrument::builder()
        .queue_capacity(8)
        .drain_interval(Duration::from_micros(10))
        .sink(sink.clone())
        .install()
        .expect("no other pipeline is installed");

    // Threads that only count (their queues stay empty) and exit while the drain, running
    // continuously, is between reading their counters and checking whether they have exited.
    // A drain that retires such a thread after reading its counters loses its last counts.
    // This is a stress test: it finds such a race in many runs, not in every run.
    register_padding_counters();
    for _ in 0..ROUNDS {
        on_threads(PER_ROUND as usize, |_| {
            for _ in 0..COUNTS {
                instrument::counter!("overload_exiting_total");
            }
        });
    }
    pipeline.flush().unwrap();

    let snapshot = sink.last_snapshot().unwrap();
    assert_eq!(
        snapshot.counter("overload_exiting_total"),
        Some(u64::from(ROUNDS * PER_ROUND * COUNTS))
    );
}
