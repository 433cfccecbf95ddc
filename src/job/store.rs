//! The job's own tables in the SDK's `SQLite` file: `ast_runs`, `ast_files`, `ast_functions`.
//!
//! The job writes them through its own connection, in WAL mode, while the SDK's `SqliteSink`
//! writes its tables to the same file from its own thread. `SQLite` lets one writer in at a
//! time: each batch is one `BEGIN IMMEDIATE` transaction (so a wait for the write lock happens
//! at its start, never half way), taken under the file's [`WriteGate`], the lock the sink
//! holds around its own writes, so that the two wait for each other without `SQLite`'s busy
//! handler and its sleeps of up to 100 ms; against writers in other processes the connection
//! still waits up to its busy timeout for the lock, and
//! a batch that still finds the file busy (`SQLITE_BUSY`, `SQLITE_LOCKED`) is rolled back and
//! tried again, 5 ms apart doubling to 200 ms, for up to a minute before the job gives up
//! naming the file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use instrument_sinks::sqlite::WriteGate;
use rusqlite::{Connection, ErrorCode, TransactionBehavior, params};

use super::FileResult;

/// The tables, created if missing. Their columns are described in `docs/ast-pipeline.md`.
const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS ast_runs (
        id           INTEGER PRIMARY KEY,
        started_us   INTEGER NOT NULL,
        finished_us  INTEGER,
        roots        TEXT NOT NULL,
        threads      INTEGER NOT NULL,
        fail_rate    REAL NOT NULL,
        instrumented INTEGER NOT NULL,
        files        INTEGER,
        parsed       INTEGER,
        failed       INTEGER
    );
    CREATE TABLE IF NOT EXISTS ast_files (
        id               INTEGER PRIMARY KEY,
        run_id           INTEGER NOT NULL REFERENCES ast_runs(id),
        path             TEXT NOT NULL,
        sha256           TEXT,
        bytes            INTEGER,
        correlation      TEXT NOT NULL,
        status           TEXT NOT NULL,
        stage            TEXT,
        error_kind       TEXT,
        error            TEXT,
        items            INTEGER,
        functions        INTEGER,
        structs          INTEGER,
        enums            INTEGER,
        traits           INTEGER,
        impls            INTEGER,
        macro_calls      INTEGER,
        closures         INTEGER,
        unsafe_blocks    INTEGER,
        unsafe_functions INTEGER,
        unsafe_impls     INTEGER,
        max_complexity   INTEGER,
        max_nesting      INTEGER,
        todo             INTEGER,
        fixme            INTEGER,
        unsafe_markers   INTEGER,
        stored_us        INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS ast_files_by_path ON ast_files (path);
    CREATE INDEX IF NOT EXISTS ast_files_by_run ON ast_files (run_id, status);
    CREATE TABLE IF NOT EXISTS ast_functions (
        id            INTEGER PRIMARY KEY,
        file_id       INTEGER NOT NULL REFERENCES ast_files(id),
        name          TEXT NOT NULL,
        kind          TEXT NOT NULL,
        is_async      INTEGER NOT NULL,
        is_unsafe     INTEGER NOT NULL,
        has_body      INTEGER NOT NULL,
        params        INTEGER NOT NULL,
        statements    INTEGER NOT NULL,
        complexity    INTEGER NOT NULL,
        max_nesting   INTEGER NOT NULL,
        unsafe_blocks INTEGER NOT NULL
    );
    CREATE INDEX IF NOT EXISTS ast_functions_by_file ON ast_functions (file_id);
    CREATE INDEX IF NOT EXISTS ast_functions_by_complexity ON ast_functions (complexity);
";

/// How long a batch is retried while the file is busy.
const BUSY_PATIENCE: Duration = Duration::from_secs(60);

/// The job's tables could not be written. The variant names the error kind
/// (`#[derive(ErrorKind)]`) of a failed `ast_pipeline::store_batch` call.
#[derive(Debug, thiserror::Error, instrument::ErrorKind)]
pub enum StoreError {
    /// The directory of the file could not be created.
    #[error("cannot create the directory of {path}: {source}")]
    CreateDir {
        /// The database file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A `SQLite` operation failed (after retries, if the file was busy).
    #[error("cannot {what} in {path}: {source}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What was being done: `open the database`, `create the ast tables`, ...
        what: &'static str,
        /// Why.
        source: rusqlite::Error,
    },
}

/// A function among the most complex ones of a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ComplexFunction {
    /// The file it is in.
    pub path: String,
    /// Its name in the file (see [`FunctionMetrics::name`](crate::ast::FunctionMetrics::name)).
    pub name: String,
    /// Its cyclomatic complexity.
    pub complexity: u32,
    /// Its nesting depth.
    pub max_nesting: u32,
}

/// The job's connection to the database file.
pub(crate) struct AstStore {
    conn: Connection,
    path: PathBuf,
    /// Batches rolled back and tried again because the file was busy.
    pub(crate) busy_retries: u64,
    /// The file's in-process write lock, shared with the SDK's `SqliteSink`.
    gate: WriteGate,
}

/// Microseconds since the Unix epoch.
fn micros(time: SystemTime) -> i64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    text
}

/// `sha256:` and the lowercase hexadecimal digest, as audit entries name a content.
pub(crate) fn content_id(sha256: &[u8; 32]) -> String {
    format!("sha256:{}", hex(sha256))
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    )
}

impl AstStore {
    /// Opens (creating it and its directory if needed) the database at `path` in WAL mode and
    /// creates the tables it lacks. `busy_timeout` is how long one attempt waits for the write
    /// lock.
    pub(crate) fn open(path: &Path, busy_timeout: Duration) -> Result<AstStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::CreateDir {
                path: path.to_owned(),
                source,
            })?;
        }
        let error = |what| {
            move |source| StoreError::Sqlite {
                path: path.to_owned(),
                what,
                source,
            }
        };
        let conn = Connection::open(path).map_err(error("open the database"))?;
        conn.busy_timeout(busy_timeout)
            .map_err(error("set the busy timeout"))?;
        let mut store = AstStore {
            conn,
            path: path.to_owned(),
            busy_retries: 0,
            gate: WriteGate::for_path(path),
        };
        store.retrying("switch to WAL mode", |conn| {
            conn.pragma_update_and_check(None, "journal_mode", "wal", |row| row.get::<_, String>(0))
                .map(drop)
        })?;
        store.retrying("set synchronous=NORMAL", |conn| {
            conn.pragma_update(None, "synchronous", "NORMAL")
        })?;
        store.retrying("create the ast tables", |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            tx.execute_batch(SCHEMA)?;
            tx.commit()
        })?;
        Ok(store)
    }

    /// Runs `f`, again while it fails because the file is busy, for up to [`BUSY_PATIENCE`].
    fn retrying<T>(
        &mut self,
        what: &'static str,
        mut f: impl FnMut(&mut Connection) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        let deadline = Instant::now() + BUSY_PATIENCE;
        let mut pause = Duration::from_millis(5);
        loop {
            let attempt = {
                let _writing = self.gate.lock();
                f(&mut self.conn)
            };
            match attempt {
                Ok(value) => return Ok(value),
                Err(e) if is_busy(&e) && Instant::now() < deadline => {
                    self.busy_retries += 1;
                    instrument::counter!("ast_store_busy_retries_total");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(Duration::from_millis(200));
                }
                Err(source) => {
                    return Err(StoreError::Sqlite {
                        path: self.path.clone(),
                        what,
                        source,
                    });
                }
            }
        }
    }

    /// Records the start of a run and returns its id.
    pub(crate) fn begin_run(
        &mut self,
        roots: &[PathBuf],
        threads: usize,
        fail_rate: f64,
        instrumented: bool,
    ) -> Result<i64, StoreError> {
        let roots = serde_json::to_string(
            &roots
                .iter()
                .map(|r| r.to_string_lossy())
                .collect::<Vec<_>>(),
        )
        .expect("strings serialize");
        let started = micros(SystemTime::now());
        let threads = i64::try_from(threads).unwrap_or(i64::MAX);
        self.retrying("record the run", |conn| {
            conn.execute(
                "INSERT INTO ast_runs (started_us, roots, threads, fail_rate, instrumented)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![started, roots, threads, fail_rate, instrumented],
            )?;
            Ok(conn.last_insert_rowid())
        })
    }

    /// Records the end of run `run_id`.
    pub(crate) fn finish_run(
        &mut self,
        run_id: i64,
        files: u64,
        parsed: u64,
        failed: u64,
    ) -> Result<(), StoreError> {
        let finished = micros(SystemTime::now());
        let count = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        self.retrying("record the end of the run", |conn| {
            conn.execute(
                "UPDATE ast_runs SET finished_us = ?2, files = ?3, parsed = ?4, failed = ?5
                 WHERE id = ?1",
                params![run_id, finished, count(files), count(parsed), count(failed)],
            )
            .map(drop)
        })
    }

    /// Stores `batch` in one transaction (tried again while the file is busy) and returns the
    /// `ast_files` id of each file, in order.
    pub(crate) fn insert_batch(
        &mut self,
        run_id: i64,
        batch: &[FileResult],
    ) -> Result<Vec<i64>, StoreError> {
        self.retrying("store a batch of files", |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let ids = insert_files(&tx, run_id, batch)?;
            tx.commit()?;
            Ok(ids)
        })
    }

    /// The `n` most complex functions of run `run_id`, most complex first.
    pub(crate) fn most_complex(
        &mut self,
        run_id: i64,
        n: usize,
    ) -> Result<Vec<ComplexFunction>, StoreError> {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        self.retrying("read the most complex functions", |conn| {
            let mut statement = conn.prepare_cached(
                "SELECT f.path, fn.name, fn.complexity, fn.max_nesting
                 FROM ast_functions fn JOIN ast_files f ON f.id = fn.file_id
                 WHERE f.run_id = ?1
                 ORDER BY fn.complexity DESC, fn.max_nesting DESC, fn.id LIMIT ?2",
            )?;
            statement
                .query_map(params![run_id, n], |row| {
                    Ok(ComplexFunction {
                        path: row.get(0)?,
                        name: row.get(1)?,
                        complexity: row.get(2)?,
                        max_nesting: row.get(3)?,
                    })
                })?
                .collect()
        })
    }

    /// The `ast_files` row of `path` in run `run_id`, if any: its id and status.
    #[cfg(test)]
    pub(crate) fn file_row(
        &mut self,
        run_id: i64,
        path: &str,
    ) -> Result<Option<(i64, String)>, StoreError> {
        use rusqlite::OptionalExtension as _;
        self.retrying("read a file row", |conn| {
            conn.query_row(
                "SELECT id, status FROM ast_files WHERE run_id = ?1 AND path = ?2",
                params![run_id, path],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()
        })
    }
}

/// The count columns of `ast_files`, in order, for a parsed file; all null for a failed one.
fn counts(outcome: &Result<crate::ast::FileAnalysis, super::Failure>) -> [Option<i64>; 16] {
    let Ok(a) = outcome else {
        return [None; 16];
    };
    let n = |n: u64| Some(i64::try_from(n).unwrap_or(i64::MAX));
    let s = &a.stats;
    [
        n(s.items),
        n(s.functions),
        n(s.structs),
        n(s.enums),
        n(s.traits),
        n(s.impls),
        n(s.macro_calls),
        n(s.closures),
        n(s.unsafe_blocks),
        n(s.unsafe_functions),
        n(s.unsafe_impls),
        n(a.max_complexity.into()),
        n(a.max_nesting.into()),
        n(a.debt.todo.into()),
        n(a.debt.fixme.into()),
        n(a.debt.unsafe_code.into()),
    ]
}

fn insert_files(
    tx: &rusqlite::Transaction<'_>,
    run_id: i64,
    batch: &[FileResult],
) -> rusqlite::Result<Vec<i64>> {
    let stored = micros(SystemTime::now());
    let mut file_row = tx.prepare_cached(
        "INSERT INTO ast_files (run_id, path, sha256, bytes, correlation, status, stage,
             error_kind, error, items, functions, structs, enums, traits, impls, macro_calls,
             closures, unsafe_blocks, unsafe_functions, unsafe_impls, max_complexity,
             max_nesting, todo, fixme, unsafe_markers, stored_us)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17,
             ?18, ?19, ?20, ?21, ?22, ?23, ?24, ?25, ?26)",
    )?;
    let mut function_row = tx.prepare_cached(
        "INSERT INTO ast_functions (file_id, name, kind, is_async, is_unsafe, has_body, params,
             statements, complexity, max_nesting, unsafe_blocks)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )?;
    let mut ids = Vec::with_capacity(batch.len());
    for file in batch {
        let failure = file.outcome.as_ref().err();
        let c = counts(&file.outcome);
        file_row.execute(params![
            run_id,
            file.path,
            file.sha256.as_ref().map(|h| hex(h)),
            file.bytes.map(|n| i64::try_from(n).unwrap_or(i64::MAX)),
            file.correlation.to_string(),
            if failure.is_some() { "error" } else { "ok" },
            failure.map(|f| f.stage),
            failure.map(|f| f.kind),
            failure.map(|f| f.message.as_str()),
            c[0],
            c[1],
            c[2],
            c[3],
            c[4],
            c[5],
            c[6],
            c[7],
            c[8],
            c[9],
            c[10],
            c[11],
            c[12],
            c[13],
            c[14],
            c[15],
            stored,
        ])?;
        let id = tx.last_insert_rowid();
        for f in file.outcome.iter().flat_map(|a| &a.functions) {
            function_row.execute(params![
                id,
                f.name,
                f.kind.as_str(),
                f.is_async,
                f.is_unsafe,
                f.has_body,
                f.params,
                f.statements,
                f.complexity,
                f.max_nesting,
                f.unsafe_blocks,
            ])?;
        }
        ids.push(id);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use instrument::CorrelationId;

    use super::*;
    use crate::ast::FileAnalysis;
    use crate::job::Failure;

    fn result(path: &str, text: &str) -> FileResult {
        FileResult {
            path: path.to_owned(),
            sha256: Some([7; 32]),
            bytes: Some(text.len() as u64),
            correlation: CorrelationId::new(),
            outcome: Ok(FileAnalysis::of(&syn::parse_file(text).unwrap(), text)),
        }
    }

    #[test]
    fn a_batch_stores_files_with_their_functions_and_failures_with_their_kind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("instrument.db");
        let mut store = AstStore::open(&path, Duration::from_secs(5)).unwrap();
        let run = store
            .begin_run(&[dir.path().to_owned()], 2, 0.0, false)
            .unwrap();
        let failed = FileResult {
            path: "b.rs".to_owned(),
            sha256: Some([1; 32]),
            bytes: Some(3),
            correlation: CorrelationId::new(),
            outcome: Err(Failure {
                stage: "parse",
                kind: "Syntax",
                message: "expected item".to_owned(),
            }),
        };
        let batch = [result("a.rs", "fn f() { if true {} } fn g() {}"), failed];
        let ids = store.insert_batch(run, &batch).unwrap();
        assert_eq!(ids.len(), 2);
        assert_eq!(
            store.file_row(run, "a.rs").unwrap(),
            Some((ids[0], "ok".to_owned()))
        );
        assert_eq!(
            store.file_row(run, "b.rs").unwrap(),
            Some((ids[1], "error".to_owned()))
        );
        let conn = Connection::open(&path).unwrap();
        let (sha, kind, stage): (String, String, String) = conn
            .query_row(
                "SELECT sha256, error_kind, stage FROM ast_files WHERE id = ?1",
                [ids[1]],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!(
            (sha.as_str(), kind.as_str(), stage.as_str()),
            (&"01".repeat(32)[..], "Syntax", "parse")
        );
        let functions: Vec<(String, u32)> = conn
            .prepare("SELECT name, complexity FROM ast_functions WHERE file_id = ?1 ORDER BY id")
            .unwrap()
            .query_map([ids[0]], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(functions, [("f".to_owned(), 2), ("g".to_owned(), 1)]);
        let top = store.most_complex(run, 1).unwrap();
        assert_eq!(top[0].name, "f");
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn a_batch_waits_out_another_writer_holding_the_lock_past_the_busy_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("instrument.db");
        // A 20 ms busy timeout, so that a lock held for 300 ms makes attempts fail with
        // SQLITE_BUSY and the batch must be rolled back and tried again.
        let mut store = AstStore::open(&path, Duration::from_millis(20)).unwrap();
        let run = store.begin_run(&[], 1, 0.0, false).unwrap();
        let (locked_tx, locked_rx) = mpsc::channel();
        let holder = {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut other = Connection::open(&path).unwrap();
                let tx = other
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .unwrap();
                tx.execute("INSERT INTO ast_runs (started_us, roots, threads, fail_rate, instrumented) VALUES (1, '[]', 1, 0, 0)", [])
                    .unwrap();
                locked_tx.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(300));
                tx.commit().unwrap();
            })
        };
        locked_rx.recv().unwrap();
        let ids = store
            .insert_batch(run, &[result("a.rs", "fn f() {}")])
            .unwrap();
        holder.join().unwrap();
        assert!(
            store.busy_retries > 0,
            "the lock was held past the busy timeout"
        );
        assert_eq!(
            store.file_row(run, "a.rs").unwrap(),
            Some((ids[0], "ok".to_owned()))
        );
        let runs: i64 = Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM ast_runs", [], |r| r.get(0))
            .unwrap();
        assert_eq!(runs, 2, "both writers' rows are there");
    }
}
