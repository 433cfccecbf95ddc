//! JSON-lines log files: one JSON object per line, one file per stream, rotated by size and
//! optionally by day, pruned by count, age and total size, optionally gzipped, with a
//! hash-chained audit stream.
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! use instrument_sinks::jsonl::{JsonlSink, Stream, log_files};
//!
//! let sink = JsonlSink::builder().dir(dir.path()).build()?;
//! let pipeline = instrument::builder().sink(sink).install()?;
//! instrument::publish(instrument::Notice::new("health", instrument::Level::Warn, "disk 91% full"));
//! pipeline.flush()?;
//!
//! let error_log = std::fs::read_to_string(dir.path().join("error.jsonl"))?;
//! let line: serde_json::Value = serde_json::from_str(error_log.lines().next().unwrap())?;
//! assert_eq!(line["message"], "disk 91% full");
//! assert_eq!(line["level"], "warn");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Streams
//! | stream | file | lines |
//! | --- | --- | --- |
//! | `main` | `main.jsonl` | `start` and `shutdown` of the pipeline; notices at `debug` and `info`; a sink back to healthy |
//! | `error` | `error.jsonl` | calls that ended `error`, `panic` or `cancelled`; notices at `warn` and `error` (warnings and errors a bridge such as the `tracing` one publishes); sinks failing or losing data |
//! | `performance` | `performance.jsonl` | slow and sampled calls; drop markers; aggregates, counters and gauges of each snapshot |
//! | `audit` | `audit.jsonl` | audit entries, hash-chained ([`verify_audit_chain`]) |
//!
//! Every field, the JSON Schema of a line (`docs/log-line.schema.json`), rotation, retention,
//! the hash chain's canonical form and the limits are in `docs/logs.md`.
//!
//! # Writing
//! The sink runs on its own worker thread. Each batch is serialized into one buffer per stream
//! and appended with one `write` per stream and file, so lines are never interleaved or torn,
//! and a process that crashes afterwards loses none of them. A write that fails is undone (files
//! are cut back to their length before the batch, also across a rotation) and the batch is
//! returned to the pipeline as an error, which retries it: no line is written twice, none half.
//! The audit stream is synced
//! (`fdatasync`) after every batch, other streams when [`JsonlSinkBuilder::sync_every_batch`]
//! says so, and all of them on [`flush`](instrument::PipelineGuard::flush).
//!
//! Rotation renames the current file (`STREAM.jsonl` to `STREAM.YYYYMMDDTHHMMSSZ.jsonl`) between
//! two lines and starts a new one; gzip and pruning run on a thread of their own ([`log_files`]
//! lists a stream's files in order).

mod audit;
mod files;
mod json;
mod line;
mod maintenance;
pub mod search;
#[cfg(unix)]
mod signal;
pub mod tail;

use std::collections::HashMap;
use std::fmt;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use instrument::{
    AuditEntry, Batch, DropMarker, Event, EventReason, Interests, Level, Metadata, Notice, Outcome,
    Sink, SinkError, SinkHealth, SinkStatus, Snapshot, StartInfo,
};

pub use self::audit::{AuditChain, AuditChainError, GENESIS, verify_audit_chain};
pub use self::files::{LogFile, log_files};
#[cfg(unix)]
pub use self::signal::flush_on_termination;

use self::files::{DayOf, FileError, Name, Rotation, Segment, Stamp, StreamFile, Unsettled};
use self::line::{
    AggregateFields, AuditPart, CounterFields, DropFields, GaugeFields, Line, Pairs, SinkFields,
    StartFields, TsCache,
};
use self::maintenance::{Maintenance, Retention};

/// The default log directory, relative to the working directory.
pub const DEFAULT_DIR: &str = "./instrument-data/logs";
/// The default size at which a stream's file is rotated: 10 MiB.
pub const DEFAULT_MAX_FILE_BYTES: u64 = 10 * 1024 * 1024;
/// The default number of rotated files kept per stream.
pub const DEFAULT_KEEP_FILES: usize = 5;
/// The default cap on the bytes of the log directory's files: 1 GiB.
pub const DEFAULT_MAX_TOTAL_BYTES: u64 = 1024 * 1024 * 1024;
/// The default age after which rotated files are removed: 30 days.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);

/// How often the maintenance thread looks for rotated files past the age limit.
const MAINTENANCE_EVERY: Duration = Duration::from_secs(60);

/// A log stream: one file of its own, with its own rotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Stream {
    /// Lifecycle and informational notices.
    Main,
    /// Failed, panicked and cancelled calls, warnings and errors, sink failures.
    Error,
    /// Slow and sampled calls, drop markers, aggregates.
    Performance,
    /// Audit entries.
    Audit,
}

impl Stream {
    /// Every stream, in file order.
    pub const ALL: [Stream; 4] = [
        Stream::Main,
        Stream::Error,
        Stream::Performance,
        Stream::Audit,
    ];

    /// `main`, `error`, `performance` or `audit`: the `stream` field and the file's name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Stream::Main => "main",
            Stream::Error => "error",
            Stream::Performance => "performance",
            Stream::Audit => "audit",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Stream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a day ends, for [`JsonlSinkBuilder::rotate_daily`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DayBoundary {
    /// Midnight UTC.
    Utc,
    /// Midnight in the system's time zone (`TZ`, else `/etc/localtime`), read when the sink is
    /// built; daylight-saving changes are followed.
    Local,
}

/// Why a [`JsonlSink`] could not be built. Each names the file or directory concerned.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JsonlError {
    /// The log directory could not be created.
    #[error("cannot create the log directory {}: {source}", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Another sink (in this process or another) writes the directory.
    #[error("the log directory {} is in use by another JSON-lines sink (it holds the lock on {})", dir.display(), lock.display())]
    Locked {
        /// The directory.
        dir: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
    /// A file of the directory could not be opened, read or repaired.
    #[error("{message}")]
    File {
        /// What failed, naming the file.
        message: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The audit stream's last line, which the next line chains to, is unreadable: the file
    /// was changed by hand. Move it away to start a new chain.
    #[error("cannot continue the audit chain: {message}")]
    AuditHead {
        /// What is wrong, naming the file.
        message: String,
    },
    /// A builder setting is out of range.
    #[error("JSON-lines sink setting `{setting}` {reason}")]
    Setting {
        /// The setting.
        setting: &'static str,
        /// Why it is refused.
        reason: String,
    },
    /// The thread that compresses and prunes rotated files could not be started.
    #[error("cannot start the log maintenance thread: {source}")]
    Spawn {
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl From<FileError> for JsonlError {
    fn from(e: FileError) -> Self {
        JsonlError::File {
            message: e.message,
            source: e.source,
        }
    }
}

/// Configures a [`JsonlSink`].
#[derive(Clone, Debug)]
#[must_use = "a builder does nothing until `build` is called"]
pub struct JsonlSinkBuilder {
    dir: PathBuf,
    max_file_bytes: u64,
    daily: Option<DayBoundary>,
    keep_files: usize,
    max_total_bytes: Option<u64>,
    max_age: Option<Duration>,
    gzip: bool,
    sync: [bool; 4],
    snapshots: bool,
    prune_audit: bool,
}

impl Default for JsonlSinkBuilder {
    fn default() -> Self {
        JsonlSinkBuilder {
            dir: PathBuf::from(DEFAULT_DIR),
            max_file_bytes: DEFAULT_MAX_FILE_BYTES,
            daily: None,
            keep_files: DEFAULT_KEEP_FILES,
            max_total_bytes: Some(DEFAULT_MAX_TOTAL_BYTES),
            max_age: Some(DEFAULT_MAX_AGE),
            gzip: false,
            sync: [false, false, false, true],
            snapshots: true,
            prune_audit: false,
        }
    }
}

impl JsonlSinkBuilder {
    /// The log directory (default [`DEFAULT_DIR`]); created if missing.
    pub fn dir(mut self, dir: impl AsRef<Path>) -> Self {
        dir.as_ref().clone_into(&mut self.dir);
        self
    }

    /// Rotates a stream's file before a batch would take it past `bytes` (default
    /// [`DEFAULT_MAX_FILE_BYTES`]). A file holds at least one batch, so one batch larger than
    /// this makes a file larger than this.
    pub fn max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = bytes;
        self
    }

    /// Also rotates a stream's file when a line arrives on a later day than its first line
    /// (checked every tick, too), with days ending at midnight UTC or local time. Off by
    /// default.
    pub fn rotate_daily(mut self, boundary: DayBoundary) -> Self {
        self.daily = Some(boundary);
        self
    }

    /// Rotated files kept per stream (default [`DEFAULT_KEEP_FILES`]); older ones are removed.
    pub fn keep_files(mut self, files: usize) -> Self {
        self.keep_files = files;
        self
    }

    /// A cap on the bytes of all files of the pruned streams, current files included (default
    /// [`DEFAULT_MAX_TOTAL_BYTES`]); while over it, the oldest rotated files are removed.
    /// `None`: no cap.
    pub fn max_total_bytes(mut self, bytes: Option<u64>) -> Self {
        self.max_total_bytes = bytes;
        self
    }

    /// Rotated files older than this (by the time they were rotated) are removed (default
    /// [`DEFAULT_MAX_AGE`]). `None`: no age limit.
    pub fn max_age(mut self, age: Option<Duration>) -> Self {
        self.max_age = age;
        self
    }

    /// Compresses rotated files with gzip (off by default), on the sink's maintenance thread.
    pub fn gzip(mut self, on: bool) -> Self {
        self.gzip = on;
        self
    }

    /// Whether `stream`'s file is synced to disk after every batch. On for
    /// [`Stream::Audit`], off for the others by default: their lines reach the operating system
    /// with every batch (a crash of the process loses none) and the disk on every flush.
    pub fn sync_every_batch(mut self, stream: Stream, on: bool) -> Self {
        self.sync[stream.index()] = on;
        self
    }

    /// Whether aggregate snapshots are written to the `performance` stream (on by default):
    /// per window, one line per callsite and outcome with calls, per counter that moved, and
    /// per gauge whose value changed.
    pub fn snapshots(mut self, on: bool) -> Self {
        self.snapshots = on;
        self
    }

    /// Whether rotated files of the audit stream are pruned like the others (off by default:
    /// audit files are kept until removed by hand, and are not counted in the total size
    /// cap). The chain stays verifiable from the oldest file kept ([`AuditChain::anchor`]).
    pub fn prune_audit(mut self, on: bool) -> Self {
        self.prune_audit = on;
        self
    }

    /// Creates the directory, takes its lock, opens every stream's current file (cutting back a
    /// last line torn by a crash), reads the audit chain's last hash and starts the maintenance
    /// thread, which compresses and prunes what an earlier run left.
    ///
    /// # Errors
    /// [`JsonlError`] naming the directory or file: it cannot be created or opened, another
    /// sink holds the directory, the audit stream's last line is unreadable, or a setting is
    /// out of range (`max_file_bytes` 0).
    pub fn build(self) -> Result<JsonlSink, JsonlError> {
        if self.max_file_bytes == 0 {
            return Err(JsonlError::Setting {
                setting: "max_file_bytes",
                reason: "must be at least 1".into(),
            });
        }
        let dir = self.dir;
        fs::create_dir_all(&dir).map_err(|source| JsonlError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        let lock_path = dir.join(".lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|source| JsonlError::File {
                message: format!("cannot open {}: {source}", lock_path.display()),
                source,
            })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(JsonlError::Locked {
                    dir,
                    lock: lock_path,
                });
            }
            Err(fs::TryLockError::Error(source)) => {
                return Err(JsonlError::File {
                    message: format!("cannot lock {}: {source}", lock_path.display()),
                    source,
                });
            }
        }
        let day_of = day_function(self.daily);
        let mut last: HashMap<Stream, Stamp> = HashMap::new();
        for entry in fs::read_dir(&dir)
            .map_err(|source| JsonlError::File {
                message: format!("cannot list {}: {source}", dir.display()),
                source,
            })?
            .flatten()
        {
            if let Some(Name::Rotated { stream, stamp, .. }) =
                entry.file_name().to_str().and_then(Name::parse)
            {
                let newest = last.entry(stream).or_insert_with(|| stamp.clone());
                if stamp > *newest {
                    *newest = stamp;
                }
            }
        }
        let mut streams =
            Stream::ALL.map(|stream| StreamFile::new(&dir, stream, last.remove(&stream)));
        for stream in &mut streams {
            stream.open(&*day_of)?;
        }
        let head = audit::head(&dir).map_err(|message| JsonlError::AuditHead { message })?;
        let unsettled = Arc::new(Unsettled::default());
        let maintenance = Maintenance::start(
            dir.clone(),
            Arc::clone(&unsettled),
            Retention {
                keep_files: self.keep_files,
                max_total_bytes: self.max_total_bytes,
                max_age: self.max_age,
                prune_audit: self.prune_audit,
                gzip: self.gzip,
            },
        )
        .map_err(|source| JsonlError::Spawn { source })?;
        Ok(JsonlSink {
            dir,
            max_file_bytes: self.max_file_bytes,
            daily: self.daily.is_some(),
            sync: self.sync,
            snapshots: self.snapshots,
            day_of,
            streams,
            ts: TsCache::default(),
            head,
            last_audit_sequence: None,
            failure: None,
            unsettled,
            maintenance,
            last_maintenance: Instant::now(),
            sinks_seen: HashMap::new(),
            gauges: HashMap::new(),
            staged: Staged::default(),
            process: None,
            _lock: lock,
        })
    }
}

/// The day number of a time (days since the epoch, in UTC or local time); a constant when
/// there is no daily rotation.
fn day_function(daily: Option<DayBoundary>) -> Box<DayOf> {
    fn secs(time: SystemTime) -> i64 {
        match time.duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
            Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
        }
    }
    match daily {
        None => Box::new(|_| 0),
        Some(DayBoundary::Utc) => Box::new(|time| secs(time).div_euclid(86_400)),
        Some(DayBoundary::Local) => {
            let zone = jiff::tz::TimeZone::system();
            Box::new(move |time| {
                let offset = jiff::Timestamp::try_from(time)
                    .map_or(0, |ts| i64::from(zone.to_offset(ts).seconds()));
                (secs(time) + offset).div_euclid(86_400)
            })
        }
    }
}

/// Writes what the pipeline delivers as JSON lines, one file per [`Stream`], into a log
/// directory; see the [module docs](self).
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use instrument_sinks::JsonlSink;
///
/// let sink = JsonlSink::builder()
///     .dir(dir.path())
///     .max_file_bytes(1024 * 1024)
///     .gzip(true)
///     .build()?;
/// let pipeline = instrument::builder().sink(sink).install()?;
/// instrument::audit(instrument::AuditEntry::new("load").input("a.rs").actor("ann"))?;
/// pipeline.flush()?;
///
/// let audit = std::fs::read_to_string(dir.path().join("audit.jsonl"))?;
/// let line: serde_json::Value = serde_json::from_str(audit.lines().next().unwrap())?;
/// assert_eq!(line["name"], "load");
/// assert_eq!(line["inputs"][0], "a.rs");
/// assert_eq!(line["prev_hash"], instrument_sinks::jsonl::GENESIS);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct JsonlSink {
    dir: PathBuf,
    max_file_bytes: u64,
    daily: bool,
    sync: [bool; 4],
    snapshots: bool,
    day_of: Box<DayOf>,
    streams: [StreamFile; 4],
    ts: TsCache,
    /// The hash the next audit line chains to.
    head: String,
    /// The sequence number of the last audit entry written by this sink: a retried batch is
    /// not written twice.
    last_audit_sequence: Option<u64>,
    /// Why the last write failed, until one succeeds.
    failure: Option<String>,
    /// Files rotated by the batch being written, shared with the maintenance thread.
    unsettled: Arc<Unsettled>,
    maintenance: Maintenance,
    last_maintenance: Instant,
    /// Each sink's status as of the last `sink` line written about it, to write what changed.
    sinks_seen: HashMap<String, SinkStatus>,
    /// Each gauge's last written value (its bits).
    gauges: HashMap<&'static Metadata, u64>,
    /// What the batch being written changes in `sinks_seen` and `gauges`, taken on when it is
    /// written: a failed batch is written again in full.
    staged: Staged,
    /// The process name, from `start`.
    process: Option<String>,
    /// Held for the sink's life: one sink per directory.
    _lock: File,
}

impl fmt::Debug for JsonlSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JsonlSink")
            .field("dir", &self.dir)
            .field("max_file_bytes", &self.max_file_bytes)
            .field("failure", &self.failure)
            .finish_non_exhaustive()
    }
}

/// Changes to the sink's memory of what it wrote, made by a batch being written.
#[derive(Default)]
struct Staged {
    sinks: Vec<SinkStatus>,
    gauges: Vec<(&'static Metadata, u64)>,
}

/// The new chain head and last sequence number of an audit batch, taken on when it is written.
struct AuditAdvance {
    head: String,
    last_sequence: Option<u64>,
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

impl JsonlSink {
    /// A builder with the defaults: directory [`DEFAULT_DIR`], rotation at
    /// [`DEFAULT_MAX_FILE_BYTES`], no daily rotation, [`DEFAULT_KEEP_FILES`] rotated files per
    /// stream, a total cap of [`DEFAULT_MAX_TOTAL_BYTES`], an age limit of [`DEFAULT_MAX_AGE`],
    /// no gzip, the audit stream synced per batch, snapshots written.
    pub fn builder() -> JsonlSinkBuilder {
        JsonlSinkBuilder::default()
    }

    /// The log directory.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn push_event(&mut self, event: &Event) -> Result<(), json::Error> {
        let (stream, level) = match event.outcome {
            Outcome::Ok if event.reason == EventReason::Slow => (Stream::Performance, Level::Warn),
            Outcome::Ok => (Stream::Performance, Level::Info),
            Outcome::Cancelled => (Stream::Error, Level::Warn),
            _ => (Stream::Error, Level::Error),
        };
        let callsite = event.callsite;
        let mut line = Line::new(
            self.ts.format(event.start),
            level,
            stream,
            "call",
            callsite.name(),
        );
        line.module = Some(callsite.module_path());
        line.duration_ns = Some(nanos(event.duration));
        line.outcome = Some(event.outcome);
        line.error_kind = event.error_kind;
        line.reason = Some(event.reason.as_str());
        line.labels = callsite.labels_slice();
        line.thread = Some(&event.thread);
        line.correlation_id = event.correlation;
        let buf = &mut self.streams[stream.index()].buf;
        if event.fields.is_empty() {
            line::push(buf, &line)
        } else {
            line::push(buf, &line.with_fields(Pairs(&event.fields)))
        }
    }

    fn push_drop(&mut self, drop: &DropMarker) -> Result<(), json::Error> {
        let (since, until) = (self.ts.format(drop.since), self.ts.format(drop.until));
        let callsite = drop.callsite;
        let message = format!(
            "{} events of {} dropped between {} and {} (a queue was full; the calls are still counted)",
            drop.count,
            callsite.name(),
            since.as_str(),
            until.as_str()
        );
        let mut line = Line::new(
            until,
            Level::Warn,
            Stream::Performance,
            "drop",
            callsite.name(),
        );
        line.module = Some(callsite.module_path());
        line.message = Some(&message);
        line.labels = callsite.labels_slice();
        let line = line.with_fields(DropFields {
            dropped: drop.count,
            since,
            until,
        });
        line::push(&mut self.streams[Stream::Performance.index()].buf, &line)
    }

    fn push_snapshot(&mut self, snapshot: &Snapshot) -> Result<(), json::Error> {
        let start = self.ts.format(snapshot.window_start);
        let end = self.ts.format(snapshot.window_end);
        if self.snapshots {
            let buf = &mut self.streams[Stream::Performance.index()].buf;
            for call in snapshot.calls.iter().filter(|c| c.window.count > 0) {
                let mut line = Line::new(
                    end,
                    Level::Info,
                    Stream::Performance,
                    "aggregate",
                    call.callsite.name(),
                );
                line.module = Some(call.callsite.module_path());
                line.outcome = Some(call.outcome);
                line.labels = call.callsite.labels_slice();
                let line = line.with_fields(AggregateFields {
                    window_start: start,
                    window_end: end,
                    stats: &call.window,
                    error_kinds: &call.error_kinds,
                });
                line::push(buf, &line)?;
            }
            for counter in snapshot.counters.iter().filter(|c| c.window > 0) {
                let mut line = Line::new(
                    end,
                    Level::Info,
                    Stream::Performance,
                    "counter",
                    counter.callsite.name(),
                );
                line.module = Some(counter.callsite.module_path());
                line.labels = counter.callsite.labels_slice();
                let line = line.with_fields(CounterFields {
                    window_start: start,
                    window_end: end,
                    window: counter.window,
                    total: counter.total,
                });
                line::push(buf, &line)?;
            }
            for gauge in &snapshot.gauges {
                let bits = gauge.value.to_bits();
                if self.gauges.get(gauge.callsite) == Some(&bits) {
                    continue;
                }
                self.staged.gauges.push((gauge.callsite, bits));
                let mut line = Line::new(
                    end,
                    Level::Info,
                    Stream::Performance,
                    "gauge",
                    gauge.callsite.name(),
                );
                line.module = Some(gauge.callsite.module_path());
                line.labels = gauge.callsite.labels_slice();
                line::push(buf, &line.with_fields(GaugeFields(gauge.value)))?;
            }
        }
        for status in &snapshot.self_metrics.sinks {
            self.push_sink_status(status, end)?;
        }
        Ok(())
    }

    /// A line when a sink's errors, losses or health changed since the last snapshot.
    fn push_sink_status(&mut self, status: &SinkStatus, ts: line::Ts) -> Result<(), json::Error> {
        let previous = self.sinks_seen.get(&status.name);
        let new_errors = status
            .errors
            .saturating_sub(previous.map_or(0, |p| p.errors));
        let lost_more = previous.map_or(!status.lost.is_none(), |p| p.lost != status.lost);
        let health_changed = previous.map_or(status.health != SinkHealth::Healthy, |p| {
            p.health != status.health
        });
        if new_errors == 0 && !lost_more && !health_changed {
            return Ok(());
        }
        let mut parts = Vec::new();
        match &status.health {
            SinkHealth::Healthy if health_changed => parts.push("healthy again".to_owned()),
            SinkHealth::Degraded(m) => parts.push(format!("degraded: {m}")),
            SinkHealth::Unhealthy(m) => parts.push(format!("unhealthy: {m}")),
            _ => {}
        }
        if new_errors > 0 {
            parts.push(format!(
                "{new_errors} failed call(s), the last: {}",
                status.last_error.as_deref().unwrap_or("unknown")
            ));
        }
        if lost_more {
            parts.push(format!("lacks {} since install", status.lost));
        }
        let message = format!("sink `{}` {}", status.name, parts.join("; "));
        let (stream, level) = if lost_more || matches!(status.health, SinkHealth::Unhealthy(_)) {
            (Stream::Error, Level::Error)
        } else if new_errors > 0 || !matches!(status.health, SinkHealth::Healthy) {
            (Stream::Error, Level::Warn)
        } else {
            (Stream::Main, Level::Info)
        };
        let mut line = Line::new(ts, level, stream, "sink", &status.name);
        line.message = Some(&message);
        let line = line.with_fields(SinkFields { status, new_errors });
        line::push(&mut self.streams[stream.index()].buf, &line)?;
        self.staged.sinks.push(status.clone());
        Ok(())
    }

    fn push_notice(&mut self, notice: &Notice) -> Result<(), json::Error> {
        let stream = if notice.level >= Level::Warn {
            Stream::Error
        } else {
            Stream::Main
        };
        let mut line = Line::new(
            self.ts.format(notice.time),
            notice.level,
            stream,
            "notice",
            &notice.source,
        );
        line.message = Some(&notice.message);
        line.correlation_id = notice.correlation;
        let buf = &mut self.streams[stream.index()].buf;
        if notice.fields.is_empty() {
            line::push(buf, &line)
        } else {
            line::push(buf, &line.with_fields(Pairs(&notice.fields)))
        }
    }

    /// Serializes audit entries after the chain's head; entries this sink already wrote (a
    /// retried batch) are skipped.
    fn push_audit(&mut self, entries: &[AuditEntry]) -> Result<AuditAdvance, json::Error> {
        let mut advance = AuditAdvance {
            head: self.head.clone(),
            last_sequence: self.last_audit_sequence,
        };
        for entry in entries {
            if entry.sequence != 0 && advance.last_sequence.is_some_and(|l| entry.sequence <= l) {
                continue;
            }
            let level = match entry.outcome {
                Some(Outcome::Error | Outcome::Panic) => Level::Error,
                Some(Outcome::Cancelled) => Level::Warn,
                _ => Level::Info,
            };
            let mut line = Line::new(
                self.ts.format(entry.timestamp),
                level,
                Stream::Audit,
                "audit",
                &entry.operation,
            );
            line.module = entry.callsite.map(Metadata::module_path);
            line.labels = entry.callsite.map_or(&[], Metadata::labels_slice);
            line.duration_ns = entry.duration.map(nanos);
            line.outcome = entry.outcome;
            line.error_kind = entry.error_kind;
            line.correlation_id = entry.correlation;
            line.audit = Some(AuditPart {
                sequence: entry.sequence,
                inputs: &entry.inputs,
                outputs: &entry.outputs,
                actor: entry.actor.as_deref(),
                prev_hash: &advance.head,
            });
            let buf = &mut self.streams[Stream::Audit.index()].buf;
            let hash = if entry.fields.is_empty() {
                audit::push(buf, &line)?
            } else {
                audit::push(buf, &line.with_fields(Pairs(&entry.fields)))?
            };
            advance.head = hash;
            if entry.sequence != 0 {
                advance.last_sequence = Some(entry.sequence);
            }
        }
        Ok(advance)
    }

    fn push_lifecycle(
        &mut self,
        kind: &'static str,
        message: &str,
        start: Option<&StartInfo>,
    ) -> Result<(), json::Error> {
        let name = self.process.clone().unwrap_or_else(|| "unknown".to_owned());
        let mut line = Line::new(
            self.ts.format(SystemTime::now()),
            Level::Info,
            Stream::Main,
            kind,
            &name,
        );
        line.message = Some(message);
        let buf = &mut self.streams[Stream::Main.index()].buf;
        match start {
            Some(info) => {
                let fields = StartFields {
                    pid: info.process.pid,
                    hostname: info.process.hostname.as_deref(),
                    pipeline_start: self.ts.format(info.pipeline_start),
                    window: info.window,
                    tick: info.tick,
                };
                line::push(buf, &line.with_fields(fields))
            }
            None => line::push(buf, &line),
        }
    }

    /// Serializes a batch into the streams' buffers.
    fn serialize(&mut self, batch: &Batch) -> Result<Option<AuditAdvance>, json::Error> {
        for event in &batch.events {
            self.push_event(event)?;
        }
        for drop in &batch.drops {
            self.push_drop(drop)?;
        }
        if let Some(snapshot) = &batch.snapshot {
            self.push_snapshot(snapshot)?;
        }
        for notice in &batch.notices {
            self.push_notice(notice)?;
        }
        if batch.audit.is_empty() {
            Ok(None)
        } else {
            self.push_audit(&batch.audit).map(Some)
        }
    }

    /// Appends every stream's buffer, rotating as needed. On a failure, undoes what this batch
    /// wrote to every stream (files rotated meanwhile included), so that the pipeline's retry
    /// writes each line once.
    fn commit(&mut self, now: SystemTime, audit: Option<AuditAdvance>) -> Result<(), SinkError> {
        let mut segments: [Vec<Segment>; 4] = Default::default();
        let mut rotated = false;
        let mut result = Ok(());
        for (index, segments) in segments.iter_mut().enumerate() {
            if self.streams[index].buf.is_empty() {
                continue;
            }
            let rotation = Rotation {
                max: self.max_file_bytes,
                daily: self.daily,
                sync: self.sync[index],
                now,
                day_of: &*self.day_of,
                unsettled: &self.unsettled,
            };
            match self.streams[index].write_buf(&rotation, segments) {
                Ok(r) => rotated |= r,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        for stream in &mut self.streams {
            stream.buf.clear();
        }
        let staged = std::mem::take(&mut self.staged);
        let outcome = match result {
            Ok(()) => {
                if let Some(advance) = audit {
                    self.head = advance.head;
                    self.last_audit_sequence = advance.last_sequence;
                }
                for status in staged.sinks {
                    self.sinks_seen.insert(status.name.clone(), status);
                }
                self.gauges.extend(staged.gauges);
                if self.failure.take().is_some() {
                    // What failed may have failed the maintenance thread too: look again.
                    rotated = true;
                }
                Ok(())
            }
            Err(e) => {
                for (stream, segments) in self.streams.iter_mut().zip(segments) {
                    stream.undo(segments);
                }
                self.failure = Some(e.message.clone());
                Err(SinkError::with_source(e.message, e.source))
            }
        };
        self.unsettled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        if rotated {
            self.maintenance.wake();
        }
        outcome
    }

    fn serialized(
        &mut self,
        result: Result<Option<AuditAdvance>, json::Error>,
    ) -> Result<Option<AuditAdvance>, SinkError> {
        result.map_err(|e| {
            for stream in &mut self.streams {
                stream.buf.clear();
            }
            self.staged = Staged::default();
            SinkError::with_source(
                format!("cannot serialize a batch for {}", self.dir.display()),
                e,
            )
        })
    }
}

impl Sink for JsonlSink {
    fn name(&self) -> &'static str {
        "jsonl"
    }

    fn interests(&self) -> Interests {
        // Snapshots also carry the sinks' statuses, written when they change.
        Interests::ALL
    }

    fn start(&mut self, info: &StartInfo) -> Result<(), SinkError> {
        self.process = Some(info.process.name.clone());
        let result = self.push_lifecycle("start", "pipeline started", Some(info));
        self.serialized(result.map(|()| None))?;
        self.commit(SystemTime::now(), None)
    }

    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let result = self.serialize(batch);
        let audit = self.serialized(result)?;
        self.commit(SystemTime::now(), audit)
    }

    fn tick(&mut self, now: SystemTime) -> Result<(), SinkError> {
        let mut result = Ok(());
        let mut rotated = false;
        for index in 0..self.streams.len() {
            let day_of = &*self.day_of;
            let stream = &mut self.streams[index];
            let step = stream.open(day_of).and_then(|()| {
                let new_day = self.daily && stream.day.is_some_and(|day| day != day_of(now));
                if stream.size > 0 && new_day {
                    stream.rotate(now, day_of, &self.unsettled)?;
                    rotated = true;
                }
                Ok(())
            });
            if let Err(e) = step {
                result = Err(e);
                break;
            }
        }
        // Nothing is being written: files rotated here are settled.
        self.unsettled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        if rotated || self.last_maintenance.elapsed() >= MAINTENANCE_EVERY {
            self.last_maintenance = Instant::now();
            self.maintenance.wake();
        }
        result.map_err(|e| {
            self.failure = Some(e.message.clone());
            SinkError::with_source(e.message, e.source)
        })
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        for stream in &mut self.streams {
            stream
                .sync()
                .map_err(|e| SinkError::with_source(e.message, e.source))?;
        }
        Ok(())
    }

    fn shutdown(&mut self) -> Result<(), SinkError> {
        let result = self.push_lifecycle("shutdown", "pipeline shut down", None);
        let written = self
            .serialized(result.map(|()| None))
            .and_then(|_| self.commit(SystemTime::now(), None));
        let flushed = self.flush();
        // Finishes compressing and pruning what this run rotated.
        self.maintenance.stop();
        written.and(flushed)
    }

    fn health(&self) -> SinkHealth {
        if let Some(failure) = &self.failure {
            return SinkHealth::Unhealthy(failure.clone());
        }
        match self.maintenance.problem() {
            Some(problem) => SinkHealth::Degraded(problem),
            None => SinkHealth::Healthy,
        }
    }
}
