//! `instrumentctl runs`, `compare`, `trend`, `report` and `callgraph` end to end: two real
//! pipelines, one after the other, record into one store with the real `SqliteSink`; the
//! second run's `parse` is slowed by a known injected delay. Durations come from the mock
//! clock, so every expected number and verdict is exact.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use instrument::testing::advance;
use instrument::{
    AuditEntry, ClockSource, CorrelationId, instrument_performance, with_correlation,
};
use instrument_sinks::SqliteSink;
use rusqlite::Connection;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_instrumentctl");

/// Files per run.
const FILES: u64 = 200;

#[instrument_performance(sample = 1.0, capture(path))]
fn parse(path: &str, ms: u64) -> Result<(), std::io::Error> {
    advance(Duration::from_millis(ms));
    if failing(path) {
        return Err(std::io::Error::other("bad file"));
    }
    Ok(())
}

/// The files that fail in every run: f17.rs, f27.rs, ... f97.rs.
fn failing(path: &str) -> bool {
    path.len() == 6 && path.ends_with("7.rs")
}

#[instrument_performance(sample = 1.0)]
fn analyze(ms: u64) {
    advance(Duration::from_millis(ms));
}

#[instrument_performance(sample = 1.0)]
fn process(path: &str, parse_ms: u64, analyze_ms: u64) {
    advance(Duration::from_micros(100));
    let _ = parse(path, parse_ms);
    analyze(analyze_ms);
}

#[instrument_performance(sample = 1.0)]
fn store(files: u64) {
    advance(Duration::from_millis(files));
}

/// `cargo test` runs this file's tests on parallel threads: one installed pipeline at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn name(function: &str) -> String {
    format!("{}::{function}", module_path!())
}

/// One run of the "pipeline": for each of 200 files, `process` calls `parse` (1 to 5 ms, plus
/// `delay_ms`) and `analyze` (2 to 4 ms) under the file's correlation id, then `store` takes
/// the file on (1 ms) under the same id after `process` has returned.
fn run(path: &Path, delay_ms: u64) {
    let sink = SqliteSink::builder()
        .path(path)
        .program_version("1.4.2")
        .run_config("threads = 2\n")
        .build()
        .expect("opens");
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .sink(sink)
        .install()
        .expect("no other pipeline is installed in this process");
    for i in 0..FILES {
        let file = format!("f{i}.rs");
        with_correlation(CorrelationId::new(), || {
            process(&file, 1 + i % 5 + delay_ms, 2 + i % 3);
            store(1);
            if !failing(&file) {
                instrument::audit(
                    AuditEntry::new("parse")
                        .input(&file)
                        .output(format!("{file}.ast")),
                )
                .unwrap();
            }
        });
    }
    pipeline.shutdown().expect("shuts down");
}

struct Runs {
    _dir: tempfile::TempDir,
    dir: PathBuf,
    db: PathBuf,
}

/// Run 1 without delay, run 2 with `parse` 2 ms slower.
fn two_runs() -> Runs {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("instrument.db");
    run(&db, 0);
    run(&db, 2);
    Runs {
        dir: dir.path().to_owned(),
        db,
        _dir: dir,
    }
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

fn ctl(db: &Path, args: &[&str]) -> Out {
    let output = Command::new(BIN)
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("runs instrumentctl");
    Out {
        code: output.status.code().expect("exited"),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

fn json(db: &Path, args: &[&str]) -> (i32, Value) {
    let out = ctl(db, &[&["--json"], args].concat());
    let value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("{args:?}: {e}\n{}\n{}", out.stdout, out.stderr));
    (out.code, value)
}

fn verdicts(comparison: &Value) -> Vec<(String, String)> {
    comparison["callsites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"]
                    .as_str()
                    .unwrap()
                    .rsplit("::")
                    .next()
                    .unwrap()
                    .to_owned(),
                c["verdict"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

#[test]
fn runs_are_listed_with_their_identity_calls_and_errors() {
    let r = two_runs();
    let (code, runs) = json(&r.db, &["runs"]);
    assert_eq!(code, 0);
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2);
    let digest: String = {
        use sha2::Digest as _;
        let bytes = sha2::Sha256::digest(b"threads = 2\n");
        bytes.iter().fold(String::new(), |mut hex, b| {
            use std::fmt::Write as _;
            let _ = write!(hex, "{b:02x}");
            hex
        })
    };
    for (i, run) in runs.iter().enumerate() {
        assert_eq!(run["id"], i64::try_from(i + 1).unwrap());
        assert_eq!(run["pid"], std::process::id());
        assert_eq!(run["program_version"], "1.4.2");
        // SHA-256 of the configuration text.
        assert_eq!(run["config_digest"], digest.as_str());
        assert!(run["ended"].is_string(), "{run}");
        // process + parse + analyze + store, 200 each; nine files fail to parse.
        assert_eq!(run["calls"], 4 * FILES);
        assert_eq!(run["errors"], 9);
        assert_eq!(run["audit_entries"], FILES - 9);
        assert_eq!(run["audited_inputs"], FILES - 9);
        assert!(run["duration_ns"].as_i64().unwrap() >= 0);
    }

    let table = ctl(&r.db, &["runs"]);
    assert_eq!(table.code, 0);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("RUN  STARTED"), "{}", table.stdout);
    assert_eq!(lines.len(), 3, "{}", table.stdout);
    assert!(
        lines[1].contains("1.4.2") && lines[1].contains("800"),
        "{}",
        lines[1]
    );
}

#[test]
fn the_slowed_stage_regresses_and_the_others_do_not() {
    let r = two_runs();
    let (code, comparison) = json(&r.db, &["compare", "1", "2"]);
    assert_eq!(code, 3, "exit status 3 when something regressed");
    assert_eq!(comparison["verdict"], "regressed");
    assert_eq!(comparison["regressed"], 2);
    assert_eq!(
        verdicts(&comparison),
        pairs(&[
            ("analyze", "unchanged"),
            ("parse", "regressed"),
            // `process` includes `parse`: it is slower by the same 2 ms.
            ("process", "regressed"),
            ("store", "unchanged"),
        ])
    );
    let parse = &comparison["callsites"][1];
    // 1..=5 ms (p50 3 ms) became 3..=7 ms (p50 5 ms): +66.7%, exact within 1/1024.
    let change = parse["p50_change"].as_f64().unwrap();
    assert!((change - 2.0 / 3.0).abs() < 0.002, "{change}");
    assert_eq!(parse["a"]["calls"], FILES);
    assert_eq!(parse["latency"]["verdict"], "regressed");
    assert!(parse["latency"]["p_value"].as_f64().unwrap() < 1e-10);
    assert_eq!(parse["errors"]["verdict"], "unchanged");
    let analyze = &comparison["callsites"][0];
    assert_eq!(analyze["p50_change"], 0.0);
    assert_eq!(analyze["latency"]["z"], 0.0);

    // The other way round, the removed delay is an improvement, and the exit status 0.
    let (code, back) = json(&r.db, &["compare", "2", "1"]);
    assert_eq!(code, 0);
    assert_eq!(back["verdict"], "improved");
    assert_eq!(
        verdicts(&back),
        pairs(&[
            ("analyze", "unchanged"),
            ("parse", "improved"),
            ("process", "improved"),
            ("store", "unchanged"),
        ])
    );
    // A run against itself: nothing changed.
    let (code, same) = json(&r.db, &["compare", "1", "1"]);
    assert_eq!((code, same["verdict"].as_str()), (0, Some("unchanged")));

    // A minimum effect above the change: unchanged.
    let (code, tolerant) = json(&r.db, &["compare", "1", "2", "--min-change", "0.9"]);
    assert_eq!((code, tolerant["verdict"].as_str()), (0, Some("unchanged")));

    // The table: one line per callsite, the verdict and why.
    let table = ctl(&r.db, &["compare", "1", "2"]);
    assert_eq!(table.code, 3);
    let line = table
        .stdout
        .lines()
        .find(|l| l.contains("::parse "))
        .expect("a line for parse");
    assert!(
        line.contains("regressed") && line.contains("+66.7%"),
        "{line}"
    );
    assert!(
        table.stdout.contains("regressed: 2 regressed, 0 improved"),
        "{}",
        table.stdout
    );
}

#[test]
fn a_trend_has_the_calls_errors_and_percentiles_of_each_bucket() {
    let r = two_runs();
    let (code, trend) = json(
        &r.db,
        &["trend", &name("parse"), "--since", "all", "--by", "hour"],
    );
    assert_eq!(code, 0);
    assert_eq!(trend["bucket_seconds"], 3600);
    let buckets = trend["buckets"].as_array().unwrap();
    assert!(!buckets.is_empty());
    let calls: u64 = buckets.iter().map(|b| b["calls"].as_u64().unwrap()).sum();
    assert_eq!(calls, 2 * FILES);
    // Each bucket's figures against the windows stored in its hour, with plain SQL.
    let db = Connection::open(&r.db).unwrap();
    for b in buckets {
        let start = humantime::parse_rfc3339(b["start"].as_str().unwrap()).unwrap();
        let start_us = i64::try_from(
            start
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_micros(),
        )
        .unwrap();
        let (calls, errors): (i64, i64) = db
            .query_row(
                "SELECT sum(w.count), sum(CASE WHEN w.outcome = 'error' THEN w.count ELSE 0 END)
                 FROM windows w JOIN callsites c ON c.id = w.callsite_id
                 WHERE c.name = ?1 AND w.window_start_us >= ?2 AND w.window_start_us < ?3",
                (name("parse"), start_us, start_us + 3_600_000_000),
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(b["calls"], calls);
        assert_eq!(b["errors"], errors);
        assert!(b["p50_ns"].as_u64().unwrap() >= 1_000_000);
    }
    let table = ctl(&r.db, &["trend", &name("parse"), "--since", "all"]);
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(table.stdout.starts_with("BUCKET"), "{}", table.stdout);
}

#[test]
fn the_call_graph_has_nested_calls_and_the_flow_of_each_file() {
    let r = two_runs();
    let (code, graph) = json(&r.db, &["callgraph", "--run", "2", "--format", "json"]);
    assert_eq!(code, 0);
    assert_eq!(graph["run_id"], 2);
    let edges: Vec<(String, String, String, u64)> = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let short = |v: &Value| v.as_str().unwrap().rsplit("::").next().unwrap().to_owned();
            (
                short(&e["from"]),
                short(&e["to"]),
                e["kind"].as_str().unwrap().to_owned(),
                e["count"].as_u64().unwrap(),
            )
        })
        .collect();
    let expect =
        |from: &str, to: &str, kind: &str| (from.to_owned(), to.to_owned(), kind.to_owned(), FILES);
    assert_eq!(
        edges,
        [
            expect("process", "analyze", "call"),
            expect("process", "parse", "call"),
            expect("process", "store", "flow"),
        ]
    );
    let parse_time: u64 = graph["edges"][1]["total_ns"].as_u64().unwrap();
    // 200 calls of 3..=7 ms: 40 of each.
    assert_eq!(parse_time, 40 * (3 + 4 + 5 + 6 + 7) * 1_000_000);
    let nodes = graph["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 4);
    assert!(
        nodes
            .iter()
            .all(|n| n["calls"] == FILES && n["events"] == FILES)
    );

    let dot = ctl(&r.db, &["callgraph", "--run", "1"]);
    assert_eq!(dot.code, 0);
    assert!(dot.stdout.starts_with("digraph calls {"), "{}", dot.stdout);
    assert!(
        dot.stdout.contains(&format!(
            "\"{}\" -> \"{}\" [label=\"flow x 200",
            name("process"),
            name("store")
        )),
        "{}",
        dot.stdout
    );
}

#[test]
fn bad_input_fails_with_one_line() {
    let r = two_runs();
    let one_line = |out: &Out| {
        assert_ne!(out.code, 0);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(out.stdout.is_empty(), "{}", out.stdout);
        out.stderr.clone()
    };
    let e = one_line(&ctl(&r.db, &["compare", "1", "9"]));
    assert!(e.contains("has no run 9"), "{e}");
    assert_eq!(ctl(&r.db, &["compare", "1", "9"]).code, 1);
    let e = one_line(&ctl(&r.db, &["report", "--run", "42"]));
    assert!(e.contains("has no run 42"), "{e}");
    let e = one_line(&ctl(&r.db, &["callgraph", "--run", "0"]));
    assert!(e.contains("has no run 0"), "{e}");
    let e = one_line(&ctl(&r.db, &["trend", "nope"]));
    assert!(e.contains("no callsite named `nope`"), "{e}");
    let e = one_line(&ctl(
        &r.db,
        &[
            "trend",
            &name("parse"),
            "--since",
            "2001-01-01T00:00:00Z",
            "--until",
            "2001-02-01T00:00:00Z",
        ],
    ));
    assert!(
        e.contains("no calls of") && e.contains("2001-01-01T00:00:00.000000Z"),
        "{e}"
    );
    let e = one_line(&ctl(
        &r.db,
        &[
            "report",
            "--since",
            "2001-01-01T00:00:00Z",
            "--until",
            "2001-02-01T00:00:00Z",
        ],
    ));
    assert!(e.contains("no calls of a timed callsite"), "{e}");
    let e = one_line(&ctl(&r.db, &["compare", "1", "2", "--alpha", "2"]));
    assert!(e.contains("invalid --alpha `2`"), "{e}");
    // An existing output file is not overwritten.
    let existing = r.dir.join("report.md");
    std::fs::write(&existing, "keep").unwrap();
    let e = one_line(&ctl(
        &r.db,
        &["report", "--since", "all", "-o", existing.to_str().unwrap()],
    ));
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep");

    // A store written by a newer release.
    let newer = r.dir.join("newer.db");
    std::fs::copy(&r.db, &newer).unwrap();
    Connection::open(&newer)
        .unwrap()
        .execute(
            "INSERT INTO schema_version (version, applied_us) VALUES (99, 0)",
            [],
        )
        .unwrap();
    for args in [
        &["runs"][..],
        &["compare", "1", "2"],
        &["report"],
        &["trend", "x"],
        &["callgraph"],
    ] {
        let e = one_line(&ctl(&newer, args));
        assert!(e.contains("schema version 99"), "{args:?}: {e}");
    }
}

/// The store's figures for run `run`'s callsite `function`: calls, failed calls.
fn calls_of(db: &Connection, run: i64, function: &str) -> (i64, i64) {
    db.query_row(
        "SELECT sum(w.count), sum(CASE WHEN w.outcome IN ('error', 'panic') THEN w.count ELSE 0 END)
         FROM windows w JOIN callsites c ON c.id = w.callsite_id
         WHERE w.run_id = ?1 AND c.name = ?2",
        (run, name(function)),
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .unwrap()
}

/// The lines of a Markdown section, from its `## ` heading to the next.
fn section<'a>(md: &'a str, heading: &str) -> Vec<&'a str> {
    let mut lines = md.lines().skip_while(|l| *l != format!("## {heading}"));
    assert!(lines.next().is_some(), "no section {heading} in\n{md}");
    lines
        .take_while(|l| !l.starts_with("## "))
        .filter(|l| !l.is_empty())
        .collect()
}

/// Adds an alert of rule `rule` that fired during run 2 and was acknowledged by `ann`.
fn add_alert(db: &Path) {
    let db = Connection::open(db).unwrap();
    let (start, end): (i64, i64) = db
        .query_row(
            "SELECT started_us, ended_us FROM runs WHERE id = 2",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    db.execute(
        "INSERT INTO alerts (rule, state, severity, labels, message, value, started_us,
                             updated_us, resolved_us, acked_us, acked_by, fingerprint, silenced)
         VALUES ('parse_slow', 'resolved', 'warning', '{}', 'parse p99 above 6ms', 7.0, ?1, ?2,
                 ?2, ?1, 'ann', 'ff00', 0)",
        (start, end),
    )
    .unwrap();
}

#[test]
fn the_markdown_report_matches_the_store_line_by_line() {
    let r = two_runs();
    add_alert(&r.db);
    // A scheduled backup beside the store.
    let backups = r.dir.join("backups");
    let backup = backups.join("backup-20260101T000000.000000Z");
    let out = ctl(&r.db, &["backup", backup.to_str().unwrap()]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(backup.join("manifest.json")).unwrap()).unwrap();

    let out = ctl(
        &r.db,
        &[
            "report",
            "--run",
            "2",
            "--backups",
            backups.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let md = out.stdout;
    let db = Connection::open(&r.db).unwrap();
    assert_eq!(md.lines().next(), Some("# Instrument report: run 2"));

    let runs = section(&md, "Runs");
    assert_eq!(runs.len(), 3, "{runs:?}");
    let (started, ended): (i64, i64) = db
        .query_row(
            "SELECT started_us, ended_us FROM runs WHERE id = 2",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let cells: Vec<&str> = runs[2].split(" | ").collect();
    assert_eq!(cells[0], "| 2");
    assert!(
        cells[3] == "1.4.2" && cells[7] == "800" && cells[8] == "9",
        "{cells:?}"
    );
    assert_eq!(cells[9], format!("{} |", FILES - 9));
    assert_eq!(cells[4], instrument_sinks::sqlite::query::rfc3339(started));
    assert_eq!(cells[5], instrument_sinks::sqlite::query::rfc3339(ended));

    check_throughput_and_trends(&md, &db);
    check_slow_and_errors(&md, &db);
    // Alerts: the one that fired, and who acknowledged it.
    let alerts = section(&md, "Alerts");
    assert!(
        alerts[2].starts_with("| parse_slow | warning | resolved |"),
        "{alerts:?}"
    );
    assert!(alerts[2].contains("| ann at "), "{alerts:?}");
    assert_eq!(alerts[3], "1 alerts, 1 acknowledged.");

    // Audit coverage: 191 of the 200 files parse and have an entry; the 9 that fail do not.
    let audit = section(&md, "Audit coverage");
    assert_eq!(
        audit[0],
        format!("Audit entries in the range: {}.", FILES - 9)
    );
    assert_eq!(
        audit[1],
        "Files (argument `path` of the stored calls): 200; with an audit entry: 191; without: 9."
    );
    let without: Vec<&str> = audit[2..].to_vec();
    let expected: Vec<String> = (1..10)
        .map(|d| format!("- without an audit entry: `f{d}7.rs`"))
        .collect();
    assert_eq!(without, expected);

    check_backups(&md, &manifest);

    // Against run 1.
    let comparison = section(&md, "Against the previous run");
    assert_eq!(
        comparison[0],
        "Run 2 against run 1: regressed (2 regressed, 0 improved)."
    );
    let verdict_of = |function: &str| {
        let line = comparison
            .iter()
            .find(|l| l.starts_with(&format!("| {} |", name(function))))
            .unwrap();
        line.trim_end_matches(" |")
            .rsplit(" | ")
            .next()
            .unwrap()
            .to_owned()
    };
    assert_eq!(verdict_of("parse"), "regressed");
    assert_eq!(verdict_of("process"), "regressed");
    assert_eq!(verdict_of("analyze"), "unchanged");
    assert_eq!(verdict_of("store"), "unchanged");

    // Run 1 has no previous run; a report over everything covers both.
    let first = ctl(&r.db, &["report", "--run", "1"]).stdout;
    assert_eq!(
        section(&first, "Against the previous run"),
        ["No previous run to compare with."]
    );
    let all = ctl(&r.db, &["report", "--since", "all"]).stdout;
    assert_eq!(section(&all, "Runs").len(), 4);
}

/// The throughput rows and the trend tables of run 2's report against the store.
fn check_throughput_and_trends(md: &str, db: &Connection) {
    // Throughput: one row per callsite with the store's counts and the mock clock's exact
    // percentiles (run 2's parse takes 3 to 7 ms, analyze 2 to 4 ms).
    let rows = section(md, "Throughput and latency per stage");
    assert_eq!(rows.len(), 2 + 4, "{rows:?}");
    for (function, p50, p90, p99) in [
        ("analyze", "3.0 ms", "4.0 ms", "4.0 ms"),
        ("parse", "5.0 ms", "7.0 ms", "7.0 ms"),
        ("store", "1.0 ms", "1.0 ms", "1.0 ms"),
    ] {
        let (total, failed) = calls_of(db, 2, function);
        let line = rows
            .iter()
            .find(|l| l.starts_with(&format!("| {} |", name(function))))
            .unwrap_or_else(|| panic!("no row for {function}: {rows:?}"));
        let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
        assert_eq!(cells[1], total.to_string(), "{line}");
        assert_eq!(cells[3], failed.to_string(), "{line}");
        assert_eq!(
            cells[4],
            format!("{:.1}%", failed as f64 * 100.0 / total as f64),
            "{line}"
        );
        assert_eq!((cells[5], cells[6], cells[7]), (p50, p90, p99), "{line}");
    }

    // Trends: one table per callsite whose calls add up to the store's.
    for function in ["analyze", "parse", "process", "store"] {
        let heading = format!("### {}", name(function));
        let table: Vec<&str> = md
            .lines()
            .skip_while(|l| *l != heading)
            // The heading, a blank line, the header and its rule.
            .skip(4)
            .take_while(|l| l.starts_with('|'))
            .collect();
        let total: i64 = table
            .iter()
            .map(|l| l.split('|').nth(2).unwrap().trim().parse::<i64>().unwrap())
            .sum();
        assert_eq!(total, calls_of(db, 2, function).0, "{function}: {table:?}");
    }
}

/// The slowest inputs and the error kinds of run 2's report against the store.
fn check_slow_and_errors(md: &str, db: &Connection) {
    // The slowest inputs: the store's ten longest events of the run, in order.
    let slow = section(md, "Slowest inputs");
    let expected: Vec<(i64, String)> = db
        .prepare(
            "SELECT e.duration_ns, c.name FROM events e JOIN callsites c ON c.id = e.callsite_id
             WHERE e.run_id = 2 ORDER BY e.duration_ns DESC, e.id LIMIT 10",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(slow.len(), 2 + expected.len());
    for (line, (ns, callsite)) in slow[2..].iter().zip(&expected) {
        assert!(
            line.starts_with(&format!("| {:.1} ms | {callsite} |", *ns as f64 / 1e6)),
            "{line}"
        );
    }

    // Error kinds: the store's.
    let (kind, count): (String, i64) = db
        .query_row(
            "SELECT we.kind, sum(we.count) FROM window_errors we JOIN windows w ON w.id = we.window_id
             WHERE w.run_id = 2 GROUP BY we.kind",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let errors = section(md, "Error kinds");
    assert_eq!(errors.len(), 3, "{errors:?}");
    assert!(
        errors[2].starts_with(&format!("| {count} | {} | error | {kind} |", name("parse"))),
        "{}",
        errors[2]
    );
}

/// Runs headless Chromium on `page`: its DOM after loading, and the console messages it
/// logged.
fn chromium(page: &Path) -> (String, Vec<String>) {
    let output = match Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--dump-dom",
        ])
        .arg(format!("file://{}", page.display()))
        .output()
    {
        Ok(output) => output,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`chromium` is not installed: install Debian's `chromium` package \
             (`apt-get install chromium`; `.ci/run` installs it)"
        ),
        Err(e) => panic!("cannot run chromium: {e}"),
    };
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let console = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|l| l.contains(":CONSOLE"))
        .map(str::to_owned)
        .collect();
    (String::from_utf8(output.stdout).unwrap(), console)
}

#[test]
fn the_html_report_opens_in_chromium_with_its_charts_drawn() {
    let r = two_runs();
    let page = r.dir.join("report.html");
    let out = ctl(
        &r.db,
        &[
            "report",
            "--since",
            "all",
            "--format",
            "html",
            "-o",
            page.to_str().unwrap(),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("<script"), "the report runs no script");
    // Nothing to fetch: no `src` or `href` anywhere (SVG's `xmlns` names, not loads).
    assert!(
        !html.contains(" src=") && !html.contains("href="),
        "the report loads nothing"
    );

    // As it is: it loads without a console message.
    let (dom, console) = chromium(&page);
    assert!(console.is_empty(), "console: {console:?}");
    assert_eq!(
        dom.matches("<figure class=\"chart\"><svg").count(),
        4,
        "four charts"
    );

    // The same page with a probe: the browser's own geometry of each chart's lines, so the
    // charts are laid out and drawn, not only present.
    let probe = r.dir.join("probe.html");
    std::fs::write(
        &probe,
        html.replace(
            "</body>",
            "<script>\
             const charts = [...document.querySelectorAll('figure.chart svg')];\
             const drawn = charts.map(svg => [...svg.querySelectorAll('polyline')]\
                 .filter(l => { const b = l.getBBox(); return b.width > 0 && l.points.length > 1; }).length);\
             console.log('drawn ' + JSON.stringify(drawn));\
             </script></body>",
        ),
    )
    .unwrap();
    let (_, console) = chromium(&probe);
    let drawn = console
        .iter()
        .find_map(|l| l.split("\"drawn ").nth(1))
        .unwrap_or_else(|| panic!("no probe output: {console:?}"));
    // Four callsites, one line each, in each of the four charts (plus the mesh's own lines).
    let counts: Vec<u64> = serde_json::from_str(drawn.split('"').next().unwrap()).unwrap();
    assert_eq!(counts.len(), 4, "{drawn}");
    assert!(counts.iter().all(|&c| c >= 4), "{counts:?}");
    // The probe's detection works: a page with an error is caught.
    let broken = r.dir.join("broken.html");
    std::fs::write(
        &broken,
        "<html><body><script>console.error('broken')</script></body></html>",
    )
    .unwrap();
    assert_eq!(chromium(&broken).1.len(), 1);
}

#[instrument_performance]
fn tick_work(ms: u64) {
    std::thread::sleep(Duration::from_millis(ms));
}

/// The files `report-*.html` in `dir`, by name.
fn reports_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .filter(|n| {
                    n.starts_with("report-")
                        && Path::new(n).extension().is_some_and(|e| e == "html")
                })
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn the_sink_writes_scheduled_reports_and_keeps_the_newest() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let reports = dir.path().join("reports");
    let sink = SqliteSink::builder()
        .path(dir.path().join("instrument.db"))
        .reports(
            instrument_sinks::sqlite::ReportSchedule::new(&reports)
                .interval(Duration::from_secs(1))
                .keep(2),
        )
        .build()
        .unwrap();
    let pipeline = instrument::builder()
        .sink(sink)
        .window(Duration::from_millis(200))
        .sink_tick(Duration::from_millis(100))
        .install()
        .expect("no other pipeline is installed in this process");
    // Calls go on until three reports were written (one a second, each named by its second),
    // or a minute has passed on a very slow machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut seen = std::collections::BTreeSet::new();
    while seen.len() < 3 && std::time::Instant::now() < deadline {
        tick_work(5);
        seen.extend(reports_in(&reports));
    }
    pipeline.shutdown().unwrap();
    assert!(seen.len() >= 3, "reports seen: {seen:?}");
    let left = reports_in(&reports);
    assert_eq!(left.len(), 2, "the newest two are kept: {left:?}");
    // The ones removed are older (by name) than those kept; one more may have been written
    // while the pipeline shut down.
    assert!(
        seen.iter()
            .filter(|n| !left.contains(n))
            .all(|n| *n < left[0]),
        "kept {left:?} of {seen:?}"
    );
    for name in &left {
        let html = std::fs::read_to_string(reports.join(name)).unwrap();
        assert!(html.starts_with("<!DOCTYPE html>") && html.ends_with("</html>\n"));
        assert!(html.contains(&name_of_tick_work()), "{name}");
        assert_eq!(html.matches("<figure class=\"chart\"><svg").count(), 4);
    }
    // No partial file is left behind.
    assert!(std::fs::read_dir(&reports).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .ends_with(".partial")
    }));
}

fn name_of_tick_work() -> String {
    name("tick_work")
}

/// The backups section of a report against the backup's manifest.
fn check_backups(md: &str, manifest: &Value) {
    // Backups: the manifest's figures.
    let backups_section = section(md, "Backups");
    assert!(
        backups_section[0].ends_with("backups`: 1."),
        "{backups_section:?}"
    );
    assert_eq!(
        backups_section[1],
        format!(
            "Latest: `backup-20260101T000000.000000Z`, made {}, {} bytes, {} audit rows.",
            instrument_sinks::sqlite::query::rfc3339(manifest["created_us"].as_i64().unwrap()),
            manifest["bytes"],
            manifest["audit_rows"]
        )
    );
}
