//! Installing a pipeline and the guard that flushes and stops it.
//!
//! Install order: the drain and sink threads start, then audit intake opens, then the state word
//! turns recording on. Stop order is the reverse: recording off and audit intake closed (an
//! entry is accepted before that, and then drained, or refused with an error), the drain takes
//! everything accepted and queues a shutdown marker for every sink and exits, the guard joins
//! the drain, then waits for every sink's answer with one deadline for all of them (they shut
//! down in parallel, each on its own worker). A sink that does not answer in time is named, its
//! worker left to finish on its own; it shares nothing with a pipeline installed later.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::Sender;

use crate::audit_queue::AuditQueue;
use crate::clock::{self, ClockSource, MODE_COUNTER, MODE_MOCK};
use crate::collector::delivery::{SinkView, Ticket};
use crate::collector::{Beat, Control, Drain};
use crate::config::Config;
use crate::error::Error;
use crate::sink::{SelfMetrics, Sink};
use crate::state::STATE;

static GENERATION: AtomicU32 = AtomicU32::new(0);
static INSTALLED: Mutex<bool> = Mutex::new(false);

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

    /// See [`Config::sink_backlog_events`].
    pub fn sink_backlog_events(mut self, events: usize) -> Self {
        self.config.sink_backlog_events = events;
        self
    }

    /// See [`Config::cardinality_limit`].
    pub fn cardinality_limit(mut self, label_sets: usize) -> Self {
        self.config.cardinality_limit = label_sets;
        self
    }

    /// See [`Config::sink_tick`].
    pub fn sink_tick(mut self, tick: Duration) -> Self {
        self.config.sink_tick = tick;
        self
    }

    /// Installs the pipeline: starts the drain and sink threads and turns recording on.
    ///
    /// # Errors
    /// [`Error::AlreadyInstalled`] while another guard is alive, [`Error::InvalidConfig`]
    /// naming a key out of range, [`Error::Spawn`] if a thread cannot be started.
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
        crate::dynamic::set_cardinality_limit(self.config.cardinality_limit);
        crate::buffer::QUEUE_CAPACITY.store(self.config.queue_capacity as u32, Ordering::Relaxed);

        let audit = Arc::new(AuditQueue::new(self.config.audit_capacity));
        let (control_tx, control_rx) = crossbeam_channel::unbounded();
        let metrics = Arc::new(Mutex::new(SelfMetrics::default()));
        let beat = Arc::new(Beat::new());
        let mut drain = Drain::new(
            &self.config,
            self.sinks,
            state,
            Arc::clone(&audit),
            control_rx,
            Arc::clone(&metrics),
            Arc::clone(&beat),
        )?;
        let workers = drain.take_workers();
        let sinks: Vec<SinkView> = drain.sink_views();
        let wants_notices = drain.wants_notices();
        let handle = std::thread::Builder::new()
            .name("instrument-drain".into())
            .spawn(move || drain.run())
            .map_err(|source| Error::Spawn {
                what: "drain".into(),
                source,
            })?;
        crate::wake::set_drain(Some(handle.thread().clone()));
        crate::source::set_wanted(wants_notices);
        crate::audit_queue::set_current(Some(Arc::clone(&audit)));
        STATE.store(state, Ordering::Release);
        *installed = true;
        Ok(PipelineGuard {
            control: control_tx,
            drain: Some(handle),
            workers,
            audit,
            monitor: PipelineMonitor {
                metrics,
                sinks: Arc::from(sinks),
                beat,
                settings: MonitorSettings::of(&self.config),
            },
            flush_timeout: self.config.flush_timeout,
        })
    }
}

/// The installed pipeline. Dropping it flushes every sink and stops the pipeline's threads.
#[must_use = "dropping the guard shuts the pipeline down"]
pub struct PipelineGuard {
    control: Sender<Control>,
    drain: Option<JoinHandle<()>>,
    workers: Vec<(String, JoinHandle<()>)>,
    audit: Arc<AuditQueue>,
    monitor: PipelineMonitor,
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
    /// Returns `Ok` once every record, audit entry and notice made before the call is in every
    /// sink and every sink has flushed, with a snapshot of all aggregates delivered. The drain
    /// keeps draining while a flush waits; a stuck sink delays only the flush's answer.
    ///
    /// # Errors
    /// [`Error::Incomplete`] naming each sink that did not answer within the flush timeout,
    /// whose flush failed, or that lacks data (batches dropped or given up, audit entries not
    /// taken) since the previous flush, and what it lacks; [`Error::DrainPanicked`] when a
    /// drain cycle panicked since the previous flush; [`Error::DrainFailed`] when the drain
    /// stopped.
    pub fn flush(&self) -> Result<(), Error> {
        let ticket = Ticket::new("flush");
        let audit_upto = crate::audit_queue::last_sequence();
        self.control
            .send(Control::Flush(Arc::clone(&ticket), audit_upto))
            .map_err(|_| Error::NotInstalled)?;
        let Some(drain) = &self.drain else {
            return Err(Error::NotInstalled);
        };
        drain.thread().unpark();
        ticket.wait(self.flush_timeout, &|| !drain.is_finished())
    }

    /// The pipeline's own metrics as of the last drain cycle, with each sink's status as of
    /// now (so what a flush delivered shows as soon as it returns).
    #[must_use]
    pub fn self_metrics(&self) -> SelfMetrics {
        self.monitor.self_metrics()
    }

    /// A cloneable, read-only view of this pipeline for health checks and operations pages on
    /// other threads: its metrics, its sinks' statuses and whether its drain is alive. It
    /// outlives the guard and then reports the drain stopped.
    #[must_use]
    pub fn monitor(&self) -> PipelineMonitor {
        self.monitor.clone()
    }

    /// Flushes, shuts every sink down and stops the pipeline, reporting what went wrong. Every
    /// sink gets the whole flush timeout, in parallel; the pipeline counts as uninstalled only
    /// once its drain thread has ended.
    ///
    /// # Errors
    /// As [`PipelineGuard::flush`], with operation `shutdown`.
    pub fn shutdown(mut self) -> Result<(), Error> {
        self.stop()
    }

    fn stop(&mut self) -> Result<(), Error> {
        let Some(drain) = self.drain.take() else {
            return Ok(());
        };
        STATE.store(0, Ordering::Release);
        self.audit.close();
        crate::audit_queue::set_current(None);
        let ticket = Ticket::new("shutdown");
        let _ = self.control.send(Control::Shutdown(Arc::clone(&ticket)));
        drain.thread().unpark();
        // The drain never waits for a sink, so this ends once it has taken what was accepted
        // and queued the shutdown markers.
        let drained = drain.join();
        let result = match drained {
            Ok(()) => ticket.wait(self.flush_timeout, &|| false),
            Err(_) => Err(Error::DrainFailed {
                message: "the drain thread panicked during shutdown".into(),
            }),
        };
        for (index, (_, worker)) in std::mem::take(&mut self.workers).into_iter().enumerate() {
            // A worker that answered ends right after; one that did not is left behind with
            // its sink.
            if ticket.answered(index) {
                let _ = worker.join();
            }
        }
        self.monitor.beat.stopped.store(true, Ordering::Release);
        crate::source::set_wanted(false);
        crate::wake::set_drain(None);
        *INSTALLED.lock().unwrap_or_else(PoisonError::into_inner) = false;
        result
    }
}

/// A read-only view of an installed pipeline that other threads keep
/// ([`PipelineGuard::monitor`]): what health checks need to judge the drain, the thread
/// queues and every sink without holding the guard.
///
/// ```
/// let pipeline = instrument::builder().sink(instrument::NullSink).install()?;
/// let monitor = pipeline.monitor();
/// pipeline.flush()?;
/// assert!(monitor.drain_running());
/// assert_eq!(monitor.self_metrics().sinks[0].name, "null");
/// drop(pipeline);
/// assert!(!monitor.drain_running());
/// # Ok::<(), instrument::Error>(())
/// ```
#[derive(Clone)]
pub struct PipelineMonitor {
    metrics: Arc<Mutex<SelfMetrics>>,
    sinks: Arc<[SinkView]>,
    beat: Arc<Beat>,
    settings: MonitorSettings,
}

impl std::fmt::Debug for PipelineMonitor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineMonitor")
            .field("settings", &self.settings)
            .field("drain_running", &self.drain_running())
            .finish_non_exhaustive()
    }
}

/// The settings of a pipeline that judging its health needs ([`PipelineMonitor::settings`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct MonitorSettings {
    /// How often the drain runs when nothing wakes it ([`Config::drain_interval`]).
    pub drain_interval: Duration,
    /// The aggregation window ([`Config::window`]).
    pub window: Duration,
    /// Records per thread queue ([`Config::queue_capacity`]).
    pub queue_capacity: usize,
    /// Batches a sink may have waiting ([`Config::sink_backlog`]).
    pub sink_backlog: usize,
    /// Events a sink may have waiting ([`Config::sink_backlog_events`]).
    pub sink_backlog_events: usize,
    /// How often sinks tick ([`Config::sink_tick`]).
    pub sink_tick: Duration,
}

impl MonitorSettings {
    fn of(config: &Config) -> MonitorSettings {
        MonitorSettings {
            drain_interval: config.drain_interval,
            window: config.window,
            queue_capacity: config.queue_capacity,
            sink_backlog: config.sink_backlog,
            sink_backlog_events: config.sink_backlog_events,
            sink_tick: config.sink_tick,
        }
    }
}

impl PipelineMonitor {
    /// As [`PipelineGuard::self_metrics`].
    #[must_use]
    pub fn self_metrics(&self) -> SelfMetrics {
        let mut metrics = self
            .metrics
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        metrics.sinks = self.sinks.iter().map(SinkView::status).collect();
        metrics
    }

    /// Whether the drain is running: installed, not shut down, and not stopped after
    /// panicking cycles in a row.
    #[must_use]
    pub fn drain_running(&self) -> bool {
        !self.beat.stopped.load(Ordering::Acquire) && !self.beat.failed.load(Ordering::Acquire)
    }

    /// Whether the drain gave up after panicking cycles in a row (recording is off).
    #[must_use]
    pub fn drain_failed(&self) -> bool {
        self.beat.failed.load(Ordering::Acquire)
    }

    /// How long ago the drain last finished a cycle (since install, before its first). It
    /// runs at least every `drain_interval`, so a value many times that means a stuck drain.
    #[must_use]
    pub fn drain_lag(&self) -> Duration {
        self.beat.since_last()
    }

    /// The settings health checks judge by.
    #[must_use]
    pub fn settings(&self) -> MonitorSettings {
        self.settings
    }
}

impl Drop for PipelineGuard {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("instrument: shutdown incomplete: {e}");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    /// Issue 12 of the core's second round: a wake request left pending by an earlier pipeline
    /// made the next drain ignore wake-ups until its first full drain interval had passed, so
    /// audit producers waiting for room crawled.
    #[test]
    fn a_wake_request_left_over_does_not_mute_the_next_drain() {
        let pipeline = super::Builder::default()
            .drain_interval(Duration::from_secs(3600))
            .window(Duration::from_secs(3600))
            .audit_capacity(1)
            .install()
            .unwrap();
        drop(pipeline);
        crate::wake::leave_pending();
        let _pipeline = super::Builder::default()
            .drain_interval(Duration::from_secs(3600))
            .window(Duration::from_secs(3600))
            .audit_capacity(1)
            .install()
            .unwrap();
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::spawn(move || {
            for i in 0..3 {
                crate::audit(crate::AuditEntry::new("step").input(i.to_string())).unwrap();
            }
            let _ = tx.send(());
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("audit producers waiting for room wake the drain");
    }
}
