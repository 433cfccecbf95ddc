//! `instrumentctl alerts ack|resolve|silence|expire` against a running pipeline: the real
//! binary writes to the store, the real `SqliteSink` hands each action to the real alert
//! engine, and the engine's state (and its notifier) shows it applied. Then the process's
//! pipeline is replaced by a new one on the same store: the silence and the acknowledgement
//! survive.

use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use instrument::instrument_performance;
use instrument_sinks::SqliteSink;
use instrument_sinks::alerts::{
    Alert, AlertEngine, AlertHandle, AlertState, Condition, Notifier, NotifyError, RetryPolicy,
    Rule, Severity, Threshold,
};
use rusqlite::Connection;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_instrumentctl");
const RULE: &str = "LoadFails";

#[instrument_performance]
fn load(fail: bool) -> Result<(), std::io::Error> {
    if fail {
        Err(std::io::Error::other("no"))
    } else {
        Ok(())
    }
}

/// Keeps what the engine sends, firing or resolved, with whether each was silenced.
#[derive(Clone, Default)]
struct Outbox(Arc<Mutex<Vec<Alert>>>);

impl Notifier for Outbox {
    fn name(&self) -> &'static str {
        "outbox"
    }

    fn send(&mut self, alerts: &[Alert]) -> Result<(), NotifyError> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(alerts);
        Ok(())
    }
}

impl Outbox {
    fn len(&self) -> usize {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).len()
    }
}

/// A pipeline with the store and an engine whose one rule fires as soon as more than half of
/// `load`'s calls in the last 10 s failed, re-sending every 100 ms.
fn install(db: &Path) -> (instrument::PipelineGuard, AlertHandle, Outbox) {
    let outbox = Outbox::default();
    let engine = AlertEngine::builder()
        .rule(
            Rule::new(
                RULE,
                Condition::ErrorRatio {
                    function: Some(format!("{}::load", module_path!())),
                    window: Duration::from_secs(10),
                    min_calls: 1,
                },
                Threshold::Above(0.5),
            )
            .severity(Severity::Critical),
        )
        .notifier(outbox.clone())
        .retry_policy(RetryPolicy::default().min_interval(Duration::ZERO))
        .resend_interval(Duration::from_millis(100))
        .build()
        .expect("rules load");
    let handle = engine.handle();
    let pipeline = instrument::builder()
        .sink(SqliteSink::builder().path(db).build().expect("opens"))
        .sink(engine)
        .install()
        .expect("installs");
    (pipeline, handle, outbox)
}

/// Polls `what` for up to 15 s.
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "never happened: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn ctl(db: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(BIN)
        .arg("--db")
        .arg(db)
        .args(args)
        .output()
        .expect("runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ctl_json(db: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (ok, stdout, stderr) = ctl(db, &all);
    assert!(ok, "instrumentctl {args:?}: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

fn firing(handle: &AlertHandle) -> Option<Alert> {
    handle
        .alerts()
        .into_iter()
        .find(|a| a.rule == RULE && a.state == AlertState::Firing)
}

/// The stored row of the open alert of [`RULE`].
fn open_row(db: &Path) -> Option<Value> {
    let alerts = ctl_json(db, &["alerts"]);
    alerts
        .as_array()?
        .iter()
        .find(|a| a["rule"] == RULE && a["state"] != "pending")
        .cloned()
}

#[test]
fn acks_silences_and_resolutions_from_the_command_line_reach_the_running_engine_and_survive_a_restart()
 {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("instrument.db");
    let (pipeline, handle, outbox) = install(&db);
    let _ = load(true);
    let fired = eventually("the alert fires", || firing(&handle));
    let row = eventually("the firing alert is stored", || open_row(&db));
    let id = row["id"].as_i64().unwrap().to_string();

    // Acknowledged from outside: the engine's alert reads it within a tick or two.
    let (ok, stdout, stderr) = ctl(&db, &["alerts", "ack", &id, "--by", "alice"]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("acknowledged by alice"), "{stdout}");
    let acked = eventually("the engine applies the ack", || {
        firing(&handle).filter(|a| a.acknowledged.is_some())
    });
    assert_eq!(acked.fingerprint, fired.fingerprint);
    assert_eq!(acked.acknowledged.unwrap().1, "alice");
    let (ok, _, stderr) = ctl(&db, &["alerts", "ack", &id]);
    assert!(!ok);
    assert!(stderr.contains("already acknowledged"), "{stderr}");

    // A silence: the engine holds it and stops sending.
    let silence = ctl_json(
        &db,
        &[
            "alerts",
            "silence",
            "rule=LoadFails",
            "--for",
            "1h",
            "--comment",
            "deploy",
        ],
    );
    let silence_id = silence["silence"]["id"].as_i64().unwrap();
    eventually("the engine holds the silence", || {
        handle
            .silences()
            .into_iter()
            .find(|s| s.id == Some(silence_id))
    });
    eventually("the alert reads silenced", || {
        firing(&handle).filter(|a| a.silenced)
    });
    let sent = outbox.len();
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(outbox.len(), sent, "a silenced alert is not re-sent");
    pipeline.shutdown().expect("shuts down");

    // A new pipeline on the same store: the silence is back, and the alert, firing again,
    // is still acknowledged by alice.
    let (pipeline, handle, _outbox) = install(&db);
    let _ = load(true);
    eventually("the silence survives the restart", || {
        handle
            .silences()
            .into_iter()
            .find(|s| s.id == Some(silence_id) && s.comment == "deploy")
    });
    let again = eventually("the alert fires again, acknowledged", || {
        firing(&handle).filter(|a| a.acknowledged.is_some())
    });
    assert_eq!(again.fingerprint, fired.fingerprint);
    assert_eq!(again.acknowledged.unwrap().1, "alice");

    // Expired: gone from the engine.
    let (ok, stdout, stderr) = ctl(&db, &["alerts", "expire", &silence_id.to_string()]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("ended"), "{stdout}");
    eventually("the engine drops the silence", || {
        handle.silences().is_empty().then_some(())
    });
    let listed = ctl_json(&db, &["alerts", "silences", "--all"]);
    assert_eq!(listed[0]["id"], silence_id);
    assert_eq!(listed[0]["active"], false);

    // Resolved by hand: the row closes, the engine resolves its alert and, the condition
    // holding as calls go on failing, starts a new episode (not acknowledged); the engine's resolution updates the closed row rather
    // than adding one.
    let row = eventually("the open row", || open_row(&db));
    let id = row["id"].as_i64().unwrap();
    let (ok, _, stderr) = ctl(&db, &["alerts", "resolve", &id.to_string()]);
    assert!(ok, "{stderr}");
    eventually("the engine resolves and starts over", || {
        let _ = load(true);
        firing(&handle).filter(|a| a.id != again.id || a.acknowledged.is_none())
    });
    pipeline.shutdown().expect("shuts down");
    let conn = Connection::open(&db).unwrap();
    let (state, episodes): (String, i64) = conn
        .query_row(
            "SELECT (SELECT state FROM alerts WHERE id = ?1),
                    (SELECT count(*) FROM alerts WHERE fingerprint = ?2 AND started_us =
                        (SELECT started_us FROM alerts WHERE id = ?1))",
            rusqlite::params![id, fired.fingerprint],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(state, "resolved");
    assert_eq!(episodes, 1);
    let actions: Vec<String> = conn
        .prepare("SELECT action FROM alert_actions ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(actions, ["ack", "silence", "expire", "resolve"]);
}

#[test]
fn bad_alert_actions_are_one_line_errors_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("instrument.db");
    drop(SqliteSink::builder().path(&db).build().expect("creates"));
    for (args, expected) in [
        (
            vec!["alerts", "ack", "42"],
            "no alert with id or fingerprint `42`",
        ),
        (vec!["alerts", "resolve", "feedbeef"], "no alert with id"),
        (
            vec!["alerts", "silence", "stage", "--for", "1h"],
            "bad matcher `stage`",
        ),
        (
            vec!["alerts", "silence", "stage=parse", "--for", "soon"],
            "invalid --for `soon`",
        ),
        (
            vec!["alerts", "silence", "stage=parse", "--for", "0s"],
            "must end after it starts",
        ),
        (vec!["alerts", "expire", "7"], "no silence with id 7"),
    ] {
        let (ok, stdout, stderr) = ctl(&db, &args);
        assert!(!ok, "{args:?} succeeded: {stdout}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    }
    let missing = dir.path().join("none.db");
    let (ok, _, stderr) = ctl(&missing, &["alerts", "ack", "1"]);
    assert!(!ok);
    assert!(stderr.contains("does not exist"), "{stderr}");
    assert!(!missing.exists(), "nothing is created");
    let conn = Connection::open(&db).unwrap();
    let actions: i64 = conn
        .query_row("SELECT count(*) FROM alert_actions", [], |r| r.get(0))
        .unwrap();
    assert_eq!(actions, 0);
}
