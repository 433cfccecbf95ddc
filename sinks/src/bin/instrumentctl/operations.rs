//! `instrumentctl health` and `instrumentctl alerts`: what the health registry and the alert
//! engine stored.

use std::path::Path;
use std::process::ExitCode;
use std::time::SystemTime;

use instrument_sinks::sqlite::control::{self, AlertAction, SilenceRecord};
use instrument_sinks::sqlite::query::{AlertRecord, HealthHistory, Store};

use super::{Columns, Failure, or_dash, pairs, print, range};

/// What `instrumentctl alerts` does besides listing.
#[derive(Debug, clap::Subcommand)]
pub(super) enum AlertsCommand {
    /// Acknowledges a firing alert (ID as `alerts` lists it, or its fingerprint): a running
    /// pipeline stops escalating it within about a second.
    Ack {
        /// The alert's id or fingerprint.
        id: String,
        /// Who acknowledges it (default: $USER).
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Resolves an open alert by hand: a running pipeline tells its notifiers; if the
    /// condition still holds, a new episode starts.
    Resolve {
        /// The alert's id or fingerprint.
        id: String,
        /// Who resolves it (default: $USER).
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// Silences the notifications of the alerts whose labels match all of MATCHER (NAME=VALUE;
    /// `rule=` for the rule) for a while; their history is still stored.
    Silence {
        /// NAME=VALUE, one or more (or comma-separated).
        #[arg(required = true, value_name = "MATCHER")]
        matchers: Vec<String>,
        /// How long.
        #[arg(long = "for", value_name = "DURATION")]
        duration: String,
        /// When it starts, for a maintenance window: an RFC 3339 UTC time (default: now).
        #[arg(long, value_name = "WHEN")]
        starts: Option<String>,
        /// Who silences (default: $USER).
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
        /// Why, for the record.
        #[arg(long, default_value = "")]
        comment: String,
    },
    /// The silences that have not ended (with --all, every one).
    Silences {
        /// Ended ones too.
        #[arg(long)]
        all: bool,
    },
    /// Ends a silence now.
    Expire {
        /// The silence's id, as `alerts silences` lists it.
        id: i64,
        /// Who ends it (default: $USER).
        #[arg(long, value_name = "NAME")]
        by: Option<String>,
    },
}

/// `instrumentctl alerts ack|resolve|silence|silences|expire`.
fn alerts_command(
    db: &Path,
    command: AlertsCommand,
    json: bool,
    now: SystemTime,
) -> Result<ExitCode, Failure> {
    let actor = |by: Option<String>| {
        by.or_else(|| std::env::var("USER").ok().filter(|u| !u.is_empty()))
            .unwrap_or_else(|| "instrumentctl".to_owned())
    };
    let action = match command {
        AlertsCommand::Ack { id, by, comment } => {
            control::ack_alert(db, &id, &actor(by), &comment)?
        }
        AlertsCommand::Resolve { id, by, comment } => {
            control::resolve_alert(db, &id, &actor(by), &comment)?
        }
        AlertsCommand::Silence {
            matchers,
            duration,
            starts,
            by,
            comment,
        } => {
            let matchers = control::parse_matchers(&matchers)?;
            let length = super::duration("--for", &duration)?;
            let starts = match starts {
                Some(text) => super::time("--starts", &text, now)?.unwrap_or(now),
                None => now,
            };
            control::add_silence(db, &matchers, starts, length, &actor(by), &comment)?
        }
        AlertsCommand::Silences { all } => {
            let silences = control::silences(db, all)?;
            return print(json, &silences, || silences_table(&silences, all));
        }
        AlertsCommand::Expire { id, by } => control::expire_silence(db, id, &actor(by))?,
    };
    print(json, &action, || action_line(&action))
}

/// One line saying what was done.
fn action_line(action: &AlertAction) -> String {
    let alert = || {
        format!(
            "alert {} ({})",
            action.alert.unwrap_or_default(),
            action.rule.as_deref().unwrap_or("-")
        )
    };
    let applies = "a running pipeline applies it within about a second";
    match (action.action.as_str(), &action.silence) {
        ("ack", _) => format!("{} acknowledged by {}; {applies}\n", alert(), action.actor),
        ("resolve", _) => format!("{} resolved by {}; {applies}\n", alert(), action.actor),
        ("silence", Some(s)) => format!(
            "silence {} of {} from {} until {} by {}; {applies}\n",
            s.id,
            matchers(s),
            s.starts,
            s.ends,
            action.actor
        ),
        ("expire", Some(s)) => format!(
            "silence {} of {} ended at {} by {}; {applies}\n",
            s.id,
            matchers(s),
            s.ends,
            action.actor
        ),
        (other, _) => format!("{other} by {}\n", action.actor),
    }
}

fn matchers(silence: &SilenceRecord) -> String {
    silence
        .matchers
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// `alerts silences`.
fn silences_table(silences: &[SilenceRecord], all: bool) -> String {
    if silences.is_empty() {
        return if all {
            "no silences stored\n".to_owned()
        } else {
            "no silence in force or ahead (--all lists ended ones too)\n".to_owned()
        };
    }
    let mut table = Columns::new(&[
        ("ID", true),
        ("ACTIVE", false),
        ("MATCHERS", false),
        ("STARTS", false),
        ("ENDS", false),
        ("BY", false),
        ("COMMENT", false),
    ]);
    for s in silences {
        table.rows.push(vec![
            s.id.to_string(),
            if s.active { "yes" } else { "no" }.to_owned(),
            matchers(s),
            s.starts.clone(),
            s.ends.clone(),
            s.actor.clone(),
            or_dash(Some(s.comment.as_str()).filter(|c| !c.is_empty())),
        ]);
    }
    table.render()
}

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

/// `instrumentctl alerts`, and its subcommands.
pub(super) fn alerts(
    db: &Path,
    all: bool,
    command: Option<AlertsCommand>,
    json: bool,
    now: SystemTime,
) -> Result<ExitCode, Failure> {
    if let Some(command) = command {
        return alerts_command(db, command, json, now);
    }
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
