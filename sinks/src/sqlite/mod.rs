//! The `SQLite` store: a sink that writes everything it receives into one database file.
//!
//! # Layout
//! The tables are created by forward migrations (`schema.rs`); a file written by a newer release
//! is refused. Times are UTC microseconds since the Unix epoch in `*_us` integer columns,
//! durations integer nanoseconds in `*_ns` columns; names and enum values are those of
//! `docs/data-types.md`.
//!
//! | table | one row per |
//! | --- | --- |
//! | `callsites` | callsite (`name`, `module`, `file`, `line`, `kind`, `labels` as a JSON object, `unit`, `description`) |
//! | `events` | event: `outcome`, `error_kind`, `start_us`, `duration_ns`, thread, `correlation` (16 hex digits), `reason`, captured arguments as a JSON object in `fields` (`NULL` when none), and the `run_id` that wrote it |
//! | `windows` | callsite and outcome with calls in a snapshot's window: `count`, `timed`, `dropped`, `sum_ns`, `min_ns`, `max_ns`, `p50_ns` to `p999_ns`, `histogram` (the window's [`Histogram`](instrument::Histogram) as JSON, which deserializes and merges), and the `run_id` that wrote it |
//! | `window_errors` | error kind of a `windows` row with errors in that window |
//! | `counters`, `gauges` | counter or gauge per snapshot |
//! | `drops` | drop marker |
//! | `runs` | sink start (a run): `pid`, `process_name`, `hostname`, `started_us`, `ended_us` (set at the sink's shutdown; `NULL` while it runs or when it did not shut down), `program_version` and `config_digest` (SHA-256 of the host's configuration) when the host gave them ([`SqliteSinkBuilder::program_version`], [`SqliteSinkBuilder::run_config`]), the pipeline's `window_ns` and `tick_ns` |
//! | `audit` | audit entry, in a hash chain ([`verify_audit_chain`]) |
//! | `audit_anchor` | pass that pruned audit rows: the last pruned row's `last_id`, `run_id`, `sequence` and `hash` (where the chain now starts), `pruned_rows`, `total_pruned`, `pruned_us` |
//! | `notices` | notice; `fields` a JSON array of `[key, value]` pairs |
//! | `health` | health change of a component (a notice from source `health`, see `health`): `time_us`, `component` (`overall` for the whole), `status`, `reason` |
//! | `alerts` | alert episode (notices from source `alerts`, see `alerts`): `rule`, `state` (latest: `pending`, `firing`, `acknowledged`, `resolved`, `inactive`), `severity`, `labels` (JSON object), `message` (the summary), `value`, `started_us`, `updated_us`, `resolved_us` (set when it resolved), `acked_us`, `acked_by`, `fingerprint` (one open row per fingerprint, updated by each change until it resolves), `alert_id` (the engine's id), `silenced` |
//! | `alert_actions` | operator's action from outside the process ([`control`]): `action` (`ack`, `resolve`, `silence`, `expire`), `time_us`, `alert_row` and `fingerprint` of the alert, the silence's `matchers` (JSON object), `starts_us` and `ends_us`, `silence_id` (of an `expire`), `actor`, `comment`; the sink hands each on to the alert engine at its next tick |
//!
//! # Reading
//! [`query::Store`] opens a store read-only and answers the questions of the `instrumentctl`
//! command (feature `cli`): summaries, slow calls, errors, traces, audit trails and exports.
//!
//! # Writing
//! The sink owns its connection and writes on its worker thread, one transaction per batch,
//! through cached prepared statements; events go 32 rows per `INSERT`. Data is written with
//! `synchronous=NORMAL` (WAL: a committed batch survives a process crash, and may be lost with
//! the machine's power);
//! batches with audit entries with `synchronous=FULL`, so an entry a returned
//! [`flush`](instrument::PipelineGuard::flush) covers survives a power loss too. Audit rows are
//! unique per run and sequence number, so a retried batch inserts nothing twice.
//!
//! Readers (the command line tool, a backup, any `SQLite` client) read the file while the sink
//! writes; each sees the batches committed before its read transaction began, never part of one.
//!
//! The write-ahead log (the `-wal` file beside the database) is checkpointed by the sink itself,
//! in place of `SQLite`'s automatic checkpoints:
//! - after a write that leaves 1,000 frames (pages, 4 KiB each by default) or more in the log,
//!   a passive checkpoint copies what no reader still needs into the database; once everything
//!   is copied and no reader uses the log, the next write starts it again from its beginning
//!   and cuts the file to 4 MiB (`journal_size_limit`);
//! - a reader that keeps a read transaction open, or readers that follow one another without a
//!   pause, keep the log from starting again. Past 4,000 frames (about 16 MiB) a write is
//!   therefore followed by a checkpoint that tries again, 1 ms apart doubling to 10 ms and for
//!   up to the [busy timeout](SqliteSinkBuilder::busy_timeout) (default 5 s), until every
//!   frame is copied and the readers of older snapshots have finished; readers that begin
//!   meanwhile read the database file and are not in the way. Each attempt reads anew which
//!   readers are where: `SQLite`'s own waiting checkpoint waits on a reader's lock slot, which
//!   a reader starting its next transaction at once takes again, and so can wait the whole
//!   timeout for a reader whose snapshots are fresh;
//! - at a tick (1 s) with no write since the previous tick, when the log is not empty, the sink
//!   checkpoints everything and truncates the `-wal` file to zero bytes, if no reader or other
//!   writer is in the way at that moment (it does not wait for them). It does not while
//!   batches keep coming: that checkpoint keeps every writer out while it syncs the database
//!   file (tens of milliseconds), and the checkpoints after writes bound the log meanwhile.
//!
//! The sink takes the file's [`WriteGate`] around each write transaction and each checkpoint
//! that keeps writers out. Code of the host that writes tables of its own into the same file
//! takes it too (the main job's store stage does), so that the two wait for each other on a
//! lock rather than in `SQLite`'s busy handler, which sleeps 1 to 100 ms between tries.
//!
//! So the `-wal` file stays under 4,000 frames of the database's page size plus one batch
//! (16.5 MB with 4 KiB pages) while every read transaction lasts less than the busy timeout.
//! The sink's writes pause during such a checkpoint (the pipeline does not: its batches wait in
//! the sink's backlog), in practice for about as long as a read transaction lasts. A read
//! transaction that lasts longer than the busy timeout lets the log
//! grow by another 4,000 frames before the next attempt, each attempt pausing the sink's writes
//! for the busy timeout; the file goes back to at most 4 MiB once the reader has finished. A
//! checkpoint that fails for another reason than a reader or writer in the way makes the sink
//! [`Degraded`](instrument::SinkHealth::Degraded), naming the file, until one succeeds. While
//! the sink's own [scheduled backup](#backups) runs (one read transaction for the whole copy),
//! the checkpoint past 4,000 frames makes one attempt and does not wait.
//! `tests/sqlite_failures.rs` writes 4,000 batches while two readers hold 300 ms snapshots
//! back to back and checks the bound (without these checkpoints the file passes 100 MB).
//!
//! # Failures
//! A write that fails returns an error and leaves nothing of its batch in the file: the
//! pipeline retries it (an event or snapshot batch up to its `max_retries` times, 10 ms apart
//! doubling, then counts it lost; an audit batch without limit, so no audit entry is dropped
//! while the pipeline's audit backlog has room). The sink is
//! [`Unhealthy`](instrument::SinkHealth::Unhealthy) with a one-line reason naming the file from
//! the failure until a write succeeds, and recovers by itself when the cause goes away:
//!
//! | cause | what the sink does |
//! | --- | --- |
//! | the file is locked by another writer, `SQLITE_BUSY` or `SQLITE_LOCKED` (including the kinds `SQLite`'s busy handler does not wait for, such as `SQLITE_BUSY_SNAPSHOT`) | retries the batch itself, 5 ms apart doubling to 250 ms, for up to the busy timeout in all, then fails it |
//! | the disk is full, or the file reached [`max_size`](SqliteSinkBuilder::max_size) (`SQLITE_FULL`) | fails the batch; writes succeed again as soon as space is freed (rows deleted from the store are reused) |
//! | the file or its file system is read-only (`SQLITE_READONLY`), an I/O error, or `SQLite` cannot open or read the file | fails the batch and closes the connection; the next write or tick opens the file again. Until that succeeds, each write and tick fails with the reason it cannot be opened, for example [`SqliteError::ReadOnly`]'s |
//! | the file, or its directory, was deleted or replaced while open | before each write and each tick, and after each write, the sink compares the file at the path with the one it has open (device and inode); when they differ it closes the old connection without touching the files now at the path, creates the directory and the tables again (refusing a file that is not a database, unchanged), and writes there, publishing a `warn` notice; a batch committed to the old file between the check before it and the commit is failed after it, so that the pipeline writes it again to the new file. Nothing else goes to the unlinked file, and what was stored in it is not copied over |
//!
//! A file that cannot be opened for writing when the sink is built
//! ([`SqliteError::ReadOnly`]), is not a `SQLite` database or is corrupt
//! ([`SqliteError::NotADatabase`]), or has a newer schema is an error of
//! [`build`](SqliteSinkBuilder::build), and the file is left unchanged.
//!
//! Limits: a failed event or snapshot batch waits at the head of the sink's queue and is tried
//! again with a back-off (10 ms doubling to 5 s, 14 retries by default: about 30 s) while the
//! sink's ticks and audit batches go on, then is counted lost; so during a longer outage every
//! such batch whose turn comes is lost, and the batches behind it wait in the sink's backlog,
//! beyond which the oldest are dropped (all counted in the sink's status,
//! [`Lost`](instrument::Lost)). Audit entries wait in the pipeline's memory, up to its
//! `audit_capacity`, and are lost for this sink (and reported) beyond it or if the process ends
//! first. Device and inode are compared on Unix; elsewhere only a deleted file is noticed.
//! # Retention
//! [`prune`] deletes the rows older than a cutoff from `events` (by `start_us`), `windows` and
//! their `window_errors`, `counters` and `gauges` (by `window_start_us`), `drops` (by
//! `since_us`), `notices` and `health` (by `time_us`) and resolved `alerts` (by `resolved_us`;
//! an alert that is still open is kept however old). It works in transactions of at most
//! [`PRUNE_BATCH`] rows with a short pause between them, so a sink writing to the same file
//! waits at most one small transaction. `callsites` and `runs` are kept: they are small, and
//! the other tables refer to them. Deleted rows free pages that `SQLite` reuses; the file does
//! not shrink (that takes a `VACUUM`, which rewrites the whole file and is left to the operator).
//!
//! The sink prunes by itself ([`SqliteSinkBuilder::retention`],
//! default 30 days): every [`prune_interval`](SqliteSinkBuilder::prune_interval) (default
//! a minute) it starts a pass, and each tick does at most [`PRUNE_STEPS_PER_TICK`] of those
//! transactions, on the sink's own thread between batches, until the pass is done.
//!
//! # The audit anchor
//! Audit rows are kept for ever unless an audit retention is given
//! ([`SqliteSinkBuilder::audit_retention`], or the
//! `audit_older_than` of [`prune`]). Pruning them deletes the oldest rows of the chain, in `id`
//! order, up to the first row that is not older than the cutoff, and never the newest row (the
//! chain goes on from it). Each pruned row is checked against the chain before it is deleted, so
//! a changed row is reported, not laundered. In the same transaction, `audit_anchor` records the
//! last pruned row: its `id` (`last_id`), `run_id`, `sequence`, `hash`, the rows this pass
//! pruned, all rows pruned so far, and when. [`verify_audit_chain`]
//! then starts from the newest anchor instead of the genesis hash.
//!
//! Limits: the anchor proves that the remaining rows follow on from the pruned ones, not that
//! the pruned ones were genuine beyond the check made when pruning. Someone who can write the
//! file can also delete the newest rows, or rewrite the whole chain and its anchor: the chain is
//! evidence only against a head kept elsewhere, such as the `audit_head` of a backup's manifest.
//!
//! # Backups
//! [`backup`] copies a store through `SQLite`'s online backup API, in steps of
//! [`BACKUP_PAGES_PER_STEP`] pages, inside one read transaction on the source: the copy is the
//! store as it was when the backup started, and in WAL mode (the sink's) a sink keeps writing
//! meanwhile. A backup directory holds:
//!
//! ```text
//! DEST/instrument.db    the copy, in rollback-journal mode, so it is one self-contained file
//! DEST/manifest.json    a BackupManifest: file name, sha256, bytes, schema version, creation
//!                       time, source path, audit rows and head
//! ```
//!
//! The database is written as `instrument.db.partial` and renamed when complete, the manifest
//! through a temporary file and a rename, and both are synced; then [`verify_backup`] checks the
//! result (checksum, size, `PRAGMA integrity_check`, audit chain, and that the manifest's
//! figures match the copy). A failed backup removes what it wrote. A backup never writes into a
//! directory that holds anything, and [`restore`] never writes over an existing file.
//!
//! Scheduled backups ([`SqliteSinkBuilder::backups`] with a
//! [`BackupSchedule`]) run on a thread of their own, started from the sink's tick, each into a
//! new subdirectory `backup-YYYYMMDDTHHMMSS.ffffffZ` (UTC) of the schedule's directory; after a
//! backup verifies, the oldest complete backups beyond [`BackupSchedule::keep`] are removed. A
//! failed backup makes the sink [`Degraded`](instrument::SinkHealth::Degraded) with the reason
//! until one succeeds; writing goes on.
//!
//! Limits: a backup still running when the sink shuts down is stopped and removed. The copy
//! takes as much disk as the store, and verifying it reads it twice (checksum, then
//! `integrity_check`). While a backup runs, its read transaction keeps checkpoints from passing
//! its snapshot, so the WAL grows by what is written meanwhile and shrinks at the next
//! checkpoint after it (see [Writing](#writing)). A source that is not in WAL mode blocks writers for the length of the
//! backup. Two sinks must not share a schedule directory, and a clock that jumps back makes the
//! subdirectory names sort out of order (the newest backup is never the one removed).

mod audit;
pub mod control;
mod error;
mod gate;
mod maintenance;
pub mod query;
#[cfg(feature = "reports")]
mod reports;
mod schema;

use crate::errors::error_chain;
use std::collections::HashMap;
use std::ffi::{OsString, c_int};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use instrument::{
    AuditEntry, Batch, CallStats, Event, FieldValue, Level, Metadata, Notice, Sink, SinkError,
    SinkHealth, Snapshot, StartInfo,
};
use rusqlite::config::DbConfig;
use rusqlite::hooks::Wal;
use rusqlite::wal::CheckpointMode;
use rusqlite::{
    Connection, ErrorCode, MAIN_DB, OptionalExtension, Transaction, TransactionBehavior,
};
use serde::ser::{Serialize, SerializeMap, Serializer};

pub use self::audit::verify_audit_chain;
pub use self::error::{ChainError, SqliteError};
pub use self::gate::WriteGate;
pub use self::maintenance::{
    AuditAnchor, BACKUP_FILE, BACKUP_PAGES_PER_STEP, BackupManifest, BackupSchedule, MANIFEST_FILE,
    MANIFEST_VERSION, MaintenanceError, PRUNE_BATCH, PRUNE_STEPS_PER_TICK, PruneReport, PrunedRows,
    backup, prune, restore, verify_backup,
};
#[cfg(feature = "reports")]
pub use self::reports::ReportSchedule;
pub use self::schema::SCHEMA_VERSION;

use self::audit::{AuditContent, GENESIS};

/// The default database file, relative to the working directory.
pub const DEFAULT_PATH: &str = "./instrument-data/instrument.db";

/// Frames in the write-ahead log past which a write is followed by a passive checkpoint
/// (`SQLite`'s own automatic checkpoint threshold, which the sink's replaces).
const CHECKPOINT_FRAMES: u32 = 1000;
/// Frames past which a write is followed by a checkpoint that waits for readers to leave the
/// log; after one that could not, the next is tried this many frames later.
const RESTART_FRAMES: u32 = 4000;
/// `journal_size_limit`: the size the `-wal` file is cut to when the log starts again.
const WAL_SIZE_LIMIT: i64 = 4 << 20;
/// First pause of a write retried because the file was locked; it doubles up to `LONGEST_RETRY`.
const FIRST_RETRY: Duration = Duration::from_millis(5);
const LONGEST_RETRY: Duration = Duration::from_millis(250);
/// How long the sink keeps rows other than audit rows by default: 30 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Stores what the pipeline delivers in a `SQLite` database; see the [module docs](self) for the
/// tables, and for what happens when the file is locked, full, read-only or deleted.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("instrument.db");
/// use instrument_sinks::SqliteSink;
///
/// let sink = SqliteSink::builder().path(&path).build()?;
/// let pipeline = instrument::builder().sink(sink).install()?;
/// instrument::audit(instrument::AuditEntry::new("load").input("a.rs"))?;
/// pipeline.flush()?;
///
/// let db = rusqlite::Connection::open(&path)?;
/// let operation: String = db.query_row("SELECT operation FROM audit", [], |r| r.get(0))?;
/// assert_eq!(operation, "load");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct SqliteSink {
    options: SqliteSinkBuilder,
    /// The open file; `None` after a failure that closed it, until it is opened again.
    store: Option<Store>,
    start: Option<StartInfo>,
    /// Why the last write (or opening the file) failed; cleared by the next success.
    write_error: Option<String>,
    /// Why the last checkpoint failed; cleared by the next success.
    checkpoint_error: Option<String>,
    /// Pruning passes and scheduled backups, run from [`Sink::tick`].
    maintenance: maintenance::Maintenance,
    /// Operators' actions on alerts, handed to the alert engine from [`Sink::tick`].
    control: control::ControlFeed,
    /// Scheduled reports, started from [`Sink::tick`].
    #[cfg(feature = "reports")]
    reports: Option<reports::Reports>,
}

/// Configures a [`SqliteSink`].
#[derive(Clone, Debug)]
pub struct SqliteSinkBuilder {
    path: PathBuf,
    busy_timeout: Duration,
    max_size: Option<u64>,
    maintenance: maintenance::Settings,
    run: RunLabels,
    #[cfg(feature = "reports")]
    reports: Option<ReportSchedule>,
}

/// What the host tells the sink about its run, beyond what the pipeline's start gives.
#[derive(Clone, Debug, Default)]
struct RunLabels {
    /// The program's version.
    version: Option<String>,
    /// SHA-256 of the host's configuration, 64 lower-case hex digits.
    config_digest: Option<String>,
}

impl Default for SqliteSinkBuilder {
    fn default() -> Self {
        SqliteSinkBuilder {
            path: PathBuf::from(DEFAULT_PATH),
            busy_timeout: Duration::from_secs(5),
            max_size: None,
            maintenance: maintenance::Settings {
                retention: DEFAULT_RETENTION,
                audit_retention: None,
                prune_interval: Duration::from_secs(60),
                backups: None,
            },
            run: RunLabels::default(),
            #[cfg(feature = "reports")]
            reports: None,
        }
    }
}

impl SqliteSinkBuilder {
    /// The database file (default [`DEFAULT_PATH`]); its directory is created if missing.
    #[must_use]
    pub fn path(mut self, path: impl AsRef<Path>) -> Self {
        path.as_ref().clone_into(&mut self.path);
        self
    }

    /// How long a write waits for a lock held by a reader or another writer (default 5 s), in
    /// all, retries included; also how long a checkpoint waits for readers to leave the
    /// write-ahead log (see the [module docs](self#writing)).
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
        self
    }

    /// The largest the database file may grow, in bytes, rounded down to whole pages (default:
    /// no limit but the disk's). A write that needs more fails as on a full disk (`SQLITE_FULL`,
    /// see [Failures](self#failures)) until rows are deleted, whose space is then reused. A
    /// limit below the file's present size holds it at that size. The `-wal` file is not
    /// counted.
    #[must_use]
    pub fn max_size(mut self, bytes: u64) -> Self {
        self.max_size = Some(bytes);
        self
    }

    /// How long rows other than audit rows are kept (default [`DEFAULT_RETENTION`], 30 days);
    /// older ones are pruned from the sink's ticks (see [retention](self#retention)).
    /// `Duration::MAX` keeps everything.
    #[must_use]
    pub fn retention(mut self, retention: Duration) -> Self {
        self.maintenance.retention = retention;
        self
    }

    /// How long audit rows are kept: `None` (the default) keeps them for ever; with `Some`,
    /// older ones are pruned too, and the chain goes on verifying from the anchor they leave.
    #[must_use]
    pub fn audit_retention(mut self, retention: Option<Duration>) -> Self {
        self.maintenance.audit_retention = retention;
        self
    }

    /// How often a pruning pass starts (default one minute). A pass does a bounded amount of
    /// work per tick and goes on over the next ticks until it is done.
    #[must_use]
    pub fn prune_interval(mut self, interval: Duration) -> Self {
        self.maintenance.prune_interval = interval;
        self
    }

    /// Writes verified backups of the store on `schedule`, from a thread of their own (default:
    /// none).
    #[must_use]
    pub fn backups(mut self, schedule: BackupSchedule) -> Self {
        self.maintenance.backups = Some(schedule);
        self
    }

    /// Writes an HTML report of the last interval on `schedule` (default daily, keeping 7),
    /// from a thread of its own (feature `reports`; default: none). A report that cannot be
    /// written makes the sink [`Degraded`](instrument::SinkHealth::Degraded) until one is.
    #[cfg(feature = "reports")]
    #[must_use]
    pub fn reports(mut self, schedule: ReportSchedule) -> Self {
        self.reports = Some(schedule);
        self
    }

    /// The program's version, recorded with each run in `runs.program_version` (default: none;
    /// a host passes its own, such as `env!("CARGO_PKG_VERSION")`).
    #[must_use]
    pub fn program_version(mut self, version: impl Into<String>) -> Self {
        self.run.version = Some(version.into());
        self
    }

    /// The host's configuration, as bytes that change when it changes (a file's contents, or
    /// the options it runs with, written out): its SHA-256 is recorded with each run in
    /// `runs.config_digest`, so that runs with different settings can be told apart
    /// (default: none).
    #[must_use]
    pub fn run_config(mut self, config: impl AsRef<[u8]>) -> Self {
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(config.as_ref());
        self.run.config_digest = Some(digest.iter().fold(String::new(), |mut hex, byte| {
            use std::fmt::Write as _;
            let _ = write!(hex, "{byte:02x}");
            hex
        }));
        self
    }

    /// Opens (or creates) the database and brings its tables up to date, so that a bad file is
    /// reported when the pipeline is built, not when the first batch arrives.
    ///
    /// # Errors
    /// [`SqliteError`] naming the file: the directory cannot be created, the file cannot be
    /// written (it or its file system is read-only), is not a `SQLite` database or is corrupt
    /// (it is not written to), its schema is newer than this release's, or `SQLite` fails to
    /// open or configure it.
    pub fn build(mut self) -> Result<SqliteSink, SqliteError> {
        // `SQLite` resolves the path once; so does the sink, which compares the file at the path
        // with the open one and may open it again, whatever the working directory is by then.
        self.path = std::path::absolute(&self.path).map_err(|source| SqliteError::Examine {
            path: self.path.clone(),
            source,
        })?;
        let store = Store::open(&self)?;
        Ok(SqliteSink {
            maintenance: maintenance::Maintenance::new(self.maintenance.clone()),
            #[cfg(feature = "reports")]
            reports: self.reports.clone().map(reports::Reports::new),
            options: self,
            store: Some(store),
            start: None,
            write_error: None,
            checkpoint_error: None,
            control: control::ControlFeed::default(),
        })
    }
}

/// Why a write failed.
enum Failure {
    /// The file could not be opened again.
    Open(SqliteError),
    /// A statement failed.
    Sql {
        what: &'static str,
        error: rusqlite::Error,
    },
    /// The file was deleted or replaced while the batch was written to it.
    Moved(&'static str),
}

impl SqliteSink {
    /// A builder with the defaults: file [`DEFAULT_PATH`], busy timeout 5 s, no size limit,
    /// retention [`DEFAULT_RETENTION`] (audit rows kept), a pruning pass a minute, no scheduled
    /// backups.
    #[must_use]
    pub fn builder() -> SqliteSinkBuilder {
        SqliteSinkBuilder::default()
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.options.path
    }

    /// Records the failure as the sink's health and turns it into the error the pipeline sees.
    fn fail(&mut self, failure: Failure) -> SinkError {
        let path = self.options.path.display();
        let error = match failure {
            Failure::Open(error) => SinkError::with_source(error_chain(&error), error),
            Failure::Sql { what, error } => {
                if reopens(&error) {
                    // Dropping the store closes the connection; the next write opens it again.
                    self.store = None;
                }
                SinkError::with_source(format!("{what} {path}: {error}"), error)
            }
            Failure::Moved(how) => SinkError::new(format!(
                "{path} was {how} while a batch was written to it; the batch is written again to \
                 the new file"
            )),
        };
        self.write_error = Some(error.to_string());
        error
    }

    /// Writes `batch`, retrying it while the file is locked, for up to the busy timeout.
    fn write_retrying(&mut self, batch: &Batch) -> Result<(), Failure> {
        retry_locked(self.options.busy_timeout, || {
            let (store, _) = open_store(&mut self.store, &self.options)?;
            store
                .write(batch, self.start.as_ref(), &self.options.run)
                .map_err(|error| Failure::Sql {
                    what: "cannot write a batch to",
                    error,
                })
        })?;
        // A batch committed after the file was deleted or replaced is in a file nobody will
        // read: it is failed, and the pipeline writes it again, to the new file.
        if let Some(how) = self.store.as_ref().and_then(Store::moved) {
            self.store = None;
            announce(&self.options.path, how);
            return Err(Failure::Moved(how));
        }
        Ok(())
    }

    /// Records the outcome of a checkpoint as the sink's health.
    fn checkpointed(&mut self, result: rusqlite::Result<()>) {
        self.checkpoint_error = result.err().map(|error| {
            format!(
                "cannot checkpoint the write-ahead log of {}: {error}",
                self.options.path.display()
            )
        });
    }
}

impl Sink for SqliteSink {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn start(&mut self, info: &StartInfo) -> Result<(), SinkError> {
        self.start = Some(info.clone());
        let result = open_store(&mut self.store, &self.options).and_then(|(store, _)| {
            store
                .record_run(info, &self.options.run)
                .map_err(|error| Failure::Sql {
                    what: "cannot record the run in",
                    error,
                })
        });
        result.map_err(|failure| self.fail(failure))
    }

    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        if let Err(failure) = self.write_retrying(batch) {
            return Err(self.fail(failure));
        }
        self.write_error = None;
        // The sink's own scheduled backup holds one read transaction for as long as it runs:
        // waiting for it to end would hold up the writes in vain.
        let wait = if self.maintenance.backup_running() {
            Duration::ZERO
        } else {
            self.options.busy_timeout
        };
        if let Some(store) = &mut self.store {
            let result = store.checkpoint_after_write(wait);
            self.checkpointed(result);
        }
        Ok(())
    }

    /// Opens the file again if a failure closed it or it was deleted or replaced, runs the
    /// pruning passes and scheduled backups that are due, and checkpoints the write-ahead log
    /// if no reader is in the way.
    fn tick(&mut self, now: SystemTime) -> Result<(), SinkError> {
        let (store, reopened) = match open_store(&mut self.store, &self.options) {
            Ok(opened) => opened,
            Err(failure) => return Err(self.fail(failure)),
        };
        let maintained = {
            let _writing = store.gate.lock();
            self.maintenance.tick(&store.conn, &self.options.path, now)
        };
        if reopened {
            // Another file, perhaps: its silences and acknowledgements are handed on afresh.
            self.control = control::ControlFeed::default();
        }
        // A failed read is tried again at the next tick; the actions wait in the file.
        if let Ok(notices) = self.control.poll(&store.conn, now) {
            for notice in notices {
                instrument::publish(notice);
            }
        }
        #[cfg(feature = "reports")]
        if let Some(reports) = &mut self.reports {
            reports.tick(&self.options.path, now);
        }
        let checkpointed = store.checkpoint_idle(self.options.busy_timeout);
        if reopened {
            // What kept the sink from writing was the file; a full disk or a lock is cleared
            // only by a write that succeeds.
            self.write_error = None;
        }
        self.checkpointed(checkpointed);
        maintained
    }

    /// Records when the run ended, after the pipeline's final batch.
    fn shutdown(&mut self) -> Result<(), SinkError> {
        let now = SystemTime::now();
        let result = retry_locked(self.options.busy_timeout, || {
            let (store, _) = open_store(&mut self.store, &self.options)?;
            store.record_end(now).map_err(|error| Failure::Sql {
                what: "cannot record the end of the run in",
                error,
            })
        });
        result.map_err(|failure| self.fail(failure))
    }

    fn health(&self) -> SinkHealth {
        if let Some(error) = &self.write_error {
            return SinkHealth::Unhealthy(error.clone());
        }
        #[cfg(feature = "reports")]
        let maintenance = match (
            self.maintenance.problem(),
            self.reports.as_ref().and_then(reports::Reports::problem),
        ) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or_else(|| b.map(str::to_owned)),
        };
        #[cfg(not(feature = "reports"))]
        let maintenance = self.maintenance.problem();
        match (&self.checkpoint_error, maintenance) {
            (Some(checkpoint), Some(maintenance)) => {
                SinkHealth::Degraded(format!("{checkpoint}; {maintenance}"))
            }
            (Some(problem), None) => SinkHealth::Degraded(problem.clone()),
            (None, Some(problem)) => SinkHealth::Degraded(problem),
            (None, None) => SinkHealth::Healthy,
        }
    }
}

/// The open store, opened first (creating the directory and the tables) when a failure closed
/// it or its file was deleted or replaced; `true` when this call opened it.
fn open_store<'a>(
    slot: &'a mut Option<Store>,
    options: &SqliteSinkBuilder,
) -> Result<(&'a mut Store, bool), Failure> {
    if let Some(how) = slot.as_ref().and_then(Store::moved) {
        // Closes without touching the files now at the path (see `Store::drop`).
        *slot = None;
        announce(&options.path, how);
    }
    let (store, opened) = match slot.take() {
        Some(store) => (store, false),
        None => (Store::open(options).map_err(Failure::Open)?, true),
    };
    Ok((slot.insert(store), opened))
}

/// Runs `attempt` until it succeeds or fails for another reason than a lock held elsewhere,
/// pausing `FIRST_RETRY` doubling to `LONGEST_RETRY` in between, for up to `timeout` in all
/// (`SQLite`'s busy handler waits inside an attempt, and not for every kind of lock).
fn retry_locked(
    timeout: Duration,
    mut attempt: impl FnMut() -> Result<(), Failure>,
) -> Result<(), Failure> {
    let deadline = Instant::now() + timeout;
    let mut pause = FIRST_RETRY;
    loop {
        match attempt() {
            Err(Failure::Sql { error, .. })
                if is_busy(&error) && Instant::now() + pause <= deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(LONGEST_RETRY);
            }
            result => return result,
        }
    }
}

/// Tells the pipeline's sinks that the store's file was replaced by a new one.
fn announce(path: &Path, how: &str) {
    instrument::publish(
        Notice::new(
            "sqlite",
            Level::Warn,
            format!(
                "{} was {how} while open; the store goes on in a new file at that path",
                path.display()
            ),
        )
        .field("path", path.display()),
    );
}

/// Whether `error` is a lock held elsewhere, worth waiting for.
fn is_busy(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

/// Whether `error` calls for a new connection: the file may have become writable, readable or
/// valid again by the time it is opened anew.
fn reopens(error: &rusqlite::Error) -> bool {
    matches!(
        error.sqlite_error_code(),
        Some(
            ErrorCode::ReadOnly
                | ErrorCode::CannotOpen
                | ErrorCode::SystemIoFailure
                | ErrorCode::DatabaseCorrupt
                | ErrorCode::NotADatabase
                | ErrorCode::FileLockingProtocolFailed
        )
    )
}

/// What identifies a file: its device and inode on Unix; elsewhere only that it exists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId(u64, u64);

impl FileId {
    fn of(path: &Path) -> std::io::Result<FileId> {
        let metadata = std::fs::metadata(path)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            Ok(FileId(metadata.dev(), metadata.ino()))
        }
        #[cfg(not(unix))]
        {
            let _ = metadata;
            Ok(FileId(0, 0))
        }
    }
}

/// `path` with `suffix` appended to its file name.
fn beside(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

/// One open database file, and what the sink knows of it.
#[derive(Debug)]
struct Store {
    conn: Connection,
    /// The path the sink was given, and the file found there when it was opened.
    path: PathBuf,
    id: FileId,
    /// The `-wal` and `-shm` files `SQLite` opened beside it (after following links), when
    /// they existed once it was open.
    companions: Vec<(PathBuf, FileId)>,
    /// Frames in the write-ahead log after the last commit, from the WAL hook.
    wal_frames: Arc<AtomicU32>,
    /// The number of frames at which the next write waits for readers to leave the log.
    restart_at: u32,
    /// Row ids of the callsites written so far; cleared when a transaction rolls back.
    callsites: HashMap<&'static Metadata, i64>,
    /// The sink's row in this file's `runs`, inserted at start or with the first write.
    run_id: Option<i64>,
    /// This process's write lock of the file, held around each write transaction and each
    /// checkpoint that keeps writers out.
    gate: WriteGate,
    /// Whether a batch was written since the last tick (no idle checkpoint then).
    written_since_tick: bool,
}

impl Store {
    fn open(options: &SqliteSinkBuilder) -> Result<Store, SqliteError> {
        let path = &options.path;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| SqliteError::CreateDir {
                path: path.clone(),
                source,
            })?;
        }
        let open_error = |source| SqliteError::Open {
            path: path.clone(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_error)?;
        conn.busy_timeout(options.busy_timeout)
            .map_err(open_error)?;
        // `SQLite` falls back to reading only when it may not write; nothing could be stored.
        if conn.is_readonly(MAIN_DB).map_err(open_error)? {
            return Err(SqliteError::ReadOnly { path: path.clone() });
        }
        // Reads only: a file that is not a database fails here, untouched.
        let version = schema::version(&conn, path)?;
        if version > SCHEMA_VERSION {
            return Err(SqliteError::NewerSchema {
                path: path.clone(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        conn.query_row("PRAGMA journal_mode = WAL", [], |row| {
            row.get::<_, String>(0)
        })
        .map_err(open_error)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(open_error)?;
        conn.pragma_update(None, "journal_size_limit", WAL_SIZE_LIMIT)
            .map_err(open_error)?;
        if let Some(bytes) = options.max_size {
            let page_size: i64 = conn
                .pragma_query_value(None, "page_size", |row| row.get(0))
                .map_err(open_error)?;
            let pages = i64::try_from(bytes).unwrap_or(i64::MAX) / page_size.max(1);
            conn.pragma_update(None, "max_page_count", pages.max(1))
                .map_err(open_error)?;
        }
        schema::migrate(&mut conn, path, version)?;
        // Replaces `SQLite`'s automatic checkpoints: the sink checkpoints after writes itself.
        let wal_frames = Arc::new(AtomicU32::new(0));
        let frames = Arc::clone(&wal_frames);
        conn.wal_hook(Some(move |_: &mut Wal, pages: c_int| {
            frames.store(u32::try_from(pages).unwrap_or(0), Ordering::Relaxed);
            Ok(())
        }))
        .map_err(open_error)?;
        let id = FileId::of(path).map_err(|source| SqliteError::Examine {
            path: path.clone(),
            source,
        })?;
        let target = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        let companions = ["-wal", "-shm"]
            .into_iter()
            .filter_map(|suffix| {
                let file = beside(&target, suffix);
                FileId::of(&file).ok().map(|id| (file, id))
            })
            .collect();
        Ok(Store {
            conn,
            path: path.clone(),
            id,
            companions,
            wal_frames,
            restart_at: RESTART_FRAMES,
            callsites: HashMap::new(),
            run_id: None,
            gate: WriteGate::for_path(path),
            written_since_tick: false,
        })
    }

    /// `Some("deleted")` or `Some("replaced")` when the file at the path is no longer the one
    /// open. A path that cannot be examined for another reason counts as unchanged: writing
    /// goes on, and `SQLite` reports what it meets.
    fn moved(&self) -> Option<&'static str> {
        match FileId::of(&self.path) {
            Ok(id) if id == self.id => None,
            Ok(_) => Some("replaced"),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Some("deleted"),
            Err(_) => None,
        }
    }

    fn record_run(&mut self, info: &StartInfo, labels: &RunLabels) -> rusqlite::Result<()> {
        let gate = self.gate.clone();
        let _writing = gate.lock();
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let id = insert_run(&tx, Some(info), labels)?;
        tx.commit()?;
        self.run_id = Some(id);
        Ok(())
    }

    /// Sets the end of this file's run, if it has one (a file opened again after its first was
    /// deleted has a run only once something was written to it).
    fn record_end(&mut self, at: SystemTime) -> rusqlite::Result<()> {
        if let Some(id) = self.run_id {
            let _writing = self.gate.lock();
            self.conn
                .prepare_cached("UPDATE runs SET ended_us = ?2 WHERE id = ?1")?
                .execute((id, micros(at)))?;
        }
        Ok(())
    }

    /// Writes `batch` in one transaction; audit batches with `synchronous=FULL`.
    fn write(
        &mut self,
        batch: &Batch,
        start: Option<&StartInfo>,
        labels: &RunLabels,
    ) -> rusqlite::Result<()> {
        let durable = !batch.audit.is_empty();
        let gate = self.gate.clone();
        let _writing = gate.lock();
        let mut result = Ok(());
        if durable {
            result = self.conn.pragma_update(None, "synchronous", "FULL");
        }
        if result.is_ok() {
            result = self.write_batch(batch, start, labels);
        }
        if durable {
            let restored = self.conn.pragma_update(None, "synchronous", "NORMAL");
            result = result.and(restored);
        }
        if result.is_err() {
            // Ids cached during the rolled-back transaction may name rows that do not exist.
            self.callsites.clear();
        } else {
            self.written_since_tick = true;
        }
        result
    }

    fn write_batch(
        &mut self,
        batch: &Batch,
        start: Option<&StartInfo>,
        labels: &RunLabels,
    ) -> rusqlite::Result<()> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let callsites = &mut self.callsites;
        // A file opened again after the first was deleted gets its own row in `runs`.
        let mut run_id = self.run_id;
        if run_id.is_none() && (start.is_some() || !batch.audit.is_empty()) {
            run_id = Some(insert_run(&tx, start, labels)?);
        }
        insert_events(&tx, callsites, run_id, &batch.events)?;
        for drop in &batch.drops {
            let callsite = callsite_id(&tx, callsites, drop.callsite)?;
            tx.prepare_cached(
                "INSERT INTO drops (callsite_id, count, since_us, until_us) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute((
                callsite,
                int(drop.count),
                micros(drop.since),
                micros(drop.until),
            ))?;
        }
        if let Some(snapshot) = &batch.snapshot {
            insert_snapshot(&tx, callsites, run_id, snapshot)?;
        }
        for notice in &batch.notices {
            let fields = serde_json::to_string(&notice.fields).map_err(conversion)?;
            tx.prepare_cached(
                "INSERT INTO notices (time_us, source, level, message, fields, correlation)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute((
                micros(notice.time),
                notice.source.as_ref(),
                notice.level.as_str(),
                &notice.message,
                fields,
                notice.correlation.map(|c| c.to_string()),
            ))?;
            match notice.source.as_ref() {
                "health" => insert_health(&tx, notice)?,
                "alerts" => upsert_alert(&tx, notice)?,
                _ => {}
            }
        }
        if let Some(run_id) = run_id.filter(|_| !batch.audit.is_empty()) {
            insert_audit(&tx, callsites, run_id, &batch.audit)?;
        }
        tx.commit()?;
        self.run_id = run_id;
        Ok(())
    }

    /// After a write: a passive checkpoint past `CHECKPOINT_FRAMES`, and past `restart_at` one
    /// that waits up to `wait` for readers to leave the log.
    fn checkpoint_after_write(&mut self, wait: Duration) -> rusqlite::Result<()> {
        let frames = self.wal_frames.load(Ordering::Relaxed);
        if frames < CHECKPOINT_FRAMES {
            self.restart_at = RESTART_FRAMES;
            return Ok(());
        }
        if frames >= self.restart_at {
            self.restart_at = if self.restart_log(wait)? {
                RESTART_FRAMES
            } else {
                frames.saturating_add(RESTART_FRAMES)
            };
            return Ok(());
        }
        match self
            .conn
            .wal_checkpoint_v2(Some(MAIN_DB), CheckpointMode::PASSIVE)
        {
            Err(error) if !is_busy(&error) => Err(error),
            _ => Ok(()),
        }
    }

    /// Checkpoints the whole log and makes the next write start it again from its beginning,
    /// trying for up to `wait`; `false` when readers were still in the way by then.
    ///
    /// Each attempt is a `RESTART` checkpoint that does not wait itself: `SQLite`'s own wait
    /// (the busy handler) waits for the reader *slot* an old snapshot used, which a reader
    /// starting its next transaction at once takes again, so that it can wait in vain however
    /// fresh the reader's snapshots are. A new attempt reads the slots anew. Once everything is
    /// copied, readers beginning read the database file, and the log can start again as soon
    /// as the readers that began before have finished.
    fn restart_log(&mut self, wait: Duration) -> rusqlite::Result<bool> {
        const LONGEST_PAUSE: Duration = Duration::from_millis(10);
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_millis(1);
        self.conn.busy_timeout(Duration::ZERO)?;
        let result = loop {
            // The gate only for the attempt: between attempts this process's writers go on.
            let attempt = {
                let _writing = self.gate.lock();
                self.conn
                    .wal_checkpoint_v2(Some(MAIN_DB), CheckpointMode::RESTART)
            };
            match attempt {
                Ok(_) => break Ok(true),
                Err(error) if is_busy(&error) => {
                    if Instant::now() + pause > deadline {
                        break Ok(false);
                    }
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(LONGEST_PAUSE);
                }
                Err(error) => break Err(error),
            }
        };
        self.conn.busy_timeout(wait)?;
        result
    }

    /// On a tick after one without writes: checkpoints everything and truncates the `-wal`
    /// file, unless a reader or another writer is in the way (it does not wait for them).
    /// While batches keep coming, the checkpoints after writes bound the log instead: this one
    /// keeps every other writer out while it syncs the database file.
    fn checkpoint_idle(&mut self, wait: Duration) -> rusqlite::Result<()> {
        if std::mem::take(&mut self.written_since_tick)
            || self.wal_frames.load(Ordering::Relaxed) == 0
        {
            return Ok(());
        }
        self.conn.busy_timeout(Duration::ZERO)?;
        let result = {
            let _writing = self.gate.lock();
            self.conn
                .wal_checkpoint_v2(Some(MAIN_DB), CheckpointMode::TRUNCATE)
        };
        self.conn.busy_timeout(wait)?;
        match result {
            Ok(_) => {
                self.wal_frames.store(0, Ordering::Relaxed);
                Ok(())
            }
            Err(error) if is_busy(&error) => Ok(()),
            Err(error) => Err(error),
        }
    }
}

impl Drop for Store {
    /// Closing the last connection to a file makes `SQLite` checkpoint it and delete its `-wal`
    /// and `-shm` files *by name*. When the file was deleted or replaced, those names may
    /// belong to another database by now (or to none): the connection is then closed without a
    /// checkpoint, which deletes nothing, and only the companions that are still the ones it
    /// opened are removed, since they belong to the old file.
    fn drop(&mut self) {
        if self.moved().is_none() {
            return;
        }
        let _ = self
            .conn
            .set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true);
        for (file, id) in &self.companions {
            if FileId::of(file).is_ok_and(|now| now == *id) {
                let _ = std::fs::remove_file(file);
            }
        }
    }
}

/// `time` as UTC microseconds since the Unix epoch, truncated towards the past.
pub(crate) fn micros(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_micros()).unwrap_or(i64::MAX),
        Err(before) => {
            i64::try_from(before.duration().as_nanos().div_ceil(1000)).map_or(i64::MIN, |us| -us)
        }
    }
}

/// `value` as a `SQLite` integer, saturating.
fn int(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// `duration` as integer nanoseconds, saturating.
fn nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

fn conversion(error: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(error))
}

/// Name/value pairs as a JSON object, in their order.
struct Pairs<'a, K, V>(&'a [(K, V)]);

impl<K: Serialize, V: Serialize> Serialize for Pairs<'_, K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// The id of `callsite`'s row, inserting it the first time it is seen.
fn callsite_id(
    tx: &Transaction<'_>,
    cache: &mut HashMap<&'static Metadata, i64>,
    callsite: &'static Metadata,
) -> rusqlite::Result<i64> {
    if let Some(&id) = cache.get(callsite) {
        return Ok(id);
    }
    let labels = serde_json::to_string(&Pairs(callsite.labels_slice())).map_err(conversion)?;
    let kind = serde_json::to_value(callsite.kind()).map_err(conversion)?;
    let id = tx
        .prepare_cached(
            "INSERT INTO callsites (name, module, file, line, kind, labels, unit, description)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
             ON CONFLICT (name, module, file, line, kind, labels)
             DO UPDATE SET unit = excluded.unit, description = excluded.description
             RETURNING id",
        )?
        .query_row(
            (
                callsite.name(),
                callsite.module_path(),
                callsite.file(),
                callsite.line(),
                kind.as_str().unwrap_or_default(),
                labels,
                callsite.unit().map(instrument::Unit::as_str),
                callsite.description(),
            ),
            |row| row.get(0),
        )?;
    cache.insert(callsite, id);
    Ok(id)
}

/// The columns of an `events` row, in the order [`bind_event`] binds them.
const EVENT_COLUMNS: &str = "callsite_id, outcome, error_kind, start_us, duration_ns, thread_id, \
                             thread_name, correlation, reason, fields, run_id";
/// How many values [`bind_event`] binds.
const EVENT_VALUES: usize = 11;
/// Events per multi-row `INSERT`: one statement step for this many rows instead of one each,
/// which is most of the per-row cost left once the indexes are paid for.
const EVENT_CHUNK: usize = 32;

/// `INSERT INTO events` with `rows` rows of placeholders.
fn event_insert_sql(rows: usize) -> String {
    let row = format!("({})", ["?"; EVENT_VALUES].join(", "));
    format!(
        "INSERT INTO events ({EVENT_COLUMNS}) VALUES {}",
        vec![row; rows].join(", ")
    )
}

/// Inserts `events`, [`EVENT_CHUNK`] rows per statement and the rest one by one, each statement
/// prepared once per connection.
fn insert_events(
    tx: &Transaction<'_>,
    callsites: &mut HashMap<&'static Metadata, i64>,
    run_id: Option<i64>,
    events: &[Event],
) -> rusqlite::Result<()> {
    static CHUNK_SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    static ONE_SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let mut chunks = events.chunks_exact(EVENT_CHUNK);
    if chunks.len() > 0 {
        let mut insert =
            tx.prepare_cached(CHUNK_SQL.get_or_init(|| event_insert_sql(EVENT_CHUNK)))?;
        for chunk in &mut chunks {
            for (row, event) in chunk.iter().enumerate() {
                bind_event(
                    tx,
                    callsites,
                    &mut insert,
                    row * EVENT_VALUES,
                    run_id,
                    event,
                )?;
            }
            insert.raw_execute()?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut insert = tx.prepare_cached(ONE_SQL.get_or_init(|| event_insert_sql(1)))?;
        for event in rest {
            bind_event(tx, callsites, &mut insert, 0, run_id, event)?;
            insert.raw_execute()?;
        }
    }
    Ok(())
}

/// Binds `event`'s values to parameters `offset + 1 ..= offset + EVENT_VALUES` of `insert`.
fn bind_event(
    tx: &Transaction<'_>,
    callsites: &mut HashMap<&'static Metadata, i64>,
    insert: &mut rusqlite::CachedStatement<'_>,
    offset: usize,
    run_id: Option<i64>,
    event: &Event,
) -> rusqlite::Result<()> {
    let callsite = callsite_id(tx, callsites, event.callsite)?;
    let fields = if event.fields.is_empty() {
        None
    } else {
        Some(serde_json::to_string(&Pairs::<&str, FieldValue>(&event.fields)).map_err(conversion)?)
    };
    insert.raw_bind_parameter(offset + 1, callsite)?;
    insert.raw_bind_parameter(offset + 2, event.outcome.as_str())?;
    insert.raw_bind_parameter(offset + 3, event.error_kind)?;
    insert.raw_bind_parameter(offset + 4, micros(event.start))?;
    insert.raw_bind_parameter(offset + 5, nanos(event.duration))?;
    insert.raw_bind_parameter(offset + 6, int(event.thread.id))?;
    insert.raw_bind_parameter(offset + 7, event.thread.name.as_deref())?;
    insert.raw_bind_parameter(offset + 8, event.correlation.map(|c| c.to_string()))?;
    insert.raw_bind_parameter(offset + 9, event.reason.as_str())?;
    insert.raw_bind_parameter(offset + 10, fields)?;
    insert.raw_bind_parameter(offset + 11, run_id)?;
    Ok(())
}

fn insert_snapshot(
    tx: &Transaction<'_>,
    callsites: &mut HashMap<&'static Metadata, i64>,
    run_id: Option<i64>,
    snapshot: &Snapshot,
) -> rusqlite::Result<()> {
    let (start, end) = (micros(snapshot.window_start), micros(snapshot.window_end));
    for call in snapshot.calls.iter().filter(|c| c.window.count > 0) {
        insert_window(tx, callsites, run_id, snapshot, call)?;
    }
    for counter in &snapshot.counters {
        let callsite = callsite_id(tx, callsites, counter.callsite)?;
        tx.prepare_cached(
            "INSERT INTO counters (window_start_us, window_end_us, callsite_id, window, total)
             VALUES (?1, ?2, ?3, ?4, ?5)",
        )?
        .execute((
            start,
            end,
            callsite,
            int(counter.window),
            int(counter.total),
        ))?;
    }
    for gauge in &snapshot.gauges {
        let callsite = callsite_id(tx, callsites, gauge.callsite)?;
        // `SQLite` stores NaN as NULL; infinities are kept.
        tx.prepare_cached(
            "INSERT INTO gauges (window_start_us, window_end_us, callsite_id, value)
             VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute((start, end, callsite, gauge.value))?;
    }
    Ok(())
}

fn insert_window(
    tx: &Transaction<'_>,
    callsites: &mut HashMap<&'static Metadata, i64>,
    run_id: Option<i64>,
    snapshot: &Snapshot,
    call: &CallStats,
) -> rusqlite::Result<()> {
    let callsite = callsite_id(tx, callsites, call.callsite)?;
    let histogram = serde_json::to_vec(&*call.window_histogram).map_err(conversion)?;
    let w = &call.window;
    let window_id: i64 = tx
        .prepare_cached(
            "INSERT INTO windows (snapshot_sequence, reason, window_start_us, window_end_us,
                                  callsite_id, outcome, count, timed, dropped, sum_ns, min_ns,
                                  max_ns, p50_ns, p90_ns, p99_ns, p999_ns, histogram, run_id)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
                     ?18)
             RETURNING id",
        )?
        .query_row(
            rusqlite::params![
                int(snapshot.sequence),
                snapshot.reason.as_str(),
                micros(snapshot.window_start),
                micros(snapshot.window_end),
                callsite,
                call.outcome.as_str(),
                int(w.count),
                int(w.timed),
                int(w.dropped),
                nanos(w.sum),
                nanos(w.min),
                nanos(w.max),
                nanos(w.p50),
                nanos(w.p90),
                nanos(w.p99),
                nanos(w.p999),
                histogram,
                run_id,
            ],
            |row| row.get(0),
        )?;
    for kind in call.error_kinds.iter().filter(|k| k.window > 0) {
        tx.prepare_cached(
            "INSERT INTO window_errors (window_id, kind, count) VALUES (?1, ?2, ?3)",
        )?
        .execute((window_id, kind.kind, int(kind.window)))?;
    }
    Ok(())
}

/// A notice's field `key`, if it has one.
fn notice_field<'n>(notice: &'n Notice, key: &str) -> Option<&'n str> {
    notice
        .fields
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// A health change (a notice from source `health` with a `component` and a `status`) as a row
/// of `health`.
fn insert_health(tx: &Transaction<'_>, notice: &Notice) -> rusqlite::Result<()> {
    let (Some(component), Some(status)) = (
        notice_field(notice, "component"),
        notice_field(notice, "status"),
    ) else {
        return Ok(());
    };
    tx.prepare_cached(
        "INSERT INTO health (time_us, component, status, reason) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute((
        micros(notice.time),
        component,
        status,
        notice_field(notice, "reason"),
    ))?;
    Ok(())
}

/// An alert's state change (a notice from source `alerts` with a `fingerprint` and a `state`):
/// updates the alert's open row (same fingerprint, not resolved), or starts a row. A
/// `resolved` or `inactive` state closes the row (`resolved_us`).
fn upsert_alert(tx: &Transaction<'_>, notice: &Notice) -> rusqlite::Result<()> {
    let (Some(fingerprint), Some(state)) = (
        notice_field(notice, "fingerprint"),
        notice_field(notice, "state"),
    ) else {
        return Ok(());
    };
    let time = micros(notice.time);
    let closed = matches!(state, "resolved" | "inactive");
    let resolved = closed.then_some(time);
    let acked_by = notice_field(notice, "acked_by");
    let acked = acked_by.map(|_| time);
    let value: Option<f64> = notice_field(notice, "value").and_then(|v| v.parse().ok());
    let silenced = notice_field(notice, "silenced") == Some("true");
    let open: Option<i64> = tx
        .prepare_cached(
            "SELECT id FROM alerts WHERE fingerprint = ?1 AND resolved_us IS NULL
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row([fingerprint], |r| r.get(0))
        .optional()?;
    if let Some(id) = open {
        tx.prepare_cached(
            "UPDATE alerts SET state = ?2, message = ?3, value = coalesce(?4, value),
                 updated_us = ?5, resolved_us = ?6, acked_us = coalesce(acked_us, ?7),
                 acked_by = coalesce(acked_by, ?8), silenced = ?9
             WHERE id = ?1",
        )?
        .execute((
            id,
            state,
            &notice.message,
            value,
            time,
            resolved,
            acked,
            acked_by,
            silenced,
        ))?;
        return Ok(());
    }
    let started = notice_field(notice, "started_us")
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|&us| us > 0)
        .unwrap_or(time);
    if closed {
        // The episode an operator closed by hand (`instrumentctl alerts resolve`): the engine's
        // own resolution updates that row rather than starting another.
        let updated = tx
            .prepare_cached(
                "UPDATE alerts SET updated_us = ?3, message = ?4 WHERE id =
                     (SELECT id FROM alerts WHERE fingerprint = ?1 AND started_us = ?2
                      ORDER BY id DESC LIMIT 1)",
            )?
            .execute((fingerprint, started, time, &notice.message))?;
        if updated > 0 {
            return Ok(());
        }
    }
    tx.prepare_cached(
        "INSERT INTO alerts (rule, state, severity, labels, message, value, started_us,
             updated_us, resolved_us, acked_us, acked_by, fingerprint, alert_id, silenced)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
    )?
    .execute(rusqlite::params![
        notice_field(notice, "rule").unwrap_or_default(),
        state,
        notice_field(notice, "severity").unwrap_or("warning"),
        notice_field(notice, "labels").unwrap_or("{}"),
        &notice.message,
        value,
        started,
        time,
        resolved,
        acked,
        acked_by,
        fingerprint,
        notice_field(notice, "id").and_then(|v| v.parse::<i64>().ok()),
        silenced,
    ])?;
    Ok(())
}

fn insert_run(
    tx: &Transaction<'_>,
    start: Option<&StartInfo>,
    labels: &RunLabels,
) -> rusqlite::Result<i64> {
    let (pid, name, hostname, started) = match start {
        Some(info) => (
            info.process.pid,
            info.process.name.clone(),
            info.process.hostname.clone(),
            info.pipeline_start,
        ),
        None => (
            std::process::id(),
            std::env::current_exe()
                .ok()
                .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
                .unwrap_or_else(|| "unknown".to_owned()),
            None,
            SystemTime::now(),
        ),
    };
    tx.prepare_cached(
        "INSERT INTO runs (pid, process_name, hostname, started_us, program_version,
                           config_digest, window_ns, tick_ns)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         RETURNING id",
    )?
    .query_row(
        rusqlite::params![
            pid,
            name,
            hostname,
            micros(started),
            labels.version,
            labels.config_digest,
            start.map(|info| nanos(info.window)),
            start.map(|info| nanos(info.tick)),
        ],
        |row| row.get(0),
    )
}

/// Appends `entries` to the chain, after the last stored row; entries already stored for this
/// run (a retried batch) are skipped and do not move the chain.
fn insert_audit(
    tx: &Transaction<'_>,
    callsites: &mut HashMap<&'static Metadata, i64>,
    run_id: i64,
    entries: &[AuditEntry],
) -> rusqlite::Result<()> {
    let mut head: String = tx
        .prepare_cached("SELECT hash FROM audit ORDER BY id DESC LIMIT 1")?
        .query_row([], |row| row.get(0))
        .optional()?
        .unwrap_or_else(|| GENESIS.to_owned());
    let mut insert = tx.prepare_cached(
        "INSERT INTO audit (run_id, sequence, operation, timestamp_us, inputs, outputs,
                            actor, correlation, outcome, error_kind, duration_ns, fields,
                            callsite, prev_hash, hash)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
         ON CONFLICT (run_id, sequence) DO NOTHING",
    )?;
    let mut scratch = Vec::new();
    for entry in entries {
        if let Some(callsite) = entry.callsite {
            callsite_id(tx, callsites, callsite)?;
        }
        let inputs = serde_json::to_string(&entry.inputs).map_err(conversion)?;
        let outputs = serde_json::to_string(&entry.outputs).map_err(conversion)?;
        let fields = serde_json::to_string(&entry.fields).map_err(conversion)?;
        let correlation = entry.correlation.map(|c| c.to_string());
        let content = AuditContent {
            run_id,
            sequence: int(entry.sequence),
            operation: &entry.operation,
            timestamp_us: micros(entry.timestamp),
            inputs: &inputs,
            outputs: &outputs,
            actor: entry.actor.as_deref(),
            correlation: correlation.as_deref(),
            outcome: entry.outcome.map(instrument::Outcome::as_str),
            error_kind: entry.error_kind,
            duration_ns: entry.duration.map(nanos),
            fields: &fields,
            callsite: entry.callsite.map(Metadata::name),
        };
        let hash = content.hash(&head, &mut scratch);
        let inserted = insert.execute(rusqlite::params![
            content.run_id,
            content.sequence,
            content.operation,
            content.timestamp_us,
            content.inputs,
            content.outputs,
            content.actor,
            content.correlation,
            content.outcome,
            content.error_kind,
            content.duration_ns,
            content.fields,
            content.callsite,
            head,
            hash,
        ])?;
        if inserted == 1 {
            head = hash;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failure(code: c_int) -> Failure {
        Failure::Sql {
            what: "cannot write a batch to",
            error: rusqlite::Error::SqliteFailure(rusqlite::ffi::Error::new(code), None),
        }
    }

    #[test]
    fn locks_the_busy_handler_does_not_wait_for_are_retried() {
        for code in [
            rusqlite::ffi::SQLITE_BUSY_SNAPSHOT,
            rusqlite::ffi::SQLITE_BUSY_RECOVERY,
            rusqlite::ffi::SQLITE_LOCKED,
            rusqlite::ffi::SQLITE_BUSY,
        ] {
            let mut attempts = 0;
            let result = retry_locked(Duration::from_secs(60), || {
                attempts += 1;
                if attempts < 4 {
                    Err(failure(code))
                } else {
                    Ok(())
                }
            });
            assert!(result.is_ok(), "code {code}");
            assert_eq!(attempts, 4, "code {code}");
        }
    }

    #[test]
    fn other_failures_are_not_retried_and_locks_only_until_the_timeout() {
        let mut attempts = 0;
        let result = retry_locked(Duration::from_secs(60), || {
            attempts += 1;
            Err(failure(rusqlite::ffi::SQLITE_FULL))
        });
        assert!(matches!(result, Err(Failure::Sql { .. })));
        assert_eq!(attempts, 1);

        // A lock that is never released: the retries end once the timeout has passed.
        let mut attempts = 0;
        let result = retry_locked(Duration::from_millis(50), || {
            attempts += 1;
            Err(failure(rusqlite::ffi::SQLITE_BUSY_SNAPSHOT))
        });
        assert!(matches!(result, Err(Failure::Sql { error, .. }) if is_busy(&error)));
        assert!(attempts > 1, "retried before giving up");

        // No time allowed, no retry.
        let mut attempts = 0;
        let _ = retry_locked(Duration::ZERO, || {
            attempts += 1;
            Err(failure(rusqlite::ffi::SQLITE_BUSY))
        });
        assert_eq!(attempts, 1);
    }

    #[test]
    fn micros_truncate_towards_the_past() {
        assert_eq!(micros(UNIX_EPOCH + Duration::from_nanos(1_999)), 1);
        assert_eq!(micros(UNIX_EPOCH - Duration::from_nanos(1)), -1);
        assert_eq!(micros(UNIX_EPOCH - Duration::from_micros(2)), -2);
    }
}
