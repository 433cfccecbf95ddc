//! `instrumentctl logs` end to end: a real pipeline with the real `JsonlSink` (small rotation
//! size, gzip on) records known calls, notices and audit entries, then the real binary searches,
//! counts and tails the files. Calls are timed by the mock clock, so every count is exact.

use std::collections::HashMap;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use instrument::testing::advance;
use instrument::{
    AuditEntry, ClockSource, CorrelationId, Level, Notice, PipelineGuard, instrument_performance,
    with_correlation,
};
use instrument_sinks::jsonl::{JsonlSink, Stream, log_files};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_instrumentctl");

#[instrument_performance(capture(text))]
fn parse(text: &str) -> Result<u32, std::num::ParseIntError> {
    advance(Duration::from_millis(3));
    text.parse()
}

#[instrument_performance(slow = "20ms", capture(batch))]
fn step(batch: u32) {
    advance(Duration::from_millis(30));
}

/// `cargo test` runs this file's tests on parallel threads: one installed pipeline at a time.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A sink that rotates every couple of lines and gzips what it rotates, keeping every file.
fn pipeline(logs: &Path, max_file_bytes: u64) -> PipelineGuard {
    let sink = JsonlSink::builder()
        .dir(logs)
        .max_file_bytes(max_file_bytes)
        .gzip(true)
        .keep_files(usize::MAX)
        .max_total_bytes(None)
        .max_age(None)
        .snapshots(false)
        .build()
        .expect("builds");
    instrument::builder()
        .clock(ClockSource::Mock)
        .sink(sink)
        .install()
        .expect("no other pipeline is installed in this process")
}

struct Recorded {
    _dir: tempfile::TempDir,
    /// The data directory: logs are in `data/logs`.
    data: PathBuf,
    logs: PathBuf,
    /// Holds 5 failing calls of the first phase.
    first: CorrelationId,
    /// Holds 3 failing calls of the second phase and one audit entry.
    second: CorrelationId,
    /// An hour after the test started: after every line but the second phase's calls.
    split: SystemTime,
}

/// Records into `DIR/logs`, with rotation at 2 KiB and gzip:
/// - phase one: 30 failing `parse("bad-N")` (5 under `first`), 10 slow `step`s, 4 warn notices
///   (`disk=sda`), 3 info notices (`disk=sdb`), 12 audit entries; a flush;
/// - the mock clock moves on two hours;
/// - phase two: 20 failing `parse("late-N")` (3 under `second`), 1 audit entry under `second`.
///
/// So: `error` 54 lines (50 calls at `error`, 4 notices at `warn`), `performance` 10 (`warn`),
/// `main` 5 (`start`, 3 notices, `shutdown`, at `info`), `audit` 13 (`info`): 82 lines.
fn record() -> Recorded {
    let _serial = serial();
    let started = SystemTime::now();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let logs = data.join("logs");
    let pipeline = pipeline(&logs, 2048);
    let first = CorrelationId::new();
    let second = CorrelationId::new();
    for i in 0..30 {
        let text = format!("bad-{i}");
        let result = if i < 5 {
            with_correlation(first, || parse(&text))
        } else {
            parse(&text)
        };
        assert!(result.is_err());
    }
    for batch in 0..10 {
        step(batch);
    }
    for i in 0..4 {
        assert!(instrument::publish(
            Notice::new("health", Level::Warn, format!("disk {i} full")).field("disk", "sda")
        ));
    }
    for _ in 0..3 {
        assert!(instrument::publish(
            Notice::new("health", Level::Info, "disk fine").field("disk", "sdb")
        ));
    }
    for i in 0..12 {
        instrument::audit(AuditEntry::new("copy").input(format!("in-{i}"))).unwrap();
    }
    pipeline.flush().unwrap();
    advance(Duration::from_secs(2 * 3600));
    for i in 0..20 {
        let text = format!("late-{i}");
        let result = if i < 3 {
            with_correlation(second, || parse(&text))
        } else {
            parse(&text)
        };
        assert!(result.is_err());
    }
    with_correlation(second, || {
        instrument::audit(AuditEntry::new("store").input("late")).unwrap();
    });
    pipeline.flush().unwrap();
    drop(pipeline);
    Recorded {
        _dir: dir,
        data,
        logs,
        first,
        second,
        split: started + Duration::from_secs(3600),
    }
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

fn run(data: &Path, args: &[&str]) -> Run {
    let output = Command::new(BIN)
        .arg("--data-dir")
        .arg(data)
        .args(args)
        .output()
        .expect("runs instrumentctl");
    Run {
        code: output.status.code(),
        stdout: String::from_utf8(output.stdout).expect("UTF-8 stdout"),
        stderr: String::from_utf8(output.stderr).expect("UTF-8 stderr"),
    }
}

/// `logs search --json ARGS`: the lines printed, parsed; it must succeed without warnings.
fn search(data: &Path, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["logs", "search", "--json"];
    all.extend_from_slice(args);
    let run = run(data, &all);
    assert_eq!(run.code, Some(0), "{args:?}: {}", run.stderr);
    assert_eq!(run.stderr, "", "{args:?}");
    run.stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

fn count(data: &Path, args: &[&str]) -> usize {
    search(data, args).len()
}

/// Every line of every file of `stream`, read directly (gzipped files too).
fn lines_in_files(logs: &Path, stream: Stream) -> Vec<String> {
    let mut lines = Vec::new();
    for file in log_files(logs, stream).unwrap() {
        let mut text = String::new();
        file.open().unwrap().read_to_string(&mut text).unwrap();
        lines.extend(text.lines().map(str::to_owned));
    }
    lines
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_micros(time).to_string()
}

#[test]
fn search_filters_give_exact_counts_in_time_order_across_gzipped_rotations() {
    let r = record();
    let data = &r.data;
    // The files are what the test is about: rotated, gzipped, several per stream.
    for (stream, at_least) in [(Stream::Error, 5), (Stream::Audit, 2)] {
        let files = log_files(&r.logs, stream).unwrap();
        let gzipped = files.iter().filter(|f| f.compressed).count();
        assert!(gzipped >= at_least, "{stream}: {files:#?}");
    }

    let all = search(data, &[]);
    assert_eq!(all.len(), 82);
    // Time order, across streams and rotated files.
    let times: Vec<&str> = all.iter().map(|l| l["ts"].as_str().unwrap()).collect();
    assert!(times.is_sorted(), "{times:#?}");
    // Exactly the lines of the files, each once.
    let mut printed: Vec<String> = all.iter().map(Value::to_string).collect();
    let mut written: Vec<String> = Stream::ALL
        .into_iter()
        .flat_map(|s| lines_in_files(&r.logs, s))
        .map(|l| serde_json::from_str::<Value>(&l).unwrap().to_string())
        .collect();
    printed.sort();
    written.sort();
    assert_eq!(printed, written);

    // --stream
    assert_eq!(count(data, &["--stream", "error"]), 54);
    assert_eq!(count(data, &["--stream", "performance"]), 10);
    assert_eq!(count(data, &["--stream", "main", "--stream", "audit"]), 18);
    // --level: that level and above.
    assert_eq!(count(data, &["--level", "warn"]), 64);
    assert_eq!(count(data, &["--level", "error"]), 50);
    assert_eq!(count(data, &["--level", "info"]), 82);
    // --grep: the text as written.
    assert_eq!(count(data, &["--grep", "late-"]), 20);
    assert_eq!(count(data, &["--grep", "disk 2 full"]), 1);
    // --field: captured arguments, notice fields, top-level fields; all must hold.
    assert_eq!(count(data, &["--field", "text=bad-7"]), 1);
    assert_eq!(count(data, &["--field", "disk=sda"]), 4);
    assert_eq!(count(data, &["--field", "batch=3"]), 1);
    assert_eq!(count(data, &["--field", "kind=call"]), 60);
    assert_eq!(
        count(data, &["--field", "kind=notice", "--field", "level=info"]),
        3
    );
    // --since / --until: the second phase's calls are two hours after the first.
    let split = rfc3339(r.split);
    let late = search(data, &["--since", &split]);
    assert_eq!(late.len(), 20);
    assert!(
        late.iter()
            .all(|l| l["fields"]["text"].as_str().unwrap().starts_with("late-"))
    );
    assert_eq!(count(data, &["--until", &split]), 62);
    assert_eq!(count(data, &["--since", "30m"]), 82, "all lines are recent");
    // --correlation
    assert_eq!(count(data, &["--correlation", &r.first.to_string()]), 5);
    let second = search(data, &["--correlation", &r.second.to_string()]);
    assert_eq!(second.len(), 4);
    assert_eq!(second.iter().filter(|l| l["kind"] == "audit").count(), 1);
    // --limit: the first N in time order.
    let limited = search(data, &["--limit", "7"]);
    assert_eq!(limited, all[..7]);
    // All at once.
    let some = search(
        data,
        &[
            "--stream", "error", "--level", "error", "--grep", "bad-", "--limit", "3",
        ],
    );
    assert_eq!(some.len(), 3);
    assert_eq!(some[0]["fields"]["text"], "bad-0");

    // Without --json: one line for people per match.
    let people = run(data, &["logs", "search", "--field", "text=bad-7"]);
    assert_eq!(people.code, Some(0));
    let line = people.stdout.trim_end();
    assert!(!line.contains('\n'), "{line}");
    assert!(
        line.contains("error") && line.contains("text=bad-7"),
        "{line}"
    );
    assert!(
        line.contains(&format!("{}::parse", module_path!())),
        "{line}"
    );
}

#[test]
fn a_torn_last_line_is_skipped_with_a_warning() {
    let r = record();
    let current = r.logs.join("error.jsonl");
    let mut file = fs::OpenOptions::new().append(true).open(&current).unwrap();
    file.write_all(br#"{"ts":"2026-11-25T10:25:33.730350Z","level":"error","str"#)
        .unwrap();
    drop(file);
    let run = run(&r.data, &["logs", "search", "--json", "--stream", "error"]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 54, "every whole line, no more");
    assert!(
        run.stdout
            .lines()
            .all(|l| serde_json::from_str::<Value>(l).is_ok())
    );
    let warning = run.stderr.trim_end();
    assert!(!warning.contains('\n'), "one line: {warning}");
    assert!(
        warning.starts_with("instrumentctl: warning: ")
            && warning.contains(&current.display().to_string())
            && warning.contains("no newline"),
        "{warning}"
    );
    // The statistics count it as skipped.
    let stats = run_json(&r.data, &["logs", "stats", "--json"]);
    assert_eq!(stats["streams"][1]["stream"], "error");
    assert_eq!(stats["streams"][1]["lines"], 54);
    assert_eq!(stats["streams"][1]["skipped"], 1);
}

fn run_json(data: &Path, args: &[&str]) -> Value {
    let run = run(data, args);
    assert_eq!(run.code, Some(0), "{args:?}: {}", run.stderr);
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{}: {e}", run.stdout))
}

#[test]
fn stats_count_lines_per_stream_and_level_with_sizes_and_times() {
    let r = record();
    let stats = run_json(&r.data, &["logs", "stats", "--json"]);
    // stream: lines, debug, info, warn, error
    let expected = [
        ("main", 5, 0, 5, 0, 0),
        ("error", 54, 0, 0, 4, 50),
        ("performance", 10, 0, 0, 10, 0),
        ("audit", 13, 0, 13, 0, 0),
    ];
    let mut oldest_all: Option<String> = None;
    let mut newest_all: Option<String> = None;
    for (i, (name, lines, debug, info, warn, error)) in expected.into_iter().enumerate() {
        let s = &stats["streams"][i];
        let stream = Stream::ALL[i];
        assert_eq!(s["stream"], name);
        assert_eq!(
            [
                &s["lines"],
                &s["debug"],
                &s["info"],
                &s["warn"],
                &s["error"]
            ],
            [lines, debug, info, warn, error],
            "{name}"
        );
        assert_eq!(s["skipped"], 0);
        let files = log_files(&r.logs, stream).unwrap();
        assert_eq!(s["files"], files.len(), "{name}");
        assert_eq!(
            s["compressed_files"],
            files.iter().filter(|f| f.compressed).count(),
            "{name}"
        );
        let bytes: u64 = files
            .iter()
            .map(|f| fs::metadata(&f.path).unwrap().len())
            .sum();
        assert_eq!(s["bytes"], bytes, "{name}");
        let times: Vec<String> = lines_in_files(&r.logs, stream)
            .iter()
            .map(|l| {
                serde_json::from_str::<Value>(l).unwrap()["ts"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        let oldest = times.iter().min().unwrap();
        let newest = times.iter().max().unwrap();
        assert_eq!(s["oldest"], oldest.as_str(), "{name}");
        assert_eq!(s["newest"], newest.as_str(), "{name}");
        oldest_all = Some(oldest_all.map_or(oldest.clone(), |o| o.min(oldest.clone())));
        newest_all = Some(newest_all.map_or(newest.clone(), |n| n.max(newest.clone())));
    }
    let total = &stats["total"];
    assert_eq!(total["stream"], "total");
    assert_eq!(
        [
            &total["lines"],
            &total["info"],
            &total["warn"],
            &total["error"]
        ],
        [82, 18, 14, 50]
    );
    assert_eq!(total["oldest"], oldest_all.unwrap().as_str());
    assert_eq!(total["newest"], newest_all.unwrap().as_str());

    let table = run(&r.data, &["logs", "stats"]);
    assert_eq!(table.code, Some(0));
    let total_row = table
        .stdout
        .lines()
        .find(|l| l.starts_with("total"))
        .expect("a total row");
    let cells: Vec<&str> = total_row.split_whitespace().collect();
    assert_eq!(
        cells[4..10],
        ["82", "0", "18", "14", "50", "0"],
        "{total_row}"
    );
}

#[test]
fn tail_prints_the_last_lines_and_verify_checks_the_audit_chain() {
    let r = record();
    let run_tail = run(
        &r.data,
        &["logs", "tail", "--stream", "error", "-n", "5", "--json"],
    );
    assert_eq!(run_tail.code, Some(0), "{}", run_tail.stderr);
    let texts: Vec<String> = run_tail
        .stdout
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["fields"]["text"].to_string())
        .collect();
    assert_eq!(
        texts,
        ["late-15", "late-16", "late-17", "late-18", "late-19"].map(|t| format!("\"{t}\""))
    );
    // All streams: the last lines in time order (the shutdown line is the newest real time,
    // the late calls are two hours ahead on the mock clock).
    let both = run(&r.data, &["logs", "tail", "-n", "2", "--json"]);
    let last: Vec<Value> = both
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(last.len(), 2);
    assert_eq!(last[0]["fields"]["text"], "late-18");
    assert_eq!(last[1]["fields"]["text"], "late-19");

    let verify = run_json(&r.data, &["logs", "verify", "--json"]);
    assert_eq!(verify["verified"], true);
    assert_eq!(verify["entries"], 13);
    assert_eq!(verify["complete"], true);
    // A changed audit line: exit 1 naming the file and line.
    let current = r.logs.join("audit.jsonl");
    let text = fs::read_to_string(&current).unwrap();
    assert!(!text.is_empty(), "the current audit file has lines");
    fs::write(&current, text.replacen("\"late\"", "\"LATE\"", 1)).unwrap();
    let number = text.lines().position(|l| l.contains("\"late\"")).unwrap() + 1;
    let broken = run(&r.data, &["logs", "verify"]);
    assert_eq!(broken.code, Some(1));
    assert!(
        broken.stderr.starts_with(&format!(
            "instrumentctl: audit chain broken at {}:{number}: ",
            current.display()
        )),
        "{}",
        broken.stderr
    );
    assert_eq!(broken.stderr.lines().count(), 1);
}

#[test]
fn bad_input_is_one_line_naming_the_flag_or_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    fs::create_dir(data.join("logs")).unwrap();
    let missing = dir.path().join("nowhere");
    for (args, expected) in [
        (
            vec!["--data-dir", missing.to_str().unwrap(), "logs", "search"],
            format!("no log directory at {}", missing.join("logs").display()),
        ),
        (
            vec!["logs", "--logs-dir", missing.to_str().unwrap(), "stats"],
            format!("no log directory at {}", missing.display()),
        ),
        (
            vec!["logs", "search", "--field", "disk"],
            "invalid --field `disk`: give KEY=VALUE".to_owned(),
        ),
        (
            vec!["logs", "search", "--field", "=sda"],
            "invalid --field `=sda`".to_owned(),
        ),
        (
            vec!["logs", "search", "--since", "5 parsecs"],
            "invalid --since `5 parsecs`".to_owned(),
        ),
        (
            vec!["logs", "search", "--until", "tomorrow"],
            "invalid --until `tomorrow`".to_owned(),
        ),
        (
            vec!["logs", "search", "--correlation", "xyz"],
            "invalid --correlation `xyz`".to_owned(),
        ),
    ] {
        let mut command = Command::new(BIN);
        if args[0] != "--data-dir" {
            command.arg("--data-dir").arg(data);
        }
        let output = command.args(&args).output().unwrap();
        let stderr = String::from_utf8(output.stderr).unwrap();
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}");
        assert!(
            stderr.starts_with(&format!("instrumentctl: {expected}")),
            "{args:?}: {stderr}"
        );
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
    }
    // An empty directory is no error: nothing to print.
    let empty = run(data, &["logs", "search"]);
    assert_eq!((empty.code, empty.stdout.as_str()), (Some(0), ""));
}

/// Reads a child's stdout lines on a thread, so that the test can wait with a timeout.
fn lines_of(stdout: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if send.send(line).is_err() {
                break;
            }
        }
    });
    receive
}

/// Receives lines until `want` of them arrived; panics after a generous timeout.
fn receive(lines: &mpsc::Receiver<String>, got: &mut Vec<String>, want: usize) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while got.len() < want {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => got.push(line),
            Err(e) => panic!(
                "{e:?}: {} of {want} lines after 120 s; the last: {:?}",
                got.len(),
                got.last()
            ),
        }
    }
}

fn text_of(line: &str) -> String {
    let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}"));
    value["fields"]["text"].as_str().unwrap_or("").to_owned()
}

#[test]
fn tail_follow_picks_up_lines_written_across_rotations_once_each() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    // About three lines a file: every round of ten lines rotates a few times.
    let pipeline = pipeline(&logs, 1024);
    let pad = "x".repeat(200);
    for i in 0..5 {
        assert!(parse(&format!("before-{i}-{pad}")).is_err());
    }
    pipeline.flush().unwrap();

    let mut child = Command::new(BIN)
        .args(["logs", "--logs-dir"])
        .arg(&logs)
        .args(["tail", "--stream", "error", "--follow", "--json", "-n", "2"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(child.stdout.take().unwrap());
    let mut got = Vec::new();
    receive(&lines, &mut got, 2);
    assert_eq!(
        got.iter().map(|l| text_of(l)).collect::<Vec<_>>(),
        [format!("before-3-{pad}"), format!("before-4-{pad}")]
    );

    let rotated_before = log_files(&logs, Stream::Error).unwrap().len();
    let mut expected = Vec::new();
    for round in 0..12 {
        for i in 0..10 {
            let text = format!("follow-{round}-{i}-{pad}");
            assert!(parse(&text).is_err());
            expected.push(text);
        }
        pipeline.flush().unwrap();
        // Some rounds are written while the child sleeps between polls, some right after.
        if round % 3 == 0 {
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    receive(&lines, &mut got, 2 + expected.len());
    // A last line: anything printed twice would come before it.
    assert!(parse("the-end").is_err());
    pipeline.flush().unwrap();
    receive(&lines, &mut got, 3 + expected.len());
    let _ = child.kill();
    let status = child.wait().unwrap();
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();

    let followed: Vec<String> = got[2..].iter().map(|l| text_of(l)).collect();
    expected.push("the-end".to_owned());
    assert_eq!(
        followed, expected,
        "every line once, in order (stderr: {stderr})"
    );
    assert!(!status.success(), "killed, it was still following");
    assert_eq!(stderr, "", "no warnings");
    drop(pipeline);
    let files = log_files(&logs, Stream::Error).unwrap();
    assert!(
        files.len() >= rotated_before + 30,
        "it followed many rotations: {} files before, {} after",
        rotated_before,
        files.len()
    );
    assert!(files.iter().filter(|f| f.compressed).count() >= 30);
}

// ---------------------------------------------------------------------------------------------
// Memory: a large directory is streamed, not loaded.

/// The bound on the peak resident memory of `instrumentctl logs` over the large directory.
const RSS_BOUND_KIB: i64 = 64 * 1024;

/// The child's peak resident set size so far (`VmHWM`, KiB), while it runs.
fn vm_hwm(pid: u32) -> Option<i64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `instrumentctl ARGS`, passing each stdout line to `each`; returns the exit code, the
/// stderr and the child's peak resident set size (KiB).
///
/// The peak is `VmHWM` of `/proc/PID/status`, a high-water mark read every few milliseconds
/// while the child runs (`wait4`'s `ru_maxrss` is no good here: for a child started with
/// `posix_spawn` it includes the peak of this test process, whose memory the child shared
/// until its `exec`).
fn measured(args: &[&str], mut each: impl FnMut(&str)) -> (i32, String, i64) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let peak = Arc::new(AtomicI64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let monitor = {
        let (peak, done) = (Arc::clone(&peak), Arc::clone(&done));
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                if let Some(kib) = vm_hwm(pid) {
                    peak.fetch_max(kib, Ordering::Relaxed);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let mut stderr_pipe = child.stderr.take().unwrap();
    let stderr = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr_pipe.read_to_string(&mut text);
        text
    });
    let mut line = String::new();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    loop {
        line.clear();
        if stdout.read_line(&mut line).unwrap() == 0 {
            break;
        }
        each(line.trim_end_matches('\n'));
    }
    let status = child.wait().unwrap();
    done.store(true, Ordering::Relaxed);
    monitor.join().unwrap();
    let peak = peak.load(Ordering::Relaxed);
    assert!(peak > 0, "the child's memory was read while it ran");
    (status.code().unwrap(), stderr.join().unwrap(), peak)
}

/// A valid log line of `stream` at `time`.
fn synthetic(stream: &str, time: SystemTime, n: u64) -> String {
    let level = if n.is_multiple_of(100) {
        "error"
    } else {
        "info"
    };
    format!(
        r#"{{"ts":"{}","level":"{level}","stream":"{stream}","kind":"notice","name":"load","message":"synthetic line {n} {}","fields":{{"n":{n}}}}}"#,
        rfc3339(time),
        "y".repeat(120)
    )
}

/// What [`synthesize`] wrote.
struct Synthetic {
    /// Lines per stream.
    written: HashMap<&'static str, u64>,
    /// `error` lines of the last hour.
    errors_last_hour: u64,
    /// The largest file's size.
    biggest: u64,
}

/// Writes about 270 MB of valid lines into `logs`: the `error` stream in a gzipped rotated
/// file, a plain rotated file and its current file, the `main` stream in its current file,
/// each spread over the last ten hours; every hundredth line at `error`.
fn synthesize(logs: &Path) -> Synthetic {
    let now = SystemTime::now();
    let start = now - Duration::from_secs(10 * 3600);
    // No line between 70 and 50 minutes ago: `--since 1h`, read by the child a little later
    // than `now`, has the same answer whenever it runs within ten minutes.
    let gap = (now - Duration::from_secs(70 * 60))..(now - Duration::from_secs(50 * 60));
    let hour_ago = now - Duration::from_secs(3600);
    // (stream, file, lines): each stream's files in rotation order, current last, spread over
    // the same ten hours.
    let plan: [(&'static str, &str, u64); 4] = [
        ("error", "error.20250101T000000Z.jsonl.gz", 40_000),
        ("error", "error.20250101T000001Z.jsonl", 150_000),
        ("error", "error.jsonl", 550_000),
        ("main", "main.jsonl", 300_000),
    ];
    let mut written: HashMap<&'static str, u64> = HashMap::new();
    let mut errors_last_hour = 0u64;
    let mut biggest = 0u64;
    let mut counters: HashMap<&str, u64> = HashMap::new();
    for (stream, name, lines) in plan {
        let path = logs.join(name);
        let file = fs::File::create(&path).unwrap();
        let mut out: Box<dyn Write> = if name.ends_with(".jsonl.gz") {
            Box::new(flate2::write::GzEncoder::new(
                std::io::BufWriter::new(file),
                flate2::Compression::fast(),
            ))
        } else {
            Box::new(std::io::BufWriter::new(file))
        };
        let n = counters.entry(stream).or_default();
        let step = if stream == "main" { 120 } else { 48 };
        for _ in 0..lines {
            let time = start + Duration::from_millis(*n * step);
            *n += 1;
            if gap.contains(&time) {
                continue;
            }
            let line = synthetic(stream, time, *n);
            if n.is_multiple_of(100) && time >= hour_ago {
                errors_last_hour += 1;
            }
            out.write_all(line.as_bytes()).unwrap();
            out.write_all(b"\n").unwrap();
            *written.entry(stream).or_default() += 1;
        }
        drop(out);
        biggest = biggest.max(fs::metadata(&path).unwrap().len());
    }
    Synthetic {
        written,
        errors_last_hour,
        biggest,
    }
}

#[test]
fn searching_hundreds_of_megabytes_keeps_memory_flat() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).unwrap();
    let Synthetic {
        written,
        errors_last_hour,
        biggest,
    } = synthesize(&logs);
    let total: u64 = written.values().sum();
    let on_disk: u64 = fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert!(on_disk > 180 * 1024 * 1024, "{on_disk} bytes");
    assert!(
        biggest > 2 * RSS_BOUND_KIB as u64 * 1024,
        "one file alone ({biggest} bytes) would not fit the bound"
    );
    let logs_arg = logs.to_str().unwrap();

    // Everything, in time order.
    let mut printed = 0u64;
    let mut last = String::new();
    let (code, stderr, rss) = measured(
        &["logs", "--logs-dir", logs_arg, "search", "--json"],
        |line| {
            let ts = &line[7..34];
            assert!(ts >= last.as_str(), "{ts} after {last}");
            last.clear();
            last.push_str(ts);
            printed += 1;
            if printed == total - 5_000 {
                // Near the end, with all but the last lines read and merged, the child waits
                // on a full pipe: its memory is read there too.
                std::thread::sleep(Duration::from_millis(300));
            }
        },
    );
    assert_eq!((code, stderr.as_str()), (0, ""));
    assert_eq!(printed, total);
    eprintln!("peak RSS searching everything: {rss} KiB");
    assert!(
        rss < RSS_BOUND_KIB,
        "peak RSS {rss} KiB searching everything"
    );

    // A filtered search.
    let mut matched = 0u64;
    let (code, stderr, rss) = measured(
        &[
            "logs",
            "--logs-dir",
            logs_arg,
            "search",
            "--json",
            "--level",
            "error",
            "--since",
            "1h",
        ],
        |_| matched += 1,
    );
    assert_eq!((code, stderr.as_str()), (0, ""));
    assert_eq!(matched, errors_last_hour);
    assert!(matched > 0);
    eprintln!("peak RSS searching errors: {rss} KiB");
    assert!(rss < RSS_BOUND_KIB, "peak RSS {rss} KiB searching errors");

    // Statistics.
    let mut json = String::new();
    let (code, stderr, rss) = measured(
        &["logs", "--logs-dir", logs_arg, "stats", "--json"],
        |line| json.push_str(line),
    );
    assert_eq!((code, stderr.as_str()), (0, ""));
    let stats: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(stats["total"]["lines"], total);
    assert_eq!(stats["streams"][1]["lines"], written["error"]);
    assert_eq!(stats["streams"][0]["lines"], written["main"]);
    assert_eq!(stats["total"]["bytes"], on_disk);
    eprintln!("peak RSS counting: {rss} KiB");
    assert!(rss < RSS_BOUND_KIB, "peak RSS {rss} KiB counting");
}
