//! `flush` delivers its snapshot even to a sink whose backlog is full, and says what that sink
//! lacks of what came before.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use instrument::{Batch, Error, Outcome, Sink, SinkError, Snapshot};

/// Takes 5 ms per batch and remembers the latest snapshot.
#[derive(Clone, Default)]
struct SlowSink(Arc<Mutex<Option<Arc<Snapshot>>>>);

impl Sink for SlowSink {
    fn name(&self) -> &'static str {
        "slow"
    }

    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        std::thread::sleep(Duration::from_millis(5));
        if let Some(snapshot) = &batch.snapshot {
            *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(Arc::clone(snapshot));
        }
        Ok(())
    }
}

#[test]
fn flush_reaches_a_sink_whose_backlog_is_full() {
    let sink = SlowSink::default();
    // A 1 ms window makes every cycle produce a snapshot batch: far more than a sink taking
    // 5 ms per batch with a backlog of one can take, so its channel is full at flush time.
    let pipeline = instrument::builder()
        .sink(sink.clone())
        .sink_backlog(1)
        .window(Duration::from_millis(1))
        .drain_interval(Duration::from_millis(1))
        .install()
        .unwrap();
    let mut calls = 0u64;
    let start = std::time::Instant::now();
    while start.elapsed() < Duration::from_millis(60) {
        let _t = instrument::timer!("flush_probe");
        calls += 1;
    }
    // Window batches were dropped for the slow sink before the flush: the flush says so.
    match pipeline.flush() {
        Err(Error::Incomplete { sinks, .. }) => {
            assert_eq!(sinks.len(), 1, "{sinks:?}");
            assert_eq!(sinks[0].sink, "slow");
            assert!(
                !sinks[0].timed_out && sinks[0].lost.snapshots > 0,
                "{sinks:?}"
            );
        }
        other => panic!("expected the slow sink's losses, got {other:?}"),
    }
    let snapshot = sink
        .0
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
        .unwrap();
    let stats = snapshot
        .calls
        .iter()
        .find(|c| c.callsite.name() == "flush_probe" && c.outcome == Outcome::Ok)
        .expect("the flush snapshot has the timer");
    assert_eq!(
        stats.total.count, calls,
        "the snapshot delivered by flush must count every call"
    );
    let slow = &pipeline.self_metrics().sinks[0];
    assert!(
        slow.dropped_batches > 0,
        "the backlog was full before the flush: {slow:?}"
    );
}
