//! Reports of a store for people: Markdown, or one self-contained HTML file with SVG charts
//! drawn by `plotters` (no script, no font or file fetched: it opens offline).
//!
//! A [`Report`] holds, for a time range or one run: the runs in it; calls, throughput,
//! latency and error ratio per callsite; latency, error-ratio and throughput trends (charts in
//! HTML, tables in Markdown); the slowest stored calls with their captured arguments; failed
//! calls per error kind; the alerts that fired in it and who acknowledged them; audit coverage
//! (the files the stored events name, with and without an audit entry); the scheduled
//! backups; and the comparison of the (last) run with the one before it.
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("instrument.db");
//! use instrument_sinks::sqlite::query::Store;
//! use instrument_sinks::sqlite::query::report::ReportOptions;
//!
//! let sink = instrument_sinks::SqliteSink::builder().path(&path).build()?;
//! let pipeline = instrument::builder().sink(sink).install()?;
//! {
//!     let _timer = instrument::timer!("load");
//!     std::thread::sleep(std::time::Duration::from_millis(1));
//! }
//! pipeline.shutdown()?;
//!
//! let report = Store::open(&path)?.report(&ReportOptions::default(), std::time::SystemTime::now())?;
//! assert!(report.to_markdown().contains("| load |"));
//! assert!(report.to_html().contains("<svg"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use plotters::prelude::*;
use serde::Serialize;

use super::runs::RunScope;
use super::{
    AlertRecord, Comparison, ErrorGroup, EventRecord, QueryError, RunRecord, Store, Summary,
    TimeRange, Trend, VerdictRule, rfc3339,
};
use crate::sqlite::maintenance::scheduled_backups;
use crate::sqlite::{BackupManifest, MANIFEST_FILE};

/// What a report covers and draws on.
#[derive(Clone, Debug)]
pub struct ReportOptions {
    /// The time range (ignored with `run`).
    pub range: TimeRange,
    /// One run instead of a range: from its start to its end (or its last window).
    pub run: Option<i64>,
    /// The directory of the scheduled backups, if any.
    pub backups: Option<PathBuf>,
    /// The captured argument that names a file (default `path`), for audit coverage.
    pub file_field: String,
    /// How many of the slowest calls to list (default 10).
    pub top: usize,
    /// The rule of the comparison with the previous run.
    pub rule: VerdictRule,
}

impl Default for ReportOptions {
    fn default() -> Self {
        ReportOptions {
            range: TimeRange::ALL,
            run: None,
            backups: None,
            file_field: "path".to_owned(),
            top: 10,
            rule: VerdictRule::default(),
        }
    }
}

/// Audit coverage: of the files the stored events name, those with an audit entry.
#[derive(Clone, Debug, Serialize)]
pub struct AuditCoverage {
    /// The captured argument read as the file.
    pub field: String,
    /// Audit entries written in the range.
    pub entries: u64,
    /// Distinct files named by that argument of the stored events in the range.
    pub files: u64,
    /// Of them, named as an input or output by some audit entry.
    pub with_audit: u64,
    /// The others, at most 20, by name.
    pub without_audit: Vec<String>,
}

/// The scheduled backups.
#[derive(Clone, Debug, Serialize)]
pub struct BackupStatus {
    /// The directory looked in.
    pub dir: String,
    /// Complete backups in it.
    pub count: usize,
    /// The newest one's directory name.
    pub latest: Option<String>,
    /// Its manifest, when it could be read.
    pub manifest: Option<BackupManifest>,
    /// Why it could not be listed or read, if so.
    pub problem: Option<String>,
}

/// A report, from [`Store::report`]; render it with [`Report::to_markdown`] or
/// [`Report::to_html`], or serialize it.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The store.
    pub store: String,
    /// When the report was made.
    pub generated: String,
    /// The run reported on, with `--run`.
    pub run: Option<i64>,
    /// The start of the range.
    pub since: Option<String>,
    /// Its end.
    pub until: Option<String>,
    /// Runs that started in the range (with `run`, that run).
    pub runs: Vec<RunRecord>,
    /// Calls, throughput, latency and errors per callsite.
    pub summary: Summary,
    /// Per timed callsite with calls, its trend in buckets of `bucket_seconds`.
    pub trends: Vec<Trend>,
    /// The slowest stored calls.
    pub slow: Vec<EventRecord>,
    /// Failed calls per callsite and error kind.
    pub errors: Vec<ErrorGroup>,
    /// Alerts active in the range.
    pub alerts: Vec<AlertRecord>,
    /// Audit coverage.
    pub audit: AuditCoverage,
    /// The scheduled backups, when a directory was given.
    pub backups: Option<BackupStatus>,
    /// The last run of the report against the run before it, when there is one.
    pub comparison: Option<Comparison>,
}

/// Bucket widths a report's trends may use, in seconds.
const WIDTHS: &[i64] = &[
    1,
    5,
    10,
    30,
    60,
    300,
    900,
    1800,
    3600,
    6 * 3600,
    12 * 3600,
    86_400,
    7 * 86_400,
];

impl Store {
    /// A report of `options`' range or run, made at `now`.
    ///
    /// # Errors
    /// [`QueryError::UnknownRun`], [`QueryError::NoData`] when no calls were recorded in the
    /// range, [`QueryError::Read`], [`QueryError::BadRow`].
    pub fn report(&self, options: &ReportOptions, now: SystemTime) -> Result<Report, QueryError> {
        // Each section reads in its own transaction: with a sink writing meanwhile, a later
        // section may count a little more than an earlier one.
        let scopes = self.run_scopes()?;
        let (range, runs, run_scope) = self.report_scope(options, &scopes, now)?;
        let summary = self.summary(range)?;
        let timed: Vec<&super::CallsiteSummary> = summary
            .callsites
            .iter()
            .filter(|c| matches!(c.kind.as_str(), "function" | "async" | "timer"))
            .collect();
        if timed.is_empty() {
            return Err(QueryError::NoData {
                path: self.path.clone(),
                what: match options.run {
                    Some(id) => format!("run {id} recorded no calls of a timed callsite"),
                    None => format!(
                        "no calls of a timed callsite from {} to {}",
                        summary.since.as_deref().unwrap_or("the first window"),
                        summary.until.as_deref().unwrap_or("now")
                    ),
                },
            });
        }
        let width = bucket_width(&summary);
        let mut names: Vec<&str> = timed.iter().map(|c| c.name.as_str()).collect();
        names.dedup();
        let trends = names
            .iter()
            .map(|name| self.trend_of(name, range, super::Bucket::Micros(width * 1_000_000)))
            .collect::<Result<Vec<_>, _>>()?;
        let (since_us, until_us) = range.bounds();
        // Events by their run in a run's report, so that events whose clock is not the wall
        // clock (a test's mock clock) are counted with their run; by time otherwise.
        let filter = match &run_scope {
            Some(scope) => EventFilter {
                condition: self.run_condition("e", "start_us"),
                audit: "(run_id = ?1 AND ?2 = ?2 AND ?3 = ?3)",
                params: (scope.id, scope.from_us, scope.to_us),
            },
            None => EventFilter {
                condition: "(?1 = ?1 AND e.start_us >= ?2 AND e.start_us < ?3)".to_owned(),
                audit: "(?1 = ?1 AND timestamp_us >= ?2 AND timestamp_us < ?3)",
                params: (0, since_us, until_us),
            },
        };
        let overlaps = |a: &AlertRecord| {
            a.started.as_str() < summary.until.as_deref().unwrap_or("~")
                && a.resolved
                    .as_deref()
                    .is_none_or(|r| r >= summary.since.as_deref().unwrap_or(""))
        };
        let alerts = self.alerts(true)?.into_iter().filter(overlaps).collect();
        let comparison = self.against_previous(runs.last(), &scopes, options.rule)?;
        Ok(Report {
            store: self.path.display().to_string(),
            generated: rfc3339(now_us(now)),
            run: options.run,
            since: (since_us != i64::MIN).then(|| rfc3339(since_us)),
            until: (until_us != i64::MAX).then(|| rfc3339(until_us)),
            runs,
            slow: self.slowest(options.top, &filter)?,
            errors: self.errors(range)?,
            audit: self.audit_coverage(&options.file_field, &filter)?,
            backups: options.backups.as_deref().map(backup_status),
            summary,
            trends,
            alerts,
            comparison,
        })
    }

    /// The report's range, its runs, and with `--run` the run's scope.
    fn report_scope(
        &self,
        options: &ReportOptions,
        scopes: &[RunScope],
        now: SystemTime,
    ) -> Result<(TimeRange, Vec<RunRecord>, Option<RunScope>), QueryError> {
        if let Some(id) = options.run {
            let scope = self.run_scope(id)?;
            let record = self.run_record(&scope)?;
            let end_us = scope.to_us.min(now_us(now).saturating_add(1));
            let range = TimeRange {
                since: Some(at(scope.from_us)),
                until: Some(at(end_us)),
            };
            return Ok((range, vec![record], Some(scope)));
        }
        let (since, until) = options.range.bounds();
        let runs = scopes
            .iter()
            .filter(|s| s.from_us >= since && s.from_us < until)
            .map(|s| self.run_record(s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((options.range, runs, None))
    }

    /// The comparison of `last` (the report's last run) with the run before it, if there is
    /// one and either has calls.
    fn against_previous(
        &self,
        last: Option<&RunRecord>,
        scopes: &[RunScope],
        rule: VerdictRule,
    ) -> Result<Option<Comparison>, QueryError> {
        let Some(last) = last else {
            return Ok(None);
        };
        let Some(i) = scopes
            .iter()
            .position(|s| s.id == last.id)
            .filter(|&i| i > 0)
        else {
            return Ok(None);
        };
        match self.compare_scopes(&scopes[i - 1], &scopes[i], rule) {
            Ok(comparison) => Ok(Some(comparison)),
            Err(QueryError::NoData { .. }) => Ok(None),
            Err(other) => Err(other),
        }
    }

    /// The `top` longest events `filter` selects, longest first.
    fn slowest(&self, top: usize, filter: &EventFilter) -> Result<Vec<EventRecord>, QueryError> {
        let read = self.read();
        let sql = format!(
            "SELECT {} FROM events e JOIN callsites c ON c.id = e.callsite_id
             WHERE {} ORDER BY e.duration_ns DESC, e.id LIMIT ?4",
            super::EVENT_COLUMNS,
            filter.condition
        );
        let mut statement = self.conn.prepare(&sql).map_err(&read)?;
        let (a, b, c) = filter.params;
        let mut rows = statement
            .query((a, b, c, i64::try_from(top).unwrap_or(i64::MAX)))
            .map_err(&read)?;
        let mut events = Vec::new();
        while let Some(row) = rows.next().map_err(&read)? {
            events.push(self.event_record(row)?);
        }
        Ok(events)
    }

    fn audit_coverage(
        &self,
        field: &str,
        filter: &EventFilter,
    ) -> Result<AuditCoverage, QueryError> {
        let read = self.read();
        let path = format!("$.\"{}\"", field.replace('"', ""));
        let (a, b, c) = filter.params;
        let entries: i64 = self
            .conn
            .query_row(
                &format!("SELECT count(*) FROM audit WHERE {}", filter.audit),
                (a, b, c),
                |r| r.get(0),
            )
            .map_err(&read)?;
        let with_files = format!(
            "WITH files AS (
                 SELECT DISTINCT json_extract(e.fields, ?4) AS file FROM events e
                 WHERE {} AND e.fields IS NOT NULL AND json_extract(e.fields, ?4) IS NOT NULL),
             named AS (
                 SELECT j.value AS file FROM audit a, json_each(a.inputs) j
                 UNION SELECT j.value FROM audit a, json_each(a.outputs) j)",
            filter.condition
        );
        let (files, with_audit): (i64, i64) = self
            .conn
            .query_row(
                &format!(
                    "{with_files} SELECT count(*), count(*) FILTER (WHERE file IN (SELECT file FROM named))
                     FROM files"
                ),
                (a, b, c, &path),
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(&read)?;
        let mut statement = self
            .conn
            .prepare(&format!(
                "{with_files} SELECT CAST(file AS TEXT) FROM files
                 WHERE file NOT IN (SELECT file FROM named) ORDER BY file LIMIT 20"
            ))
            .map_err(&read)?;
        let without_audit = statement
            .query_map((a, b, c, &path), |r| r.get(0))
            .map_err(&read)?
            .collect::<Result<_, _>>()
            .map_err(&read)?;
        Ok(AuditCoverage {
            field: field.to_owned(),
            entries: u64::try_from(entries).unwrap_or(0),
            files: u64::try_from(files).unwrap_or(0),
            with_audit: u64::try_from(with_audit).unwrap_or(0),
            without_audit,
        })
    }
}

/// Which events and audit entries a report counts: `condition` over `events e` and `audit`
/// over `audit`, each with the parameters `?1` to `?3`.
struct EventFilter {
    condition: String,
    audit: &'static str,
    params: (i64, i64, i64),
}

fn now_us(now: SystemTime) -> i64 {
    crate::sqlite::micros(now)
}

fn at(us: i64) -> SystemTime {
    let offset = std::time::Duration::from_micros(us.unsigned_abs());
    if us >= 0 {
        SystemTime::UNIX_EPOCH + offset
    } else {
        SystemTime::UNIX_EPOCH - offset
    }
}

/// The narrowest width of [`WIDTHS`] that puts the summary's windows in at most 60 buckets.
fn bucket_width(summary: &Summary) -> i64 {
    let span = summary.seconds.unwrap_or(1.0).max(1.0);
    WIDTHS
        .iter()
        .copied()
        .find(|&w| span / w as f64 <= 60.0)
        .unwrap_or(30 * 86_400)
}

fn backup_status(dir: &Path) -> BackupStatus {
    let mut status = BackupStatus {
        dir: dir.display().to_string(),
        count: 0,
        latest: None,
        manifest: None,
        problem: None,
    };
    match scheduled_backups(dir) {
        Ok(found) => {
            status.count = found.len();
            if let Some(newest) = found.last() {
                status.latest = newest.file_name().map(|n| n.to_string_lossy().into_owned());
                let manifest = newest.join(MANIFEST_FILE);
                match std::fs::read(&manifest)
                    .map_err(|e| e.to_string())
                    .and_then(|bytes| serde_json::from_slice(&bytes).map_err(|e| e.to_string()))
                {
                    Ok(m) => status.manifest = Some(m),
                    Err(e) => {
                        status.problem = Some(format!("cannot read {}: {e}", manifest.display()));
                    }
                }
            }
        }
        Err(e) => status.problem = Some(format!("cannot list {}: {e}", dir.display())),
    }
    status
}

/// A duration for people: `850 ns`, `12.3 µs`, `1.2 ms`, `2.50 s`.
fn human(ns: u64) -> String {
    let v = ns as f64;
    if v < 1e3 {
        format!("{ns} ns")
    } else if v < 1e6 {
        format!("{:.1} µs", v / 1e3)
    } else if v < 1e9 {
        format!("{:.1} ms", v / 1e6)
    } else {
        format!("{:.2} s", v / 1e9)
    }
}

fn percent(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

fn change(ratio: Option<f64>) -> String {
    ratio.map_or_else(|| "-".to_owned(), |r| format!("{:+.1}%", r * 100.0))
}

/// A Markdown table cell: `|` escaped, line breaks as spaces.
fn cell(text: &str) -> String {
    text.replace('|', "\\|").replace(['\n', '\r'], " ")
}

fn row(cells: &[String]) -> String {
    let cells: Vec<String> = cells.iter().map(|c| cell(c)).collect();
    format!("| {} |\n", cells.join(" | "))
}

fn header(names: &[&str], right: &[bool]) -> String {
    let mut text = format!("| {} |\n|", names.join(" | "));
    for &r in right {
        text.push_str(if r { " ---: |" } else { " --- |" });
    }
    text.push('\n');
    text
}

fn fields_text(fields: &serde_json::Value) -> String {
    match fields {
        serde_json::Value::Object(map) if !map.is_empty() => map
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}={s}"),
                other => format!("{k}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" "),
        _ => "-".to_owned(),
    }
}

impl Report {
    fn scope(&self) -> String {
        match self.run {
            Some(id) => format!("run {id}"),
            None => format!(
                "{} to {}",
                self.since.as_deref().unwrap_or("the first record"),
                self.until.as_deref().unwrap_or("now")
            ),
        }
    }

    /// The sections as Markdown, the trends as tables; every figure is the store's.
    #[must_use]
    pub fn to_markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# Instrument report: {}\n", self.scope());
        let _ = writeln!(
            md,
            "Store `{}`, generated {}.\n",
            self.store, self.generated
        );
        for section in [
            self.runs_md(),
            self.throughput_md(),
            self.trends_md(),
            self.slow_md(),
            self.errors_md(),
            self.alerts_md(),
            self.audit_md(),
            self.backups_md(),
            self.comparison_md(),
        ] {
            md.push_str(&section);
            md.push('\n');
        }
        md
    }

    fn runs_md(&self) -> String {
        let mut md = String::from("## Runs\n\n");
        if self.runs.is_empty() {
            md.push_str("No run started in the range.\n");
            return md;
        }
        md.push_str(&header(
            &[
                "Run",
                "Process",
                "Host",
                "Version",
                "Started",
                "Ended",
                "Duration",
                "Calls",
                "Errors",
                "Audit entries",
            ],
            &[
                true, false, false, false, false, false, true, true, true, true,
            ],
        ));
        for r in &self.runs {
            md.push_str(&row(&[
                r.id.to_string(),
                format!("{} ({})", r.process_name, r.pid),
                r.hostname.clone().unwrap_or_else(|| "-".to_owned()),
                r.program_version.clone().unwrap_or_else(|| "-".to_owned()),
                r.started.clone(),
                r.ended.clone().unwrap_or_else(|| "-".to_owned()),
                r.duration_ns
                    .map_or_else(|| "-".to_owned(), |d| human(u64::try_from(d).unwrap_or(0))),
                r.calls.to_string(),
                r.errors.to_string(),
                r.audit_entries.to_string(),
            ]));
        }
        md
    }

    fn throughput_md(&self) -> String {
        let mut md = String::from("## Throughput and latency per stage\n\n");
        md.push_str(&header(
            &[
                "Callsite",
                "Calls",
                "Calls/s",
                "Errors",
                "Error ratio",
                "p50",
                "p90",
                "p99",
                "Max",
            ],
            &[false, true, true, true, true, true, true, true, true],
        ));
        for c in &self.summary.callsites {
            md.push_str(&row(&[
                c.name.clone(),
                c.calls.to_string(),
                c.calls_per_second
                    .map_or_else(|| "-".to_owned(), |r| format!("{r:.2}")),
                c.errors.saturating_add(c.panics).to_string(),
                percent(c.error_ratio),
                human(c.p50_ns),
                human(c.p90_ns),
                human(c.p99_ns),
                human(c.max_ns),
            ]));
        }
        md
    }

    fn trends_md(&self) -> String {
        let mut md = String::from("## Trends\n\n");
        let width = self.trends.first().map_or(0, |t| t.bucket_seconds);
        let _ = writeln!(md, "Buckets of {width} s.\n");
        for trend in &self.trends {
            let _ = writeln!(md, "### {}\n", trend.callsite);
            md.push_str(&header(
                &["Bucket start", "Calls", "Error ratio", "p50", "p99"],
                &[false, true, true, true, true],
            ));
            for b in &trend.buckets {
                md.push_str(&row(&[
                    b.start.clone(),
                    b.calls.to_string(),
                    percent(b.error_ratio),
                    human(b.p50_ns),
                    human(b.p99_ns),
                ]));
            }
            md.push('\n');
        }
        md
    }

    fn slow_md(&self) -> String {
        let mut md = String::from("## Slowest inputs\n\n");
        if self.slow.is_empty() {
            md.push_str("No stored calls in the range.\n");
            return md;
        }
        md.push_str(&header(
            &["Duration", "Callsite", "Outcome", "Start", "Arguments"],
            &[true, false, false, false, false],
        ));
        for e in &self.slow {
            md.push_str(&row(&[
                human(u64::try_from(e.duration_ns).unwrap_or(0)),
                e.callsite.clone(),
                e.outcome.clone(),
                e.start.clone(),
                fields_text(&e.fields),
            ]));
        }
        md
    }

    fn errors_md(&self) -> String {
        let mut md = String::from("## Error kinds\n\n");
        if self.errors.is_empty() {
            md.push_str("No failed calls in the range.\n");
            return md;
        }
        md.push_str(&header(
            &["Count", "Callsite", "Outcome", "Kind", "Latest"],
            &[true, false, false, false, false],
        ));
        for g in &self.errors {
            md.push_str(&row(&[
                g.count.to_string(),
                g.callsite.clone(),
                g.outcome.clone(),
                g.kind.clone().unwrap_or_else(|| "-".to_owned()),
                g.latest
                    .as_ref()
                    .map_or_else(|| "-".to_owned(), |e| e.start.clone()),
            ]));
        }
        md
    }

    fn alerts_md(&self) -> String {
        let mut md = String::from("## Alerts\n\n");
        if self.alerts.is_empty() {
            md.push_str("No alert was active in the range.\n");
            return md;
        }
        md.push_str(&header(
            &[
                "Rule",
                "Severity",
                "State",
                "Started",
                "Resolved",
                "Acknowledged by",
            ],
            &[false; 6],
        ));
        for a in &self.alerts {
            md.push_str(&row(&[
                a.rule.clone(),
                a.severity.clone(),
                a.state.clone(),
                a.started.clone(),
                a.resolved.clone().unwrap_or_else(|| "-".to_owned()),
                match (&a.acked_by, &a.acked) {
                    (Some(by), Some(at)) => format!("{by} at {at}"),
                    _ => "-".to_owned(),
                },
            ]));
        }
        let acked = self.alerts.iter().filter(|a| a.acked.is_some()).count();
        let _ = writeln!(md, "\n{} alerts, {acked} acknowledged.", self.alerts.len());
        md
    }

    fn audit_md(&self) -> String {
        let a = &self.audit;
        let mut md = String::from("## Audit coverage\n\n");
        let _ = writeln!(md, "Audit entries in the range: {}.\n", a.entries);
        let _ = writeln!(
            md,
            "Files (argument `{}` of the stored calls): {}; with an audit entry: {}; without: {}.",
            a.field,
            a.files,
            a.with_audit,
            a.files.saturating_sub(a.with_audit)
        );
        for file in &a.without_audit {
            let _ = writeln!(md, "- without an audit entry: `{file}`");
        }
        md
    }

    fn backups_md(&self) -> String {
        let mut md = String::from("## Backups\n\n");
        let Some(b) = &self.backups else {
            md.push_str("No backup directory given.\n");
            return md;
        };
        let _ = writeln!(md, "Scheduled backups in `{}`: {}.", b.dir, b.count);
        if let Some(m) = &b.manifest {
            let _ = writeln!(
                md,
                "Latest: `{}`, made {}, {} bytes, {} audit rows.",
                b.latest.as_deref().unwrap_or("-"),
                rfc3339(m.created_us),
                m.bytes,
                m.audit_rows
            );
        }
        if let Some(problem) = &b.problem {
            let _ = writeln!(md, "Problem: {problem}.");
        }
        md
    }

    fn comparison_md(&self) -> String {
        let mut md = String::from("## Against the previous run\n\n");
        let Some(c) = &self.comparison else {
            md.push_str("No previous run to compare with.\n");
            return md;
        };
        let _ = writeln!(
            md,
            "Run {} against run {}: {} ({} regressed, {} improved).\n",
            c.b.id,
            c.a.id,
            c.verdict.as_str(),
            c.regressed,
            c.improved
        );
        md.push_str(&header(
            &[
                "Callsite",
                "Calls A",
                "Calls B",
                "p50 A",
                "p50 B",
                "p50 change",
                "p99 change",
                "Error ratio change",
                "Verdict",
            ],
            &[false, true, true, true, true, true, true, true, false],
        ));
        for s in &c.callsites {
            let calls = |side: &Option<super::compare::Side>| {
                side.as_ref()
                    .map_or_else(|| "-".to_owned(), |s| s.calls.to_string())
            };
            let p50 = |side: &Option<super::compare::Side>| {
                side.as_ref()
                    .map_or_else(|| "-".to_owned(), |s| human(s.p50_ns))
            };
            md.push_str(&row(&[
                s.name.clone(),
                calls(&s.a),
                calls(&s.b),
                p50(&s.a),
                p50(&s.b),
                change(s.p50_change),
                change(s.p99_change),
                s.error_ratio_change
                    .map_or_else(|| "-".to_owned(), |d| format!("{:+.2} points", d * 100.0)),
                s.verdict.as_str().to_owned(),
            ]));
        }
        md
    }

    /// One HTML file: the Markdown's sections as HTML tables, and the trends as inline SVG
    /// charts (p50, p99, error ratio and calls per bucket, one line per callsite).
    #[must_use]
    pub fn to_html(&self) -> String {
        let mut html =
            String::from("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
        let _ = writeln!(
            html,
            "<title>Instrument report: {}</title>",
            escape(&self.scope())
        );
        html.push_str(
            "<style>body{font-family:sans-serif;margin:2em;max-width:70em}\
             table{border-collapse:collapse;margin:0.5em 0}\
             td,th{border:1px solid #ccc;padding:0.2em 0.6em;text-align:left}\
             td.n{text-align:right}figure{margin:1em 0}</style>\n</head>\n<body>\n",
        );
        let _ = writeln!(
            html,
            "<h1>Instrument report: {}</h1>",
            escape(&self.scope())
        );
        let _ = writeln!(
            html,
            "<p>Store <code>{}</code>, generated {}.</p>",
            escape(&self.store),
            escape(&self.generated)
        );
        html.push_str("<h2>Charts</h2>\n");
        for (title, chart) in self.charts() {
            let _ = writeln!(
                html,
                "<figure class=\"chart\">{chart}<figcaption>{}</figcaption></figure>",
                escape(&title)
            );
        }
        // The tables, from the Markdown: one renderer for the figures.
        html.push_str(&markdown_to_html(&self.to_markdown()));
        html.push_str("</body>\n</html>\n");
        html
    }

    /// `(caption, svg)` for each chart.
    fn charts(&self) -> Vec<(String, String)> {
        let series =
            |value: &dyn Fn(&super::TrendBucket) -> f64| -> Vec<(String, Vec<(f64, f64)>)> {
                self.trends
                    .iter()
                    .map(|t| {
                        (
                            t.callsite.clone(),
                            t.buckets
                                .iter()
                                .map(|b| (b.start_us as f64 / 1e6, value(b)))
                                .collect(),
                        )
                    })
                    .collect()
            };
        let width = self.trends.first().map_or(1, |t| t.bucket_seconds);
        [
            ("Median latency (ms)", series(&|b| b.p50_ns as f64 / 1e6)),
            ("p99 latency (ms)", series(&|b| b.p99_ns as f64 / 1e6)),
            ("Error ratio (%)", series(&|b| b.error_ratio * 100.0)),
            ("Calls per bucket", series(&|b| b.calls as f64)),
        ]
        .into_iter()
        .map(|(title, data)| {
            let caption = format!("{title}, per {width} s bucket");
            let svg = line_chart(title, &data).unwrap_or_else(|error| {
                format!("<p>the chart could not be drawn: {}</p>", escape(&error))
            });
            (caption, svg)
        })
        .collect()
    }
}

/// One line per series, x in seconds since the epoch (labelled as UTC times of day).
fn line_chart(title: &str, series: &[(String, Vec<(f64, f64)>)]) -> Result<String, String> {
    let points = series.iter().flat_map(|(_, p)| p.iter());
    let (mut x0, mut x1, mut y1) = (f64::MAX, f64::MIN, 0.0_f64);
    for &(x, y) in points {
        x0 = x0.min(x);
        x1 = x1.max(x);
        y1 = y1.max(y);
    }
    if x0 > x1 {
        return Err("no data".to_owned());
    }
    if x1 - x0 < 1.0 {
        x1 = x0 + 1.0;
    }
    let y1 = if y1 > 0.0 { y1 * 1.1 } else { 1.0 };
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (820, 320)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(32)
            .y_label_area_size(64)
            .build_cartesian_2d(x0..x1, 0.0..y1)
            .map_err(|e| e.to_string())?;
        let span = x1 - x0;
        chart
            .configure_mesh()
            .x_labels(6)
            .y_labels(6)
            .x_label_formatter(&|x| clock(*x, span))
            .draw()
            .map_err(|e| e.to_string())?;
        for (i, (name, data)) in series.iter().enumerate() {
            let color = Palette99::pick(i).to_rgba();
            chart
                .draw_series(LineSeries::new(data.iter().copied(), color.stroke_width(2)))
                .map_err(|e| e.to_string())?
                .label(name.as_str())
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart
                .draw_series(data.iter().map(|&p| Circle::new(p, 3, color.filled())))
                .map_err(|e| e.to_string())?;
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(svg)
}

/// A UTC time of day (`HH:MM:SS`), or a date for a span of days.
fn clock(seconds: f64, span: f64) -> String {
    let text = rfc3339((seconds * 1e6) as i64);
    if span >= 2.0 * 86_400.0 {
        text[..10].to_owned()
    } else {
        text[11..19].to_owned()
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The subset of Markdown that [`Report::to_markdown`] writes (headings, paragraphs, lists,
/// tables, code spans) as HTML.
fn markdown_to_html(md: &str) -> String {
    let inline = |text: &str| {
        let escaped = escape(text);
        let mut out = String::new();
        for (i, part) in escaped.split('`').enumerate() {
            if i % 2 == 1 {
                let _ = write!(out, "<code>{part}</code>");
            } else {
                out.push_str(part);
            }
        }
        out
    };
    let mut html = String::new();
    let mut lines = md.lines().peekable();
    while let Some(line) = lines.next() {
        if let Some(h) = line.strip_prefix("### ") {
            let _ = writeln!(html, "<h3>{}</h3>", inline(h));
        } else if let Some(h) = line.strip_prefix("## ") {
            let _ = writeln!(html, "<h2>{}</h2>", inline(h));
        } else if line.starts_with("# ") {
            // The title is written above the charts.
        } else if let Some(item) = line.strip_prefix("- ") {
            let _ = writeln!(html, "<ul><li>{}</li></ul>", inline(item));
        } else if line.starts_with('|') {
            let split = |l: &str| -> Vec<String> {
                l.trim()
                    .trim_start_matches('|')
                    .trim_end_matches('|')
                    .split(" | ")
                    .map(|c| c.trim().replace("\\|", "|"))
                    .collect()
            };
            let heads = split(line);
            let aligns: Vec<bool> = lines
                .next()
                .map(|l| split(l).iter().map(|c| c.ends_with(':')).collect())
                .unwrap_or_default();
            html.push_str("<table>\n<tr>");
            for h in &heads {
                let _ = write!(html, "<th>{}</th>", inline(h));
            }
            html.push_str("</tr>\n");
            while let Some(next) = lines.peek().filter(|l| l.starts_with('|')) {
                html.push_str("<tr>");
                for (i, c) in split(next).iter().enumerate() {
                    let class = if aligns.get(i).copied().unwrap_or(false) {
                        " class=\"n\""
                    } else {
                        ""
                    };
                    let _ = write!(html, "<td{class}>{}</td>", inline(c));
                }
                html.push_str("</tr>\n");
                lines.next();
            }
            html.push_str("</table>\n");
        } else if !line.trim().is_empty() {
            let _ = writeln!(html, "<p>{}</p>", inline(line));
        }
    }
    html
}
