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
//! | `events` | event: `outcome`, `error_kind`, `start_us`, `duration_ns`, thread, `correlation` (16 hex digits), `reason`, captured arguments as a JSON object in `fields` (`NULL` when none) |
//! | `windows` | callsite and outcome with calls in a snapshot's window: `count`, `timed`, `dropped`, `sum_ns`, `min_ns`, `max_ns`, `p50_ns` to `p999_ns`, and `histogram`, the window's [`Histogram`](instrument::Histogram) as JSON, which deserializes and merges |
//! | `window_errors` | error kind of a `windows` row with errors in that window |
//! | `counters`, `gauges` | counter or gauge per snapshot |
//! | `drops` | drop marker |
//! | `runs` | sink start: process id, name, host |
//! | `audit` | audit entry, in a hash chain ([`verify_audit_chain`]) |
//! | `audit_anchor` | pass that pruned audit rows: the last pruned row's `last_id`, `run_id`, `sequence` and `hash` (where the chain now starts), `pruned_rows`, `total_pruned`, `pruned_us` |
//! | `notices` | notice; `fields` a JSON array of `[key, value]` pairs |
//! | `health` | health change of a component: `time_us`, `component`, `status`, `reason` (for later releases; nothing writes it yet) |
//! | `alerts` | alert: `rule`, `state`, `severity`, `labels` (JSON object), `message`, `value`, `started_us`, `updated_us`, `resolved_us`, `acked_us`, `acked_by` (for later releases; nothing writes it yet) |
//!
//! # Reading
//! [`query::Store`] opens a store read-only and answers the questions of the `instrumentctl`
//! command (feature `cli`): summaries, slow calls, errors, traces, audit trails and exports.
//!
//! # Writing
//! The sink owns its connection and writes on its worker thread, one transaction per batch,
//! through cached prepared statements; events go 32 rows per `INSERT`. Data is written with `synchronous=NORMAL` (WAL: a
//! committed batch survives a process crash, and may be lost with the machine's power);
//! batches with audit entries with `synchronous=FULL`, so an entry a returned
//! [`flush`](instrument::PipelineGuard::flush) covers survives a power loss too. Audit rows are
//! unique per run and sequence number, so a retried batch inserts nothing twice.
//!
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
//! checkpoint after it. A source that is not in WAL mode blocks writers for the length of the
//! backup. Two sinks must not share a schedule directory, and a clock that jumps back makes the
//! subdirectory names sort out of order (the newest backup is never the one removed).

mod audit;
mod error;
mod maintenance;
pub mod query;
mod schema;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instrument::{
    AuditEntry, Batch, CallStats, Event, FieldValue, Metadata, Sink, SinkError, SinkHealth,
    Snapshot, StartInfo,
};
use rusqlite::{Connection, OptionalExtension, Transaction, TransactionBehavior};
use serde::ser::{Serialize, SerializeMap, Serializer};

pub use self::audit::verify_audit_chain;
pub use self::error::{ChainError, SqliteError};
pub use self::maintenance::{
    AuditAnchor, BACKUP_FILE, BACKUP_PAGES_PER_STEP, BackupManifest, BackupSchedule, MANIFEST_FILE,
    MANIFEST_VERSION, MaintenanceError, PRUNE_BATCH, PRUNE_STEPS_PER_TICK, PruneReport, PrunedRows,
    backup, prune, restore, verify_backup,
};
pub use self::schema::SCHEMA_VERSION;

use self::audit::{AuditContent, GENESIS};

/// The default database file, relative to the working directory.
pub const DEFAULT_PATH: &str = "./instrument-data/instrument.db";

/// How long the sink keeps rows other than audit rows by default: 30 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

/// Stores what the pipeline delivers in a `SQLite` database; see the [module docs](self) for the
/// tables.
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
    path: PathBuf,
    conn: Connection,
    /// Row ids of the callsites written so far; cleared when a transaction rolls back.
    callsites: HashMap<&'static Metadata, i64>,
    /// This sink's row in `runs`, inserted at start or with the first audit entry.
    run_id: Option<i64>,
    start: Option<StartInfo>,
    health: SinkHealth,
    /// Pruning passes and scheduled backups, run from [`Sink::tick`].
    maintenance: maintenance::Maintenance,
}

/// Configures a [`SqliteSink`].
#[derive(Clone, Debug)]
pub struct SqliteSinkBuilder {
    path: PathBuf,
    busy_timeout: Duration,
    maintenance: maintenance::Settings,
}

impl Default for SqliteSinkBuilder {
    fn default() -> Self {
        SqliteSinkBuilder {
            path: PathBuf::from(DEFAULT_PATH),
            busy_timeout: Duration::from_secs(5),
            maintenance: maintenance::Settings {
                retention: DEFAULT_RETENTION,
                audit_retention: None,
                prune_interval: Duration::from_secs(60),
                backups: None,
            },
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

    /// How long a write waits for a lock held by a reader or another writer (default 5 s).
    #[must_use]
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.busy_timeout = timeout;
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

    /// Opens (or creates) the database and brings its tables up to date, so that a bad file is
    /// reported when the pipeline is built, not when the first batch arrives.
    ///
    /// # Errors
    /// [`SqliteError`] naming the file: the directory cannot be created, the file is not a
    /// `SQLite` database or is corrupt (it is not written to), its schema is newer than this
    /// release's, or `SQLite` fails to open or configure it.
    pub fn build(self) -> Result<SqliteSink, SqliteError> {
        let path = self.path;
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
        let mut conn = Connection::open(&path).map_err(open_error)?;
        conn.busy_timeout(self.busy_timeout).map_err(open_error)?;
        // Reads only: a file that is not a database fails here, untouched.
        let version = schema::version(&conn, &path)?;
        if version > SCHEMA_VERSION {
            return Err(SqliteError::NewerSchema {
                path,
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
        // Truncate the WAL file to 64 MiB after checkpoints instead of leaving it at its peak.
        conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)
            .map_err(open_error)?;
        schema::migrate(&mut conn, &path, version)?;
        Ok(SqliteSink {
            path,
            conn,
            callsites: HashMap::new(),
            run_id: None,
            start: None,
            health: SinkHealth::Healthy,
            maintenance: maintenance::Maintenance::new(self.maintenance),
        })
    }
}

impl SqliteSink {
    /// A builder with the defaults: file [`DEFAULT_PATH`], busy timeout 5 s, retention
    /// [`DEFAULT_RETENTION`] (audit rows kept), a pruning pass a minute, no scheduled backups.
    #[must_use]
    pub fn builder() -> SqliteSinkBuilder {
        SqliteSinkBuilder::default()
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn failed(&mut self, what: &str, error: rusqlite::Error) -> SinkError {
        // Ids cached during the rolled-back transaction may name rows that do not exist.
        self.callsites.clear();
        let message = format!("{what} {}: {error}", self.path.display());
        self.health = SinkHealth::Unhealthy(message.clone());
        SinkError::with_source(message, error)
    }

    fn write_batch(&mut self, batch: &Batch) -> rusqlite::Result<()> {
        let tx = Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)?;
        let callsites = &mut self.callsites;
        insert_events(&tx, callsites, &batch.events)?;
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
            insert_snapshot(&tx, callsites, snapshot)?;
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
        }
        if !batch.audit.is_empty() {
            let run_id = match self.run_id {
                Some(id) => id,
                None => insert_run(&tx, self.start.as_ref())?,
            };
            insert_audit(&tx, callsites, run_id, &batch.audit)?;
            tx.commit()?;
            self.run_id = Some(run_id);
            return Ok(());
        }
        tx.commit()
    }
}

impl Sink for SqliteSink {
    fn name(&self) -> &'static str {
        "sqlite"
    }

    fn start(&mut self, info: &StartInfo) -> Result<(), SinkError> {
        self.start = Some(info.clone());
        let tx =
            Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate).and_then(|tx| {
                let id = insert_run(&tx, Some(info))?;
                tx.commit()?;
                Ok(id)
            });
        match tx {
            Ok(id) => {
                self.run_id = Some(id);
                Ok(())
            }
            Err(error) => Err(self.failed("cannot record the run in", error)),
        }
    }

    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let durable = !batch.audit.is_empty();
        let mut result = Ok(());
        if durable {
            result = self.conn.pragma_update(None, "synchronous", "FULL");
        }
        if result.is_ok() {
            result = self.write_batch(batch);
        }
        if durable {
            let restored = self.conn.pragma_update(None, "synchronous", "NORMAL");
            result = result.and(restored);
        }
        match result {
            Ok(()) => {
                self.health = SinkHealth::Healthy;
                Ok(())
            }
            Err(error) => Err(self.failed("cannot write a batch to", error)),
        }
    }

    fn tick(&mut self, now: SystemTime) -> Result<(), SinkError> {
        self.maintenance.tick(&self.conn, &self.path, now)
    }

    fn health(&self) -> SinkHealth {
        match (&self.health, self.maintenance.problem()) {
            (SinkHealth::Healthy, Some(problem)) => SinkHealth::Degraded(problem),
            (health, _) => health.clone(),
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
                             thread_name, correlation, reason, fields";
/// How many values [`bind_event`] binds.
const EVENT_VALUES: usize = 10;
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
                bind_event(tx, callsites, &mut insert, row * EVENT_VALUES, event)?;
            }
            insert.raw_execute()?;
        }
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut insert = tx.prepare_cached(ONE_SQL.get_or_init(|| event_insert_sql(1)))?;
        for event in rest {
            bind_event(tx, callsites, &mut insert, 0, event)?;
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
    Ok(())
}

fn insert_snapshot(
    tx: &Transaction<'_>,
    callsites: &mut HashMap<&'static Metadata, i64>,
    snapshot: &Snapshot,
) -> rusqlite::Result<()> {
    let (start, end) = (micros(snapshot.window_start), micros(snapshot.window_end));
    for call in snapshot.calls.iter().filter(|c| c.window.count > 0) {
        insert_window(tx, callsites, snapshot, call)?;
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
                                  max_ns, p50_ns, p90_ns, p99_ns, p999_ns, histogram)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)
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

fn insert_run(tx: &Transaction<'_>, start: Option<&StartInfo>) -> rusqlite::Result<i64> {
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
        "INSERT INTO runs (pid, process_name, hostname, started_us) VALUES (?1, ?2, ?3, ?4)
         RETURNING id",
    )?
    .query_row((pid, name, hostname, micros(started)), |row| row.get(0))
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
    for entry in entries {
        if let Some(callsite) = entry.callsite {
            callsite_id(tx, callsites, callsite)?;
        }
        let content = AuditContent {
            run_id,
            sequence: int(entry.sequence),
            operation: entry.operation.clone().into_owned(),
            timestamp_us: micros(entry.timestamp),
            inputs: serde_json::to_value(&entry.inputs).map_err(conversion)?,
            outputs: serde_json::to_value(&entry.outputs).map_err(conversion)?,
            actor: entry.actor.clone(),
            correlation: entry.correlation.map(|c| c.to_string()),
            outcome: entry.outcome.map(|o| o.as_str().to_owned()),
            error_kind: entry.error_kind.map(str::to_owned),
            duration_ns: entry.duration.map(nanos),
            fields: serde_json::to_value(&entry.fields).map_err(conversion)?,
            callsite: entry.callsite.map(|c| c.name().to_owned()),
        };
        let hash = content.hash(&head);
        let inserted = tx
            .prepare_cached(
                "INSERT INTO audit (run_id, sequence, operation, timestamp_us, inputs, outputs,
                                    actor, correlation, outcome, error_kind, duration_ns, fields,
                                    callsite, prev_hash, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)
                 ON CONFLICT (run_id, sequence) DO NOTHING",
            )?
            .execute(rusqlite::params![
                content.run_id,
                content.sequence,
                content.operation,
                content.timestamp_us,
                content.inputs.to_string(),
                content.outputs.to_string(),
                content.actor,
                content.correlation,
                content.outcome,
                content.error_kind,
                content.duration_ns,
                content.fields.to_string(),
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

    #[test]
    fn micros_truncate_towards_the_past() {
        assert_eq!(micros(UNIX_EPOCH + Duration::from_nanos(1_999)), 1);
        assert_eq!(micros(UNIX_EPOCH - Duration::from_nanos(1)), -1);
        assert_eq!(micros(UNIX_EPOCH - Duration::from_micros(2)), -2);
    }
}
