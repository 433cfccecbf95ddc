//! Operators' actions on alerts from outside the process: acknowledge, resolve, silence and
//! expire a silence, written to the store's `alert_actions` table (`instrumentctl alerts ack`,
//! `resolve`, `silence`, `expire`).
//!
//! The store is the channel: a running [`SqliteSink`](crate::SqliteSink) reads new actions at
//! each tick (about once a second) and publishes each as a [`Notice`] from source
//! [`CONTROL_SOURCE`], which the alert engine (feature `alerts`) applies. When the sink starts
//! it publishes the silences that have not ended and the acknowledgements of alerts that are
//! still open, so both survive a restart of the process. With no process running, the
//! `alerts` rows are updated at once all the same: `instrumentctl alerts` shows the change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use instrument::{Level, Notice};
use rusqlite::{Connection, OptionalExtension, Row};
use serde::Serialize;

use super::maintenance::{MaintenanceError, open_store};
use super::micros;
use super::query::rfc3339;

/// The source of the notices that carry operators' actions to the alert engine.
pub const CONTROL_SOURCE: &str = "alerts.control";

/// Why an action on an alert or a silence was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The store could not be opened (missing, not a store, newer than this release).
    #[error(transparent)]
    Store(#[from] MaintenanceError),
    /// No alert has this id or fingerprint.
    #[error("no alert with id or fingerprint `{id}` in {path}")]
    NoSuchAlert {
        /// What was asked for.
        id: String,
        /// The database file.
        path: PathBuf,
    },
    /// The alert is in a state the action does not apply to.
    #[error("alert {id} ({rule}) is {state}: {why}")]
    WrongState {
        /// The alert's row id.
        id: i64,
        /// Its rule.
        rule: String,
        /// Its state.
        state: String,
        /// What that means for the action.
        why: &'static str,
    },
    /// No silence has this id.
    #[error("no silence with id {id} in {path}")]
    NoSuchSilence {
        /// What was asked for.
        id: i64,
        /// The database file.
        path: PathBuf,
    },
    /// The silence has already ended.
    #[error("silence {id} ended at {ended}; nothing to expire")]
    SilenceEnded {
        /// The silence.
        id: i64,
        /// When it ended.
        ended: String,
    },
    /// A silence needs at least one matcher, each `NAME=VALUE`.
    #[error("bad matcher `{0}`: expected NAME=VALUE, such as alertname=HighErrorRatio")]
    BadMatcher(String),
    /// A silence must end after it starts.
    #[error("a silence must end after it starts")]
    EmptySilence,
    /// A statement failed.
    #[error("cannot {action} {path}")]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
}

/// What an action changed, for the operator.
#[derive(Clone, Debug, Serialize)]
#[non_exhaustive]
pub struct AlertAction {
    /// Its row id in `alert_actions`.
    pub action_id: i64,
    /// `ack`, `resolve`, `silence` or `expire`.
    pub action: String,
    /// The alert's row id in `alerts` (ack, resolve).
    pub alert: Option<i64>,
    /// The alert's rule (ack, resolve).
    pub rule: Option<String>,
    /// The alert's fingerprint (ack, resolve).
    pub fingerprint: Option<String>,
    /// The silence (silence, expire).
    pub silence: Option<SilenceRecord>,
    /// Who did it.
    pub actor: String,
    /// When, RFC 3339 UTC.
    pub time: String,
}

/// A stored silence.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
#[non_exhaustive]
pub struct SilenceRecord {
    /// Its id (the row id of its `silence` action).
    pub id: i64,
    /// Labels an alert must all have to be silenced (`alertname` for its rule).
    pub matchers: BTreeMap<String, String>,
    /// From when, RFC 3339 UTC.
    pub starts: String,
    /// Until when, RFC 3339 UTC.
    pub ends: String,
    /// Whether it covers the present.
    pub active: bool,
    /// Who created it.
    pub actor: String,
    /// Why.
    pub comment: String,
    /// `starts` and `ends` in UTC microseconds, as stored.
    #[serde(skip)]
    span_us: (i64, i64),
}

/// Parses matchers written `NAME=VALUE` (one per argument, or several separated by commas);
/// `rule=` stands for `alertname=`.
///
/// # Errors
/// [`ControlError::BadMatcher`] for a matcher without `=` or with an empty name, and when
/// there is none at all.
pub fn parse_matchers<S: AsRef<str>>(
    matchers: &[S],
) -> Result<BTreeMap<String, String>, ControlError> {
    let mut parsed = BTreeMap::new();
    for part in matchers
        .iter()
        .flat_map(|m| m.as_ref().split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let Some((name, value)) = part.split_once('=') else {
            return Err(ControlError::BadMatcher(part.to_owned()));
        };
        let name = name.trim();
        let value = value.trim().trim_matches('"');
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ControlError::BadMatcher(part.to_owned()));
        }
        let name = if name == "rule" { "alertname" } else { name };
        parsed.insert(name.to_owned(), value.to_owned());
    }
    if parsed.is_empty() {
        return Err(ControlError::BadMatcher(String::new()));
    }
    Ok(parsed)
}

/// Acknowledges the firing alert with this row id (as `instrumentctl alerts` lists it) or
/// fingerprint: its row reads `acknowledged` at once, and a running alert engine stops
/// escalating it at the sink's next tick.
///
/// # Errors
/// [`ControlError`]: no such alert, or it is pending, resolved or already acknowledged; the
/// store cannot be opened or written.
pub fn ack_alert(
    db: &Path,
    id_or_fingerprint: &str,
    actor: &str,
    comment: &str,
) -> Result<AlertAction, ControlError> {
    act_on_alert(
        db,
        id_or_fingerprint,
        (actor, comment),
        "ack",
        |alert| match alert.state.as_str() {
            _ if alert.resolved => Some("it is over; nothing to acknowledge"),
            "pending" => Some("not firing yet; nothing to acknowledge"),
            "acknowledged" => Some("already acknowledged"),
            _ => None,
        },
        "UPDATE alerts SET state = 'acknowledged', acked_us = ?2, acked_by = ?3, updated_us = ?2
         WHERE id = ?1",
    )
}

/// Resolves the open alert with this row id or fingerprint by hand: its row is closed at once,
/// and a running alert engine resolves it (and tells its notifiers) at the sink's next tick. If
/// its condition still holds, the engine starts a new episode.
///
/// # Errors
/// [`ControlError`]: no such alert, or it is already resolved; the store cannot be opened or
/// written.
pub fn resolve_alert(
    db: &Path,
    id_or_fingerprint: &str,
    actor: &str,
    comment: &str,
) -> Result<AlertAction, ControlError> {
    act_on_alert(
        db,
        id_or_fingerprint,
        (actor, comment),
        "resolve",
        |alert| alert.resolved.then_some("already over"),
        "UPDATE alerts SET state = 'resolved', resolved_us = ?2, updated_us = ?2
         WHERE id = ?1 AND ?3 = ?3",
    )
}

/// Finds the alert, refuses it with `refuse`'s reason if any, and in one transaction runs
/// `update` (parameters: the row id, now, the actor) and stores the action.
fn act_on_alert(
    db: &Path,
    id_or_fingerprint: &str,
    (actor, comment): (&str, &str),
    action: &str,
    refuse: impl Fn(&Found) -> Option<&'static str>,
    update: &str,
) -> Result<AlertAction, ControlError> {
    let (conn, _) = open_store(db, true)?;
    let alert = find_alert(&conn, db, id_or_fingerprint)?;
    if let Some(why) = refuse(&alert) {
        return Err(alert.wrong_state(why));
    }
    let now = micros(SystemTime::now());
    let tx = transaction(&conn, db)?;
    tx.execute(update, (alert.id, now, actor))
        .map_err(sql(db, "update the alert in"))?;
    let action_id = insert_action(&tx, db, now, action, Some(&alert), None, actor, comment)?;
    tx.commit().map_err(sql(db, "commit to"))?;
    Ok(alert.action(action_id, action, actor, now))
}

/// Silences the alerts whose labels include all of `matchers` from `starts` for `duration`
/// (a maintenance window when `starts` is ahead). Their state changes are still stored,
/// marked silenced; only notifications stop.
///
/// # Errors
/// [`ControlError`]: no matcher, an empty duration; the store cannot be opened or written.
pub fn add_silence(
    db: &Path,
    matchers: &BTreeMap<String, String>,
    starts: SystemTime,
    duration: Duration,
    actor: &str,
    comment: &str,
) -> Result<AlertAction, ControlError> {
    if matchers.is_empty() {
        return Err(ControlError::BadMatcher(String::new()));
    }
    if duration.is_zero() {
        return Err(ControlError::EmptySilence);
    }
    let (conn, _) = open_store(db, true)?;
    let now = SystemTime::now();
    let matchers_json = serde_json::to_string(matchers).unwrap_or_default();
    conn.execute(
        "INSERT INTO alert_actions (time_us, action, matchers, starts_us, ends_us, actor, comment)
         VALUES (?1, 'silence', ?2, ?3, ?4, ?5, ?6)",
        (
            micros(now),
            &matchers_json,
            micros(starts),
            micros(starts + duration),
            actor,
            comment,
        ),
    )
    .map_err(sql(db, "store the silence in"))?;
    let id = conn.last_insert_rowid();
    let silence = silence(&conn, db, id)?.ok_or(ControlError::NoSuchSilence {
        id,
        path: db.to_owned(),
    })?;
    Ok(AlertAction {
        action_id: id,
        action: "silence".to_owned(),
        alert: None,
        rule: None,
        fingerprint: None,
        silence: Some(silence),
        actor: actor.to_owned(),
        time: rfc3339(micros(now)),
    })
}

/// Ends the silence `id` now.
///
/// # Errors
/// [`ControlError`]: no such silence, or it has ended; the store cannot be opened or written.
pub fn expire_silence(db: &Path, id: i64, actor: &str) -> Result<AlertAction, ControlError> {
    let (conn, _) = open_store(db, true)?;
    let Some(found) = silence(&conn, db, id)? else {
        return Err(ControlError::NoSuchSilence {
            id,
            path: db.to_owned(),
        });
    };
    let now = micros(SystemTime::now());
    if found.span_us.1 <= now {
        return Err(ControlError::SilenceEnded {
            id,
            ended: found.ends,
        });
    }
    let tx = transaction(&conn, db)?;
    tx.execute(
        "UPDATE alert_actions SET ends_us = ?2 WHERE id = ?1",
        (id, now),
    )
    .map_err(sql(db, "end the silence in"))?;
    tx.execute(
        "INSERT INTO alert_actions (time_us, action, silence_id, actor) VALUES (?1, 'expire', ?2, ?3)",
        (now, id, actor),
    )
    .map_err(sql(db, "store the expiry in"))?;
    let action_id = tx.last_insert_rowid();
    tx.commit().map_err(sql(db, "commit to"))?;
    let ended = silence(&conn, db, id)?;
    Ok(AlertAction {
        action_id,
        action: "expire".to_owned(),
        alert: None,
        rule: None,
        fingerprint: None,
        silence: ended,
        actor: actor.to_owned(),
        time: rfc3339(now),
    })
}

/// The silences that have not ended (with `all`, every one), newest first.
///
/// # Errors
/// [`ControlError`]: the store cannot be opened or read.
pub fn silences(db: &Path, all: bool) -> Result<Vec<SilenceRecord>, ControlError> {
    let (conn, _) = open_store(db, true)?;
    let now = micros(SystemTime::now());
    let filter = if all { "" } else { "AND ends_us > ?1" };
    let mut statement = conn
        .prepare(&format!(
            "SELECT id, matchers, starts_us, ends_us, actor, comment FROM alert_actions
             WHERE action = 'silence' AND ?1 = ?1 {filter} ORDER BY id DESC"
        ))
        .map_err(sql(db, "read silences from"))?;
    let rows = statement
        .query_map([now], |r| silence_row(r, now))
        .map_err(sql(db, "read silences from"))?;
    rows.collect::<Result<_, _>>()
        .map_err(sql(db, "read silences from"))
}

fn silence(conn: &Connection, db: &Path, id: i64) -> Result<Option<SilenceRecord>, ControlError> {
    let now = micros(SystemTime::now());
    conn.query_row(
        "SELECT id, matchers, starts_us, ends_us, actor, comment FROM alert_actions
         WHERE id = ?1 AND action = 'silence'",
        [id],
        |r| silence_row(r, now),
    )
    .optional()
    .map_err(sql(db, "read the silence from"))
}

fn silence_row(r: &Row<'_>, now: i64) -> rusqlite::Result<SilenceRecord> {
    let matchers: String = r.get(1)?;
    let starts: i64 = r.get(2)?;
    let ends: i64 = r.get(3)?;
    Ok(SilenceRecord {
        id: r.get(0)?,
        matchers: serde_json::from_str(&matchers).unwrap_or_default(),
        starts: rfc3339(starts),
        ends: rfc3339(ends),
        active: starts <= now && now < ends,
        actor: r.get(4)?,
        comment: r.get(5)?,
        span_us: (starts, ends),
    })
}

/// An alert row, as the actions need it.
struct Found {
    id: i64,
    rule: String,
    state: String,
    fingerprint: Option<String>,
    resolved: bool,
}

impl Found {
    fn wrong_state(&self, why: &'static str) -> ControlError {
        ControlError::WrongState {
            id: self.id,
            rule: self.rule.clone(),
            state: self.state.clone(),
            why,
        }
    }

    fn action(&self, action_id: i64, action: &str, actor: &str, now: i64) -> AlertAction {
        AlertAction {
            action_id,
            action: action.to_owned(),
            alert: Some(self.id),
            rule: Some(self.rule.clone()),
            fingerprint: self.fingerprint.clone(),
            silence: None,
            actor: actor.to_owned(),
            time: rfc3339(now),
        }
    }
}

/// The alert with this row id, else the latest with this fingerprint.
fn find_alert(
    conn: &Connection,
    db: &Path,
    id_or_fingerprint: &str,
) -> Result<Found, ControlError> {
    let read = |r: &Row<'_>| {
        Ok(Found {
            id: r.get(0)?,
            rule: r.get(1)?,
            state: r.get(2)?,
            fingerprint: r.get(3)?,
            resolved: r.get::<_, Option<i64>>(4)?.is_some(),
        })
    };
    let columns = "id, rule, state, fingerprint, resolved_us";
    let found = match id_or_fingerprint.parse::<i64>() {
        Ok(id) => conn
            .query_row(
                &format!("SELECT {columns} FROM alerts WHERE id = ?1"),
                [id],
                read,
            )
            .optional(),
        Err(_) => conn
            .query_row(
                &format!(
                    "SELECT {columns} FROM alerts WHERE fingerprint = ?1 ORDER BY id DESC LIMIT 1"
                ),
                [id_or_fingerprint],
                read,
            )
            .optional(),
    }
    .map_err(sql(db, "read alerts from"))?;
    found.ok_or_else(|| ControlError::NoSuchAlert {
        id: id_or_fingerprint.to_owned(),
        path: db.to_owned(),
    })
}

fn transaction<'c>(
    conn: &'c Connection,
    db: &Path,
) -> Result<rusqlite::Transaction<'c>, ControlError> {
    rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)
        .map_err(sql(db, "begin a transaction on"))
}

#[allow(clippy::too_many_arguments)]
fn insert_action(
    tx: &rusqlite::Transaction<'_>,
    db: &Path,
    now: i64,
    action: &str,
    alert: Option<&Found>,
    silence_id: Option<i64>,
    actor: &str,
    comment: &str,
) -> Result<i64, ControlError> {
    tx.execute(
        "INSERT INTO alert_actions (time_us, action, alert_row, fingerprint, silence_id, actor, comment)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        rusqlite::params![
            now,
            action,
            alert.map(|a| a.id),
            alert.and_then(|a| a.fingerprint.clone()),
            silence_id,
            actor,
            comment
        ],
    )
    .map_err(sql(db, "store the action in"))?;
    Ok(tx.last_insert_rowid())
}

fn sql<'p>(db: &'p Path, action: &'static str) -> impl Fn(rusqlite::Error) -> ControlError + 'p {
    move |source| ControlError::Sqlite {
        path: db.to_owned(),
        action,
        source,
    }
}

/// `id, action, fingerprint, silence_id, actor, comment` of an `alert_actions` row.
type ActionRow = (i64, String, Option<String>, Option<i64>, String, String);

/// The sink's side: the actions it has handed on, and those it publishes next.
#[derive(Debug, Default)]
pub(crate) struct ControlFeed {
    /// The highest `alert_actions` id published; `None` before the first poll.
    cursor: Option<i64>,
}

impl ControlFeed {
    /// The notices to publish now: on the first call, the silences that have not ended and
    /// the acknowledgements of alerts still open (what a restarted engine must know); after
    /// that, every action stored since the last call.
    pub(crate) fn poll(
        &mut self,
        conn: &Connection,
        now: SystemTime,
    ) -> rusqlite::Result<Vec<Notice>> {
        let now_us = micros(now);
        let mut notices = Vec::new();
        let Some(cursor) = self.cursor else {
            let last: i64 =
                conn.query_row("SELECT coalesce(max(id), 0) FROM alert_actions", [], |r| {
                    r.get(0)
                })?;
            let mut active = conn.prepare(
                "SELECT id, matchers, starts_us, ends_us, actor, comment FROM alert_actions
                 WHERE action = 'silence' AND ends_us > ?1 ORDER BY id",
            )?;
            for silence in active.query_map([now_us], |r| silence_row(r, now_us))? {
                notices.push(silence_notice(&silence?));
            }
            let mut acked = conn.prepare(
                "SELECT fingerprint, acked_by FROM alerts
                 WHERE resolved_us IS NULL AND acked_by IS NOT NULL AND fingerprint IS NOT NULL",
            )?;
            for row in
                acked.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            {
                let (fingerprint, actor) = row?;
                notices.push(
                    Notice::new(
                        CONTROL_SOURCE,
                        Level::Info,
                        format!("alert {fingerprint} stays acknowledged by {actor}"),
                    )
                    .field("action", "ack")
                    .field("fingerprint", fingerprint)
                    .field("actor", actor),
                );
            }
            self.cursor = Some(last);
            return Ok(notices);
        };
        let mut new = conn.prepare_cached(
            "SELECT id, action, fingerprint, silence_id, actor, comment FROM alert_actions
             WHERE id > ?1 ORDER BY id LIMIT 100",
        )?;
        let rows: Vec<ActionRow> = new
            .query_map([cursor], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })?
            .collect::<Result<_, _>>()?;
        for (id, action, fingerprint, silence_id, actor, comment) in rows {
            self.cursor = Some(id);
            let notice = match action.as_str() {
                "ack" | "resolve" => {
                    let Some(fingerprint) = fingerprint else {
                        continue;
                    };
                    let verb = if action == "ack" {
                        "acknowledged"
                    } else {
                        "resolved"
                    };
                    Notice::new(
                        CONTROL_SOURCE,
                        Level::Info,
                        format!("alert {fingerprint} {verb} by {actor}"),
                    )
                    .field("action", action)
                    .field("fingerprint", fingerprint)
                    .field("actor", actor)
                    .field("comment", comment)
                }
                "silence" => match silence(conn, Path::new(""), id) {
                    Ok(Some(s)) => silence_notice(&s),
                    _ => continue,
                },
                "expire" => {
                    let Some(silence_id) = silence_id else {
                        continue;
                    };
                    Notice::new(
                        CONTROL_SOURCE,
                        Level::Info,
                        format!("silence {silence_id} expired by {actor}"),
                    )
                    .field("action", "expire")
                    .field("silence_id", silence_id)
                    .field("actor", actor)
                }
                _ => continue,
            };
            notices.push(notice);
        }
        Ok(notices)
    }
}

fn silence_notice(silence: &SilenceRecord) -> Notice {
    let (starts, ends) = silence.span_us;
    Notice::new(
        CONTROL_SOURCE,
        Level::Info,
        format!(
            "silence {} of {} until {} by {}",
            silence.id,
            serde_json::to_string(&silence.matchers).unwrap_or_default(),
            silence.ends,
            silence.actor
        ),
    )
    .field("action", "silence")
    .field("silence_id", silence.id)
    .field(
        "matchers",
        serde_json::to_string(&silence.matchers).unwrap_or_default(),
    )
    .field("starts_us", starts)
    .field("ends_us", ends)
    .field("actor", &silence.actor)
    .field("comment", &silence.comment)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matchers_are_name_value_pairs_and_rule_means_alertname() {
        let parsed =
            parse_matchers(&["rule=HighErrorRatio,stage=parse", "severity=\"critical\""]).unwrap();
        assert_eq!(
            parsed.into_iter().collect::<Vec<_>>(),
            vec![
                ("alertname".to_owned(), "HighErrorRatio".to_owned()),
                ("severity".to_owned(), "critical".to_owned()),
                ("stage".to_owned(), "parse".to_owned()),
            ]
        );
        for bad in ["stage", "=parse", "sta ge=x", ""] {
            assert!(
                matches!(parse_matchers(&[bad]), Err(ControlError::BadMatcher(_))),
                "{bad}"
            );
        }
    }
}
