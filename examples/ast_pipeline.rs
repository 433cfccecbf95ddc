//! The main job: a staged AST pipeline over real Rust sources, instrumented end to end.
//!
//! ```text
//! cargo run --release --example ast_pipeline                    # the local cargo registry's sources
//! cargo run --release --example ast_pipeline -- PATH...         # your own files or directories
//! cargo run --release --example ast_pipeline -- --limit 500 --prometheus off
//! cargo run --release --example ast_pipeline -- --fail-rate 0.2 # rehearse failures
//! cargo run --release --example ast_pipeline -- --linger 60     # /metrics stays up a minute
//! cargo run --release --example ast_pipeline -- --no-instrument # the same work, no SDK
//! ```
//!
//! With no paths it reads the dependency sources Cargo unpacked under
//! `$CARGO_HOME/registry/src` (this workspace's own sources where there are none), at most
//! 20,000 files. The stages (discover, read, parse, analyze, store) run on their own threads,
//! connected by bounded channels; see `instrument_workspace::job` for the pipeline and the
//! tables it writes (`ast_runs`, `ast_files`, `ast_functions`) beside the SDK's in
//! `DIR/instrument.db`.
//!
//! The SDK's data goes to the same `DIR/instrument.db` (`--data-dir DIR`, default
//! `./instrument-data`), which `instrumentctl` reads, to JSON lines under `DIR/logs/` (flushed
//! on Ctrl-C or `SIGTERM` too), and to Prometheus metrics on `http://127.0.0.1:9464/metrics`
//! while the job runs (`--prometheus ADDR|off`, `--linger SECS`) with `/health` and `/ready`
//! beside it. A health registry watches the pipeline, its sinks, the machine (a `sysinfo`
//! sampler every 5 s) and the data directory; an alert engine evaluates the default rules and
//! `StageErrors` (more than 5 % of parse calls failing) on every snapshot, and with
//! `--fail-rate` the report says how long the first failing call took to fire it
//! (`--alertmanager URL` also pushes alerts there). `--config FILE` reads the
//! SDK's settings from a TOML file (docs/configuration.md). `--otlp URL` (or
//! `OTEL_EXPORTER_OTLP_ENDPOINT`) also sends everything to an OpenTelemetry collector.

use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use instrument_workspace::corpus;
use instrument_workspace::job::report::{self, SdkView};
use instrument_workspace::job::{self, Instrumentation, InstrumentationOptions, JobOptions};

/// `syn` allocates and frees a node at a time from two parsing threads, and the store stage
/// frees what they allocated. With glibc's allocator, once a process has more threads than
/// arenas (8 per core) new threads share arenas and every `malloc` and `free` of the sharers
/// takes the same lock: runs where both parsing threads landed on one arena took 2 to 3 times
/// as long, with most of the time in the kernel's futex code. mimalloc keeps a heap per
/// thread. The same allocator serves `--no-instrument`, so the overhead comparison is like
/// for like (docs/performance.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The command line.
#[derive(clap::Parser)]
#[command(
    name = "ast_pipeline",
    about = "Discovers, reads, parses (syn) and analyzes Rust sources on worker threads, stores \
             what it finds in SQLite, and measures every stage with the instrument SDK.",
    after_help = "With no PATH: the crates under $CARGO_HOME/registry/src, or this workspace's \
                  sources where there are none."
)]
struct Options {
    /// Files or directories to read (default: the local cargo registry's sources).
    #[arg(value_name = "PATH")]
    roots: Vec<PathBuf>,
    /// At most this many files.
    #[arg(long = "limit", visible_alias = "max-files", value_name = "N",
          default_value_t = corpus::DEFAULT_MAX_FILES as u64,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_files: u64,
    /// Threads that parse and analyze (default: one per core).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Make this fraction of parse calls fail (error kind `Injected`), chosen by a hash of the
    /// path: the same files in every run. For rehearsing alerts and runbooks.
    #[arg(long, value_name = "F", default_value_t = 0.0, value_parser = parse_fraction)]
    fail_rate: f64,
    /// Add this latency to a stage's every call (STAGE=DURATION: discover, read, parse, analyze
    /// or store, such as `parse=2ms`; repeat or separate with commas), to rehearse `instrumentctl
    /// compare` and the latency alerts.
    #[arg(long, value_name = "STAGE=DURATION", value_delimiter = ',',
          value_parser = job::parse_injected_latency)]
    inject_latency: Vec<(&'static str, Duration)>,
    /// The data directory; the store is DIR/instrument.db, the logs DIR/logs/.
    #[arg(long, value_name = "DIR", default_value = "instrument-data")]
    data_dir: PathBuf,
    /// The operations endpoint (`/metrics`): an address, or `off`.
    #[arg(long, value_name = "ADDR|off", default_value = "127.0.0.1:9464",
          value_parser = parse_endpoint)]
    prometheus: Endpoint,
    /// Keep serving the operations endpoint this many seconds after the run.
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    linger: u64,
    /// Run the same pipeline without installing the SDK (for overhead comparisons): the ast
    /// tables are still written, nothing else.
    #[arg(long, conflicts_with_all = ["config", "linger"])]
    no_instrument: bool,
    /// The SDK's settings, a TOML file (docs/configuration.md).
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Also push alerts to the Alertmanager at this URL, such as `http://127.0.0.1:9093`.
    #[arg(long, value_name = "URL", conflicts_with = "no_instrument")]
    alertmanager: Option<String>,
    /// Also send the measurements, events and audit entries to this OTLP/HTTP collector (its
    /// base URL, such as `http://127.0.0.1:4318`); `OTEL_EXPORTER_OTLP_ENDPOINT` does the same.
    #[arg(long, value_name = "URL", conflicts_with = "no_instrument")]
    otlp: Option<String>,
    /// Let --prometheus listen on an address other machines can reach (such as 0.0.0.0:9464);
    /// the endpoint has no authentication.
    #[arg(long)]
    allow_remote: bool,
}

/// Where `/metrics` is served, if anywhere.
#[derive(Clone, Copy, Debug)]
enum Endpoint {
    Off,
    At(SocketAddr),
}

fn parse_endpoint(text: &str) -> Result<Endpoint, String> {
    if text == "off" {
        return Ok(Endpoint::Off);
    }
    text.parse()
        .map(Endpoint::At)
        .map_err(|e| format!("`{text}` is neither `off` nor an address like 127.0.0.1:9464 ({e})"))
}

fn parse_fraction(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(f) if (0.0..=1.0).contains(&f) => Ok(f),
        Ok(_) => Err(format!("`{text}` is not between 0 and 1")),
        Err(e) => Err(format!("`{text}` is not a number ({e})")),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One line: the error and the causes its message does not already tell.
            let mut line = e.to_string();
            let mut source = e.source();
            while let Some(cause) = source {
                let text = cause.to_string();
                if !line.contains(&text) {
                    line = format!("{line}: {text}");
                }
                source = cause.source();
            }
            eprintln!("ast_pipeline: {line}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let options = <Options as clap::Parser>::parse();
    let started = Instant::now();
    let roots = if options.roots.is_empty() {
        if corpus::registry_sources().is_none() {
            eprintln!("ast_pipeline: no $CARGO_HOME/registry/src; reading this workspace only");
        }
        corpus::default_roots()
    } else {
        options.roots.clone()
    };

    let sdk = if options.no_instrument {
        None
    } else {
        let sdk = Instrumentation::install(&InstrumentationOptions {
            data_dir: options.data_dir.clone(),
            prometheus: match options.prometheus {
                Endpoint::Off => None,
                Endpoint::At(addr) => Some(addr),
            },
            config: options.config.clone(),
            alertmanager: options.alertmanager.clone(),
            allow_remote: options.allow_remote,
            otlp: options.otlp.clone(),
            run_config: run_config(&options, &roots),
        })?;
        // Stopped by Ctrl-C or a supervisor's SIGTERM (during --linger, say), the job flushes
        // first.
        instrument_sinks::jsonl::flush_on_termination(&sdk.pipeline)?;
        Some(sdk)
    };

    let mut job = JobOptions::new(roots, Instrumentation::database_in(&options.data_dir));
    job.max_files = usize::try_from(options.max_files).unwrap_or(usize::MAX);
    if let Some(threads) = options.threads {
        job.threads = usize::from(threads);
    }
    job.fail_rate = options.fail_rate;
    job.inject_latency = options.inject_latency.iter().copied().collect();
    job.audit = sdk.is_some();
    job.progress = true;
    let summary = job::run(&job)?;

    let Some(mut sdk) = sdk else {
        let mut text = report::render(&summary, None);
        finish(&mut text, started);
        return Ok(());
    };
    // A sink that cannot take the last batch (a collector that is down, say) is worth a line,
    // not the report.
    if let Err(e) = sdk.pipeline.flush() {
        eprintln!("ast_pipeline: warning: the final flush: {e}");
    }
    let snapshot = sdk
        .memory
        .last_snapshot()
        .ok_or("the flush delivered no snapshot")?;
    let events = sdk.memory.events();
    let operations = sdk.operations(options.fail_rate > 0.0);
    let view = SdkView {
        snapshot: &snapshot,
        events: &events,
        database: &sdk.database,
        logs: &sdk.logs,
        metrics_at: sdk.metrics_at,
        linger: options.linger,
        otlp: sdk
            .otlp
            .as_ref()
            .map(|(url, handle)| (url.as_str(), handle.status())),
        operations: &operations,
        fail_rate: options.fail_rate,
    };
    let mut text = report::render(&summary, Some(&view));
    if options.linger > 0 {
        // The report first, so the operator can read it while the endpoint stays up.
        let _ = io::stdout().lock().write_all(text.as_bytes());
        text.clear();
        thread::sleep(Duration::from_secs(options.linger));
    }
    // The report first: a sink that fails its last flush (a collector that is down) makes
    // the exit status non-zero, with its one line after the report.
    let shutdown = sdk.shutdown();
    finish(&mut text, started);
    shutdown
}

/// The settings that shape a run's figures, as the store's run digest sees them.
fn run_config(options: &Options, roots: &[PathBuf]) -> String {
    format!(
        "roots={roots:?} limit={} threads={:?} fail_rate={} inject_latency={:?} config={:?}",
        options.max_files,
        options.threads,
        options.fail_rate,
        options.inject_latency,
        options.config
    )
}

/// Ends the report with the total time and prints it.
fn finish(text: &mut String, started: Instant) {
    use std::fmt::Write as _;
    let _ = writeln!(
        text,
        "\ntotal wall time {} (set-up, the run, flush, report and shutdown)",
        report::human_duration(started.elapsed())
    );
    // A closed stdout (`| head`) is not an error worth a panic.
    let _ = io::stdout().lock().write_all(text.as_bytes());
}
