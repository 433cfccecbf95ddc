//! The JSON-lines sink end to end: real pipelines write real files in temporary directories
//! (on a real, full tmpfs; in child processes stopped by real signals), and the tests read every
//! line back, parse it with `serde_json` and validate it against `docs/log-line.schema.json`.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use instrument::testing::advance;
use instrument::{
    AuditEntry, Batch, ClockSource, CorrelationId, Level, Notice, PipelineGuard, Sink, SinkHealth,
    instrument_performance,
};
use instrument_sinks::MemorySink;
use instrument_sinks::jsonl::{
    self, AuditChainError, DayBoundary, GENESIS, JsonlError, JsonlSink, Stream, log_files,
    verify_audit_chain,
};
use serde_json::Value;

mod support;
use support::{name, on_threads, serial, status, within};

const HOUR: Duration = Duration::from_secs(3600);

/// Control characters, quotes, a backslash, an escape sequence, DEL, a Unicode line separator,
/// a byte-order mark and the replacement character that invalid UTF-8 turns into.
const NASTY: &str =
    "line1\nline2\r\t\"quoted\" \\ \u{0}\u{1b}[31mred\u{7f}\u{2028}\u{feff}\u{fffd}end";

#[derive(Debug, thiserror::Error)]
#[error("refused")]
struct Refused;

#[instrument_performance(capture(text, bytes))]
fn parse(text: &str, bytes: &[u8]) -> Result<u32, std::num::ParseIntError> {
    advance(Duration::from_millis(3));
    let _ = bytes;
    text.parse()
}

#[instrument_performance(slow = "5ms")]
fn slow_step() {
    advance(Duration::from_millis(6));
}

/// Displays as the lossy text of bytes that are not UTF-8, with control characters.
struct Lossy(&'static [u8]);

impl std::fmt::Display for Lossy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.0))
    }
}

#[instrument_performance(sample = 1.0, capture(%shown))]
fn sampled(shown: &Lossy) {
    let _ = shown;
}

#[instrument_performance]
fn explode() {
    panic!("boom");
}

#[instrument_performance(audit, capture(%id))]
fn copy_file(id: &str) {
    let _ = id;
    advance(Duration::from_millis(2));
}

/// Fails every call, so every timed call becomes an event carrying its id.
#[instrument_performance(capture(id))]
fn fail(id: u64) -> Result<(), Refused> {
    let _ = id;
    Err(Refused)
}

/// Fails every tenth call.
#[instrument_performance]
fn hot(i: u32) -> Result<u32, Refused> {
    if i.is_multiple_of(10) {
        return Err(Refused);
    }
    Ok(i)
}

fn validator() -> &'static jsonschema::Validator {
    static VALIDATOR: OnceLock<jsonschema::Validator> = OnceLock::new();
    VALIDATOR.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/log-line.schema.json");
        let text = fs::read_to_string(&path).expect("docs/log-line.schema.json");
        let schema: Value = serde_json::from_str(&text).expect("the schema is JSON");
        jsonschema::validator_for(&schema).expect("the schema compiles")
    })
}

/// Parses one line and checks it against the schema, naming the file and line on failure.
fn parsed(line: &[u8], path: &Path, number: usize) -> Value {
    let shown = String::from_utf8_lossy(line);
    assert!(
        line.iter().all(|&b| b >= 0x20),
        "{}:{number} has a raw control byte: {shown}",
        path.display()
    );
    let value: Value = serde_json::from_slice(line)
        .unwrap_or_else(|e| panic!("{}:{number} is not JSON ({e}): {shown}", path.display()));
    let errors: Vec<String> = validator()
        .iter_errors(&value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{}:{number} does not match docs/log-line.schema.json: {errors:#?}\n{shown}",
        path.display()
    );
    value
}

/// Every line of `stream` in `dir`, across its rotated (also gzipped) and current files in
/// order, parsed and validated; every file ends with a newline and has no empty line.
fn lines(dir: &Path, stream: Stream) -> Vec<Value> {
    let mut out = Vec::new();
    for file in log_files(dir, stream).expect("lists the directory") {
        let mut text = Vec::new();
        file.open()
            .and_then(|mut r| r.read_to_end(&mut text))
            .unwrap_or_else(|e| panic!("{}: {e}", file.path.display()));
        if text.is_empty() {
            continue;
        }
        assert_eq!(
            text.last(),
            Some(&b'\n'),
            "{} ends in the middle of a line",
            file.path.display()
        );
        text.pop();
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            let value = parsed(line, &file.path, i + 1);
            assert_eq!(value["stream"], stream.as_str(), "{}", file.path.display());
            out.push(value);
        }
    }
    out
}

fn of_kind<'a>(lines: &'a [Value], kind: &str) -> Vec<&'a Value> {
    lines.iter().filter(|l| l["kind"] == kind).collect()
}

/// The `fields.id` of every `call` line of `fail`, counted.
fn call_ids(lines: &[Value]) -> HashMap<u64, usize> {
    let mut ids = HashMap::new();
    for line in of_kind(lines, "call") {
        if line["name"] == name!("fail") {
            let id = line["fields"]["id"].as_u64().expect("an id");
            *ids.entry(id).or_default() += 1;
        }
    }
    ids
}

fn inputs(lines: &[Value]) -> Vec<String> {
    lines
        .iter()
        .map(|l| l["inputs"][0].as_str().expect("an input").to_owned())
        .collect()
}

fn mock_pipeline(sink: JsonlSink) -> PipelineGuard {
    instrument::builder()
        .clock(ClockSource::Mock)
        .sink(sink)
        .install()
        .expect("no other pipeline is installed")
}

/// What `record_one_of_everything` captured as `bytes`.
const BYTES: &[u8] = b"\xff\xfe\n\"raw\"";

/// Records a call of each kind (failing, on a named thread, ok, slow, sampled, panicking,
/// audited), an audit entry, a counter, gauges and notices, most with nasty values, then flushes
/// and shuts down. Returns the correlation id of the first failing call.
fn record_one_of_everything(logs: &Path) -> CorrelationId {
    let pipeline = mock_pipeline(JsonlSink::builder().dir(logs).build().expect("builds"));
    let id = CorrelationId::new();
    assert!(instrument::with_correlation(id, || parse(NASTY, BYTES)).is_err());
    let worker = std::thread::Builder::new()
        .name("worker \"1\"\n".into())
        .spawn(|| parse("x", b"").is_err())
        .unwrap();
    assert!(worker.join().unwrap());
    assert_eq!(parse("7", b""), Ok(7));
    slow_step();
    sampled(&Lossy(b"bad \xc3\x28 utf-8\n\x07"));
    assert!(std::panic::catch_unwind(explode).is_err());
    copy_file("a.rs");
    instrument::audit(
        AuditEntry::new(NASTY)
            .input(NASTY)
            .output("out")
            .actor(NASTY)
            .field("key", &NASTY),
    )
    .unwrap();
    instrument::counter!("files_parsed_total", 3);
    instrument::gauge!("queue_depth", f64::NAN);
    instrument::gauge!("heap_used_bytes", 12.5);
    assert!(instrument::publish(
        Notice::new("health", Level::Info, NASTY).field("key\n", NASTY)
    ));
    assert!(instrument::publish(Notice::new(
        "tracing",
        Level::Warn,
        "disk 91% full"
    )));
    pipeline.flush().expect("flush");
    drop(pipeline);
    id
}

#[test]
fn every_line_parses_matches_the_schema_and_keeps_nasty_values() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let id = record_one_of_everything(&logs);

    let main = lines(&logs, Stream::Main);
    assert_eq!(main[0]["kind"], "start");
    assert_eq!(main[0]["fields"]["pid"], std::process::id());
    assert_eq!(main.last().unwrap()["kind"], "shutdown");
    let info = of_kind(&main, "notice");
    assert_eq!(info.len(), 1);
    assert_eq!(info[0]["message"], NASTY);
    assert_eq!(info[0]["fields"]["key\n"], NASTY);
    assert_eq!(info[0]["level"], "info");

    let error = lines(&logs, Stream::Error);
    let calls = of_kind(&error, "call");
    let nasty = calls
        .iter()
        .find(|l| l["correlation_id"] == id.to_string())
        .expect("the correlated call");
    assert_eq!(nasty["fields"]["text"], NASTY);
    assert_eq!(nasty["fields"]["bytes"], format!("{BYTES:?}"));
    assert_eq!(nasty["name"], name!("parse"));
    assert_eq!(nasty["module"], module_path!());
    assert_eq!(nasty["outcome"], "error");
    assert_eq!(nasty["error_kind"], "core::num::error::ParseIntError");
    assert_eq!(nasty["reason"], "outcome");
    assert_eq!(nasty["level"], "error");
    assert_eq!(nasty["duration_ns"], 3_000_000);
    let named = calls
        .iter()
        .find(|l| l["thread"]["name"] == "worker \"1\"\n")
        .expect("the call on the named thread");
    assert_eq!(named["fields"]["text"], "x");
    let panicked = calls
        .iter()
        .find(|l| l["name"] == name!("explode"))
        .unwrap();
    assert_eq!(panicked["outcome"], "panic");
    let warning = of_kind(&error, "notice");
    assert_eq!(warning.len(), 1);
    assert_eq!(
        (&warning[0]["name"], &warning[0]["level"]),
        (&Value::from("tracing"), &Value::from("warn"))
    );

    let audit = lines(&logs, Stream::Audit);
    assert_eq!(audit.len(), 2);
    assert_eq!(audit[0]["name"], name!("copy_file"));
    assert_eq!(audit[0]["fields"]["id"], "a.rs");
    assert_eq!(audit[0]["duration_ns"], 2_000_000);
    assert_eq!(audit[1]["name"], NASTY);
    assert_eq!(audit[1]["inputs"][0], NASTY);
    assert_eq!(audit[1]["actor"], NASTY);
    assert_eq!(audit[1]["fields"]["key"], NASTY);
    assert_eq!(audit[1]["prev_hash"], audit[0]["hash"]);
    let chain = verify_audit_chain(&logs).expect("the chain verifies");
    assert_eq!((chain.entries, chain.anchor.as_str()), (2, GENESIS));
    assert_eq!(chain.last_hash, audit[1]["hash"].as_str().unwrap());
}

#[test]
fn the_performance_stream_has_slow_and_sampled_calls_and_the_aggregates() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    record_one_of_everything(&logs);

    let performance = lines(&logs, Stream::Performance);
    let slow = of_kind(&performance, "call")
        .into_iter()
        .find(|l| l["name"] == name!("slow_step"))
        .expect("the slow call");
    assert_eq!(
        (&slow["reason"], &slow["level"], &slow["duration_ns"]),
        (
            &Value::from("slow"),
            &Value::from("warn"),
            &Value::from(6_000_000)
        )
    );
    let sample = of_kind(&performance, "call")
        .into_iter()
        .find(|l| l["name"] == name!("sampled"))
        .expect("the sampled call");
    assert_eq!(sample["reason"], "sampled");
    assert_eq!(
        sample["fields"]["shown"],
        String::from_utf8_lossy(b"bad \xc3\x28 utf-8\n\x07").as_ref()
    );
    let aggregate = of_kind(&performance, "aggregate")
        .into_iter()
        .find(|l| l["name"] == name!("parse") && l["outcome"] == "error")
        .expect("the aggregate of failed parses");
    assert_eq!(aggregate["fields"]["count"], 2);
    assert_eq!(
        aggregate["fields"]["error_kinds"]["core::num::error::ParseIntError"],
        2
    );
    let counter = of_kind(&performance, "counter")
        .into_iter()
        .find(|l| l["name"] == "files_parsed_total")
        .expect("the counter");
    assert_eq!(counter["fields"]["total"], 3);
    let gauges: HashMap<String, Value> = of_kind(&performance, "gauge")
        .into_iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap().to_owned(),
                l["fields"]["value"].clone(),
            )
        })
        .collect();
    assert_eq!(gauges["queue_depth"], "NaN");
    assert_eq!(gauges["heap_used_bytes"], 12.5);
}

#[test]
fn many_rotations_under_load_keep_every_line_exactly_once() {
    const THREADS: u64 = 4;
    const CALLS: u64 = 5_000;
    const AUDITS: usize = 3_000;
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let sink = JsonlSink::builder()
        .dir(&logs)
        .max_file_bytes(16 * 1024)
        .gzip(true)
        .keep_files(usize::MAX)
        .max_total_bytes(None)
        .max_age(None)
        .build()
        .unwrap();
    let memory = MemorySink::new();
    let pipeline = instrument::builder()
        .sink(sink)
        .sink(memory.clone())
        .install()
        .expect("no other pipeline is installed");

    let auditor = std::thread::spawn(|| {
        for i in 0..AUDITS {
            instrument::audit(AuditEntry::new("store").input(format!("in-{i}"))).unwrap();
        }
    });
    on_threads(THREADS as usize, |t| {
        for i in 0..CALLS {
            let _ = fail(t as u64 * 1_000_000 + i);
        }
    });
    auditor.join().unwrap();
    pipeline.flush().expect("flush");
    drop(pipeline);

    let error = lines(&logs, Stream::Error);
    let ids = call_ids(&error);
    let twice: Vec<_> = ids.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "ids written more than once: {twice:?}");
    let delivered: HashSet<u64> = memory
        .events()
        .iter()
        .filter(|e| e.callsite.name() == name!("fail"))
        .map(|e| match e.fields[0].1 {
            instrument::FieldValue::U64(id) => id,
            ref other => panic!("{other:?}"),
        })
        .collect();
    let written: HashSet<u64> = ids.keys().copied().collect();
    assert_eq!(
        written, delivered,
        "the lines are exactly the events delivered"
    );
    // Dropped durations (full queues) are marked, by count, in the performance stream.
    let dropped: u64 = memory.drops().iter().map(|d| d.count).sum();
    let marked: u64 = of_kind(&lines(&logs, Stream::Performance), "drop")
        .iter()
        .map(|l| l["fields"]["dropped"].as_u64().unwrap())
        .sum();
    assert_eq!(marked, dropped);
    assert_eq!(written.len() as u64 + dropped, THREADS * CALLS);

    let error_files = log_files(&logs, Stream::Error).unwrap();
    assert!(error_files.len() > 20, "{} files", error_files.len());
    assert!(
        error_files[..error_files.len() - 1]
            .iter()
            .all(|f| f.compressed),
        "every rotated file is compressed after shutdown: {error_files:#?}"
    );

    let audit = lines(&logs, Stream::Audit);
    let expected: Vec<String> = (0..AUDITS).map(|i| format!("in-{i}")).collect();
    assert_eq!(inputs(&audit), expected, "every entry once, in order");
    assert!(log_files(&logs, Stream::Audit).unwrap().len() > 5);
    let chain = verify_audit_chain(&logs).expect("the chain holds across rotations");
    assert_eq!(chain.entries, AUDITS as u64);
    assert_eq!(chain.anchor, GENESIS);
}

#[test]
fn drop_markers_become_lines() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let memory = MemorySink::new();
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .queue_capacity(8)
        .drain_interval(HOUR)
        .window(HOUR)
        .sink(JsonlSink::builder().dir(dir.path()).build().unwrap())
        .sink(memory.clone())
        .install()
        .expect("no other pipeline is installed");
    on_threads(4, |_| {
        for i in 0..20_000 {
            let _ = hot(i);
        }
    });
    pipeline.flush().expect("flush");
    let dropped = pipeline.self_metrics().events_dropped;
    drop(pipeline);
    assert!(dropped > 0, "full queues of 8 records drop durations");

    let performance = lines(dir.path(), Stream::Performance);
    let markers = of_kind(&performance, "drop");
    assert_eq!(markers.len(), memory.drops().len());
    let mut marked = 0;
    for line in &markers {
        assert_eq!(line["name"], name!("hot"));
        assert_eq!(line["level"], "warn");
        let fields = &line["fields"];
        let count = fields["dropped"].as_u64().unwrap();
        let (since, until) = (
            fields["since"].as_str().unwrap(),
            fields["until"].as_str().unwrap(),
        );
        assert!(since <= until, "{line}");
        let message = line["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!(
                "{count} events of {} dropped between {since} and {until}",
                name!("hot")
            )),
            "{message}"
        );
        marked += count;
    }
    assert_eq!(marked, dropped);
}

#[test]
fn a_torn_last_line_is_cut_back_and_the_chain_continues() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let run = |operation: &'static str| {
        let pipeline = mock_pipeline(JsonlSink::builder().dir(dir.path()).build().unwrap());
        instrument::audit(AuditEntry::new(operation).input(operation)).unwrap();
        instrument::publish(Notice::new("run", Level::Info, operation));
        pipeline.flush().expect("flush");
    };
    run("first");
    // A crash in the middle of a write leaves the start of a line.
    for stream in ["main", "audit"] {
        let mut file = fs::OpenOptions::new()
            .append(true)
            .open(dir.path().join(format!("{stream}.jsonl")))
            .unwrap();
        file.write_all(br#"{"ts":"2026-01-25T10:16:53.123456Z","level":"in"#)
            .unwrap();
    }
    run("second");

    let main = lines(dir.path(), Stream::Main);
    let notices: Vec<_> = of_kind(&main, "notice")
        .iter()
        .map(|l| l["message"].clone())
        .collect();
    assert_eq!(notices, ["first", "second"]);
    let audit = lines(dir.path(), Stream::Audit);
    assert_eq!(inputs(&audit), ["first", "second"]);
    let chain = verify_audit_chain(dir.path()).expect("the chain continues");
    assert_eq!((chain.entries, chain.anchor.as_str()), (2, GENESIS));
}

/// A log directory whose disk is full until `free` is called: a small tmpfs filled with a
/// filler file or, where mounting is not allowed, the stream files replaced by links to
/// `/dev/full`, where every write fails with `ENOSPC`.
enum FullDisk {
    Tmpfs { filler: PathBuf },
    DevFull { links: Vec<PathBuf> },
}

/// A 1 MiB tmpfs mounted on a directory, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts it on `dir`, if this process may mount.
    fn mount(dir: &Path) -> Option<Tmpfs> {
        Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
            .then(|| Tmpfs(dir.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

impl FullDisk {
    fn fill(dir: &Path, mounted: bool) -> FullDisk {
        if mounted {
            let filler = dir.join("filler");
            let mut file = fs::File::create(&filler).unwrap();
            let chunk = vec![b'x'; 4096];
            while file.write_all(&chunk).is_ok() {}
            drop(file);
            return FullDisk::Tmpfs { filler };
        }
        let links = Stream::ALL
            .iter()
            .map(|s| {
                let link = dir.join(format!("{}.jsonl", s.as_str()));
                fs::remove_file(&link).unwrap();
                std::os::unix::fs::symlink("/dev/full", &link).unwrap();
                link
            })
            .collect();
        FullDisk::DevFull { links }
    }

    fn free(&self) {
        match self {
            FullDisk::Tmpfs { filler, .. } => fs::remove_file(filler).unwrap(),
            FullDisk::DevFull { links } => {
                for link in links {
                    fs::remove_file(link).unwrap();
                }
            }
        }
    }
}

/// Writes fail for lack of space: the sink turns unhealthy naming the file, event batches are
/// retried and then counted as lost, audit entries wait; when space returns it recovers by
/// itself, and every line is in the files at most once, every audit entry exactly once.
fn full_disk_then_recovery(try_tmpfs: bool) {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    fs::create_dir(&logs).unwrap();
    let tmpfs = if try_tmpfs { Tmpfs::mount(&logs) } else { None };
    let mounted = tmpfs.is_some();
    if try_tmpfs && !mounted {
        eprintln!("cannot mount a tmpfs here: filling the disk with links to /dev/full instead");
    }
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .max_retries(1)
        .sink(JsonlSink::builder().dir(&logs).build().unwrap())
        .install()
        .expect("no other pipeline is installed");
    pipeline.flush().expect("flush before the disk fills");

    let full = FullDisk::fill(&logs, mounted);
    for i in 0..40 {
        let _ = fail(i);
    }
    for i in 0..20 {
        instrument::audit(AuditEntry::new("store").input(format!("in-{i}"))).unwrap();
    }
    assert!(pipeline.flush().is_err(), "a flush onto a full disk fails");
    let failing = status(&pipeline, "jsonl");
    let SinkHealth::Unhealthy(reason) = &failing.health else {
        panic!("unhealthy while the disk is full: {failing:#?}");
    };
    assert!(
        reason.contains(&logs.display().to_string()) && reason.contains(".jsonl"),
        "the reason names the file: {reason}"
    );
    assert!(reason.contains("No space left on device"), "{reason}");
    assert!(!reason.contains('\n'), "one line: {reason}");
    assert!(
        failing.audit_backlog > 0,
        "audit entries wait: {failing:#?}"
    );

    full.free();
    let pipeline = within("the sink to recover", Duration::from_secs(120), move || {
        while pipeline.flush().is_err() {
            std::thread::sleep(Duration::from_millis(50));
        }
        pipeline
    });
    let recovered = status(&pipeline, "jsonl");
    assert_eq!(recovered.health, SinkHealth::Healthy, "{recovered:#?}");
    pipeline.flush().expect("flush after recovery");
    let lost = status(&pipeline, "jsonl").lost;
    drop(pipeline);
    // Read while the tmpfs is still mounted (`tmpfs` unmounts it when dropped).

    let audit = lines(&logs, Stream::Audit);
    let expected: Vec<String> = (0..20).map(|i| format!("in-{i}")).collect();
    assert_eq!(
        inputs(&audit),
        expected,
        "every audit entry, once, in order"
    );
    verify_audit_chain(&logs).expect("the chain verifies");
    let error = lines(&logs, Stream::Error);
    let ids = call_ids(&error);
    assert!(
        ids.values().all(|&n| n == 1),
        "no call written twice: {ids:?}"
    );
    assert_eq!(
        ids.len() as u64 + lost.events,
        40,
        "each call is written or counted as lost: {lost:?}"
    );
    assert_eq!(lost.audit_entries, 0);
    // The failures are in the log too, written once the disk had room again.
    let reports = of_kind(&error, "sink");
    let report = reports
        .iter()
        .find(|l| l["name"] == "jsonl")
        .expect("a line about the sink's failures");
    assert!(report["fields"]["new_errors"].as_u64().unwrap() > 0);
    assert!(
        report["fields"]["last_error"]
            .as_str()
            .unwrap()
            .contains("No space left on device"),
        "{report}"
    );
}

#[test]
fn a_full_tmpfs_makes_the_sink_unhealthy_and_it_recovers_when_space_returns() {
    full_disk_then_recovery(true);
}

#[test]
fn writes_failing_with_no_space_are_undone_and_retried_once_space_returns() {
    full_disk_then_recovery(false);
}

#[test]
fn a_deleted_directory_is_made_again_and_the_chain_goes_on() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let pipeline = mock_pipeline(JsonlSink::builder().dir(&logs).build().unwrap());
    let _ = fail(1);
    instrument::audit(AuditEntry::new("store").input("before")).unwrap();
    pipeline.flush().expect("flush");
    let before = verify_audit_chain(&logs).unwrap().last_hash;

    fs::remove_dir_all(&logs).unwrap();
    let _ = fail(2);
    instrument::audit(AuditEntry::new("store").input("after")).unwrap();
    pipeline
        .flush()
        .expect("flush into the directory made again");
    assert_eq!(status(&pipeline, "jsonl").health, SinkHealth::Healthy);
    drop(pipeline);

    let ids: Vec<u64> = call_ids(&lines(&logs, Stream::Error)).into_keys().collect();
    assert_eq!(ids, [2]);
    let audit = lines(&logs, Stream::Audit);
    assert_eq!(inputs(&audit), ["after"]);
    assert_eq!(audit[0]["prev_hash"], before.as_str());
    let chain = verify_audit_chain(&logs).expect("verifies from its anchor");
    assert_eq!((chain.entries, chain.anchor), (1, before));
}

#[test]
fn a_directory_replaced_by_a_file_makes_the_sink_unhealthy_until_it_is_back() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs");
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .max_retries(1)
        .sink(JsonlSink::builder().dir(&logs).build().unwrap())
        .install()
        .expect("no other pipeline is installed");
    fs::remove_dir_all(&logs).unwrap();
    fs::write(&logs, "not a directory").unwrap();
    instrument::audit(AuditEntry::new("store").input("waiting")).unwrap();
    assert!(pipeline.flush().is_err());
    let SinkHealth::Unhealthy(reason) = status(&pipeline, "jsonl").health else {
        panic!("unhealthy without its directory");
    };
    assert!(
        reason.starts_with(&format!(
            "cannot create the log directory {}",
            logs.display()
        )),
        "{reason}"
    );

    fs::remove_file(&logs).unwrap();
    // Its maintenance thread may have failed to list the directory too; it looks again once
    // the sink writes again.
    let pipeline = within("the sink to recover", Duration::from_secs(120), move || {
        while pipeline.flush().is_err() || status(&pipeline, "jsonl").health != SinkHealth::Healthy
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        pipeline
    });
    drop(pipeline);
    assert_eq!(inputs(&lines(&logs, Stream::Audit)), ["waiting"]);
}

#[test]
fn the_audit_chain_spans_rotations_and_restarts_and_finds_changes() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let mut next = 0;
    for entries in [30, 10] {
        let sink = JsonlSink::builder()
            .dir(logs)
            .max_file_bytes(2048)
            .build()
            .unwrap();
        let pipeline = mock_pipeline(sink);
        for _ in 0..entries {
            instrument::audit(AuditEntry::new("store").input(format!("in-{next}"))).unwrap();
            next += 1;
        }
        pipeline.flush().expect("flush");
    }
    let chain = verify_audit_chain(logs).expect("verifies");
    assert_eq!((chain.entries, chain.anchor.as_str()), (40, GENESIS));
    let files = log_files(logs, Stream::Audit).unwrap();
    assert!(files.len() > 3, "{files:#?}");

    // Change one byte of the second line of a rotated file.
    let target = &files[1].path;
    let original = fs::read_to_string(target).unwrap();
    let text: Vec<&str> = original.lines().collect();
    let changed = original.replacen(text[1], &text[1].replacen("in-", "IN-", 1), 1);
    fs::write(target, &changed).unwrap();
    match verify_audit_chain(logs) {
        Err(AuditChainError::Broken { path, line, .. }) => {
            assert_eq!((&path, line), (target, 2));
        }
        other => panic!("a changed line breaks the chain: {other:?}"),
    }
    let message = verify_audit_chain(logs).unwrap_err().to_string();
    assert!(
        message.contains(&format!("{}:2", target.display())),
        "{message}"
    );

    // Remove the third line instead: the fourth no longer chains.
    let removed: String = text
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 2)
        .flat_map(|(_, l)| [*l, "\n"])
        .collect();
    fs::write(target, removed).unwrap();
    match verify_audit_chain(logs) {
        Err(AuditChainError::Broken { path, line, reason }) => {
            assert_eq!((&path, line), (target, 3));
            assert!(reason.contains("prev_hash"), "{reason}");
        }
        other => panic!("a removed line breaks the chain: {other:?}"),
    }

    // The next line chains to the last one, so a last line without its hash stops the sink
    // from starting rather than start a second chain.
    fs::write(logs.join("audit.jsonl"), "{}\n").unwrap();
    let err = JsonlSink::builder().dir(logs).build().unwrap_err();
    assert!(matches!(err, JsonlError::AuditHead { .. }), "{err}");
    assert!(err.to_string().contains("audit.jsonl"), "{err}");
}

/// The name of a rotated file of `stream` rotated `ago` before now.
fn rotated_name(stream: &str, ago: Duration, n: u32) -> String {
    let text = humantime::format_rfc3339_seconds(SystemTime::now() - ago).to_string();
    let compact: String = text
        .chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T' || *c == 'Z')
        .collect();
    if n == 0 {
        format!("{stream}.{compact}.jsonl")
    } else {
        format!("{stream}.{compact}-{n}.jsonl")
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n != ".lock")
        .collect();
    names.sort();
    names
}

#[test]
fn retention_keeps_files_per_stream_removes_old_ones_and_compresses() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let line = "{\"ts\":\"2026-01-25T10:16:53.123456Z\",\"level\":\"info\",\"stream\":\"main\",\"kind\":\"notice\",\"name\":\"x\",\"message\":\"m\"}\n";
    let old = rotated_name("main", Duration::from_secs(40 * 86_400), 0);
    let old_audit = rotated_name("audit", Duration::from_secs(40 * 86_400), 0);
    let recent: Vec<String> = (0..4)
        .map(|i| rotated_name("main", Duration::from_secs(3600), i))
        .collect();
    for name in recent.iter().chain([&old]) {
        fs::write(logs.join(name), line).unwrap();
    }
    // An audit file from an earlier run, with a line the next one chains to.
    {
        let earlier = tempfile::tempdir().unwrap();
        let mut sink = JsonlSink::builder().dir(earlier.path()).build().unwrap();
        let mut batch = Batch::default();
        batch.audit.push(AuditEntry::new("store").input("old"));
        sink.write(&batch).unwrap();
        drop(sink);
        fs::copy(earlier.path().join("audit.jsonl"), logs.join(&old_audit)).unwrap();
    }
    // An interrupted compression, and one that only lacked removing its plain file.
    let interrupted = format!("{}.gz.tmp", recent[3]);
    fs::write(logs.join(&interrupted), b"partial").unwrap();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(line.as_bytes()).unwrap();
    fs::write(
        logs.join(format!("{}.gz", recent[2])),
        encoder.finish().unwrap(),
    )
    .unwrap();

    let sink = JsonlSink::builder()
        .dir(logs)
        .keep_files(2)
        .gzip(true)
        .build()
        .unwrap();
    // Dropping the sink waits for its maintenance to finish.
    drop(sink);

    // The audit stream is compressed but not pruned.
    let expected: Vec<String> = [
        format!("{old_audit}.gz"),
        "audit.jsonl".into(),
        "error.jsonl".into(),
        format!("{}.gz", recent[2]),
        format!("{}.gz", recent[3]),
        "main.jsonl".into(),
        "performance.jsonl".into(),
    ]
    .into_iter()
    .collect();
    let mut expected = expected;
    expected.sort();
    assert_eq!(names(logs), expected);
    for file in log_files(logs, Stream::Main).unwrap() {
        let mut text = String::new();
        file.open().unwrap().read_to_string(&mut text).unwrap();
        if !file.current {
            assert_eq!(text, line, "{}", file.path.display());
        }
    }
}

#[test]
fn the_total_size_cap_removes_the_oldest_rotated_files_first() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path();
    let big = "x".repeat(3999) + "\n";
    let rotated: Vec<String> = (0..5)
        .map(|i| rotated_name("error", Duration::from_secs(60), i))
        .collect();
    for name in &rotated {
        fs::write(logs.join(name), &big).unwrap();
    }
    fs::write(logs.join("audit.jsonl"), "").unwrap();
    let sink = JsonlSink::builder()
        .dir(logs)
        .keep_files(100)
        .max_total_bytes(Some(10_000))
        .build()
        .unwrap();
    drop(sink);
    let mut expected = vec![
        "audit.jsonl".to_owned(),
        "error.jsonl".to_owned(),
        rotated[3].clone(),
        rotated[4].clone(),
        "main.jsonl".to_owned(),
        "performance.jsonl".to_owned(),
    ];
    expected.sort();
    assert_eq!(names(logs), expected);
}

#[test]
fn a_new_day_rotates_every_stream_that_has_lines() {
    for boundary in [DayBoundary::Utc, DayBoundary::Local] {
        let dir = tempfile::tempdir().unwrap();
        let mut sink = JsonlSink::builder()
            .dir(dir.path())
            .rotate_daily(boundary)
            .build()
            .unwrap();
        let notice = |message: &str| {
            let mut batch = Batch::default();
            batch
                .notices
                .push(Notice::new("clock", Level::Info, message));
            batch
        };
        sink.write(&notice("day one")).unwrap();
        let now = SystemTime::now();
        sink.tick(now).unwrap();
        assert_eq!(log_files(dir.path(), Stream::Main).unwrap().len(), 1);
        sink.tick(now + Duration::from_secs(86_400)).unwrap();
        sink.write(&notice("day two")).unwrap();
        drop(sink);
        let files = log_files(dir.path(), Stream::Main).unwrap();
        assert_eq!(files.len(), 2, "{boundary:?}: {files:#?}");
        assert!(!files[0].current && files[1].current);
        let messages: Vec<Value> = lines(dir.path(), Stream::Main)
            .iter()
            .map(|l| l["message"].clone())
            .collect();
        assert_eq!(messages, ["day one", "day two"]);
        // Streams without lines are not rotated.
        assert_eq!(log_files(dir.path(), Stream::Error).unwrap().len(), 1);
    }
}

#[test]
fn a_directory_is_written_by_one_sink_at_a_time() {
    let dir = tempfile::tempdir().unwrap();
    let first = JsonlSink::builder().dir(dir.path()).build().unwrap();
    let err = JsonlSink::builder().dir(dir.path()).build().unwrap_err();
    assert!(matches!(err, JsonlError::Locked { .. }), "{err}");
    assert!(
        err.to_string().contains(&dir.path().display().to_string()),
        "{err}"
    );
    drop(first);
    JsonlSink::builder()
        .dir(dir.path())
        .build()
        .expect("free again");
}

#[test]
fn a_directory_that_cannot_be_made_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    fs::write(&file, "").unwrap();
    let logs = file.join("logs");
    let err = JsonlSink::builder().dir(&logs).build().unwrap_err();
    assert!(matches!(err, JsonlError::CreateDir { .. }), "{err}");
    assert!(
        err.to_string().starts_with(&format!(
            "cannot create the log directory {}",
            logs.display()
        )),
        "{err}"
    );
}

/// The child process's role: set by the test that starts it, as `MODE:DIR`.
const CHILD: &str = "INSTRUMENT_JSONL_TEST_CHILD";
const CHILD_CALLS: u64 = 200;
const CHILD_AUDITS: usize = 50;

/// In a child process started by `spawn_child`: records into a pipeline that drains only on
/// flush (interval and window of an hour), says "ready", then waits to be stopped (`sigterm`,
/// `sigint`, `unprotected`) or panics (`panic`).
fn child_role() {
    let Ok(role) = std::env::var(CHILD) else {
        return;
    };
    let (mode, dir) = role.split_once(':').expect("MODE:DIR");
    let sink = JsonlSink::builder().dir(dir).build().expect("builds");
    let pipeline = Arc::new(
        instrument::builder()
            .drain_interval(HOUR)
            .window(HOUR)
            .sink(sink)
            .install()
            .expect("installs"),
    );
    if mode != "unprotected" {
        jsonl::flush_on_termination(&pipeline).expect("handlers installed");
    }
    for i in 0..CHILD_CALLS {
        let _ = fail(i);
    }
    for i in 0..CHILD_AUDITS {
        instrument::audit(AuditEntry::new("store").input(format!("in-{i}"))).unwrap();
    }
    println!("ready");
    std::io::stdout().flush().unwrap();
    if mode == "panic" {
        // Kept for the life of the process: no drop flushes it.
        static KEEP: OnceLock<Arc<PipelineGuard>> = OnceLock::new();
        let _ = KEEP.set(pipeline);
        panic!("the child panics after recording");
    }
    loop {
        std::thread::sleep(HOUR);
    }
}

/// Starts this test binary again running only `test`, in the child role `mode`, and returns it
/// once it said "ready".
fn spawn_child(test: &str, mode: &str, dir: &Path) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(CHILD, format!("{mode}:{}", dir.display()))
        .stdout(Stdio::piped())
        .spawn()
        .expect("starts the child");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    loop {
        line.clear();
        let n = out.read_line(&mut line).unwrap();
        assert!(n > 0, "the child ended before it was ready");
        if line.trim_end().ends_with("ready") {
            break;
        }
    }
    child
}

fn stop(child: &mut Child, signal: libc::c_int) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: `kill` has no memory-safety preconditions; the pid is our own child, not yet
    // waited for, so it cannot have been reused.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

fn wait(child: Child) -> std::process::ExitStatus {
    within("the child to exit", Duration::from_secs(120), move || {
        let mut child = child;
        child.wait().unwrap()
    })
}

/// Every call and audit entry the child recorded is in its files, each once.
fn assert_child_lines(dir: &Path) {
    let ids = call_ids(&lines(dir, Stream::Error));
    assert_eq!(ids.len() as u64, CHILD_CALLS, "{ids:?}");
    assert!(ids.values().all(|&n| n == 1));
    let audit = lines(dir, Stream::Audit);
    let expected: Vec<String> = (0..CHILD_AUDITS).map(|i| format!("in-{i}")).collect();
    assert_eq!(inputs(&audit), expected);
    verify_audit_chain(dir).expect("the chain verifies");
}

fn stopped_by(test: &str, signal: libc::c_int, mode: &str) {
    use std::os::unix::process::ExitStatusExt as _;
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child(test, mode, dir.path());
    stop(&mut child, signal);
    let status = wait(child);
    assert_eq!(
        status.signal(),
        Some(signal),
        "the child ends by the signal: {status:?}"
    );
    assert_child_lines(dir.path());
}

#[test]
fn sigterm_flushes_everything_recorded_before_it() {
    child_role();
    stopped_by(
        "sigterm_flushes_everything_recorded_before_it",
        libc::SIGTERM,
        "sigterm",
    );
}

#[test]
fn sigint_flushes_everything_recorded_before_it() {
    child_role();
    stopped_by(
        "sigint_flushes_everything_recorded_before_it",
        libc::SIGINT,
        "sigint",
    );
}

#[test]
fn a_panic_flushes_everything_recorded_before_it() {
    child_role();
    let dir = tempfile::tempdir().unwrap();
    let child = spawn_child(
        "a_panic_flushes_everything_recorded_before_it",
        "panic",
        dir.path(),
    );
    let status = wait(child);
    assert_eq!(
        status.code(),
        Some(101),
        "the child's test failed: {status:?}"
    );
    assert_child_lines(dir.path());
}

/// What the helper is for: without it, `SIGTERM` ends the process with its records unwritten.
#[test]
fn without_the_helper_sigterm_loses_what_was_not_flushed() {
    use std::os::unix::process::ExitStatusExt as _;
    child_role();
    let dir = tempfile::tempdir().unwrap();
    let mut child = spawn_child(
        "without_the_helper_sigterm_loses_what_was_not_flushed",
        "unprotected",
        dir.path(),
    );
    stop(&mut child, libc::SIGTERM);
    assert_eq!(wait(child).signal(), Some(libc::SIGTERM));
    // The sink had made its files; nothing recorded reached them.
    assert!(dir.path().join("error.jsonl").exists());
    assert!(call_ids(&lines(dir.path(), Stream::Error)).is_empty());
    assert!(lines(dir.path(), Stream::Audit).is_empty());
}
