//! Helpers shared by the end-to-end tests. Each test file that installs the process-wide
//! pipeline takes `serial()` first, so the tests also pass under `cargo test`, which runs a
//! file's tests on parallel threads (nextest runs each in its own process).
#![allow(dead_code, unused_macros, unused_imports, unreachable_pub)]

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use instrument::{ClockSource, Event, Outcome, PipelineGuard, Snapshot};
use instrument_sinks::MemorySink;

static LOCK: Mutex<()> = Mutex::new(());

/// Serialises the tests of one file that install a pipeline.
pub fn serial() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A pipeline on the mock clock delivering to `sink`.
pub fn install(sink: &MemorySink) -> PipelineGuard {
    instrument::builder()
        .clock(ClockSource::Mock)
        .sink(sink.clone())
        .install()
        .expect("no other pipeline is installed")
}

/// Flushes and returns the snapshot the flush delivered.
pub fn flushed_snapshot(pipeline: &PipelineGuard, sink: &MemorySink) -> Arc<Snapshot> {
    pipeline.flush().expect("flush");
    sink.last_snapshot().expect("flush delivers a snapshot")
}

/// Calls of `name` with `outcome` since install (0 if none).
pub fn count(snapshot: &Snapshot, name: &str, outcome: Outcome) -> u64 {
    snapshot.call(name, outcome).map_or(0, |c| c.total.count)
}

/// The events of the callsite named `name`.
pub fn events_of(sink: &MemorySink, name: &str) -> Vec<Event> {
    sink.events()
        .into_iter()
        .filter(|e| e.callsite.name() == name)
        .collect()
}

/// The default name of an instrumented function of the calling module.
macro_rules! name {
    ($name:literal) => {
        concat!(module_path!(), "::", $name)
    };
}
pub(crate) use name;
