//! Health checks: a registry of named components, each with a check, a timeout, a time its
//! result is cached for and a criticality; an overall status derived from them; notices on
//! every change; `/health` and `/ready` on the operations endpoint.
//!
//! # Statuses
//! A check answers a [`Health`]: a [`Status`] (`healthy`, `degraded`, `unhealthy`, or
//! `unknown` before a check has answered) and a reason. The overall status is the worst of the
//! components' statuses, ranked `healthy < degraded < unknown < unhealthy`, where a component
//! that is not [critical](ComponentBuilder::critical) counts at most as `degraded`. The
//! process is *ready* (`/ready` answers `200`) while the overall status is `healthy` or
//! `degraded`, and `503` otherwise.
//!
//! # Running checks
//! A component's check runs when its cached result is older than its TTL (default 30 s), on
//! a thread of its own (`instrument-health-<name>`), never on the caller's (except checks
//! registered [`inline`](ComponentBuilder::inline), which only read memory: the built-in
//! pipeline and system checks, so that they start no thread every second): a check that
//! panics makes its component `unhealthy` with the panic's message, and one that has not
//! answered within its timeout (default 5 s) makes it `unhealthy` with "did not answer within
//! ..." while the rest of the report goes on. A check still running at its next due time is
//! not started again (a hung check costs one thread, not one per interval); its component
//! stays `unhealthy` until it answers. Asynchronous checks
//! ([`ComponentBuilder::check_async`]) run on a current-thread tokio runtime on that thread.
//!
//! [`HealthRegistry::report`] runs the checks that are due and waits for them (each at most
//! its timeout); [`HealthRegistry::start_checker`] does so every second on a thread of its
//! own, so that status changes are noticed and published as they happen, not only when
//! someone asks. `GET /health` runs the report on tokio's blocking pool, never on the
//! endpoint's thread, and answers JSON:
//!
//! ```json
//! {"status":"degraded","ready":true,"checked_at":"2026-11-25T10:16:53.123456Z",
//!  "components":[{"name":"sink:sqlite","status":"degraded","reason":"cannot checkpoint ...",
//!                 "critical":true,"checked_at":"2026-11-25T10:16:53.101000Z",
//!                 "duration_ns":81234,"cached":false}]}
//! ```
//!
//! with status `200` while ready and `503` otherwise, like `/ready`, whose body is one line.
//!
//! # Status changes
//! Each change of a component's status, and of the overall status (component `overall`), is
//! published as a [`Notice`] from source `health` with fields `component`, `status` and
//! `reason` (level `info` for healthy, `warn` for degraded and unknown, `error` for
//! unhealthy); the first status of each component counts as a change. The `SQLite` sink stores
//! them in its `health` table as well as in `notices`, where `instrumentctl health` reads them.
//!
//! # Built-in checks
//! [`HealthRegistry::watch_pipeline`] registers, from a [`PipelineMonitor`]:
//! `drain` (running, and its lag against its interval), `queues` (call durations or notices
//! dropped since the last check), and `sink:<name>` for each sink (its own health, its
//! backlog against the pipeline's bounds, and data it lost since the last check).
//! [`HealthRegistry::watch_system`] adds `system` (CPU and memory against thresholds, from a
//! [`SystemSampler`](crate::system::SystemSampler)) and [`HealthRegistry::watch_data_dir`]
//! `data_dir` (it exists, a file can be created in it, and its file system's free space
//! against thresholds). See [`checks`] for the thresholds.
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use instrument_sinks::health::{Health, HealthRegistry, Status};
//!
//! let registry = HealthRegistry::new();
//! registry.component("cache").check(|| Health::healthy());
//! registry
//!     .component("upstream")
//!     .critical(false)
//!     .timeout(Duration::from_millis(200))
//!     .check(|| Health::degraded("answers slowly"));
//! let report = registry.report();
//! assert_eq!(report.status, Status::Degraded);
//! assert!(report.ready);
//! assert_eq!(report.component("upstream").unwrap().reason.as_deref(), Some("answers slowly"));
//! ```

pub mod checks;

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use instrument::{Level, Notice, PipelineMonitor, SinkHealth};
use serde::Serialize;

/// How long a component's result is cached by default: 30 s.
pub const DEFAULT_TTL: Duration = Duration::from_secs(30);
/// How long a check may take by default: 5 s.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// How often [`HealthRegistry::start_checker`] looks for due checks by default: 1 s.
pub const DEFAULT_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// A component's (or the overall) status, ordered from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Status {
    /// Working.
    Healthy,
    /// Working with problems.
    Degraded,
    /// Not known yet: no check has answered.
    Unknown,
    /// Not working.
    Unhealthy,
}

impl Status {
    /// `healthy`, `degraded`, `unknown` or `unhealthy`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Healthy => "healthy",
            Status::Degraded => "degraded",
            Status::Unknown => "unknown",
            Status::Unhealthy => "unhealthy",
        }
    }

    /// The status named by [`as_str`](Self::as_str).
    #[must_use]
    pub fn parse(text: &str) -> Option<Status> {
        Some(match text {
            "healthy" => Status::Healthy,
            "degraded" => Status::Degraded,
            "unknown" => Status::Unknown,
            "unhealthy" => Status::Unhealthy,
            _ => return None,
        })
    }

    /// The level of a notice announcing this status.
    #[must_use]
    pub fn level(self) -> Level {
        match self {
            Status::Healthy => Level::Info,
            Status::Degraded | Status::Unknown => Level::Warn,
            Status::Unhealthy => Level::Error,
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a check answers: a status and, unless healthy, why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Health {
    /// The status.
    pub status: Status,
    /// Why, for people.
    pub reason: Option<String>,
}

impl Health {
    /// Healthy, no reason.
    #[must_use]
    pub fn healthy() -> Health {
        Health {
            status: Status::Healthy,
            reason: None,
        }
    }

    /// Degraded, with a reason.
    #[must_use]
    pub fn degraded(reason: impl Into<String>) -> Health {
        Health::new(Status::Degraded, reason)
    }

    /// Unhealthy, with a reason.
    #[must_use]
    pub fn unhealthy(reason: impl Into<String>) -> Health {
        Health::new(Status::Unhealthy, reason)
    }

    /// Any status with a reason.
    #[must_use]
    pub fn new(status: Status, reason: impl Into<String>) -> Health {
        Health {
            status,
            reason: Some(reason.into()),
        }
    }
}

impl From<SinkHealth> for Health {
    fn from(health: SinkHealth) -> Health {
        match health {
            SinkHealth::Degraded(reason) => Health::degraded(reason),
            SinkHealth::Unhealthy(reason) => Health::unhealthy(reason),
            // `SinkHealth` is non-exhaustive: a future variant counts as healthy until this
            // mapping learns it.
            _ => Health::healthy(),
        }
    }
}

/// A synchronous health check. Closures `Fn() -> Health` are checks.
pub trait HealthCheck: Send + Sync + 'static {
    /// Checks the component. May block (up to the component's timeout, after which it is
    /// reported unhealthy while it goes on) and may panic (reported unhealthy).
    fn check(&self) -> Health;
}

impl<F: Fn() -> Health + Send + Sync + 'static> HealthCheck for F {
    fn check(&self) -> Health {
        self()
    }
}

type BoxFuture = Pin<Box<dyn Future<Output = Health> + Send>>;

/// A registered check, synchronous or asynchronous.
#[derive(Clone)]
enum Check {
    Sync(Arc<dyn HealthCheck>),
    Async(Arc<dyn Fn() -> BoxFuture + Send + Sync>),
}

impl Check {
    /// Runs the check; a panic is its component's `unhealthy` answer, with the message.
    fn run_guarded(&self) -> Health {
        catch_unwind(AssertUnwindSafe(|| self.run())).unwrap_or_else(|panic| {
            Health::unhealthy(format!("the check panicked: {}", panic_text(&*panic)))
        })
    }

    fn run(&self) -> Health {
        match self {
            Check::Sync(check) => check.check(),
            Check::Async(make) => {
                match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime.block_on(make()),
                    Err(e) => Health::unhealthy(format!(
                        "cannot start a runtime for the asynchronous check: {e}"
                    )),
                }
            }
        }
    }
}

/// Registers one component; finish with [`check`](ComponentBuilder::check) or
/// [`check_async`](ComponentBuilder::check_async).
#[must_use = "a component is registered by `check` or `check_async`"]
pub struct ComponentBuilder<'a> {
    registry: &'a HealthRegistry,
    name: String,
    timeout: Duration,
    ttl: Duration,
    critical: bool,
    inline: bool,
}

impl fmt::Debug for ComponentBuilder<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ComponentBuilder")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .field("ttl", &self.ttl)
            .field("critical", &self.critical)
            .field("inline", &self.inline)
            .finish_non_exhaustive()
    }
}

impl ComponentBuilder<'_> {
    /// How long the check may take before the component is reported unhealthy (default
    /// [`DEFAULT_TIMEOUT`]).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How long a result is reused before the check runs again (default [`DEFAULT_TTL`]).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Whether the component's status counts fully in the overall status (default `true`);
    /// a component that is not critical makes the whole at most `degraded`.
    pub fn critical(mut self, critical: bool) -> Self {
        self.critical = critical;
        self
    }

    /// Runs the (synchronous) check on the thread that makes the report, under the registry's
    /// lock, instead of on a thread of its own; for checks that only read memory and cannot
    /// block, such as the built-in pipeline and system checks. It saves starting a thread for
    /// every run (the built-in pipeline checks run every second). A panic still makes the
    /// component `unhealthy` with its message; a timeout cannot be enforced, so a check that
    /// may block must not be inline. Asynchronous checks always get their own thread.
    ///
    /// ```
    /// use instrument_sinks::health::{Health, HealthRegistry, Status};
    ///
    /// let registry = HealthRegistry::new();
    /// let reporting = std::thread::current().id();
    /// registry
    ///     .component("cache")
    ///     .inline()
    ///     .check(move || {
    ///         assert_eq!(std::thread::current().id(), reporting);
    ///         Health::healthy()
    ///     });
    /// assert_eq!(registry.report().status, Status::Healthy);
    /// ```
    pub fn inline(mut self) -> Self {
        self.inline = true;
        self
    }

    /// Registers the component with a synchronous check. A name registered before is
    /// replaced, with its cached result.
    pub fn check(self, check: impl HealthCheck) {
        self.register(Check::Sync(Arc::new(check)));
    }

    /// Registers the component with an asynchronous check: `make` returns the future of one
    /// check, which runs on a current-thread tokio runtime (timers and I/O enabled) on the
    /// check's own thread.
    ///
    /// ```
    /// use instrument_sinks::health::{Health, HealthRegistry, Status};
    ///
    /// let registry = HealthRegistry::new();
    /// registry.component("upstream").check_async(|| async {
    ///     tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    ///     Health::healthy()
    /// });
    /// assert_eq!(registry.report().status, Status::Healthy);
    /// ```
    pub fn check_async<F, Fut>(self, make: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Health> + Send + 'static,
    {
        self.register(Check::Async(Arc::new(move || -> BoxFuture {
            Box::pin(make())
        })));
    }

    fn register(self, check: Check) {
        let inline = self.inline && matches!(check, Check::Sync(_));
        let slot = Slot {
            name: self.name,
            check,
            timeout: self.timeout,
            ttl: self.ttl,
            critical: self.critical,
            inline,
            cached: None,
            running: None,
            published: None,
        };
        let mut slots = self.registry.slots();
        if let Some(existing) = slots.iter_mut().find(|s| s.name == slot.name) {
            *existing = slot;
        } else {
            slots.push(slot);
        }
    }
}

/// One check in progress, on its own thread.
struct Run {
    started: Instant,
    /// Whether a report has already said that it did not answer in time.
    overdue: AtomicBool,
    result: Mutex<Option<(Health, Duration)>>,
    done: Condvar,
}

impl Run {
    /// Stores the check's answer, timed from the start, and wakes whoever waits for it.
    fn answer(&self, health: Health) {
        *self.result.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((health, self.started.elapsed()));
        self.done.notify_all();
    }

    /// Waits until the run has answered or `deadline` has passed; its result if it answered.
    fn wait_until(&self, deadline: Instant) -> Option<(Health, Duration)> {
        let mut result = self.result.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(done) = result.as_ref() {
                return Some(done.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            result = self
                .done
                .wait_timeout(result, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// The last result of a component.
#[derive(Clone)]
struct Cached {
    health: Health,
    /// When it was stored, on the clock TTLs are measured by.
    at: Instant,
    checked_at: SystemTime,
    took: Duration,
}

struct Slot {
    name: String,
    check: Check,
    timeout: Duration,
    ttl: Duration,
    critical: bool,
    /// Run on the reporting thread ([`ComponentBuilder::inline`]).
    inline: bool,
    cached: Option<Cached>,
    running: Option<Arc<Run>>,
    /// The status last published as a notice.
    published: Option<Status>,
}

impl Slot {
    /// Starts the check on a thread of its own, or runs it here when it is inline.
    fn start(&mut self) -> Arc<Run> {
        let run = Arc::new(Run {
            started: Instant::now(),
            overdue: AtomicBool::new(false),
            result: Mutex::new(None),
            done: Condvar::new(),
        });
        let check = self.check.clone();
        if self.inline {
            run.answer(check.run_guarded());
            self.running = Some(Arc::clone(&run));
            return run;
        }
        let answer = Arc::clone(&run);
        let spawned = std::thread::Builder::new()
            .name(format!("instrument-health-{}", self.name))
            .spawn(move || answer.answer(check.run_guarded()));
        if let Err(e) = spawned {
            *run.result.lock().unwrap_or_else(PoisonError::into_inner) = Some((
                Health::unhealthy(format!("cannot start the check's thread: {e}")),
                Duration::ZERO,
            ));
        }
        self.running = Some(Arc::clone(&run));
        run
    }
}

fn panic_text(panic: &(dyn Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

struct Inner {
    slots: Mutex<Vec<Slot>>,
    /// The overall status last published.
    overall: Mutex<Option<Status>>,
}

/// The registry of components; cloning it shares it (register anywhere, report anywhere).
#[derive(Clone)]
pub struct HealthRegistry {
    inner: Arc<Inner>,
}

impl fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<String> = self.slots().iter().map(|s| s.name.clone()).collect();
        f.debug_struct("HealthRegistry")
            .field("components", &names)
            .finish()
    }
}

impl Default for HealthRegistry {
    fn default() -> Self {
        HealthRegistry::new()
    }
}

/// One component in a [`HealthReport`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ComponentReport {
    /// The component's name.
    pub name: String,
    /// Its status.
    pub status: Status,
    /// Why, unless healthy.
    pub reason: Option<String>,
    /// Whether it counts fully in the overall status.
    pub critical: bool,
    /// When its check answered (or timed out); `None` before the first.
    #[serde(serialize_with = "ser_time")]
    pub checked_at: Option<SystemTime>,
    /// How long its check took, in nanoseconds.
    #[serde(rename = "duration_ns", serialize_with = "ser_nanos")]
    pub duration: Duration,
    /// Whether the result was reused from the cache (younger than the component's TTL).
    pub cached: bool,
}

/// The overall status and every component's, from [`HealthRegistry::report`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct HealthReport {
    /// The overall status.
    pub status: Status,
    /// Whether the process is ready: the overall status is healthy or degraded.
    pub ready: bool,
    /// When the report was made.
    #[serde(serialize_with = "ser_time")]
    pub checked_at: Option<SystemTime>,
    /// Every component, in registration order.
    pub components: Vec<ComponentReport>,
}

impl HealthReport {
    /// The component named `name`.
    #[must_use]
    pub fn component(&self, name: &str) -> Option<&ComponentReport> {
        self.components.iter().find(|c| c.name == name)
    }

    /// The overall status of `components`: the worst, a component that is not critical
    /// counting at most as degraded; healthy when there are none.
    #[must_use]
    pub fn overall(components: &[ComponentReport]) -> Status {
        components
            .iter()
            .map(|c| {
                if c.critical {
                    c.status
                } else {
                    c.status.min(Status::Degraded)
                }
            })
            .max()
            .unwrap_or(Status::Healthy)
    }
}

#[allow(clippy::ref_option, clippy::trivially_copy_pass_by_ref)]
fn ser_time<S: serde::Serializer>(time: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match time {
        Some(time) => s.collect_str(&humantime::format_rfc3339_micros(*time)),
        None => s.serialize_none(),
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn ser_nanos<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

impl HealthRegistry {
    /// An empty registry.
    #[must_use]
    pub fn new() -> HealthRegistry {
        HealthRegistry {
            inner: Arc::new(Inner {
                slots: Mutex::new(Vec::new()),
                overall: Mutex::new(None),
            }),
        }
    }

    fn slots(&self) -> MutexGuard<'_, Vec<Slot>> {
        self.inner
            .slots
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts registering the component `name`.
    pub fn component(&self, name: impl Into<String>) -> ComponentBuilder<'_> {
        ComponentBuilder {
            registry: self,
            name: name.into(),
            timeout: DEFAULT_TIMEOUT,
            ttl: DEFAULT_TTL,
            inline: false,
            critical: true,
        }
    }

    /// The names of the registered components, in registration order.
    #[must_use]
    pub fn components(&self) -> Vec<String> {
        self.slots().iter().map(|s| s.name.clone()).collect()
    }

    /// Runs the checks that are due (their result older than their TTL), waits for them (each
    /// at most its timeout), publishes the status changes, and returns every component's
    /// status and the overall one.
    #[must_use]
    pub fn report(&self) -> HealthReport {
        self.report_at(Instant::now())
    }

    /// [`report`](Self::report) as if the time were `now`, for tests that move the TTL clock
    /// forward without waiting (timeouts are always measured in real time).
    #[must_use]
    pub fn report_at(&self, now: Instant) -> HealthReport {
        // Start what is due, under the lock; wait outside it, so that a slow check never holds
        // up registration or another report.
        let mut waits = Vec::new();
        {
            let mut slots = self.slots();
            for (index, slot) in slots.iter_mut().enumerate() {
                // `unknown` is no answer yet (a sampler without samples): asked again each time.
                let due = slot.cached.as_ref().is_none_or(|c| {
                    c.health.status == Status::Unknown
                        || now
                            .checked_duration_since(c.at)
                            .is_none_or(|age| age >= slot.ttl)
                });
                if !due {
                    continue;
                }
                let run = match &slot.running {
                    Some(run) => Arc::clone(run),
                    None => slot.start(),
                };
                waits.push((index, slot.name.clone(), run, slot.timeout));
            }
        }
        let mut results = Vec::with_capacity(waits.len());
        for (index, name, run, timeout) in waits {
            let answer = run.wait_until(run.started + timeout);
            results.push((index, name, run, timeout, answer));
        }
        let mut notices = Vec::new();
        let report = {
            let mut slots = self.slots();
            let checked_at = SystemTime::now();
            for (index, name, run, timeout, answer) in results {
                // Registration may have replaced the slot meanwhile: match by name and run.
                let Some(slot) = slots
                    .get_mut(index)
                    .filter(|s| s.name == name)
                    .filter(|s| s.running.as_ref().is_some_and(|r| Arc::ptr_eq(r, &run)))
                else {
                    continue;
                };
                let (health, took) = if let Some((health, took)) = answer {
                    slot.running = None;
                    (health, took)
                } else {
                    overdue(&run, timeout)
                };
                slot.cached = Some(Cached {
                    health,
                    at: now,
                    checked_at,
                    took,
                });
            }
            let components: Vec<ComponentReport> = slots
                .iter_mut()
                .map(|slot| component_report(slot, now, &mut notices))
                .collect();
            let status = HealthReport::overall(&components);
            let mut overall = self
                .inner
                .overall
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if *overall != Some(status) && !components.is_empty() {
                *overall = Some(status);
                let worst: Vec<String> = components
                    .iter()
                    .filter(|c| c.status != Status::Healthy)
                    .map(|c| format!("{} {}", c.name, c.status))
                    .collect();
                let reason = (!worst.is_empty()).then(|| worst.join(", "));
                notices.push(change_notice("overall", &Health { status, reason }));
            }
            HealthReport {
                status,
                ready: matches!(status, Status::Healthy | Status::Degraded),
                checked_at: Some(checked_at),
                components,
            }
        };
        for notice in notices {
            instrument::publish(notice);
        }
        report
    }

    /// Whether the process is ready, from a fresh [`report`](Self::report).
    #[must_use]
    pub fn ready(&self) -> bool {
        self.report().ready
    }

    /// Registers the built-in checks of a pipeline: `drain`, `queues` and `sink:<name>` for
    /// each of its sinks (see [`checks`]).
    pub fn watch_pipeline(&self, monitor: &PipelineMonitor) {
        checks::register_pipeline(self, monitor);
    }

    /// Registers `system`: CPU and memory use from `sampler` against
    /// [`SystemThresholds`](checks::SystemThresholds) (not critical).
    pub fn watch_system(
        &self,
        sampler: crate::system::SystemHandle,
        thresholds: checks::SystemThresholds,
    ) {
        checks::register_system(self, sampler, thresholds);
    }

    /// Registers `data_dir`: `dir` exists and a file can be created in it, and its file
    /// system's free space against [`DiskThresholds`](checks::DiskThresholds).
    pub fn watch_data_dir(
        &self,
        dir: impl AsRef<std::path::Path>,
        thresholds: checks::DiskThresholds,
    ) {
        checks::register_data_dir(self, dir.as_ref(), thresholds);
    }

    /// Starts a thread (`instrument-health`) that makes a report every `interval` (default
    /// [`DEFAULT_CHECK_INTERVAL`]), so that checks run as their TTLs expire and status changes
    /// are published as they happen. It stops when the returned handle is dropped.
    ///
    /// # Errors
    /// The thread could not be started.
    pub fn start_checker(&self, interval: Duration) -> std::io::Result<HealthChecker> {
        let registry = self.clone();
        let stop = Arc::new((Mutex::new(false), Condvar::new()));
        let stopping = Arc::clone(&stop);
        let interval = interval.max(Duration::from_millis(1));
        let thread = std::thread::Builder::new()
            .name("instrument-health".into())
            .spawn(move || {
                let (flag, wake) = &*stopping;
                loop {
                    let _ = registry.report();
                    let stopped = flag.lock().unwrap_or_else(PoisonError::into_inner);
                    let (stopped, _) = wake
                        .wait_timeout_while(stopped, interval, |s| !*s)
                        .unwrap_or_else(PoisonError::into_inner);
                    if *stopped {
                        return;
                    }
                }
            })?;
        Ok(HealthChecker {
            stop,
            thread: Some(thread),
            stopped: AtomicBool::new(false),
        })
    }

    /// The `/health` handler: the report as JSON (see the [module docs](self)), `200` while
    /// ready, `503` otherwise. The report runs on tokio's blocking pool.
    #[cfg(feature = "http")]
    pub fn health_route(&self) -> axum::routing::MethodRouter {
        let registry = self.clone();
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                let report = tokio::task::spawn_blocking(move || registry.report()).await;
                http::health_response(report)
            }
        })
    }

    /// The `/ready` handler: `200 ready` or `503 not ready: ...` naming the components at
    /// fault.
    #[cfg(feature = "http")]
    pub fn ready_route(&self) -> axum::routing::MethodRouter {
        let registry = self.clone();
        axum::routing::get(move || {
            let registry = registry.clone();
            async move {
                let report = tokio::task::spawn_blocking(move || registry.report()).await;
                http::ready_response(report)
            }
        })
    }

    /// Adds `/health` and `/ready` to an operations endpoint being built (for example the one
    /// given to [`PrometheusSinkBuilder::endpoint`](crate::PrometheusSinkBuilder::endpoint)).
    #[cfg(feature = "http")]
    #[must_use]
    pub fn mount(&self, endpoint: crate::http::EndpointBuilder) -> crate::http::EndpointBuilder {
        endpoint
            .route("/health", self.health_route())
            .route("/ready", self.ready_route())
    }
}

#[cfg(feature = "http")]
mod http {
    use axum::http::StatusCode;
    use axum::http::header::CONTENT_TYPE;
    use axum::response::{IntoResponse, Response};

    use super::{HealthReport, Status};

    pub(super) fn health_response(
        report: Result<HealthReport, tokio::task::JoinError>,
    ) -> Response {
        match report {
            Ok(report) => {
                let code = if report.ready {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                };
                let mut body = serde_json::to_string(&report).unwrap_or_default();
                body.push('\n');
                (code, [(CONTENT_TYPE, "application/json")], body).into_response()
            }
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the health report failed: {e}\n"),
            )
                .into_response(),
        }
    }

    pub(super) fn ready_response(report: Result<HealthReport, tokio::task::JoinError>) -> Response {
        match report {
            Ok(report) if report.ready => (StatusCode::OK, "ready\n").into_response(),
            Ok(report) => {
                let faults: Vec<String> = report
                    .components
                    .iter()
                    .filter(|c| c.critical && c.status >= Status::Unknown)
                    .map(|c| match &c.reason {
                        Some(reason) => format!("{} {} ({reason})", c.name, c.status),
                        None => format!("{} {}", c.name, c.status),
                    })
                    .collect();
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("not ready: {}\n", faults.join("; ")),
                )
                    .into_response()
            }
            Err(e) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the health report failed: {e}\n"),
            )
                .into_response(),
        }
    }
}

/// The answer of a check that did not answer within its timeout: the first report says so, later
/// ones how long it has been running.
fn overdue(run: &Run, timeout: Duration) -> (Health, Duration) {
    let running = run.started.elapsed();
    let reason = if run.overdue.swap(true, Ordering::Relaxed) {
        format!(
            "the check has not answered for {}, longer than its timeout of {}",
            humantime::format_duration(Duration::from_secs(running.as_secs())),
            humantime::format_duration(timeout)
        )
    } else {
        format!(
            "the check did not answer within {}",
            humantime::format_duration(timeout)
        )
    };
    (Health::unhealthy(reason), running)
}

/// A component's line of a report made at `now`; a status that changed since the last notice
/// adds one to `notices`.
fn component_report(slot: &mut Slot, now: Instant, notices: &mut Vec<Notice>) -> ComponentReport {
    let fresh = slot.cached.as_ref().is_some_and(|c| c.at == now);
    let (health, checked, took) = match &slot.cached {
        Some(c) => (c.health.clone(), Some(c.checked_at), c.took),
        None => (
            Health::new(Status::Unknown, "no check has answered yet"),
            None,
            Duration::ZERO,
        ),
    };
    if slot.published != Some(health.status) && slot.cached.is_some() {
        slot.published = Some(health.status);
        notices.push(change_notice(&slot.name, &health));
    }
    ComponentReport {
        name: slot.name.clone(),
        status: health.status,
        reason: health.reason,
        critical: slot.critical,
        checked_at: checked,
        duration: took,
        cached: !fresh && checked.is_some(),
    }
}

fn change_notice(component: &str, health: &Health) -> Notice {
    let message = match &health.reason {
        Some(reason) => format!("{component} is {}: {reason}", health.status),
        None => format!("{component} is {}", health.status),
    };
    let mut notice = Notice::new("health", health.status.level(), message)
        .field("component", component)
        .field("status", health.status);
    if let Some(reason) = &health.reason {
        notice = notice.field("reason", reason);
    }
    notice
}

/// The thread of [`HealthRegistry::start_checker`]; dropping it stops the thread.
#[derive(Debug)]
pub struct HealthChecker {
    stop: Arc<(Mutex<bool>, Condvar)>,
    thread: Option<JoinHandle<()>>,
    stopped: AtomicBool,
}

impl HealthChecker {
    /// Stops the thread and waits for it (it finishes the report in progress first, which
    /// waits at most the longest timeout of a check).
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        if self.stopped.swap(true, Ordering::Relaxed) {
            return;
        }
        let (flag, wake) = &*self.stop;
        *flag.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for HealthChecker {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn results_are_cached_for_their_ttl() {
        let registry = HealthRegistry::new();
        let calls = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&calls);
        registry
            .component("counted")
            .ttl(Duration::from_secs(30))
            .check(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                Health::healthy()
            });
        let start = Instant::now();
        let first = registry.report_at(start);
        assert!(!first.components[0].cached);
        let again = registry.report_at(start + Duration::from_secs(29));
        assert!(again.components[0].cached);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "within the TTL the result is reused"
        );
        let later = registry.report_at(start + Duration::from_secs(30));
        assert!(!later.components[0].cached);
        assert_eq!(
            calls.load(Ordering::SeqCst),
            2,
            "after the TTL the check runs again"
        );
    }

    #[test]
    fn a_panicking_check_makes_only_its_component_unhealthy() {
        let registry = HealthRegistry::new();
        registry.component("fine").check(Health::healthy);
        registry
            .component("broken")
            .check(|| -> Health { panic!("index out of bounds") });
        let report = registry.report();
        assert_eq!(report.component("fine").unwrap().status, Status::Healthy);
        let broken = report.component("broken").unwrap();
        assert_eq!(broken.status, Status::Unhealthy);
        assert_eq!(
            broken.reason.as_deref(),
            Some("the check panicked: index out of bounds")
        );
        assert_eq!(report.status, Status::Unhealthy);
        assert!(!report.ready);
    }

    #[test]
    fn inline_checks_run_on_the_reporting_thread_and_others_on_their_own() {
        let registry = HealthRegistry::new();
        let reporting = std::thread::current().id();
        let ran_on = |name: &str, inline: bool| {
            let seen = Arc::new(Mutex::new(None));
            let record = Arc::clone(&seen);
            let builder = registry.component(name);
            let builder = if inline { builder.inline() } else { builder };
            builder.check(move || {
                *record.lock().unwrap() = Some(std::thread::current().id());
                Health::healthy()
            });
            seen
        };
        let inline = ran_on("inline", true);
        let threaded = ran_on("threaded", false);
        registry
            .component("inline-broken")
            .inline()
            .check(|| -> Health { panic!("bad state") });
        let report = registry.report();
        assert_eq!(*inline.lock().unwrap(), Some(reporting));
        let other = threaded.lock().unwrap().expect("the threaded check ran");
        assert_ne!(other, reporting);
        assert_eq!(report.component("inline").unwrap().status, Status::Healthy);
        let broken = report.component("inline-broken").unwrap();
        assert_eq!(broken.status, Status::Unhealthy);
        assert_eq!(
            broken.reason.as_deref(),
            Some("the check panicked: bad state")
        );
        // Cached for its TTL like any other, and run again after it.
        *inline.lock().unwrap() = None;
        let _ = registry.report();
        assert_eq!(*inline.lock().unwrap(), None);
        let _ = registry.report_at(Instant::now() + DEFAULT_TTL + Duration::from_secs(1));
        assert_eq!(*inline.lock().unwrap(), Some(reporting));
    }

    #[test]
    fn a_hanging_check_times_out_and_is_not_started_twice() {
        let registry = HealthRegistry::new();
        let (release, hold) = std::sync::mpsc::channel::<()>();
        let hold = Mutex::new(hold);
        let starts = Arc::new(AtomicU32::new(0));
        let counted = Arc::clone(&starts);
        registry.component("fine").check(Health::healthy);
        registry
            .component("stuck")
            .timeout(Duration::from_millis(100))
            .ttl(Duration::ZERO)
            .check(move || {
                counted.fetch_add(1, Ordering::SeqCst);
                let _ = hold.lock().unwrap().recv();
                Health::healthy()
            });
        let report = registry.report();
        let stuck = report.component("stuck").unwrap();
        assert_eq!(stuck.status, Status::Unhealthy);
        assert_eq!(
            stuck.reason.as_deref(),
            Some("the check did not answer within 100ms")
        );
        assert_eq!(report.component("fine").unwrap().status, Status::Healthy);
        let again = registry.report();
        assert_eq!(again.component("stuck").unwrap().status, Status::Unhealthy);
        assert_eq!(
            starts.load(Ordering::SeqCst),
            1,
            "a hung check is not started again"
        );
        release.send(()).unwrap();
        // Once it answers, its answer counts (the next report waits for it or takes it).
        let mut recovered = registry.report();
        for _ in 0..100 {
            if recovered.component("stuck").unwrap().status == Status::Healthy {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
            recovered = registry.report();
        }
        assert_eq!(
            recovered.component("stuck").unwrap().status,
            Status::Healthy
        );
    }

    #[test]
    fn criticality_caps_a_component_at_degraded() {
        let registry = HealthRegistry::new();
        registry
            .component("optional")
            .critical(false)
            .check(|| Health::unhealthy("down"));
        let report = registry.report();
        assert_eq!(report.status, Status::Degraded);
        assert!(report.ready);
        registry
            .component("required")
            .check(|| Health::unhealthy("down"));
        assert_eq!(registry.report().status, Status::Unhealthy);
    }

    #[test]
    fn statuses_order_from_best_to_worst() {
        assert!(Status::Healthy < Status::Degraded);
        assert!(Status::Degraded < Status::Unknown);
        assert!(Status::Unknown < Status::Unhealthy);
        for status in [
            Status::Healthy,
            Status::Degraded,
            Status::Unknown,
            Status::Unhealthy,
        ] {
            assert_eq!(Status::parse(status.as_str()), Some(status));
        }
    }
}
