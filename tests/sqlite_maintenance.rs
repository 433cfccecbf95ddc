//! Retention, backups, restores and the audit anchor of the `SQLite` store, on real database
//! files in temporary directories, read back with plain SQL.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use instrument::testing::advance;
use instrument::{AuditEntry, Batch, ClockSource, Sink, SinkHealth, instrument_performance};
use instrument_sinks::sqlite::{
    BACKUP_FILE, BackupManifest, BackupSchedule, MANIFEST_FILE, MaintenanceError, PRUNE_BATCH,
    PRUNE_STEPS_PER_TICK, SCHEMA_VERSION, backup, prune, restore, verify_backup,
};
use instrument_sinks::{ChainError, SqliteSink, verify_audit_chain};
use rusqlite::Connection;
use sha2::{Digest, Sha256};

mod support;
use support::serial;

const DAY: Duration = Duration::from_secs(86_400);

#[instrument_performance(capture(attempt))]
fn parse(text: &str, attempt: u32) -> Result<u32, std::num::ParseIntError> {
    advance(Duration::from_millis(1));
    let _ = attempt;
    text.parse()
}

fn open(path: &Path) -> Connection {
    Connection::open(path).expect("opens the store")
}

fn count(db: &Connection, table: &str) -> i64 {
    db.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

fn micros(time: SystemTime) -> i64 {
    i64::try_from(
        time.duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_micros(),
    )
    .unwrap()
}

fn sha256_hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    Sha256::digest(bytes)
        .iter()
        .fold(String::new(), |mut hex, b| {
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// `(id, hash)` of every audit row, in chain order.
fn audit_rows(db: &Connection) -> Vec<(i64, String)> {
    db.prepare("SELECT id, hash FROM audit ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn ids(db: &Connection, table: &str) -> Vec<i64> {
    db.prepare(&format!("SELECT id FROM {table} ORDER BY id"))
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Audit entries with sequence numbers `sequences`, stamped `at`.
fn audit_batch(sequences: std::ops::RangeInclusive<u64>, at: SystemTime) -> Batch {
    let mut batch = Batch::default();
    batch.audit = sequences
        .map(|sequence| {
            let mut entry = AuditEntry::new("load")
                .input(format!("{sequence}.rs"))
                .output(format!("{sequence}.ast"));
            entry.sequence = sequence;
            entry.timestamp = at;
            entry
        })
        .collect();
    batch
}

/// A store written by a sink directly: `old` audit entries stamped 40 days ago, then `new`
/// ones stamped now, in one run.
fn store_with_audit(path: &Path, old: u64, new: u64) {
    let mut sink = SqliteSink::builder().path(path).build().unwrap();
    let now = SystemTime::now();
    if old > 0 {
        sink.write(&audit_batch(1..=old, now - 40 * DAY)).unwrap();
    }
    if new > 0 {
        sink.write(&audit_batch(old + 1..=old + new, now)).unwrap();
    }
    drop(sink);
    verify_audit_chain(path).expect("an untouched chain verifies");
}

/// Inserts, with plain SQL, `n` rows stamped `at` into every table `prune` visits (alerts
/// resolved at `at`, plus one alert opened at `at` and never resolved), and one window error
/// per window.
fn insert_rows(db: &Connection, n: usize, at: SystemTime) {
    let us = micros(at);
    let tx = db.unchecked_transaction().unwrap();
    tx.execute(
        "INSERT OR IGNORE INTO callsites (id, name, module, file, line, kind, labels)
         VALUES (1000, 'old_call', 'm', 'f.rs', 1, 'function', '{}')",
        [],
    )
    .unwrap();
    for _ in 0..n {
        tx.execute(
            "INSERT INTO events (callsite_id, outcome, start_us, duration_ns, thread_id, reason)
             VALUES (1000, 'error', ?1, 5, 1, 'outcome')",
            [us],
        )
        .unwrap();
        let window: i64 = tx
            .query_row(
                "INSERT INTO windows (snapshot_sequence, reason, window_start_us, window_end_us,
                     callsite_id, outcome, count, timed, dropped, sum_ns, min_ns, max_ns, p50_ns,
                     p90_ns, p99_ns, p999_ns, histogram)
                 VALUES (1, 'window', ?1, ?1 + 1, 1000, 'error', 1, 1, 0, 5, 5, 5, 5, 5, 5, 5, x'')
                 RETURNING id",
                [us],
                |r| r.get(0),
            )
            .unwrap();
        tx.execute(
            "INSERT INTO window_errors (window_id, kind, count) VALUES (?1, 'Io', 1)",
            [window],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO counters (window_start_us, window_end_us, callsite_id, window, total)
             VALUES (?1, ?1 + 1, 1000, 1, 1)",
            [us],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO gauges (window_start_us, window_end_us, callsite_id, value)
             VALUES (?1, ?1 + 1, 1000, 2.5)",
            [us],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO drops (callsite_id, count, since_us, until_us) VALUES (1000, 3, ?1, ?1)",
            [us],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO notices (time_us, source, level, message, fields)
             VALUES (?1, 'test', 'info', 'hello', '[]')",
            [us],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO health (time_us, component, status, reason)
             VALUES (?1, 'sqlite', 'degraded', 'disk')",
            [us],
        )
        .unwrap();
        tx.execute(
            "INSERT INTO alerts (rule, state, severity, labels, message, started_us, updated_us,
                                 resolved_us)
             VALUES ('slow', 'resolved', 'warning', '{}', 'slow', ?1, ?1, ?1)",
            [us],
        )
        .unwrap();
    }
    tx.execute(
        "INSERT INTO alerts (rule, state, severity, labels, message, started_us, updated_us)
         VALUES ('stuck', 'firing', 'critical', '{}', 'still firing', ?1, ?1)",
        [us],
    )
    .unwrap();
    tx.commit().unwrap();
}

/// The tables `prune` visits, whose rows all carry one of the two times of `insert_rows`.
const PRUNED_TABLES: [&str; 9] = [
    "events",
    "windows",
    "window_errors",
    "counters",
    "gauges",
    "drops",
    "notices",
    "health",
    "alerts",
];

#[test]
fn a_backup_taken_while_a_pipeline_writes_verifies_and_is_a_consistent_snapshot() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instrument.db");
    // Several MiB already in the store, so each backup takes many steps.
    drop(SqliteSink::builder().path(&path).build().unwrap());
    {
        let db = open(&path);
        insert_rows(&db, 3000, SystemTime::now());
        db.execute("UPDATE notices SET message = hex(zeroblob(500))", [])
            .unwrap();
    }
    let sink = SqliteSink::builder().path(&path).build().unwrap();
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .sink(sink)
        .install()
        .unwrap();

    let backups = {
        let (path, root) = (path.clone(), dir.path().to_owned());
        std::thread::spawn(move || {
            (0..3)
                .map(|i| {
                    let dest = root.join(format!("backup-{i}"));
                    let manifest = backup(&path, &dest).expect("backup while the sink writes");
                    (dest, manifest)
                })
                .collect::<Vec<(PathBuf, BackupManifest)>>()
        })
    };
    let mut round = 0u32;
    while !backups.is_finished() || round < 3 {
        for attempt in 0..20 {
            assert!(parse("not a number", round * 20 + attempt).is_err());
        }
        instrument::audit(AuditEntry::new("load").input(format!("{round}.rs"))).unwrap();
        pipeline.flush().expect("flush while a backup runs");
        round += 1;
    }
    let backups = backups.join().expect("the backup thread did not panic");
    drop(pipeline);

    let live = open(&path);
    let live_audit = audit_rows(&live);
    let live_events = ids(&live, "events");
    for (dest, manifest) in &backups {
        assert_eq!(&verify_backup(dest).expect("a backup verifies"), manifest);
        assert_eq!(manifest.file, BACKUP_FILE);
        assert_eq!(manifest.schema_version, SCHEMA_VERSION);
        assert_eq!(manifest.source, path.display().to_string());
        let file = dest.join(BACKUP_FILE);
        let bytes = std::fs::read(&file).unwrap();
        assert_eq!(manifest.bytes, bytes.len() as u64);
        assert_eq!(manifest.sha256, sha256_hex(&bytes));
        // A rollback-journal file (header bytes 18 and 19 are 1, WAL would be 2): one file.
        assert_eq!((bytes[18], bytes[19]), (1, 1));
        let mut names: Vec<String> = std::fs::read_dir(dest)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, [BACKUP_FILE, MANIFEST_FILE]);

        // A snapshot: the backup's audit rows and events are a prefix of the live store's.
        let copy = Connection::open(&file).unwrap();
        let audit = audit_rows(&copy);
        assert_eq!(manifest.audit_rows, audit.len() as u64);
        assert_eq!(
            manifest.audit_head.as_deref(),
            audit.last().map(|(_, h)| h.as_str())
        );
        assert_eq!(audit, live_audit[..audit.len()]);
        let events = ids(&copy, "events");
        assert!(events.len() >= 3000);
        assert_eq!(events, live_events[..events.len()]);
        let orphans: i64 = copy
            .query_row(
                "SELECT count(*) FROM window_errors WHERE window_id NOT IN (SELECT id FROM windows)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(orphans, 0);
    }
    // The later backups saw at least as much as the earlier ones.
    assert!(
        backups
            .windows(2)
            .all(|w| w[0].1.audit_rows <= w[1].1.audit_rows)
    );
    verify_audit_chain(&path).unwrap();
}

/// A store with three audit entries and some events, and a verified backup of it in `dir/b`.
fn store_and_backup(dir: &Path) -> (PathBuf, PathBuf, BackupManifest) {
    let path = dir.join("instrument.db");
    store_with_audit(&path, 0, 3);
    insert_rows(&open(&path), 10, SystemTime::now());
    let dest = dir.join("b");
    let manifest = backup(&path, &dest).unwrap();
    assert_eq!(manifest.audit_rows, 3);
    (path, dest, manifest)
}

fn write_manifest(dest: &Path, manifest: &serde_json::Value) {
    std::fs::write(
        dest.join(MANIFEST_FILE),
        serde_json::to_vec_pretty(manifest).unwrap(),
    )
    .unwrap();
}

fn read_manifest(dest: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(dest.join(MANIFEST_FILE)).unwrap()).unwrap()
}

#[test]
fn a_tampered_backup_fails_verification_naming_the_file_and_what_differs() {
    let dir = tempfile::tempdir().unwrap();
    let (_, dest, manifest) = store_and_backup(dir.path());
    let file = dest.join(BACKUP_FILE);
    let original = std::fs::read(&file).unwrap();

    // A flipped byte in the database.
    let mut flipped = original.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 0x01;
    std::fs::write(&file, &flipped).unwrap();
    let error = verify_backup(&dest).unwrap_err();
    match &error {
        MaintenanceError::Mismatch {
            path,
            field,
            expected,
            found,
        } => {
            assert_eq!(path, &file);
            assert_eq!(*field, "sha256");
            assert_eq!(expected, &manifest.sha256);
            assert_eq!(found, &sha256_hex(&flipped));
        }
        other => panic!("expected a sha256 mismatch, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains(&file.display().to_string()), "{message}");
    assert!(message.contains("sha256"), "{message}");
    std::fs::write(&file, &original).unwrap();
    verify_backup(&dest).expect("the original bytes verify again");

    // A truncated database.
    std::fs::write(&file, &original[..original.len() - 1]).unwrap();
    assert!(matches!(
        verify_backup(&dest),
        Err(MaintenanceError::Mismatch { field: "size", .. })
    ));
    std::fs::write(&file, &original).unwrap();

    // A changed manifest: its audit row count, its head, then not JSON at all.
    let mut changed = read_manifest(&dest);
    changed["audit_rows"] = 2.into();
    write_manifest(&dest, &changed);
    let error = verify_backup(&dest).unwrap_err();
    assert!(
        matches!(
            &error,
            MaintenanceError::Mismatch { field: "audit_rows", expected, found, .. }
                if expected == "2" && found == "3"
        ),
        "{error:?}"
    );
    let mut changed = read_manifest(&dest);
    changed["audit_rows"] = 3.into();
    changed["audit_head"] = "0".repeat(64).into();
    write_manifest(&dest, &changed);
    assert!(matches!(
        verify_backup(&dest),
        Err(MaintenanceError::Mismatch {
            field: "audit_head",
            ..
        })
    ));
    let mut escaping = read_manifest(&dest);
    escaping["audit_head"] = manifest.audit_head.clone().into();
    escaping["file"] = "../instrument.db".into();
    write_manifest(&dest, &escaping);
    let error = verify_backup(&dest).unwrap_err();
    assert!(
        matches!(&error, MaintenanceError::Manifest { path, .. } if path == &dest.join(MANIFEST_FILE)),
        "{error:?}"
    );
    assert!(error.to_string().contains("../instrument.db"), "{error}");
    std::fs::write(dest.join(MANIFEST_FILE), b"{ not json").unwrap();
    let error = verify_backup(&dest).unwrap_err();
    assert!(
        matches!(error, MaintenanceError::Manifest { .. }),
        "{error:?}"
    );
    assert!(error.to_string().contains(MANIFEST_FILE), "{error}");

    // A forger who changes an audit row and fixes the checksum and size: the chain catches it.
    let needle = b"[\"2.rs\"]";
    let at = original
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("the audit row's inputs are in the file");
    let mut forged = original.clone();
    forged[at + 2] = b'9';
    std::fs::write(&file, &forged).unwrap();
    let mut fixed = serde_json::to_value(&manifest).unwrap();
    fixed["sha256"] = sha256_hex(&forged).into();
    write_manifest(&dest, &fixed);
    let error = verify_backup(&dest).unwrap_err();
    match &error {
        MaintenanceError::AuditChain { path, error } => {
            assert_eq!(path, &file);
            assert!(
                matches!(error, ChainError::Broken { id: 2, .. }),
                "{error:?}"
            );
        }
        other => panic!("expected a broken chain, got {other:?}"),
    }
    assert!(error.to_string().contains("audit row 2"), "{error}");
}

#[test]
fn a_backup_never_writes_into_a_directory_that_holds_anything() {
    let dir = tempfile::tempdir().unwrap();
    let (path, dest, _) = store_and_backup(dir.path());
    let before = std::fs::read(dest.join(BACKUP_FILE)).unwrap();
    let error = backup(&path, &dest).unwrap_err();
    assert!(
        matches!(&error, MaintenanceError::DestinationNotEmpty { path } if path == &dest),
        "{error:?}"
    );
    assert!(error.to_string().contains(&dest.display().to_string()));
    assert_eq!(std::fs::read(dest.join(BACKUP_FILE)).unwrap(), before);

    // A missing store is reported, and nothing is created in its place.
    let missing = dir.path().join("missing.db");
    let error = backup(&missing, &dir.path().join("c")).unwrap_err();
    assert!(
        matches!(error, MaintenanceError::NoStore { .. }),
        "{error:?}"
    );
    assert!(!missing.exists());
    assert!(!dir.path().join("c").exists());
}

#[test]
fn restore_refuses_an_existing_target_and_leaves_it_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (path, dest, _) = store_and_backup(dir.path());
    // The live store itself.
    let live = std::fs::read(&path).unwrap();
    let error = restore(&dest, &path).unwrap_err();
    assert!(
        matches!(&error, MaintenanceError::TargetExists { path: p } if p == &path),
        "{error:?}"
    );
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("move it away"), "{message}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        live,
        "the store is untouched"
    );

    // Any other file, and a WAL file left next to a free name.
    let other = dir.path().join("notes.txt");
    std::fs::write(&other, b"keep me").unwrap();
    assert!(matches!(
        restore(&dest, &other),
        Err(MaintenanceError::TargetExists { .. })
    ));
    assert_eq!(std::fs::read(&other).unwrap(), b"keep me");
    let free = dir.path().join("free.db");
    let wal = dir.path().join("free.db-wal");
    std::fs::write(&wal, b"old wal").unwrap();
    let error = restore(&dest, &free).unwrap_err();
    assert!(
        matches!(&error, MaintenanceError::Leftover { path, .. } if path == &wal),
        "{error:?}"
    );
    assert!(!free.exists());
    assert_eq!(std::fs::read(&wal).unwrap(), b"old wal");
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("restore"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn restore_into_a_fresh_path_gives_a_store_whose_chain_verifies_and_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (path, dest, manifest) = store_and_backup(dir.path());
    // The live store moves on after the backup.
    store_with_audit(&path, 0, 2);

    let target = dir.path().join("restored").join("instrument.db");
    assert_eq!(restore(&dest, &target).unwrap(), manifest);
    assert_eq!(
        sha256_hex(&std::fs::read(&target).unwrap()),
        manifest.sha256
    );
    verify_audit_chain(&target).expect("the restored chain verifies");
    let db = open(&target);
    assert_eq!(count(&db, "audit"), 3, "the store as it was at the backup");
    assert_eq!(count(&db, "events"), 10);
    drop(db);

    // A sink opens the restored store and the chain continues from its head.
    store_with_audit(&target, 0, 2);
    assert_eq!(count(&open(&target), "audit"), 5);
    // Restoring again onto it is refused.
    assert!(matches!(
        restore(&dest, &target),
        Err(MaintenanceError::TargetExists { .. })
    ));
}

#[test]
fn prune_removes_old_rows_keeps_new_ones_and_keeps_audit_by_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instrument.db");
    store_with_audit(&path, 4, 2);
    let now = SystemTime::now();
    let old = 2 * PRUNE_BATCH + 7;
    {
        let db = open(&path);
        insert_rows(&db, old, now - 40 * DAY);
        insert_rows(&db, 5, now - DAY);
    }
    let audit_before = audit_rows(&open(&path));

    let report = prune(&path, 30 * DAY, None).unwrap();
    let old = old as u64;
    let rows = report.rows;
    assert_eq!(
        [
            rows.events,
            rows.windows,
            rows.window_errors,
            rows.counters,
            rows.gauges,
            rows.drops,
            rows.notices,
            rows.health,
            rows.alerts
        ],
        [old; 9]
    );
    assert_eq!(rows.audit, 0);
    assert_eq!(rows.total(), 9 * old);
    assert!(!report.audit_pruned);
    assert_eq!(report.anchor, None);
    assert_eq!(report.audit_cutoff_us, None);
    let cutoff = report.cutoff_us.expect("a cutoff after the epoch");
    assert!(cutoff > micros(now - 31 * DAY) && cutoff < micros(now - 29 * DAY));

    let db = open(&path);
    for table in PRUNED_TABLES {
        // The 5 new rows, and in `alerts` the two that never resolved, the old one too.
        let expected = if table == "alerts" { 7 } else { 5 };
        assert_eq!(count(&db, table), expected, "{table}");
    }
    let open_alerts: Vec<i64> = db
        .prepare("SELECT started_us FROM alerts WHERE resolved_us IS NULL ORDER BY started_us")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(open_alerts.len(), 2);
    assert!(open_alerts[0] < cutoff, "the old open alert is kept");
    assert_eq!(audit_rows(&db), audit_before, "audit rows are kept");
    assert_eq!(count(&db, "callsites"), 1);
    assert_eq!(count(&db, "audit_anchor"), 0);
    verify_audit_chain(&path).unwrap();

    // A second prune finds nothing more.
    assert_eq!(prune(&path, 30 * DAY, None).unwrap().rows.total(), 0);
    // Duration::MAX keeps everything.
    let report = prune(&path, Duration::MAX, Some(Duration::MAX)).unwrap();
    assert_eq!((report.cutoff_us, report.rows.total()), (None, 0));
}

#[test]
fn pruning_audit_leaves_an_anchor_the_chain_verifies_from() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instrument.db");
    let old = 2 * PRUNE_BATCH as u64 + 3;
    store_with_audit(&path, old, 3);
    let before = audit_rows(&open(&path));

    let report = prune(&path, 30 * DAY, Some(30 * DAY)).unwrap();
    assert!(report.audit_pruned);
    assert_eq!(report.rows.audit, old);
    let anchor = report.anchor.clone().expect("an anchor");
    let last = i64::try_from(old).unwrap();
    assert_eq!(
        (anchor.last_id, anchor.run_id, anchor.sequence),
        (last, 1, last)
    );
    assert_eq!(anchor.hash, before[usize::try_from(old).unwrap() - 1].1);
    assert_eq!((anchor.pruned_rows, anchor.total_pruned), (old, old));

    let db = open(&path);
    assert_eq!(audit_rows(&db), before[usize::try_from(old).unwrap()..]);
    let stored: (i64, i64, String, i64, i64) = db
        .query_row(
            "SELECT count(*), last_id, hash, pruned_rows, total_pruned FROM audit_anchor",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .unwrap();
    assert_eq!(
        stored,
        (1, last, anchor.hash.clone(), last, last),
        "one anchor row per pass"
    );
    verify_audit_chain(&path).expect("the chain verifies from the anchor");

    // The chain goes on from the anchor: new entries, then a backup of the pruned store.
    store_with_audit(&path, 0, 2);
    let manifest = backup(&path, &dir.path().join("b")).unwrap();
    assert_eq!(manifest.audit_rows, 5);

    // Tampering the first remaining row is still caught.
    let first = last + 1;
    let inputs: String = db
        .query_row("SELECT inputs FROM audit WHERE id = ?1", [first], |r| {
            r.get(0)
        })
        .unwrap();
    db.execute(
        "UPDATE audit SET inputs = '[\"z.rs\"]' WHERE id = ?1",
        [first],
    )
    .unwrap();
    match verify_audit_chain(&path) {
        Err(ChainError::Broken { id, .. }) => assert_eq!(id, first),
        other => panic!("expected a broken chain at row {first}, got {other:?}"),
    }
    db.execute(
        "UPDATE audit SET inputs = ?1 WHERE id = ?2",
        (&inputs, first),
    )
    .unwrap();
    verify_audit_chain(&path).expect("the original content verifies again");

    // So is deleting the anchor: the first remaining row does not follow the genesis.
    db.execute_batch(
        "CREATE TEMP TABLE saved AS SELECT * FROM audit_anchor; DELETE FROM audit_anchor;",
    )
    .unwrap();
    match verify_audit_chain(&path) {
        Err(ChainError::Broken { id, reason, .. }) => {
            assert_eq!(id, first);
            assert!(reason.contains("prev_hash"), "{reason}");
        }
        other => panic!("expected a broken chain without its anchor, got {other:?}"),
    }
    db.execute_batch("INSERT INTO audit_anchor SELECT * FROM saved")
        .unwrap();
    verify_audit_chain(&path).expect("the anchor is back");

    // And deleting the first remaining row: the next one does not follow the anchor.
    db.execute("DELETE FROM audit WHERE id = ?1", [first])
        .unwrap();
    match verify_audit_chain(&path) {
        Err(ChainError::Broken { id, reason, .. }) => {
            assert_eq!(id, first + 1);
            assert!(reason.contains("anchor"), "{reason}");
        }
        other => panic!("expected a broken chain after the anchor, got {other:?}"),
    }
}

#[test]
fn pruning_audit_keeps_the_newest_row_and_refuses_to_prune_a_changed_row() {
    let dir = tempfile::tempdir().unwrap();

    // Every row is old: the newest one stays, and the chain goes on from it.
    let all_old = dir.path().join("all-old.db");
    store_with_audit(&all_old, 5, 0);
    let report = prune(&all_old, 30 * DAY, Some(30 * DAY)).unwrap();
    assert_eq!(report.rows.audit, 4);
    assert_eq!(ids(&open(&all_old), "audit"), [5]);
    verify_audit_chain(&all_old).unwrap();
    // A later pass over the same store adds an anchor row and counts all pruned rows.
    {
        let mut sink = SqliteSink::builder().path(&all_old).build().unwrap();
        sink.write(&audit_batch(1..=2, SystemTime::now() - 40 * DAY))
            .unwrap();
    }
    let report = prune(&all_old, 30 * DAY, Some(30 * DAY)).unwrap();
    let anchor = report.anchor.unwrap();
    assert_eq!(
        (anchor.last_id, anchor.pruned_rows, anchor.total_pruned),
        (6, 2, 6)
    );
    assert_eq!(count(&open(&all_old), "audit_anchor"), 2);
    verify_audit_chain(&all_old).unwrap();
    // Emptying the audit table behind the anchor's back is caught.
    open(&all_old).execute("DELETE FROM audit", []).unwrap();
    let error = verify_audit_chain(&all_old).unwrap_err();
    assert!(matches!(error, ChainError::Anchor { .. }), "{error:?}");
    assert!(
        error.to_string().contains(&all_old.display().to_string()),
        "{error}"
    );

    // A changed row among those due for pruning: nothing is pruned, and the change is named.
    let changed = dir.path().join("changed.db");
    store_with_audit(&changed, 5, 1);
    open(&changed)
        .execute("UPDATE audit SET outputs = '[]' WHERE id = 3", [])
        .unwrap();
    let before = audit_rows(&open(&changed));
    let error = prune(&changed, 30 * DAY, Some(30 * DAY)).unwrap_err();
    match &error {
        MaintenanceError::AuditChain { path, error } => {
            assert_eq!(path, &changed);
            assert!(
                matches!(error, ChainError::Broken { id: 3, .. }),
                "{error:?}"
            );
        }
        other => panic!("expected a broken chain, got {other:?}"),
    }
    assert_eq!(audit_rows(&open(&changed)), before, "no audit row pruned");
    assert_eq!(count(&open(&changed), "audit_anchor"), 0);
}

/// Makes the current store at `path` a v1 store: v2 only added tables, v3 only columns and an
/// index of one of them, v4 a table, and v5 columns and an index of v1's tables.
fn downgrade_to_v1(path: &Path) {
    open(path)
        .execute_batch(
            "DROP TABLE audit_anchor; DROP TABLE health; DROP TABLE alerts; DROP TABLE alert_actions;
             DROP INDEX windows_by_run;
             ALTER TABLE windows DROP COLUMN run_id; ALTER TABLE events DROP COLUMN run_id;
             ALTER TABLE runs DROP COLUMN ended_us; ALTER TABLE runs DROP COLUMN program_version;
             ALTER TABLE runs DROP COLUMN config_digest; ALTER TABLE runs DROP COLUMN window_ns;
             ALTER TABLE runs DROP COLUMN tick_ns;
             DELETE FROM schema_version WHERE version >= 2;",
        )
        .unwrap();
}

fn tables(db: &Connection) -> Vec<String> {
    db.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

#[test]
fn a_version_1_store_is_backed_up_as_it_is_and_migrated_forward_by_the_sink_and_prune() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instrument.db");
    store_with_audit(&path, 2, 2);
    downgrade_to_v1(&path);
    let before = audit_rows(&open(&path));
    verify_audit_chain(&path).expect("a v1 store has no anchor table and verifies");

    // A backup copies it as it is.
    let manifest = backup(&path, &dir.path().join("b")).unwrap();
    assert_eq!(manifest.schema_version, 1);
    let restored = dir.path().join("restored.db");
    restore(&dir.path().join("b"), &restored).unwrap();
    assert!(!tables(&open(&restored)).contains(&"audit_anchor".to_owned()));

    // The sink migrates it forward and keeps its rows.
    drop(SqliteSink::builder().path(&path).build().unwrap());
    let db = open(&path);
    let version: i64 = db
        .query_row("SELECT max(version) FROM schema_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    for table in ["audit_anchor", "health", "alerts", "alert_actions"] {
        assert!(tables(&db).contains(&table.to_owned()), "{table}");
    }
    assert_eq!(audit_rows(&db), before);

    // So does prune, on the restored v1 copy.
    let report = prune(&restored, 30 * DAY, Some(30 * DAY)).unwrap();
    assert_eq!(report.rows.audit, 2);
    let db = open(&restored);
    assert!(tables(&db).contains(&"audit_anchor".to_owned()));
    assert_eq!(audit_rows(&db), before[2..]);
    verify_audit_chain(&restored).unwrap();
}

#[test]
fn the_sink_prunes_from_its_ticks_a_bounded_amount_per_tick() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instrument.db");
    let per_tick = i64::try_from(PRUNE_STEPS_PER_TICK * PRUNE_BATCH).unwrap();
    let old = 2 * per_tick + 10;
    {
        drop(SqliteSink::builder().path(&path).build().unwrap());
        let db = open(&path);
        let tx = db.unchecked_transaction().unwrap();
        tx.execute(
            "INSERT INTO callsites (id, name, module, file, line, kind, labels)
             VALUES (1, 'c', 'm', 'f.rs', 1, 'function', '{}')",
            [],
        )
        .unwrap();
        let now = SystemTime::now();
        for (n, at) in [(old, now - 3 * DAY), (7, now)] {
            tx.execute(
                "WITH RECURSIVE k(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM k WHERE i < ?1)
                 INSERT INTO events (callsite_id, outcome, start_us, duration_ns, thread_id, reason)
                 SELECT 1, 'ok', ?2, 1, 1, 'sampled' FROM k",
                (n, micros(at)),
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let mut sink = SqliteSink::builder()
        .path(&path)
        .retention(DAY)
        .prune_interval(Duration::from_secs(3600))
        .build()
        .unwrap();
    let db = open(&path);
    let t0 = SystemTime::now();
    let mut remaining = Vec::new();
    for second in 0..4 {
        sink.tick(t0 + Duration::from_secs(second)).unwrap();
        remaining.push(count(&db, "events"));
    }
    let all = old + 7;
    assert_eq!(
        remaining,
        [all - per_tick, all - 2 * per_tick, 7, 7],
        "a pass goes on over ticks, a bounded amount each"
    );
    assert_eq!(sink.health(), SinkHealth::Healthy);

    // The next pass starts one interval after the last one began.
    open(&path)
        .execute(
            "INSERT INTO events (callsite_id, outcome, start_us, duration_ns, thread_id, reason)
             VALUES (1, 'ok', ?1, 1, 1, 'sampled')",
            [micros(t0 - 3 * DAY)],
        )
        .unwrap();
    sink.tick(t0 + Duration::from_secs(1800)).unwrap();
    assert_eq!(count(&db, "events"), 8);
    sink.tick(t0 + Duration::from_secs(3600)).unwrap();
    assert_eq!(count(&db, "events"), 7);
}

/// The complete backup directories under `dir`, by name.
fn backup_dirs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    };
    names.sort();
    names
}

#[test]
fn scheduled_backups_are_verified_and_the_oldest_beyond_keep_removed() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instrument.db");
    let backups = dir.path().join("backups");
    let keep = 2;
    let sink = SqliteSink::builder()
        .path(&path)
        .backups(
            BackupSchedule::new(&backups)
                .interval(Duration::from_millis(30))
                .keep(keep),
        )
        .build()
        .unwrap();
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .sink_tick(Duration::from_millis(10))
        .sink(sink)
        .install()
        .unwrap();

    // Watches the directory on a thread of its own, remembering every backup it sees.
    let seen = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (seen, stop, backups) = (Arc::clone(&seen), Arc::clone(&stop), backups.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for name in backup_dirs(&backups) {
                    if backups.join(&name).join(MANIFEST_FILE).is_file() {
                        seen.lock().unwrap().insert(name);
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut round = 0;
    while seen.lock().unwrap().len() < keep + 3 {
        assert!(
            Instant::now() < deadline,
            "only {:?} backups after 300 s",
            seen.lock().unwrap()
        );
        assert!(parse("x", round).is_err());
        instrument::audit(AuditEntry::new("load").input(format!("{round}.rs"))).unwrap();
        pipeline.flush().unwrap();
        std::thread::sleep(Duration::from_millis(5));
        round += 1;
    }
    let health = support::status(&pipeline, "sqlite").health;
    assert_eq!(health, SinkHealth::Healthy);
    // Shutting down stops a backup in flight and removes it.
    drop(pipeline);
    stop.store(true, Ordering::Relaxed);
    watcher.join().unwrap();

    let remaining = backup_dirs(&backups);
    assert_eq!(remaining.len(), keep, "{remaining:?}");
    for name in &remaining {
        let manifest = verify_backup(&backups.join(name)).expect("a kept backup verifies");
        assert_eq!(manifest.source, path.display().to_string());
        assert!(name.starts_with("backup-") && name.ends_with('Z'), "{name}");
    }
    let seen = seen.lock().unwrap();
    let oldest_kept = &remaining[0];
    for name in seen.iter().filter(|n| *n < oldest_kept) {
        assert!(!backups.join(name).exists(), "{name} was not removed");
    }
    // The newest backup holds what was written before it began.
    let newest = verify_backup(&backups.join(&remaining[keep - 1])).unwrap();
    assert!(newest.audit_rows >= 1);
    verify_audit_chain(&path).unwrap();
}

#[test]
fn a_failed_scheduled_backup_degrades_the_sink_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instrument.db");
    // The backup directory is under a regular file, so it cannot be created.
    let blocker = dir.path().join("blocker");
    std::fs::write(&blocker, b"a file").unwrap();
    let backups = blocker.join("backups");
    let interval = Duration::from_secs(3600);
    let mut sink = SqliteSink::builder()
        .path(&path)
        .backups(BackupSchedule::new(&backups).interval(interval))
        .build()
        .unwrap();
    let t0 = SystemTime::now();
    sink.tick(t0).expect("the backup starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    let error = loop {
        assert!(
            Instant::now() < deadline,
            "the failed backup never reported"
        );
        match sink.tick(t0) {
            Ok(()) => std::thread::sleep(Duration::from_millis(5)),
            Err(error) => break error,
        }
    };
    assert!(
        error.to_string().contains(&blocker.display().to_string()),
        "{error}"
    );
    let reason = match sink.health() {
        SinkHealth::Degraded(reason) => reason,
        other => panic!("expected degraded, got {other:?}"),
    };
    assert!(reason.contains("backup"), "{reason}");
    assert!(reason.contains(&blocker.display().to_string()), "{reason}");

    // Writing goes on, and the sink stays degraded while backups fail.
    sink.write(&audit_batch(1..=3, t0)).unwrap();
    assert_eq!(count(&open(&path), "audit"), 3);
    assert!(matches!(sink.health(), SinkHealth::Degraded(_)));

    // Once the directory can be written, the next due backup succeeds and the sink recovers.
    std::fs::remove_file(&blocker).unwrap();
    let t1 = t0 + interval;
    sink.tick(t1).expect("the next backup starts");
    let deadline = Instant::now() + Duration::from_secs(120);
    while sink.health() != SinkHealth::Healthy {
        assert!(Instant::now() < deadline, "{:?}", sink.health());
        std::thread::sleep(Duration::from_millis(5));
        sink.tick(t1).unwrap();
    }
    let made = backup_dirs(&backups);
    assert_eq!(made.len(), 1);
    assert_eq!(
        verify_backup(&backups.join(&made[0])).unwrap().audit_rows,
        3
    );
}
