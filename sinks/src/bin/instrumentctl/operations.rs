//! `instrumentctl health` and `instrumentctl alerts`: what the health registry and the alert
//! engine stored.

use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use instrument_sinks::sqlite::query::{AlertRecord, HealthHistory, Store};

use super::{Columns, Failure, or_dash, pairs, print, range};

/// `instrumentctl health`.
pub(super) fn health(
    db: &Path,
    since: &str,
    limit: usize,
    json: bool,
    now: SystemTime,
) -> Result<ExitCode, Failure> {
    let range = range(since, None, now)?;
    let health = Store::open(db)?.health(range, limit)?;
    print(json, &health, || health_table(&health))
}

/// `instrumentctl alerts`.
pub(super) fn alerts(db: &Path, all: bool, json: bool) -> Result<ExitCode, Failure> {
    let alerts = Store::open(db)?.alerts(all)?;
    print(json, &alerts, || alerts_table(&alerts, all))
}

/// `health`: the latest status per component, then the changes, newest first.
fn health_table(health: &HealthHistory) -> String {
    if health.latest.is_empty() {
        return "no health changes stored (the process runs no health registry, or it has \
                not published yet)\n"
            .to_owned();
    }
    let mut text = String::from("Latest status\n");
    let mut latest = Columns::new(&[
        ("COMPONENT", false),
        ("STATUS", false),
        ("SINCE", false),
        ("REASON", false),
    ]);
    for r in &health.latest {
        latest.rows.push(vec![
            r.component.clone(),
            r.status.clone(),
            r.time.clone(),
            or_dash(r.reason.as_deref()),
        ]);
    }
    text.push_str(&latest.render());
    text.push_str("\nChanges (newest first)\n");
    if health.history.is_empty() {
        text.push_str("none in the range (--since to widen it)\n");
        return text;
    }
    let mut history = Columns::new(&[
        ("TIME", false),
        ("COMPONENT", false),
        ("STATUS", false),
        ("REASON", false),
    ]);
    for r in &health.history {
        history.rows.push(vec![
            r.time.clone(),
            r.component.clone(),
            r.status.clone(),
            or_dash(r.reason.as_deref()),
        ]);
    }
    text.push_str(&history.render());
    text
}

/// `alerts`: one line per alert episode.
fn alerts_table(alerts: &[AlertRecord], all: bool) -> String {
    if alerts.is_empty() {
        return if all {
            "no alerts stored\n".to_owned()
        } else {
            "no open alerts (--all lists resolved ones too)\n".to_owned()
        };
    }
    let mut table = Columns::new(&[
        ("ID", true),
        ("STATE", false),
        ("SEVERITY", false),
        ("RULE", false),
        ("STARTED", false),
        ("RESOLVED", false),
        ("VALUE", true),
        ("LABELS", false),
        ("SUMMARY", false),
    ]);
    for a in alerts {
        let mut state = a.state.clone();
        if a.silenced {
            state.push_str(" (silenced)");
        }
        let labels = match &a.labels {
            serde_json::Value::Object(map) => {
                // alertname and severity have their own columns.
                let rest: serde_json::Map<String, serde_json::Value> = map
                    .iter()
                    .filter(|(k, _)| *k != "alertname" && *k != "severity")
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                pairs(&serde_json::Value::Object(rest))
            }
            other => pairs(other),
        };
        table.rows.push(vec![
            a.id.to_string(),
            state,
            a.severity.clone(),
            a.rule.clone(),
            a.started.clone(),
            or_dash(a.resolved.as_deref()),
            a.value.map_or_else(|| "-".to_owned(), |v| format!("{v}")),
            labels,
            a.message.clone(),
        ]);
    }
    table.render()
}
