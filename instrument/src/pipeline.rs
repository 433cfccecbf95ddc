//! Installing a pipeline, and the global state the hot path reads.
//!
//! The state word `STATE` is `generation << 8 | clock mode`; mode 0 means "not installed". The
//! hot path loads it once per call (relaxed). Records carry the generation's low byte, so records
//! written by a call that straddled a shutdown are recognised and discarded by the next pipeline.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::{JoinHandle, Thread};
use std::time::Duration;

use crossbeam_channel::{Receiver, SendTimeoutError, Sender};

use crate::audit::AuditEntry;
use crate::clock::{self, ClockSource, MODE_COUNTER, MODE_MOCK, MODE_OFF};
use crate::config::Config;
use crate::drain::{Control, Drain};
use crate::error::Error;
use crate::signal::WakeFlag;
use crate::sink::{SelfMetrics, Sink};

pub(crate) static STATE: AtomicU32 = AtomicU32::new(0);
static GENERATION: AtomicU32 = AtomicU32::new(0);
static INSTALLED: Mutex<bool> = Mutex::new(false);
static SHARED: RwLock<Option<Arc<Shared>>> = RwLock::new(None);
static WAKE: WakeFlag = WakeFlag {
    pending: std::sync::atomic::AtomicBool::new(false),
};
static DRAIN_THREAD: Mutex<Option<Thread>> = Mutex::new(None);

/// What producers of audit entries and control messages reach.
pub(crate) struct Shared {
    state: u32,
    audit_tx: Sender<AuditEntry>,
    audit_capacity: usize,
}

/// Asks the drain to run a cycle now, after the caller published its records. Cheap when a wake
/// is already pending (a fence and one load); see [`WakeFlag`].
pub(crate) fn wake() {
    if WAKE.request()
        && let Some(thread) = DRAIN_THREAD
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
    {
        thread.unpark();
    }
}

/// Called by the drain at the start of a cycle.
pub(crate) fn clear_wake() {
    WAKE.clear();
}

/// Converts a span of raw ticks under `state`'s clock to a duration.
pub(crate) fn ticks_to_duration(state: u32, ticks: u64) -> Option<Duration> {
    let mode = state & 0xff;
    (mode != MODE_OFF).then(|| Duration::from_nanos(clock::ticks_to_nanos(mode, ticks)))
}

fn shared() -> Option<Arc<Shared>> {
    SHARED
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

pub(crate) fn send_audit(entry: AuditEntry) -> Result<(), Error> {
    let shared = shared().ok_or(Error::NotInstalled)?;
    send_on(&shared, entry)
}

/// Sends the entry only if the pipeline of `state` is still the installed one.
pub(crate) fn send_audit_for(state: u32, entry: AuditEntry) -> Result<(), Error> {
    match shared() {
        Some(shared) if shared.state == state => send_on(&shared, entry),
        _ => Err(Error::NotInstalled),
    }
}

fn send_on(shared: &Shared, mut entry: AuditEntry) -> Result<(), Error> {
    loop {
        match shared
            .audit_tx
            .send_timeout(entry, Duration::from_millis(1))
        {
            Ok(()) => {
                if shared.audit_tx.len() * 2 >= shared.audit_capacity {
                    wake();
                }
                return Ok(());
            }
            Err(SendTimeoutError::Timeout(back)) => {
                entry = back;
                wake();
            }
            Err(SendTimeoutError::Disconnected(_)) => return Err(Error::NotInstalled),
        }
    }
}

/// Adds to a counter (the `counter!` macro).
#[doc(hidden)]
#[inline]
pub fn counter_add(callsite: &'static crate::callsite::Callsite, n: u64) {
    if STATE.load(Ordering::Relaxed) & 0xff != MODE_OFF {
        crate::buffer::count(callsite, n);
    }
}

/// Sets a gauge (the `gauge!` macro).
#[doc(hidden)]
#[inline]
pub fn gauge_set(callsite: &'static crate::callsite::Callsite, value: f64) {
    // Gauges are set at a modest rate; a per-callsite lock keeps value, pipeline and order
    // consistent so the drain can report the value set last.
    static SEQUENCE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let state = STATE.load(Ordering::Relaxed);
    if state & 0xff != MODE_OFF {
        let _ = callsite.index();
        let mut cell = callsite
            .gauge
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        cell.state = state;
        cell.sequence = SEQUENCE.fetch_add(1, Ordering::Relaxed);
        cell.value = value;
    }
}

/// Starts configuring a pipeline.
///
/// ```
/// let pipeline = instrument::builder()
///     .drain_interval(std::time::Duration::from_millis(50))
///     .sink(instrument::NullSink)
///     .install()?;
/// pipeline.flush()?;
/// # Ok::<(), instrument::Error>(())
/// ```
pub fn builder() -> Builder {
    Builder::default()
}

/// Configures and installs the pipeline. See [`builder`].
#[derive(Default)]
#[must_use = "a builder does nothing until `install` is called"]
pub struct Builder {
    config: Config,
    sinks: Vec<Box<dyn Sink>>,
}

impl std::fmt::Debug for Builder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field(
                "sinks",
                &self
                    .sinks
                    .iter()
                    .map(|s| s.name().to_owned())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Builder {
    /// Replaces all settings with `config` (sinks are kept).
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Reads settings from a TOML file (see [`Config`]).
    ///
    /// # Errors
    /// As [`Config::from_toml_file`].
    pub fn config_file(self, path: impl AsRef<std::path::Path>) -> Result<Self, Error> {
        Ok(self.config(Config::from_toml_file(path)?))
    }

    /// Adds a sink. Each sink gets its own worker thread.
    pub fn sink(mut self, sink: impl Sink) -> Self {
        self.sinks.push(Box::new(sink));
        self
    }

    /// See [`Config::drain_interval`].
    pub fn drain_interval(mut self, interval: Duration) -> Self {
        self.config.drain_interval = interval;
        self
    }

    /// See [`Config::window`].
    pub fn window(mut self, window: Duration) -> Self {
        self.config.window = window;
        self
    }

    /// See [`Config::queue_capacity`].
    pub fn queue_capacity(mut self, records: usize) -> Self {
        self.config.queue_capacity = records;
        self
    }

    /// See [`Config::audit_capacity`].
    pub fn audit_capacity(mut self, entries: usize) -> Self {
        self.config.audit_capacity = entries;
        self
    }

    /// See [`Config::sink_backlog`].
    pub fn sink_backlog(mut self, batches: usize) -> Self {
        self.config.sink_backlog = batches;
        self
    }

    /// See [`Config::flush_timeout`].
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.config.flush_timeout = timeout;
        self
    }

    /// See [`Config::slow_threshold`].
    pub fn slow_threshold(mut self, threshold: Duration) -> Self {
        self.config.slow_threshold = Some(threshold);
        self
    }

    /// See [`Config::max_retries`].
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.config.max_retries = retries;
        self
    }

    /// See [`Config::clock`].
    pub fn clock(mut self, clock: ClockSource) -> Self {
        self.config.clock = clock;
        self
    }

    /// Installs the pipeline: starts the drain and sink threads and turns recording on.
    ///
    /// # Errors
    /// [`Error::AlreadyInstalled`] while another guard is alive, [`Error::InvalidConfig`],
    /// [`Error::Spawn`] if a thread cannot be started.
    pub fn install(self) -> Result<PipelineGuard, Error> {
        self.config.validate()?;
        let mut installed = INSTALLED.lock().unwrap_or_else(PoisonError::into_inner);
        if *installed {
            return Err(Error::AlreadyInstalled);
        }
        let mode = match self.config.clock {
            ClockSource::Counter => {
                clock::counter();
                MODE_COUNTER
            }
            ClockSource::Mock => MODE_MOCK,
        };
        let generation = GENERATION.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        let state = (generation << 8) | mode;
        crate::buffer::QUEUE_CAPACITY.store(self.config.queue_capacity as u32, Ordering::Relaxed);

        let (audit_tx, audit_rx) = crossbeam_channel::bounded(self.config.audit_capacity);
        let (control_tx, control_rx) = crossbeam_channel::unbounded();
        let metrics = Arc::new(Mutex::new(SelfMetrics::default()));
        let drain = Drain::new(
            &self.config,
            self.sinks,
            state,
            audit_rx,
            control_rx,
            Arc::clone(&metrics),
        )?;
        let handle = std::thread::Builder::new()
            .name("instrument-drain".into())
            .spawn(move || drain.run())
            .map_err(|source| Error::Spawn {
                what: "drain".into(),
                source,
            })?;
        *DRAIN_THREAD.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(handle.thread().clone());
        *SHARED.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(Shared {
            state,
            audit_tx,
            audit_capacity: self.config.audit_capacity,
        }));
        STATE.store(state, Ordering::Release);
        *installed = true;
        Ok(PipelineGuard {
            control: control_tx,
            drain: Some(handle),
            metrics,
            flush_timeout: self.config.flush_timeout,
        })
    }
}

/// The installed pipeline. Dropping it flushes every sink and stops the pipeline's threads.
#[must_use = "dropping the guard shuts the pipeline down"]
pub struct PipelineGuard {
    control: Sender<Control>,
    drain: Option<JoinHandle<()>>,
    metrics: Arc<Mutex<SelfMetrics>>,
    flush_timeout: Duration,
}

impl std::fmt::Debug for PipelineGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineGuard")
            .field("flush_timeout", &self.flush_timeout)
            .finish_non_exhaustive()
    }
}

impl PipelineGuard {
    /// Returns once every record made before the call is in every sink and every sink has
    /// flushed, with a snapshot of all aggregates delivered.
    ///
    /// # Errors
    /// [`Error::FlushTimeout`] naming the sinks that did not finish within the flush timeout,
    /// [`Error::SinkFlush`] if a sink's flush failed.
    pub fn flush(&self) -> Result<(), Error> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.request(Control::Flush(tx), &rx)
    }

    /// The pipeline's own metrics as of the last drain cycle.
    #[must_use]
    pub fn self_metrics(&self) -> SelfMetrics {
        self.metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Flushes, shuts every sink down and stops the pipeline, reporting what went wrong.
    ///
    /// # Errors
    /// As [`PipelineGuard::flush`].
    pub fn shutdown(mut self) -> Result<(), Error> {
        self.stop()
    }

    fn request(&self, control: Control, rx: &Receiver<Result<(), Error>>) -> Result<(), Error> {
        self.control
            .send(control)
            .map_err(|_| Error::NotInstalled)?;
        if let Some(handle) = &self.drain {
            handle.thread().unpark();
        }
        // The drain answers within the flush timeout; the margin covers the drain cycle itself.
        match rx.recv_timeout(self.flush_timeout + Duration::from_secs(5)) {
            Ok(result) => result,
            Err(_) => Err(Error::FlushTimeout {
                timeout: self.flush_timeout,
                sinks: vec!["(drain)".into()],
            }),
        }
    }

    fn stop(&mut self) -> Result<(), Error> {
        let Some(handle) = self.drain.take() else {
            return Ok(());
        };
        STATE.store(0, Ordering::Release);
        *SHARED.write().unwrap_or_else(PoisonError::into_inner) = None;
        let (tx, rx) = crossbeam_channel::bounded(1);
        let _ = self.control.send(Control::Shutdown(tx));
        handle.thread().unpark();
        let result = match rx.recv_timeout(self.flush_timeout + Duration::from_secs(5)) {
            Ok(result) => result,
            Err(_) => Err(Error::FlushTimeout {
                timeout: self.flush_timeout,
                sinks: vec!["(drain)".into()],
            }),
        };
        if result.is_ok() {
            let _ = handle.join();
        }
        *DRAIN_THREAD.lock().unwrap_or_else(PoisonError::into_inner) = None;
        *INSTALLED.lock().unwrap_or_else(PoisonError::into_inner) = false;
        result
    }
}

impl Drop for PipelineGuard {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("instrument: shutdown incomplete: {e}");
        }
    }
}
