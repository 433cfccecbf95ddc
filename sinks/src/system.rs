//! System metrics: a sampler on its own thread that reads the machine's and the process's
//! resources with `sysinfo` and records them as gauges, which reach every sink like any other
//! gauge (a `gauges` row per window in `SQLite`, a series in `/metrics`, ...).
//!
//! The sampler never runs on the drain or on a recording thread: [`SystemSamplerBuilder::start`]
//! spawns `instrument-system`, which samples every [`interval`](SystemSamplerBuilder::interval)
//! (default 5 s) and sets the gauges below through handles registered once
//! ([`instrument::metric`]), so a sample costs the reads of `/proc` and a few relaxed stores.
//!
//! | gauge | labels | unit |
//! | --- | --- | --- |
//! | `system_cpu_usage_percent` | | percent of all cores |
//! | `system_cpu_core_usage_percent` | `core` (0, 1, ...) | percent of one core |
//! | `system_memory_total_bytes`, `system_memory_used_bytes`, `system_memory_available_bytes` | | bytes |
//! | `system_memory_usage_percent` | | percent (used of total) |
//! | `system_load1`, `system_load5`, `system_load15` | | run-queue load averages |
//! | `system_disk_total_bytes`, `system_disk_available_bytes` | `mount` (the data directory's file system) | bytes |
//! | `system_disk_usage_percent` | `mount` | percent (used of total) |
//! | `process_cpu_usage_percent` | | percent of one core (can pass 100 on several cores) |
//! | `process_resident_memory_bytes` | | bytes |
//! | `process_threads` | | threads of this process |
//! | `process_open_fds` | | open file descriptors of this process |
//!
//! CPU percentages are measured between two samples, so the first sample (taken when the
//! sampler starts) leaves them out; they appear from the second on. Values the platform does
//! not provide (threads or open files outside Linux, load averages on Windows) are not set.
//! The latest sample is also kept for health checks and alert rules
//! ([`SystemSampler::latest`]).
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! use std::time::Duration;
//! use instrument_sinks::{MemorySink, system::SystemSampler};
//!
//! let sink = MemorySink::new();
//! let pipeline = instrument::builder().sink(sink.clone()).install()?;
//! let sampler = SystemSampler::builder()
//!     .interval(Duration::from_millis(50))
//!     .data_dir(dir.path())
//!     .start()?;
//! let first = sampler.wait_for_samples(2, Duration::from_secs(30)).expect("two samples");
//! pipeline.flush()?;
//! let snapshot = sink.last_snapshot().unwrap();
//! assert!(snapshot.gauge("system_memory_total_bytes").unwrap() > 0.0);
//! assert!(snapshot.gauge("process_resident_memory_bytes").unwrap() > 0.0);
//! assert!(first.memory_total_bytes > 0);
//! sampler.stop();
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use instrument::{Gauge, Unit};
use sysinfo::{
    CpuRefreshKind, Disks, MemoryRefreshKind, Pid, ProcessRefreshKind, ProcessesToUpdate,
    RefreshKind, System,
};

/// The default sampling interval: 5 s.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// One reading of the machine and the process.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
#[non_exhaustive]
pub struct SystemSample {
    /// When it was taken.
    #[serde(skip)]
    pub time: Option<SystemTime>,
    /// Samples taken so far by this sampler, this one included.
    pub sequence: u64,
    /// CPU use of the whole machine since the previous sample, percent; `None` on the first.
    pub cpu_percent: Option<f64>,
    /// CPU use per core, percent; empty on the first sample.
    pub cpu_core_percent: Vec<f64>,
    /// Physical memory.
    pub memory_total_bytes: u64,
    /// Memory in use.
    pub memory_used_bytes: u64,
    /// Memory available to new allocations without swapping.
    pub memory_available_bytes: u64,
    /// 1, 5 and 15 minute load averages, where the platform has them.
    pub load: Option<[f64; 3]>,
    /// The data directory's file system, if one was given and found.
    pub disk: Option<DiskSample>,
    /// This process's CPU use since the previous sample, percent of one core; `None` on the
    /// first.
    pub process_cpu_percent: Option<f64>,
    /// This process's resident memory.
    pub process_resident_bytes: u64,
    /// This process's threads, where the platform tells.
    pub process_threads: Option<u64>,
    /// This process's open file descriptors, where the platform tells.
    pub process_open_fds: Option<u64>,
}

impl SystemSample {
    /// Memory in use, percent of the total (0 when the total is unknown).
    #[must_use]
    pub fn memory_percent(&self) -> f64 {
        percent(self.memory_used_bytes, self.memory_total_bytes)
    }
}

/// The file system holding the data directory.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct DiskSample {
    /// Where it is mounted.
    pub mount: String,
    /// Its size.
    pub total_bytes: u64,
    /// Space available to this process.
    pub available_bytes: u64,
}

impl DiskSample {
    /// Space in use, percent of the total.
    #[must_use]
    pub fn usage_percent(&self) -> f64 {
        percent(
            self.total_bytes.saturating_sub(self.available_bytes),
            self.total_bytes,
        )
    }
}

fn percent(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}

/// Why the sampler could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SystemError {
    /// The interval is zero.
    #[error("the system sampler's interval must be greater than zero")]
    ZeroInterval,
    /// A gauge could not be registered.
    #[error("cannot register the system gauge `{name}`")]
    Register {
        /// The gauge.
        name: String,
        /// The cause.
        #[source]
        source: instrument::Error,
    },
    /// The thread could not be started.
    #[error("cannot start the system sampler's thread")]
    Spawn(#[source] std::io::Error),
}

/// Configures a [`SystemSampler`].
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct SystemSamplerBuilder {
    interval: Duration,
    data_dir: Option<PathBuf>,
}

impl SystemSamplerBuilder {
    /// How often to sample (default [`DEFAULT_INTERVAL`], 5 s).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// The data directory whose file system's usage is recorded (default: none).
    pub fn data_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.data_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// Registers the gauges, takes the first sample on the new thread `instrument-system`, and
    /// goes on sampling until [`SystemSampler::stop`] (or drop).
    ///
    /// # Errors
    /// [`SystemError`]: a zero interval, a gauge that cannot be registered, or a thread that
    /// cannot be started.
    pub fn start(self) -> Result<SystemSampler, SystemError> {
        if self.interval.is_zero() {
            return Err(SystemError::ZeroInterval);
        }
        let gauges = Gauges::register()?;
        let shared = Arc::new(Shared::default());
        let thread = {
            let shared = Arc::clone(&shared);
            let interval = self.interval;
            let data_dir = self.data_dir.clone();
            std::thread::Builder::new()
                .name("instrument-system".into())
                .spawn(move || run(&shared, gauges, interval, data_dir.as_deref()))
                .map_err(SystemError::Spawn)?
        };
        Ok(SystemSampler {
            shared,
            thread: Some(thread),
        })
    }
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

#[derive(Default)]
struct State {
    latest: Option<SystemSample>,
    stop: bool,
}

/// The running sampler; dropping it stops it. Cheap to share through [`SystemSampler::handle`].
#[derive(Debug)]
pub struct SystemSampler {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// Reads the latest sample of a [`SystemSampler`] from other threads (health checks).
#[derive(Clone, Debug)]
pub struct SystemHandle {
    shared: Arc<Shared>,
}

impl SystemHandle {
    /// The latest sample, `None` before the first.
    #[must_use]
    pub fn latest(&self) -> Option<SystemSample> {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .latest
            .clone()
    }
}

impl SystemSampler {
    /// A builder with the defaults: every 5 s, no data directory.
    pub fn builder() -> SystemSamplerBuilder {
        SystemSamplerBuilder {
            interval: DEFAULT_INTERVAL,
            data_dir: None,
        }
    }

    /// The latest sample, `None` before the first.
    #[must_use]
    pub fn latest(&self) -> Option<SystemSample> {
        self.handle().latest()
    }

    /// A handle reading the latest sample from other threads.
    #[must_use]
    pub fn handle(&self) -> SystemHandle {
        SystemHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Waits until `count` samples have been taken (or `timeout` passes); the latest sample.
    #[must_use]
    pub fn wait_for_samples(&self, count: u64, timeout: Duration) -> Option<SystemSample> {
        let deadline = Instant::now() + timeout;
        let mut state = self
            .shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        loop {
            if let Some(latest) = state.latest.as_ref().filter(|s| s.sequence >= count) {
                return Some(latest.clone());
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Stops sampling and joins the thread.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.shared
            .state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .stop = true;
        self.shared.changed.notify_all();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for SystemSampler {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// The gauges, registered once.
struct Gauges {
    cpu: Gauge,
    memory_total: Gauge,
    memory_used: Gauge,
    memory_available: Gauge,
    memory_percent: Gauge,
    load: [Gauge; 3],
    process_cpu: Gauge,
    process_resident: Gauge,
    process_threads: Gauge,
    process_open_fds: Gauge,
    /// Registered when a core or a mount point is first seen; `None` if that failed (the
    /// cardinality limit refusing a new label set), and then left out.
    cores: HashMap<usize, Option<Gauge>>,
    disks: HashMap<String, [Option<Gauge>; 3]>,
}

/// A gauge with one label, registered when its label value is first seen.
fn labelled(
    name: &'static str,
    label: &'static str,
    value: String,
    unit: Unit,
    description: &'static str,
) -> Option<Gauge> {
    instrument::metric(name)
        .label(label, value)
        .unit(unit)
        .description(description)
        .module(module_path!())
        .gauge()
        .ok()
}

fn gauge(name: &'static str, unit: Unit, description: &'static str) -> Result<Gauge, SystemError> {
    instrument::metric(name)
        .unit(unit)
        .description(description)
        .module(module_path!())
        .gauge()
        .map_err(|source| SystemError::Register {
            name: name.to_owned(),
            source,
        })
}

impl Gauges {
    fn register() -> Result<Gauges, SystemError> {
        Ok(Gauges {
            cpu: gauge(
                "system_cpu_usage_percent",
                Unit::Percent,
                "CPU use of the whole machine.",
            )?,
            memory_total: gauge("system_memory_total_bytes", Unit::Bytes, "Physical memory.")?,
            memory_used: gauge("system_memory_used_bytes", Unit::Bytes, "Memory in use.")?,
            memory_available: gauge(
                "system_memory_available_bytes",
                Unit::Bytes,
                "Memory available without swapping.",
            )?,
            memory_percent: gauge(
                "system_memory_usage_percent",
                Unit::Percent,
                "Memory in use, percent of the total.",
            )?,
            load: [
                gauge("system_load1", Unit::Count, "1-minute load average.")?,
                gauge("system_load5", Unit::Count, "5-minute load average.")?,
                gauge("system_load15", Unit::Count, "15-minute load average.")?,
            ],
            process_cpu: gauge(
                "process_cpu_usage_percent",
                Unit::Percent,
                "CPU use of this process, percent of one core.",
            )?,
            process_resident: gauge(
                "process_resident_memory_bytes",
                Unit::Bytes,
                "Resident memory of this process.",
            )?,
            process_threads: gauge("process_threads", Unit::Count, "Threads of this process.")?,
            process_open_fds: gauge(
                "process_open_fds",
                Unit::Count,
                "Open file descriptors of this process.",
            )?,
            cores: HashMap::new(),
            disks: HashMap::new(),
        })
    }

    fn record(&mut self, sample: &SystemSample) {
        if let Some(cpu) = sample.cpu_percent {
            self.cpu.set(cpu);
        }
        for (core, &value) in sample.cpu_core_percent.iter().enumerate() {
            let gauge = self.cores.entry(core).or_insert_with(|| {
                labelled(
                    "system_cpu_core_usage_percent",
                    "core",
                    core.to_string(),
                    Unit::Percent,
                    "CPU use of one core.",
                )
            });
            if let Some(gauge) = gauge {
                gauge.set(value);
            }
        }
        self.memory_total.set(sample.memory_total_bytes as f64);
        self.memory_used.set(sample.memory_used_bytes as f64);
        self.memory_available
            .set(sample.memory_available_bytes as f64);
        self.memory_percent.set(sample.memory_percent());
        if let Some(load) = sample.load {
            for (gauge, value) in self.load.iter().zip(load) {
                gauge.set(value);
            }
        }
        if let Some(disk) = &sample.disk {
            let gauges = self.disks.entry(disk.mount.clone()).or_insert_with(|| {
                let mount = || disk.mount.clone();
                [
                    labelled(
                        "system_disk_total_bytes",
                        "mount",
                        mount(),
                        Unit::Bytes,
                        "Size of the data directory's file system.",
                    ),
                    labelled(
                        "system_disk_available_bytes",
                        "mount",
                        mount(),
                        Unit::Bytes,
                        "Space available on the data directory's file system.",
                    ),
                    labelled(
                        "system_disk_usage_percent",
                        "mount",
                        mount(),
                        Unit::Percent,
                        "Space used on the data directory's file system, percent.",
                    ),
                ]
            });
            let values = [
                disk.total_bytes as f64,
                disk.available_bytes as f64,
                disk.usage_percent(),
            ];
            for (gauge, value) in gauges.iter().zip(values) {
                if let Some(gauge) = gauge {
                    gauge.set(value);
                }
            }
        }
        if let Some(cpu) = sample.process_cpu_percent {
            self.process_cpu.set(cpu);
        }
        self.process_resident
            .set(sample.process_resident_bytes as f64);
        if let Some(threads) = sample.process_threads {
            self.process_threads.set(threads as f64);
        }
        if let Some(fds) = sample.process_open_fds {
            self.process_open_fds.set(fds as f64);
        }
    }
}

/// Reads the machine with `sysinfo`, keeping what CPU percentages need between samples.
struct Reader {
    system: System,
    disks: Disks,
    pid: Option<Pid>,
    data_dir: Option<PathBuf>,
    sequence: u64,
}

impl Reader {
    fn new(data_dir: Option<&Path>) -> Reader {
        Reader {
            system: System::new_with_specifics(
                RefreshKind::nothing()
                    .with_cpu(CpuRefreshKind::nothing().with_cpu_usage())
                    .with_memory(MemoryRefreshKind::nothing().with_ram()),
            ),
            disks: Disks::new(),
            pid: sysinfo::get_current_pid().ok(),
            // Canonical, so the longest mount point that prefixes it is its file system's.
            data_dir: data_dir.map(|d| std::fs::canonicalize(d).unwrap_or_else(|_| d.to_owned())),
            sequence: 0,
        }
    }

    fn sample(&mut self) -> SystemSample {
        self.system.refresh_cpu_usage();
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let first = self.sequence == 0;
        self.sequence += 1;
        let mut sample = SystemSample {
            time: Some(SystemTime::now()),
            sequence: self.sequence,
            memory_total_bytes: self.system.total_memory(),
            memory_used_bytes: self.system.used_memory(),
            memory_available_bytes: self.system.available_memory(),
            ..SystemSample::default()
        };
        if !first {
            sample.cpu_percent = Some(f64::from(self.system.global_cpu_usage()));
            sample.cpu_core_percent = self
                .system
                .cpus()
                .iter()
                .map(|c| f64::from(c.cpu_usage()))
                .collect();
        }
        if sysinfo::IS_SUPPORTED_SYSTEM && !cfg!(windows) {
            let load = System::load_average();
            sample.load = Some([load.one, load.five, load.fifteen]);
        }
        sample.disk = self.disk();
        if let Some(pid) = self.pid {
            self.system.refresh_processes_specifics(
                ProcessesToUpdate::Some(&[pid]),
                true,
                ProcessRefreshKind::nothing()
                    .with_cpu()
                    .with_memory()
                    .with_tasks(),
            );
            if let Some(process) = self.system.process(pid) {
                if !first {
                    sample.process_cpu_percent = Some(f64::from(process.cpu_usage()));
                }
                sample.process_resident_bytes = process.memory();
                sample.process_threads = process.tasks().map(|t| t.len() as u64);
                sample.process_open_fds = process.open_files().map(|n| n as u64);
            }
        }
        sample
    }

    /// The file system of the data directory: the mounted disk with the longest mount point
    /// that is a prefix of the directory.
    fn disk(&mut self) -> Option<DiskSample> {
        let dir = self.data_dir.as_ref()?;
        self.disks.refresh(true);
        let disk = self
            .disks
            .list()
            .iter()
            .filter(|d| dir.starts_with(d.mount_point()))
            .max_by_key(|d| d.mount_point().as_os_str().len())?;
        Some(DiskSample {
            mount: disk.mount_point().display().to_string(),
            total_bytes: disk.total_space(),
            available_bytes: disk.available_space(),
        })
    }
}

fn run(shared: &Shared, mut gauges: Gauges, interval: Duration, data_dir: Option<&Path>) {
    let mut reader = Reader::new(data_dir);
    // sysinfo needs two CPU readings at least its minimum interval apart; the first sample
    // takes the baseline.
    let mut next = Instant::now();
    loop {
        let sample = reader.sample();
        gauges.record(&sample);
        {
            let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
            state.latest = Some(sample);
        }
        shared.changed.notify_all();
        next += interval.max(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL);
        let mut state = shared.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if state.stop {
                return;
            }
            let Some(left) = next.checked_duration_since(Instant::now()) else {
                break;
            };
            state = shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        if Instant::now() > next + interval {
            // Fell behind (a suspended machine): start counting from now.
            next = Instant::now();
        }
    }
}
