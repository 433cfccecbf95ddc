//! Retention, backups and restores of a store, and the audit anchor pruning leaves; described in
//! the [`sqlite`](super) module docs.

use std::fs::{self, File};
use std::io::{self, Read as _, Write as _};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use instrument::SinkError;
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::audit::{AUDIT_COLUMNS, ChainCheck, ChainSummary, hex, latest_anchor, verify_chain};
use super::error::{ChainError, SqliteError};
use super::schema::{self, SCHEMA_VERSION};

/// The database file's name inside a backup directory.
pub const BACKUP_FILE: &str = "instrument.db";
/// The manifest's name inside a backup directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The manifest format this release writes and reads.
pub const MANIFEST_VERSION: u32 = 1;
/// The most rows one pruning transaction deletes.
pub const PRUNE_BATCH: usize = 500;
/// The most pruning transactions the sink runs per tick.
pub const PRUNE_STEPS_PER_TICK: usize = 8;
/// The pages one step of a backup copies.
pub const BACKUP_PAGES_PER_STEP: i32 = 256;

/// The pause between two pruning transactions of [`prune`].
const PRUNE_PAUSE: Duration = Duration::from_millis(2);
/// The pause between two steps of a backup.
const BACKUP_PAUSE: Duration = Duration::from_millis(1);
/// How long a backup step waits when the source is locked, and how often in a row.
const BACKUP_BUSY_PAUSE: Duration = Duration::from_millis(10);
const BACKUP_BUSY_TRIES: u32 = 1000;
/// How long a maintenance connection waits for a lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// The prefix of the subdirectories scheduled backups write.
const SCHEDULED_PREFIX: &str = "backup-";

/// Why a backup, verification, restore or prune failed. Each variant names the file or
/// directory; a failure leaves the store as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MaintenanceError {
    /// The store could not be opened, is not a `SQLite` database, or was written by a newer
    /// release.
    #[error(transparent)]
    Store(#[from] SqliteError),
    /// The database file does not exist (nothing is created).
    #[error("{path} does not exist or is not a file")]
    NoStore {
        /// The database file.
        path: PathBuf,
    },
    /// The file is a `SQLite` database without the store's `schema_version` table.
    #[error("{path} is a SQLite database but not an instrument store (it has no schema_version)")]
    NotAStore {
        /// The database file.
        path: PathBuf,
    },
    /// A file or directory operation failed.
    #[error("cannot {action} {path}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A `SQLite` operation failed.
    #[error("cannot {action} {path}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The backup directory already holds something.
    #[error(
        "the backup directory {path} is not empty; pick a new directory (a backup never \
         overwrites one)"
    )]
    DestinationNotEmpty {
        /// The directory.
        path: PathBuf,
    },
    /// The restore target exists.
    #[error(
        "{path} already exists; restore never overwrites a store: move it away or pick another \
         path"
    )]
    TargetExists {
        /// The target file.
        path: PathBuf,
    },
    /// A journal or WAL file of an earlier store lies next to the restore target, and would be
    /// applied to the restored file.
    #[error("{path} is left from an earlier store at {target}; move it away or pick another path")]
    Leftover {
        /// The leftover file.
        path: PathBuf,
        /// The restore target.
        target: PathBuf,
    },
    /// The manifest is not a valid manifest.
    #[error("the backup manifest {path} is not valid: {reason}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The backup's database differs from what its manifest records.
    #[error(
        "{path} does not match its manifest: its {field} is {found}, the manifest says {expected}"
    )]
    Mismatch {
        /// The database file.
        path: PathBuf,
        /// The manifest field.
        field: &'static str,
        /// The manifest's value.
        expected: String,
        /// The file's value.
        found: String,
    },
    /// `PRAGMA integrity_check` reported problems.
    #[error("{path} fails PRAGMA integrity_check: {report}")]
    Integrity {
        /// The database file.
        path: PathBuf,
        /// The first problems reported, joined by `; `.
        report: String,
    },
    /// The audit chain does not verify.
    #[error("the audit chain of {path} does not verify: {error}")]
    AuditChain {
        /// The database file.
        path: PathBuf,
        /// Where and how it breaks.
        error: ChainError,
    },
    /// A scheduled backup was stopped because the sink shut down; what it wrote was removed.
    #[error("the backup into {path} was stopped because the sink shut down; it was removed")]
    Cancelled {
        /// The backup directory.
        path: PathBuf,
    },
}

/// What a backup directory holds, as its `manifest.json` records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct BackupManifest {
    /// The manifest format ([`MANIFEST_VERSION`]).
    pub manifest_version: u32,
    /// The database file's name inside the backup directory ([`BACKUP_FILE`]).
    pub file: String,
    /// The SHA-256 of the database file, 64 lower-case hex digits.
    pub sha256: String,
    /// The database file's size in bytes.
    pub bytes: u64,
    /// The copy's schema version.
    pub schema_version: i64,
    /// When the backup was made, UTC microseconds since the Unix epoch.
    pub created_us: i64,
    /// The source database, as given to [`backup`].
    pub source: String,
    /// The rows in the copy's `audit` table.
    pub audit_rows: u64,
    /// The `hash` of the copy's newest audit row; `None` when it has none.
    pub audit_head: Option<String>,
}

/// The anchor that pruning audit rows leaves (a row of `audit_anchor`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct AuditAnchor {
    /// The `id` of the last pruned row; every remaining row comes after it.
    pub last_id: i64,
    /// Its `run_id`.
    pub run_id: i64,
    /// Its `sequence`.
    pub sequence: i64,
    /// Its `hash`: the `prev_hash` of the first remaining row.
    pub hash: String,
    /// The rows pruned by the pass that wrote this anchor.
    pub pruned_rows: u64,
    /// The rows pruned from this store so far.
    pub total_pruned: u64,
    /// When, UTC microseconds since the Unix epoch.
    pub pruned_us: i64,
}

/// Rows deleted, per table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PrunedRows {
    /// `events`.
    pub events: u64,
    /// `windows`.
    pub windows: u64,
    /// `window_errors` of the deleted windows.
    pub window_errors: u64,
    /// `counters`.
    pub counters: u64,
    /// `gauges`.
    pub gauges: u64,
    /// `drops`.
    pub drops: u64,
    /// `notices`.
    pub notices: u64,
    /// `health`.
    pub health: u64,
    /// `alerts` (resolved ones only).
    pub alerts: u64,
    /// `audit`.
    pub audit: u64,
}

impl PrunedRows {
    /// All rows deleted.
    #[must_use]
    pub fn total(&self) -> u64 {
        self.events
            + self.windows
            + self.window_errors
            + self.counters
            + self.gauges
            + self.drops
            + self.notices
            + self.health
            + self.alerts
            + self.audit
    }
}

/// What [`prune`] deleted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct PruneReport {
    /// Rows older than this (UTC microseconds) were deleted; `None` when the retention reaches
    /// before the epoch, so nothing was.
    pub cutoff_us: Option<i64>,
    /// The cutoff for audit rows; `None` when audit rows are kept.
    pub audit_cutoff_us: Option<i64>,
    /// Rows deleted, per table.
    pub rows: PrunedRows,
    /// Whether audit rows were deleted.
    pub audit_pruned: bool,
    /// The anchor this prune left, when it deleted audit rows.
    pub anchor: Option<AuditAnchor>,
}

/// When and where a [`SqliteSink`](super::SqliteSink) writes backups of its store.
///
/// ```
/// use std::time::Duration;
/// use instrument_sinks::sqlite::BackupSchedule;
///
/// let schedule = BackupSchedule::new("/var/backups/instrument")
///     .interval(Duration::from_secs(6 * 3600))
///     .keep(4);
/// assert_eq!(schedule.keep_count(), 4);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSchedule {
    dir: PathBuf,
    interval: Duration,
    keep: usize,
}

impl BackupSchedule {
    /// Backups into subdirectories of `dir` (created if missing), every 24 hours, keeping 7.
    #[must_use]
    pub fn new(dir: impl AsRef<Path>) -> Self {
        BackupSchedule {
            dir: dir.as_ref().to_owned(),
            interval: Duration::from_secs(24 * 3600),
            keep: 7,
        }
    }

    /// The time between two backups (default 24 hours). The first is due one interval after the
    /// newest backup already in the directory, or at the sink's first tick when there is none.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How many complete backups to keep (default 7, at least 1); older ones are removed after
    /// a new one verifies.
    #[must_use]
    pub fn keep(mut self, keep: usize) -> Self {
        self.keep = keep.max(1);
        self
    }

    /// The directory the backups are written under.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The time between two backups.
    #[must_use]
    pub fn interval_duration(&self) -> Duration {
        self.interval
    }

    /// How many backups are kept.
    #[must_use]
    pub fn keep_count(&self) -> usize {
        self.keep
    }
}

fn io_error(path: &Path, action: &'static str) -> impl FnOnce(io::Error) -> MaintenanceError {
    let path = path.to_owned();
    move |source| MaintenanceError::Io {
        path,
        action,
        source,
    }
}

fn sql_error(
    path: &Path,
    action: &'static str,
) -> impl FnOnce(rusqlite::Error) -> MaintenanceError {
    let path = path.to_owned();
    move |source| MaintenanceError::Sqlite {
        path,
        action,
        source,
    }
}

/// Opens an existing store read-write (never creating one) and returns it with its schema
/// version; with `migrate`, brings an older schema up to date.
pub(crate) fn open_store(db: &Path, migrate: bool) -> Result<(Connection, i64), MaintenanceError> {
    match fs::metadata(db) {
        Ok(meta) if meta.is_file() => {}
        Ok(_) => {
            return Err(MaintenanceError::NoStore {
                path: db.to_owned(),
            });
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(MaintenanceError::NoStore {
                path: db.to_owned(),
            });
        }
        Err(e) => return Err(io_error(db, "read")(e)),
    }
    let open = |source| SqliteError::Open {
        path: db.to_owned(),
        source,
    };
    let mut conn = Connection::open_with_flags(
        db,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(open)?;
    let version = schema::version(&conn, db)?;
    if version == 0 {
        return Err(MaintenanceError::NotAStore {
            path: db.to_owned(),
        });
    }
    if version > SCHEMA_VERSION {
        return Err(SqliteError::NewerSchema {
            path: db.to_owned(),
            found: version,
            supported: SCHEMA_VERSION,
        }
        .into());
    }
    if migrate && version < SCHEMA_VERSION {
        schema::migrate(&mut conn, db, version)?;
        return Ok((conn, SCHEMA_VERSION));
    }
    Ok((conn, version))
}

/// The size and SHA-256 of a file.
fn hash_file(path: &Path) -> Result<(u64, String), MaintenanceError> {
    let mut file = File::open(path).map_err(io_error(path, "read"))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(io_error(path, "read"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        bytes += n as u64;
    }
    Ok((bytes, hex(&hasher.finalize())))
}

/// Makes a rename or a new file in `dir` durable.
fn sync_dir(dir: &Path) -> Result<(), MaintenanceError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error(dir, "sync the directory"))
}

/// `path`'s directory, `.` for a bare file name.
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Copies the store `db` into the backup directory `dest`, online, and verifies the copy.
///
/// `dest` is created if missing and must be empty: a backup never overwrites anything. The copy
/// is made in steps of [`BACKUP_PAGES_PER_STEP`] pages inside one read transaction, so it is
/// the store as it was when the backup began while a sink goes on writing (in WAL mode, as the
/// sink's store is). `dest` then holds [`BACKUP_FILE`] and [`MANIFEST_FILE`]; the layout is in
/// the [module docs](super#retention).
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let db = dir.path().join("instrument.db");
/// use instrument_sinks::sqlite::{backup, verify_backup};
///
/// drop(instrument_sinks::SqliteSink::builder().path(&db).build()?);
/// let manifest = backup(&db, &dir.path().join("backup"))?;
/// assert_eq!(verify_backup(&dir.path().join("backup"))?, manifest);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`MaintenanceError`] naming the file: the store is missing, not a store or newer than this
/// release; `dest` is not empty or cannot be written; the copy fails to verify (its audit chain
/// included). What the backup wrote is removed again.
pub fn backup(db: &Path, dest: &Path) -> Result<BackupManifest, MaintenanceError> {
    backup_with(db, dest, None)
}

fn backup_with(
    db: &Path,
    dest: &Path,
    cancel: Option<&AtomicBool>,
) -> Result<BackupManifest, MaintenanceError> {
    let (src, _) = open_store(db, false)?;
    let created = prepare_dest(dest)?;
    let result = write_backup(&src, db, dest, cancel);
    drop(src);
    if result.is_err() {
        for name in [
            "instrument.db.partial",
            "instrument.db.partial-journal",
            BACKUP_FILE,
            "instrument.db-journal",
            MANIFEST_FILE,
            "manifest.json.tmp",
        ] {
            let _ = fs::remove_file(dest.join(name));
        }
        if created {
            let _ = fs::remove_dir(dest);
        }
    }
    result
}

/// Creates `dest` or checks that it is empty; whether it was created.
fn prepare_dest(dest: &Path) -> Result<bool, MaintenanceError> {
    match fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(MaintenanceError::DestinationNotEmpty {
                    path: dest.to_owned(),
                });
            }
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir_all(dest).map_err(io_error(dest, "create the backup directory"))?;
            Ok(true)
        }
        Err(e) => Err(io_error(dest, "read the backup directory")(e)),
    }
}

fn write_backup(
    src: &Connection,
    db: &Path,
    dest: &Path,
    cancel: Option<&AtomicBool>,
) -> Result<BackupManifest, MaintenanceError> {
    let partial = dest.join("instrument.db.partial");
    let created_us = super::micros(SystemTime::now());
    {
        let mut copy = Connection::open(&partial).map_err(sql_error(&partial, "create"))?;
        // One read transaction across every step: the copy is one snapshot, and the backup does
        // not restart when the sink commits meanwhile.
        src.execute_batch("BEGIN DEFERRED")
            .map_err(sql_error(db, "begin a read transaction on"))?;
        let copied = src
            .query_row("SELECT count(*) FROM sqlite_master", [], |_| Ok(()))
            .map_err(sql_error(db, "read"))
            .and_then(|()| copy_pages(src, db, &mut copy, dest, cancel));
        let ended = src
            .execute_batch("COMMIT")
            .map_err(sql_error(db, "end the read transaction on"));
        copied.and(ended)?;
        copy.close()
            .map_err(|(_, e)| sql_error(&partial, "close")(e))?;
    }
    // The copied header says WAL when the source is in WAL mode; a backup is one
    // self-contained file in rollback-journal mode.
    {
        let copy = Connection::open(&partial).map_err(sql_error(&partial, "open"))?;
        copy.query_row("PRAGMA journal_mode = DELETE", [], |r| {
            r.get::<_, String>(0)
        })
        .map_err(sql_error(&partial, "set the journal mode of"))?;
        copy.close()
            .map_err(|(_, e)| sql_error(&partial, "close")(e))?;
    }
    File::open(&partial)
        .and_then(|f| f.sync_all())
        .map_err(io_error(&partial, "sync"))?;
    let file = dest.join(BACKUP_FILE);
    fs::rename(&partial, &file).map_err(io_error(&file, "rename the backup into"))?;

    let (bytes, sha256) = hash_file(&file)?;
    let conn = open_read_only(&file)?;
    let schema_version = schema::version(&conn, &file)?;
    let chain = verify_chain(&conn, &file).map_err(|error| MaintenanceError::AuditChain {
        path: file.clone(),
        error,
    })?;
    drop(conn);
    let manifest = BackupManifest {
        manifest_version: MANIFEST_VERSION,
        file: BACKUP_FILE.to_owned(),
        sha256,
        bytes,
        schema_version,
        created_us,
        source: db.display().to_string(),
        audit_rows: chain.rows,
        audit_head: chain.head,
    };
    let manifest_path = dest.join(MANIFEST_FILE);
    let tmp = dest.join("manifest.json.tmp");
    let json = serde_json::to_vec_pretty(&manifest).map_err(|e| MaintenanceError::Manifest {
        path: manifest_path.clone(),
        reason: e.to_string(),
    })?;
    {
        let mut out = File::create_new(&tmp).map_err(io_error(&tmp, "create"))?;
        out.write_all(&json)
            .and_then(|()| out.write_all(b"\n"))
            .and_then(|()| out.sync_all())
            .map_err(io_error(&tmp, "write"))?;
    }
    fs::rename(&tmp, &manifest_path)
        .map_err(io_error(&manifest_path, "rename the manifest into"))?;
    sync_dir(dest)?;
    let verified = verify_backup(dest)?;
    debug_assert_eq!(verified, manifest);
    Ok(verified)
}

fn copy_pages(
    src: &Connection,
    db: &Path,
    copy: &mut Connection,
    dest: &Path,
    cancel: Option<&AtomicBool>,
) -> Result<(), MaintenanceError> {
    let backup = Backup::new(src, copy).map_err(sql_error(db, "start a backup of"))?;
    let mut busy = 0;
    loop {
        if cancel.is_some_and(|c| c.load(Ordering::Relaxed)) {
            return Err(MaintenanceError::Cancelled {
                path: dest.to_owned(),
            });
        }
        match backup
            .step(BACKUP_PAGES_PER_STEP)
            .map_err(sql_error(db, "copy the pages of"))?
        {
            StepResult::Done => return Ok(()),
            StepResult::More => {
                busy = 0;
                std::thread::sleep(BACKUP_PAUSE);
            }
            // `StepResult` is non-exhaustive; anything else is a lock to wait for.
            _ => {
                busy += 1;
                if busy >= BACKUP_BUSY_TRIES {
                    return Err(MaintenanceError::Sqlite {
                        path: db.to_owned(),
                        action: "copy the pages (the database stayed locked) of",
                        source: rusqlite::Error::SqliteFailure(
                            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                            None,
                        ),
                    });
                }
                std::thread::sleep(BACKUP_BUSY_PAUSE);
            }
        }
    }
}

fn open_read_only(path: &Path) -> Result<Connection, MaintenanceError> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| {
        SqliteError::Open {
            path: path.to_owned(),
            source,
        }
        .into()
    })
}

/// Checks the backup directory `dest`: its manifest parses, the database's size and SHA-256
/// match it, `PRAGMA integrity_check` is ok, the audit chain verifies, and the schema version,
/// audit rows and audit head are the manifest's. Reads only.
///
/// # Errors
/// [`MaintenanceError`] naming the file and what does not match: [`MaintenanceError::Manifest`],
/// [`MaintenanceError::Mismatch`] (with the field), [`MaintenanceError::Integrity`],
/// [`MaintenanceError::AuditChain`], or the I/O or `SQLite` error that stopped the check.
pub fn verify_backup(dest: &Path) -> Result<BackupManifest, MaintenanceError> {
    let manifest_path = dest.join(MANIFEST_FILE);
    let text = fs::read_to_string(&manifest_path)
        .map_err(io_error(&manifest_path, "read the backup manifest"))?;
    let invalid = |reason: String| MaintenanceError::Manifest {
        path: manifest_path.clone(),
        reason,
    };
    let manifest: BackupManifest =
        serde_json::from_str(&text).map_err(|e| invalid(e.to_string()))?;
    if manifest.manifest_version > MANIFEST_VERSION {
        return Err(invalid(format!(
            "its format version {} is newer than version {MANIFEST_VERSION} that this release \
             reads",
            manifest.manifest_version
        )));
    }
    let mut components = Path::new(&manifest.file).components();
    if !matches!(
        (components.next(), components.next()),
        (Some(Component::Normal(_)), None)
    ) {
        return Err(invalid(format!(
            "`file` is {:?}, not the name of a file inside the backup directory",
            manifest.file
        )));
    }
    let db = dest.join(&manifest.file);
    let mismatch = |field, expected: String, found: String| MaintenanceError::Mismatch {
        path: db.clone(),
        field,
        expected,
        found,
    };
    let (bytes, sha256) = hash_file(&db)?;
    if bytes != manifest.bytes {
        return Err(mismatch(
            "size",
            format!("{} bytes", manifest.bytes),
            format!("{bytes} bytes"),
        ));
    }
    if sha256 != manifest.sha256 {
        return Err(mismatch("sha256", manifest.sha256.clone(), sha256));
    }
    let conn = open_read_only(&db)?;
    integrity_check(&conn, &db)?;
    let version = schema::version(&conn, &db)?;
    if version > SCHEMA_VERSION {
        return Err(SqliteError::NewerSchema {
            path: db.clone(),
            found: version,
            supported: SCHEMA_VERSION,
        }
        .into());
    }
    if version != manifest.schema_version {
        return Err(mismatch(
            "schema_version",
            manifest.schema_version.to_string(),
            version.to_string(),
        ));
    }
    let ChainSummary { rows, head } =
        verify_chain(&conn, &db).map_err(|error| MaintenanceError::AuditChain {
            path: db.clone(),
            error,
        })?;
    if rows != manifest.audit_rows {
        return Err(mismatch(
            "audit_rows",
            manifest.audit_rows.to_string(),
            rows.to_string(),
        ));
    }
    if head != manifest.audit_head {
        let show = |h: &Option<String>| h.clone().unwrap_or_else(|| "none".to_owned());
        return Err(mismatch(
            "audit_head",
            show(&manifest.audit_head),
            show(&head),
        ));
    }
    Ok(manifest)
}

fn integrity_check(conn: &Connection, db: &Path) -> Result<(), MaintenanceError> {
    let check = sql_error(db, "run PRAGMA integrity_check on");
    let report = (|| {
        let mut statement = conn.prepare("PRAGMA integrity_check(20)")?;
        let rows = statement.query_map([], |r| r.get::<_, String>(0))?;
        rows.collect::<rusqlite::Result<Vec<String>>>()
    })()
    .map_err(check)?;
    if report == ["ok"] {
        return Ok(());
    }
    Err(MaintenanceError::Integrity {
        path: db.to_owned(),
        report: report.join("; "),
    })
}

/// Restores the backup directory `src` to the new file `target_db`, after verifying it.
///
/// Never overwrites: a `target_db` that exists is refused, and so is a journal or WAL file of an
/// earlier store next to it. The database is copied to a temporary file in the target's
/// directory (created if missing), checked against the manifest's SHA-256 again, synced and
/// then linked into place, which fails rather than replaces if the target appeared meanwhile.
///
/// # Errors
/// Whatever [`verify_backup`] reports for `src`; [`MaintenanceError::TargetExists`] or
/// [`MaintenanceError::Leftover`] for an occupied target; an I/O error naming the file.
pub fn restore(src: &Path, target_db: &Path) -> Result<BackupManifest, MaintenanceError> {
    let manifest = verify_backup(src)?;
    let occupied = |path: &Path| fs::symlink_metadata(path).is_ok();
    if occupied(target_db) {
        return Err(MaintenanceError::TargetExists {
            path: target_db.to_owned(),
        });
    }
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = target_db.as_os_str().to_owned();
        name.push(suffix);
        let companion = PathBuf::from(name);
        if occupied(&companion) {
            return Err(MaintenanceError::Leftover {
                path: companion,
                target: target_db.to_owned(),
            });
        }
    }
    let dir = parent_dir(target_db);
    fs::create_dir_all(dir).map_err(io_error(dir, "create the directory"))?;
    let name = target_db
        .file_name()
        .map_or_else(|| "instrument.db".into(), |n| n.to_string_lossy());
    let tmp = dir.join(format!(".{name}.restore-{}.tmp", std::process::id()));
    let result = copy_into_place(&src.join(&manifest.file), &tmp, target_db, &manifest);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)?;
    Ok(manifest)
}

fn copy_into_place(
    from: &Path,
    tmp: &Path,
    target: &Path,
    manifest: &BackupManifest,
) -> Result<(), MaintenanceError> {
    let mut input = File::open(from).map_err(io_error(from, "read"))?;
    let mut output = File::create_new(tmp).map_err(io_error(tmp, "create"))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = input.read(&mut buffer).map_err(io_error(from, "read"))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        output
            .write_all(&buffer[..n])
            .map_err(io_error(tmp, "write"))?;
    }
    output.sync_all().map_err(io_error(tmp, "sync"))?;
    drop(output);
    let sha256 = hex(&hasher.finalize());
    if sha256 != manifest.sha256 {
        return Err(MaintenanceError::Mismatch {
            path: from.to_owned(),
            field: "sha256 (it changed while being restored)",
            expected: manifest.sha256.clone(),
            found: sha256,
        });
    }
    // A hard link fails if the target exists, where a rename would replace it.
    match fs::hard_link(tmp, target) {
        Ok(()) => {
            fs::remove_file(tmp).map_err(io_error(tmp, "remove"))?;
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Err(MaintenanceError::TargetExists {
            path: target.to_owned(),
        }),
        // A file system without hard links: check, then rename.
        Err(_) => {
            if fs::symlink_metadata(target).is_ok() {
                return Err(MaintenanceError::TargetExists {
                    path: target.to_owned(),
                });
            }
            fs::rename(tmp, target).map_err(io_error(target, "rename the restored file into"))
        }
    }
}

/// Deletes the rows of the store `db` older than `older_than`, and its audit rows older than
/// `audit_older_than` when that is given (audit rows are kept otherwise); see the
/// [module docs](super#retention) for the tables, the steps and the anchor.
///
/// The store is brought up to the current schema first. A sink may write to it meanwhile: each
/// transaction deletes at most [`PRUNE_BATCH`] rows.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let db = dir.path().join("instrument.db");
/// use std::time::Duration;
///
/// drop(instrument_sinks::SqliteSink::builder().path(&db).build()?);
/// let report = instrument_sinks::sqlite::prune(&db, Duration::from_secs(7 * 86_400), None)?;
/// assert_eq!(report.rows.total(), 0);
/// assert!(!report.audit_pruned);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`MaintenanceError`] naming the file: it is missing, not a store or newer than this release;
/// a transaction failed (rows deleted by the transactions before it stay deleted, consistently);
/// an audit row about to be pruned does not verify ([`MaintenanceError::AuditChain`]; no audit
/// row is deleted then).
pub fn prune(
    db: &Path,
    older_than: Duration,
    audit_older_than: Option<Duration>,
) -> Result<PruneReport, MaintenanceError> {
    let (conn, _) = open_store(db, true)?;
    let mut pass = PrunePass::new(db, SystemTime::now(), older_than, audit_older_than);
    while !pass.step(&conn)? {
        std::thread::sleep(PRUNE_PAUSE);
    }
    Ok(pass.finish())
}

/// The time `age` before `now`, in UTC microseconds; `None` before the epoch.
fn cutoff(now: SystemTime, age: Duration) -> Option<i64> {
    now.checked_sub(age)
        .filter(|t| *t >= SystemTime::UNIX_EPOCH)
        .map(super::micros)
}

/// The tables [`PrunePass`] visits in order; the last stage is `audit`.
const PRUNE_TABLES: &[(&str, &str)] = &[
    (
        "events",
        "DELETE FROM events WHERE id IN
         (SELECT id FROM events WHERE start_us < ?1 ORDER BY start_us LIMIT ?2)",
    ),
    (
        "windows",
        "DELETE FROM windows WHERE id IN
         (SELECT id FROM windows WHERE window_start_us < ?1 ORDER BY window_start_us LIMIT ?2)",
    ),
    (
        "counters",
        "DELETE FROM counters WHERE id IN
         (SELECT id FROM counters WHERE window_start_us < ?1 ORDER BY window_start_us LIMIT ?2)",
    ),
    (
        "gauges",
        "DELETE FROM gauges WHERE id IN
         (SELECT id FROM gauges WHERE window_start_us < ?1 ORDER BY window_start_us LIMIT ?2)",
    ),
    (
        "drops",
        "DELETE FROM drops WHERE id IN
         (SELECT id FROM drops WHERE since_us < ?1 ORDER BY since_us LIMIT ?2)",
    ),
    (
        "notices",
        "DELETE FROM notices WHERE id IN
         (SELECT id FROM notices WHERE time_us < ?1 ORDER BY time_us LIMIT ?2)",
    ),
    (
        "health",
        "DELETE FROM health WHERE id IN
         (SELECT id FROM health WHERE time_us < ?1 ORDER BY time_us LIMIT ?2)",
    ),
    (
        "alerts",
        "DELETE FROM alerts WHERE id IN
         (SELECT id FROM alerts WHERE resolved_us IS NOT NULL AND resolved_us < ?1
          ORDER BY resolved_us LIMIT ?2)",
    ),
];

/// The `window_errors` of the windows the `windows` statement deletes next (the same rows: the
/// same query in the same transaction).
const PRUNE_WINDOW_ERRORS: &str = "DELETE FROM window_errors WHERE window_id IN
    (SELECT id FROM windows WHERE window_start_us < ?1 ORDER BY window_start_us LIMIT ?2)";

/// One pruning pass over a store, one small transaction per [`step`](PrunePass::step); the
/// sink's ticks and [`prune`] both drive it.
#[derive(Debug)]
pub(crate) struct PrunePass {
    path: PathBuf,
    cutoff_us: Option<i64>,
    audit_cutoff_us: Option<i64>,
    /// The index into [`PRUNE_TABLES`] of the next table; `PRUNE_TABLES.len()` for audit, one
    /// more when done.
    stage: usize,
    /// The `audit_anchor` row this pass writes, once it has pruned audit rows.
    anchor_row: Option<i64>,
    report: PruneReport,
}

impl PrunePass {
    pub(crate) fn new(
        path: &Path,
        now: SystemTime,
        older_than: Duration,
        audit_older_than: Option<Duration>,
    ) -> Self {
        let cutoff_us = cutoff(now, older_than);
        let audit_cutoff_us = audit_older_than.and_then(|age| cutoff(now, age));
        PrunePass {
            path: path.to_owned(),
            cutoff_us,
            audit_cutoff_us,
            stage: 0,
            anchor_row: None,
            report: PruneReport {
                cutoff_us,
                audit_cutoff_us,
                rows: PrunedRows::default(),
                audit_pruned: false,
                anchor: None,
            },
        }
    }

    /// Runs at most one transaction; `true` when the pass is done.
    pub(crate) fn step(&mut self, conn: &Connection) -> Result<bool, MaintenanceError> {
        let batch = i64::try_from(PRUNE_BATCH).unwrap_or(i64::MAX);
        while self.stage < PRUNE_TABLES.len() {
            let Some(cutoff) = self.cutoff_us else {
                self.stage = PRUNE_TABLES.len();
                break;
            };
            let (table, sql) = PRUNE_TABLES[self.stage];
            let path = &self.path;
            let run = || -> rusqlite::Result<(u64, u64)> {
                let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
                let errors = if table == "windows" {
                    tx.prepare_cached(PRUNE_WINDOW_ERRORS)?
                        .execute((cutoff, batch))?
                } else {
                    0
                };
                let deleted = tx.prepare_cached(sql)?.execute((cutoff, batch))?;
                tx.commit()?;
                Ok((deleted as u64, errors as u64))
            };
            let (deleted, errors) = run().map_err(sql_error(path, "prune old rows of"))?;
            let rows = &mut self.report.rows;
            let count = match table {
                "events" => &mut rows.events,
                "windows" => {
                    rows.window_errors += errors;
                    &mut rows.windows
                }
                "counters" => &mut rows.counters,
                "gauges" => &mut rows.gauges,
                "drops" => &mut rows.drops,
                "notices" => &mut rows.notices,
                "health" => &mut rows.health,
                _ => &mut rows.alerts,
            };
            *count += deleted;
            if deleted < PRUNE_BATCH as u64 {
                self.stage += 1;
            }
            if deleted > 0 || errors > 0 {
                return Ok(false);
            }
        }
        if self.stage == PRUNE_TABLES.len() {
            let Some(cutoff) = self.audit_cutoff_us else {
                self.stage += 1;
                return Ok(true);
            };
            if self.prune_audit(conn, cutoff)? {
                self.stage += 1;
                return Ok(true);
            }
            return Ok(false);
        }
        Ok(true)
    }

    /// Prunes at most [`PRUNE_BATCH`] of the oldest audit rows; `true` when no more are due.
    fn prune_audit(&mut self, conn: &Connection, cutoff: i64) -> Result<bool, MaintenanceError> {
        let path = self.path.clone();
        let sql = sql_error(&path, "prune old audit rows of");
        let tx = Transaction::new_unchecked(conn, TransactionBehavior::Immediate)
            .map_err(|e| sql_error(&path, "prune old audit rows of")(e))?;
        let read = |source| MaintenanceError::Sqlite {
            path: path.clone(),
            action: "read the audit rows of",
            source,
        };
        let anchor = latest_anchor(&tx).map_err(read)?;
        let newest: Option<i64> = tx
            .query_row("SELECT max(id) FROM audit", [], |r| r.get(0))
            .map_err(read)?;
        let Some(newest) = newest else {
            return Ok(true);
        };
        let mut check = ChainCheck::new(&path, anchor.as_ref());
        let mut last = None;
        let mut pruned = 0u64;
        let mut reached_cutoff = false;
        {
            let mut statement = tx
                .prepare(&format!(
                    "SELECT {AUDIT_COLUMNS} FROM audit WHERE id < ?1 ORDER BY id LIMIT ?2"
                ))
                .map_err(read)?;
            let mut rows = statement
                .query((newest, i64::try_from(PRUNE_BATCH).unwrap_or(i64::MAX)))
                .map_err(read)?;
            while let Some(row) = rows.next().map_err(read)? {
                let checked = check
                    .check(row)
                    .map_err(|error| MaintenanceError::AuditChain {
                        path: path.clone(),
                        error,
                    })?;
                if checked.timestamp_us >= cutoff {
                    reached_cutoff = true;
                    break;
                }
                last = Some(checked);
                pruned += 1;
            }
        }
        let Some(last) = last else {
            return Ok(true);
        };
        let now_us = super::micros(SystemTime::now());
        let total = u64::try_from(anchor.map_or(0, |a| a.total_pruned)).unwrap_or(0) + pruned;
        let write = || -> rusqlite::Result<(i64, u64)> {
            let deleted = tx.execute("DELETE FROM audit WHERE id <= ?1", [last.id])?;
            let values = (
                last.id,
                last.run_id,
                last.sequence,
                &last.hash,
                i64::try_from(pruned).unwrap_or(i64::MAX),
                i64::try_from(total).unwrap_or(i64::MAX),
                now_us,
            );
            let row = match self.anchor_row {
                None => tx.query_row(
                    "INSERT INTO audit_anchor
                     (last_id, run_id, sequence, hash, pruned_rows, total_pruned, pruned_us)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING id",
                    values,
                    |r| r.get(0),
                )?,
                Some(id) => {
                    tx.execute(
                        "UPDATE audit_anchor SET last_id = ?1, run_id = ?2, sequence = ?3,
                         hash = ?4, pruned_rows = pruned_rows + ?5, total_pruned = ?6,
                         pruned_us = ?7 WHERE id = ?8",
                        rusqlite::params![
                            values.0, values.1, values.2, values.3, values.4, values.5, values.6,
                            id
                        ],
                    )?;
                    id
                }
            };
            Ok((row, deleted as u64))
        };
        let (row, deleted) = write().map_err(sql)?;
        tx.commit()
            .map_err(sql_error(&path, "prune old audit rows of"))?;
        debug_assert_eq!(deleted, pruned);
        self.anchor_row = Some(row);
        self.report.rows.audit += pruned;
        self.report.audit_pruned = true;
        self.report.anchor = Some(AuditAnchor {
            last_id: last.id,
            run_id: last.run_id,
            sequence: last.sequence,
            hash: last.hash,
            pruned_rows: self.report.rows.audit,
            total_pruned: total,
            pruned_us: now_us,
        });
        Ok(reached_cutoff || pruned < PRUNE_BATCH as u64)
    }

    /// What the pass deleted.
    pub(crate) fn finish(self) -> PruneReport {
        self.report
    }
}

/// A subdirectory name for a backup made at `now`: `backup-YYYYMMDDTHHMMSS.ffffffZ` (UTC).
fn scheduled_name(now: SystemTime) -> String {
    let us = super::micros(now);
    let (secs, micros) = (us.div_euclid(1_000_000), us.rem_euclid(1_000_000));
    let (days, day_secs) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (year, month, day) = crate::calendar::civil_from_days(days);
    format!(
        "{SCHEDULED_PREFIX}{year:04}{month:02}{day:02}T{:02}{:02}{:02}.{micros:06}Z",
        day_secs / 3600,
        day_secs / 60 % 60,
        day_secs % 60
    )
}

/// The complete scheduled backups under `dir` (with a manifest), oldest first by name.
pub(crate) fn scheduled_backups(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(found),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let is_backup = name
            .to_str()
            .is_some_and(|n| n.starts_with(SCHEDULED_PREFIX) && n.ends_with('Z'));
        if is_backup && entry.path().join(MANIFEST_FILE).is_file() {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// Removes the oldest complete backups under `dir` beyond `keep`, never `newest`.
fn remove_old_backups(dir: &Path, keep: usize, newest: &Path) -> Result<(), MaintenanceError> {
    let backups = scheduled_backups(dir).map_err(io_error(dir, "list the backups in"))?;
    let others: Vec<&PathBuf> = backups.iter().filter(|b| b.as_path() != newest).collect();
    let excess = others.len().saturating_sub(keep.saturating_sub(1));
    for old in others.into_iter().take(excess) {
        fs::remove_dir_all(old).map_err(io_error(old, "remove the old backup"))?;
    }
    Ok(())
}

/// The sink's retention and backup settings.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) retention: Duration,
    pub(crate) audit_retention: Option<Duration>,
    pub(crate) prune_interval: Duration,
    pub(crate) backups: Option<BackupSchedule>,
}

/// A scheduled backup on its thread.
#[derive(Debug)]
struct Running {
    dest: PathBuf,
    cancel: Arc<AtomicBool>,
    handle: JoinHandle<Result<BackupManifest, MaintenanceError>>,
}

/// The sink's pruning passes and scheduled backups, driven by its ticks.
#[derive(Debug)]
pub(crate) struct Maintenance {
    settings: Settings,
    next_prune: Option<SystemTime>,
    pass: Option<PrunePass>,
    prune_problem: Option<String>,
    next_backup: Option<SystemTime>,
    running: Option<Running>,
    backup_problem: Option<String>,
}

impl Maintenance {
    pub(crate) fn new(settings: Settings) -> Self {
        Maintenance {
            settings,
            next_prune: None,
            pass: None,
            prune_problem: None,
            next_backup: None,
            running: None,
            backup_problem: None,
        }
    }

    /// Whether a scheduled backup is being written (its read transaction is open).
    pub(crate) fn backup_running(&self) -> bool {
        self.running
            .as_ref()
            .is_some_and(|running| !running.handle.is_finished())
    }

    /// What makes the sink degraded: the last pruning or backup failure, until one succeeds.
    pub(crate) fn problem(&self) -> Option<String> {
        match (&self.backup_problem, &self.prune_problem) {
            (Some(b), Some(p)) => Some(format!("{b}; {p}")),
            (Some(one), None) | (None, Some(one)) => Some(one.clone()),
            (None, None) => None,
        }
    }

    /// Starts or collects a scheduled backup, and runs a bounded part of a pruning pass, as
    /// they are due at `now`.
    pub(crate) fn tick(
        &mut self,
        conn: &Connection,
        path: &Path,
        now: SystemTime,
    ) -> Result<(), SinkError> {
        let backup = self.tick_backup(path, now);
        let prune = self.tick_prune(conn, path, now);
        backup.and(prune)
    }

    fn tick_backup(&mut self, path: &Path, now: SystemTime) -> Result<(), SinkError> {
        let Some(schedule) = self.settings.backups.clone() else {
            return Ok(());
        };
        if let Some(running) = self.running.take() {
            if !running.handle.is_finished() {
                self.running = Some(running);
                return Ok(());
            }
            let outcome = running.handle.join().unwrap_or_else(|panic| {
                Err(MaintenanceError::Io {
                    path: running.dest.clone(),
                    action: "write the backup (its thread panicked) into",
                    source: io::Error::other(panic_text(&*panic)),
                })
            });
            match outcome {
                Ok(_) => self.backup_problem = None,
                Err(error) => {
                    let message = format!("scheduled backup failed: {error}");
                    self.backup_problem = Some(message.clone());
                    return Err(SinkError::with_source(message, error));
                }
            }
        }
        let due = *self
            .next_backup
            .get_or_insert_with(|| first_backup_due(&schedule, now));
        if now < due {
            return Ok(());
        }
        self.next_backup = Some(now.checked_add(schedule.interval).unwrap_or(now));
        let dest = schedule.dir.join(scheduled_name(now));
        let cancel = Arc::new(AtomicBool::new(false));
        let spawned = {
            let (db, dest, cancel) = (path.to_owned(), dest.clone(), Arc::clone(&cancel));
            std::thread::Builder::new()
                .name("instrument-sqlite-backup".to_owned())
                .spawn(move || {
                    let manifest = backup_with(&db, &dest, Some(&cancel))?;
                    remove_old_backups(&schedule.dir, schedule.keep, &dest)?;
                    Ok(manifest)
                })
        };
        match spawned {
            Ok(handle) => {
                self.running = Some(Running {
                    dest,
                    cancel,
                    handle,
                });
                Ok(())
            }
            Err(source) => {
                let error = io_error(&dest, "start a thread to write the backup into")(source);
                let message = format!("scheduled backup failed: {error}");
                self.backup_problem = Some(message.clone());
                Err(SinkError::with_source(message, error))
            }
        }
    }

    fn tick_prune(
        &mut self,
        conn: &Connection,
        path: &Path,
        now: SystemTime,
    ) -> Result<(), SinkError> {
        if self.pass.is_none() {
            if self.next_prune.is_some_and(|at| now < at) {
                return Ok(());
            }
            self.next_prune = now.checked_add(self.settings.prune_interval);
            self.pass = Some(PrunePass::new(
                path,
                now,
                self.settings.retention,
                self.settings.audit_retention,
            ));
        }
        let Some(pass) = self.pass.as_mut() else {
            return Ok(());
        };
        for _ in 0..PRUNE_STEPS_PER_TICK {
            match pass.step(conn) {
                Ok(false) => {}
                Ok(true) => {
                    self.pass = None;
                    self.prune_problem = None;
                    break;
                }
                Err(error) => {
                    self.pass = None;
                    let message = format!("pruning old rows failed: {error}");
                    self.prune_problem = Some(message.clone());
                    return Err(SinkError::with_source(message, error));
                }
            }
        }
        Ok(())
    }
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        if let Some(running) = self.running.take() {
            running.cancel.store(true, Ordering::Relaxed);
            let _ = running.handle.join();
        }
    }
}

/// The message of a panic payload.
fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = panic.downcast_ref::<String>() {
        text.clone()
    } else {
        "a panic without a message".to_owned()
    }
}

/// One interval after the newest complete backup under the schedule's directory, or `now`.
fn first_backup_due(schedule: &BackupSchedule, now: SystemTime) -> SystemTime {
    let newest = scheduled_backups(&schedule.dir)
        .ok()
        .and_then(|backups| backups.last().cloned())
        .and_then(|dir| fs::read_to_string(dir.join(MANIFEST_FILE)).ok())
        .and_then(|text| serde_json::from_str::<BackupManifest>(&text).ok());
    match newest {
        Some(manifest) => {
            let created = u64::try_from(manifest.created_us).map_or(SystemTime::UNIX_EPOCH, |us| {
                SystemTime::UNIX_EPOCH + Duration::from_micros(us)
            });
            created.checked_add(schedule.interval).map_or(now, |due| {
                due.min(now.checked_add(schedule.interval).unwrap_or(now))
            })
        }
        None => now,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_names_are_utc_calendar_times_that_sort_by_time() {
        let at = |us: u64| SystemTime::UNIX_EPOCH + Duration::from_micros(us);
        assert_eq!(scheduled_name(at(0)), "backup-19700101T000000.000000Z");
        // 2000-02-29 23:59:59.5 UTC, a leap day of a year divisible by 400.
        assert_eq!(
            scheduled_name(at(951_868_799_500_000)),
            "backup-20000229T235959.500000Z"
        );
        assert_eq!(
            scheduled_name(at(1_709_251_200_000_001)),
            "backup-20240301T000000.000001Z"
        );
        let (a, b) = (
            scheduled_name(at(1_709_251_199_999_999)),
            scheduled_name(at(1_709_251_200_000_000)),
        );
        assert!(a < b, "{a} < {b}");
    }

    #[test]
    fn a_cutoff_before_the_epoch_prunes_nothing() {
        assert_eq!(cutoff(SystemTime::now(), Duration::MAX), None);
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(100);
        assert_eq!(cutoff(now, Duration::from_secs(40)), Some(60_000_000));
    }
}
