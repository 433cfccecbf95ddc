//! `instrumentctl runs`, `compare`, `trend`, `report` and `callgraph`: runs of the pipeline,
//! their comparison, trends, reports and the call graph.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use clap::ValueEnum;
use instrument_sinks::sqlite::query::report::ReportOptions;
use instrument_sinks::sqlite::query::{
    Bucket, CallGraph, Comparison, RunRecord, Side, Store, Trend, Verdict, VerdictRule,
};

use super::{Columns, Failure, human, or_dash, out, print, range};

/// The exit status of `compare` when a callsite regressed (1 is a failure, 2 bad usage).
pub(super) const REGRESSED: u8 = 3;

/// Arguments of `instrumentctl compare`.
#[derive(Debug, clap::Args)]
pub(super) struct CompareArgs {
    /// The baseline run's id (`instrumentctl runs` lists them).
    run_a: i64,
    /// The run compared with it.
    run_b: i64,
    /// Significance level of the tests.
    #[arg(long, default_value_t = 0.01, value_name = "P")]
    alpha: f64,
    /// Smallest relative change of the median that counts (0.05 = 5%).
    #[arg(long, default_value_t = 0.05, value_name = "RATIO")]
    min_change: f64,
    /// Smallest change of the error ratio that counts (0.01 = one percentage point).
    #[arg(long, default_value_t = 0.01, value_name = "RATIO")]
    min_error_change: f64,
    /// Fewest calls on each side for a test to be made.
    #[arg(long, default_value_t = 10, value_name = "N")]
    min_calls: u64,
}

/// `--by` of `trend`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(super) enum By {
    Hour,
    Day,
}

/// `--format` of `report`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(super) enum ReportFormat {
    Md,
    Html,
}

/// `--format` of `callgraph`.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(super) enum GraphFormat {
    Dot,
    Json,
}

/// Arguments of `instrumentctl report`.
#[derive(Debug, clap::Args)]
pub(super) struct ReportArgs {
    /// Start: a duration ago (7d), an RFC 3339 UTC time, or `all`.
    #[arg(
        long,
        default_value = "7d",
        value_name = "WHEN",
        conflicts_with = "run"
    )]
    since: String,
    /// End, like --since (default: now).
    #[arg(long, value_name = "WHEN", conflicts_with = "run")]
    until: Option<String>,
    /// One run instead of a range.
    #[arg(long, value_name = "ID")]
    run: Option<i64>,
    /// Markdown or a self-contained HTML file with SVG charts.
    #[arg(long, value_enum, default_value_t = ReportFormat::Md)]
    format: ReportFormat,
    /// A new file to write (an existing one is refused); default stdout.
    #[arg(short = 'o', long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// The scheduled backups' directory (default DIR/backups, if it exists).
    #[arg(long, value_name = "DIR")]
    backups: Option<PathBuf>,
    /// The captured argument that names a file, for audit coverage.
    #[arg(long, default_value = "path", value_name = "NAME")]
    file_field: String,
}

fn rule(args: &CompareArgs) -> Result<VerdictRule, Failure> {
    for (flag, value) in [
        ("--alpha", args.alpha),
        ("--min-change", args.min_change),
        ("--min-error-change", args.min_error_change),
    ] {
        if !(0.0..1.0).contains(&value) {
            return Err(Failure(format!(
                "invalid {flag} `{value}`: give a number from 0 up to 1"
            )));
        }
    }
    Ok(VerdictRule {
        alpha: args.alpha,
        min_change: args.min_change,
        min_error_change: args.min_error_change,
        min_calls: args.min_calls,
    })
}

/// Runs `runs`, `compare`, `trend`, `report` or `callgraph`.
pub(super) fn dispatch(
    command: super::Command,
    db: &Path,
    data_dir: &Path,
    json: bool,
    now: SystemTime,
) -> Result<ExitCode, Failure> {
    use super::Command;
    match command {
        Command::Runs => runs(db, json),
        Command::Compare(args) => compare(db, &args, json),
        Command::Trend {
            callsite,
            since,
            until,
            by,
        } => trend(db, &callsite, &since, until.as_deref(), by, json, now),
        Command::Report(args) => report(db, data_dir, &args, json, now),
        Command::Callgraph { run, format } => callgraph(db, run, format, json),
        other => Err(Failure(format!("{other:?} is not a command of runs"))),
    }
}

/// `instrumentctl runs`.
fn runs(db: &Path, json: bool) -> Result<ExitCode, Failure> {
    let runs = Store::open(db)?.runs()?;
    print(json, &runs, || runs_table(&runs))
}

fn duration_text(ns: Option<i64>) -> String {
    ns.map_or_else(|| "-".to_owned(), |ns| human(i128::from(ns)))
}

fn runs_table(runs: &[RunRecord]) -> String {
    if runs.is_empty() {
        return "no runs stored\n".to_owned();
    }
    let mut table = Columns::new(&[
        ("RUN", true),
        ("STARTED", false),
        ("DURATION", true),
        ("PROCESS", false),
        ("HOST", false),
        ("VERSION", false),
        ("CONFIG", false),
        ("CALLS", true),
        ("ERRORS", true),
        ("ERR%", true),
        ("AUDITED", true),
        ("ENDED", false),
    ]);
    for r in runs {
        table.rows.push(vec![
            r.id.to_string(),
            r.started.clone(),
            duration_text(r.duration_ns),
            format!("{} ({})", r.process_name, r.pid),
            or_dash(r.hostname.as_deref()),
            or_dash(r.program_version.as_deref()),
            r.config_digest
                .as_deref()
                .map_or_else(|| "-".to_owned(), |d| d.chars().take(12).collect()),
            r.calls.to_string(),
            r.errors.to_string(),
            format!("{:.1}", r.error_ratio * 100.0),
            r.audited_inputs.to_string(),
            if r.ended.is_some() {
                "shut down".to_owned()
            } else {
                "no (running or killed)".to_owned()
            },
        ]);
    }
    table.render()
}

/// `instrumentctl compare`: exits [`REGRESSED`] when a callsite regressed.
fn compare(db: &Path, args: &CompareArgs, json: bool) -> Result<ExitCode, Failure> {
    let rule = rule(args)?;
    let comparison = Store::open(db)?.compare(args.run_a, args.run_b, rule)?;
    let printed = print(json, &comparison, || compare_table(&comparison))?;
    if comparison.verdict == Verdict::Regressed {
        return Ok(ExitCode::from(REGRESSED));
    }
    Ok(printed)
}

fn percent_change(change: Option<f64>) -> String {
    change.map_or_else(|| "-".to_owned(), |c| format!("{:+.1}%", c * 100.0))
}

fn compare_table(c: &Comparison) -> String {
    let mut table = Columns::new(&[
        ("CALLSITE", false),
        ("CALLS A", true),
        ("CALLS B", true),
        ("ERR% A", true),
        ("ERR% B", true),
        ("P50 A", true),
        ("P50 B", true),
        ("P50", true),
        ("P90", true),
        ("P99 A", true),
        ("P99 B", true),
        ("P99", true),
        ("VERDICT", false),
        ("WHY", false),
    ]);
    let get = |side: &Option<Side>, f: &dyn Fn(&Side) -> String| {
        side.as_ref().map_or_else(|| "-".to_owned(), f)
    };
    for s in &c.callsites {
        let why = match (&s.latency, &s.errors) {
            (Some(l), Some(e)) if e.verdict != Verdict::Unchanged => {
                format!("errors: {}", e.reason)
            }
            (Some(l), _) => format!("latency: {}", l.reason),
            _ => "called by one run only".to_owned(),
        };
        table.rows.push(vec![
            s.name.clone(),
            get(&s.a, &|x| x.calls.to_string()),
            get(&s.b, &|x| x.calls.to_string()),
            get(&s.a, &|x| format!("{:.1}", x.error_ratio * 100.0)),
            get(&s.b, &|x| format!("{:.1}", x.error_ratio * 100.0)),
            get(&s.a, &|x| human(i128::from(x.p50_ns))),
            get(&s.b, &|x| human(i128::from(x.p50_ns))),
            percent_change(s.p50_change),
            percent_change(s.p90_change),
            get(&s.a, &|x| human(i128::from(x.p99_ns))),
            get(&s.b, &|x| human(i128::from(x.p99_ns))),
            percent_change(s.p99_change),
            s.verdict.as_str().to_owned(),
            why,
        ]);
    }
    let mut text = format!(
        "run {} ({}) against run {} ({})\n",
        c.b.id, c.b.started, c.a.id, c.a.started
    );
    text.push_str(&table.render());
    let _ = writeln!(
        text,
        "{}: {} regressed, {} improved (Mann-Whitney and two-proportion tests at p < {}, \
         median change >= {:.0}%, error ratio change >= {:.1} points, >= {} calls a side)",
        c.verdict.as_str(),
        c.regressed,
        c.improved,
        c.rule.alpha,
        c.rule.min_change * 100.0,
        c.rule.min_error_change * 100.0,
        c.rule.min_calls,
    );
    text
}

/// `instrumentctl trend`.
fn trend(
    db: &Path,
    callsite: &str,
    since: &str,
    until: Option<&str>,
    by: By,
    json: bool,
    now: SystemTime,
) -> Result<ExitCode, Failure> {
    let range = range(since, until, now)?;
    let bucket = match by {
        By::Hour => Bucket::Hour,
        By::Day => Bucket::Day,
    };
    let trend = Store::open(db)?.trend(callsite, range, bucket)?;
    print(json, &trend, || trend_table(&trend))
}

fn trend_table(trend: &Trend) -> String {
    let mut table = Columns::new(&[
        ("BUCKET", false),
        ("CALLS", true),
        ("ERRORS", true),
        ("ERR%", true),
        ("P50", true),
        ("P99", true),
    ]);
    for b in &trend.buckets {
        table.rows.push(vec![
            b.start.clone(),
            b.calls.to_string(),
            b.errors.to_string(),
            format!("{:.1}", b.error_ratio * 100.0),
            human(i128::from(b.p50_ns)),
            human(i128::from(b.p99_ns)),
        ]);
    }
    let mut text = table.render();
    let _ = writeln!(
        text,
        "{}: {} buckets of {} s with calls (buckets without calls are left out)",
        trend.callsite,
        trend.buckets.len(),
        trend.bucket_seconds
    );
    text
}

/// `instrumentctl report`.
fn report(
    db: &Path,
    data_dir: &Path,
    args: &ReportArgs,
    json: bool,
    now: SystemTime,
) -> Result<ExitCode, Failure> {
    let backups = match &args.backups {
        Some(dir) if !dir.is_dir() => {
            return Err(Failure(format!(
                "--backups {}: no such directory",
                dir.display()
            )));
        }
        Some(dir) => Some(dir.clone()),
        None => Some(data_dir.join("backups")).filter(|d| d.is_dir()),
    };
    let options = ReportOptions {
        range: range(&args.since, args.until.as_deref(), now)?,
        run: args.run,
        backups,
        file_field: args.file_field.clone(),
        ..ReportOptions::default()
    };
    let report = Store::open(db)?.report(&options, now)?;
    let text = if json {
        let mut text = serde_json::to_string_pretty(&report)?;
        text.push('\n');
        text
    } else {
        match args.format {
            ReportFormat::Md => report.to_markdown(),
            ReportFormat::Html => report.to_html(),
        }
    };
    match &args.output {
        None => out(&text),
        Some(path) => {
            write_new(path, &text)?;
            let _ = writeln!(io::stderr(), "instrumentctl: wrote {}", path.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// Writes `text` to the new file `path`; removes it again if the write fails.
fn write_new(path: &Path, text: &str) -> Result<(), Failure> {
    let mut file = File::create_new(path).map_err(|e| {
        Failure(if e.kind() == io::ErrorKind::AlreadyExists {
            format!(
                "{} already exists; report writes a new file",
                path.display()
            )
        } else {
            format!("cannot create {}: {e}", path.display())
        })
    })?;
    if let Err(e) = file
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
    {
        drop(file);
        let _ = std::fs::remove_file(path);
        return Err(Failure(format!(
            "cannot write {}: {e} (nothing was left there)",
            path.display()
        )));
    }
    Ok(())
}

/// `instrumentctl callgraph`.
fn callgraph(
    db: &Path,
    run: Option<i64>,
    format: GraphFormat,
    json: bool,
) -> Result<ExitCode, Failure> {
    let graph = Store::open(db)?.callgraph(run)?;
    if json || matches!(format, GraphFormat::Json) {
        return print(true, &graph, String::new);
    }
    out(&dot(&graph))
}

fn dot(graph: &CallGraph) -> String {
    graph.to_dot(|ns| human(i128::from(ns)))
}
