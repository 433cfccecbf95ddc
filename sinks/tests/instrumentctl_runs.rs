//! `instrumentctl runs`, `compare`, `trend`, `report` and `callgraph` end to end: two real
//! pipelines, one after the other, record into one store with the real `SqliteSink`; the
//! second run's `parse` is slowed by a known injected delay. Durations come from the mock
//! clock, so every expected number and verdict is exact.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use instrument::testing::advance;
use instrument::{ClockSource, CorrelationId, instrument_performance, with_correlation};
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
                c["name"].as_str().unwrap().rsplit("::").next().unwrap().to_owned(),
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
        bytes.iter().map(|b| format!("{b:02x}")).collect()
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
        assert!(run["duration_ns"].as_i64().unwrap() >= 0);
    }

    let table = ctl(&r.db, &["runs"]);
    assert_eq!(table.code, 0);
    let lines: Vec<&str> = table.stdout.lines().collect();
    assert!(lines[0].starts_with("RUN  STARTED"), "{}", table.stdout);
    assert_eq!(lines.len(), 3, "{}", table.stdout);
    assert!(lines[1].contains("1.4.2") && lines[1].contains("800"), "{}", lines[1]);
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
    assert!(line.contains("regressed") && line.contains("+66.7%"), "{line}");
    assert!(table.stdout.contains("regressed: 2 regressed, 0 improved"), "{}", table.stdout);
}

#[test]
fn a_trend_has_the_calls_errors_and_percentiles_of_each_bucket() {
    let r = two_runs();
    let (code, trend) = json(&r.db, &["trend", &name("parse"), "--since", "all", "--by", "hour"]);
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
    let expect = |from: &str, to: &str, kind: &str| (from.to_owned(), to.to_owned(), kind.to_owned(), FILES);
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
    assert!(nodes.iter().all(|n| n["calls"] == FILES && n["events"] == FILES));

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
        &["trend", &name("parse"), "--since", "2001-01-01T00:00:00Z", "--until", "2001-02-01T00:00:00Z"],
    ));
    assert!(e.contains("no calls of") && e.contains("2001-01-01T00:00:00.000000Z"), "{e}");
    let e = one_line(&ctl(
        &r.db,
        &["report", "--since", "2001-01-01T00:00:00Z", "--until", "2001-02-01T00:00:00Z"],
    ));
    assert!(e.contains("no calls of a timed callsite"), "{e}");
    let e = one_line(&ctl(&r.db, &["compare", "1", "2", "--alpha", "2"]));
    assert!(e.contains("invalid --alpha `2`"), "{e}");
    // An existing output file is not overwritten.
    let existing = r.dir.join("report.md");
    std::fs::write(&existing, "keep").unwrap();
    let e = one_line(&ctl(&r.db, &["report", "--since", "all", "-o", existing.to_str().unwrap()]));
    assert!(e.contains("already exists"), "{e}");
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep");

    // A store written by a newer release.
    let newer = r.dir.join("newer.db");
    std::fs::copy(&r.db, &newer).unwrap();
    Connection::open(&newer)
        .unwrap()
        .execute("INSERT INTO schema_version (version, applied_us) VALUES (99, 0)", [])
        .unwrap();
    for args in [&["runs"][..], &["compare", "1", "2"], &["report"], &["trend", "x"], &["callgraph"]] {
        let e = one_line(&ctl(&newer, args));
        assert!(e.contains("schema version 99"), "{args:?}: {e}");
    }
}
