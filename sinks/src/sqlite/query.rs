//! Reading a store back: the queries behind `instrumentctl` (and any other reader, such as a
//! web page serving the same answers as JSON).
//!
//! [`Store::open`] opens a database file read-only (it never creates, migrates or writes one)
//! and refuses, naming the file, one that does not exist, is not a `SQLite` database, is not a
//! store, or has a schema newer than this release reads. Each query returns plain data that
//! implements [`serde::Serialize`]; the field names and formats below are stable (fields may be
//! added, none renamed), and `docs/instrumentctl.md` lists them with examples.
//!
//! # Formats
//! - Times are RFC 3339 UTC strings with six fractional digits, `2026-11-25T10:16:53.123456Z`,
//!   as in `docs/data-types.md` (a stored time outside the years 0000 to 9999, which only a
//!   damaged file holds, is written as `"<n>us"`, its microseconds since the Unix epoch).
//! - Durations are integer nanoseconds in fields ending `_ns`.
//! - Labels and captured arguments are JSON objects; audit and notice fields arrays of
//!   `[key, value]` pairs as stored (keys may repeat).
//!
//! Each answer reads one state of the file (a read transaction), also while a sink writes it.
//!
//! # Time ranges
//! A [`TimeRange`] selects events by their start time (`since <= start < until`) and windows of
//! aggregates by overlap (`window_end > since` and `window_start < until`): a window that
//! straddles a bound counts whole, so the answer's granularity is the pipeline's window
//! (default 1 s).
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("instrument.db");
//! use instrument_sinks::sqlite::query::{Store, TimeRange};
//!
//! let sink = instrument_sinks::SqliteSink::builder().path(&path).build()?;
//! let pipeline = instrument::builder().sink(sink).install()?;
//! instrument::audit(instrument::AuditEntry::new("compile").input("a.rs").output("a.o"))?;
//! instrument::audit(instrument::AuditEntry::new("link").input("a.o").output("app"))?;
//! pipeline.shutdown()?;
//!
//! let store = Store::open(&path)?;
//! let trail = store.audit_trail("app")?;
//! let operations: Vec<_> = trail.entries.iter().map(|e| e.entry.operation.as_str()).collect();
//! assert_eq!(operations, ["compile", "link"]);
//! assert!(store.summary(TimeRange::ALL)?.callsites.is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashSet, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use instrument::Histogram;
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OpenFlags, Row};
use serde::Serialize;
use serde_json::Value;

use super::error::SqliteError;
use super::schema::{self, SCHEMA_VERSION};

mod callgraph;
mod compare;
mod operations;
#[cfg(feature = "reports")]
pub mod report;
mod runs;
mod trend;

pub use self::callgraph::{CallEdge, CallGraph, CallNode};
pub use self::compare::{
    CallsiteComparison, Comparison, ErrorTest, LatencyTest, Side, Verdict, VerdictRule, error_test,
    latency_test,
};
pub use self::operations::{AlertRecord, HealthHistory, HealthRecord};
pub use self::runs::RunRecord;
pub use self::trend::{Bucket, Trend, TrendBucket};

/// Why a query failed. Each variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// The store could not be opened: see [`SqliteError`].
    #[error(transparent)]
    Open(#[from] SqliteError),
    /// `SQLite` failed while reading.
    #[error("cannot read {path}")]
    Read {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// A stored row holds a value this release cannot read (a damaged or hand-edited file).
    #[error("{path}: {table} row {id} cannot be read: {reason}")]
    BadRow {
        /// The database file.
        path: PathBuf,
        /// The table.
        table: &'static str,
        /// The row's `id`.
        id: i64,
        /// What is wrong with it.
        reason: String,
    },
    /// The argument of [`Store::trace`] is not a correlation id.
    #[error("`{0}` is not a correlation id (16 hexadecimal digits, such as 18d058cf1b8259cb)")]
    BadCorrelation(String),
    /// Writing an export failed.
    #[error("cannot write the export")]
    Write(#[source] std::io::Error),
    /// No run has this id.
    #[error("{path} has no run {id} (`instrumentctl runs` lists them)")]
    UnknownRun {
        /// The database file.
        path: PathBuf,
        /// The id asked for.
        id: i64,
    },
    /// No callsite has this name.
    #[error(
        "{path} has no callsite named `{name}` (`instrumentctl summary --since all` lists them)"
    )]
    UnknownCallsite {
        /// The database file.
        path: PathBuf,
        /// The name asked for.
        name: String,
    },
    /// Nothing was recorded where the query looked.
    #[error("{path}: {what}")]
    NoData {
        /// The database file.
        path: PathBuf,
        /// What holds nothing, such as `no calls of parse from ... to ...`.
        what: String,
    },
}

/// The time range of a query; `None` leaves that end open. See the [module docs](self) for what
/// falls inside.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TimeRange {
    /// The start, inclusive for events.
    pub since: Option<SystemTime>,
    /// The end, exclusive.
    pub until: Option<SystemTime>,
}

impl TimeRange {
    /// Everything stored.
    pub const ALL: TimeRange = TimeRange {
        since: None,
        until: None,
    };

    /// From `since` on, with no end.
    #[must_use]
    pub fn since(since: SystemTime) -> Self {
        TimeRange {
            since: Some(since),
            until: None,
        }
    }

    fn bounds(self) -> (i64, i64) {
        (
            self.since.map_or(i64::MIN, super::micros),
            self.until.map_or(i64::MAX, super::micros),
        )
    }
}

/// A store opened read-only for queries.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
    schema_version: i64,
}

/// Per callsite aggregates over a range, from [`Store::summary`].
#[derive(Clone, Debug, Serialize)]
pub struct Summary {
    /// The requested start, or `null` for none.
    pub since: Option<String>,
    /// The requested end, or `null` for none.
    pub until: Option<String>,
    /// The start of the first window in the range, `null` when there is none.
    pub first_window_start: Option<String>,
    /// The end of the last window in the range, `null` when there is none.
    pub last_window_end: Option<String>,
    /// The seconds that rates are over: the requested range narrowed to
    /// `first_window_start..last_window_end`; `null` when that is empty.
    pub seconds: Option<f64>,
    /// One entry per callsite with calls in the range, by name, module, kind and labels.
    pub callsites: Vec<CallsiteSummary>,
}

/// One callsite's calls over a range: see [`Summary`].
///
/// The counts are exact sums of the stored windows. The percentiles come from merging the
/// windows' stored histograms (so they are those of every timed call in the range, within the
/// histogram's precision of 1/1024), not from averaging the windows' percentiles. For a value
/// histogram (`kind` `histogram`) the `_ns` fields hold the recorded values.
#[derive(Clone, Debug, Serialize)]
pub struct CallsiteSummary {
    /// The callsite's name.
    pub name: String,
    /// Its module path (empty for a callsite registered at run time).
    pub module: String,
    /// Its kind: `function`, `async`, `timer` or `histogram`.
    pub kind: String,
    /// Its labels, a JSON object.
    pub labels: Value,
    /// Its unit, for a value histogram that has one.
    pub unit: Option<String>,
    /// Calls, whatever their outcome (`ok + errors + panics + cancelled`).
    pub calls: u64,
    /// Calls with outcome `ok`.
    pub ok: u64,
    /// Calls with outcome `error`.
    pub errors: u64,
    /// Calls with outcome `panic`.
    pub panics: u64,
    /// Calls with outcome `cancelled`.
    pub cancelled: u64,
    /// `(errors + panics) / calls`, 0 to 1.
    pub error_ratio: f64,
    /// Calls whose duration was recorded (the rest were dropped under overload).
    pub timed: u64,
    /// Calls counted without a duration.
    pub dropped: u64,
    /// Shortest timed call (exact).
    pub min_ns: u64,
    /// Mean of the timed calls.
    pub mean_ns: u64,
    /// Median of the timed calls.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
    /// 99.9th percentile.
    pub p999_ns: u64,
    /// Longest timed call (exact).
    pub max_ns: u64,
    /// `calls / seconds` of the [`Summary`]; `null` when its `seconds` is.
    pub calls_per_second: Option<f64>,
}

/// A callsite the store knows, from [`Store::callsites`].
#[derive(Clone, Debug, Serialize)]
pub struct CallsiteRecord {
    /// The callsite's name (`function` in Prometheus' labels).
    pub name: String,
    /// Its module path (empty for a callsite registered at run time).
    pub module: String,
    /// Its kind: `function`, `async`, `timer`, `counter`, `gauge` or `histogram`.
    pub kind: String,
    /// Its labels, a JSON object.
    pub labels: Value,
    /// Its unit, when it has one.
    pub unit: Option<String>,
}

/// A stored event (a notable call), as [`Store::slow`], [`Store::errors`], [`Store::trace`] and
/// [`Store::export`] return it.
#[derive(Clone, Debug, Serialize)]
pub struct EventRecord {
    /// Its row id in `events`.
    pub id: i64,
    /// The callsite's name.
    pub callsite: String,
    /// The callsite's module.
    pub module: String,
    /// The callsite's labels, a JSON object.
    pub labels: Value,
    /// `ok`, `error`, `panic` or `cancelled`.
    pub outcome: String,
    /// The error kind of an `error` outcome.
    pub error_kind: Option<String>,
    /// When the call started.
    pub start: String,
    /// How long it took.
    pub duration_ns: i64,
    /// The thread's id.
    pub thread_id: i64,
    /// The thread's name, when it has one.
    pub thread_name: Option<String>,
    /// The correlation id (16 hexadecimal digits), when the call had one.
    pub correlation: Option<String>,
    /// Why it was kept: `outcome`, `slow` or `sampled`.
    pub reason: String,
    /// Captured arguments, a JSON object (`{}` when none).
    pub fields: Value,
}

/// A stored audit entry.
#[derive(Clone, Debug, Serialize)]
pub struct AuditRecord {
    /// Its row id in `audit` (its position in the hash chain).
    pub id: i64,
    /// The run (pipeline start) that wrote it.
    pub run_id: i64,
    /// Its sequence number within the run.
    pub sequence: i64,
    /// What was done.
    pub operation: String,
    /// When.
    pub timestamp: String,
    /// What it read.
    pub inputs: Vec<String>,
    /// What it wrote.
    pub outputs: Vec<String>,
    /// Who did it.
    pub actor: Option<String>,
    /// The correlation id.
    pub correlation: Option<String>,
    /// The outcome of an audited call.
    pub outcome: Option<String>,
    /// The error kind of an audited call that failed.
    pub error_kind: Option<String>,
    /// The duration of an audited call.
    pub duration_ns: Option<i64>,
    /// Free-form fields, `[key, value]` pairs.
    pub fields: Value,
    /// The name of the audited callsite.
    pub callsite: Option<String>,
}

/// A stored notice.
#[derive(Clone, Debug, Serialize)]
pub struct NoticeRecord {
    /// Its row id in `notices`.
    pub id: i64,
    /// When it happened.
    pub time: String,
    /// Who published it.
    pub source: String,
    /// `debug`, `info`, `warn` or `error`.
    pub level: String,
    /// What happened.
    pub message: String,
    /// Fields, `[key, value]` pairs.
    pub fields: Value,
    /// The correlation id.
    pub correlation: Option<String>,
}

/// Failed calls of one callsite and error kind over a range, from [`Store::errors`].
#[derive(Clone, Debug, Serialize)]
pub struct ErrorGroup {
    /// The callsite's name.
    pub callsite: String,
    /// Its module.
    pub module: String,
    /// Its labels, a JSON object.
    pub labels: Value,
    /// `error` or `panic`.
    pub outcome: String,
    /// The error kind; `null` for panics (and for errors a window counted without a kind).
    pub kind: Option<String>,
    /// Calls, summed over the windows in the range (exact, including calls whose event was not
    /// kept).
    pub count: u64,
    /// The latest stored event of this callsite, outcome and kind in the range, if any.
    pub latest: Option<EventRecord>,
}

/// Everything stored under one correlation id, from [`Store::trace`].
#[derive(Clone, Debug, Serialize)]
pub struct Trace {
    /// The correlation id, lower case.
    pub correlation: String,
    /// Events, audit entries and notices in time order (event `start`, audit `timestamp`,
    /// notice `time`; ties in that order of kinds, then by id).
    pub entries: Vec<TraceEntry>,
}

/// One entry of a [`Trace`]: the record with a `"type"` field, `"event"`, `"audit"` or
/// `"notice"`.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum TraceEntry {
    /// An event.
    Event(EventRecord),
    /// An audit entry.
    Audit(AuditRecord),
    /// A notice.
    Notice(NoticeRecord),
}

/// The lineage of one artifact, from [`Store::audit_trail`].
#[derive(Clone, Debug, Serialize)]
pub struct AuditTrail {
    /// The artifact asked about.
    pub id: String,
    /// The audit entries it descends from or leads to, in chain (`id`) order.
    pub entries: Vec<TrailEntry>,
}

/// An audit entry of an [`AuditTrail`], with how it relates to the artifact; in JSON the
/// [`AuditRecord`]'s fields with `direction` and `depth` added.
#[derive(Clone, Debug, Serialize)]
pub struct TrailEntry {
    /// `upstream`: it produced the artifact or something the artifact was made from (followed
    /// from outputs to inputs); `downstream`: it consumed the artifact or something made from
    /// it (from inputs to outputs); `both`.
    pub direction: &'static str,
    /// Steps from the artifact: 1 for an entry that names it, 2 for the entries that name
    /// those entries' other artifacts, and so on (the fewest, over both directions).
    pub depth: u32,
    /// The entry.
    #[serde(flatten)]
    pub entry: AuditRecord,
}

/// The table [`Store::export`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportTable {
    /// `events`, one [`EventRecord`] per row.
    Events,
    /// `windows`, one [`WindowRecord`] per row.
    Windows,
}

/// The format [`Store::export`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// RFC 4180 CSV: a header line, then one line per row; JSON-valued columns (labels, fields,
    /// error kinds, histogram) hold their compact JSON text.
    Csv,
}

/// A stored window of aggregates, as [`Store::export`] writes it.
#[derive(Clone, Debug, Serialize)]
pub struct WindowRecord {
    /// Its row id in `windows`.
    pub id: i64,
    /// The snapshot's sequence number.
    pub snapshot_sequence: i64,
    /// Why the snapshot was taken: `window`, `flush` or `shutdown`.
    pub reason: String,
    /// The window's start.
    pub window_start: String,
    /// The window's end.
    pub window_end: String,
    /// The callsite's name.
    pub callsite: String,
    /// The callsite's module.
    pub module: String,
    /// The callsite's labels.
    pub labels: Value,
    /// The outcome these calls had.
    pub outcome: String,
    /// Calls.
    pub count: i64,
    /// Calls with a duration.
    pub timed: i64,
    /// Calls without one.
    pub dropped: i64,
    /// Sum of the durations.
    pub sum_ns: i64,
    /// Shortest.
    pub min_ns: i64,
    /// Longest.
    pub max_ns: i64,
    /// Median, as stored.
    pub p50_ns: i64,
    /// 90th percentile, as stored.
    pub p90_ns: i64,
    /// 99th percentile, as stored.
    pub p99_ns: i64,
    /// 99.9th percentile, as stored.
    pub p999_ns: i64,
    /// Error kind to calls, a JSON object (`{}` when none).
    pub error_kinds: Value,
    /// The window's histogram in its serialized form ([`Histogram`]).
    pub histogram: Value,
}

/// What [`Store::export`] wrote.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct ExportReport {
    /// Data rows written (CSV: not counting the header).
    pub rows: u64,
}

pub(crate) const EVENT_COLUMNS: &str = "e.id, c.name, c.module, c.labels, e.outcome, e.error_kind, \
     e.start_us, e.duration_ns, e.thread_id, e.thread_name, e.correlation, e.reason, e.fields";

const AUDIT_COLUMNS: &str = "id, run_id, sequence, operation, timestamp_us, inputs, outputs, \
     actor, correlation, outcome, error_kind, duration_ns, fields, callsite";

const NOTICE_COLUMNS: &str = "id, time_us, source, level, message, fields, correlation";

const EVENT_CSV_HEADER: &[&str] = &[
    "id",
    "start",
    "callsite",
    "module",
    "labels",
    "outcome",
    "error_kind",
    "duration_ns",
    "thread_id",
    "thread_name",
    "correlation",
    "reason",
    "fields",
];

const WINDOW_CSV_HEADER: &[&str] = &[
    "id",
    "snapshot_sequence",
    "reason",
    "window_start",
    "window_end",
    "callsite",
    "module",
    "labels",
    "outcome",
    "count",
    "timed",
    "dropped",
    "sum_ns",
    "min_ns",
    "max_ns",
    "p50_ns",
    "p90_ns",
    "p99_ns",
    "p999_ns",
    "error_kinds",
    "histogram",
];

/// Aggregates of one callsite while [`Store::summary`] reads its windows.
#[derive(Default)]
struct Acc {
    unit: Option<String>,
    labels: Value,
    outcomes: [u64; 4],
    timed: u64,
    dropped: u64,
    histogram: Histogram,
}

impl Acc {
    fn summary(
        self,
        name: String,
        module: String,
        kind: String,
        seconds: Option<f64>,
    ) -> CallsiteSummary {
        let [ok, errors, panics, cancelled] = self.outcomes;
        let calls = self.outcomes.iter().fold(0u64, |a, b| a.saturating_add(*b));
        let h = &self.histogram;
        CallsiteSummary {
            name,
            module,
            kind,
            labels: self.labels,
            unit: self.unit,
            calls,
            ok,
            errors,
            panics,
            cancelled,
            error_ratio: if calls == 0 {
                0.0
            } else {
                errors.saturating_add(panics) as f64 / calls as f64
            },
            timed: self.timed,
            dropped: self.dropped,
            min_ns: h.min(),
            mean_ns: if h.count() == 0 {
                0
            } else {
                u64::try_from(h.sum() / u128::from(h.count())).unwrap_or(u64::MAX)
            },
            p50_ns: h.quantile(0.5),
            p90_ns: h.quantile(0.9),
            p99_ns: h.quantile(0.99),
            p999_ns: h.quantile(0.999),
            max_ns: h.max(),
            calls_per_second: seconds.map(|s| calls as f64 / s),
        }
    }
}

impl Store {
    /// Opens the store at `path` read-only.
    ///
    /// # Errors
    /// [`SqliteError`] naming the file: [`NotFound`](SqliteError::NotFound),
    /// [`Directory`](SqliteError::Directory),
    /// [`NotADatabase`](SqliteError::NotADatabase) (a file that is not a `SQLite` database, or
    /// a corrupt one), [`NotAStore`](SqliteError::NotAStore),
    /// [`NewerSchema`](SqliteError::NewerSchema), or [`Open`](SqliteError::Open) when `SQLite`
    /// cannot open it. None of them changes the file.
    pub fn open(path: impl AsRef<Path>) -> Result<Store, SqliteError> {
        let path = path.as_ref();
        match std::fs::metadata(path) {
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                return Err(SqliteError::NotFound {
                    path: path.to_owned(),
                });
            }
            Ok(meta) if meta.is_dir() => {
                return Err(SqliteError::Directory {
                    path: path.to_owned(),
                });
            }
            // Anything else (no permission, a special file) is left for `SQLite` to report.
            _ => {}
        }
        let open_error = |source| SqliteError::Open {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(open_error)?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(open_error)?;
        let version = schema::version(&conn, path)?;
        if version > SCHEMA_VERSION {
            return Err(SqliteError::NewerSchema {
                path: path.to_owned(),
                found: version,
                supported: SCHEMA_VERSION,
            });
        }
        if version < 1 {
            return Err(SqliteError::NotAStore {
                path: path.to_owned(),
            });
        }
        Ok(Store {
            conn,
            path: path.to_owned(),
            schema_version: version,
        })
    }

    /// The database file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's schema version (at most [`SCHEMA_VERSION`]).
    #[must_use]
    pub fn schema_version(&self) -> i64 {
        self.schema_version
    }

    /// Rows in the `audit` table.
    ///
    /// # Errors
    /// [`QueryError::Read`].
    pub fn audit_rows(&self) -> Result<u64, QueryError> {
        let read = self.read();
        let rows: i64 = self
            .conn
            .query_row("SELECT count(*) FROM audit", [], |row| row.get(0))
            .map_err(&read)?;
        Ok(u64::try_from(rows).unwrap_or(0))
    }

    /// A read transaction, so that the queries of one answer see one state of the file while a
    /// sink writes; it ends (rolls back, having changed nothing) when dropped.
    fn snapshot(&self) -> Result<rusqlite::Transaction<'_>, QueryError> {
        self.conn.unchecked_transaction().map_err(self.read())
    }

    fn read(&self) -> impl Fn(rusqlite::Error) -> QueryError + '_ {
        |source| QueryError::Read {
            path: self.path.clone(),
            source,
        }
    }

    fn bad_row(&self, table: &'static str, id: i64, reason: impl Into<String>) -> QueryError {
        QueryError::BadRow {
            path: self.path.clone(),
            table,
            id,
            reason: reason.into(),
        }
    }

    /// The audit entry with row id `id`.
    fn audit_by_id(&self, id: i64) -> Result<AuditRecord, QueryError> {
        let read = self.read();
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE id = ?1");
        let mut statement = self.conn.prepare_cached(&sql).map_err(&read)?;
        let mut rows = statement.query([id]).map_err(&read)?;
        let row = rows
            .next()
            .map_err(&read)?
            .ok_or_else(|| self.bad_row("audit", id, "the row vanished while it was read"))?;
        self.audit_record(row)
    }

    /// Per callsite calls, errors and latency percentiles over `range`, from the stored windows
    /// (see [`CallsiteSummary`]).
    ///
    /// # Errors
    /// [`QueryError::Read`], or [`QueryError::BadRow`] for a window whose histogram or labels
    /// cannot be read.
    pub fn summary(&self, range: TimeRange) -> Result<Summary, QueryError> {
        let read = self.read();
        let (since, until) = range.bounds();
        let mut statement = self
            .conn
            .prepare(
                "SELECT w.id, c.name, c.module, c.kind, c.labels, c.unit, w.outcome, w.count,
                        w.timed, w.dropped, w.histogram, w.window_start_us, w.window_end_us
                 FROM windows w JOIN callsites c ON c.id = w.callsite_id
                 WHERE w.window_end_us > ?1 AND w.window_start_us < ?2
                 ORDER BY w.id",
            )
            .map_err(&read)?;
        let mut rows = statement.query((since, until)).map_err(&read)?;
        let mut callsites: BTreeMap<(String, String, String, String), Acc> = BTreeMap::new();
        let (mut first, mut last) = (i64::MAX, i64::MIN);
        while let Some(row) = rows.next().map_err(&read)? {
            let id: i64 = row.get(0).map_err(&read)?;
            let key = (
                row.get(1).map_err(&read)?,
                row.get(2).map_err(&read)?,
                row.get(3).map_err(&read)?,
                row.get(4).map_err(&read)?,
            );
            let outcome: String = row.get(6).map_err(&read)?;
            let slot = match outcome.as_str() {
                "ok" => 0,
                "error" => 1,
                "panic" => 2,
                "cancelled" => 3,
                other => return Err(self.bad_row("windows", id, format!("outcome `{other}`"))),
            };
            let histogram = self.histogram(id, row.get_ref(10).map_err(&read)?)?;
            first = first.min(row.get(11).map_err(&read)?);
            last = last.max(row.get(12).map_err(&read)?);
            let acc = match callsites.entry(key) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    let labels = self.json_object("windows", id, &entry.key().3)?;
                    entry.insert(Acc {
                        unit: row.get(5).map_err(&read)?,
                        labels,
                        ..Acc::default()
                    })
                }
            };
            acc.outcomes[slot] = acc.outcomes[slot].saturating_add(count(row, 7, &read)?);
            acc.timed = acc.timed.saturating_add(count(row, 8, &read)?);
            acc.dropped = acc.dropped.saturating_add(count(row, 9, &read)?);
            acc.histogram.merge(&histogram);
        }
        let seconds = (first <= last).then(|| {
            let start = first.max(since);
            let end = last.min(until);
            (end.saturating_sub(start)) as f64 / 1e6
        });
        let seconds = seconds.filter(|s| *s > 0.0);
        let callsites = callsites
            .into_iter()
            .map(|((name, module, kind, _), acc)| acc.summary(name, module, kind, seconds))
            .collect();
        Ok(Summary {
            since: range.since.map(|t| rfc3339(super::micros(t))),
            until: range.until.map(|t| rfc3339(super::micros(t))),
            first_window_start: (first <= last).then(|| rfc3339(first)),
            last_window_end: (first <= last).then(|| rfc3339(last)),
            seconds,
            callsites,
        })
    }

    /// Every callsite the store has seen, by name, module, kind and labels, whether or not it
    /// has calls in any range still stored.
    ///
    /// # Errors
    /// [`QueryError::Read`], or [`QueryError::BadRow`] for a callsite whose labels cannot be
    /// read.
    pub fn callsites(&self) -> Result<Vec<CallsiteRecord>, QueryError> {
        let read = self.read();
        let mut statement = self
            .conn
            .prepare(
                "SELECT id, name, module, kind, labels, unit FROM callsites
                 ORDER BY name, module, kind, labels, id",
            )
            .map_err(&read)?;
        let mut rows = statement.query([]).map_err(&read)?;
        let mut callsites: Vec<CallsiteRecord> = Vec::new();
        while let Some(row) = rows.next().map_err(&read)? {
            let id: i64 = row.get(0).map_err(&read)?;
            let labels: String = row.get(4).map_err(&read)?;
            let record = CallsiteRecord {
                name: row.get(1).map_err(&read)?,
                module: row.get(2).map_err(&read)?,
                kind: row.get(3).map_err(&read)?,
                labels: self.json_object("callsites", id, &labels)?,
                unit: row.get(5).map_err(&read)?,
            };
            // The same callsite declared at several places (file, line) is one for a reader.
            let known = callsites.last().is_some_and(|last| {
                (&last.name, &last.module, &last.kind, &last.labels)
                    == (&record.name, &record.module, &record.kind, &record.labels)
            });
            if !known {
                callsites.push(record);
            }
        }
        Ok(callsites)
    }

    /// The `top` longest stored events that started in `range`, longest first (ties by id),
    /// with their captured arguments and correlation ids.
    ///
    /// # Errors
    /// [`QueryError::Read`], or [`QueryError::BadRow`] for an event whose labels or fields
    /// cannot be read.
    pub fn slow(&self, top: usize, range: TimeRange) -> Result<Vec<EventRecord>, QueryError> {
        let read = self.read();
        let (since, until) = range.bounds();
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events e JOIN callsites c ON c.id = e.callsite_id
             WHERE e.start_us >= ?1 AND e.start_us < ?2
             ORDER BY e.duration_ns DESC, e.id LIMIT ?3"
        );
        let mut statement = self.conn.prepare(&sql).map_err(&read)?;
        let mut rows = statement
            .query((since, until, i64::try_from(top).unwrap_or(i64::MAX)))
            .map_err(&read)?;
        let mut events = Vec::new();
        while let Some(row) = rows.next().map_err(&read)? {
            events.push(self.event_record(row)?);
        }
        Ok(events)
    }

    /// Failed calls over `range`, per callsite, outcome (`error` or `panic`) and error kind,
    /// most frequent first: counts from the windows' `window_errors` (panics, and errors a
    /// window counted without a kind, from the windows themselves), each with the latest
    /// stored event of its group in the range.
    ///
    /// # Errors
    /// [`QueryError::Read`], or [`QueryError::BadRow`] for a row that cannot be read.
    pub fn errors(&self, range: TimeRange) -> Result<Vec<ErrorGroup>, QueryError> {
        // (name, module, labels, outcome) -> (calls, kind -> calls)
        type Key = (String, String, String, String);
        let read = self.read();
        let _snapshot = self.snapshot()?;
        let (since, until) = range.bounds();
        let mut groups: BTreeMap<Key, (u64, BTreeMap<String, u64>)> = BTreeMap::new();
        let mut statement = self
            .conn
            .prepare(
                "SELECT c.name, c.module, c.labels, w.outcome, sum(w.count),
                        (SELECT json_group_array(json_array(kind, total)) FROM (
                            SELECT we.kind AS kind, sum(we.count) AS total
                            FROM window_errors we JOIN windows v ON v.id = we.window_id
                            WHERE v.callsite_id IN (SELECT id FROM callsites
                                                    WHERE name = c.name AND module = c.module
                                                      AND labels = c.labels)
                              AND v.outcome = w.outcome
                              AND v.window_end_us > ?1 AND v.window_start_us < ?2
                            GROUP BY we.kind))
                 FROM windows w JOIN callsites c ON c.id = w.callsite_id
                 WHERE w.outcome IN ('error', 'panic')
                   AND w.window_end_us > ?1 AND w.window_start_us < ?2
                 GROUP BY c.name, c.module, c.labels, w.outcome",
            )
            .map_err(&read)?;
        let mut rows = statement.query((since, until)).map_err(&read)?;
        while let Some(row) = rows.next().map_err(&read)? {
            let key: Key = (
                row.get(0).map_err(&read)?,
                row.get(1).map_err(&read)?,
                row.get(2).map_err(&read)?,
                row.get(3).map_err(&read)?,
            );
            let calls = count(row, 4, &read)?;
            let kinds_text: String = row.get(5).map_err(&read)?;
            let kinds: Vec<(String, i64)> = serde_json::from_str(&kinds_text)
                .map_err(|e| self.bad_row("window_errors", 0, e.to_string()))?;
            let kinds = kinds
                .into_iter()
                .map(|(k, n)| (k, u64::try_from(n).unwrap_or(0)))
                .collect();
            groups.insert(key, (calls, kinds));
        }
        drop(rows);
        let mut out = Vec::new();
        for ((name, module, labels_text, outcome), (calls, kinds)) in groups {
            let labels = self.json_object("callsites", 0, &labels_text)?;
            let classified = kinds.values().fold(0u64, |a, b| a.saturating_add(*b));
            let mut entries: Vec<(Option<String>, u64)> =
                kinds.into_iter().map(|(k, n)| (Some(k), n)).collect();
            if calls > classified {
                entries.push((None, calls - classified));
            }
            for (kind, count) in entries {
                let latest = self.latest_event(
                    (&name, &module, &labels_text),
                    &outcome,
                    kind.as_deref(),
                    (since, until),
                )?;
                out.push(ErrorGroup {
                    callsite: name.clone(),
                    module: module.clone(),
                    labels: labels.clone(),
                    outcome: outcome.clone(),
                    kind,
                    count,
                    latest,
                });
            }
        }
        out.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| a.callsite.cmp(&b.callsite))
                .then_with(|| a.outcome.cmp(&b.outcome))
                .then_with(|| a.kind.cmp(&b.kind))
        });
        Ok(out)
    }

    fn latest_event(
        &self,
        (name, module, labels): (&str, &str, &str),
        outcome: &str,
        kind: Option<&str>,
        (since, until): (i64, i64),
    ) -> Result<Option<EventRecord>, QueryError> {
        let read = self.read();
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM events e JOIN callsites c ON c.id = e.callsite_id
             WHERE c.name = ?1 AND c.module = ?2 AND c.labels = ?3 AND e.outcome = ?4
               AND e.error_kind IS ?5 AND e.start_us >= ?6 AND e.start_us < ?7
             ORDER BY e.start_us DESC, e.id DESC LIMIT 1"
        );
        let mut statement = self.conn.prepare_cached(&sql).map_err(&read)?;
        let mut rows = statement
            .query((name, module, labels, outcome, kind, since, until))
            .map_err(&read)?;
        match rows.next().map_err(&read)? {
            Some(row) => Ok(Some(self.event_record(row)?)),
            None => Ok(None),
        }
    }

    /// Every event, audit entry and notice stored under `correlation` (16 hexadecimal digits,
    /// either case), in time order.
    ///
    /// # Errors
    /// [`QueryError::BadCorrelation`] for an argument that is not a correlation id;
    /// [`QueryError::Read`] or [`QueryError::BadRow`].
    pub fn trace(&self, correlation: &str) -> Result<Trace, QueryError> {
        if correlation.len() != 16 || !correlation.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(QueryError::BadCorrelation(correlation.to_owned()));
        }
        let correlation = correlation.to_ascii_lowercase();
        let read = self.read();
        let _snapshot = self.snapshot()?;
        // (time, kind order, id, entry)
        let mut entries: Vec<(i64, u8, i64, TraceEntry)> = Vec::new();
        let sql = format!(
            "SELECT {EVENT_COLUMNS}, e.start_us FROM events e
             JOIN callsites c ON c.id = e.callsite_id WHERE e.correlation = ?1"
        );
        let mut statement = self.conn.prepare(&sql).map_err(&read)?;
        let mut rows = statement.query([&correlation]).map_err(&read)?;
        while let Some(row) = rows.next().map_err(&read)? {
            let event = self.event_record(row)?;
            let time = row.get(13).map_err(&read)?;
            entries.push((time, 0, event.id, TraceEntry::Event(event)));
        }
        let sql = format!("SELECT {AUDIT_COLUMNS} FROM audit WHERE correlation = ?1");
        let mut statement = self.conn.prepare(&sql).map_err(&read)?;
        let mut rows = statement.query([&correlation]).map_err(&read)?;
        while let Some(row) = rows.next().map_err(&read)? {
            let audit = self.audit_record(row)?;
            let time = row.get(4).map_err(&read)?;
            entries.push((time, 1, audit.id, TraceEntry::Audit(audit)));
        }
        let sql = format!("SELECT {NOTICE_COLUMNS} FROM notices WHERE correlation = ?1");
        let mut statement = self.conn.prepare(&sql).map_err(&read)?;
        let mut rows = statement.query([&correlation]).map_err(&read)?;
        while let Some(row) = rows.next().map_err(&read)? {
            let id: i64 = row.get(0).map_err(&read)?;
            let time: i64 = row.get(1).map_err(&read)?;
            let fields: String = row.get(5).map_err(&read)?;
            let notice = NoticeRecord {
                id,
                time: rfc3339(time),
                source: row.get(2).map_err(&read)?,
                level: row.get(3).map_err(&read)?,
                message: row.get(4).map_err(&read)?,
                fields: self.json("notices", id, &fields)?,
                correlation: row.get(6).map_err(&read)?,
            };
            entries.push((time, 2, id, TraceEntry::Notice(notice)));
        }
        entries.sort_by_key(|&(time, kind, id, _)| (time, kind, id));
        Ok(Trace {
            correlation,
            entries: entries.into_iter().map(|(_, _, _, entry)| entry).collect(),
        })
    }

    /// The lineage of the artifact `id`: every audit entry whose inputs or outputs name it,
    /// then, transitively, upstream (from an entry's inputs to the entries that output them)
    /// and downstream (from its outputs to the entries that input them), in chain order. Each
    /// direction is followed on its own, so a sibling (another product of an upstream input)
    /// is not part of the trail. Cycles end where an artifact was already visited.
    ///
    /// # Errors
    /// [`QueryError::Read`], or [`QueryError::BadRow`] for an entry whose inputs or outputs are
    /// not a JSON array of strings.
    pub fn audit_trail(&self, id: &str) -> Result<AuditTrail, QueryError> {
        let _snapshot = self.snapshot()?;
        // Entry id -> (upstream, downstream, depth, record).
        let mut found: BTreeMap<i64, (bool, bool, u32, AuditRecord)> = BTreeMap::new();
        for upstream in [true, false] {
            // Upstream: artifacts whose producers are wanted; downstream: whose consumers.
            let (match_column, next) = if upstream {
                ("outputs", "inputs")
            } else {
                ("inputs", "outputs")
            };
            let mut visited: HashSet<String> = HashSet::from([id.to_owned()]);
            let mut worklist: VecDeque<(String, u32)> = VecDeque::from([(id.to_owned(), 0)]);
            while let Some((artifact, depth)) = worklist.pop_front() {
                for entry_id in self.entries_naming(match_column, &artifact)? {
                    let slot = match found.entry(entry_id) {
                        Entry::Occupied(slot) => slot.into_mut(),
                        Entry::Vacant(slot) => {
                            let record = self.audit_by_id(entry_id)?;
                            slot.insert((false, false, depth + 1, record))
                        }
                    };
                    if upstream {
                        slot.0 = true;
                    } else {
                        slot.1 = true;
                    }
                    slot.2 = slot.2.min(depth + 1);
                    let neighbours = if next == "inputs" {
                        &slot.3.inputs
                    } else {
                        &slot.3.outputs
                    };
                    for neighbour in neighbours {
                        if visited.insert(neighbour.clone()) {
                            worklist.push_back((neighbour.clone(), depth + 1));
                        }
                    }
                }
            }
        }
        let entries = found
            .into_values()
            .map(|(up, down, depth, entry)| TrailEntry {
                direction: match (up, down) {
                    (true, true) => "both",
                    (true, false) => "upstream",
                    _ => "downstream",
                },
                depth,
                entry,
            })
            .collect();
        Ok(AuditTrail {
            id: id.to_owned(),
            entries,
        })
    }

    /// Ids of the audit entries whose `column` (`inputs` or `outputs`) names `artifact`; rows
    /// whose column is not valid JSON name nothing.
    fn entries_naming(&self, column: &str, artifact: &str) -> Result<Vec<i64>, QueryError> {
        let read = self.read();
        let sql = format!(
            "SELECT DISTINCT a.id FROM audit a,
                 json_each(CASE WHEN json_valid(a.{column}) THEN a.{column} ELSE '[]' END) j
             WHERE j.value = ?1 ORDER BY a.id"
        );
        let mut statement = self.conn.prepare_cached(&sql).map_err(&read)?;
        let ids = statement
            .query_map([artifact], |row| row.get(0))
            .map_err(&read)?
            .collect::<Result<Vec<i64>, _>>()
            .map_err(&read)?;
        Ok(ids)
    }

    /// Writes the rows of `table` in `range` (events by start time, windows by overlap) to
    /// `out` in `format`, in id order, one row at a time.
    ///
    /// # Errors
    /// [`QueryError::Read`], [`QueryError::BadRow`], or [`QueryError::Write`] when `out`
    /// fails; what was written before stays written.
    pub fn export(
        &self,
        table: ExportTable,
        range: TimeRange,
        format: ExportFormat,
        out: &mut dyn Write,
    ) -> Result<ExportReport, QueryError> {
        let read = self.read();
        let (since, until) = range.bounds();
        let header = match table {
            ExportTable::Events => EVENT_CSV_HEADER,
            ExportTable::Windows => WINDOW_CSV_HEADER,
        };
        if format == ExportFormat::Csv {
            write_csv(out, header.iter().map(|h| (*h).to_owned())).map_err(QueryError::Write)?;
        }
        let sql = match table {
            ExportTable::Events => format!(
                "SELECT {EVENT_COLUMNS} FROM events e JOIN callsites c ON c.id = e.callsite_id
                 WHERE e.start_us >= ?1 AND e.start_us < ?2 ORDER BY e.id"
            ),
            ExportTable::Windows => "SELECT w.id, w.snapshot_sequence, w.reason, w.window_start_us,
                        w.window_end_us, c.name, c.module, c.labels, w.outcome, w.count,
                        w.timed, w.dropped, w.sum_ns, w.min_ns, w.max_ns, w.p50_ns, w.p90_ns,
                        w.p99_ns, w.p999_ns,
                        (SELECT json_group_object(kind, count) FROM window_errors
                         WHERE window_id = w.id),
                        w.histogram
                 FROM windows w JOIN callsites c ON c.id = w.callsite_id
                 WHERE w.window_end_us > ?1 AND w.window_start_us < ?2 ORDER BY w.id"
                .to_owned(),
        };
        let mut statement = self.conn.prepare(&sql).map_err(&read)?;
        let mut rows = statement.query((since, until)).map_err(&read)?;
        let mut written = 0u64;
        while let Some(row) = rows.next().map_err(&read)? {
            match table {
                ExportTable::Events => write_record(out, format, header, &self.event_record(row)?)?,
                ExportTable::Windows => {
                    write_record(out, format, header, &self.window_record(row)?)?;
                }
            }
            written += 1;
        }
        out.flush().map_err(QueryError::Write)?;
        Ok(ExportReport { rows: written })
    }

    fn event_record(&self, row: &Row<'_>) -> Result<EventRecord, QueryError> {
        let read = self.read();
        let id: i64 = row.get(0).map_err(&read)?;
        let labels: String = row.get(3).map_err(&read)?;
        let fields: Option<String> = row.get(12).map_err(&read)?;
        Ok(EventRecord {
            id,
            callsite: row.get(1).map_err(&read)?,
            module: row.get(2).map_err(&read)?,
            labels: self.json_object("events", id, &labels)?,
            outcome: row.get(4).map_err(&read)?,
            error_kind: row.get(5).map_err(&read)?,
            start: rfc3339(row.get(6).map_err(&read)?),
            duration_ns: row.get(7).map_err(&read)?,
            thread_id: row.get(8).map_err(&read)?,
            thread_name: row.get(9).map_err(&read)?,
            correlation: row.get(10).map_err(&read)?,
            reason: row.get(11).map_err(&read)?,
            fields: match fields {
                Some(text) => self.json_object("events", id, &text)?,
                None => Value::Object(serde_json::Map::new()),
            },
        })
    }

    fn audit_record(&self, row: &Row<'_>) -> Result<AuditRecord, QueryError> {
        let read = self.read();
        let id: i64 = row.get(0).map_err(&read)?;
        let strings = |index: usize, name: &str| -> Result<Vec<String>, QueryError> {
            let text: String = row.get(index).map_err(&read)?;
            serde_json::from_str(&text).map_err(|e| {
                self.bad_row(
                    "audit",
                    id,
                    format!("`{name}` is not a JSON array of strings: {e}"),
                )
            })
        };
        let fields: String = row.get(12).map_err(&read)?;
        Ok(AuditRecord {
            id,
            run_id: row.get(1).map_err(&read)?,
            sequence: row.get(2).map_err(&read)?,
            operation: row.get(3).map_err(&read)?,
            timestamp: rfc3339(row.get(4).map_err(&read)?),
            inputs: strings(5, "inputs")?,
            outputs: strings(6, "outputs")?,
            actor: row.get(7).map_err(&read)?,
            correlation: row.get(8).map_err(&read)?,
            outcome: row.get(9).map_err(&read)?,
            error_kind: row.get(10).map_err(&read)?,
            duration_ns: row.get(11).map_err(&read)?,
            fields: self.json("audit", id, &fields)?,
            callsite: row.get(13).map_err(&read)?,
        })
    }

    fn window_record(&self, row: &Row<'_>) -> Result<WindowRecord, QueryError> {
        let read = self.read();
        let id: i64 = row.get(0).map_err(&read)?;
        let labels: String = row.get(7).map_err(&read)?;
        let error_kinds: Option<String> = row.get(19).map_err(&read)?;
        let histogram = match row.get_ref(20).map_err(&read)? {
            ValueRef::Blob(bytes) | ValueRef::Text(bytes) => serde_json::from_slice(bytes)
                .map_err(|e| self.bad_row("windows", id, format!("histogram: {e}")))?,
            _ => return Err(self.bad_row("windows", id, "histogram is not JSON")),
        };
        Ok(WindowRecord {
            id,
            snapshot_sequence: row.get(1).map_err(&read)?,
            reason: row.get(2).map_err(&read)?,
            window_start: rfc3339(row.get(3).map_err(&read)?),
            window_end: rfc3339(row.get(4).map_err(&read)?),
            callsite: row.get(5).map_err(&read)?,
            module: row.get(6).map_err(&read)?,
            labels: self.json_object("windows", id, &labels)?,
            outcome: row.get(8).map_err(&read)?,
            count: row.get(9).map_err(&read)?,
            timed: row.get(10).map_err(&read)?,
            dropped: row.get(11).map_err(&read)?,
            sum_ns: row.get(12).map_err(&read)?,
            min_ns: row.get(13).map_err(&read)?,
            max_ns: row.get(14).map_err(&read)?,
            p50_ns: row.get(15).map_err(&read)?,
            p90_ns: row.get(16).map_err(&read)?,
            p99_ns: row.get(17).map_err(&read)?,
            p999_ns: row.get(18).map_err(&read)?,
            error_kinds: match error_kinds {
                Some(text) => self.json_object("window_errors", id, &text)?,
                None => Value::Object(serde_json::Map::new()),
            },
            histogram,
        })
    }

    fn histogram(&self, id: i64, value: ValueRef<'_>) -> Result<Histogram, QueryError> {
        match value {
            ValueRef::Blob(bytes) | ValueRef::Text(bytes) => serde_json::from_slice(bytes)
                .map_err(|e| self.bad_row("windows", id, format!("histogram: {e}"))),
            _ => Err(self.bad_row("windows", id, "histogram is not JSON")),
        }
    }

    fn json(&self, table: &'static str, id: i64, text: &str) -> Result<Value, QueryError> {
        serde_json::from_str(text).map_err(|e| self.bad_row(table, id, format!("bad JSON: {e}")))
    }

    fn json_object(&self, table: &'static str, id: i64, text: &str) -> Result<Value, QueryError> {
        let value = self.json(table, id, text)?;
        if value.is_object() {
            Ok(value)
        } else {
            Err(self.bad_row(table, id, format!("`{text}` is not a JSON object")))
        }
    }
}

/// A non-negative count column; a negative stored value reads as 0.
fn count(
    row: &Row<'_>,
    index: usize,
    read: &impl Fn(rusqlite::Error) -> QueryError,
) -> Result<u64, QueryError> {
    let value: Option<i64> = row.get(index).map_err(read)?;
    Ok(value.map_or(0, |v| u64::try_from(v).unwrap_or(0)))
}

/// One exported row: a JSON line in the record's field order, or a CSV line of `header`'s
/// columns.
fn write_record(
    out: &mut dyn Write,
    format: ExportFormat,
    header: &[&str],
    record: &impl Serialize,
) -> Result<(), QueryError> {
    match format {
        ExportFormat::Jsonl => {
            serde_json::to_writer(&mut *out, record).map_err(json_write)?;
            out.write_all(b"\n").map_err(QueryError::Write)
        }
        ExportFormat::Csv => {
            let record = serde_json::to_value(record).map_err(json_write)?;
            let cells = header.iter().map(|h| match &record[*h] {
                Value::Null => String::new(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            });
            write_csv(out, cells).map_err(QueryError::Write)
        }
    }
}

fn json_write(error: serde_json::Error) -> QueryError {
    QueryError::Write(std::io::Error::other(error))
}

/// One CSV line (RFC 4180): cells with a comma, quote or line break are quoted, quotes doubled.
fn write_csv(out: &mut dyn Write, cells: impl Iterator<Item = String>) -> std::io::Result<()> {
    let mut line = String::new();
    for (i, cell) in cells.enumerate() {
        if i > 0 {
            line.push(',');
        }
        if cell.contains([',', '"', '\n', '\r']) {
            line.push('"');
            line.push_str(&cell.replace('"', "\"\""));
            line.push('"');
        } else {
            line.push_str(&cell);
        }
    }
    line.push_str("\r\n");
    out.write_all(line.as_bytes())
}

/// Microseconds since the Unix epoch as RFC 3339 UTC with six fractional digits; outside the
/// years 0000 to 9999, `"<n>us"`.
#[must_use]
pub fn rfc3339(micros: i64) -> String {
    // Seconds from 0000-01-01 to the epoch (negative) and from the epoch to 10000-01-01.
    const FIRST_SECOND: i64 = -62_167_219_200;
    const END_SECOND: i64 = 253_402_300_800;
    let secs = micros.div_euclid(1_000_000);
    let fraction = micros.rem_euclid(1_000_000);
    if !(FIRST_SECOND..END_SECOND).contains(&secs) {
        return format!("{micros}us");
    }
    let of_day = secs.rem_euclid(86_400);
    // As `instrument` writes times.
    let (year, month, day) = crate::calendar::civil_from_days(secs.div_euclid(86_400));
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{fraction:06}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_instrument_writes_them() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(
            rfc3339(1_795_601_813_123_456),
            "2026-11-25T10:16:53.123456Z"
        );
        assert_eq!(rfc3339(951_782_400_000_000), "2000-02-29T00:00:00.000000Z");
        assert_eq!(rfc3339(i64::MAX), format!("{}us", i64::MAX));
        assert_eq!(rfc3339(i64::MIN), format!("{}us", i64::MIN));
    }

    #[test]
    fn csv_cells_are_quoted_when_needed() {
        let mut out = Vec::new();
        write_csv(
            &mut out,
            ["a", "b,c", "say \"hi\"", "two\nlines", ""]
                .into_iter()
                .map(str::to_owned),
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "a,\"b,c\",\"say \"\"hi\"\"\",\"two\nlines\",\r\n"
        );
    }

    /// A store with the current schema and rows inserted with plain SQL at known times.
    fn store_with(sql: &str) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instrument.db");
        drop(crate::SqliteSink::builder().path(&path).build().unwrap());
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(sql).unwrap();
        drop(conn);
        let store = Store::open(&path).unwrap();
        (dir, store)
    }

    const CALLSITE: &str = "INSERT INTO callsites (id, name, module, file, line, kind, labels)
                            VALUES (1, 'app::parse', 'app', 'a.rs', 1, 'function', '{}');";

    #[test]
    fn a_trace_is_in_time_order_with_ties_by_kind_then_id() {
        let c = "00000000000000aa";
        let (_dir, store) = store_with(&format!(
            "{CALLSITE}
             INSERT INTO runs (id, pid, process_name, started_us) VALUES (1, 1, 'p', 0);
             INSERT INTO events (id, callsite_id, outcome, start_us, duration_ns, thread_id,
                                 correlation, reason)
             VALUES (1, 1, 'ok', 300, 5, 1, '{c}', 'sampled'),
                    (2, 1, 'ok', 100, 5, 1, '{c}', 'sampled'),
                    (3, 1, 'ok', 100, 5, 1, '00000000000000bb', 'sampled');
             INSERT INTO audit (id, run_id, sequence, operation, timestamp_us, inputs, outputs,
                                fields, correlation, prev_hash, hash)
             VALUES (1, 1, 1, 'load', 200, '[]', '[]', '[]', '{c}', '', ''),
                    (2, 1, 2, 'save', 100, '[]', '[]', '[]', '{c}', '', '');
             INSERT INTO notices (id, time_us, source, level, message, fields, correlation)
             VALUES (1, 100, 'health', 'warn', 'hot', '[[\"disk\",\"91\"]]', '{c}');"
        ));
        let trace = store.trace(&c.to_uppercase()).unwrap();
        assert_eq!(trace.correlation, c);
        let order: Vec<String> = trace
            .entries
            .iter()
            .map(|e| match e {
                TraceEntry::Event(e) => format!("event {}", e.id),
                TraceEntry::Audit(a) => format!("audit {}", a.id),
                TraceEntry::Notice(n) => format!("notice {}", n.id),
            })
            .collect();
        assert_eq!(
            order,
            ["event 2", "audit 2", "notice 1", "audit 1", "event 1"]
        );
        let json = serde_json::to_value(&trace.entries[2]).unwrap();
        assert_eq!(json["type"], "notice");
        assert_eq!(json["fields"], serde_json::json!([["disk", "91"]]));
        assert!(matches!(
            store.trace("not-an-id"),
            Err(QueryError::BadCorrelation(_))
        ));
    }

    #[test]
    fn an_audit_trail_follows_each_direction_and_ends_at_cycles() {
        // a -> b -> c, a -> d (a sibling of b), c -> a (a cycle), x -> y (unrelated).
        let (_dir, store) = store_with(
            "INSERT INTO runs (id, pid, process_name, started_us) VALUES (1, 1, 'p', 0);
             INSERT INTO audit (id, run_id, sequence, operation, timestamp_us, inputs, outputs,
                                fields, prev_hash, hash)
             VALUES (1, 1, 1, 'ab', 1, '[\"a\"]', '[\"b\"]', '[]', '', ''),
                    (2, 1, 2, 'bc', 2, '[\"b\"]', '[\"c\"]', '[]', '', ''),
                    (3, 1, 3, 'ad', 3, '[\"a\"]', '[\"d\"]', '[]', '', ''),
                    (4, 1, 4, 'xy', 4, '[\"x\"]', '[\"y\"]', '[]', '', ''),
                    (5, 1, 5, 'bad', 5, 'not json', '[]', '[]', '', '');",
        );
        let trail = |id: &str| -> Vec<(String, &'static str, u32)> {
            store
                .audit_trail(id)
                .unwrap()
                .entries
                .into_iter()
                .map(|e| (e.entry.operation, e.direction, e.depth))
                .collect()
        };
        let t = |op: &str, dir, depth| (op.to_owned(), dir, depth);
        assert_eq!(
            trail("b"),
            [t("ab", "upstream", 1), t("bc", "downstream", 1)]
        );
        assert_eq!(
            trail("c"),
            [t("ab", "upstream", 2), t("bc", "upstream", 1)],
            "the sibling a -> d is not upstream of c"
        );
        assert_eq!(
            trail("a"),
            [
                t("ab", "downstream", 1),
                t("bc", "downstream", 2),
                t("ad", "downstream", 1)
            ]
        );
        assert!(trail("nothing").is_empty());
    }

    #[test]
    fn an_audit_trail_ends_where_a_cycle_comes_back() {
        let (_dir, store) = store_with(
            "INSERT INTO runs (id, pid, process_name, started_us) VALUES (1, 1, 'p', 0);
             INSERT INTO audit (id, run_id, sequence, operation, timestamp_us, inputs, outputs,
                                fields, prev_hash, hash)
             VALUES (1, 1, 1, 'pq', 1, '[\"p\"]', '[\"q\"]', '[]', '', ''),
                    (2, 1, 2, 'qp', 2, '[\"q\"]', '[\"p\"]', '[]', '', '');",
        );
        let trail = store.audit_trail("p").unwrap();
        let seen: Vec<_> = trail
            .entries
            .iter()
            .map(|e| (e.entry.id, e.direction, e.depth))
            .collect();
        assert_eq!(seen, [(1, "both", 1), (2, "both", 1)]);
    }
}
