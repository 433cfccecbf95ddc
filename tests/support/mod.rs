//! Helpers shared by the end-to-end tests. Each test file that installs the process-wide
//! pipeline takes `serial()` first, so the tests also pass under `cargo test`, which runs a
//! file's tests on parallel threads (nextest runs each in its own process).
#![allow(dead_code, unused_macros, unused_imports, unreachable_pub)]

use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Barrier, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use instrument::{
    Batch, ClockSource, Event, Interests, Outcome, PipelineGuard, Sink, SinkError, SinkStatus,
    Snapshot,
};
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

/// A pipeline on the default (counter) clock delivering to `sink`: for async tests, whose tasks
/// move between threads while the mock clock is per thread.
pub fn install_counter_clock(sink: &MemorySink) -> PipelineGuard {
    instrument::builder()
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

/// The pipeline's view of the sink named `sink`.
pub fn status(pipeline: &PipelineGuard, sink: &str) -> SinkStatus {
    pipeline
        .self_metrics()
        .sinks
        .into_iter()
        .find(|s| s.name == sink)
        .unwrap_or_else(|| panic!("no sink named {sink}"))
}

/// Runs `calls(thread_index)` on `threads` new threads started together, and joins them. New
/// threads get buffers sized by the pipeline installed now.
pub fn on_threads(threads: usize, calls: impl Fn(usize) + Send + Sync + 'static) {
    let calls = Arc::new(calls);
    let start = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (calls, start) = (Arc::clone(&calls), Arc::clone(&start));
            thread::spawn(move || {
                start.wait();
                calls(t);
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("recording thread");
    }
}

/// Checks the snapshot's books two independent ways: the durations in the histograms
/// (`timed`, summed over every callsite and outcome) are the records the drain took off the
/// queues (`events_recorded`), and the calls counted without a duration (`dropped`) are the ones
/// the loss tables and drop markers accounted for (`events_dropped`).
pub fn assert_accounted(snapshot: &Snapshot) {
    let timed: u64 = snapshot.calls.iter().map(|c| c.total.timed).sum();
    let dropped: u64 = snapshot.calls.iter().map(|c| c.total.dropped).sum();
    let metrics = &snapshot.self_metrics;
    assert_eq!(
        (timed, dropped),
        (metrics.events_recorded, metrics.events_dropped),
        "(timed, dropped) summed over the snapshot against the records drained and dropped"
    );
}

/// A sink storing into `inner` whose first write signals the returned receiver, then blocks
/// until the test drops the returned sender.
pub fn gate(
    inner: MemorySink,
) -> (
    Hooked,
    crossbeam_channel::Receiver<()>,
    crossbeam_channel::Sender<()>,
) {
    let (entered, has_entered) = crossbeam_channel::unbounded();
    let (release, released) = crossbeam_channel::bounded::<()>(0);
    let mut released = Some(released);
    let gate = Hooked::new(inner).before_write(move || {
        if let Some(release) = released.take() {
            let _ = entered.send(());
            let _ = release.recv();
        }
        Ok(())
    });
    (gate, has_entered, release)
}

/// The sinks an incomplete flush or shutdown names as not having finished in time.
pub fn timed_out_sinks(result: Result<(), instrument::Error>) -> Vec<String> {
    match result {
        Err(instrument::Error::Incomplete { sinks, .. }) => sinks
            .into_iter()
            .filter(|s| s.timed_out)
            .map(|s| s.sink)
            .collect(),
        other => panic!("expected sinks that timed out, got {other:?}"),
    }
}

/// Runs `f` on a new thread and returns its result, or panics naming `what` when it has not
/// finished within `limit` (a guard against hanging, not a timing assertion: the limits are
/// generous, and the failure modes they catch block for ever or for the whole flush timeout).
pub fn within<T: Send + 'static>(
    what: &str,
    limit: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> T {
    let (tx, rx) = crossbeam_channel::bounded(1);
    thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}"))
}

/// How long [`eventually`] waits before giving up.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(90);

/// Polls `check` every `every` until it returns `Some`, panicking with `what` after
/// [`GIVE_UP_AFTER`] (a guard against waiting for ever, not a timing assertion).
pub fn eventually<T>(what: &str, every: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + GIVE_UP_AFTER;
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        thread::sleep(every);
    }
}

/// A loopback address whose port nobody listens on right now, for a child process to listen on.
pub fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

/// The default name of an instrumented function of the calling module.
macro_rules! name {
    ($name:literal) => {
        concat!(module_path!(), "::", $name)
    };
}
pub(crate) use name;

/// A `MemorySink` with test behaviour around it: `before_write` runs before each batch is stored
/// and may fail the write, `after_write` after each stored batch, `before_flush` before each
/// flush. Name, interests, flush and shutdown are the inner sink's.
pub struct Hooked {
    inner: MemorySink,
    before_write: Box<dyn FnMut() -> Result<(), SinkError> + Send>,
    after_write: Box<dyn FnMut() + Send>,
    before_flush: Box<dyn FnMut() + Send>,
    before_shutdown: Box<dyn FnMut() + Send>,
}

impl Hooked {
    /// `inner`, with no behaviour added yet.
    pub fn new(inner: MemorySink) -> Self {
        Hooked {
            inner,
            before_write: Box::new(|| Ok(())),
            after_write: Box::new(|| {}),
            before_flush: Box::new(|| {}),
            before_shutdown: Box::new(|| {}),
        }
    }

    pub fn before_write(
        mut self,
        hook: impl FnMut() -> Result<(), SinkError> + Send + 'static,
    ) -> Self {
        self.before_write = Box::new(hook);
        self
    }

    pub fn after_write(mut self, hook: impl FnMut() + Send + 'static) -> Self {
        self.after_write = Box::new(hook);
        self
    }

    pub fn before_flush(mut self, hook: impl FnMut() + Send + 'static) -> Self {
        self.before_flush = Box::new(hook);
        self
    }

    pub fn before_shutdown(mut self, hook: impl FnMut() + Send + 'static) -> Self {
        self.before_shutdown = Box::new(hook);
        self
    }
}

impl Sink for Hooked {
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn interests(&self) -> Interests {
        self.inner.interests()
    }
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        (self.before_write)()?;
        self.inner.write(batch)?;
        (self.after_write)();
        Ok(())
    }
    fn flush(&mut self) -> Result<(), SinkError> {
        (self.before_flush)();
        self.inner.flush()
    }
    fn shutdown(&mut self) -> Result<(), SinkError> {
        (self.before_shutdown)();
        self.inner.shutdown()
    }
}
