//! The built-in checks and their thresholds.
//!
//! | component | critical | TTL | unhealthy when | degraded when |
//! | --- | --- | --- | --- | --- |
//! | `drain` | yes | 1 s | the pipeline is shut down, the drain gave up after panicking cycles, or no cycle ended for `max(5 s, 50 × drain_interval)` | no cycle ended for `max(1 s, 10 × drain_interval)`, or a cycle panicked since the last check |
//! | `queues` | yes | 1 s | never | call durations (thread queues full) or notices (notice queue full) were dropped since the last check |
//! | `sink:<name>` | yes | 1 s | the sink says so (its own [`health`](instrument::Sink::health)) | the sink says so, its backlog is at 90 % of the pipeline's `sink_backlog` or `sink_backlog_events`, or it lost data since the last check |
//! | `system` | no | 5 s | memory use at or above `memory_unhealthy` (default 95 %) | CPU at or above `cpu_degraded` (90 %), memory at or above `memory_degraded` (80 %); `unknown` until the sampler has taken two samples |
//! | `data_dir` | yes | 10 s | the directory is missing, not a directory, a file cannot be created in it, or its file system is at or above `unhealthy` (95 %) full | its file system is at or above `degraded` (85 %) full |
//!
//! "Since the last check" compares the pipeline's counters with their values at the previous
//! run of the same check, so a burst of loss shows for one TTL and then clears.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use instrument::{Lost, PipelineMonitor};
use sysinfo::Disks;

use super::{Health, HealthRegistry, Status};
use crate::system::SystemHandle;

/// The TTL of the pipeline's own checks, which only read memory.
pub const PIPELINE_TTL: Duration = Duration::from_secs(1);

/// Thresholds of the `system` check, in percent.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct SystemThresholds {
    /// CPU use at or above which the machine is degraded (default 90).
    pub cpu_degraded: f64,
    /// Memory use at or above which the machine is degraded (default 80).
    pub memory_degraded: f64,
    /// Memory use at or above which the machine is unhealthy (default 95).
    pub memory_unhealthy: f64,
}

impl Default for SystemThresholds {
    fn default() -> Self {
        SystemThresholds {
            cpu_degraded: 90.0,
            memory_degraded: 80.0,
            memory_unhealthy: 95.0,
        }
    }
}

impl SystemThresholds {
    /// These thresholds with `cpu_degraded` set.
    #[must_use]
    pub fn cpu_degraded(mut self, percent: f64) -> Self {
        self.cpu_degraded = percent;
        self
    }

    /// These thresholds with the memory ones set.
    #[must_use]
    pub fn memory(mut self, degraded: f64, unhealthy: f64) -> Self {
        self.memory_degraded = degraded;
        self.memory_unhealthy = unhealthy;
        self
    }
}

/// Thresholds of the `data_dir` check: how full its file system may be, in percent.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct DiskThresholds {
    /// Use at or above which the directory is degraded (default 85).
    pub degraded: f64,
    /// Use at or above which it is unhealthy (default 95).
    pub unhealthy: f64,
}

impl Default for DiskThresholds {
    fn default() -> Self {
        DiskThresholds {
            degraded: 85.0,
            unhealthy: 95.0,
        }
    }
}

impl DiskThresholds {
    /// Thresholds `degraded` and `unhealthy`, in percent.
    #[must_use]
    pub fn new(degraded: f64, unhealthy: f64) -> Self {
        DiskThresholds {
            degraded,
            unhealthy,
        }
    }
}

fn human(d: Duration) -> String {
    // Milliseconds are enough for people.
    let rounded = Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    humantime::format_duration(rounded).to_string()
}

pub(super) fn register_pipeline(registry: &HealthRegistry, monitor: &PipelineMonitor) {
    let drain = monitor.clone();
    let panics = Mutex::new(drain.self_metrics().drain_panics);
    registry
        .component("drain")
        .ttl(PIPELINE_TTL)
        .inline()
        .check(move || drain_health(&drain, &panics));

    let queues = monitor.clone();
    let metrics = queues.self_metrics();
    let seen = Mutex::new((metrics.events_dropped, metrics.notices_dropped));
    registry
        .component("queues")
        .ttl(PIPELINE_TTL)
        .inline()
        .check(move || {
            let metrics = queues.self_metrics();
            let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
            let events = metrics.events_dropped.saturating_sub(seen.0);
            let notices = metrics.notices_dropped.saturating_sub(seen.1);
            *seen = (metrics.events_dropped, metrics.notices_dropped);
            let mut problems = Vec::new();
            if events > 0 {
                problems.push(format!(
                    "{events} call duration(s) dropped since the last check (thread queues of {} records full)",
                    queues.settings().queue_capacity
                ));
            }
            if notices > 0 {
                problems.push(format!(
                    "{notices} notice(s) dropped since the last check (notice queue full)"
                ));
            }
            if problems.is_empty() {
                Health::healthy()
            } else {
                Health::degraded(problems.join("; "))
            }
        });

    for status in monitor.self_metrics().sinks {
        let name = status.name.clone();
        let sink = monitor.clone();
        let lost = Mutex::new(status.lost);
        registry
            .component(format!("sink:{name}"))
            .ttl(PIPELINE_TTL)
            .inline()
            .check(move || sink_health(&sink, &name, &lost));
    }
}

fn drain_health(monitor: &PipelineMonitor, panics: &Mutex<u64>) -> Health {
    if monitor.drain_failed() {
        return Health::unhealthy(
            "the drain stopped after drain cycles panicked in a row; recording is off",
        );
    }
    if !monitor.drain_running() {
        return Health::unhealthy("the pipeline is shut down");
    }
    let settings = monitor.settings();
    let lag = monitor.drain_lag();
    let unhealthy_after = (settings.drain_interval * 50).max(Duration::from_secs(5));
    let degraded_after = (settings.drain_interval * 10).max(Duration::from_secs(1));
    if lag >= unhealthy_after {
        return Health::unhealthy(format!(
            "no drain cycle has ended for {} (it runs every {})",
            human(lag),
            human(settings.drain_interval)
        ));
    }
    let now = monitor.self_metrics().drain_panics;
    let mut seen = panics.lock().unwrap_or_else(PoisonError::into_inner);
    let new_panics = now.saturating_sub(*seen);
    *seen = now;
    if lag >= degraded_after {
        return Health::degraded(format!(
            "the drain lags: its last cycle ended {} ago (it runs every {})",
            human(lag),
            human(settings.drain_interval)
        ));
    }
    if new_panics > 0 {
        return Health::degraded(format!(
            "{new_panics} drain cycle(s) panicked since the last check"
        ));
    }
    Health::healthy()
}

fn sink_health(monitor: &PipelineMonitor, name: &str, seen: &Mutex<Lost>) -> Health {
    let metrics = monitor.self_metrics();
    let Some(status) = metrics.sinks.iter().find(|s| s.name == name) else {
        return Health::new(
            Status::Unknown,
            format!("the pipeline has no sink `{name}`"),
        );
    };
    let own = Health::from(status.health.clone());
    if own.status == Status::Unhealthy {
        return own;
    }
    let mut problems: Vec<String> = own.reason.into_iter().collect();
    let settings = monitor.settings();
    let full =
        |used: u64, bound: usize| used.saturating_mul(10) >= (bound as u64).saturating_mul(9);
    if full(status.backlog, settings.sink_backlog)
        || full(status.backlog_events, settings.sink_backlog_events)
    {
        problems.push(format!(
            "backlog of {} batch(es) and {} event(s) is near its bound ({} batches, {} events)",
            status.backlog,
            status.backlog_events,
            settings.sink_backlog,
            settings.sink_backlog_events
        ));
    }
    let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
    let mut lost = status.lost;
    lost.batches = lost.batches.saturating_sub(seen.batches);
    lost.events = lost.events.saturating_sub(seen.events);
    lost.snapshots = lost.snapshots.saturating_sub(seen.snapshots);
    lost.audit_entries = lost.audit_entries.saturating_sub(seen.audit_entries);
    *seen = status.lost;
    if !lost.is_none() {
        problems.push(format!("lost {lost} since the last check"));
    }
    if problems.is_empty() {
        Health::healthy()
    } else {
        Health::degraded(problems.join("; "))
    }
}

pub(super) fn register_system(
    registry: &HealthRegistry,
    sampler: SystemHandle,
    thresholds: SystemThresholds,
) {
    registry
        .component("system")
        .critical(false)
        .ttl(Duration::from_secs(5))
        .inline()
        .check(move || {
            let Some(sample) = sampler.latest() else {
                return Health::new(Status::Unknown, "the system sampler has not sampled yet");
            };
            let memory = sample.memory_percent();
            if memory >= thresholds.memory_unhealthy {
                return Health::unhealthy(format!(
                    "memory {memory:.1}% used (unhealthy at {}%)",
                    thresholds.memory_unhealthy
                ));
            }
            let mut problems = Vec::new();
            if memory >= thresholds.memory_degraded {
                problems.push(format!(
                    "memory {memory:.1}% used (degraded at {}%)",
                    thresholds.memory_degraded
                ));
            }
            match sample.cpu_percent {
                Some(cpu) if cpu >= thresholds.cpu_degraded => problems.push(format!(
                    "CPU {cpu:.1}% busy (degraded at {}%)",
                    thresholds.cpu_degraded
                )),
                Some(_) => {}
                None => {
                    return Health::new(
                        Status::Unknown,
                        "CPU use is known from the sampler's second sample on",
                    );
                }
            }
            if problems.is_empty() {
                Health::healthy()
            } else {
                Health::degraded(problems.join("; "))
            }
        });
}

pub(super) fn register_data_dir(registry: &HealthRegistry, dir: &Path, thresholds: DiskThresholds) {
    let dir = dir.to_owned();
    let disks = Mutex::new(Disks::new());
    registry
        .component("data_dir")
        .ttl(Duration::from_secs(10))
        .check(move || data_dir_health(&dir, &disks, thresholds));
}

fn data_dir_health(dir: &Path, disks: &Mutex<Disks>, thresholds: DiskThresholds) -> Health {
    let shown = dir.display();
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => return Health::unhealthy(format!("{shown} is not a directory")),
        Err(e) => return Health::unhealthy(format!("cannot reach {shown}: {e}")),
    }
    let probe: PathBuf = dir.join(format!(".instrument-health-{}", std::process::id()));
    let written = std::fs::write(&probe, b"health check\n");
    let _ = std::fs::remove_file(&probe);
    if let Err(e) = written {
        return Health::unhealthy(format!("cannot create a file in {shown}: {e}"));
    }
    let canonical = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_owned());
    let mut disks = disks.lock().unwrap_or_else(PoisonError::into_inner);
    disks.refresh(true);
    let Some(disk) = disks
        .list()
        .iter()
        .filter(|d| canonical.starts_with(d.mount_point()))
        .max_by_key(|d| d.mount_point().as_os_str().len())
    else {
        return Health::new(
            Status::Unknown,
            format!("{shown} is writable; no mounted file system holding it was found"),
        );
    };
    let total = disk.total_space();
    if total == 0 {
        return Health::healthy();
    }
    let used = total.saturating_sub(disk.available_space()) as f64 * 100.0 / total as f64;
    let mount = disk.mount_point().display();
    if used >= thresholds.unhealthy {
        Health::unhealthy(format!(
            "the file system of {shown} ({mount}) is {used:.1}% full (unhealthy at {}%)",
            thresholds.unhealthy
        ))
    } else if used >= thresholds.degraded {
        Health::degraded(format!(
            "the file system of {shown} ({mount}) is {used:.1}% full (degraded at {}%)",
            thresholds.degraded
        ))
    } else {
        Health::healthy()
    }
}
