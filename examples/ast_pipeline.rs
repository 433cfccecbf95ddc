//! The main job: an AST pipeline over real Rust sources, instrumented end to end.
//!
//! ```text
//! cargo run --release --example ast_pipeline                      # workspace + dependency sources
//! cargo run --release --example ast_pipeline -- PATH...           # your own files or directories
//! cargo run --release --example ast_pipeline -- --limit 500 --prometheus off
//! cargo run --release --example ast_pipeline -- --linger 60     # /metrics stays up a minute
//! cargo run --release --example ast_pipeline -- --fail-rate 0.1  # every 10th file fails: time the alert
//! ```
//!
//! With no paths it reads this workspace's sources and the dependency sources Cargo unpacked under
//! `$CARGO_HOME/registry/src` (at most 20,000 files). Worker threads, one per core, take files
//! from a shared queue; each file runs under its own correlation id through three instrumented
//! stages, wrapped by `process_file`:
//!
//! - `read_file`: the file's text (`std::io::Error` on failure, recorded under its type name);
//! - `parse_source`: `syn::parse_file`;
//! - `analyze`: a `syn::visit` walk counting items, functions, unsafe blocks, ...
//!
//! `process_file`'s error type derives `ErrorKind`, so its failures are counted per variant
//! (`Io`, `NotUtf8`, `Parse`). Every file leaves an audit entry with its lineage. At the end the
//! example prints a report built from what the in-memory sink received: the final aggregate
//! snapshot, the per-call events and the audit entries.
//!
//! Everything is also stored in `DIR/instrument.db` (`--data-dir DIR`, default
//! `./instrument-data`), which `instrumentctl` reads, written as JSON lines under `DIR/logs/`
//! (flushed on Ctrl-C or `SIGTERM` too), and served as Prometheus metrics at
//! `http://127.0.0.1:9464/metrics` while the job runs (`--prometheus ADDR|off`, `--linger SECS`),
//! with `/health` and `/ready` beside it: a health registry watches the pipeline, its sinks, the
//! machine (a `sysinfo` sampler every 5 s) and the data directory. An alert engine evaluates the
//! default rules and `FileErrors` (more than 5 % of files failing over 10 s) on every snapshot;
//! `--fail-rate F` makes a fraction of files fail, and the report says how long the engine took
//! from the first failing call to the alert firing (`--alertmanager URL` also pushes it there).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;
use instrument::{
    AuditEntry, CorrelationId, ErrorKind, Event, EventReason, Histogram, Outcome, Snapshot,
    instrument_performance,
};
use instrument_sinks::alerts::{
    AlertEngine, AlertHandle, AlertState, AlertmanagerNotifier, Condition, Rule, RuleSet, Severity,
    Threshold,
};
use instrument_sinks::health::HealthRegistry;
use instrument_sinks::health::checks::{DiskThresholds, SystemThresholds};
use instrument_sinks::system::SystemSampler;
use instrument_sinks::{JsonlSink, MemorySink, PrometheusSink, SqliteSink};
use instrument_workspace::ast::AstStats;
use instrument_workspace::corpus::{self, Corpus};

/// Why a file could not be analysed. `#[derive(ErrorKind)]` records the variant name as the
/// error kind of `process_file`.
#[derive(Debug, thiserror::Error, ErrorKind)]
enum FileError {
    #[error("cannot read: {0}")]
    Io(io::Error),
    #[error("not UTF-8 text")]
    NotUtf8,
    #[error("syn cannot parse it: {0}")]
    Parse(syn::Error),
    #[error("failure injected by --fail-rate")]
    Injected,
}

/// `--fail-rate`: every `FAIL_EVERY`-th file fails with `FileError::Injected` (0: none).
static FAIL_EVERY: AtomicU64 = AtomicU64::new(0);
static FILES_STARTED: AtomicU64 = AtomicU64::new(0);
/// When the first injected failure happened.
static FIRST_FAILURE: OnceLock<Instant> = OnceLock::new();

/// What one file yielded.
struct FileSummary {
    bytes: u64,
    stats: AstStats,
}

#[instrument_performance(slow = "5ms")]
fn read_file(path: &Path) -> io::Result<String> {
    std::fs::read_to_string(path)
}

#[instrument_performance(slow = "20ms")]
fn parse_source(source: &str) -> syn::Result<syn::File> {
    syn::parse_file(source)
}

#[instrument_performance(sample = 0.01)]
fn analyze(file: &syn::File) -> AstStats {
    AstStats::of(file)
}

#[instrument_performance(slow = "20ms", capture(path))]
fn process_file(path: &Path) -> Result<FileSummary, FileError> {
    let every = FAIL_EVERY.load(Ordering::Relaxed);
    if every > 0 && FILES_STARTED.fetch_add(1, Ordering::Relaxed) % every == every - 1 {
        FIRST_FAILURE.get_or_init(Instant::now);
        return Err(FileError::Injected);
    }
    let source = read_file(path).map_err(|e| match e.kind() {
        io::ErrorKind::InvalidData => FileError::NotUtf8,
        _ => FileError::Io(e),
    })?;
    let bytes = source.len() as u64;
    instrument::counter!("bytes_read_total", bytes);
    let file = parse_source(&source).map_err(FileError::Parse)?;
    let stats = analyze(&file);
    instrument::counter!("files_parsed_total");
    instrument::counter!("ast_functions_total", stats.functions);
    instrument::counter!("ast_unsafe_blocks_total", stats.unsafe_blocks);
    Ok(FileSummary { bytes, stats })
}

/// Builds the list of files. `audit` with `capture`: the run's inputs are part of its lineage.
#[instrument_performance(audit, capture(roots, max_files))]
fn discover(roots: &[PathBuf], max_files: usize) -> Corpus {
    let mut corpus = Corpus::new(max_files);
    for root in roots {
        if corpus.is_full() {
            corpus.truncated = true;
            break;
        }
        if let Err(e) = corpus.add(root) {
            eprintln!("ast_pipeline: skipping {}: {e}", root.display());
        }
    }
    corpus
}

/// What one worker did.
#[derive(Default)]
struct WorkerTotals {
    files_ok: u64,
    bytes: u64,
    stats: AstStats,
    failures: Vec<(PathBuf, String)>,
}

fn worker(queue: &Receiver<PathBuf>) -> WorkerTotals {
    let mut totals = WorkerTotals::default();
    while let Ok(path) = queue.recv() {
        instrument::gauge!("files_queued", queue.len() as f64);
        let correlation = CorrelationId::new();
        let _scope = correlation.enter();
        let entry = AuditEntry::new("analyze_file")
            .input(path.display().to_string())
            .actor("ast_pipeline");
        let entry = match process_file(&path) {
            Ok(summary) => {
                totals.files_ok += 1;
                totals.bytes += summary.bytes;
                totals.stats += summary.stats;
                entry
                    .output(format!("ast-stats:{correlation}"))
                    .field("items", &summary.stats.items)
                    .field("functions", &summary.stats.functions)
            }
            Err(e) => {
                let entry = entry
                    .field("error_kind", &e.error_kind())
                    .field("error", &e);
                totals.failures.push((path, e.to_string()));
                entry
            }
        };
        // Audit entries are never dropped: under overload this waits for room instead.
        if let Err(e) = instrument::audit(entry) {
            eprintln!("ast_pipeline: audit entry lost: {e}");
        }
    }
    totals
}

/// Runs the files through `workers` threads and sums what they report.
fn process_all(files: &[PathBuf], workers: usize) -> WorkerTotals {
    let _timer = instrument::timer!("process_all");
    let (tx, rx) = crossbeam_channel::unbounded();
    for file in files {
        tx.send(file.clone()).expect("the receiver is alive");
    }
    drop(tx);
    thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|i| {
                let rx = rx.clone();
                thread::Builder::new()
                    .name(format!("worker-{i}"))
                    .spawn_scoped(scope, move || worker(&rx))
                    .expect("cannot start a worker thread")
            })
            .collect();
        let mut all = WorkerTotals::default();
        for handle in handles {
            let t = handle.join().expect("a worker panicked");
            all.files_ok += t.files_ok;
            all.bytes += t.bytes;
            all.stats += t.stats;
            all.failures.extend(t.failures);
        }
        all
    })
}

/// The command line.
#[derive(clap::Parser)]
#[command(
    name = "ast_pipeline",
    about = "Parses and analyses Rust sources with syn, instrumented end to end.",
    after_help = "With no PATH: this workspace's sources and the crates under \
                  $CARGO_HOME/registry/src."
)]
struct Options {
    /// Files or directories to read (default: this workspace and the local cargo registry).
    #[arg(value_name = "PATH")]
    roots: Vec<PathBuf>,
    /// At most this many files.
    #[arg(long = "limit", visible_alias = "max-files", value_name = "N",
          default_value_t = corpus::DEFAULT_MAX_FILES as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_files: u64,
    /// The data directory; the store is DIR/instrument.db.
    #[arg(long, value_name = "DIR", default_value = "instrument-data")]
    data_dir: PathBuf,
    /// The operations endpoint (`/metrics`): a loopback address, or `off`.
    #[arg(long, value_name = "ADDR|off", default_value = "127.0.0.1:9464",
          value_parser = parse_endpoint)]
    prometheus: Endpoint,
    /// Keep serving the operations endpoint this many seconds after the run.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    linger: u64,
    /// Make this fraction of files fail (0 to 1; e.g. 0.1 fails every 10th file), to see the
    /// alert engine detect it; the report says how long detection took.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fail_rate)]
    fail_rate: f64,
    /// Also push alerts to the Alertmanager at this URL, such as `http://127.0.0.1:9093`.
    #[arg(long, value_name = "URL")]
    alertmanager: Option<String>,
}

fn parse_fail_rate(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(rate) if (0.0..=1.0).contains(&rate) => Ok(rate),
        Ok(rate) => Err(format!("{rate} is not between 0 and 1")),
        Err(e) => Err(format!("`{text}` is not a number ({e})")),
    }
}

/// Where `/metrics` is served, if anywhere.
#[derive(Clone, Copy, Debug)]
enum Endpoint {
    Off,
    At(std::net::SocketAddr),
}

fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    if text == "off" {
        return Ok(Endpoint::Off);
    }
    text.parse()
        .map(Endpoint::At)
        .map_err(|e| format!("`{text}` is neither `off` nor an address like 127.0.0.1:9464 ({e})"))
}

fn options() -> Options {
    let mut options = <Options as clap::Parser>::parse();
    if options.roots.is_empty() {
        options
            .roots
            .push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
        if let Some(dir) = corpus::registry_sources() {
            options.roots.push(dir);
        } else {
            eprintln!("ast_pipeline: no $CARGO_HOME/registry/src; reading this workspace only");
        }
    }
    options
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ast_pipeline: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let options = options();
    let started = Instant::now();

    // The SQLite store and JSON-lines logs on disk, `/metrics` on the operations endpoint, and an
    // in-memory sink the report below is built from. Everything else is the default
    // configuration.
    let store = SqliteSink::builder()
        .path(options.data_dir.join("instrument.db"))
        .build()?;
    let database = store.path().to_owned();
    let logs = JsonlSink::builder()
        .dir(options.data_dir.join("logs"))
        .build()?;
    let logs_dir = logs.dir().to_owned();
    let sink = MemorySink::new();
    // Alert rules on every snapshot: the defaults (CPU, memory, disk, any callsite's error
    // ratio for 30 s) and one that fires at once when more than 5 % of files fail.
    FAIL_EVERY.store(fail_every(options.fail_rate), Ordering::Relaxed);
    let alerts = alert_engine(options.alertmanager.as_deref())?;
    let alert_handle = alerts.handle();
    let mut builder = instrument::builder()
        .sink(store)
        .sink(logs)
        .sink(sink.clone())
        .sink(alerts);
    // /metrics, /health and /ready on one operations endpoint.
    let health = HealthRegistry::new();
    let mut metrics_at = None;
    if let Endpoint::At(addr) = options.prometheus {
        let endpoint = health.mount(instrument_sinks::http::Endpoint::builder().listen(addr));
        let prometheus = PrometheusSink::builder().endpoint(endpoint).build()?;
        metrics_at = prometheus.local_addr();
        builder = builder.sink(prometheus);
    }
    let pipeline = Arc::new(builder.install()?);
    // Stopped by Ctrl-C or a supervisor's SIGTERM (during --linger, say), the job flushes first.
    instrument_sinks::jsonl::flush_on_termination(&pipeline)?;
    let (sampler, checker) = watch(&health, &pipeline, &options.data_dir)?;
    let detection = Detection::watch(alert_handle.clone());

    let corpus = discover(
        &options.roots,
        usize::try_from(options.max_files).unwrap_or(usize::MAX),
    );
    if corpus.files.is_empty() {
        return Err("found no .rs files".into());
    }
    let workers = thread::available_parallelism().map_or(1, std::num::NonZero::get);
    instrument::gauge!("workers", workers as f64);

    let processing = Instant::now();
    let totals = process_all(&corpus.files, workers);
    let processing = processing.elapsed();

    let detected = detection.finish(options.fail_rate > 0.0);
    pipeline.flush()?;
    let snapshot = sink
        .last_snapshot()
        .ok_or("the flush delivered no snapshot")?;
    let health_report = health.report();
    let report = Report {
        options: &options,
        corpus: &corpus,
        totals: &totals,
        workers,
        processing,
        snapshot: &snapshot,
        events: sink.events(),
        audit: sink.audit(),
        database: &database,
        logs: &logs_dir,
    };
    let mut text = report.render();
    operations_report(
        &mut text,
        &health_report,
        &alert_handle,
        detected,
        options.fail_rate,
        metrics_at,
    );
    if let Some(addr) = metrics_at {
        let _ = writeln!(
            text,
            "Prometheus: http://{addr}/metrics{}",
            if options.linger > 0 {
                format!(" (served for {} s more)", options.linger)
            } else {
                " (served during the run; --linger SECS keeps it up after)".to_owned()
            }
        );
    }
    if options.linger > 0 {
        // The report first, so the operator can read it while the endpoint stays up.
        let _ = io::stdout().lock().write_all(text.as_bytes());
        text.clear();
        thread::sleep(Duration::from_secs(options.linger));
    }
    checker.stop();
    sampler.stop();
    Arc::into_inner(pipeline)
        .ok_or("the pipeline is still shared at shutdown")?
        .shutdown()?;
    let _ = writeln!(
        text,
        "total wall time {} (discovery, processing, flush and report)",
        human_duration(started.elapsed())
    );
    // A closed stdout (`| head`) is not an error worth a panic.
    let _ = io::stdout().lock().write_all(text.as_bytes());
    Ok(())
}

/// The health registry's checks: the pipeline, the machine (a sampler every 5 s) and the data
/// directory, kept fresh by a checker thread.
fn watch(
    health: &HealthRegistry,
    pipeline: &instrument::PipelineGuard,
    data_dir: &Path,
) -> Result<(SystemSampler, instrument_sinks::health::HealthChecker), Box<dyn std::error::Error>> {
    let sampler = SystemSampler::builder().data_dir(data_dir).start()?;
    health.watch_pipeline(&pipeline.monitor());
    health.watch_system(sampler.handle(), SystemThresholds::default());
    health.watch_data_dir(data_dir, DiskThresholds::default());
    let checker = health.start_checker(Duration::from_secs(1))?;
    Ok((sampler, checker))
}

/// The default rules and `FileErrors`, pushed to `alertmanager` if given.
fn alert_engine(alertmanager: Option<&str>) -> Result<AlertEngine, Box<dyn std::error::Error>> {
    let mut alerts = AlertEngine::builder()
        .rules(RuleSet::defaults())
        .rule(file_errors_rule());
    if let Some(url) = alertmanager {
        alerts = alerts.notifier(AlertmanagerNotifier::new(url)?);
    }
    Ok(alerts.build()?)
}

/// `--fail-rate` as "every N-th file fails" (0: none).
fn fail_every(rate: f64) -> u64 {
    if rate <= 0.0 {
        0
    } else {
        (1.0 / rate).round().max(1.0) as u64
    }
}

/// More than 5 % of `process_file`'s calls failed over 10 s: fires at the first snapshot that
/// shows it (`for` 0 s).
fn file_errors_rule() -> Rule {
    Rule::new(
        "FileErrors",
        Condition::ErrorRatio {
            function: Some(concat!(module_path!(), "::process_file").to_owned()),
            window: Duration::from_secs(10),
            min_calls: 1,
        },
        Threshold::Above(0.05),
    )
    .severity(Severity::Critical)
    .summary("{{function}} failed {{value_percent}} of its files over {{window}}")
}

/// Watches the alert engine for `FileErrors` firing, on a thread of its own, to time detection
/// from the first failing call.
struct Detection {
    stop: Arc<std::sync::atomic::AtomicBool>,
    thread: thread::JoinHandle<Option<Instant>>,
}

impl Detection {
    fn watch(alerts: AlertHandle) -> Detection {
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                let firing = alerts
                    .alerts()
                    .iter()
                    .any(|a| a.rule == "FileErrors" && a.state == AlertState::Firing);
                if firing {
                    return Some(Instant::now());
                }
                thread::sleep(Duration::from_millis(2));
            }
            None
        });
        Detection { stop, thread }
    }

    /// The time from the first failing call to the alert firing, waiting up to 5 s more for it
    /// when failures were injected.
    fn finish(self, expect: bool) -> Option<Duration> {
        if expect {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !self.thread.is_finished() && Instant::now() < deadline {
                thread::sleep(Duration::from_millis(5));
            }
        }
        self.stop.store(true, Ordering::Relaxed);
        let fired = self.thread.join().ok().flatten()?;
        let first = *FIRST_FAILURE.get()?;
        Some(fired.saturating_duration_since(first))
    }
}

/// Health and alerts at the end of the run.
fn operations_report(
    out: &mut String,
    health: &instrument_sinks::health::HealthReport,
    alerts: &AlertHandle,
    detected: Option<Duration>,
    fail_rate: f64,
    endpoint: Option<std::net::SocketAddr>,
) {
    let _ = writeln!(out, "\nHealth and alerts");
    let faults: Vec<String> = health
        .components
        .iter()
        .filter(|c| c.status != instrument_sinks::health::Status::Healthy)
        .map(|c| {
            format!(
                "{} {} ({})",
                c.name,
                c.status,
                c.reason.as_deref().unwrap_or("-")
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "  health {} across {} component(s){}",
        health.status,
        health.components.len(),
        if faults.is_empty() {
            String::new()
        } else {
            format!(": {}", faults.join("; "))
        }
    );
    if let Some(addr) = endpoint {
        let _ = writeln!(out, "  http://{addr}/health  http://{addr}/ready");
    }
    let firing = alerts.alerts();
    if firing.is_empty() {
        let _ = writeln!(out, "  no alert pending or firing");
    }
    for alert in &firing {
        let _ = writeln!(
            out,
            "  {} {} {}: {}",
            alert.display_state(),
            alert.severity,
            alert.rule,
            alert.summary
        );
    }
    if fail_rate > 0.0 {
        match detected {
            Some(took) => {
                let _ = writeln!(
                    out,
                    "  --fail-rate {fail_rate}: first failing call -> FileErrors firing in {} (in process; default 1 s windows)",
                    human_duration(took)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  --fail-rate {fail_rate}: FileErrors did not fire during the run"
                );
            }
        }
    }
}

/// Everything the report is built from.
struct Report<'a> {
    options: &'a Options,
    corpus: &'a Corpus,
    totals: &'a WorkerTotals,
    workers: usize,
    processing: Duration,
    snapshot: &'a Arc<Snapshot>,
    events: Vec<Event>,
    audit: Vec<AuditEntry>,
    database: &'a std::path::Path,
    logs: &'a std::path::Path,
}

impl Report<'_> {
    fn render(&self) -> String {
        let mut out = String::new();
        self.summary(&mut out);
        self.contents(&mut out);
        self.functions(&mut out);
        self.slowest_files(&mut out);
        self.failures(&mut out);
        self.metrics(&mut out);
        self.audit_trail(&mut out);
        self.self_metrics(&mut out);
        self.look_further(&mut out);
        out
    }

    fn summary(&self, out: &mut String) {
        let t = self.totals;
        let files = self.corpus.files.len();
        let secs = self.processing.as_secs_f64();
        let _ = writeln!(
            out,
            "ast_pipeline: analysed {} of {} Rust files ({}) in {} on {} worker thread(s): {:.0} files/s, {}/s",
            thousands(t.files_ok),
            thousands(files as u64),
            human_bytes(t.bytes),
            human_duration(self.processing),
            self.workers,
            files as f64 / secs,
            human_bytes((t.bytes as f64 / secs) as u64),
        );
        let roots: Vec<_> = self
            .options
            .roots
            .iter()
            .map(|r| r.display().to_string())
            .collect();
        let _ = writeln!(out, "  sources: {}", roots.join(", "));
        if self.corpus.truncated {
            let _ = writeln!(
                out,
                "  stopped at the limit of {} files (--limit N to change it)",
                thousands(self.options.max_files)
            );
        }
        if !self.corpus.unreadable.is_empty() {
            let _ = writeln!(
                out,
                "  {} director(ies) could not be listed",
                self.corpus.unreadable.len()
            );
        }
        let _ = writeln!(
            out,
            "  store: {} (SQLite: tables callsites, events, windows, counters, gauges, drops, audit)",
            self.database.display()
        );
        let _ = writeln!(
            out,
            "  logs: {} (JSON lines: main, error, performance and audit streams)",
            self.logs.display()
        );
    }

    fn contents(&self, out: &mut String) {
        let s = &self.totals.stats;
        let _ = writeln!(
            out,
            "\nWhat the files contain (syn::visit walk; macro bodies are not parsed)"
        );
        let _ = writeln!(
            out,
            "  items {}   functions {} (async {}, unsafe {})   unsafe blocks {}   unsafe impls {}",
            thousands(s.items),
            thousands(s.functions),
            thousands(s.async_functions),
            thousands(s.unsafe_functions),
            thousands(s.unsafe_blocks),
            thousands(s.unsafe_impls),
        );
        let _ = writeln!(
            out,
            "  structs {}   enums {}   traits {}   impls {}   macro_rules {}   macro calls {}   closures {}",
            thousands(s.structs),
            thousands(s.enums),
            thousands(s.traits),
            thousands(s.impls),
            thousands(s.macro_rules),
            thousands(s.macro_calls),
            thousands(s.closures),
        );
    }

    fn functions(&self, out: &mut String) {
        // One row per callsite, all outcomes together; the histograms hold every timed call since
        // install.
        struct Row {
            counts: [u64; 4],
            dropped: u64,
            sum: Duration,
            histogram: Histogram,
            kinds: BTreeMap<&'static str, u64>,
        }
        let mut rows: BTreeMap<&'static str, Row> = BTreeMap::new();
        for call in &self.snapshot.calls {
            let row = rows.entry(call.callsite.name()).or_insert_with(|| Row {
                counts: [0; 4],
                dropped: 0,
                sum: Duration::ZERO,
                histogram: Histogram::new(),
                kinds: BTreeMap::new(),
            });
            let slot = Outcome::ALL
                .iter()
                .position(|&o| o == call.outcome)
                .unwrap_or(0);
            row.counts[slot] += call.total.count;
            row.dropped += call.total.dropped;
            row.sum += call.total.sum;
            row.histogram.merge(&call.histogram);
            for kind in &call.error_kinds {
                *row.kinds.entry(kind.kind).or_default() += kind.total;
            }
        }
        let _ = writeln!(
            out,
            "\nPer function (final snapshot, every call since install)"
        );
        let _ = writeln!(
            out,
            "  {:<28} {:>7} {:>7} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9}",
            "function", "calls", "ok", "error", "panic", "p50", "p90", "p99", "max", "total"
        );
        for (name, row) in &rows {
            let h = &row.histogram;
            let q = |q| human_duration(Duration::from_nanos(h.quantile(q)));
            let _ = writeln!(
                out,
                "  {:<28} {:>7} {:>7} {:>6} {:>6} {:>9} {:>9} {:>9} {:>9} {:>9}",
                name,
                thousands(row.counts.iter().sum::<u64>()),
                thousands(row.counts[0]),
                thousands(row.counts[1]),
                thousands(row.counts[2]),
                q(0.5),
                q(0.9),
                q(0.99),
                human_duration(Duration::from_nanos(h.max())),
                human_duration(row.sum),
            );
            if row.dropped > 0 {
                let _ = writeln!(
                    out,
                    "  {:<28} {} durations dropped under overload (calls still counted)",
                    "", row.dropped
                );
            }
        }
        let with_kinds: Vec<_> = rows.iter().filter(|(_, r)| !r.kinds.is_empty()).collect();
        if !with_kinds.is_empty() {
            let _ = writeln!(out, "  error kinds:");
            for (name, row) in with_kinds {
                let kinds: Vec<_> = row.kinds.iter().map(|(k, n)| format!("{k} x{n}")).collect();
                let _ = writeln!(out, "    {name}: {}", kinds.join(", "));
            }
        }
        let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
        for event in &self.events {
            let reason = match event.reason {
                EventReason::Outcome => "outcome",
                EventReason::Slow => "slow",
                EventReason::Sampled => "sampled",
                _ => "other",
            };
            *reasons.entry(reason).or_default() += 1;
        }
        let reasons: Vec<_> = reasons.iter().map(|(r, n)| format!("{r} {n}")).collect();
        let _ = writeln!(
            out,
            "  per-call events received: {} ({})",
            thousands(self.events.len() as u64),
            if reasons.is_empty() {
                "none".to_owned()
            } else {
                reasons.join(", ")
            }
        );
    }

    fn slowest_files(&self, out: &mut String) {
        let mut slow: Vec<&Event> = self
            .events
            .iter()
            .filter(|e| {
                e.callsite.name() == "ast_pipeline::process_file" && e.reason == EventReason::Slow
            })
            .collect();
        if slow.is_empty() {
            let _ = writeln!(out, "\nNo file took 20 ms or more in process_file.");
            return;
        }
        slow.sort_by_key(|e| std::cmp::Reverse(e.duration));
        let _ = writeln!(
            out,
            "\nSlowest files (process_file events, slow = \"20ms\"; {} in all)",
            slow.len()
        );
        for event in slow.iter().take(5) {
            let thread = event.thread.name.as_deref().unwrap_or("?");
            let fields: Vec<_> = event
                .fields
                .iter()
                .map(|(name, value)| format!("{name}={value}"))
                .collect();
            let _ = writeln!(
                out,
                "  {:>9}  {}  [{thread}]",
                human_duration(event.duration),
                fields.join(" ")
            );
        }
        // Everything recorded under the slowest file's correlation id: its own stage events and
        // its audit entry.
        let Some(id) = slow[0].correlation else {
            return;
        };
        let _ = writeln!(
            out,
            "  correlation {id}, the slowest file, as the sink saw it:"
        );
        let mut related: Vec<&Event> = self
            .events
            .iter()
            .filter(|e| e.correlation == Some(id))
            .collect();
        related.sort_by_key(|e| e.start);
        for event in related {
            let _ = writeln!(
                out,
                "    event  {:<28} {:>9}  {} ({:?})",
                event.callsite.name(),
                human_duration(event.duration),
                event.outcome,
                event.reason
            );
        }
        for entry in self.audit.iter().filter(|a| a.correlation == Some(id)) {
            let _ = writeln!(
                out,
                "    audit  {} {:?} -> {:?} {:?}",
                entry.operation, entry.inputs, entry.outputs, entry.fields
            );
        }
    }

    fn failures(&self, out: &mut String) {
        let failures = &self.totals.failures;
        if failures.is_empty() {
            let _ = writeln!(out, "\nEvery file was read and parsed.");
            return;
        }
        let _ = writeln!(out, "\nFiles that failed ({}; first 5)", failures.len());
        let mut sorted: Vec<_> = failures.iter().collect();
        sorted.sort();
        for (path, message) in sorted.iter().take(5) {
            let _ = writeln!(out, "  {}: {message}", path.display());
        }
    }

    fn metrics(&self, out: &mut String) {
        let _ = writeln!(out, "\nCounters and gauges");
        for counter in &self.snapshot.counters {
            let _ = writeln!(
                out,
                "  {:<28} {:>14}",
                counter.callsite.name(),
                thousands(counter.total)
            );
        }
        for gauge in &self.snapshot.gauges {
            let _ = writeln!(
                out,
                "  {:<28} {:>14} (last value)",
                gauge.callsite.name(),
                gauge.value
            );
        }
    }

    fn audit_trail(&self, out: &mut String) {
        let per_file = self
            .audit
            .iter()
            .filter(|a| a.operation == "analyze_file")
            .count();
        let by_option = self.audit.iter().filter(|a| a.callsite.is_some()).count();
        let _ = writeln!(
            out,
            "\nAudit: {} entries: {} analyze_file (one per file; {} files), {} from #[instrument_performance(audit)]",
            thousands(self.audit.len() as u64),
            thousands(per_file as u64),
            thousands(self.corpus.files.len() as u64),
            by_option,
        );
        for entry in self.audit.iter().filter(|a| a.callsite.is_some()) {
            let arguments = entry.fields.iter().map(|(k, v)| format!("{k}: {v}"));
            let _ = writeln!(
                out,
                "  {} {} in {}, {}",
                entry.operation,
                entry.outcome.map_or("-", Outcome::as_str),
                entry
                    .duration
                    .map_or_else(|| "-".to_owned(), human_duration),
                arguments.collect::<Vec<_>>().join(", ")
            );
        }
    }

    /// `instrumentctl` commands that answer the next questions from the store, with this run's
    /// own database, a real correlation id and a real file.
    fn look_further(&self, out: &mut String) {
        let db = self.database.display();
        let ctl = format!("instrumentctl --db {db}");
        let _ = writeln!(
            out,
            "\nLook further with instrumentctl (`cargo install --path sinks --features cli`; or \
             `cargo run -p instrument-sinks --features cli --bin instrumentctl -- ARGS`):"
        );
        let _ = writeln!(out, "  {ctl} summary --since 1h");
        let _ = writeln!(out, "  {ctl} slow --top 10");
        let _ = writeln!(out, "  {ctl} errors --since 1h");
        if let Some(id) = self
            .events
            .iter()
            .filter(|e| e.correlation.is_some())
            .max_by_key(|e| e.duration)
            .and_then(|e| e.correlation)
        {
            let _ = writeln!(out, "  {ctl} trace {id}");
        }
        if let Some(file) = self
            .audit
            .iter()
            .find(|a| a.operation == "analyze_file")
            .and_then(|a| a.inputs.first())
        {
            let _ = writeln!(out, "  {ctl} audit trail '{file}'");
        }
        let _ = writeln!(out, "  {ctl} audit verify");
        let _ = writeln!(out, "  {ctl} health");
        let _ = writeln!(out, "  {ctl} alerts --all");
    }

    fn self_metrics(&self, out: &mut String) {
        let m = &self.snapshot.self_metrics;
        let _ = writeln!(out, "\nPipeline self-metrics (as of the final snapshot)");
        let _ = writeln!(
            out,
            "  records drained {}   durations dropped {}   queue high water {}   thread buffers {}",
            thousands(m.events_recorded),
            thousands(m.events_dropped),
            thousands(m.queue_high_water),
            m.threads,
        );
        let _ = writeln!(
            out,
            "  memory held by buffers and aggregates {}   last drain cycle {}",
            human_bytes(m.memory_bytes),
            human_duration(m.drain_cycle)
        );
        for s in &m.sinks {
            let _ = writeln!(
                out,
                "  sink {}: {} batches delivered, {} errors, {} batches dropped, backlog {}",
                s.name, s.delivered, s.errors, s.dropped_batches, s.backlog
            );
        }
    }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

fn human_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos < 1_000 {
        format!("{nanos}ns")
    } else if nanos < 1_000_000 {
        format!("{:.1}µs", nanos as f64 / 1e3)
    } else if nanos < 1_000_000_000 {
        format!("{:.1}ms", nanos as f64 / 1e6)
    } else {
        format!("{:.2}s", d.as_secs_f64())
    }
}

fn human_bytes(n: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if n < 1024 * 1024 {
        format!("{:.1} KiB", n as f64 / 1024.0)
    } else {
        format!("{:.1} MiB", n as f64 / MIB)
    }
}
