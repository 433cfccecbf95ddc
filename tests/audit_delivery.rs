//! Every audit entry for which `audit()` returned `Ok` reaches every audit sink, also when the
//! pipeline shuts down under producers, and an audited call that outlives its pipeline is not
//! lost without a trace (issue 6 of the core's second round, failure mode 5).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use instrument::{AuditEntry, ClockSource, Interests};
use instrument_sinks::MemorySink;

mod support;
use support::serial;

#[test]
fn entries_accepted_while_the_pipeline_shuts_down_all_arrive() {
    let _serial = serial();
    for round in 0..20 {
        let sink = MemorySink::new().with_interests(Interests::NONE.with_audit(true));
        let pipeline = instrument::builder()
            .clock(ClockSource::Mock)
            .audit_capacity(64)
            .sink(sink.clone())
            .install()
            .unwrap();
        let accepted = Arc::new(AtomicU64::new(0));
        let started = Arc::new(AtomicU64::new(0));
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let (accepted, started) = (Arc::clone(&accepted), Arc::clone(&started));
                std::thread::spawn(move || {
                    started.fetch_add(1, Ordering::SeqCst);
                    let mut i = 0u64;
                    while instrument::audit(AuditEntry::new("step").input(format!("{p}-{i}")))
                        .is_ok()
                    {
                        accepted.fetch_add(1, Ordering::SeqCst);
                        i += 1;
                    }
                })
            })
            .collect();
        // Shut down while every producer is mid-stream.
        while started.load(Ordering::SeqCst) < 4 || accepted.load(Ordering::SeqCst) < 200 {
            std::thread::yield_now();
        }
        pipeline.shutdown().expect("clean shutdown");
        for producer in producers {
            producer.join().unwrap();
        }
        let accepted = accepted.load(Ordering::SeqCst);
        let entries = sink.audit();
        assert_eq!(
            entries.len() as u64,
            accepted,
            "round {round}: audit() returned Ok {accepted} times, the sink got {}",
            entries.len()
        );
        assert!(entries.windows(2).all(|w| w[0].sequence < w[1].sequence));
    }
}

#[instrument::instrument_performance(audit)]
fn long_audited(started: &AtomicBool, finish: &crossbeam_channel::Receiver<()>) {
    started.store(true, Ordering::SeqCst);
    let _ = finish.recv();
}

#[test]
fn an_audited_call_that_outlives_its_pipeline_is_not_lost_silently() {
    let _serial = serial();
    let first = MemorySink::new();
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .sink(first.clone())
        .install()
        .unwrap();
    let started = Arc::new(AtomicBool::new(false));
    let (finish, finished) = crossbeam_channel::bounded::<()>(0);
    let call = {
        let started = Arc::clone(&started);
        std::thread::spawn(move || long_audited(&started, &finished))
    };
    while !started.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    pipeline.shutdown().unwrap();

    // The call ends under the next pipeline, which takes its entry.
    let second = MemorySink::new();
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .sink(second.clone())
        .install()
        .unwrap();
    drop(finish);
    call.join().unwrap();
    pipeline.flush().unwrap();
    let entries = second.audit();
    assert_eq!(entries.len(), 1, "{entries:#?}");
    assert!(entries[0].operation.ends_with("long_audited"));
    assert!(first.audit().is_empty());
    drop(pipeline);

    // With no pipeline at all when it ends, it is counted for the next one to report.
    let started = Arc::new(AtomicBool::new(false));
    let (finish, finished) = crossbeam_channel::bounded::<()>(0);
    let before = {
        let pipeline = instrument::builder()
            .clock(ClockSource::Mock)
            .install()
            .unwrap();
        pipeline.flush().unwrap();
        pipeline.self_metrics().audit_orphaned
    };
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .install()
        .unwrap();
    let call = {
        let started = Arc::clone(&started);
        std::thread::spawn(move || long_audited(&started, &finished))
    };
    while !started.load(Ordering::SeqCst) {
        std::thread::yield_now();
    }
    drop(pipeline);
    drop(finish);
    call.join().unwrap();
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .install()
        .unwrap();
    pipeline.flush().unwrap();
    assert_eq!(pipeline.self_metrics().audit_orphaned, before + 1);
}
