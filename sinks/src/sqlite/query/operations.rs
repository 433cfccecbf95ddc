//! Health and alert history: what the health registry and the alert engine published, as the
//! `SQLite` sink stored it (`health` and `alerts` tables), for `instrumentctl health` and
//! `instrumentctl alerts`.

use rusqlite::Row;
use serde::Serialize;
use serde_json::Value;

use super::{QueryError, Store, TimeRange, rfc3339};

/// One stored health change.
#[derive(Clone, Debug, Serialize)]
pub struct HealthRecord {
    /// Its row id in `health`.
    pub id: i64,
    /// When the status changed.
    pub time: String,
    /// The component (`overall` for the whole process).
    pub component: String,
    /// `healthy`, `degraded`, `unknown` or `unhealthy`.
    pub status: String,
    /// Why, unless healthy.
    pub reason: Option<String>,
}

/// The latest status of each component and the changes over a range, from [`Store::health`].
#[derive(Clone, Debug, Serialize)]
pub struct HealthHistory {
    /// The latest change of each component, `overall` first, then by name.
    pub latest: Vec<HealthRecord>,
    /// Changes in the range, newest first, at most the limit asked for.
    pub history: Vec<HealthRecord>,
}

/// One stored alert episode: from the first state change of an alert to its resolution.
#[derive(Clone, Debug, Serialize)]
pub struct AlertRecord {
    /// Its row id in `alerts`.
    pub id: i64,
    /// The rule.
    pub rule: String,
    /// The latest state: `pending`, `firing`, `acknowledged`, `resolved` or `inactive`.
    pub state: String,
    /// `info`, `warning` or `critical`.
    pub severity: String,
    /// The alert's labels.
    pub labels: Value,
    /// The summary.
    pub message: String,
    /// The latest value of the rule's condition.
    pub value: Option<f64>,
    /// When its condition began to hold.
    pub started: String,
    /// When it last changed.
    pub updated: String,
    /// When it resolved (or a pending alert cleared).
    pub resolved: Option<String>,
    /// When it was acknowledged, and by whom.
    pub acked: Option<String>,
    /// Who acknowledged it.
    pub acked_by: Option<String>,
    /// Its fingerprint (stores written before schema version 3 have none).
    pub fingerprint: Option<String>,
    /// Whether a silence suppressed its notifications.
    pub silenced: bool,
}

const HEALTH_COLUMNS: &str = "id, time_us, component, status, reason";

fn health_record(row: &Row<'_>) -> rusqlite::Result<HealthRecord> {
    Ok(HealthRecord {
        id: row.get(0)?,
        time: rfc3339(row.get(1)?),
        component: row.get(2)?,
        status: row.get(3)?,
        reason: row.get(4)?,
    })
}

impl Store {
    /// The latest status of every component, and up to `limit` changes in `range`, newest
    /// first. A store of schema version 1 (no `health` table) has none.
    ///
    /// # Errors
    /// [`QueryError::Read`].
    pub fn health(&self, range: TimeRange, limit: usize) -> Result<HealthHistory, QueryError> {
        let mut answer = HealthHistory {
            latest: Vec::new(),
            history: Vec::new(),
        };
        if self.schema_version < 2 {
            return Ok(answer);
        }
        let read = self.read();
        let tx = self.snapshot()?;
        let latest_sql = format!(
            "SELECT {HEALTH_COLUMNS} FROM health WHERE id IN
                 (SELECT max(id) FROM health GROUP BY component)
             ORDER BY component <> 'overall', component"
        );
        answer.latest = tx
            .prepare(&latest_sql)
            .map_err(&read)?
            .query_map([], health_record)
            .map_err(&read)?
            .collect::<Result<_, _>>()
            .map_err(&read)?;
        let (since, until) = range.bounds();
        let history_sql = format!(
            "SELECT {HEALTH_COLUMNS} FROM health WHERE time_us >= ?1 AND time_us < ?2
             ORDER BY time_us DESC, id DESC LIMIT ?3"
        );
        answer.history = tx
            .prepare(&history_sql)
            .map_err(&read)?
            .query_map(
                (since, until, i64::try_from(limit).unwrap_or(i64::MAX)),
                health_record,
            )
            .map_err(&read)?
            .collect::<Result<_, _>>()
            .map_err(&read)?;
        Ok(answer)
    }

    /// The alerts still open (not resolved), newest first; with `all`, every stored alert.
    /// A store of schema version 1 has none.
    ///
    /// # Errors
    /// [`QueryError::Read`], or [`QueryError::BadRow`] for labels that are not JSON.
    pub fn alerts(&self, all: bool) -> Result<Vec<AlertRecord>, QueryError> {
        if self.schema_version < 2 {
            return Ok(Vec::new());
        }
        let read = self.read();
        let extra = if self.schema_version >= 3 {
            "fingerprint, silenced"
        } else {
            "NULL, 0"
        };
        let filter = if all { "" } else { "WHERE resolved_us IS NULL" };
        let sql = format!(
            "SELECT id, rule, state, severity, labels, message, value, started_us, updated_us,
                    resolved_us, acked_us, acked_by, {extra}
             FROM alerts {filter} ORDER BY updated_us DESC, id DESC"
        );
        let tx = self.snapshot()?;
        let mut statement = tx.prepare(&sql).map_err(&read)?;
        let rows = statement
            .query_map([], |row| {
                Ok((
                    AlertRecord {
                        id: row.get(0)?,
                        rule: row.get(1)?,
                        state: row.get(2)?,
                        severity: row.get(3)?,
                        labels: Value::Null,
                        message: row.get(5)?,
                        value: row.get(6)?,
                        started: rfc3339(row.get(7)?),
                        updated: rfc3339(row.get(8)?),
                        resolved: row.get::<_, Option<i64>>(9)?.map(rfc3339),
                        acked: row.get::<_, Option<i64>>(10)?.map(rfc3339),
                        acked_by: row.get(11)?,
                        fingerprint: row.get(12)?,
                        silenced: row.get::<_, i64>(13)? != 0,
                    },
                    row.get::<_, String>(4)?,
                ))
            })
            .map_err(&read)?;
        let mut alerts = Vec::new();
        for row in rows {
            let (mut alert, labels) = row.map_err(&read)?;
            alert.labels = serde_json::from_str(&labels)
                .map_err(|e| self.bad_row("alerts", alert.id, format!("bad JSON labels: {e}")))?;
            alerts.push(alert);
        }
        Ok(alerts)
    }
}
