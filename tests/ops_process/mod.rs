//! A small pipeline with the operations page on, for the page's tests: three stages
//! (`read_source`, `parse_file`, which fails on every fifth file, and `transform`, slow on every
//! fourth), an audited `write_output`, manual audit entries linking each source to its output,
//! every unit of work under its own correlation id; the `SQLite` sink, an `OpsSink`, an alert
//! engine whose rule fires on `parse_file`'s errors, a health registry watching the pipeline,
//! a system sampler, and the operations endpoint on a free loopback port serving the page,
//! `/health` and `/ready`. A thread keeps the work going until the fixture is dropped.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use instrument::{AuditEntry, CorrelationId, PipelineGuard, instrument_performance};
use instrument_sinks::SqliteSink;
use instrument_sinks::alerts::{AlertEngine, AlertHandle, Condition, Rule, Threshold};
use instrument_sinks::health::{HealthChecker, HealthRegistry};
use instrument_sinks::http::Endpoint;
use instrument_sinks::ops::{OpsPage, OpsSink};
use instrument_sinks::system::SystemSampler;

/// A parse failure; its kind is `syntax`.
#[derive(Debug, instrument::ErrorKind)]
pub enum ParseError {
    /// The source does not parse.
    #[error_kind(rename = "syntax")]
    Syntax,
}

#[instrument_performance(name = "read_source", capture(path))]
fn read_source(path: &str) -> usize {
    thread::sleep(Duration::from_micros(200));
    path.len()
}

#[instrument_performance(name = "parse_file", capture(path, n))]
fn parse_file(path: &str, n: u64) -> Result<u64, ParseError> {
    thread::sleep(Duration::from_micros(500));
    if n % 5 == 4 {
        Err(ParseError::Syntax)
    } else {
        Ok(n)
    }
}

#[instrument_performance(name = "transform", slow = "15ms", capture(n))]
fn transform(n: u64) -> u64 {
    let pause = if n % 4 == 3 { 20_000 } else { 300 };
    thread::sleep(Duration::from_micros(pause));
    n * 2
}

#[instrument_performance(name = "write_output", audit, capture(path))]
fn write_output(path: &str) {
    thread::sleep(Duration::from_micros(100));
}

/// The path of file `n`'s source.
pub fn source_of(n: u64) -> String {
    format!("src/file{n}.rs")
}

/// The path of file `n`'s output.
pub fn output_of(n: u64) -> String {
    format!("out/file{n}.json")
}

/// One unit of work: file `n` read, parsed, transformed and written, under its own id.
fn unit_of_work(n: u64) {
    let id = CorrelationId::new();
    instrument::with_correlation(id, || {
        let source = source_of(n);
        let output = output_of(n);
        read_source(&source);
        if parse_file(&source, n).is_ok() {
            let _ = instrument::audit(
                AuditEntry::new("parse")
                    .input(&source)
                    .output(format!("ast/file{n}")),
            );
            // Audit entries are stamped by the system clock, events by the pipeline's (anchored
            // to it at install): a gap keeps their order in a trace beyond the clocks' drift.
            thread::sleep(Duration::from_millis(2));
            transform(n);
            write_output(&output);
            let _ = instrument::audit(
                AuditEntry::new("emit")
                    .input(format!("ast/file{n}"))
                    .output(&output)
                    .actor("ops-test"),
            );
        }
    });
}

/// The running process: dropped, it stops the work, the pipeline and the endpoint.
pub struct OpsProcess {
    pub addr: SocketAddr,
    pub db: PathBuf,
    pub alerts: AlertHandle,
    pub units: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    load: Option<JoinHandle<()>>,
    checker: Option<HealthChecker>,
    sampler: Option<SystemSampler>,
    endpoint: Option<Endpoint>,
    pipeline: Option<PipelineGuard>,
    _dir: tempfile::TempDir,
}

impl Drop for OpsProcess {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(load) = self.load.take() {
            let _ = load.join();
        }
        drop(self.checker.take());
        if let Some(sampler) = self.sampler.take() {
            sampler.stop();
        }
        if let Some(endpoint) = self.endpoint.take() {
            let _ = endpoint.shutdown();
        }
        if let Some(pipeline) = self.pipeline.take() {
            let _ = pipeline.shutdown();
        }
    }
}

/// What to start.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Whether the page may acknowledge alerts.
    pub ack: bool,
    /// Whether to keep work going on a thread (otherwise `units_at_start` units only).
    pub keep_working: bool,
    /// Units of work done before `start` returns.
    pub units_at_start: u64,
    /// How far back the live charts go.
    pub history: Duration,
}

/// Starts the pipeline, the endpoint and the work; returns once `units_at_start` units are
/// done and flushed to the store.
pub fn start(options: Options) -> OpsProcess {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let db = dir.path().join("instrument.db");
    let ops = OpsSink::builder().history(options.history).build();
    let engine = AlertEngine::builder()
        .rule(
            Rule::new(
                "ParseErrors",
                Condition::ErrorRatio {
                    function: Some("parse_file".into()),
                    window: Duration::from_secs(30),
                    min_calls: 1,
                },
                Threshold::Above(0.05),
            )
            .summary("{{function}} failed {{value_percent}} of calls"),
        )
        .build()
        .expect("a valid rule");
    let alerts = engine.handle();
    let registry = HealthRegistry::new();
    let endpoint = OpsPage::new()
        .live(ops.handle())
        .store(&db)
        .alerts(alerts.clone())
        .health(registry.clone())
        .allow_ack(options.ack);
    let pipeline = instrument::builder()
        .sink(ops)
        .sink(SqliteSink::builder().path(&db).build().expect("a store"))
        .sink(engine)
        .install()
        .expect("no other pipeline is installed");
    registry.watch_pipeline(&pipeline.monitor());
    let sampler = SystemSampler::builder()
        .interval(Duration::from_secs(1))
        .data_dir(dir.path())
        .start()
        .expect("the system sampler starts");
    let checker = registry
        .start_checker(Duration::from_secs(1))
        .expect("the health checker starts");
    let endpoint = registry
        .mount(endpoint.mount(Endpoint::builder().listen("127.0.0.1:0".parse().unwrap())))
        .start()
        .expect("the operations endpoint starts");
    let units = Arc::new(AtomicU64::new(0));
    for n in 0..options.units_at_start {
        unit_of_work(n);
        units.fetch_add(1, Ordering::Relaxed);
    }
    pipeline.flush().expect("the first units reach every sink");
    let stop = Arc::new(AtomicBool::new(false));
    let load = options.keep_working.then(|| {
        let stop = Arc::clone(&stop);
        let units = Arc::clone(&units);
        thread::spawn(move || {
            // Bounded: it stops by itself after 10 minutes if nobody stops it.
            let deadline = Instant::now() + Duration::from_secs(600);
            let mut n = units.load(Ordering::Relaxed);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                unit_of_work(n);
                n += 1;
                units.store(n, Ordering::Relaxed);
                thread::sleep(Duration::from_millis(10));
            }
        })
    });
    OpsProcess {
        addr: endpoint.local_addr(),
        db,
        alerts,
        units,
        stop,
        load,
        checker: Some(checker),
        sampler: Some(sampler),
        endpoint: Some(endpoint),
        pipeline: Some(pipeline),
        _dir: dir,
    }
}

/// Polls `check` every 100 ms until it returns `Some`, panicking with `what` after 90 s (a
/// guard against waiting for ever, not a timing assertion).
pub fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        thread::sleep(Duration::from_millis(100));
    }
}
