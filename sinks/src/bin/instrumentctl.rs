//! `instrumentctl`: reads (and maintains) the `SQLite` store a pipeline writes, and searches,
//! counts and tails its JSON-lines logs (`logs ...`, in `instrumentctl/logs.rs`).
//!
//! Every command prints an aligned table, or JSON with `--json` (the shapes of
//! `instrument_sinks::sqlite::query`, listed in `docs/instrumentctl.md`). A command that only
//! reads opens the database read-only. On bad input it exits non-zero with one line on stderr,
//! `instrumentctl: <cause>`.

// Beside this file, not in src/bin/ (where Cargo would take it for a binary of its own).
#[path = "instrumentctl/logs.rs"]
mod logs;

use std::error::Error;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::{Parser, Subcommand, ValueEnum};
use instrument_sinks::rules::{Callsite, Objective, RulesConfig, RulesError};
use instrument_sinks::sqlite::query::{
    AuditTrail, CallsiteSummary, ErrorGroup, EventRecord, ExportFormat, ExportTable, Store,
    Summary, TimeRange, Trace, TraceEntry, rfc3339,
};
use instrument_sinks::sqlite::{
    BackupManifest, PruneReport, backup, prune, restore, verify_backup,
};
use instrument_sinks::{ChainError, verify_audit_chain};
use serde::Serialize;
use serde_json::{Value, json};

// Health and alert listings, in a file of their own.
#[path = "instrumentctl/operations.rs"]
mod operations;
// Runs, their comparison, trends, reports and the call graph.
#[path = "instrumentctl/runs.rs"]
mod runs;

// The command line; `about` is written out because doc comments would show clippy's backticks.
#[derive(Debug, Parser)]
#[command(
    name = "instrumentctl",
    version,
    about = "Reads the SQLite store of an instrument pipeline: summaries, slow calls, errors, \
             traces, audit trails, health and alerts; checks its audit chain; backs it up, \
             restores and prunes it; writes Prometheus rules for its callsites; searches, counts \
             and tails its JSON-lines logs."
)]
struct Cli {
    /// The pipeline's data directory; the store is DIR/instrument.db.
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        default_value = "./instrument-data"
    )]
    data_dir: PathBuf,
    /// The database file, instead of DIR/instrument.db.
    #[arg(long, global = true, value_name = "PATH")]
    db: Option<PathBuf>,
    /// Print JSON instead of a table.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Calls, errors and latency percentiles per callsite.
    Summary {
        /// Start: a duration ago (1h, 30m, 7d), an RFC 3339 UTC time, or `all`.
        #[arg(long, default_value = "1h", value_name = "WHEN")]
        since: String,
        /// End, like --since (default: now).
        #[arg(long, value_name = "WHEN")]
        until: Option<String>,
    },
    /// The slowest stored calls, with captured arguments and correlation ids.
    Slow {
        /// How many.
        #[arg(long, default_value_t = 20)]
        top: usize,
        /// Start: a duration ago, an RFC 3339 UTC time, or `all`.
        #[arg(long, default_value = "1h", value_name = "WHEN")]
        since: String,
        /// End, like --since (default: now).
        #[arg(long, value_name = "WHEN")]
        until: Option<String>,
    },
    /// Failed calls per callsite and error kind, with the latest example.
    Errors {
        /// Start: a duration ago, an RFC 3339 UTC time, or `all`.
        #[arg(long, default_value = "1h", value_name = "WHEN")]
        since: String,
        /// End, like --since (default: now).
        #[arg(long, value_name = "WHEN")]
        until: Option<String>,
    },
    /// Everything stored under one correlation id, in time order.
    Trace {
        /// 16 hexadecimal digits.
        correlation_id: String,
    },
    /// The audit log: lineage of an artifact, and the hash chain.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Writes stored events (or windows) as JSON lines or CSV.
    Export {
        /// Start: a duration ago, an RFC 3339 UTC time, or `all`.
        #[arg(long, default_value = "all", value_name = "WHEN")]
        since: String,
        /// End, like --since (default: now).
        #[arg(long, value_name = "WHEN")]
        until: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value_t = Format::Jsonl)]
        format: Format,
        /// What to export.
        #[arg(long, value_enum, default_value_t = Table::Events)]
        table: Table,
        /// A new file to write (an existing one is refused); default stdout.
        #[arg(short = 'o', long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Copies the store, while a sink may write it, into the new directory DEST (instrument.db
    /// and manifest.json), and verifies the copy.
    Backup {
        /// A directory that does not exist or is empty.
        dest: PathBuf,
    },
    /// Checks a backup directory: manifest, size, SHA-256, integrity and audit chain.
    VerifyBackup {
        /// A directory written by `backup`.
        dest: PathBuf,
    },
    /// Restores a verified backup into --db (or DIR/instrument.db), which must not exist.
    Restore {
        /// A directory written by `backup`.
        src: PathBuf,
    },
    /// Deletes rows older than a duration (audit rows only with --audit-older-than).
    Prune {
        /// Age of the rows to delete: 30d, 12h, ...
        #[arg(long, value_name = "DURATION")]
        older_than: String,
        /// Also delete audit rows older than this (the chain keeps an anchor); default: keep
        /// them all.
        #[arg(long, value_name = "DURATION")]
        audit_older_than: Option<String>,
    },
    /// The latest health status of each component, and the changes.
    Health {
        /// Changes since: a duration ago, an RFC 3339 UTC time, or `all`.
        #[arg(long, default_value = "24h", value_name = "WHEN")]
        since: String,
        /// At most this many changes.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Open alerts, newest first (with --all, resolved ones too); `alerts ack`, `resolve`,
    /// `silence`, `silences` and `expire` act on them.
    Alerts {
        /// Resolved alerts too.
        #[arg(long)]
        all: bool,
        #[command(subcommand)]
        command: Option<operations::AlertsCommand>,
    },
    /// Prometheus artifacts for the pipeline's callsites.
    Prometheus {
        #[command(subcommand)]
        command: PrometheusCommand,
    },
    /// The JSON-lines logs in DIR/logs: search, stats, tail, verify.
    Logs(logs::LogsArgs),
    /// Every run of the pipeline: start, duration, process, host, version, calls and errors.
    Runs,
    /// Compares run B with run A per callsite; exits 3 when something regressed.
    Compare(runs::CompareArgs),
    /// One callsite's calls, error ratio, p50 and p99 per hour or day.
    Trend {
        /// The callsite's name.
        callsite: String,
        /// Start: a duration ago, an RFC 3339 UTC time, or `all`.
        #[arg(long, default_value = "30d", value_name = "WHEN")]
        since: String,
        /// End, like --since (default: now).
        #[arg(long, value_name = "WHEN")]
        until: Option<String>,
        /// Bucket width.
        #[arg(long, value_enum, default_value_t = runs::By::Day)]
        by: runs::By,
    },
    /// A report for people (Markdown, or HTML with SVG charts) of a range or a run.
    Report(runs::ReportArgs),
    /// Which instrumented function called which, derived from the stored events.
    Callgraph {
        /// One run (default: everything stored).
        #[arg(long, value_name = "ID")]
        run: Option<i64>,
        /// Graphviz DOT or JSON.
        #[arg(long, value_enum, default_value_t = runs::GraphFormat::Dot)]
        format: runs::GraphFormat,
    },
}

#[derive(Debug, Subcommand)]
enum PrometheusCommand {
    /// Prints Prometheus recording and alerting rules (YAML, for `rule_files`) for every timed
    /// callsite of the store: error ratio and p99 latency objectives, with burn rates.
    Rules(RulesArgs),
}

#[derive(Debug, clap::Args)]
struct RulesArgs {
    /// The error ratio each callsite may have (0 to 1).
    #[arg(long, default_value_t = 0.05, value_name = "RATIO")]
    error_ratio: f64,
    /// The duration 99% of each callsite's calls must end within; a bucket bound of the
    /// Prometheus sink's histogram.
    #[arg(long, default_value = "500ms", value_name = "DURATION")]
    p99: String,
    /// The window of the threshold alerts and the p50/p99 recording rules.
    #[arg(long, default_value = "5m", value_name = "DURATION")]
    window: String,
    /// How long a threshold alert's condition must hold before it fires.
    #[arg(long = "for", default_value = "30s", value_name = "DURATION")]
    for_duration: String,
    /// The metric prefix the Prometheus sink was built with.
    #[arg(long, default_value = "instrument")]
    prefix: String,
    /// The sink's histogram bucket bounds, comma-separated (default: the sink's defaults,
    /// 1us to 10s).
    #[arg(long, value_name = "LIST")]
    buckets: Option<String>,
    /// The error ratio of one callsite, NAME=RATIO (repeatable).
    #[arg(long, value_name = "NAME=RATIO")]
    error_ratio_for: Vec<String>,
    /// The p99 objective of one callsite, NAME=DURATION (repeatable).
    #[arg(long, value_name = "NAME=DURATION")]
    p99_for: Vec<String>,
}

#[derive(Debug, Subcommand)]
enum AuditCommand {
    /// Every audit entry that names ID, followed upstream and downstream.
    Trail {
        /// An artifact, as entries list it in inputs or outputs.
        id: String,
    },
    /// Checks the hash chain; exits non-zero naming the first broken row.
    Verify,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Format {
    Jsonl,
    Csv,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Table {
    Events,
    Windows,
}

/// Why a command failed: the one line printed after `instrumentctl: `.
struct Failure(String);

impl<E: Error> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure(one_line(&error))
    }
}

/// An error and its causes, `error: cause: cause`, skipping a cause that repeats the text
/// before it.
fn one_line(error: &dyn Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !line.ends_with(&text) {
            line.push_str(": ");
            line.push_str(&text);
        }
        source = cause.source();
    }
    line
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(2)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match run(cli) {
        Ok(code) => code,
        Err(Failure(cause)) => {
            // One line whatever the cause holds.
            let cause: String = cause
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let _ = writeln!(io::stderr(), "instrumentctl: {cause}");
            ExitCode::FAILURE
        }
    }
}

// One arm per command: the dispatch grows with the command line.
#[allow(clippy::too_many_lines)]
fn run(cli: Cli) -> Result<ExitCode, Failure> {
    let db = cli
        .db
        .clone()
        .unwrap_or_else(|| cli.data_dir.join("instrument.db"));
    let now = SystemTime::now();
    let json = cli.json;
    match cli.command {
        Command::Summary { since, until } => {
            let range = range(&since, until.as_deref(), now)?;
            let summary = Store::open(&db)?.summary(range)?;
            print(json, &summary, || summary_table(&summary))
        }
        Command::Slow { top, since, until } => {
            let range = range(&since, until.as_deref(), now)?;
            let events = Store::open(&db)?.slow(top, range)?;
            print(json, &events, || slow_table(&events))
        }
        Command::Errors { since, until } => {
            let range = range(&since, until.as_deref(), now)?;
            let groups = Store::open(&db)?.errors(range)?;
            print(json, &groups, || errors_table(&groups))
        }
        Command::Trace { correlation_id } => {
            let trace = Store::open(&db)?.trace(&correlation_id)?;
            print(json, &trace, || trace_table(&trace))
        }
        Command::Audit {
            command: AuditCommand::Trail { id },
        } => {
            let trail = Store::open(&db)?.audit_trail(&id)?;
            print(json, &trail, || trail_table(&trail))
        }
        Command::Audit {
            command: AuditCommand::Verify,
        } => verify(&db, json),
        Command::Export {
            since,
            until,
            format,
            table,
            output,
        } => export(
            &db,
            range(&since, until.as_deref(), now)?,
            format,
            table,
            output.as_deref(),
            json,
        ),
        Command::Backup { dest } => {
            let manifest = backup(&db, &dest)?;
            let report = BackupReport {
                action: "backed up",
                from: &db,
                to: &dest,
                manifest: &manifest,
            };
            print(json, &report, || report.table())
        }
        Command::VerifyBackup { dest } => {
            let manifest = verify_backup(&dest)?;
            let report = BackupReport {
                action: "verified",
                from: &dest,
                to: &dest,
                manifest: &manifest,
            };
            print(json, &report, || report.table())
        }
        Command::Restore { src } => {
            let manifest = restore(&src, &db)?;
            let report = BackupReport {
                action: "restored",
                from: &src,
                to: &db,
                manifest: &manifest,
            };
            print(json, &report, || report.table())
        }
        Command::Prune {
            older_than,
            audit_older_than,
        } => {
            let older_than = duration("--older-than", &older_than)?;
            let audit_older_than = audit_older_than
                .map(|text| duration("--audit-older-than", &text))
                .transpose()?;
            let report = prune(&db, older_than, audit_older_than)?;
            print(json, &report, || prune_table(&db, &report))
        }
        Command::Health { since, limit } => operations::health(&db, &since, limit, json, now),
        Command::Alerts { all, command } => operations::alerts(&db, all, command, json, now),
        Command::Prometheus {
            command: PrometheusCommand::Rules(args),
        } => prometheus_rules(&db, &args, json),
        Command::Logs(args) => logs::run(args, &cli.data_dir, json, now),
        command @ (Command::Runs
        | Command::Compare(_)
        | Command::Trend { .. }
        | Command::Report(_)
        | Command::Callgraph { .. }) => runs::dispatch(command, &db, &cli.data_dir, json, now),
    }
}

/// `instrumentctl prometheus rules`: the rules for the store's timed callsites.
fn prometheus_rules(db: &Path, args: &RulesArgs, json: bool) -> Result<ExitCode, Failure> {
    let mut config = RulesConfig {
        prefix: args.prefix.clone(),
        objective: Objective {
            error_ratio: Some(args.error_ratio),
            p99: Some(duration("--p99", &args.p99)?),
        },
        window: duration("--window", &args.window)?,
        for_duration: duration("--for", &args.for_duration)?,
        ..RulesConfig::default()
    };
    if let Some(list) = &args.buckets {
        config.buckets = list
            .split(',')
            .map(|bound| duration("--buckets", bound.trim()))
            .collect::<Result<_, _>>()?;
    }
    let split = |flag: &str, text: &str| -> Result<(String, String), Failure> {
        match text.rsplit_once('=') {
            Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
            _ => Err(Failure(format!(
                "invalid {flag} `{text}`: give NAME=VALUE, NAME a callsite's name"
            ))),
        }
    };
    let mut flags: Vec<(String, &'static str)> = Vec::new();
    for text in &args.error_ratio_for {
        let (name, value) = split("--error-ratio-for", text)?;
        let ratio = value.parse().map_err(|_| {
            Failure(format!(
                "invalid --error-ratio-for `{text}`: `{value}` is not a number"
            ))
        })?;
        config
            .overrides
            .entry(name.clone())
            .or_default()
            .error_ratio = Some(ratio);
        flags.push((name, "--error-ratio-for"));
    }
    for text in &args.p99_for {
        let (name, value) = split("--p99-for", text)?;
        let p99 = duration("--p99-for", &value)?;
        config.overrides.entry(name.clone()).or_default().p99 = Some(p99);
        flags.push((name, "--p99-for"));
    }
    let store = Store::open(db)?;
    let callsites: Vec<Callsite> = store
        .callsites()?
        .into_iter()
        .filter(|c| matches!(c.kind.as_str(), "function" | "async" | "timer"))
        .map(|c| Callsite::new(c.name, c.module))
        .collect();
    let rules = config.rules(&callsites).map_err(|error| match error {
        RulesError::UnknownCallsite { name, .. } => {
            let flag = flags
                .iter()
                .find(|(n, _)| *n == name)
                .map_or("an override", |(_, flag)| flag);
            Failure(format!(
                "{flag} names `{name}`, which is not a timed callsite of {}",
                db.display()
            ))
        }
        other => Failure::from(other),
    })?;
    let mut stderr = io::stderr().lock();
    if callsites.is_empty() {
        let _ = writeln!(
            stderr,
            "instrumentctl: note: {} has no timed callsites yet; only the recording rules              were written",
            db.display()
        );
    }
    for note in &rules.notes {
        let _ = writeln!(stderr, "instrumentctl: note: {note}");
    }
    drop(stderr);
    if json {
        return print(true, &rules.file, String::new);
    }
    let mut text = format!(
        "# Prometheus rules for the {} timed callsites of {}, from `instrumentctl prometheus \
         rules`:\n# error ratio at most {}, p99 at most {}, window {}. Load with `rule_files`.\n",
        callsites.len(),
        db.display(),
        args.error_ratio,
        args.p99,
        args.window,
    );
    text.push_str(&rules.to_yaml());
    out(&text)
}

/// `text` of `flag` as a duration.
pub(crate) fn duration(flag: &str, text: &str) -> Result<std::time::Duration, Failure> {
    humantime::parse_duration(text).map_err(|e| {
        Failure(format!(
            "invalid {flag} `{text}`: {e}; give a duration such as 30d, 12h or 90m"
        ))
    })
}

/// What `backup`, `verify-backup` and `restore` print: the manifest with where it went.
#[derive(Serialize)]
struct BackupReport<'a> {
    /// `backed up`, `verified` or `restored`.
    action: &'static str,
    from: &'a Path,
    to: &'a Path,
    #[serde(flatten)]
    manifest: &'a BackupManifest,
}

impl BackupReport<'_> {
    fn table(&self) -> String {
        let m = self.manifest;
        let mut text = if self.from == self.to {
            format!("{} {}\n", self.action, self.from.display())
        } else {
            format!(
                "{} {} to {}\n",
                self.action,
                self.from.display(),
                self.to.display()
            )
        };
        let mut table = Columns::new(&[("FIELD", false), ("VALUE", false)]);
        for (field, value) in [
            ("file", m.file.clone()),
            ("bytes", m.bytes.to_string()),
            ("sha256", m.sha256.clone()),
            ("schema version", m.schema_version.to_string()),
            ("created", rfc3339(m.created_us)),
            ("source", m.source.clone()),
            ("audit rows", m.audit_rows.to_string()),
            ("audit head", or_dash(m.audit_head.as_deref())),
        ] {
            table.rows.push(vec![field.to_owned(), value]);
        }
        text.push_str(&table.render());
        text
    }
}

fn prune_table(db: &Path, report: &PruneReport) -> String {
    let when = |cutoff: Option<i64>| {
        cutoff.map_or_else(|| "nothing (before the epoch)".to_owned(), rfc3339)
    };
    let mut text = format!(
        "pruned {}: rows older than {}; audit rows {}\n",
        db.display(),
        when(report.cutoff_us),
        match report.audit_cutoff_us {
            Some(cutoff) => format!("older than {}", rfc3339(cutoff)),
            None => "kept".to_owned(),
        }
    );
    let r = &report.rows;
    let mut table = Columns::new(&[("TABLE", false), ("DELETED", true)]);
    for (name, rows) in [
        ("events", r.events),
        ("windows", r.windows),
        ("window_errors", r.window_errors),
        ("counters", r.counters),
        ("gauges", r.gauges),
        ("drops", r.drops),
        ("notices", r.notices),
        ("health", r.health),
        ("alerts", r.alerts),
        ("audit", r.audit),
        ("total", r.total()),
    ] {
        table.rows.push(vec![name.to_owned(), rows.to_string()]);
    }
    text.push_str(&table.render());
    if let Some(anchor) = &report.anchor {
        let _ = writeln!(
            text,
            "audit chain now starts after row {} (anchor hash {})",
            anchor.last_id, anchor.hash
        );
    }
    text
}

/// `text` of `flag` as a time: `all` (no bound), a duration before `now`, or an RFC 3339 UTC
/// time.
pub(crate) fn time(flag: &str, text: &str, now: SystemTime) -> Result<Option<SystemTime>, Failure> {
    if text == "all" {
        return Ok(None);
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        return now.checked_sub(ago).map(Some).ok_or_else(|| {
            Failure(format!(
                "{flag} `{text}` reaches further back than this system's clock can"
            ))
        });
    }
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        return Ok(Some(time));
    }
    Err(Failure(format!(
        "invalid {flag} `{text}`: give a duration such as 1h, 30m or 7d (that long ago), an RFC \
         3339 UTC time such as 2026-01-01T00:00:00Z, or `all`"
    )))
}

fn range(since: &str, until: Option<&str>, now: SystemTime) -> Result<TimeRange, Failure> {
    Ok(TimeRange {
        since: time("--since", since, now)?,
        until: match until {
            Some(text) => time("--until", text, now)?,
            None => None,
        },
    })
}

/// Writes `text` to stdout; a closed pipe (`| head`) ends the command quietly.
fn out(text: &str) -> Result<ExitCode, Failure> {
    let mut stdout = io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) if error.kind() == io::ErrorKind::BrokenPipe => Ok(ExitCode::SUCCESS),
        Err(error) => Err(Failure(format!("cannot write to stdout: {error}"))),
    }
}

fn print(
    json: bool,
    value: &impl Serialize,
    table: impl FnOnce() -> String,
) -> Result<ExitCode, Failure> {
    if json {
        let mut text = serde_json::to_string_pretty(value)?;
        text.push('\n');
        out(&text)
    } else {
        out(&table())
    }
}

fn verify(db: &Path, json: bool) -> Result<ExitCode, Failure> {
    // Opening first gives the clear errors for a missing, foreign or newer file.
    let rows = Store::open(db)?.audit_rows()?;
    match verify_audit_chain(db) {
        Ok(()) => {
            let report = json!({"path": db.display().to_string(), "verified": true, "rows": rows});
            print(json, &report, || {
                format!("audit chain of {} verifies: {rows} rows\n", db.display())
            })
        }
        Err(error) => {
            if json
                && let ChainError::Broken {
                    id,
                    run_id,
                    sequence,
                    reason,
                } = &error
            {
                let report = json!({
                    "path": db.display().to_string(), "verified": false, "rows": rows,
                    "broken": {"id": id, "run_id": run_id, "sequence": sequence, "reason": reason},
                });
                print(true, &report, String::new)?;
            }
            Err(Failure::from(error))
        }
    }
}

fn export(
    db: &Path,
    range: TimeRange,
    format: Format,
    table: Table,
    output: Option<&Path>,
    json: bool,
) -> Result<ExitCode, Failure> {
    let store = Store::open(db)?;
    let format = match format {
        Format::Jsonl => ExportFormat::Jsonl,
        Format::Csv => ExportFormat::Csv,
    };
    let (table, table_name) = match table {
        Table::Events => (ExportTable::Events, "events"),
        Table::Windows => (ExportTable::Windows, "windows"),
    };
    let Some(path) = output else {
        let mut stdout = BufWriter::new(io::stdout().lock());
        return match store.export(table, range, format, &mut stdout) {
            Ok(_) => Ok(ExitCode::SUCCESS),
            Err(instrument_sinks::sqlite::query::QueryError::Write(error))
                if error.kind() == io::ErrorKind::BrokenPipe =>
            {
                Ok(ExitCode::SUCCESS)
            }
            Err(error) => Err(error.into()),
        };
    };
    let file = File::create_new(path).map_err(|e| {
        Failure(if e.kind() == io::ErrorKind::AlreadyExists {
            format!(
                "{} already exists; export writes a new file",
                path.display()
            )
        } else {
            format!("cannot create {}: {e}", path.display())
        })
    })?;
    let mut writer = BufWriter::new(file);
    let report = match store.export(table, range, format, &mut writer) {
        Ok(report) => report,
        Err(error) => {
            drop(writer);
            // Half a file would pass for a whole one.
            let _ = std::fs::remove_file(path);
            return Err(Failure(format!(
                "{} (nothing was written to {})",
                one_line(&error),
                path.display()
            )));
        }
    };
    let rows = report.rows;
    let summary = json!({"table": table_name, "rows": rows, "output": path.display().to_string()});
    print(json, &summary, || {
        format!("wrote {rows} {table_name} rows to {}\n", path.display())
    })
}

/// Columns aligned with two spaces between them; numbers right-aligned.
struct Columns {
    headers: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Columns {
    fn new(columns: &[(&'static str, bool)]) -> Self {
        Columns {
            headers: columns.iter().map(|c| c.0).collect(),
            right: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    fn render(&self) -> String {
        let width = |cell: &str| cell.chars().count();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut text = String::new();
        let headers: Vec<String> = self.headers.iter().map(|h| (*h).to_owned()).collect();
        for row in std::iter::once(&headers).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i].saturating_sub(width(cell));
                if self.right[i] {
                    line.extend(std::iter::repeat_n(' ', pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    if i + 1 < row.len() {
                        line.extend(std::iter::repeat_n(' ', pad));
                    }
                }
            }
            text.push_str(line.trim_end());
            text.push('\n');
        }
        text
    }
}

/// A duration for people: `850 ns`, `12.3 µs`, `1.2 ms`, `2.50 s`, `3.1 min`.
fn human(ns: i128) -> String {
    let sign = if ns < 0 { "-" } else { "" };
    let ns = ns.unsigned_abs() as f64;
    if ns < 1e3 {
        format!("{sign}{ns} ns")
    } else if ns < 1e6 {
        format!("{sign}{:.1} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{sign}{:.1} ms", ns / 1e6)
    } else if ns < 60e9 {
        format!("{sign}{:.2} s", ns / 1e9)
    } else {
        format!("{sign}{:.1} min", ns / 60e9)
    }
}

/// A JSON object of labels or captured arguments as `k=v k=v`; `-` when empty.
fn pairs(value: &Value) -> String {
    match value {
        Value::Object(map) if !map.is_empty() => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        Value::Array(items) if !items.is_empty() => value.to_string(),
        _ => "-".to_owned(),
    }
}

fn or_dash(value: Option<&str>) -> String {
    value.unwrap_or("-").to_owned()
}

fn summary_table(summary: &Summary) -> String {
    let range = format!(
        "from {} to {}",
        summary.since.as_deref().unwrap_or("the first window"),
        summary.until.as_deref().unwrap_or("now")
    );
    if summary.callsites.is_empty() {
        return format!("no calls recorded {range}\n");
    }
    let labelled = summary
        .callsites
        .iter()
        .any(|c| c.labels.as_object().is_some_and(|m| !m.is_empty()));
    let mut columns = vec![("CALLSITE", false)];
    if labelled {
        columns.push(("LABELS", false));
    }
    columns.extend([
        ("CALLS", true),
        ("ERRORS", true),
        ("ERR%", true),
        ("P50", true),
        ("P99", true),
        ("MAX", true),
        ("CALLS/S", true),
    ]);
    let mut table = Columns::new(&columns);
    for c in &summary.callsites {
        let value = |ns: u64| value_text(c, ns);
        let mut row = vec![c.name.clone()];
        if labelled {
            row.push(pairs(&c.labels));
        }
        row.extend([
            c.calls.to_string(),
            c.errors.saturating_add(c.panics).to_string(),
            format!("{:.1}", c.error_ratio * 100.0),
            value(c.p50_ns),
            value(c.p99_ns),
            value(c.max_ns),
            c.calls_per_second
                .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")),
        ]);
        table.rows.push(row);
    }
    let mut text = table.render();
    let _ = writeln!(
        text,
        "{} callsites {range}; percentiles from the merged window histograms",
        summary.callsites.len()
    );
    text
}

/// A summary value: a duration, or for a value histogram the number itself.
fn value_text(c: &CallsiteSummary, value: u64) -> String {
    if c.kind == "histogram" {
        match &c.unit {
            Some(unit) => format!("{value} {unit}"),
            None => value.to_string(),
        }
    } else {
        human(i128::from(value))
    }
}

fn slow_table(events: &[EventRecord]) -> String {
    if events.is_empty() {
        return "no stored events in the range\n".to_owned();
    }
    let mut table = Columns::new(&[
        ("DURATION", true),
        ("CALLSITE", false),
        ("OUTCOME", false),
        ("START", false),
        ("CORRELATION", false),
        ("FIELDS", false),
    ]);
    for e in events {
        table.rows.push(vec![
            human(i128::from(e.duration_ns)),
            e.callsite.clone(),
            outcome_text(&e.outcome, e.error_kind.as_deref()),
            e.start.clone(),
            or_dash(e.correlation.as_deref()),
            pairs(&e.fields),
        ]);
    }
    table.render()
}

fn outcome_text(outcome: &str, kind: Option<&str>) -> String {
    match kind {
        Some(kind) => format!("{outcome} ({kind})"),
        None => outcome.to_owned(),
    }
}

fn errors_table(groups: &[ErrorGroup]) -> String {
    if groups.is_empty() {
        return "no failed calls in the range\n".to_owned();
    }
    let mut table = Columns::new(&[
        ("COUNT", true),
        ("CALLSITE", false),
        ("OUTCOME", false),
        ("KIND", false),
        ("LATEST", false),
        ("CORRELATION", false),
        ("FIELDS", false),
    ]);
    for g in groups {
        let latest = g.latest.as_ref();
        table.rows.push(vec![
            g.count.to_string(),
            g.callsite.clone(),
            g.outcome.clone(),
            or_dash(g.kind.as_deref()),
            or_dash(latest.map(|e| e.start.as_str())),
            or_dash(latest.and_then(|e| e.correlation.as_deref())),
            latest.map_or_else(|| "-".to_owned(), |e| pairs(&e.fields)),
        ]);
    }
    table.render()
}

fn trace_table(trace: &Trace) -> String {
    if trace.entries.is_empty() {
        return format!(
            "nothing stored under correlation id {}\n",
            trace.correlation
        );
    }
    let mut table = Columns::new(&[
        ("TIME", false),
        ("TYPE", false),
        ("WHAT", false),
        ("DETAIL", false),
    ]);
    for entry in &trace.entries {
        let row = match entry {
            TraceEntry::Event(e) => vec![
                e.start.clone(),
                "event".to_owned(),
                e.callsite.clone(),
                format!(
                    "{} {} {}",
                    outcome_text(&e.outcome, e.error_kind.as_deref()),
                    human(i128::from(e.duration_ns)),
                    pairs(&e.fields)
                ),
            ],
            TraceEntry::Audit(a) => vec![
                a.timestamp.clone(),
                "audit".to_owned(),
                a.operation.clone(),
                format!(
                    "{} -> {}{}",
                    a.inputs.join(", "),
                    a.outputs.join(", "),
                    a.actor
                        .as_deref()
                        .map_or_else(String::new, |actor| format!(" by {actor}"))
                ),
            ],
            TraceEntry::Notice(n) => vec![
                n.time.clone(),
                "notice".to_owned(),
                format!("{} {}", n.source, n.level),
                n.message.clone(),
            ],
        };
        table.rows.push(row);
    }
    table.render()
}

fn trail_table(trail: &AuditTrail) -> String {
    if trail.entries.is_empty() {
        return format!("no audit entry names {}\n", trail.id);
    }
    let mut table = Columns::new(&[
        ("ID", true),
        ("DIRECTION", false),
        ("DEPTH", true),
        ("TIME", false),
        ("OPERATION", false),
        ("INPUTS", false),
        ("OUTPUTS", false),
        ("ACTOR", false),
    ]);
    for t in &trail.entries {
        let e = &t.entry;
        table.rows.push(vec![
            e.id.to_string(),
            t.direction.to_owned(),
            t.depth.to_string(),
            e.timestamp.clone(),
            e.operation.clone(),
            e.inputs.join(", "),
            e.outputs.join(", "),
            or_dash(e.actor.as_deref()),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(human(850), "850 ns");
        assert_eq!(human(12_345), "12.3 µs");
        assert_eq!(human(1_200_000), "1.2 ms");
        assert_eq!(human(2_500_000_000), "2.50 s");
        assert_eq!(human(186_000_000_000), "3.1 min");
        assert_eq!(human(-5), "-5 ns");
    }

    #[test]
    fn columns_align_and_numbers_go_right() {
        let mut table = Columns::new(&[("NAME", false), ("CALLS", true), ("NOTE", false)]);
        table.rows.push(vec!["a".into(), "5".into(), "x".into()]);
        table
            .rows
            .push(vec!["µbench".into(), "1234567".into(), String::new()]);
        assert_eq!(
            table.render(),
            "NAME      CALLS  NOTE\na             5  x\nµbench  1234567\n"
        );
    }

    #[test]
    fn times_are_durations_ago_rfc3339_or_all() {
        let now = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        assert_eq!(
            time("--since", "1h", now).ok().flatten(),
            Some(now - std::time::Duration::from_secs(3600))
        );
        assert_eq!(
            time("--since", "1970-01-02T00:00:00Z", now).ok().flatten(),
            Some(SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(86_400))
        );
        assert!(matches!(time("--since", "all", now), Ok(None)));
        let Err(Failure(message)) = time("--since", "5 parsecs", now) else {
            panic!("a bad duration is refused");
        };
        assert!(message.contains("--since `5 parsecs`"), "{message}");
        assert!(time("--until", "500000000000y", now).is_err());
    }
}
