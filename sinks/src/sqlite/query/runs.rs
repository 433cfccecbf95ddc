//! Runs: each install of a pipeline with a `SqliteSink` is a row of `runs`, and (from schema
//! version 5) every window and event names the run that wrote it.
//!
//! # Attribution
//! A window or event belongs to the run its `run_id` names. Rows written before schema version
//! 4 have no `run_id`; they are attributed by time, to the run that started last at or before
//! their start (`window_start_us`, `start_us`) and before the next run started. Two runs that
//! wrote one store at the same time are told apart only by `run_id`.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;

use serde::Serialize;
use serde_json::Value;

use super::{Acc, QueryError, Store, count, rfc3339};

/// One run, from [`Store::runs`] and [`Store::run`].
#[derive(Clone, Debug, Serialize)]
pub struct RunRecord {
    /// Its row id in `runs`: the `RUN` of `instrumentctl compare` and `report --run`.
    pub id: i64,
    /// The process id.
    pub pid: i64,
    /// The executable's name.
    pub process_name: String,
    /// The host, when it could be read.
    pub hostname: Option<String>,
    /// When the pipeline was installed.
    pub started: String,
    /// When its sink shut down; `null` while it runs, or if it ended without shutting down
    /// (a crash, a kill) or was written before schema version 5.
    pub ended: Option<String>,
    /// The end of its last stored window: its last sign of life.
    pub last_window_end: Option<String>,
    /// From `started` to `ended`, or to `last_window_end` when it has no end; `null` when it
    /// has neither.
    pub duration_ns: Option<i64>,
    /// The program's version, when the host gave it.
    pub program_version: Option<String>,
    /// SHA-256 of the host's configuration, when the host gave it.
    pub config_digest: Option<String>,
    /// The pipeline's aggregation window.
    pub window_ns: Option<i64>,
    /// Calls of its timed callsites (functions, async functions, timers), whatever their
    /// outcome: exact sums of its windows.
    pub calls: u64,
    /// Calls that failed (`error` or `panic`).
    pub errors: u64,
    /// `errors / calls`, 0 when it made none.
    pub error_ratio: f64,
    /// Audit entries it wrote.
    pub audit_entries: u64,
    /// Distinct inputs its audit entries name: the files of a pipeline that audits each file
    /// it reads.
    pub audited_inputs: u64,
}

/// Where a run's rows are: see the [module docs](self).
#[derive(Clone, Copy, Debug)]
pub(super) struct RunScope {
    /// The run.
    pub(super) id: i64,
    /// Its start: rows without a run from here on are its own.
    pub(super) from_us: i64,
    /// The next run's start, or `i64::MAX`.
    pub(super) to_us: i64,
}

/// Per callsite calls of one run: `(name, module, kind, labels)` to aggregates.
pub(super) type CallsiteStats = BTreeMap<(String, String, String, String), Acc>;

impl Store {
    /// Every run, oldest first.
    ///
    /// # Errors
    /// [`QueryError::Read`].
    pub fn runs(&self) -> Result<Vec<RunRecord>, QueryError> {
        let _tx = self.snapshot()?;
        let scopes = self.run_scopes()?;
        scopes.iter().map(|scope| self.run_record(scope)).collect()
    }

    /// The run with id `id`.
    ///
    /// # Errors
    /// [`QueryError::UnknownRun`] when the store has no such run, [`QueryError::Read`].
    pub fn run(&self, id: i64) -> Result<RunRecord, QueryError> {
        let _tx = self.snapshot()?;
        let scope = self.run_scope(id)?;
        self.run_record(&scope)
    }

    /// Every run's scope, by start.
    pub(super) fn run_scopes(&self) -> Result<Vec<RunScope>, QueryError> {
        let read = self.read();
        let mut statement = self
            .conn
            .prepare_cached("SELECT id, started_us FROM runs ORDER BY started_us, id")
            .map_err(&read)?;
        let starts: Vec<(i64, i64)> = statement
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(&read)?
            .collect::<Result<_, _>>()
            .map_err(&read)?;
        Ok(starts
            .iter()
            .enumerate()
            .map(|(i, &(id, from_us))| RunScope {
                id,
                from_us,
                to_us: starts.get(i + 1).map_or(i64::MAX, |next| next.1),
            })
            .collect())
    }

    /// The scope of run `id`.
    pub(super) fn run_scope(&self, id: i64) -> Result<RunScope, QueryError> {
        self.run_scopes()?
            .into_iter()
            .find(|scope| scope.id == id)
            .ok_or_else(|| QueryError::UnknownRun {
                path: self.path.clone(),
                id,
            })
    }

    /// The SQL condition selecting the rows of `?1`'s run from a table aliased `alias` whose
    /// time column is `time`; `?2` and `?3` are [`RunScope::from_us`] and
    /// [`RunScope::to_us`].
    pub(super) fn run_condition(&self, alias: &str, time: &str) -> String {
        let by_time = format!("{alias}.{time} >= ?2 AND {alias}.{time} < ?3");
        if self.schema_version >= 4 {
            format!("({alias}.run_id = ?1 OR ({alias}.run_id IS NULL AND {by_time}))")
        } else {
            format!("(?1 = ?1 AND {by_time})")
        }
    }

    /// Per callsite aggregates of the timed callsites of run `scope`, from its windows.
    pub(super) fn run_callsites(&self, scope: &RunScope) -> Result<CallsiteStats, QueryError> {
        let read = self.read();
        let sql = format!(
            "SELECT w.id, c.name, c.module, c.kind, c.labels, c.unit, w.outcome, w.count,
                    w.timed, w.dropped, w.histogram
             FROM windows w JOIN callsites c ON c.id = w.callsite_id
             WHERE {} AND c.kind IN ('function', 'async', 'timer')
             ORDER BY w.id",
            self.run_condition("w", "window_start_us")
        );
        let mut statement = self.conn.prepare(&sql).map_err(&read)?;
        let mut rows = statement
            .query((scope.id, scope.from_us, scope.to_us))
            .map_err(&read)?;
        let mut callsites = CallsiteStats::new();
        while let Some(row) = rows.next().map_err(&read)? {
            let id: i64 = row.get(0).map_err(&read)?;
            let key = (
                row.get(1).map_err(&read)?,
                row.get(2).map_err(&read)?,
                row.get(3).map_err(&read)?,
                row.get(4).map_err(&read)?,
            );
            let outcome: String = row.get(6).map_err(&read)?;
            let slot = outcome_slot(&outcome)
                .ok_or_else(|| self.bad_row("windows", id, format!("outcome `{outcome}`")))?;
            let histogram = self.histogram(id, row.get_ref(10).map_err(&read)?)?;
            let acc = match callsites.entry(key) {
                Entry::Occupied(entry) => entry.into_mut(),
                Entry::Vacant(entry) => {
                    let labels: Value = self.json_object("windows", id, &entry.key().3)?;
                    entry.insert(Acc {
                        unit: row.get(5).map_err(&read)?,
                        labels,
                        ..Acc::default()
                    })
                }
            };
            acc.outcomes[slot] = acc.outcomes[slot].saturating_add(count(row, 7, &read)?);
            acc.timed = acc.timed.saturating_add(count(row, 8, &read)?);
            acc.dropped = acc.dropped.saturating_add(count(row, 9, &read)?);
            acc.histogram.merge(&histogram);
        }
        Ok(callsites)
    }

    pub(super) fn run_record(&self, scope: &RunScope) -> Result<RunRecord, QueryError> {
        let read = self.read();
        let labels = if self.schema_version >= 4 {
            "ended_us, program_version, config_digest, window_ns"
        } else {
            "NULL, NULL, NULL, NULL"
        };
        let sql = format!(
            "SELECT id, pid, process_name, hostname, started_us, {labels} FROM runs WHERE id = ?1"
        );
        let mut record = self
            .conn
            .query_row(&sql, [scope.id], |row| {
                Ok(RunRecord {
                    id: row.get(0)?,
                    pid: row.get(1)?,
                    process_name: row.get(2)?,
                    hostname: row.get(3)?,
                    started: rfc3339(row.get(4)?),
                    ended: row.get::<_, Option<i64>>(5)?.map(rfc3339),
                    last_window_end: None,
                    duration_ns: row
                        .get::<_, Option<i64>>(5)?
                        .map(|end| end.saturating_sub(row.get::<_, i64>(4).unwrap_or(end))),
                    program_version: row.get(6)?,
                    config_digest: row.get(7)?,
                    window_ns: row.get(8)?,
                    calls: 0,
                    errors: 0,
                    error_ratio: 0.0,
                    audit_entries: 0,
                    audited_inputs: 0,
                })
            })
            .map_err(&read)?;
        let sql = format!(
            "SELECT sum(w.count),
                    sum(CASE WHEN w.outcome IN ('error', 'panic') THEN w.count ELSE 0 END),
                    max(w.window_end_us)
             FROM windows w JOIN callsites c ON c.id = w.callsite_id
             WHERE {} AND c.kind IN ('function', 'async', 'timer')",
            self.run_condition("w", "window_start_us")
        );
        let (calls, errors, last): (Option<i64>, Option<i64>, Option<i64>) = self
            .conn
            .query_row(&sql, (scope.id, scope.from_us, scope.to_us), |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .map_err(&read)?;
        record.calls = calls.map_or(0, |c| u64::try_from(c).unwrap_or(0));
        record.errors = errors.map_or(0, |c| u64::try_from(c).unwrap_or(0));
        if record.calls > 0 {
            record.error_ratio = record.errors as f64 / record.calls as f64;
        }
        record.last_window_end = last.map(rfc3339);
        if record.duration_ns.is_none() {
            record.duration_ns = last.map(|end| end.saturating_sub(scope.from_us));
        }
        record.duration_ns = record.duration_ns.map(|us| us.saturating_mul(1000));
        let (entries, inputs): (i64, i64) = self
            .conn
            .query_row(
                "SELECT (SELECT count(*) FROM audit WHERE run_id = ?1),
                        (SELECT count(DISTINCT j.value) FROM audit a, json_each(a.inputs) j
                         WHERE a.run_id = ?1)",
                [scope.id],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .map_err(&read)?;
        record.audit_entries = u64::try_from(entries).unwrap_or(0);
        record.audited_inputs = u64::try_from(inputs).unwrap_or(0);
        Ok(record)
    }
}

/// The index of an outcome in [`Acc::outcomes`].
pub(super) fn outcome_slot(outcome: &str) -> Option<usize> {
    match outcome {
        "ok" => Some(0),
        "error" => Some(1),
        "panic" => Some(2),
        "cancelled" => Some(3),
        _ => None,
    }
}
