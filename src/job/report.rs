//! The report the main job prints at the end of a run.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use instrument::{Event, Histogram, Outcome, Snapshot};

use super::{JobSummary, STAGES};

/// What the SDK saw of a run, for the report.
#[derive(Debug)]
pub struct SdkView<'a> {
    /// The final snapshot (after a flush).
    pub snapshot: &'a Snapshot,
    /// The events the in-memory sink received.
    pub events: &'a [Event],
    /// The store.
    pub database: &'a Path,
    /// The JSON-lines directory.
    pub logs: &'a Path,
    /// Where `/metrics` is served.
    pub metrics_at: Option<SocketAddr>,
    /// Seconds the endpoint stays up after the report.
    pub linger: u64,
    /// Where OTLP metrics went, and the exporter's counts then.
    pub otlp: Option<(&'a str, instrument_sinks::otlp::OtlpStatus)>,
    /// Health and alerts as the run ended.
    pub operations: &'a super::Operations,
    /// `--fail-rate`, to say whether the alert was expected.
    pub fail_rate: f64,
}

/// One row of the stage table.
#[derive(Clone, Debug, PartialEq)]
pub struct StageRow {
    /// `discover`, `read`, `parse`, `analyze`, `store`.
    pub stage: &'static str,
    /// Threads it ran on.
    pub threads: usize,
    /// Calls of its function (directories for `discover`, batches for `store`, else files).
    pub calls: u64,
    /// Failed calls.
    pub errors: u64,
    /// Median call duration (with the SDK only).
    pub p50: Option<Duration>,
    /// 99th percentile (with the SDK only).
    pub p99: Option<Duration>,
    /// Longest call (with the SDK only).
    pub max: Option<Duration>,
    /// Time spent in the stage's calls, all threads together (with the SDK only).
    pub busy: Option<Duration>,
    /// Files the stage handled per second of its own time on its threads: files over (busy
    /// time / threads), what the stage alone would sustain (with the SDK only).
    pub files_per_second: Option<f64>,
}

/// The stage table: from the snapshot's callsites with a `stage` label when the SDK ran,
/// else from the job's own counts (no latencies).
#[must_use]
pub fn stage_rows(summary: &JobSummary, snapshot: Option<&Snapshot>) -> Vec<StageRow> {
    STAGES
        .iter()
        .zip(&summary.stages)
        .map(|(&(stage, _), count)| {
            let mut row = StageRow {
                stage,
                threads: count.threads,
                calls: count.calls,
                errors: count.errors,
                p50: None,
                p99: None,
                max: None,
                busy: None,
                files_per_second: None,
            };
            let Some(snapshot) = snapshot else {
                return row;
            };
            let mut histogram = Histogram::new();
            let (mut calls, mut errors, mut busy) = (0, 0, Duration::ZERO);
            for call in snapshot.calls.iter().filter(|c| {
                c.callsite
                    .labels_slice()
                    .iter()
                    .any(|&(k, v)| k == "stage" && v == stage)
            }) {
                calls += call.total.count;
                if matches!(call.outcome, Outcome::Error | Outcome::Panic) {
                    errors += call.total.count;
                }
                busy += call.total.sum;
                histogram.merge(&call.histogram);
            }
            row.calls = calls;
            row.errors = errors;
            if calls > 0 {
                row.p50 = Some(Duration::from_nanos(histogram.quantile(0.5)));
                row.p99 = Some(Duration::from_nanos(histogram.quantile(0.99)));
                row.max = Some(Duration::from_nanos(histogram.max()));
                row.busy = Some(busy);
                let per_thread = busy.as_secs_f64() / count.threads.max(1) as f64;
                if per_thread > 0.0 {
                    row.files_per_second = Some(count.files as f64 / per_thread);
                }
            }
            row
        })
        .collect()
}

/// Quotes `text` for a POSIX shell where needed.
#[must_use]
pub fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./:@%+=,".contains(c));
    if plain {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// The `instrumentctl` commands that look further into this run's data: a summary, the
/// errors, the slowest kept calls, the trace of the slowest parsed file (or of the example
/// file), the audit trail of the example file (the first that failed, else the first stored),
/// the audit chain's check, the health history, the alerts and the runs (to compare). Each is a
/// complete command line, `instrumentctl --db DB ...`.
#[must_use]
pub fn instrumentctl_commands(summary: &JobSummary, sdk: &SdkView<'_>) -> Vec<String> {
    let ctl = format!(
        "instrumentctl --db {}",
        shell_quote(&sdk.database.to_string_lossy())
    );
    let mut commands = vec![
        format!("{ctl} summary --since 1h"),
        format!("{ctl} errors --since 1h"),
        format!("{ctl} slow --top 10"),
    ];
    let slowest = sdk
        .events
        .iter()
        .filter(|e| e.callsite.name() == STAGES[2].1)
        .filter_map(|e| Some((e.duration, e.correlation?)))
        .max_by_key(|&(duration, _)| duration)
        .map(|(_, id)| id);
    if let Some(id) = slowest.or_else(|| summary.example.as_ref().map(|e| e.correlation)) {
        commands.push(format!("{ctl} trace {id}"));
    }
    if let Some(example) = &summary.example {
        commands.push(format!("{ctl} audit trail {}", shell_quote(&example.path)));
    }
    commands.push(format!("{ctl} audit verify"));
    commands.push(format!("{ctl} health"));
    commands.push(format!("{ctl} alerts --all"));
    commands.push(format!("{ctl} runs"));
    commands
}

/// The report: what was done, what the files contain, the stage table, the failures, where
/// the data is and, with the SDK, the `instrumentctl` commands.
#[must_use]
pub fn render(summary: &JobSummary, sdk: Option<&SdkView<'_>>) -> String {
    let mut out = String::new();
    headline(&mut out, summary);
    contents(&mut out, summary);
    stages(&mut out, summary, sdk.map(|s| s.snapshot));
    failures(&mut out, summary);
    if let Some(sdk) = sdk {
        pipeline_health(&mut out, sdk.snapshot);
        operations(&mut out, sdk);
    }
    data(&mut out, summary, sdk);
    out
}

fn headline(out: &mut String, s: &JobSummary) {
    let secs = s.wall.as_secs_f64().max(1e-9);
    let rate = s.stored as f64 / secs;
    let _ = writeln!(
        out,
        "ast_pipeline: {} files in {} on {} parsing thread(s): {} parsed, {} failed; {:.0} files/s ({} files/min), {}",
        thousands(s.stored),
        human_duration(s.wall),
        s.options.threads,
        thousands(s.parsed),
        thousands(s.failed()),
        rate,
        thousands((rate * 60.0) as u64),
        human_bytes(s.bytes),
    );
    let roots: Vec<_> = s
        .options
        .roots
        .iter()
        .map(|r| r.display().to_string())
        .collect();
    let _ = writeln!(out, "  sources: {}", roots.join(", "));
    if s.truncated {
        let _ = writeln!(
            out,
            "  stopped at the limit of {} files (--limit N to change it)",
            thousands(s.options.max_files as u64)
        );
    }
    for (path, e) in s.unreadable.iter().take(3) {
        let _ = writeln!(out, "  could not list {}: {e}", path.display());
    }
    if s.unreadable.len() > 3 {
        let _ = writeln!(out, "  ... and {} more", s.unreadable.len() - 3);
    }
    if s.options.fail_rate > 0.0 {
        let _ = writeln!(
            out,
            "  --fail-rate {}: that fraction of parse calls fail on purpose (error kind Injected)",
            s.options.fail_rate
        );
    }
}

fn contents(out: &mut String, s: &JobSummary) {
    let t = &s.stats;
    let _ = writeln!(
        out,
        "\nWhat the parsed files contain (macro bodies are not parsed)"
    );
    let _ = writeln!(
        out,
        "  items {}   functions {} (async {}, unsafe {})   structs {}   enums {}   traits {}   impls {}",
        thousands(t.items),
        thousands(t.functions),
        thousands(t.async_functions),
        thousands(t.unsafe_functions),
        thousands(t.structs),
        thousands(t.enums),
        thousands(t.traits),
        thousands(t.impls),
    );
    let _ = writeln!(
        out,
        "  debt markers: TODO {}   FIXME {}   unsafe {} (blocks {}, fns {}, impls {})",
        thousands(u64::from(s.debt.todo)),
        thousands(u64::from(s.debt.fixme)),
        thousands(u64::from(s.debt.unsafe_code)),
        thousands(t.unsafe_blocks),
        thousands(t.unsafe_functions),
        thousands(t.unsafe_impls),
    );
    if !s.most_complex.is_empty() {
        let _ = writeln!(
            out,
            "  most complex functions (cyclomatic complexity, nesting depth):"
        );
        for f in s.most_complex.iter().take(5) {
            let _ = writeln!(
                out,
                "    {:>4} {:>3}  {}  {}",
                f.complexity, f.max_nesting, f.name, f.path
            );
        }
    }
}

fn stages(out: &mut String, s: &JobSummary, snapshot: Option<&Snapshot>) {
    let rows = stage_rows(s, snapshot);
    let _ = writeln!(
        out,
        "\nPer stage{}",
        if snapshot.is_some() {
            " (the SDK's final snapshot: every call of each stage function)"
        } else {
            " (counted by the job; latencies need the SDK, which --no-instrument leaves out)"
        }
    );
    let _ = writeln!(
        out,
        "  {:<9} {:>7} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9}",
        "stage", "threads", "calls", "errors", "p50", "p99", "max", "files/s"
    );
    let opt = |d: Option<Duration>| d.map_or_else(|| "-".to_owned(), human_duration);
    for row in &rows {
        let _ = writeln!(
            out,
            "  {:<9} {:>7} {:>8} {:>7} {:>9} {:>9} {:>9} {:>9}",
            row.stage,
            row.threads,
            thousands(row.calls),
            thousands(row.errors),
            opt(row.p50),
            opt(row.p99),
            opt(row.max),
            row.files_per_second
                .map_or_else(|| "-".to_owned(), |r| thousands(r as u64)),
        );
    }
    if snapshot.is_some() {
        let _ = writeln!(
            out,
            "  calls: directories for discover, transactions for store, else files; files/s: files \
             over the stage's own time per thread, what it alone would sustain"
        );
    }
}

fn failures(out: &mut String, s: &JobSummary) {
    if s.failures.is_empty() {
        let _ = writeln!(out, "\nEvery file was read and parsed.");
        return;
    }
    let kinds: Vec<_> = s
        .failures
        .iter()
        .map(|((stage, kind), n)| format!("{stage} {kind} x{}", thousands(*n)))
        .collect();
    let _ = writeln!(
        out,
        "\nFailed files: {} ({}); stored with status 'error' and their kind",
        thousands(s.failed()),
        kinds.join(", ")
    );
    for f in &s.first_failures {
        let _ = writeln!(out, "  {} [{} {}]: {}", f.path, f.stage, f.kind, f.message);
    }
}

fn pipeline_health(out: &mut String, snapshot: &Snapshot) {
    let m = &snapshot.self_metrics;
    let sinks: Vec<_> = m
        .sinks
        .iter()
        .map(|s| {
            format!(
                "{} {} batches/{} errors/{} dropped",
                s.name, s.delivered, s.errors, s.dropped_batches
            )
        })
        .collect();
    let _ = writeln!(
        out,
        "\nSDK: {} records drained, {} durations dropped under overload; sinks: {}",
        thousands(m.events_recorded),
        thousands(m.events_dropped),
        sinks.join(", ")
    );
}

/// Health components that are not healthy, alerts pending or firing, and with `--fail-rate` the
/// time from the first failing call to `StageErrors` firing.
fn operations(out: &mut String, sdk: &SdkView<'_>) {
    let ops = sdk.operations;
    let faults: Vec<String> = ops
        .health
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
        "\nHealth and alerts\n  health {} across {} component(s){}",
        ops.health.status,
        ops.health.components.len(),
        if faults.is_empty() {
            String::new()
        } else {
            format!(": {}", faults.join("; "))
        }
    );
    if let Some(addr) = sdk.metrics_at {
        let _ = writeln!(
            out,
            "  http://{addr}/health  http://{addr}/ready  operations page: http://{addr}/"
        );
    }
    if ops.alerts.is_empty() {
        let _ = writeln!(out, "  no alert pending or firing");
    }
    for alert in &ops.alerts {
        let _ = writeln!(
            out,
            "  {} {} {} [{}]: {}",
            alert.display_state(),
            alert.severity,
            alert.rule,
            alert.id,
            alert.summary
        );
    }
    if sdk.fail_rate > 0.0 {
        match ops.detected {
            Some(took) => {
                let _ = writeln!(
                    out,
                    "  --fail-rate {}: first failing call -> {} firing in {} (in process; 1 s windows)",
                    sdk.fail_rate,
                    super::STAGE_ERRORS_RULE,
                    human_duration(took)
                );
            }
            None => {
                let _ = writeln!(
                    out,
                    "  --fail-rate {}: {} did not fire during the run",
                    sdk.fail_rate,
                    super::STAGE_ERRORS_RULE
                );
            }
        }
    }
}

fn data(out: &mut String, s: &JobSummary, sdk: Option<&SdkView<'_>>) {
    let database = sdk.map_or(s.options.database.as_path(), |v| v.database);
    let _ = writeln!(
        out,
        "\nData\n  store: {} ({}tables ast_runs, ast_files, ast_functions: this run is ast_runs id {})",
        database.display(),
        if sdk.is_some() {
            "the SDK's tables, and "
        } else {
            ""
        },
        s.run_id
    );
    let Some(sdk) = sdk else {
        let _ = writeln!(
            out,
            "  no SDK data (--no-instrument): no logs, no endpoint, no audit entries"
        );
        return;
    };
    let _ = writeln!(
        out,
        "  audit: {} entries (one analyze_file per file: path and sha256 -> ast_files:ID; one ast_run)",
        thousands(s.audit_entries)
    );
    let _ = writeln!(
        out,
        "  logs: {} (JSON lines: main, error, performance and audit streams)",
        sdk.logs.display()
    );
    match sdk.metrics_at {
        Some(addr) if sdk.linger > 0 => {
            let _ = writeln!(
                out,
                "  metrics: http://{addr}/metrics (served for {} s more)",
                sdk.linger
            );
        }
        Some(addr) => {
            let _ = writeln!(
                out,
                "  metrics: http://{addr}/metrics (served during the run; --linger SECS keeps it up after)"
            );
        }
        None => {
            let _ = writeln!(out, "  metrics: not served (--prometheus off)");
        }
    }
    if let Some((url, status)) = &sdk.otlp {
        let _ = writeln!(
            out,
            "  otlp: {url}: {} requests sent ({} points, {} log records), {} waiting, {} dropped{}",
            thousands(status.sent_requests),
            thousands(status.sent_points),
            thousands(status.sent_log_records),
            thousands(status.backlog_requests),
            thousands(status.dropped_requests),
            status
                .last_error
                .as_deref()
                .map(|e| format!("; last error: {e}"))
                .unwrap_or_default()
        );
    }
    let _ = writeln!(
        out,
        "\nLook further with instrumentctl (`cargo install --path sinks --features cli`, or \
         `cargo run -p instrument-sinks --features cli --bin instrumentctl -- ARGS`):"
    );
    for command in instrumentctl_commands(s, sdk) {
        let _ = writeln!(out, "  {command}");
    }
}

/// `12,345`.
#[must_use]
pub fn thousands(n: u64) -> String {
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

/// `850ns`, `12.3µs`, `1.2ms`, `2.50s`.
#[must_use]
pub fn human_duration(d: Duration) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_quote_leaves_plain_words_and_quotes_the_rest() {
        assert_eq!(shell_quote("/a/b-c_1.rs"), "/a/b-c_1.rs");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(1_234_567), "1,234,567");
    }
}
