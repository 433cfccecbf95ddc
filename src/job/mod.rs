//! The main job: a staged pipeline that parses Rust sources with `syn` and stores what it finds.
//!
//! ```text
//! discover ──paths──▶ read ──sources──▶ parse + analyze (N threads) ──results──▶ store
//!  1 thread  (4096)  1 thread   (64)                                   (256)    calling thread
//! ```
//!
//! Each stage runs on its own thread(s) and hands its output to the next through a bounded
//! `crossbeam-channel`, so a slow stage holds the ones before it back instead of letting
//! memory grow. `parse` and `analyze` share their threads: `syn`'s syntax tree is not `Send`.
//! Every stage function carries `#[instrument_performance]` with a `stage` label
//! (`ast_pipeline::list_dir` `discover`, `read_file` `read`, `parse_source` `parse`,
//! `analyze` `analyze`, `store_batch` `store`), and each receiving stage sets the gauge
//! `ast_queue_depth{queue}` to the length of its input queue as it takes a file.
//!
//! Every file found is stored: a row of `ast_files` (with `status` `ok` and its counts, or
//! `error` with the `stage`, `error_kind` and message), its functions in `ast_functions`, and,
//! when [`JobOptions::audit`] is on, an audit entry `analyze_file` with the inputs `PATH` and
//! `sha256:HEX` (its content) and the output `ast_files:ID`, under the file's correlation id, so
//! `instrumentctl audit trail PATH` shows where the file went. The run itself is a row of
//! `ast_runs` and an audit entry `ast_run` (inputs: the roots; output `ast_runs:ID`).
//!
//! `--fail-rate F` makes `parse_source` fail, without parsing, for the files whose path hashes
//! below `F` (see [`injected_failure`]): the same files in every run, with the error kind
//! `Injected`, apart from the real `Syntax` errors.

mod sdk;
mod store;

pub mod report;

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use instrument::{AuditEntry, CorrelationId, ErrorKind as _, Outcome, instrument_performance};
use sha2::{Digest as _, Sha256};

use crate::ast::{AstStats, DebtMarkers, FileAnalysis};
use crate::corpus::{self, Listing};

pub use sdk::{Instrumentation, InstrumentationOptions, Operations, STAGE_ERRORS_RULE, SdkError};
pub use store::{ComplexFunction, StoreError};

use store::{AstStore, content_id};

/// Files stored per transaction at most.
pub const BATCH_FILES: usize = 256;
/// How long the store stage waits for more files before it writes a partial batch.
const BATCH_WAIT: Duration = Duration::from_millis(50);
/// Capacities of the queues between the stages.
const PATHS_QUEUE: usize = 4096;
const SOURCES_QUEUE: usize = 64;
const RESULTS_QUEUE: usize = 256;
/// How many failed files the summary names.
const FAILURES_KEPT: usize = 5;

/// The stages, in pipeline order, with the callsite of each.
pub const STAGES: [(&str, &str); 5] = [
    ("discover", "ast_pipeline::list_dir"),
    ("read", "ast_pipeline::read_file"),
    ("parse", "ast_pipeline::parse_source"),
    ("analyze", "ast_pipeline::analyze"),
    ("store", "ast_pipeline::store_batch"),
];

/// `--inject-latency`: nanoseconds each stage function sleeps after its work, in [`STAGES`]
/// order; set by [`run`] for its duration. Zero (one load and a branch per call) when not asked.
static INJECTED_LATENCY: [AtomicU64; 5] = [const { AtomicU64::new(0) }; 5];

/// Sleeps the latency injected into stage `index` of [`STAGES`], if any.
fn inject_latency(index: usize) {
    let nanos = INJECTED_LATENCY[index].load(Ordering::Relaxed);
    if nanos > 0 {
        thread::sleep(Duration::from_nanos(nanos));
    }
}

/// Parses `STAGE=DURATION` (such as `parse=2ms`) for [`JobOptions::inject_latency`].
///
/// # Errors
/// A message naming the unknown stage or the bad duration.
pub fn parse_injected_latency(text: &str) -> Result<(&'static str, Duration), String> {
    let Some((stage, duration)) = text.split_once('=') else {
        return Err(format!("`{text}` is not STAGE=DURATION, such as parse=2ms"));
    };
    let Some(&(name, _)) = STAGES.iter().find(|(name, _)| *name == stage.trim()) else {
        let names: Vec<&str> = STAGES.iter().map(|(name, _)| *name).collect();
        return Err(format!(
            "unknown stage `{stage}` in `{text}`: one of {}",
            names.join(", ")
        ));
    };
    let duration = humantime::parse_duration(duration.trim())
        .map_err(|e| format!("bad duration in `{text}`: {e}"))?;
    Ok((name, duration))
}

/// What to run.
#[derive(Clone, Debug)]
pub struct JobOptions {
    /// Files and directories to read.
    pub roots: Vec<PathBuf>,
    /// At most this many files.
    pub max_files: usize,
    /// Threads that parse and analyze.
    pub threads: usize,
    /// The fraction of parse calls that fail on purpose (0 to 1).
    pub fail_rate: f64,
    /// The `SQLite` file the tables go to (the SDK's store, `DIR/instrument.db`).
    pub database: PathBuf,
    /// Record an audit entry per file and per run (needs an installed pipeline).
    pub audit: bool,
    /// Draw a progress bar on stdout (only where stdout is a terminal).
    pub progress: bool,
    /// How long one attempt to write waits for the file's write lock.
    pub busy_timeout: Duration,
    /// Latency added to stage functions (by stage name of [`STAGES`]), inside the measured
    /// call, after its work: to rehearse `instrumentctl compare` and the latency alerts.
    pub inject_latency: BTreeMap<&'static str, Duration>,
}

impl JobOptions {
    /// Options for reading `roots` into `database`: the default file limit, one parsing thread
    /// per core, no injected failures, audit entries on, no progress bar.
    #[must_use]
    pub fn new(roots: Vec<PathBuf>, database: PathBuf) -> Self {
        JobOptions {
            roots,
            max_files: corpus::DEFAULT_MAX_FILES,
            threads: thread::available_parallelism().map_or(1, std::num::NonZero::get),
            fail_rate: 0.0,
            database,
            audit: true,
            progress: false,
            busy_timeout: Duration::from_secs(5),
            inject_latency: BTreeMap::new(),
        }
    }
}

/// Why the job stopped.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// No `.rs` file was found.
    #[error("found no .rs files under {roots}{unreadable}")]
    NoFiles {
        /// The roots, comma-separated.
        roots: String,
        /// `; cannot read ...` for the first root or directory that could not be listed.
        unreadable: String,
    },
    /// The job's tables could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Audit entries were refused (the pipeline was shut down during the run).
    #[error("{lost} audit entries could not be recorded, the first for {path}: {error}")]
    AuditLost {
        /// How many.
        lost: u64,
        /// The file of the first.
        path: String,
        /// Why.
        error: instrument::Error,
    },
    /// A stage's thread could not be started.
    #[error("cannot start the {stage} thread: {source}")]
    Spawn {
        /// The stage.
        stage: &'static str,
        /// Why.
        source: io::Error,
    },
    /// A stage's thread panicked.
    #[error("the {stage} stage panicked")]
    Panicked {
        /// The stage.
        stage: &'static str,
    },
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadFailure {
    /// The file system refused.
    #[error("cannot read it: {0}")]
    Io(io::Error),
    /// It is not UTF-8 text (its content was read and hashed).
    #[error("it is not UTF-8 text")]
    NotUtf8 {
        /// Its content's SHA-256.
        sha256: [u8; 32],
    },
}

/// The error kind of a file system error: `NotFound`, `PermissionDenied`, else `Io`.
fn io_kind(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::NotFound => "NotFound",
        io::ErrorKind::PermissionDenied => "PermissionDenied",
        _ => "Io",
    }
}

impl instrument::ErrorKind for ReadFailure {
    fn error_kind(&self) -> &'static str {
        match self {
            ReadFailure::Io(e) => io_kind(e),
            ReadFailure::NotUtf8 { .. } => "NotUtf8",
        }
    }
}

/// Why a file could not be parsed. `#[derive(ErrorKind)]`: the variant names the kind.
#[derive(Debug, thiserror::Error, instrument::ErrorKind)]
pub enum ParseFailure {
    /// `syn` rejected it.
    #[error("syn cannot parse it: {0}")]
    Syntax(syn::Error),
    /// `--fail-rate` selected it.
    #[error("failed on purpose: --fail-rate {0} selects this file")]
    Injected(f64),
}

/// A file read and hashed.
struct Content {
    text: String,
    sha256: [u8; 32],
}

/// A file on its way to be parsed.
struct Loaded {
    path: String,
    correlation: CorrelationId,
    content: Content,
}

/// Why a file ended in `error`.
#[derive(Clone, Debug)]
pub(crate) struct Failure {
    pub(crate) stage: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) message: String,
}

/// A file on its way to the store.
pub(crate) struct FileResult {
    pub(crate) path: String,
    pub(crate) sha256: Option<[u8; 32]>,
    pub(crate) bytes: Option<u64>,
    pub(crate) correlation: CorrelationId,
    pub(crate) outcome: Result<FileAnalysis, Failure>,
}

/// Whether `--fail-rate rate` makes `path`'s parse fail: the 64-bit FNV-1a hash of the path's
/// bytes, as a fraction of 2^64, is below `rate`. The same paths fail in every run.
///
/// ```
/// use instrument_workspace::job::injected_failure;
///
/// let path = std::path::Path::new("src/lib.rs");
/// assert!(!injected_failure(path, 0.0));
/// assert!(injected_failure(path, 1.0));
/// assert_eq!(injected_failure(path, 0.3), injected_failure(path, 0.3));
/// ```
#[must_use]
pub fn injected_failure(path: &Path, rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in path.as_os_str().as_encoded_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    ((hash >> 11) as f64 / (1u64 << 53) as f64) < rate
}

// The stage functions. Their names are set, so that the callsites keep their names wherever
// the code lives.

/// Discover: one directory's `.rs` files and subdirectories.
#[instrument_performance(
    name = "ast_pipeline::list_dir",
    labels(stage = "discover"),
    slow = "20ms",
    err_kind = io_kind
)]
fn list_dir(dir: &Path) -> io::Result<Listing> {
    let listing = corpus::list_dir(dir);
    inject_latency(0);
    listing
}

/// Read: the file's bytes, their SHA-256, and the text.
#[instrument_performance(
    name = "ast_pipeline::read_file",
    labels(stage = "read"),
    slow = "10ms"
)]
fn read_file(path: &Path) -> Result<Content, ReadFailure> {
    let bytes = std::fs::read(path).map_err(ReadFailure::Io);
    inject_latency(1);
    let bytes = bytes?;
    let sha256: [u8; 32] = Sha256::digest(&bytes).into();
    let text = String::from_utf8(bytes).map_err(|_| ReadFailure::NotUtf8 { sha256 })?;
    Ok(Content { text, sha256 })
}

/// Parse: `syn::parse_file`, unless `--fail-rate` selects the file.
#[instrument_performance(
    name = "ast_pipeline::parse_source",
    labels(stage = "parse"),
    slow = "20ms",
    capture(path)
)]
fn parse_source(path: &str, text: &str, fail_rate: f64) -> Result<syn::File, ParseFailure> {
    let parsed = if injected_failure(Path::new(path), fail_rate) {
        Err(ParseFailure::Injected(fail_rate))
    } else {
        syn::parse_file(text).map_err(ParseFailure::Syntax)
    };
    inject_latency(2);
    parsed
}

/// Analyze: counts, functions, complexity, nesting, debt markers.
#[instrument_performance(
    name = "ast_pipeline::analyze",
    labels(stage = "analyze"),
    slow = "5ms"
)]
fn analyze(file: &syn::File, text: &str) -> FileAnalysis {
    let analysis = FileAnalysis::of(file, text);
    inject_latency(3);
    analysis
}

/// Store: one transaction for a batch of files.
#[instrument_performance(
    name = "ast_pipeline::store_batch",
    labels(stage = "store"),
    slow = "250ms",
    capture(files)
)]
fn store_batch(
    store: &mut AstStore,
    run_id: i64,
    batch: &[FileResult],
    files: usize,
) -> Result<Vec<i64>, StoreError> {
    debug_assert_eq!(files, batch.len());
    let stored = store.insert_batch(run_id, batch);
    inject_latency(4);
    stored
}

/// Calls and failures of one stage, counted by the job itself (they hold with the SDK off).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StageCount {
    /// Calls of the stage function.
    pub calls: u64,
    /// Of those, failed.
    pub errors: u64,
    /// Files it handled (for `discover`, files found; for `store`, files stored).
    pub files: u64,
    /// Threads it ran on.
    pub threads: usize,
}

/// A file that ended in `error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedFile {
    /// Its path.
    pub path: String,
    /// `read` or `parse`.
    pub stage: &'static str,
    /// The error kind.
    pub kind: &'static str,
    /// The message.
    pub message: String,
}

/// One stored file, to point the operator at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFile {
    /// Its path.
    pub path: String,
    /// Its correlation id.
    pub correlation: CorrelationId,
    /// Its `ast_files` id.
    pub record: i64,
}

/// What a run did.
#[derive(Clone, Debug)]
pub struct JobSummary {
    /// Its `ast_runs` id.
    pub run_id: i64,
    /// The options it ran with.
    pub options: JobOptions,
    /// Files found (and sent on).
    pub discovered: u64,
    /// Whether discovery stopped at [`JobOptions::max_files`] with files left.
    pub truncated: bool,
    /// Roots and directories that could not be listed, with the reason.
    pub unreadable: Vec<(PathBuf, String)>,
    /// Files stored (`ok` and `error`).
    pub stored: u64,
    /// Files parsed and analyzed.
    pub parsed: u64,
    /// Failed files per stage and kind.
    pub failures: BTreeMap<(&'static str, &'static str), u64>,
    /// The first failed files, in the order they were stored.
    pub first_failures: Vec<FailedFile>,
    /// Bytes of the files read.
    pub bytes: u64,
    /// The sum of the parsed files' counts.
    pub stats: AstStats,
    /// The sum of their debt markers.
    pub debt: DebtMarkers,
    /// The ten most complex functions.
    pub most_complex: Vec<ComplexFunction>,
    /// Per stage, in [`STAGES`] order.
    pub stages: [StageCount; 5],
    /// From the start of discovery until the last batch was stored.
    pub wall: Duration,
    /// Audit entries recorded.
    pub audit_entries: u64,
    /// Batches that found the file busy and were tried again.
    pub busy_retries: u64,
    /// The first file that failed, else the first file stored.
    pub example: Option<StoredFile>,
}

impl JobSummary {
    /// Failed files, all stages and kinds.
    #[must_use]
    pub fn failed(&self) -> u64 {
        self.failures.values().sum()
    }
}

/// What the discovery thread found.
#[derive(Default)]
struct Discovery {
    files: u64,
    dirs: u64,
    dir_errors: u64,
    truncated: bool,
    unreadable: Vec<(PathBuf, String)>,
}

fn discover(
    roots: &[PathBuf],
    max_files: usize,
    paths: &Sender<PathBuf>,
    bar: &indicatif::ProgressBar,
) -> Discovery {
    let max = max_files as u64;
    let mut found = Discovery::default();
    let send = |found: &mut Discovery, file: PathBuf| -> bool {
        if found.files >= max {
            found.truncated = true;
            return false;
        }
        found.files += 1;
        bar.inc_length(1);
        paths.send(file).is_ok()
    };
    'roots: for root in roots {
        match std::fs::metadata(root) {
            Err(e) => {
                found.unreadable.push((root.clone(), e.to_string()));
                continue;
            }
            Ok(m) if m.is_file() => {
                if !send(&mut found, root.clone()) {
                    break;
                }
                continue;
            }
            Ok(_) => {}
        }
        let mut pending = vec![root.clone()];
        while let Some(dir) = pending.pop() {
            found.dirs += 1;
            match list_dir(&dir) {
                Ok(listing) => {
                    for file in listing.files {
                        if !send(&mut found, file) {
                            break 'roots;
                        }
                    }
                    pending.extend(listing.dirs.into_iter().rev());
                }
                Err(e) => {
                    found.dir_errors += 1;
                    found.unreadable.push((dir, e.to_string()));
                }
            }
        }
    }
    found
}

/// Counts of the read stage.
#[derive(Default)]
struct ReadCount {
    calls: u64,
    errors: u64,
}

fn read_stage(
    paths: &Receiver<PathBuf>,
    sources: &Sender<Loaded>,
    results: &Sender<FileResult>,
) -> ReadCount {
    let mut count = ReadCount::default();
    while let Ok(path) = paths.recv() {
        instrument::gauge!("ast_queue_depth", paths.len() as f64, "queue" => "paths");
        let correlation = CorrelationId::new();
        let _scope = correlation.enter();
        let path_text = path.to_string_lossy().into_owned();
        count.calls += 1;
        let sent = match read_file(&path) {
            Ok(content) => {
                instrument::counter!("ast_bytes_read_total", content.text.len() as u64);
                sources
                    .send(Loaded {
                        path: path_text,
                        correlation,
                        content,
                    })
                    .is_ok()
            }
            Err(e) => {
                count.errors += 1;
                let sha256 = match &e {
                    ReadFailure::NotUtf8 { sha256 } => Some(*sha256),
                    ReadFailure::Io(_) => None,
                };
                results
                    .send(FileResult {
                        path: path_text,
                        sha256,
                        bytes: None,
                        correlation,
                        outcome: Err(Failure {
                            stage: "read",
                            kind: e.error_kind(),
                            message: e.to_string(),
                        }),
                    })
                    .is_ok()
            }
        };
        if !sent {
            break;
        }
    }
    count
}

/// Counts of one parsing thread.
#[derive(Default)]
struct ParseCount {
    parse_calls: u64,
    parse_errors: u64,
    analyze_calls: u64,
}

fn parse_stage(
    sources: &Receiver<Loaded>,
    results: &Sender<FileResult>,
    fail_rate: f64,
) -> ParseCount {
    let mut count = ParseCount::default();
    while let Ok(loaded) = sources.recv() {
        instrument::gauge!("ast_queue_depth", sources.len() as f64, "queue" => "sources");
        let _scope = loaded.correlation.enter();
        let Content { text, sha256 } = loaded.content;
        count.parse_calls += 1;
        let outcome = match parse_source(&loaded.path, &text, fail_rate) {
            Ok(file) => {
                count.analyze_calls += 1;
                Ok(analyze(&file, &text))
            }
            Err(e) => {
                count.parse_errors += 1;
                sdk::note_failure();
                Err(Failure {
                    stage: "parse",
                    kind: e.error_kind(),
                    message: e.to_string(),
                })
            }
        };
        let result = FileResult {
            path: loaded.path,
            sha256: Some(sha256),
            bytes: Some(text.len() as u64),
            correlation: loaded.correlation,
            outcome,
        };
        if results.send(result).is_err() {
            break;
        }
    }
    count
}

/// The store stage's running totals.
#[derive(Default)]
struct StoreTotals {
    stored: u64,
    parsed: u64,
    batches: u64,
    failures: BTreeMap<(&'static str, &'static str), u64>,
    first_failures: Vec<FailedFile>,
    bytes: u64,
    stats: AstStats,
    debt: DebtMarkers,
    audit_entries: u64,
    audit_lost: Option<(u64, String, instrument::Error)>,
    example: Option<StoredFile>,
}

impl StoreTotals {
    fn add(&mut self, file: &FileResult, record: i64, audit: bool) {
        self.stored += 1;
        self.bytes += file.bytes.unwrap_or(0);
        let stored = || StoredFile {
            path: file.path.clone(),
            correlation: file.correlation,
            record,
        };
        if self.example.is_none() {
            self.example = Some(stored());
        }
        let mut entry = AuditEntry::new("analyze_file")
            .input(file.path.clone())
            .actor("ast_pipeline")
            .correlation(file.correlation)
            .output(format!("ast_files:{record}"));
        if let Some(sha256) = &file.sha256 {
            entry = entry.input(content_id(sha256));
        }
        match &file.outcome {
            Ok(a) => {
                self.parsed += 1;
                self.stats += a.stats;
                self.debt.todo += a.debt.todo;
                self.debt.fixme += a.debt.fixme;
                self.debt.unsafe_code += a.debt.unsafe_code;
                // What the file yielded is in the row the entry's output names.
                entry.outcome = Some(Outcome::Ok);
            }
            Err(failure) => {
                *self
                    .failures
                    .entry((failure.stage, failure.kind))
                    .or_default() += 1;
                if self.first_failures.is_empty() {
                    self.example = Some(stored());
                }
                if self.first_failures.len() < FAILURES_KEPT {
                    self.first_failures.push(FailedFile {
                        path: file.path.clone(),
                        stage: failure.stage,
                        kind: failure.kind,
                        message: failure.message.clone(),
                    });
                }
                entry.outcome = Some(Outcome::Error);
                entry.error_kind = Some(failure.kind);
                entry = entry
                    .field("stage", &failure.stage)
                    .field("error", &failure.message);
            }
        }
        if !audit {
            return;
        }
        // Audit entries are never dropped: under overload this waits for room instead.
        match instrument::audit(entry) {
            Ok(_) => self.audit_entries += 1,
            Err(e) => match &mut self.audit_lost {
                Some((lost, _, _)) => *lost += 1,
                None => self.audit_lost = Some((1, file.path.clone(), e)),
            },
        }
    }
}

fn store_stage(
    store: &mut AstStore,
    run_id: i64,
    results: &Receiver<FileResult>,
    audit: bool,
    bar: &indicatif::ProgressBar,
) -> Result<StoreTotals, StoreError> {
    let mut totals = StoreTotals::default();
    let mut batch = Vec::with_capacity(BATCH_FILES);
    while let Ok(first) = results.recv() {
        batch.push(first);
        let deadline = Instant::now() + BATCH_WAIT;
        while batch.len() < BATCH_FILES {
            match results.recv_deadline(deadline) {
                Ok(file) => batch.push(file),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
        instrument::gauge!("ast_queue_depth", results.len() as f64, "queue" => "results");
        let ids = store_batch(store, run_id, &batch, batch.len())?;
        totals.batches += 1;
        for (file, id) in batch.iter().zip(ids) {
            totals.add(file, id, audit);
        }
        instrument::counter!("ast_files_stored_total", batch.len() as u64);
        bar.inc(batch.len() as u64);
        batch.clear();
    }
    Ok(totals)
}

fn progress_bar(on: bool) -> indicatif::ProgressBar {
    use std::io::IsTerminal as _;
    if !on || !io::stdout().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar =
        indicatif::ProgressBar::with_draw_target(Some(0), indicatif::ProgressDrawTarget::stdout());
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} files stored, {per_sec}",
        )
        .expect("a valid template"),
    );
    bar
}

fn join<T>(handle: thread::ScopedJoinHandle<'_, T>, stage: &'static str) -> Result<T, JobError> {
    handle.join().map_err(|_| JobError::Panicked { stage })
}

/// What the stages' threads did.
type StageResults = (Discovery, ReadCount, ParseCount, StoreTotals);

/// Starts the discover, read and parse threads, runs the store stage on this thread until every
/// file is stored (or the store fails, which stops the others), and joins them.
fn run_stages(
    options: &JobOptions,
    threads: usize,
    store: &mut AstStore,
    run_id: i64,
    bar: &indicatif::ProgressBar,
) -> Result<StageResults, JobError> {
    let (paths_tx, paths_rx) = crossbeam_channel::bounded::<PathBuf>(PATHS_QUEUE);
    let (sources_tx, sources_rx) = crossbeam_channel::bounded::<Loaded>(SOURCES_QUEUE);
    let (results_tx, results_rx) = crossbeam_channel::bounded::<FileResult>(RESULTS_QUEUE);
    let fail_rate = options.fail_rate;
    thread::scope(|scope| {
        let spawn_error = |stage| move |source| JobError::Spawn { stage, source };
        let discoverer = thread::Builder::new()
            .name("ast-discover".into())
            .spawn_scoped(scope, move || {
                discover(&options.roots, options.max_files, &paths_tx, bar)
            })
            .map_err(spawn_error("discover"))?;
        let reader = {
            let results_tx = results_tx.clone();
            thread::Builder::new()
                .name("ast-read".into())
                .spawn_scoped(scope, move || {
                    read_stage(&paths_rx, &sources_tx, &results_tx)
                })
                .map_err(spawn_error("read"))?
        };
        let mut parsers = Vec::with_capacity(threads);
        for i in 0..threads {
            let (sources_rx, results_tx) = (sources_rx.clone(), results_tx.clone());
            parsers.push(
                thread::Builder::new()
                    .name(format!("ast-parse-{i}"))
                    .spawn_scoped(scope, move || {
                        parse_stage(&sources_rx, &results_tx, fail_rate)
                    })
                    .map_err(spawn_error("parse"))?,
            );
        }
        // The store stage ends when every sender is gone.
        drop((sources_rx, results_tx));
        let stored = store_stage(store, run_id, &results_rx, options.audit, bar);
        // On a store failure the receiver goes first, so the other stages stop.
        drop(results_rx);
        let discovery = join(discoverer, "discover")?;
        let read = join(reader, "read")?;
        let mut parsed = ParseCount::default();
        for parser in parsers {
            let count = join(parser, "parse")?;
            parsed.parse_calls += count.parse_calls;
            parsed.parse_errors += count.parse_errors;
            parsed.analyze_calls += count.analyze_calls;
        }
        Ok((discovery, read, parsed, stored?))
    })
}

/// The run's own audit entry: the roots in, `ast_runs:ID` out.
fn audit_run(
    options: &JobOptions,
    run_id: i64,
    stored: &StoreTotals,
    failed: u64,
) -> Result<(), JobError> {
    let entry = AuditEntry::new("ast_run")
        .inputs(
            options
                .roots
                .iter()
                .map(|r| r.to_string_lossy().into_owned()),
        )
        .output(format!("ast_runs:{run_id}"))
        .actor("ast_pipeline")
        .field("files", &stored.stored)
        .field("parsed", &stored.parsed)
        .field("failed", &failed);
    instrument::audit(entry).map_err(|error| JobError::AuditLost {
        lost: 1,
        path: format!("ast_runs:{run_id}"),
        error,
    })?;
    Ok(())
}

/// The job's own counts per stage, in [`STAGES`] order.
fn stage_counts(
    discovery: &Discovery,
    read: &ReadCount,
    parsed: &ParseCount,
    stored: &StoreTotals,
    threads: usize,
) -> [StageCount; 5] {
    [
        StageCount {
            calls: discovery.dirs,
            errors: discovery.dir_errors,
            files: discovery.files,
            threads: 1,
        },
        StageCount {
            calls: read.calls,
            errors: read.errors,
            files: read.calls,
            threads: 1,
        },
        StageCount {
            calls: parsed.parse_calls,
            errors: parsed.parse_errors,
            files: parsed.parse_calls,
            threads,
        },
        StageCount {
            calls: parsed.analyze_calls,
            errors: 0,
            files: parsed.analyze_calls,
            threads,
        },
        StageCount {
            calls: stored.batches,
            errors: 0,
            files: stored.stored,
            threads: 1,
        },
    ]
}

/// Runs the pipeline: discovers the files under [`JobOptions::roots`], reads, parses, analyzes
/// and stores each, and returns what it did. With an installed pipeline (see
/// [`Instrumentation`]) every stage is measured; without one the same work runs uninstrumented.
///
/// # Errors
/// [`JobError`]: no file found, the tables could not be written, audit entries refused, a
/// thread could not start or panicked.
pub fn run(options: &JobOptions) -> Result<JobSummary, JobError> {
    let started = Instant::now();
    let mut store = AstStore::open(&options.database, options.busy_timeout)?;
    let threads = options.threads.max(1);
    let run_id = store.begin_run(&options.roots, threads, options.fail_rate, options.audit)?;
    let bar = progress_bar(options.progress);
    for (index, (stage, _)) in STAGES.iter().enumerate() {
        let nanos = options
            .inject_latency
            .get(stage)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        INJECTED_LATENCY[index].store(nanos, Ordering::Relaxed);
    }
    let stages = run_stages(options, threads, &mut store, run_id, &bar);
    for latency in &INJECTED_LATENCY {
        latency.store(0, Ordering::Relaxed);
    }
    let (discovery, read, parsed, stored) = stages?;
    bar.finish_and_clear();
    let wall = started.elapsed();

    if discovery.files == 0 {
        let roots: Vec<_> = options
            .roots
            .iter()
            .map(|r| r.display().to_string())
            .collect();
        return Err(JobError::NoFiles {
            roots: roots.join(", "),
            unreadable: discovery
                .unreadable
                .first()
                .map(|(path, e)| format!("; cannot read {}: {e}", path.display()))
                .unwrap_or_default(),
        });
    }
    if let Some((lost, path, error)) = stored.audit_lost {
        return Err(JobError::AuditLost { lost, path, error });
    }
    let failed: u64 = stored.failures.values().sum();
    store.finish_run(run_id, stored.stored, stored.parsed, failed)?;
    let mut audit_entries = stored.audit_entries;
    if options.audit {
        audit_run(options, run_id, &stored, failed)?;
        audit_entries += 1;
    }
    let most_complex = store.most_complex(run_id, 10)?;

    let stages = stage_counts(&discovery, &read, &parsed, &stored, threads);
    let mut options = options.clone();
    options.threads = threads;
    Ok(JobSummary {
        run_id,
        options,
        discovered: discovery.files,
        truncated: discovery.truncated,
        unreadable: discovery.unreadable,
        stored: stored.stored,
        parsed: stored.parsed,
        failures: stored.failures,
        first_failures: stored.first_failures,
        bytes: stored.bytes,
        stats: stored.stats,
        debt: stored.debt,
        most_complex,
        stages,
        wall,
        audit_entries,
        busy_retries: store.busy_retries,
        example: stored.example,
    })
}
