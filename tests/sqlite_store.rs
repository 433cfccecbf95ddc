//! The `SQLite` store end to end: a pipeline writes real database files in temporary directories,
//! and the tests read them back with plain SQL.

use std::path::Path;
use std::time::Duration;

use instrument::testing::advance;
use instrument::{
    AuditEntry, Batch, ClockSource, CorrelationId, Histogram, PipelineGuard, Sink, SinkHealth,
    instrument_performance,
};
use instrument_sinks::{ChainError, SqliteError, SqliteSink, verify_audit_chain};
use rusqlite::Connection;
use serde_json::{Value, json};

mod support;
use support::{name, serial};

#[instrument_performance(capture(text, attempt))]
fn parse(text: &str, attempt: u32) -> Result<u32, std::num::ParseIntError> {
    advance(Duration::from_millis(3));
    let _ = attempt;
    text.parse()
}

#[instrument_performance(audit, capture(%id))]
fn copy_file(id: &str) {
    advance(Duration::from_millis(2));
}

fn install(path: &Path) -> PipelineGuard {
    let sink = SqliteSink::builder().path(path).build().expect("opens");
    instrument::builder()
        .clock(ClockSource::Mock)
        .sink(sink)
        .install()
        .expect("no other pipeline is installed")
}

fn open(path: &Path) -> Connection {
    Connection::open(path).expect("opens the store")
}

fn json_column(db: &Connection, sql: &str) -> Value {
    let text: String = db.query_row(sql, [], |r| r.get(0)).expect(sql);
    serde_json::from_str(&text).expect("valid JSON")
}

/// Three audit entries of one pipeline, flushed and shut down.
fn store_with_three_audit_entries(path: &Path) {
    let pipeline = install(path);
    for file in ["a.rs", "b.rs", "c.rs"] {
        instrument::audit(
            AuditEntry::new("load")
                .input(file)
                .output(format!("{file}.ast")),
        )
        .unwrap();
    }
    pipeline.flush().expect("flush");
    drop(pipeline);
    verify_audit_chain(path).expect("an untouched chain verifies");
}

/// Records two `parse` calls (one failing under a correlation id), an audited call, a manual
/// audit entry, a counter and a gauge into a store in `dir`, flushes and shuts down.
fn record_everything(dir: &Path) -> (std::path::PathBuf, CorrelationId) {
    let path = dir.join("data").join("instrument.db");
    let pipeline = install(&path);
    assert_eq!(parse("12", 1), Ok(12));
    let id = CorrelationId::new();
    assert!(instrument::with_correlation(id, || parse("x1", 2)).is_err());
    copy_file("a.rs");
    instrument::audit(
        AuditEntry::new("export")
            .input("a.rs")
            .output("a.json")
            .actor("ann")
            .field("rows", &3),
    )
    .unwrap();
    instrument::counter!("rows_written_total", 5, "table" => "files");
    instrument::gauge!("pending_files", 12.5, "stage" => "parse");
    pipeline.flush().expect("flush");
    drop(pipeline);
    (path, id)
}

#[test]
fn callsites_and_events_are_stored_with_captured_arguments() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (path, id) = record_everything(dir.path());
    let db = open(&path);
    let parse_name = name!("parse");
    let (module, kind, labels, line): (String, String, String, i64) = db
        .query_row(
            "SELECT module, kind, labels, line FROM callsites WHERE name = ?1",
            [parse_name],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!(
        (module.as_str(), kind.as_str(), labels.as_str()),
        (module_path!(), "function", "{}")
    );
    assert!(line > 0);

    let (outcome, error_kind, duration, correlation, reason, fields): (
        String,
        String,
        i64,
        String,
        String,
        String,
    ) = db
        .query_row(
            "SELECT e.outcome, e.error_kind, e.duration_ns, e.correlation, e.reason, e.fields
             FROM events e JOIN callsites c ON c.id = e.callsite_id WHERE c.name = ?1",
            [parse_name],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            },
        )
        .unwrap();
    assert_eq!(outcome, "error");
    assert!(error_kind.contains("ParseIntError"), "{error_kind}");
    assert_eq!(duration, 3_000_000);
    assert_eq!(correlation, id.to_string());
    assert_eq!(reason, "outcome");
    assert_eq!(
        serde_json::from_str::<Value>(&fields).unwrap(),
        json!({"text": "x1", "attempt": 2})
    );
}

/// `sequence, operation, inputs, actor, callsite` of an `audit` row.
type AuditRow = (i64, String, String, Option<String>, Option<String>);

/// One row of `windows`.
struct WindowRow {
    id: i64,
    outcome: String,
    count: i64,
    timed: i64,
    p50_ns: i64,
    max_ns: i64,
    histogram: Vec<u8>,
    start_us: i64,
    end_us: i64,
}

#[test]
fn windows_keep_aggregates_error_kinds_and_mergeable_histograms() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = record_everything(dir.path());
    let db = open(&path);
    let rows: Vec<WindowRow> = db
        .prepare(
            "SELECT w.id, w.outcome, w.count, w.timed, w.p50_ns, w.max_ns, w.histogram,
                    w.window_start_us, w.window_end_us
             FROM windows w JOIN callsites c ON c.id = w.callsite_id
             WHERE c.name = ?1 ORDER BY w.outcome",
        )
        .unwrap()
        .query_map([name!("parse")], |r| {
            Ok(WindowRow {
                id: r.get(0)?,
                outcome: r.get(1)?,
                count: r.get(2)?,
                timed: r.get(3)?,
                p50_ns: r.get(4)?,
                max_ns: r.get(5)?,
                histogram: r.get(6)?,
                start_us: r.get(7)?,
                end_us: r.get(8)?,
            })
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 2, "one window row per outcome");
    let mut merged: Option<Histogram> = None;
    for row in &rows {
        assert_eq!((row.count, row.timed), (1, 1));
        assert!(row.start_us <= row.end_us);
        let histogram: Histogram = serde_json::from_slice(&row.histogram).expect("a histogram");
        assert_eq!(histogram.count(), 1);
        // The maximum is exact; percentiles are bucketed to 0.1 %.
        assert_eq!(row.max_ns, 3_000_000);
        assert!((row.p50_ns - 3_000_000).abs() <= 3_000, "{}", row.p50_ns);
        match &mut merged {
            None => merged = Some(histogram),
            Some(m) => m.merge(&histogram),
        }
    }
    assert_eq!(merged.expect("two windows").count(), 2, "windows merge");
    let error_window = rows.iter().find(|r| r.outcome == "error").unwrap().id;
    let (kind, count): (String, i64) = db
        .query_row(
            "SELECT kind, count FROM window_errors WHERE window_id = ?1",
            [error_window],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert!(kind.contains("ParseIntError"), "{kind}");
    assert_eq!(count, 1);
}

#[test]
fn counters_gauges_and_audit_entries_are_stored() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (path, _) = record_everything(dir.path());
    let db = open(&path);
    let (window, total, labels): (i64, i64, String) = db
        .query_row(
            "SELECT k.window, k.total, c.labels FROM counters k
             JOIN callsites c ON c.id = k.callsite_id WHERE c.name = 'rows_written_total'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((window, total), (5, 5));
    assert_eq!(labels, r#"{"table":"files"}"#);
    let (value, kind): (f64, String) = db
        .query_row(
            "SELECT g.value, c.kind FROM gauges g
             JOIN callsites c ON c.id = g.callsite_id WHERE c.name = 'pending_files'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((value, kind.as_str()), (12.5, "gauge"));

    let audit: Vec<AuditRow> = db
        .prepare("SELECT sequence, operation, inputs, actor, callsite FROM audit ORDER BY id")
        .unwrap()
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0].4.as_deref(), Some(name!("copy_file")));
    assert_eq!(audit[1].1, "export");
    assert_eq!(audit[1].2, r#"["a.rs"]"#);
    assert_eq!(audit[1].3.as_deref(), Some("ann"));
    assert!(audit[0].0 < audit[1].0);
    assert_eq!(
        json_column(&db, "SELECT fields FROM audit WHERE operation = 'export'"),
        json!([["rows", "3"]])
    );
    verify_audit_chain(&path).expect("the chain verifies");
}

#[test]
fn a_reader_reads_consistent_counts_while_the_sink_writes() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instrument.db");
    let pipeline = install(&path);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (path, stop) = (path.clone(), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut db = open(&path);
            let mut seen = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                // Holds a read transaction across two queries: both see the same snapshot.
                let tx = db.transaction().unwrap();
                let count = |sql| tx.query_row(sql, [], |r| r.get::<_, i64>(0)).unwrap();
                let events = count("SELECT count(*) FROM events");
                std::thread::sleep(Duration::from_millis(2));
                assert_eq!(count("SELECT count(*) FROM events"), events);
                tx.commit().unwrap();
                seen.push(events);
            }
            seen
        })
    };
    for round in 0..20 {
        for attempt in 0..50 {
            assert!(parse("not a number", round * 50 + attempt).is_err());
        }
        pipeline.flush().expect("flush while a reader reads");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let seen = reader.join().expect("the reader never failed");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "counts only grow");
    let db = open(&path);
    let events: i64 = db
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert_eq!(events, 1000);
    drop(pipeline);
}

#[test]
fn a_file_that_is_not_a_database_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instrument.db");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&path, &garbage).unwrap();
    let error = SqliteSink::builder().path(&path).build().unwrap_err();
    assert!(
        matches!(error, SqliteError::NotADatabase { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(&path.display().to_string()),
        "{error}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        garbage,
        "the file is untouched"
    );

    // A store whose header was damaged.
    let damaged = dir.path().join("damaged.db");
    drop(SqliteSink::builder().path(&damaged).build().unwrap());
    let mut bytes = std::fs::read(&damaged).unwrap();
    bytes[..16].copy_from_slice(b"not sqlite at al");
    std::fs::write(&damaged, &bytes).unwrap();
    let error = SqliteSink::builder().path(&damaged).build().unwrap_err();
    assert!(
        matches!(error, SqliteError::NotADatabase { .. }),
        "{error:?}"
    );
    assert_eq!(std::fs::read(&damaged).unwrap(), bytes);
}

#[test]
fn a_database_with_a_newer_schema_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instrument.db");
    drop(SqliteSink::builder().path(&path).build().unwrap());
    let newer = instrument_sinks::sqlite::SCHEMA_VERSION + 1;
    {
        let db = open(&path);
        db.execute(
            "INSERT INTO schema_version (version, applied_us) VALUES (?1, 0)",
            [newer],
        )
        .unwrap();
    }
    let bytes = std::fs::read(&path).unwrap();
    let error = SqliteSink::builder().path(&path).build().unwrap_err();
    match &error {
        SqliteError::NewerSchema {
            found, supported, ..
        } => assert_eq!((*found, *supported), (newer, newer - 1)),
        other => panic!("expected NewerSchema, got {other:?}"),
    }
    let message = error.to_string();
    assert!(message.contains(&path.display().to_string()), "{message}");
    assert!(message.contains("newer"), "{message}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the file is untouched"
    );
}

fn broken_row(path: &Path) -> i64 {
    match verify_audit_chain(path) {
        Err(ChainError::Broken { id, .. }) => id,
        other => panic!("expected a broken chain, got {other:?}"),
    }
}

#[test]
fn changing_deleting_or_reordering_audit_rows_breaks_the_chain_at_that_row() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();

    let changed = dir.path().join("changed.db");
    store_with_three_audit_entries(&changed);
    open(&changed)
        .execute("UPDATE audit SET inputs = '[\"z.rs\"]' WHERE id = 2", [])
        .unwrap();
    assert_eq!(broken_row(&changed), 2);
    let message = verify_audit_chain(&changed).unwrap_err().to_string();
    assert!(message.contains("audit row 2"), "{message}");

    let deleted = dir.path().join("deleted.db");
    store_with_three_audit_entries(&deleted);
    open(&deleted)
        .execute("DELETE FROM audit WHERE id = 2", [])
        .unwrap();
    assert_eq!(broken_row(&deleted), 3, "the row after the gap");

    let reordered = dir.path().join("reordered.db");
    store_with_three_audit_entries(&reordered);
    open(&reordered)
        .execute_batch(
            "UPDATE audit SET id = -1 WHERE id = 1;
             UPDATE audit SET id = 1 WHERE id = 2;
             UPDATE audit SET id = 2 WHERE id = -1;",
        )
        .unwrap();
    assert_eq!(broken_row(&reordered), 1);
}

#[test]
fn a_retried_audit_batch_inserts_no_duplicates_and_the_chain_continues() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instrument.db");
    let mut sink = SqliteSink::builder().path(&path).build().unwrap();
    let batch = |sequences: std::ops::RangeInclusive<u64>| {
        let mut batch = Batch::default();
        batch.audit = sequences
            .map(|sequence| {
                let mut entry = AuditEntry::new("load").input(format!("{sequence}.rs"));
                entry.sequence = sequence;
                entry
            })
            .collect();
        batch
    };
    sink.write(&batch(1..=3)).unwrap();
    sink.write(&batch(1..=3)).unwrap();
    sink.write(&batch(2..=5)).unwrap();
    let db = open(&path);
    let sequences: Vec<i64> = db
        .prepare("SELECT sequence FROM audit ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(sequences, [1, 2, 3, 4, 5]);
    verify_audit_chain(&path).expect("the chain continues across retries");

    // A new sink on the same file is a new run: its sequence numbers start again, and the
    // chain goes on from the last stored row.
    drop(sink);
    let mut sink = SqliteSink::builder().path(&path).build().unwrap();
    sink.write(&batch(1..=2)).unwrap();
    let runs: i64 = db
        .query_row("SELECT count(DISTINCT run_id) FROM audit", [], |r| r.get(0))
        .unwrap();
    assert_eq!(runs, 2);
    let rows: i64 = db
        .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 7);
    verify_audit_chain(&path).expect("the chain spans runs");
}

#[test]
fn a_failed_write_makes_the_sink_unhealthy_until_a_write_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instrument.db");
    let mut sink = SqliteSink::builder()
        .path(&path)
        .busy_timeout(Duration::from_millis(10))
        .build()
        .unwrap();
    let mut batch = Batch::default();
    batch.audit = vec![AuditEntry::new("load")];
    batch.audit[0].sequence = 1;

    // Another connection holds the write lock for longer than the busy timeout.
    let mut other = open(&path);
    let lock = other
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .unwrap();
    let error = sink.write(&batch).unwrap_err();
    let source = std::error::Error::source(&error).expect("the cause is kept");
    assert!(
        source.downcast_ref::<rusqlite::Error>().is_some(),
        "{source:?}"
    );
    match sink.health() {
        SinkHealth::Unhealthy(cause) => assert!(cause.contains("locked"), "{cause}"),
        other => panic!("expected unhealthy, got {other:?}"),
    }
    drop(lock);

    sink.write(&batch).expect("the lock is gone");
    assert_eq!(sink.health(), SinkHealth::Healthy);
    let rows: i64 = other
        .query_row("SELECT count(*) FROM audit", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 1);
}

#[test]
fn every_event_of_a_large_batch_is_stored_once_with_its_own_values() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instrument.db");
    let pipeline = install(&path);
    // Enough events for several multi-row statements and a remainder written row by row.
    let calls = 32 * 3 + 7;
    let mut ids = Vec::new();
    for attempt in 0..calls {
        let id = CorrelationId::new();
        ids.push(id.to_string());
        let text = format!("bad{attempt}");
        assert!(instrument::with_correlation(id, || parse(&text, attempt)).is_err());
    }
    pipeline.flush().expect("flush");
    drop(pipeline);

    let db = open(&path);
    let mut rows = db
        .prepare("SELECT correlation, fields, duration_ns, reason FROM events ORDER BY id")
        .unwrap();
    let rows: Vec<(String, String, i64, String)> = rows
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), calls as usize);
    let mut seen: Vec<(String, Value)> = rows
        .into_iter()
        .map(|(correlation, fields, duration, reason)| {
            assert_eq!((duration, reason.as_str()), (3_000_000, "outcome"));
            (correlation, serde_json::from_str(&fields).unwrap())
        })
        .collect();
    seen.sort_by_key(|(_, fields)| fields["attempt"].as_u64());
    for (attempt, (correlation, fields)) in seen.iter().enumerate() {
        assert_eq!(correlation, &ids[attempt], "attempt {attempt}");
        assert_eq!(
            fields,
            &json!({"text": format!("bad{attempt}"), "attempt": attempt})
        );
    }
}
