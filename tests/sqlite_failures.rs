//! The `SQLite` store under failure: a bounded write-ahead log while readers hold snapshots,
//! audit entries that survive a `SIGKILL` once a flush returned, a full disk, a read-only file
//! system, a data directory or file deleted while open, and readers reading while it writes.
//!
//! Real files in temporary directories, a real child process, and (as root, where `mount` is
//! allowed) real tmpfs mounts; a test that needs a mount says so on stderr and returns where
//! mounting is impossible, and the size-limit test covers a genuine `SQLITE_FULL` everywhere.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use instrument::{
    AuditEntry, Batch, Level, Notice, PipelineGuard, Sink, SinkHealth, SinkStatus,
    instrument_performance,
};
use instrument_sinks::{SqliteError, SqliteSink, SqliteSinkBuilder, verify_audit_chain};
use rusqlite::Connection;

mod support;
use support::{serial, status, within};

const GUARD: Duration = Duration::from_secs(120);

#[instrument_performance(capture(text, attempt))]
fn parse(text: &str, attempt: u32) -> Result<u32, std::num::ParseIntError> {
    let _ = attempt;
    text.parse()
}

fn install(builder: SqliteSinkBuilder) -> PipelineGuard {
    instrument::builder()
        .sink(builder.build().expect("opens"))
        .install()
        .expect("no other pipeline is installed")
}

fn open(path: &Path) -> Connection {
    Connection::open(path).expect("opens the store")
}

fn count(db: &Connection, sql: &str) -> i64 {
    db.query_row(sql, [], |r| r.get(0)).expect(sql)
}

/// The audit entries with `operation`, by input, in chain order.
fn audit_inputs(path: &Path, operation: &str) -> Vec<String> {
    open(path)
        .prepare("SELECT inputs FROM audit WHERE operation = ?1 ORDER BY id")
        .unwrap()
        .query_map([operation], |r| r.get::<_, String>(0))
        .unwrap()
        .map(|inputs| {
            let inputs: Vec<String> = serde_json::from_str(&inputs.unwrap()).unwrap();
            inputs.into_iter().next().unwrap_or_default()
        })
        .collect()
}

fn record_audit(operation: &str, inputs: std::ops::Range<u32>) -> Vec<String> {
    inputs
        .map(|i| {
            let input = format!("{operation}-{i}");
            instrument::audit(AuditEntry::new(operation.to_owned()).input(input.clone()))
                .expect("audit is accepted");
            input
        })
        .collect()
}

fn sqlite_status(pipeline: &PipelineGuard) -> SinkStatus {
    status(pipeline, "sqlite")
}

fn unhealthy_reason(status: &SinkStatus) -> Option<&str> {
    match &status.health {
        SinkHealth::Unhealthy(reason) => Some(reason),
        _ => None,
    }
}

/// Flushes until the sink's health satisfies `done` (each flush's outcome ignored), at most
/// `rounds` times; records `calls` failing calls before each flush.
fn flush_until(
    pipeline: &PipelineGuard,
    rounds: u32,
    calls: u32,
    text: &str,
    done: impl Fn(&SinkStatus) -> bool,
) -> SinkStatus {
    for round in 0..rounds {
        for i in 0..calls {
            assert!(parse(text, round * calls + i).is_err());
        }
        let _ = pipeline.flush();
        let status = sqlite_status(pipeline);
        if done(&status) {
            return status;
        }
    }
    panic!(
        "the sink never reached the expected state: {:?}",
        sqlite_status(pipeline)
    )
}

fn wal_len(path: &Path) -> u64 {
    std::fs::metadata(companion(path, "-wal")).map_or(0, |m| m.len())
}

/// Frames of 4 KiB pages the sink lets the write-ahead log reach before it waits for readers
/// to leave it (module docs, "Writing"), each a page plus a 24-byte header, plus the log's
/// 32-byte header and one batch of this test (at most 64 frames).
const WAL_BOUND: u64 = (4000 + 64) * (4096 + 24) + 32;

/// A reader that holds read transactions open for `hold` at a time, back to back, and checks
/// that each sees one snapshot; returns the counts it saw.
fn holding_reader(
    path: PathBuf,
    stop: Arc<AtomicBool>,
    delay: Duration,
    hold: Duration,
) -> std::thread::JoinHandle<Vec<i64>> {
    std::thread::spawn(move || {
        std::thread::sleep(delay);
        let mut db = open(&path);
        let mut seen = Vec::new();
        while !stop.load(Ordering::Relaxed) {
            let tx = db.transaction().unwrap();
            let first = count(&tx, "SELECT count(*) FROM notices");
            std::thread::sleep(hold);
            assert_eq!(
                count(&tx, "SELECT count(*) FROM notices"),
                first,
                "one snapshot"
            );
            tx.commit().unwrap();
            seen.push(first);
        }
        seen
    })
}

#[test]
fn the_write_ahead_log_stays_bounded_while_readers_hold_snapshots() {
    const BATCHES: usize = 4000;
    const NOTICES: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instrument.db");
    let mut sink = SqliteSink::builder().path(&path).build().unwrap();
    // Two readers, each holding a snapshot for 300 ms at a time and starting the next at once,
    // 150 ms apart: at every moment one of them holds a snapshot, which keeps a passive
    // checkpoint (`SQLite`'s own automatic one) from ever starting the log again.
    let stop = Arc::new(AtomicBool::new(false));
    let hold = Duration::from_millis(300);
    let readers: Vec<_> = [Duration::ZERO, hold / 2]
        .into_iter()
        .map(|delay| holding_reader(path.clone(), Arc::clone(&stop), delay, hold))
        .collect();
    std::thread::sleep(hold);

    let text = "x".repeat(480);
    let mut peak = 0;
    let mut last_tick = Instant::now();
    for i in 0..BATCHES {
        let mut batch = Batch::default();
        batch.notices = (0..NOTICES)
            .map(|n| Notice::new("wal-test", Level::Info, format!("{i}-{n} {text}")))
            .collect();
        sink.write(&batch)
            .expect("the sink writes while readers read");
        peak = peak.max(wal_len(&path));
        // As the pipeline does, about once a second.
        if last_tick.elapsed() >= Duration::from_secs(1) {
            sink.tick(SystemTime::now()).expect("tick");
            peak = peak.max(wal_len(&path));
            last_tick = Instant::now();
        }
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        let seen = reader.join().expect("the reader never failed");
        assert!(!seen.is_empty());
        assert!(seen.windows(2).all(|w| w[0] <= w[1]), "counts only grow");
    }
    eprintln!("peak -wal size {peak} bytes, bound {WAL_BOUND}");
    assert!(
        peak <= WAL_BOUND,
        "the -wal file reached {peak} bytes, over {WAL_BOUND}"
    );
    assert_eq!(sink.health(), SinkHealth::Healthy);
    let db = open(&path);
    assert_eq!(
        count(&db, "SELECT count(*) FROM notices"),
        i64::try_from(BATCHES * NOTICES).unwrap()
    );
    drop(db);

    // With no reader left, a tick with no write since the one before checkpoints everything
    // and truncates the file; a tick right after a write leaves that to the writes' own
    // checkpoints, since that checkpoint keeps every writer out.
    let mut last = Batch::default();
    last.notices = vec![Notice::new("wal-test", Level::Info, "last")];
    sink.write(&last).unwrap();
    let before = wal_len(&path);
    assert!(before > 0);
    sink.tick(SystemTime::now()).unwrap();
    assert_eq!(
        wal_len(&path),
        before,
        "not truncated at a tick that follows a write"
    );
    sink.tick(SystemTime::now()).unwrap();
    assert_eq!(wal_len(&path), 0, "truncated when no reader is in the way");
}

/// Selects the child role of `audit_entries_a_returned_flush_covers_survive_a_sigkill`: the
/// database file to write.
const CHILD_ENV: &str = "INSTRUMENT_SQLITE_FAILURES_CHILD_DB";
const CHILD_TEST: &str = "audit_entries_a_returned_flush_covers_survive_a_sigkill";
const CHILD_BEFORE: u32 = 50;

/// The child: records, flushes, says so, and records and flushes on until it is killed.
fn sigkill_child(path: &Path) -> ! {
    let pipeline = install(SqliteSink::builder().path(path));
    record_audit("before", 0..CHILD_BEFORE);
    for i in 0..CHILD_BEFORE {
        assert!(parse("before", i).is_err());
    }
    pipeline.flush().expect("the child's flush");
    let mut out = std::io::stdout();
    writeln!(out, "\n@flushed {CHILD_BEFORE}").unwrap();
    out.flush().unwrap();
    let started = Instant::now();
    let mut i = 0;
    // Killed long before; ends by itself should the parent have died.
    while started.elapsed() < Duration::from_secs(60) {
        record_audit("after", i..i + 1);
        assert!(parse("after", i).is_err());
        if i % 10 == 9 {
            pipeline.flush().expect("the child's flush");
            writeln!(out, "\n@recorded {i}").unwrap();
            out.flush().unwrap();
        }
        i += 1;
    }
    std::process::exit(3)
}

#[test]
fn audit_entries_a_returned_flush_covers_survive_a_sigkill() {
    if let Some(path) = std::env::var_os(CHILD_ENV) {
        sigkill_child(Path::new(&path));
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data").join("instrument.db");
    // The same test binary, running only this test (libtest's harness, under cargo test and
    // under nextest alike), in the child role.
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([CHILD_TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &path)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the test binary runs again");
    let stdout = child.stdout.take().unwrap();
    let (flushed, recorded, lines) = within("the child's output", GUARD, move || {
        let mut lines = BufReader::new(stdout).lines();
        let mut marks = Vec::new();
        // `@flushed N`, then three `@recorded I`: the child is writing on when it is killed.
        while marks.len() < 4 {
            let line = lines
                .next()
                .expect("the child ended before it was killed")
                .unwrap();
            if let Some(mark) = line.trim().strip_prefix('@') {
                marks.push(mark.to_owned());
            }
        }
        let flushed: u32 = marks[0].strip_prefix("flushed ").unwrap().parse().unwrap();
        let recorded: u32 = marks[3].strip_prefix("recorded ").unwrap().parse().unwrap();
        (flushed, recorded, lines)
    });
    child.kill().expect("SIGKILL");
    let exit = child.wait().unwrap();
    drop(lines);
    #[cfg(unix)]
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&exit),
        Some(9),
        "{exit:?}"
    );
    assert_eq!(flushed, CHILD_BEFORE);

    let before = audit_inputs(&path, "before");
    let after = audit_inputs(&path, "after");
    eprintln!(
        "killed the child after its flush of {flushed} entries and {recorded} more; the store \
         holds {} and {}",
        before.len(),
        after.len()
    );
    let expected: Vec<String> = (0..CHILD_BEFORE).map(|i| format!("before-{i}")).collect();
    assert_eq!(
        before, expected,
        "every audit entry the first flush covered"
    );
    // Every entry recorded before the last flush the parent heard of, and maybe some more.
    assert!(after.len() > recorded as usize, "{} entries", after.len());
    for (i, input) in after.iter().enumerate() {
        assert_eq!(input, &format!("after-{i}"));
    }
    let db = open(&path);
    let events = count(
        &db,
        "SELECT count(*) FROM events WHERE json_extract(fields, '$.text') = 'before'",
    );
    assert_eq!(events, i64::from(CHILD_BEFORE), "every flushed event");
    verify_audit_chain(&path).expect("the chain verifies after the kill");
}

/// The size-limit variant of the full-disk test: runs everywhere, with a genuine `SQLITE_FULL`.
#[test]
fn a_store_at_its_size_limit_is_unhealthy_and_loses_no_audit_entry() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instrument.db");
    let pipeline = instrument::builder()
        .max_retries(2)
        .sink(
            SqliteSink::builder()
                .path(&path)
                .max_size(256 * 1024)
                .build()
                .unwrap(),
        )
        .install()
        .unwrap();
    full_then_freed(&pipeline, &path, true, || {
        // Deleting rows frees pages, which the sink reuses below the limit.
        open(&path).execute("DELETE FROM events", []).unwrap();
    });
}

/// Fills the store until the sink fails, records audit entries and events during the outage,
/// calls `free`, and checks that the audit entries all landed and the events were counted lost.
/// `stable`: nothing but `free` makes room (on a full file system, a checkpoint that truncates
/// the `-wal` file may).
fn full_then_freed(pipeline: &PipelineGuard, path: &Path, stable: bool, free: impl FnOnce()) {
    let text = "9".repeat(40) + &"x".repeat(1000);
    let full = flush_until(pipeline, 2000, 20, &text, |s| {
        unhealthy_reason(s).is_some() && s.lost.events > 0
    });
    let reason = unhealthy_reason(&full).unwrap();
    assert!(reason.contains(&path.display().to_string()), "{reason}");
    assert!(reason.contains("full"), "{reason}");
    assert!(!reason.contains('\n'), "one line: {reason}");
    assert!(full.dropped_batches > 0);
    eprintln!("unhealthy: {reason}; lost so far: {}", full.lost);

    let during = record_audit("during", 0..20);
    for i in 0..20 {
        assert!(parse(&text, i).is_err());
    }
    let flushed = pipeline.flush();
    if stable {
        assert!(flushed.is_err(), "the store is still full");
        assert!(unhealthy_reason(&sqlite_status(pipeline)).is_some());
    }

    free();
    // The first flush may still report window snapshots lost before the space was freed.
    assert!(
        (0..5).any(|_| pipeline.flush().is_ok()),
        "{:?}",
        pipeline.flush()
    );
    assert_eq!(audit_inputs(path, "during"), during, "no audit entry lost");
    verify_audit_chain(path).expect("the chain verifies");
    let recovered = sqlite_status(pipeline);
    assert_eq!(recovered.health, SinkHealth::Healthy);
    assert!(recovered.lost.events >= full.lost.events);
    assert_eq!(recovered.lost.audit_entries, 0, "{:?}", recovered.lost);
}

/// A tmpfs mounted on a new directory, unmounted (lazily, so that files still open do not stop
/// it) when dropped.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    /// Mounts one with `options` at `dir` (created); `Err` with the reason where that is not
    /// allowed (not root, no `mount`, a container without the capability).
    fn mount(dir: &Path, options: &str) -> Result<Tmpfs, String> {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        mount(&["-t", "tmpfs", "-o", options, "tmpfs"], dir)?;
        Ok(Tmpfs {
            dir: dir.to_owned(),
        })
    }

    fn remount(&self, options: &str) {
        mount(&["-o", &format!("remount,{options}")], &self.dir)
            .unwrap_or_else(|e| panic!("remount {options}: {e}"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}

fn mount(args: &[&str], dir: &Path) -> Result<(), String> {
    let output = Command::new("mount")
        .args(args)
        .arg(dir)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "mount {} {} failed: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}

/// A tmpfs, or `None` after saying on stderr why the test that wanted it does not run.
fn tmpfs_or_skip(test: &str, dir: &Path, options: &str) -> Option<Tmpfs> {
    match Tmpfs::mount(dir, options) {
        Ok(tmpfs) => Some(tmpfs),
        Err(reason) => {
            eprintln!("{test}: skipped, it needs a tmpfs mount: {reason}");
            None
        }
    }
}

#[test]
fn a_full_disk_makes_the_sink_unhealthy_and_loses_no_audit_entry() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let Some(tmpfs) = tmpfs_or_skip(
        "a_full_disk_makes_the_sink_unhealthy_and_loses_no_audit_entry",
        &dir.path().join("mnt"),
        "size=512k",
    ) else {
        return;
    };
    let path = tmpfs.dir.join("data").join("instrument.db");
    let pipeline = instrument::builder()
        .max_retries(2)
        .sink(SqliteSink::builder().path(&path).build().unwrap())
        .install()
        .unwrap();
    full_then_freed(&pipeline, &path, false, || tmpfs.remount("size=64m"));
    drop(pipeline);
}

#[test]
fn a_read_only_store_is_refused_at_build_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let Some(tmpfs) = tmpfs_or_skip(
        "a_read_only_store_is_refused_at_build_and_left_unchanged",
        &dir.path().join("mnt"),
        "size=4m",
    ) else {
        return;
    };
    let path = tmpfs.dir.join("instrument.db");
    let mut sink = SqliteSink::builder().path(&path).build().unwrap();
    sink.write(&audit_batch("load", 1..=3)).unwrap();
    drop(sink);
    let bytes = std::fs::read(&path).unwrap();
    tmpfs.remount("ro");
    let error = SqliteSink::builder().path(&path).build().unwrap_err();
    assert!(matches!(error, SqliteError::ReadOnly { .. }), "{error:?}");
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("read-only"), "{message}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the file is untouched"
    );
    tmpfs.remount("rw");
    assert_eq!(audit_inputs(&path, "load").len(), 3);
}

#[cfg(unix)]
fn file_id(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let metadata = std::fs::metadata(path).unwrap();
    (metadata.dev(), metadata.ino())
}

/// An audit batch of entries numbered `sequences`, as the pipeline hands them to a sink.
fn audit_batch(operation: &str, sequences: std::ops::RangeInclusive<u64>) -> Batch {
    let mut batch = Batch::default();
    batch.audit = sequences
        .map(|sequence| {
            let mut entry =
                AuditEntry::new(operation.to_owned()).input(format!("{operation}-{sequence}"));
            entry.sequence = sequence;
            entry
        })
        .collect();
    batch
}

/// The store's path becomes read-only while the sink runs: its file system (a tmpfs on a
/// directory of another, `outer`) is detached, and the path leads to a file on `outer`, which
/// is mounted read-only. The sink must fail naming the file, keep the audit entries, and write
/// them there once `outer` is writable again.
#[test]
fn a_store_whose_path_becomes_read_only_recovers_when_it_is_writable_again() {
    let _serial = serial();
    let test = "a_store_whose_path_becomes_read_only_recovers_when_it_is_writable_again";
    let dir = tempfile::tempdir().unwrap();
    let Some(outer) = tmpfs_or_skip(test, &dir.path().join("outer"), "size=8m") else {
        return;
    };
    let path = outer.dir.join("m").join("data").join("instrument.db");
    // The file the path will lead to: a store of its own on `outer`.
    drop(SqliteSink::builder().path(&path).build().unwrap());
    let outer_file = file_id(&path);
    let Some(inner) = tmpfs_or_skip(test, &outer.dir.join("m"), "size=8m") else {
        return;
    };
    let pipeline = install(SqliteSink::builder().path(&path));
    let first = record_audit("first", 0..5);
    pipeline.flush().unwrap();
    assert_eq!(audit_inputs(&path, "first"), first);

    outer.remount("ro");
    let status = Command::new("umount").arg("-l").arg(&inner.dir).status();
    assert!(status.is_ok_and(|s| s.success()), "detach the inner tmpfs");
    std::mem::forget(inner);
    assert_eq!(
        file_id(&path),
        outer_file,
        "the path leads to the outer file"
    );

    let during = record_audit("during", 0..5);
    assert!(pipeline.flush().is_err(), "nothing can be written");
    let status = sqlite_status(&pipeline);
    let reason = unhealthy_reason(&status).expect("unhealthy");
    assert!(reason.contains(&path.display().to_string()), "{reason}");
    assert!(reason.contains("read-only"), "{reason}");

    outer.remount("rw");
    assert!(
        (0..5).any(|_| pipeline.flush().is_ok()),
        "{:?}",
        pipeline.flush()
    );
    assert_eq!(audit_inputs(&path, "during"), during, "no audit entry lost");
    verify_audit_chain(&path).expect("the chain verifies");
    assert_eq!(sqlite_status(&pipeline).health, SinkHealth::Healthy);
    drop(pipeline);
}

/// Copies what the open `files` (a database and its `-wal`, through handles opened before they
/// were deleted) hold into `dir`, and opens the copy.
fn copy_of_unlinked(dir: &Path, files: [&mut std::fs::File; 2]) -> Connection {
    let path = dir.join("unlinked.db");
    for (file, suffix) in files.into_iter().zip(["", "-wal"]) {
        use std::io::{Seek, SeekFrom};
        let mut copy = std::fs::File::create(format!("{}{suffix}", path.display())).unwrap();
        file.seek(SeekFrom::Start(0)).unwrap();
        std::io::copy(file, &mut copy).unwrap();
    }
    open(&path)
}

fn companion(path: &Path, suffix: &str) -> PathBuf {
    PathBuf::from(format!("{}{suffix}", path.display()))
}

#[test]
fn a_deleted_data_directory_is_created_again_and_nothing_goes_to_the_unlinked_file() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let path = data.join("instrument.db");
    let pipeline = install(SqliteSink::builder().path(&path));
    let before = record_audit("before", 0..5);
    for i in 0..5 {
        assert!(parse("before", i).is_err());
    }
    pipeline.flush().unwrap();
    let mut old_db = std::fs::File::open(&path).unwrap();
    let mut old_wal = std::fs::File::open(companion(&path, "-wal")).unwrap();

    std::fs::remove_dir_all(&data).unwrap();
    let after = record_audit("after", 0..5);
    for i in 0..5 {
        assert!(parse("after", i).is_err());
    }
    // The notice the sink publishes reaches the store with the next flush.
    pipeline.flush().expect("written to a new file");
    pipeline.flush().unwrap();
    assert_eq!(sqlite_status(&pipeline).health, SinkHealth::Healthy);
    assert_eq!(audit_inputs(&path, "after"), after);
    assert!(audit_inputs(&path, "before").is_empty());
    verify_audit_chain(&path).expect("the new file's chain verifies");
    let db = open(&path);
    let events = count(
        &db,
        "SELECT count(*) FROM events WHERE json_extract(fields, '$.text') = 'after'",
    );
    assert_eq!(events, 5);
    let notice: String = db
        .query_row(
            "SELECT message FROM notices WHERE source = 'sqlite' AND level = 'warn'",
            [],
            |r| r.get(0),
        )
        .expect("a notice says the file was deleted");
    assert!(notice.contains(&path.display().to_string()), "{notice}");
    assert!(notice.contains("deleted"), "{notice}");

    // The unlinked file holds what was written before, and nothing after.
    let copies = tempfile::tempdir().unwrap();
    let old = copy_of_unlinked(copies.path(), [&mut old_db, &mut old_wal]);
    let old_audit = count(
        &old,
        "SELECT count(*) FROM audit WHERE operation = 'before'",
    );
    assert_eq!(usize::try_from(old_audit).unwrap(), before.len());
    assert_eq!(
        count(&old, "SELECT count(*) FROM audit WHERE operation = 'after'"),
        0
    );
    assert_eq!(
        count(
            &old,
            "SELECT count(*) FROM events WHERE json_extract(fields, '$.text') = 'after'"
        ),
        0
    );
    drop(pipeline);
}

#[test]
fn a_deleted_or_replaced_database_file_is_handled_without_its_old_log() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instrument.db");
    let pipeline = install(SqliteSink::builder().path(&path));
    record_audit("before", 0..5);
    pipeline.flush().unwrap();

    // Only the database file: its `-wal` and `-shm` stay, and belong to the deleted file; a
    // new file must not take them for its own.
    assert!(companion(&path, "-wal").exists());
    std::fs::remove_file(&path).unwrap();
    let after = record_audit("after", 0..5);
    pipeline.flush().expect("written to a new file");
    let db = open(&path);
    let integrity: String = db
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(integrity, "ok");
    assert_eq!(audit_inputs(&path, "after"), after);
    assert!(audit_inputs(&path, "before").is_empty());
    verify_audit_chain(&path).unwrap();
    drop(db);

    // Replaced by a file that is not a database: it is refused, and left as it is.
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
    let staged = dir.path().join("staged");
    std::fs::write(&staged, &garbage).unwrap();
    std::fs::rename(&staged, &path).unwrap();
    let during = record_audit("during", 0..5);
    assert!(pipeline.flush().is_err());
    let status = sqlite_status(&pipeline);
    let reason = unhealthy_reason(&status).expect("unhealthy");
    assert!(reason.contains(&path.display().to_string()), "{reason}");
    assert!(reason.contains("not a SQLite database"), "{reason}");
    assert_eq!(std::fs::read(&path).unwrap(), garbage, "left unchanged");

    // Once it is gone, the sink starts a new file with the entries it kept.
    std::fs::remove_file(&path).unwrap();
    assert!(
        (0..5).any(|_| pipeline.flush().is_ok()),
        "{:?}",
        pipeline.flush()
    );
    assert_eq!(audit_inputs(&path, "during"), during);
    verify_audit_chain(&path).unwrap();
    assert_eq!(sqlite_status(&pipeline).health, SinkHealth::Healthy);
    drop(pipeline);
}

#[test]
fn readers_on_several_threads_see_consistent_counts_and_cause_no_sink_error() {
    const ROUNDS: u32 = 30;
    const CALLS: u32 = 40;
    const AUDIT: u32 = 2;
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instrument.db");
    let pipeline = install(SqliteSink::builder().path(&path));
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|_| {
            let (path, stop) = (path.clone(), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut db = open(&path);
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let tx = db.transaction().unwrap();
                    let events = count(&tx, "SELECT count(*) FROM events");
                    let audit = count(&tx, "SELECT count(*) FROM audit");
                    std::thread::sleep(Duration::from_millis(1));
                    assert_eq!(count(&tx, "SELECT count(*) FROM events"), events);
                    assert_eq!(count(&tx, "SELECT count(*) FROM audit"), audit);
                    tx.commit().unwrap();
                    seen.push((events, audit));
                }
                seen
            })
        })
        .collect();
    for round in 0..ROUNDS {
        for i in 0..CALLS {
            assert!(parse("not a number", round * CALLS + i).is_err());
        }
        record_audit("load", round * AUDIT..(round + 1) * AUDIT);
        pipeline.flush().expect("flush while readers read");
    }
    stop.store(true, Ordering::Relaxed);
    for reader in readers {
        let seen = reader.join().expect("the reader never failed");
        assert!(
            seen.windows(2)
                .all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1),
            "counts only grow"
        );
    }
    let status = sqlite_status(&pipeline);
    assert_eq!((status.errors, status.health), (0, SinkHealth::Healthy));
    let db = open(&path);
    assert_eq!(
        count(&db, "SELECT count(*) FROM events"),
        i64::from(ROUNDS * CALLS)
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM audit"),
        i64::from(ROUNDS * AUDIT)
    );
    verify_audit_chain(&path).unwrap();
    drop(pipeline);
}
