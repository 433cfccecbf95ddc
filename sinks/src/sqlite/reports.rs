//! Scheduled reports: the `SqliteSink` writes an HTML report of the last interval into a
//! directory on a schedule, on a thread of its own, keeping the newest few (feature
//! `reports`).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::query::report::ReportOptions;
use super::query::{QueryError, Store, TimeRange, rfc3339};

/// When and where the sink writes reports, and how many it keeps.
///
/// ```
/// use std::time::Duration;
/// use instrument_sinks::sqlite::ReportSchedule;
///
/// let schedule = ReportSchedule::new("./instrument-data").keep(14);
/// assert_eq!(schedule.interval_length(), Duration::from_secs(24 * 3600));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReportSchedule {
    dir: PathBuf,
    interval: Duration,
    keep: usize,
    backups: Option<PathBuf>,
}

impl ReportSchedule {
    /// Reports into `dir` (created if missing), daily, keeping 7.
    #[must_use]
    pub fn new(dir: impl AsRef<Path>) -> Self {
        ReportSchedule {
            dir: dir.as_ref().to_owned(),
            interval: Duration::from_secs(24 * 3600),
            keep: 7,
            backups: None,
        }
    }

    /// The time between two reports, and the range each covers (default 24 hours). The first
    /// is written one interval after the sink starts.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_secs(1));
        self
    }

    /// How many reports to keep (default 7, at least 1); older ones are removed after a new
    /// one is written.
    #[must_use]
    pub fn keep(mut self, keep: usize) -> Self {
        self.keep = keep.max(1);
        self
    }

    /// The scheduled backups' directory, for the report's backup section.
    #[must_use]
    pub fn backups(mut self, dir: impl AsRef<Path>) -> Self {
        self.backups = Some(dir.as_ref().to_owned());
        self
    }

    /// The directory reports are written into.
    #[must_use]
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The time between two reports.
    #[must_use]
    pub fn interval_length(&self) -> Duration {
        self.interval
    }

    /// How many reports are kept.
    #[must_use]
    pub fn keep_count(&self) -> usize {
        self.keep
    }

    /// The file name of a report made at `now`: `report-YYYYMMDD.html` for daily (or longer)
    /// intervals, `report-YYYYMMDDTHHMMSSZ.html` for shorter ones (UTC).
    fn file_name(&self, now: SystemTime) -> String {
        let text = rfc3339(super::micros(now));
        let digits = |range: std::ops::Range<usize>| text[range].replace(['-', ':'], "");
        if self.interval >= Duration::from_secs(24 * 3600) {
            format!("{PREFIX}{}.html", digits(0..10))
        } else {
            format!("{PREFIX}{}T{}Z.html", digits(0..10), digits(11..19))
        }
    }
}

const PREFIX: &str = "report-";

/// The sink's scheduled reports, driven by its ticks.
#[derive(Debug)]
pub(crate) struct Reports {
    schedule: ReportSchedule,
    next: Option<SystemTime>,
    running: Option<JoinHandle<Result<(), String>>>,
    problem: Option<String>,
}

impl Reports {
    pub(crate) fn new(schedule: ReportSchedule) -> Self {
        Reports {
            schedule,
            next: None,
            running: None,
            problem: None,
        }
    }

    /// Why the last report could not be written, until one is.
    pub(crate) fn problem(&self) -> Option<&str> {
        self.problem.as_deref()
    }

    /// Collects a finished report, and starts the next when it is due.
    pub(crate) fn tick(&mut self, db: &Path, now: SystemTime) {
        if self.running.as_ref().is_some_and(JoinHandle::is_finished)
            && let Some(handle) = self.running.take()
        {
            self.problem = match handle.join() {
                Ok(Ok(())) => None,
                Ok(Err(problem)) => Some(problem),
                Err(_) => Some("the report thread panicked".to_owned()),
            };
        }
        let next = *self.next.get_or_insert(now + self.schedule.interval);
        if now < next || self.running.is_some() {
            return;
        }
        self.next = Some(now + self.schedule.interval);
        let (schedule, db) = (self.schedule.clone(), db.to_owned());
        let spawned = std::thread::Builder::new()
            .name("instrument-sqlite-report".to_owned())
            .spawn(move || write_report(&schedule, &db, now));
        match spawned {
            Ok(handle) => self.running = Some(handle),
            Err(e) => self.problem = Some(format!("cannot start the report thread: {e}")),
        }
    }
}

impl Drop for Reports {
    fn drop(&mut self) {
        if let Some(handle) = self.running.take() {
            let _ = handle.join();
        }
    }
}

/// Writes the report of the interval before `now` into the schedule's directory, then removes
/// the oldest beyond its `keep`. A range without calls writes nothing.
fn write_report(schedule: &ReportSchedule, db: &Path, now: SystemTime) -> Result<(), String> {
    let dir = &schedule.dir;
    let failed = |what: &str, path: &Path, e: &dyn std::fmt::Display| {
        format!("cannot {what} {}: {e}", path.display())
    };
    let options = ReportOptions {
        range: TimeRange::since(now.checked_sub(schedule.interval).unwrap_or(now)),
        backups: schedule.backups.clone(),
        ..ReportOptions::default()
    };
    let store = Store::open(db).map_err(|e| failed("open", db, &e))?;
    let report = match store.report(&options, now) {
        Ok(report) => report,
        Err(QueryError::NoData { .. }) => return Ok(()),
        Err(e) => return Err(failed("make a report of", db, &e)),
    };
    fs::create_dir_all(dir).map_err(|e| failed("create", dir, &e))?;
    let path = dir.join(schedule.file_name(now));
    let partial = dir.join(format!(".{}.partial", schedule.file_name(now)));
    let written = fs::write(&partial, report.to_html())
        .and_then(|()| fs::File::open(&partial)?.sync_all())
        .and_then(|()| fs::rename(&partial, &path));
    if let Err(e) = written {
        let _ = fs::remove_file(&partial);
        return Err(failed("write", &path, &e));
    }
    remove_old(dir, schedule.keep).map_err(|e| failed("remove old reports in", dir, &e))
}

/// Removes the oldest `report-*.html` files beyond `keep`, by name.
fn remove_old(dir: &Path, keep: usize) -> io::Result<()> {
    let mut reports: Vec<PathBuf> = fs::read_dir(dir)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                n.starts_with(PREFIX) && Path::new(n).extension().is_some_and(|e| e == "html")
            })
        })
        .collect();
    reports.sort();
    let excess = reports.len().saturating_sub(keep);
    for old in reports.into_iter().take(excess) {
        fs::remove_file(old)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_dates_for_daily_reports_and_times_for_shorter_ones() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_secs(1_764_083_723);
        let daily = ReportSchedule::new("d");
        assert_eq!(daily.file_name(at), "report-20251125.html");
        let hourly = ReportSchedule::new("d").interval(Duration::from_secs(3600));
        assert_eq!(hourly.file_name(at), "report-20251125T151523Z.html");
    }

    #[test]
    fn only_the_newest_reports_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "report-20250101.html",
            "report-20250103.html",
            "report-20250102.html",
            "backup-x",
            "notes.html",
        ] {
            fs::write(dir.path().join(name), "x").unwrap();
        }
        remove_old(dir.path(), 2).unwrap();
        let mut left: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "backup-x",
                "notes.html",
                "report-20250102.html",
                "report-20250103.html"
            ]
        );
    }
}
