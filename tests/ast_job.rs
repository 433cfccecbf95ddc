//! The main job end to end (`instrument_workspace::job`, what `examples/ast_pipeline.rs`
//! runs): real files of this workspace go through the staged pipeline with the SDK installed
//! as the example installs it, into a real `SQLite` file in a temporary directory, which the
//! tests read back with SQL and with the queries `instrumentctl` runs.
//!
//! The corpus is this workspace, named by the relative root `.` (tests run in the package
//! directory), so paths, and the files `--fail-rate` picks by their hash, are the same in
//! every checkout.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use instrument_sinks::alerts::AlertState;
use instrument_sinks::sqlite::query::{Store, Verdict, VerdictRule};
use instrument_sinks::verify_audit_chain;
use instrument_workspace::corpus::Corpus;
use instrument_workspace::job::{
    self, Instrumentation, InstrumentationOptions, JobOptions, JobSummary, Operations,
    STAGE_ERRORS_RULE, injected_failure,
};
use rusqlite::Connection;
use serde_json::Value;
use sha2::{Digest as _, Sha256};

mod otlp_receiver;
mod support;
use support::serial;

const FILES: usize = 120;

/// `n` as an SQL integer.
fn int(n: usize) -> i64 {
    i64::try_from(n).unwrap()
}

/// Runs the job over this workspace with the SDK installed (no endpoint), flushes and shuts
/// the pipeline down, and returns what it reported with the database's path.
fn run_instrumented(dir: &Path, fail_rate: f64) -> (JobSummary, PathBuf, Operations) {
    let mut sdk = Instrumentation::install(&InstrumentationOptions::new(dir)).expect("installs");
    let mut options = JobOptions::new(vec![PathBuf::from(".")], sdk.database.clone());
    options.max_files = FILES;
    options.threads = 2;
    options.fail_rate = fail_rate;
    let summary = job::run(&options).expect("the job runs");
    sdk.pipeline.flush().expect("flush");
    let database = sdk.database.clone();
    let operations = sdk.operations(fail_rate > 0.0);
    sdk.shutdown().expect("shuts down");
    (summary, database, operations)
}

/// The files the job reads, in its order: the same walk, the same limit.
fn expected_files() -> Vec<PathBuf> {
    let mut corpus = Corpus::new(FILES);
    corpus
        .add(Path::new("."))
        .expect("the workspace is readable");
    assert_eq!(
        corpus.files.len(),
        FILES,
        "the workspace has {FILES} .rs files"
    );
    corpus.files
}

fn hex_sha256(path: &str) -> String {
    let bytes = std::fs::read(path).expect("reads");
    Sha256::digest(&bytes)
        .iter()
        .fold(String::new(), |mut hex, b| {
            use std::fmt::Write as _;
            let _ = write!(hex, "{b:02x}");
            hex
        })
}

/// `ast_files` of the run: path -> (`id`, `status`, `sha256`, `bytes`, `error_kind`,
/// `correlation`).
type FileRow = (
    i64,
    String,
    Option<String>,
    Option<i64>,
    Option<String>,
    String,
);

fn file_rows(db: &Connection, run_id: i64) -> BTreeMap<String, FileRow> {
    db.prepare(
        "SELECT path, id, status, sha256, bytes, error_kind, correlation FROM ast_files
         WHERE run_id = ?1",
    )
    .unwrap()
    .query_map([run_id], |r| {
        Ok((
            r.get(0)?,
            (
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
                r.get(6)?,
            ),
        ))
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}

/// `analyze_file` audit rows: first input (the path) -> (`inputs`, `outputs`, `outcome`,
/// `error_kind`, `correlation`).
type AuditRow = (
    Vec<String>,
    Vec<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

fn audit_rows(db: &Connection) -> BTreeMap<String, Vec<AuditRow>> {
    let mut rows: BTreeMap<String, Vec<AuditRow>> = BTreeMap::new();
    let mut statement = db
        .prepare(
            "SELECT inputs, outputs, outcome, error_kind, correlation FROM audit
             WHERE operation = 'analyze_file' ORDER BY id",
        )
        .unwrap();
    let mut query = statement.query([]).unwrap();
    while let Some(r) = query.next().unwrap() {
        let strings = |i| -> Vec<String> {
            let text: String = r.get(i).unwrap();
            serde_json::from_str(&text).expect("a JSON array of strings")
        };
        let inputs = strings(0);
        let row = (
            inputs.clone(),
            strings(1),
            r.get(2).unwrap(),
            r.get(3).unwrap(),
            r.get(4).unwrap(),
        );
        rows.entry(inputs[0].clone()).or_default().push(row);
    }
    rows
}

/// Calls of `callsite` over every stored window, and its errors of `kind`.
fn window_totals(db: &Connection, callsite: &str, kind: &str) -> (i64, i64) {
    let calls = db
        .query_row(
            "SELECT coalesce(sum(w.count), 0) FROM windows w JOIN callsites c ON c.id = w.callsite_id
             WHERE c.name = ?1",
            [callsite],
            |r| r.get(0),
        )
        .unwrap();
    let errors = db
        .query_row(
            "SELECT coalesce(sum(e.count), 0) FROM window_errors e
             JOIN windows w ON w.id = e.window_id JOIN callsites c ON c.id = w.callsite_id
             WHERE c.name = ?1 AND e.kind = ?2",
            [callsite, kind],
            |r| r.get(0),
        )
        .unwrap();
    (calls, errors)
}

/// Every stage was measured: the stored windows hold every call of each stage function, and
/// the callsites carry their `stage` label.
fn check_stage_windows(db: &Connection, summary: &JobSummary) {
    for (callsite, calls) in [
        ("ast_pipeline::read_file", int(FILES)),
        ("ast_pipeline::parse_source", int(FILES)),
        (
            "ast_pipeline::analyze",
            i64::try_from(summary.parsed).unwrap(),
        ),
        (
            "ast_pipeline::store_batch",
            i64::try_from(summary.stages[4].calls).unwrap(),
        ),
    ] {
        assert_eq!(window_totals(db, callsite, "").0, calls, "{callsite}");
    }
    let labels: String = db
        .query_row(
            "SELECT labels FROM callsites WHERE name = 'ast_pipeline::parse_source'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&labels).unwrap(),
        serde_json::json!({"stage": "parse"})
    );
}

#[test]
fn every_file_gets_a_row_with_its_functions_and_an_audit_entry_with_its_content_hash() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (summary, path, _) = run_instrumented(dir.path(), 0.0);
    let expected = expected_files();
    assert_eq!(summary.discovered, FILES as u64);
    assert_eq!(summary.stored, FILES as u64);
    assert!(
        summary.truncated,
        "the workspace has more than {FILES} files"
    );

    let db = Connection::open(&path).unwrap();
    let files = file_rows(&db, summary.run_id);
    let names: Vec<_> = expected
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files.keys().cloned().collect::<Vec<_>>(),
        {
            let mut sorted = names.clone();
            sorted.sort();
            sorted
        },
        "one ast_files row per file found"
    );
    let ok = files.values().filter(|f| f.1 == "ok").count() as u64;
    assert_eq!(ok, summary.parsed);
    assert_eq!(FILES as u64 - ok, summary.failed());
    for (name, (_, status, sha, bytes, kind, _)) in &files {
        assert_eq!(sha.as_deref(), Some(hex_sha256(name).as_str()), "{name}");
        let len = std::fs::metadata(name).unwrap().len();
        assert_eq!(*bytes, Some(i64::try_from(len).unwrap()), "{name}");
        // This workspace parses; a failure would be a real syntax error with its kind.
        if status != "ok" {
            assert_eq!(kind.as_deref(), Some("Syntax"), "{name}");
        }
    }

    // Each parsed file's functions are rows of ast_functions.
    let mismatched: i64 = db
        .query_row(
            "SELECT count(*) FROM ast_files f WHERE f.run_id = ?1 AND f.status = 'ok'
               AND f.functions != (SELECT count(*) FROM ast_functions fn WHERE fn.file_id = f.id)",
            [summary.run_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(mismatched, 0);
    let functions: i64 = db
        .query_row(
            "SELECT count(*) FROM ast_functions fn JOIN ast_files f ON f.id = fn.file_id
             WHERE f.run_id = ?1",
            [summary.run_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(u64::try_from(functions).unwrap(), summary.stats.functions);
    assert!(functions > 100, "this workspace has functions: {functions}");

    // One audit entry per file: the path and its content hash in, the row out, under the
    // file's correlation id.
    let audit = audit_rows(&db);
    assert_eq!(audit.len(), FILES);
    for (name, (id, status, sha, _, _, correlation)) in &files {
        let entries = &audit[name];
        assert_eq!(entries.len(), 1, "{name}");
        let (inputs, outputs, outcome, _, entry_correlation) = &entries[0];
        assert_eq!(
            inputs,
            &[name.clone(), format!("sha256:{}", sha.as_deref().unwrap())]
        );
        assert_eq!(outputs, &[format!("ast_files:{id}")]);
        let want = if status == "ok" { "ok" } else { "error" };
        assert_eq!(outcome.as_deref(), Some(want));
        assert_eq!(entry_correlation.as_ref(), Some(correlation));
    }
    assert_eq!(
        summary.audit_entries,
        FILES as u64 + 1,
        "and one ast_run entry"
    );
    verify_audit_chain(&path).expect("the audit chain verifies");

    // `instrumentctl audit trail PATH` shows where the file went.
    let store = Store::open(&path).expect("opens read-only");
    let name = &names[7];
    let trail = store.audit_trail(name).unwrap();
    let outputs: Vec<_> = trail
        .entries
        .iter()
        .map(|e| (e.entry.operation.as_str(), e.entry.outputs.clone()))
        .collect();
    assert_eq!(
        outputs,
        [("analyze_file", vec![format!("ast_files:{}", files[name].0)])]
    );

    check_stage_windows(&db, &summary);
}

#[test]
fn a_fail_rate_fails_that_share_of_parse_calls_and_records_each_with_its_kind() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (summary, path, operations) = run_instrumented(dir.path(), 0.2);
    // A fifth of the parse calls failing fires the job's own rule, timed from the first one.
    let stage_errors = operations
        .alerts
        .iter()
        .find(|a| a.rule == STAGE_ERRORS_RULE)
        .unwrap_or_else(|| panic!("StageErrors did not fire: {:?}", operations.alerts));
    assert_eq!(stage_errors.state, AlertState::Firing);
    assert_eq!(
        stage_errors.labels.get("function").map(String::as_str),
        Some("ast_pipeline::parse_source")
    );
    assert!(operations.detected.is_some(), "{operations:?}");
    let picked: Vec<String> = expected_files()
        .iter()
        .filter(|p| injected_failure(p, 0.2))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    // About a fifth: the hash spreads paths evenly.
    let share = picked.len() as f64 / FILES as f64;
    assert!(
        (0.08..=0.35).contains(&share),
        "{} of {FILES}",
        picked.len()
    );
    assert_eq!(
        summary.failures.get(&("parse", "Injected")).copied(),
        Some(picked.len() as u64)
    );

    let db = Connection::open(&path).unwrap();
    let files = file_rows(&db, summary.run_id);
    let injected: Vec<String> = files
        .iter()
        .filter(|(_, f)| f.1 == "error" && f.4.as_deref() == Some("Injected"))
        .map(|(name, _)| name.clone())
        .collect();
    let mut sorted = picked.clone();
    sorted.sort();
    assert_eq!(
        injected, sorted,
        "exactly the files the hash picks, stored as errors"
    );
    let stage: Vec<String> = db
        .prepare(
            "SELECT DISTINCT stage FROM ast_files WHERE run_id = ?1 AND error_kind = 'Injected'",
        )
        .unwrap()
        .query_map([summary.run_id], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(stage, ["parse"]);

    // The SDK counted them by kind in its windows, and kept each as an error event.
    let (calls, errors) = window_totals(&db, "ast_pipeline::parse_source", "Injected");
    assert_eq!(calls, int(FILES));
    assert_eq!(errors, int(picked.len()));
    let events: i64 = db
        .query_row(
            "SELECT count(*) FROM events e JOIN callsites c ON c.id = e.callsite_id
             WHERE c.name = 'ast_pipeline::parse_source' AND e.outcome = 'error'
               AND e.error_kind = 'Injected'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(events, int(picked.len()));

    // Their audit entries say so, and their trail shows the error row.
    let audit = audit_rows(&db);
    for name in &picked {
        let (_, outputs, outcome, kind, _) = &audit[name][0];
        assert_eq!(
            (outcome.as_deref(), kind.as_deref()),
            (Some("error"), Some("Injected")),
            "{name}"
        );
        assert_eq!(outputs, &[format!("ast_files:{}", files[name].0)]);
    }
    let trail = Store::open(&path).unwrap().audit_trail(&picked[0]).unwrap();
    assert_eq!(trail.entries.len(), 1);
    assert_eq!(
        trail.entries[0].entry.error_kind.as_deref(),
        Some("Injected")
    );
}

#[test]
fn without_the_sdk_the_job_writes_the_same_rows_and_no_audit_entries() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instrument.db");
    let mut options = JobOptions::new(vec![PathBuf::from(".")], path.clone());
    options.max_files = FILES;
    options.audit = false;
    options.fail_rate = 0.2;
    let summary = job::run(&options).expect("the job runs without the SDK");
    assert_eq!(summary.stored, FILES as u64);
    assert_eq!(summary.audit_entries, 0);
    let db = Connection::open(&path).unwrap();
    let files = file_rows(&db, summary.run_id);
    assert_eq!(files.len(), FILES);
    let injected = files
        .values()
        .filter(|f| f.4.as_deref() == Some("Injected"))
        .count();
    assert_eq!(
        injected,
        expected_files()
            .iter()
            .filter(|p| injected_failure(p, 0.2))
            .count()
    );
    let sdk_tables: i64 = db
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('audit', 'windows')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(sdk_tables, 0, "nothing but the job's own tables");
}

#[test]
fn a_run_over_nothing_fails_naming_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir");
    let options = JobOptions::new(vec![missing.clone()], dir.path().join("instrument.db"));
    let error = job::run(&options).expect_err("no files").to_string();
    assert!(
        error.starts_with("found no .rs files under ") && error.contains("no-such-dir"),
        "{error}"
    );
    assert!(!error.contains('\n'), "one line: {error}");
}

#[test]
fn unreadable_text_and_syntax_errors_are_stored_and_audited_with_their_kind() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir_all(corpus.join("sub")).unwrap();
    std::fs::write(corpus.join("a.rs"), "fn a() { if true {} }").unwrap();
    std::fs::write(corpus.join("b.rs"), b"fn b() {}\xff\xfe").unwrap();
    std::fs::write(corpus.join("sub").join("c.rs"), "fn c( {").unwrap();
    std::fs::write(corpus.join("notes.txt"), "not Rust").unwrap();
    let sdk = Instrumentation::install(&InstrumentationOptions::new(dir.path().join("data")))
        .expect("installs");
    let options = JobOptions::new(vec![corpus.clone()], sdk.database.clone());
    let summary = job::run(&options).expect("the job runs");
    sdk.pipeline.flush().expect("flush");
    let path = sdk.database.clone();
    sdk.shutdown().expect("shuts down");

    assert_eq!((summary.stored, summary.parsed), (3, 1));
    assert_eq!(
        summary.failures.into_iter().collect::<Vec<_>>(),
        [(("parse", "Syntax"), 1), (("read", "NotUtf8"), 1)]
    );
    let db = Connection::open(&path).unwrap();
    let files = file_rows(&db, summary.run_id);
    let name = |file: &str| corpus.join(file).to_string_lossy().into_owned();
    let (b_id, b_status, b_sha, b_bytes, b_kind, _) = &files[&name("b.rs")];
    assert_eq!(
        (b_status.as_str(), b_kind.as_deref()),
        ("error", Some("NotUtf8"))
    );
    // Not text, but read: its content is hashed, so the audit trail names it.
    assert_eq!(b_sha.as_deref(), Some(hex_sha256(&name("b.rs")).as_str()));
    assert_eq!(*b_bytes, None);
    let (_, c_status, _, _, c_kind, _) = &files[&name("sub/c.rs")];
    assert_eq!(
        (c_status.as_str(), c_kind.as_deref()),
        ("error", Some("Syntax"))
    );

    let audit = audit_rows(&db);
    let (inputs, outputs, outcome, kind, _) = &audit[&name("b.rs")][0];
    assert_eq!(inputs[1], format!("sha256:{}", b_sha.as_deref().unwrap()));
    assert_eq!(outputs, &[format!("ast_files:{b_id}")]);
    assert_eq!(
        (outcome.as_deref(), kind.as_deref()),
        (Some("error"), Some("NotUtf8"))
    );
    assert_eq!(audit[&name("sub/c.rs")][0].3.as_deref(), Some("Syntax"));
    assert_eq!(
        window_totals(&db, "ast_pipeline::read_file", "NotUtf8"),
        (3, 1)
    );
    assert_eq!(
        window_totals(&db, "ast_pipeline::parse_source", "Syntax"),
        (2, 1)
    );
    // The audit trail of the content hash finds the file too.
    let trail = Store::open(&path).unwrap().audit_trail(&inputs[1]).unwrap();
    assert_eq!(trail.entries.len(), 1);
    assert_eq!(trail.entries[0].entry.inputs[0], name("b.rs"));
}

#[test]
fn with_otlp_the_job_sends_its_stage_counts_and_audit_entries_to_a_real_receiver() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let receiver = otlp_receiver::start_receiver(dir.path(), &[]);
    let mut sdk = Instrumentation::install(&InstrumentationOptions {
        otlp: Some(receiver.url.clone()),
        ..InstrumentationOptions::new(dir.path().join("data"))
    })
    .expect("installs");
    let mut options = JobOptions::new(vec![PathBuf::from(".")], sdk.database.clone());
    options.max_files = FILES;
    options.threads = 2;
    options.fail_rate = 0.2;
    let summary = job::run(&options).expect("the job runs");
    sdk.pipeline.flush().expect("flush");
    let (url, otlp) = sdk.otlp.clone().expect("OTLP is on");
    assert_eq!(url, format!("{}/v1/metrics", receiver.url));
    assert!(
        otlp.wait_idle(std::time::Duration::from_secs(60)),
        "{:?}",
        otlp.status()
    );
    let _ = sdk.operations(false);
    sdk.shutdown().expect("shuts down");

    let lines = otlp_receiver::received(&receiver);
    let metrics = otlp_receiver::accepted(&lines, "/v1/metrics");
    let last = otlp_receiver::metrics(metrics.last().expect("a metrics request"));
    let resource = otlp_receiver::attrs(
        &metrics.last().unwrap()["request"]["resource_metrics"][0]["resource"]["attributes"],
    );
    assert_eq!(resource["service.name"], "ast_pipeline");
    // The parse stage's calls, ok and failed with their kind, as the job counted them.
    let calls = &last["instrument.calls"];
    let count = |want: &[(&str, &str)]| {
        otlp_receiver::point(calls, want).map_or(0, |p| otlp_receiver::int(&p["as_int"]))
    };
    let parse = [
        ("function", "ast_pipeline::parse_source"),
        ("stage", "parse"),
    ];
    let parse_stage = &summary.stages[2];
    assert_eq!(
        count(&[parse[0], parse[1], ("outcome", "ok")]),
        parse_stage.calls - parse_stage.errors
    );
    assert_eq!(
        count(&[
            parse[0],
            parse[1],
            ("outcome", "error"),
            ("error_kind", "Injected")
        ]),
        summary.failures[&("parse", "Injected")]
    );
    let durations =
        otlp_receiver::point(&last["instrument.duration"], &[parse[0], ("outcome", "ok")])
            .expect("the parse stage's durations");
    let buckets: u64 = durations["bucket_counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(otlp_receiver::int)
        .sum();
    assert_eq!(buckets, parse_stage.calls - parse_stage.errors);
    // One audit record per audit entry the job made.
    let audit = otlp_receiver::accepted(&lines, "/v1/logs")
        .iter()
        .flat_map(|l| {
            l["request"]["resource_logs"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|rl| rl["scope_logs"].as_array().unwrap().iter())
                .flat_map(|sl| sl["log_records"].as_array().unwrap().iter())
                .filter(|r| r["event_name"] == "instrument.audit")
                .cloned()
                .collect::<Vec<_>>()
        })
        .count() as u64;
    assert_eq!(audit, summary.audit_entries);
}

#[test]
fn a_latency_injected_into_the_parse_stage_makes_compare_call_it_regressed() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let run = |inject: Option<(&'static str, std::time::Duration)>| {
        let sdk = Instrumentation::install(&InstrumentationOptions {
            run_config: format!("{inject:?}"),
            ..InstrumentationOptions::new(dir.path())
        })
        .expect("installs");
        let mut options = JobOptions::new(vec![PathBuf::from(".")], sdk.database.clone());
        options.max_files = FILES;
        options.threads = 2;
        options.inject_latency = inject.into_iter().collect();
        job::run(&options).expect("the job runs");
        let database = sdk.database.clone();
        sdk.shutdown().expect("shuts down");
        database
    };
    run(None);
    let db = run(Some(job::parse_injected_latency("parse=20ms").unwrap()));
    let store = Store::open(&db).unwrap();
    let comparison = store
        .compare(1, 2, VerdictRule::default())
        .expect("two runs to compare");
    let verdict = |name: &str| {
        comparison
            .callsites
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{name} in {comparison:?}"))
            .verdict
    };
    assert_eq!(
        verdict("ast_pipeline::parse_source"),
        Verdict::Regressed,
        "{comparison:#?}"
    );
    assert_eq!(comparison.verdict, Verdict::Regressed);
    // The stages on other threads are not slowed by the parse threads' sleep. (`analyze` runs
    // right after `parse` on the same thread, on caches the sleep let go cold, and may be.)
    for other in ["ast_pipeline::read_file", "ast_pipeline::list_dir"] {
        assert_ne!(
            verdict(other),
            Verdict::Regressed,
            "{other}: {comparison:?}"
        );
    }
}
