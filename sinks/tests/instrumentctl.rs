//! `instrumentctl` end to end: a real pipeline with the real `SqliteSink` records known calls,
//! audit entries and notices into a store in a temporary directory, then the real binary reads
//! it back. Durations come from the mock clock, so every expected number is exact.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use instrument::testing::advance;
use instrument::{
    AuditEntry, ClockSource, CorrelationId, Level, Notice, instrument_performance, with_correlation,
};
use instrument_sinks::SqliteSink;
use rusqlite::Connection;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_instrumentctl");

#[instrument_performance(slow = "20ms", capture(batch, ms))]
fn step(batch: u32, ms: u64) {
    advance(Duration::from_millis(ms));
}

#[instrument_performance(capture(text))]
fn parse(text: &str) -> Result<u32, std::num::ParseIntError> {
    advance(Duration::from_millis(3));
    text.parse()
}

#[instrument_performance]
fn open_file(path: &str) -> Result<(), std::io::Error> {
    advance(Duration::from_millis(2));
    Err(std::io::Error::new(
        std::io::ErrorKind::NotFound,
        path.to_owned(),
    ))
}

#[instrument_performance]
fn explode() {
    advance(Duration::from_millis(1));
    panic!("boom");
}

/// `cargo test` runs this file's tests on parallel threads: one installed pipeline at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What `record` stored, for the assertions.
struct Recorded {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    path: PathBuf,
    /// Holds `parse("z")`, `open_file("b.rs")`, the `compile` audit entry and a notice.
    traced: CorrelationId,
    /// Holds `parse("y")` only.
    other: CorrelationId,
}

fn name(function: &str) -> String {
    format!("{}::{function}", module_path!())
}

/// Records into `DIR/instrument-data/instrument.db`:
/// - `step`: 90 calls of 1 ms, a flush (a second window), then 10 calls of 41..=50 ms (slow
///   events, `batch` = 1..=10); merged p50 1 ms, p99 49 ms, max 50 ms;
/// - `parse`: "1", "2" ok, "x", "y" (under `other`), "z" (under `traced`) failing;
/// - `open_file`: "a.rs", "b.rs" (under `traced`) failing; `explode`: one panic;
/// - audit lineage `a -compile-> b -link-> c`, a sibling `a -lint-> s`, an unrelated `x -> y`.
fn record() -> Recorded {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instrument-data").join("instrument.db");
    let sink = SqliteSink::builder().path(&path).build().expect("opens");
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .sink(sink)
        .install()
        .expect("no other pipeline is installed in this process");
    for _ in 0..90 {
        step(0, 1);
    }
    pipeline.flush().unwrap();
    for batch in 1..=10u32 {
        step(batch, 40 + u64::from(batch));
    }
    let traced = CorrelationId::new();
    let other = CorrelationId::new();
    assert!(parse("1").is_ok() && parse("2").is_ok());
    assert!(parse("x").is_err());
    assert!(with_correlation(other, || parse("y")).is_err());
    assert!(open_file("a.rs").is_err());
    with_correlation(traced, || {
        assert!(parse("z").is_err());
        instrument::audit(AuditEntry::new("compile").input("a").output("b")).unwrap();
        assert!(instrument::publish(
            Notice::new("health", Level::Warn, "disk 91% full").field("disk", "sda")
        ));
        assert!(open_file("b.rs").is_err());
    });
    instrument::audit(AuditEntry::new("link").input("b").output("c").actor("ann")).unwrap();
    instrument::audit(AuditEntry::new("lint").input("a").output("s")).unwrap();
    instrument::audit(AuditEntry::new("copy").input("x").output("y")).unwrap();
    assert!(std::panic::catch_unwind(explode).is_err());
    pipeline.flush().unwrap();
    drop(pipeline);
    Recorded {
        dir: dir.path().to_owned(),
        _dir: dir,
        path,
        traced,
        other,
    }
}

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

fn ctl_in(dir: &Path, args: &[&str]) -> Run {
    let output = Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .output()
        .expect("runs instrumentctl");
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}

/// Runs `instrumentctl --db DB ARGS`; asserts success.
fn ctl(db: &Path, args: &[&str]) -> String {
    let mut all = vec!["--db", db.to_str().unwrap()];
    all.extend_from_slice(args);
    let run = ctl_in(&std::env::temp_dir(), &all);
    assert!(run.ok, "{args:?} failed: {}", run.stderr);
    assert_eq!(run.stderr, "", "{args:?}");
    run.stdout
}

/// `ctl` with `--json`, parsed.
fn ctl_json(db: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let text = ctl(db, &all);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
}

/// Runs a command expected to fail; returns its only stderr line.
fn failing(dir: &Path, args: &[&str]) -> String {
    let run = ctl_in(dir, args);
    assert!(!run.ok, "{args:?} succeeded: {}", run.stdout);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "{args:?}: one line on stderr: {}",
        run.stderr
    );
    assert!(lines[0].starts_with("instrumentctl: "), "{}", lines[0]);
    lines[0].to_owned()
}

fn callsite<'a>(summary: &'a Value, function: &str) -> &'a Value {
    let name = name(function);
    summary["callsites"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name.as_str())
        .unwrap_or_else(|| panic!("{name} in {summary:#}"))
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

fn sorted(mut keys: Vec<&'static str>) -> Vec<&'static str> {
    keys.sort_unstable();
    keys
}

fn within_precision(got: &Value, exact_ms: u64) {
    let exact = exact_ms * 1_000_000;
    let got = got.as_u64().expect("nanoseconds");
    assert!(
        got >= exact && got <= exact + exact / 1024,
        "{got} ns is not within 1/1024 above {exact} ns"
    );
}

const EVENT_FIELDS: &[&str] = &[
    "callsite",
    "correlation",
    "duration_ns",
    "error_kind",
    "fields",
    "id",
    "labels",
    "module",
    "outcome",
    "reason",
    "start",
    "thread_id",
    "thread_name",
];

#[test]
fn summary_counts_are_exact_and_percentiles_come_from_merged_histograms() {
    let r = record();
    // The default store of the default data directory, from the working directory.
    let run = ctl_in(&r.dir, &["summary", "--json"]);
    assert!(run.ok, "{}", run.stderr);
    let summary: Value = serde_json::from_str(&run.stdout).unwrap();

    let step = callsite(&summary, "step");
    assert_eq!(step["calls"], 100);
    assert_eq!(
        (step["errors"].as_u64(), step["panics"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(step["timed"], 100);
    within_precision(&step["p50_ns"], 1);
    // Averaging the two windows' p99 (1 ms and 50 ms) would give 25.5 ms.
    within_precision(&step["p99_ns"], 49);
    assert_eq!(step["max_ns"], 50_000_000, "the maximum is exact");
    assert_eq!(step["min_ns"], 1_000_000);
    assert_eq!(
        step["mean_ns"],
        (90 + (41..=50).sum::<u64>()) * 1_000_000 / 100
    );
    assert!(step["calls_per_second"].as_f64().unwrap() > 0.0);
    let windows: i64 = Connection::open(&r.path)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM windows w JOIN callsites c ON c.id = w.callsite_id
             WHERE c.name = ?1",
            [name("step")],
            |row| row.get(0),
        )
        .unwrap();
    assert!(
        windows >= 2,
        "the flush split the calls into {windows} windows"
    );

    let parse = callsite(&summary, "parse");
    assert_eq!(
        (parse["calls"].as_u64(), parse["ok"].as_u64()),
        (Some(5), Some(2))
    );
    assert_eq!(parse["errors"], 3);
    assert_eq!(parse["error_ratio"], 0.6);
    assert_eq!(parse["p99_ns"], 3_000_000);
    let explode = callsite(&summary, "explode");
    assert_eq!(
        (explode["calls"].as_u64(), explode["panics"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(explode["error_ratio"], 1.0);

    assert_eq!(
        keys(step),
        sorted(vec![
            "name",
            "module",
            "kind",
            "labels",
            "unit",
            "calls",
            "ok",
            "errors",
            "panics",
            "cancelled",
            "error_ratio",
            "timed",
            "dropped",
            "min_ns",
            "mean_ns",
            "p50_ns",
            "p90_ns",
            "p99_ns",
            "p999_ns",
            "max_ns",
            "calls_per_second",
        ])
    );
    assert_eq!(
        keys(&summary),
        sorted(vec![
            "since",
            "until",
            "first_window_start",
            "last_window_end",
            "seconds",
            "callsites",
        ])
    );

    // A range that ends before anything was recorded holds nothing.
    let empty = ctl_json(
        &r.path,
        &[
            "summary",
            "--since",
            "all",
            "--until",
            "2000-01-01T00:00:00Z",
        ],
    );
    assert_eq!(empty["callsites"], Value::Array(vec![]));
}

#[test]
fn the_summary_table_has_one_aligned_line_per_callsite_with_human_durations() {
    let r = record();
    let table = ctl(&r.path, &["summary", "--since", "1d"]);
    let header = table.lines().next().unwrap();
    assert!(header.starts_with("CALLSITE"), "{table}");
    for column in ["CALLS", "ERRORS", "ERR%", "P50", "P99", "MAX", "CALLS/S"] {
        assert!(header.contains(column), "{header}");
    }
    let line = table
        .lines()
        .find(|l| l.starts_with(&name("step")))
        .unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        &cells[1..7],
        ["100", "0", "0.0", "1.0", "ms", "49.0"],
        "{line}"
    );
    assert!(line.contains("50.0 ms"), "{line}");
    let p99_column = header.find("P99").unwrap() + "P99".len();
    assert_eq!(
        &line[..p99_column].trim_end()[p99_column - 7..],
        "49.0 ms",
        "{table}"
    );
}

#[test]
fn slow_lists_the_longest_calls_first_with_their_arguments() {
    let r = record();
    let slow = ctl_json(&r.path, &["slow", "--top", "3"]);
    let slow = slow.as_array().unwrap();
    let durations: Vec<u64> = slow
        .iter()
        .map(|e| e["duration_ns"].as_u64().unwrap())
        .collect();
    assert_eq!(durations, [50_000_000, 49_000_000, 48_000_000]);
    let batches: Vec<&Value> = slow.iter().map(|e| &e["fields"]["batch"]).collect();
    assert_eq!(batches, [10, 9, 8]);
    assert_eq!(slow[0]["fields"]["ms"], 50);
    assert_eq!(slow[0]["reason"], "slow");
    assert_eq!(slow[0]["callsite"], name("step").as_str());
    assert_eq!(keys(&slow[0]), EVENT_FIELDS);

    // Every stored event, longest first: the 10 slow calls, then the failures.
    let all = ctl_json(&r.path, &["slow", "--top", "100", "--since", "all"]);
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 10 + 3 + 2 + 1);
    let durations: Vec<u64> = all
        .iter()
        .map(|e| e["duration_ns"].as_u64().unwrap())
        .collect();
    assert!(durations.windows(2).all(|w| w[0] >= w[1]), "{durations:?}");
    let z = all.iter().find(|e| e["fields"]["text"] == "z").unwrap();
    assert_eq!(z["correlation"], r.traced.to_string().as_str());

    let table = ctl(&r.path, &["slow", "--top", "2"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(lines[0].starts_with("DURATION"), "{table}");
    assert!(lines[1].trim_start().starts_with("50.0 ms"), "{table}");
    assert!(lines[1].contains("batch=10 ms=50"), "{table}");
    assert!(lines[2].trim_start().starts_with("49.0 ms"), "{table}");
}

#[test]
fn errors_are_counted_per_kind_with_the_latest_example() {
    let r = record();
    let groups = ctl_json(&r.path, &["errors"]);
    let groups = groups.as_array().unwrap();
    let summary: Vec<(String, String, Option<String>, u64)> = groups
        .iter()
        .map(|g| {
            (
                g["callsite"].as_str().unwrap().to_owned(),
                g["outcome"].as_str().unwrap().to_owned(),
                g["kind"].as_str().map(str::to_owned),
                g["count"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                name("parse"),
                "error".into(),
                Some("core::num::error::ParseIntError".into()),
                3
            ),
            (
                name("open_file"),
                "error".into(),
                Some("std::io::error::Error".into()),
                2
            ),
            (name("explode"), "panic".into(), None, 1),
        ],
        "most frequent first"
    );
    let latest = &groups[0]["latest"];
    assert_eq!(latest["fields"]["text"], "z", "the last failing parse");
    assert_eq!(latest["correlation"], r.traced.to_string().as_str());
    assert_eq!(keys(latest), EVENT_FIELDS);
    assert_eq!(groups[2]["latest"]["outcome"], "panic");
    assert_eq!(
        keys(&groups[0]),
        sorted(vec![
            "callsite", "module", "labels", "outcome", "kind", "count", "latest"
        ])
    );

    let table = ctl(&r.path, &["errors", "--since", "2h"]);
    let parse_line = table.lines().nth(1).unwrap();
    assert!(parse_line.trim_start().starts_with("3  "), "{table}");
    assert!(parse_line.contains("ParseIntError"), "{table}");
    assert!(parse_line.contains(&r.traced.to_string()), "{table}");
}

#[test]
fn a_trace_holds_every_record_of_its_correlation_id_in_time_order() {
    let r = record();
    let id = r.traced.to_string();
    let trace = ctl_json(&r.path, &["trace", &id.to_uppercase()]);
    assert_eq!(trace["correlation"], id.as_str());
    let entries = trace["entries"].as_array().unwrap();
    let mut kinds: Vec<(&str, &str)> = entries
        .iter()
        .map(|e| {
            let what = e["callsite"]
                .as_str()
                .or(e["operation"].as_str())
                .or(e["message"].as_str())
                .unwrap();
            (e["type"].as_str().unwrap(), what)
        })
        .collect();
    let times: Vec<&str> = entries
        .iter()
        .map(|e| {
            e["start"]
                .as_str()
                .or(e["timestamp"].as_str())
                .or(e["time"].as_str())
                .unwrap()
        })
        .collect();
    // RFC 3339 with a fixed width sorts as text.
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
    // Events keep their call order (the mock clock moves forward between them).
    let events: Vec<&str> = kinds
        .iter()
        .filter(|k| k.0 == "event")
        .map(|k| k.1)
        .collect();
    let (parse, open_file) = (name("parse"), name("open_file"));
    assert_eq!(events, [parse.as_str(), open_file.as_str()]);
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            ("audit", "compile"),
            ("event", open_file.as_str()),
            ("event", parse.as_str()),
            ("notice", "disk 91% full"),
        ]
    );
    for entry in entries {
        assert_eq!(entry["correlation"], id.as_str());
    }

    let other = ctl_json(&r.path, &["trace", &r.other.to_string()]);
    assert_eq!(other["entries"].as_array().unwrap().len(), 1);
    assert_eq!(other["entries"][0]["fields"]["text"], "y");

    let table = ctl(&r.path, &["trace", &id]);
    assert_eq!(table.lines().count(), 5, "{table}");
    assert!(table.contains("a -> b"), "{table}");
    assert!(table.contains("health warn"), "{table}");
}

fn trail(db: &Path, id: &str) -> Vec<(String, String, u64)> {
    let trail = ctl_json(db, &["audit", "trail", id]);
    assert_eq!(trail["id"], id);
    trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().unwrap().to_owned(),
                e["direction"].as_str().unwrap().to_owned(),
                e["depth"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn an_audit_trail_is_followed_transitively_upstream_and_downstream() {
    let r = record();
    let t = |op: &str, direction: &str, depth| (op.to_owned(), direction.to_owned(), depth);
    assert_eq!(
        trail(&r.path, "b"),
        [t("compile", "upstream", 1), t("link", "downstream", 1)]
    );
    assert_eq!(
        trail(&r.path, "c"),
        [t("compile", "upstream", 2), t("link", "upstream", 1)],
        "the sibling a -lint-> s is no ancestor of c"
    );
    assert_eq!(
        trail(&r.path, "a"),
        [
            t("compile", "downstream", 1),
            t("link", "downstream", 2),
            t("lint", "downstream", 1)
        ]
    );
    assert_eq!(trail(&r.path, "nothing"), []);

    let full = ctl_json(&r.path, &["audit", "trail", "c"]);
    let link = &full["entries"][1];
    assert_eq!(link["inputs"], serde_json::json!(["b"]));
    assert_eq!(link["actor"], "ann");
    assert_eq!(
        keys(link),
        sorted(vec![
            "direction",
            "depth",
            "id",
            "run_id",
            "sequence",
            "operation",
            "timestamp",
            "inputs",
            "outputs",
            "actor",
            "correlation",
            "outcome",
            "error_kind",
            "duration_ns",
            "fields",
            "callsite",
        ])
    );

    let table = ctl(&r.path, &["audit", "trail", "c"]);
    assert!(table.lines().nth(1).unwrap().contains("compile"), "{table}");
    assert!(table.lines().nth(2).unwrap().contains("link"), "{table}");
}

/// Copies the store to `name` in its directory and applies `sql` to the copy.
fn tampered(r: &Recorded, name: &str, sql: &str) -> PathBuf {
    let copy = r.path.with_file_name(name);
    std::fs::copy(&r.path, &copy).unwrap();
    Connection::open(&copy).unwrap().execute_batch(sql).unwrap();
    copy
}

#[test]
fn audit_verify_names_the_first_row_that_was_changed_deleted_or_swapped() {
    let r = record();
    let report = ctl_json(&r.path, &["audit", "verify"]);
    assert_eq!(report["verified"], true);
    assert_eq!(report["rows"], 4);
    assert!(ctl(&r.path, &["audit", "verify"]).contains("verifies: 4 rows"));

    let cases = [
        (
            "changed.db",
            "UPDATE audit SET outputs = '[\"evil\"]' WHERE id = 2",
            2,
        ),
        ("deleted.db", "DELETE FROM audit WHERE id = 2", 3),
        (
            "swapped.db",
            "CREATE TEMP TABLE saved AS SELECT * FROM audit WHERE id IN (2, 3);
             UPDATE audit SET (operation, timestamp_us, inputs, outputs, actor, correlation,
                               fields, prev_hash, hash) =
                 (SELECT operation, timestamp_us, inputs, outputs, actor, correlation, fields,
                         prev_hash, hash FROM saved WHERE saved.id = 5 - audit.id)
             WHERE id IN (2, 3);",
            2,
        ),
    ];
    for (file, sql, row) in cases {
        let copy = tampered(&r, file, sql);
        let db = copy.to_str().unwrap();
        let line = failing(&r.dir, &["--db", db, "audit", "verify"]);
        assert!(
            line.contains(&format!("audit row {row} ")),
            "{file}: {line}"
        );
        let run = ctl_in(&r.dir, &["--db", db, "audit", "verify", "--json"]);
        assert!(!run.ok);
        let report: Value = serde_json::from_str(&run.stdout).unwrap();
        assert_eq!(report["verified"], false, "{file}");
        assert_eq!(report["broken"]["id"], row, "{file}");
    }
}

#[test]
fn export_writes_every_event_as_json_lines_or_csv() {
    let r = record();
    let events: i64 = Connection::open(&r.path)
        .unwrap()
        .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
        .unwrap();
    let events = usize::try_from(events).unwrap();
    assert_eq!(events, 16);

    let jsonl = ctl(&r.path, &["export", "--since", "1d", "--format", "jsonl"]);
    let lines: Vec<Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(lines.len(), events);
    assert_eq!(keys(&lines[0]), EVENT_FIELDS);

    let out = r.dir.join("events.csv");
    let report = ctl_json(
        &r.path,
        &["export", "--format", "csv", "-o", out.to_str().unwrap()],
    );
    assert_eq!(report["rows"], events);
    let csv = std::fs::read_to_string(&out).unwrap();
    let rows: Vec<&str> = csv.split_terminator("\r\n").collect();
    assert_eq!(rows.len(), 1 + events, "header and one line per event");
    assert_eq!(
        rows[0],
        "id,start,callsite,module,labels,outcome,error_kind,duration_ns,thread_id,thread_name,\
         correlation,reason,fields"
    );
    assert!(
        rows.iter()
            .any(|row| row.contains("\"{\"\"batch\"\":10,\"\"ms\"\":50}\"")),
        "captured arguments as quoted JSON: {csv}"
    );

    // An existing file is not overwritten.
    let line = failing(
        &r.dir,
        &[
            "--db",
            r.path.to_str().unwrap(),
            "export",
            "-o",
            out.to_str().unwrap(),
        ],
    );
    assert!(line.contains("already exists"), "{line}");
    assert_eq!(std::fs::read_to_string(&out).unwrap(), csv);

    let windows = ctl(&r.path, &["export", "--table", "windows"]);
    let first: Value = serde_json::from_str(windows.lines().next().unwrap()).unwrap();
    assert!(first["histogram"]["buckets"].is_array(), "{first}");
}

#[test]
fn bad_input_fails_with_one_line_and_leaves_files_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();

    // No store at the default path, or at --db.
    let line = failing(d, &["summary"]);
    assert!(
        line.contains("instrument-data/instrument.db does not exist"),
        "{line}"
    );
    assert!(!d.join("instrument-data").exists(), "nothing is created");
    let missing = d.join("missing.db");
    let line = failing(d, &["--db", missing.to_str().unwrap(), "audit", "verify"]);
    assert!(line.contains("missing.db does not exist"), "{line}");
    assert!(!missing.exists());

    let line = failing(d, &["--db", d.to_str().unwrap(), "slow"]);
    assert!(
        line.contains("is a directory, not a database file"),
        "{line}"
    );

    // A file that is not a database, under every command that reads.
    let garbage_path = d.join("garbage.db");
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(&garbage_path, &garbage).unwrap();
    let db = garbage_path.to_str().unwrap();
    for command in [
        &["summary"][..],
        &["slow"],
        &["errors"],
        &["trace", "00000000000000aa"],
        &["audit", "trail", "a"],
        &["audit", "verify"],
        &["export"],
    ] {
        let mut args = vec!["--db", db];
        args.extend_from_slice(command);
        let line = failing(d, &args);
        assert!(
            line.contains("garbage.db is not a SQLite database"),
            "{command:?}: {line}"
        );
        assert_eq!(
            std::fs::read(&garbage_path).unwrap(),
            garbage,
            "{command:?}"
        );
    }

    // A store of a newer release.
    let newer_path = d.join("newer.db");
    drop(SqliteSink::builder().path(&newer_path).build().unwrap());
    Connection::open(&newer_path)
        .unwrap()
        .execute(
            "INSERT INTO schema_version (version, applied_us) VALUES (?1, 0)",
            [instrument_sinks::sqlite::SCHEMA_VERSION + 1],
        )
        .unwrap();
    let bytes = std::fs::read(&newer_path).unwrap();
    let line = failing(d, &["--db", newer_path.to_str().unwrap(), "summary"]);
    assert!(line.contains("newer.db has schema version"), "{line}");
    assert!(line.contains("newer"), "{line}");
    assert_eq!(std::fs::read(&newer_path).unwrap(), bytes);

    // A SQLite database that is not a store.
    let foreign = d.join("foreign.db");
    Connection::open(&foreign)
        .unwrap()
        .execute_batch("CREATE TABLE t (x)")
        .unwrap();
    let line = failing(d, &["--db", foreign.to_str().unwrap(), "errors"]);
    assert!(line.contains("not an instrument store"), "{line}");

    // Bad arguments.
    let store = d.join("store.db");
    drop(SqliteSink::builder().path(&store).build().unwrap());
    let store = store.to_str().unwrap();
    let line = failing(d, &["--db", store, "summary", "--since", "5 parsecs"]);
    assert!(line.contains("invalid --since `5 parsecs`"), "{line}");
    let line = failing(d, &["--db", store, "slow", "--until", "yesterday"]);
    assert!(line.contains("--until"), "{line}");
    let line = failing(d, &["--db", store, "trace", "not-hex"]);
    assert!(line.contains("`not-hex` is not a correlation id"), "{line}");
    let unknown = ctl_in(d, &["--db", store, "summary", "--frobnicate"]);
    assert!(!unknown.ok);
    assert!(
        unknown.stderr.contains("--frobnicate"),
        "{}",
        unknown.stderr
    );
}

#[test]
fn a_backup_verifies_restores_into_a_new_file_and_reads_the_same() {
    let r = record();
    let dest = r.dir.join("backup-1");
    let backup = ctl_json(&r.path, &["backup", dest.to_str().unwrap()]);
    assert_eq!(backup["action"], "backed up");
    assert_eq!(backup["audit_rows"], 4);
    assert!(dest.join("instrument.db").is_file() && dest.join("manifest.json").is_file());

    let verified = ctl_json(&r.path, &["verify-backup", dest.to_str().unwrap()]);
    assert_eq!(verified["sha256"], backup["sha256"]);
    let table = ctl(&r.path, &["verify-backup", dest.to_str().unwrap()]);
    assert!(table.starts_with("verified "), "{table}");
    assert!(
        table.contains(backup["sha256"].as_str().unwrap()),
        "{table}"
    );

    let restored = r.dir.join("restored").join("instrument.db");
    let restored_str = restored.to_str().unwrap();
    let report = ctl_json(&restored, &["restore", dest.to_str().unwrap()]);
    assert_eq!(report["to"], restored_str);
    let summary = |db: &Path| ctl_json(db, &["summary", "--since", "all"])["callsites"].clone();
    assert_eq!(
        summary(&restored),
        summary(&r.path),
        "the copy reads the same"
    );
    assert_eq!(ctl_json(&restored, &["audit", "verify"])["rows"], 4);

    // Restore never overwrites: the restored file stays as it is.
    let before = std::fs::read(&restored).unwrap();
    let line = failing(
        &r.dir,
        &["--db", restored_str, "restore", dest.to_str().unwrap()],
    );
    assert!(line.contains("already exists"), "{line}");
    assert_eq!(std::fs::read(&restored).unwrap(), before);

    // A backup into a directory that is not empty is refused.
    let line = failing(
        &r.dir,
        &[
            "--db",
            r.path.to_str().unwrap(),
            "backup",
            dest.to_str().unwrap(),
        ],
    );
    assert!(line.contains("not empty"), "{line}");

    // A damaged copy no longer verifies, and is not restored.
    let copy = dest.join("instrument.db");
    let mut bytes = std::fs::read(&copy).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&copy, &bytes).unwrap();
    let line = failing(&r.dir, &["verify-backup", dest.to_str().unwrap()]);
    assert!(line.contains("instrument.db"), "{line}");
    let elsewhere = r.dir.join("elsewhere.db");
    failing(
        &r.dir,
        &[
            "--db",
            elsewhere.to_str().unwrap(),
            "restore",
            dest.to_str().unwrap(),
        ],
    );
    assert!(
        !elsewhere.exists(),
        "nothing restored from a damaged backup"
    );
}

#[test]
fn prune_deletes_old_rows_and_keeps_the_audit_chain_verifiable() {
    let r = record();
    let day_us = 86_400_000_000i64;
    // Five events and the first `step` window two days into the past.
    {
        let db = Connection::open(&r.path).unwrap();
        db.execute(
            "UPDATE events SET start_us = start_us - ?1 WHERE id IN
             (SELECT id FROM events ORDER BY id LIMIT 5)",
            [2 * day_us],
        )
        .unwrap();
        db.execute(
            "UPDATE windows SET window_start_us = window_start_us - ?1,
                                window_end_us = window_end_us - ?1
             WHERE id = (SELECT min(id) FROM windows)",
            [2 * day_us],
        )
        .unwrap();
    }
    let report = ctl_json(&r.path, &["prune", "--older-than", "1d"]);
    assert_eq!(report["rows"]["events"], 5);
    assert_eq!(report["rows"]["windows"], 1);
    assert_eq!(report["rows"]["audit"], 0);
    assert_eq!(report["audit_pruned"], false);
    let events: i64 = Connection::open(&r.path)
        .unwrap()
        .query_row("SELECT count(*) FROM events", [], |row| row.get(0))
        .unwrap();
    assert_eq!(events, 16 - 5);

    // Audit rows go only when asked, never the newest, and the chain still verifies.
    let table = ctl(
        &r.path,
        &["prune", "--older-than", "30d", "--audit-older-than", "0s"],
    );
    let audit_line = table
        .lines()
        .find(|l| l.starts_with("audit "))
        .unwrap_or_else(|| panic!("{table}"));
    assert!(audit_line.ends_with(" 3"), "{table}");
    assert!(
        table.contains("audit chain now starts after row 3"),
        "{table}"
    );
    assert_eq!(ctl_json(&r.path, &["audit", "verify"])["rows"], 1);

    let line = failing(
        &r.dir,
        &[
            "--db",
            r.path.to_str().unwrap(),
            "prune",
            "--older-than",
            "a while",
        ],
    );
    assert!(line.contains("invalid --older-than `a while`"), "{line}");
    let missing = r.dir.join("missing.db");
    let line = failing(
        &r.dir,
        &[
            "--db",
            missing.to_str().unwrap(),
            "prune",
            "--older-than",
            "1d",
        ],
    );
    assert!(line.contains("missing.db does not exist"), "{line}");
    assert!(!missing.exists());
}

#[test]
fn a_store_is_read_while_its_sink_still_writes() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instrument.db");
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .sink(SqliteSink::builder().path(&path).build().unwrap())
        .install()
        .unwrap();
    for _ in 0..7 {
        step(0, 2);
    }
    pipeline.flush().unwrap();
    // The sink's connection is open, the WAL holds the batches: the reader sees them.
    assert!(path.with_file_name("instrument.db-wal").exists());
    let summary = ctl_json(&path, &["summary"]);
    assert_eq!(callsite(&summary, "step")["calls"], 7);
    for _ in 0..3 {
        step(0, 2);
    }
    pipeline.flush().unwrap();
    let summary = ctl_json(&path, &["summary"]);
    assert_eq!(callsite(&summary, "step")["calls"], 10);
    drop(pipeline);
}

/// A health change as the health registry publishes it.
fn health_change(component: &str, status: &str, reason: Option<&str>) -> Notice {
    let mut notice = Notice::new("health", Level::Warn, format!("{component} is {status}"))
        .field("component", component)
        .field("status", status);
    if let Some(reason) = reason {
        notice = notice.field("reason", reason);
    }
    notice
}

/// An alert's state change as the alert engine publishes it.
fn alert_change(id: u64, fingerprint: &str, state: &str, value: &str, function: &str) -> Notice {
    let percent = value.parse::<f64>().unwrap() * 100.0;
    Notice::new(
        "alerts",
        Level::Warn,
        format!("{function} failed {percent}% of its calls"),
    )
    .field("id", id)
    .field("rule", "HighErrorRatio")
    .field("fingerprint", fingerprint)
    .field("state", state)
    .field("severity", "warning")
    .field(
        "labels",
        format!(r#"{{"alertname":"HighErrorRatio","function":"{function}","severity":"warning"}}"#),
    )
    .field("value", value)
    .field("started_us", 1_700_000_000_000_000u64)
    .field("silenced", false)
}

#[test]
fn health_and_alerts_list_what_the_registry_and_the_engine_published() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instrument.db");
    let pipeline = instrument::builder()
        .sink(SqliteSink::builder().path(&path).build().unwrap())
        .install()
        .unwrap();
    for notice in [
        health_change("sink:sqlite", "healthy", None),
        health_change("overall", "healthy", None),
        health_change("sink:sqlite", "unhealthy", Some("cannot write: disk full")),
        health_change("overall", "unhealthy", Some("sink:sqlite unhealthy")),
        alert_change(1, "00000000000000aa", "firing", "0.5", "app::parse"),
        alert_change(2, "00000000000000bb", "firing", "0.2", "app::load"),
        alert_change(1, "00000000000000aa", "resolved", "0.01", "app::parse"),
    ] {
        assert!(instrument::publish(notice));
        // One change per batch, so that each is stored in its own transaction, in order.
        pipeline.flush().unwrap();
    }
    pipeline.shutdown().unwrap();

    let health = ctl_json(&path, &["health", "--since", "all"]);
    let latest: Vec<(&str, &str)> = health["latest"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["component"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        latest,
        [("overall", "unhealthy"), ("sink:sqlite", "unhealthy")]
    );
    assert_eq!(health["latest"][1]["reason"], "cannot write: disk full");
    assert_eq!(health["history"].as_array().unwrap().len(), 4);
    assert_eq!(health["history"][0]["component"], "overall", "newest first");
    let table = ctl(&path, &["health", "--since", "all"]);
    let first_rows: Vec<&str> = table.lines().take(4).collect();
    assert_eq!(first_rows[0], "Latest status");
    assert!(
        first_rows[1].starts_with("COMPONENT    STATUS     SINCE"),
        "{table}"
    );
    assert!(
        first_rows[2].starts_with("overall      unhealthy  "),
        "{table}"
    );
    assert!(
        first_rows[3].ends_with("cannot write: disk full"),
        "{table}"
    );

    // Open alerts: the second only; --all: both, the first resolved with its last value.
    let open = ctl_json(&path, &["alerts"]);
    let open = open.as_array().unwrap();
    assert_eq!(open.len(), 1);
    assert_eq!(open[0]["fingerprint"], "00000000000000bb");
    assert_eq!(open[0]["state"], "firing");
    let all = ctl_json(&path, &["alerts", "--all"]);
    let resolved = all
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["fingerprint"] == "00000000000000aa")
        .unwrap();
    assert_eq!(resolved["state"], "resolved");
    assert_eq!(resolved["value"], 0.01);
    assert_eq!(resolved["labels"]["function"], "app::parse");
    assert_eq!(resolved["started"], "2023-11-14T22:13:20.000000Z");
    assert!(resolved["resolved"].is_string());
    assert_eq!(all.as_array().unwrap().len(), 2, "one row per episode");
    let table = ctl(&path, &["alerts"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].starts_with("ID  STATE   SEVERITY  RULE"),
        "{table}"
    );
    assert!(
        lines[1].contains(" firing  warning   HighErrorRatio "),
        "{table}"
    );
    assert!(
        lines[1].ends_with("function=app::load  app::load failed 20% of its calls"),
        "{table}"
    );
    let none = tempfile::tempdir().unwrap();
    let empty = none.path().join("instrument.db");
    drop(SqliteSink::builder().path(&empty).build().unwrap());
    assert_eq!(
        ctl(&empty, &["alerts"]),
        "no open alerts (--all lists resolved ones too)\n"
    );
}

/// Runs Debian's `promtool check rules FILE` on `yaml`; its combined output.
fn promtool_check_rules(dir: &Path, yaml: &str) -> (bool, String) {
    let file = dir.join("rules.yml");
    std::fs::write(&file, yaml).unwrap();
    let output = match Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&file)
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`promtool` is not installed: install Debian's `prometheus` package \
             (`apt-get install prometheus`; `.ci/run` installs it)"
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn prometheus_rules_cover_every_timed_callsite_and_promtool_accepts_them() {
    let r = record();
    let yaml = ctl(&r.path, &["prometheus", "rules"]);
    let (ok, output) = promtool_check_rules(&r.dir, &yaml);
    assert!(ok, "promtool rejected the rules:\n{output}\n{yaml}");
    // 10 recording rules for all callsites, then per callsite 4 slow-call ratios and 6 alerts.
    assert!(output.contains("SUCCESS: 50 rules found"), "{output}");
    for function in ["step", "parse", "open_file", "explode"] {
        let group = format!("- name: instrument-callsite {}\n", name(function));
        assert!(yaml.contains(&group), "no group for {function}:\n{yaml}");
    }
    assert!(yaml.starts_with("# Prometheus rules for the 4 timed callsites of "));

    // Thresholds: defaults, overridden for all callsites and for one.
    let step = name("step");
    let yaml = ctl(
        &r.path,
        &[
            "prometheus",
            "rules",
            "--error-ratio",
            "0.01",
            "--p99",
            "100ms",
            "--window",
            "10m",
            "--for",
            "1m",
            &format!("--p99-for={step}=50ms"),
            &format!("--error-ratio-for={step}=0.02"),
        ],
    );
    let (ok, output) = promtool_check_rules(&r.dir, &yaml);
    assert!(ok, "promtool rejected the rules:\n{output}\n{yaml}");
    let parse = name("parse");
    for expected in [
        format!(
            "job_function:instrument_call_errors:ratio_rate10m{{function=\"{parse}\",module=\"instrumentctl\"}} > 0.01"
        ),
        format!(
            "job_function:instrument_call_errors:ratio_rate10m{{function=\"{step}\",module=\"instrumentctl\"}} > 0.02"
        ),
        format!("function=\"{parse}\",module=\"instrumentctl\",le=\"0.1\""),
        format!("function=\"{step}\",module=\"instrumentctl\",le=\"0.05\""),
        "for: 1m\n".to_owned(),
    ] {
        assert!(yaml.contains(&expected), "missing {expected}:\n{yaml}");
    }

    // `--json` writes the same file as JSON, which Prometheus reads as well (JSON is YAML).
    let json = ctl_json(&r.path, &["prometheus", "rules"]);
    let groups = json["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 5);
    let (ok, output) = promtool_check_rules(&r.dir, &json.to_string());
    assert!(ok, "promtool rejected the JSON rules:\n{output}");
}

#[test]
fn prometheus_rules_refuse_bad_thresholds_with_one_line() {
    let r = record();
    let db = r.path.to_str().unwrap();
    let cases: [(&[&str], &str); 5] = [
        (
            &["--p99", "300ms"],
            "instrumentctl: the p99 objective 300ms for all callsites is not a bucket bound of \
             instrument_duration_seconds (1us, 5us, 10us, 50us, 100us, 500us, 1ms, 5ms, 10ms, \
             50ms, 100ms, 500ms, 1s, 5s, 10s): choose one of them, or give the sink's buckets",
        ),
        (
            &["--error-ratio", "2"],
            "instrumentctl: invalid error ratio 2 for all callsites: give a ratio between 0 and \
             1, such as 0.05",
        ),
        (
            &["--p99-for", "nope=1ms"],
            "names `nope`, which is not a timed callsite of",
        ),
        (
            &["--window", "soon"],
            "instrumentctl: invalid --window `soon`: ",
        ),
        (
            &["--error-ratio-for", "no-equals-sign"],
            "instrumentctl: invalid --error-ratio-for `no-equals-sign`: give NAME=VALUE",
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["--db", db, "prometheus", "rules"];
        all.extend_from_slice(args);
        let line = failing(&r.dir, &all);
        assert!(line.contains(expected), "{args:?}: {line}");
    }
    // With the sink's own buckets, 300ms is fine.
    let yaml = ctl(
        &r.path,
        &[
            "prometheus",
            "rules",
            "--p99",
            "300ms",
            "--buckets",
            "100ms,300ms,1s",
        ],
    );
    assert!(yaml.contains("le=\"0.3\""), "{yaml}");
    // A missing store is named.
    let missing = r.dir.join("missing.db");
    let line = failing(
        &r.dir,
        &["--db", missing.to_str().unwrap(), "prometheus", "rules"],
    );
    assert!(line.contains(missing.to_str().unwrap()), "{line}");
}
