//! A real Alertmanager receives the alert engine's alerts: the test starts Debian's
//! `prometheus-alertmanager` on a loopback port with a generated configuration, runs a pipeline
//! whose alert engine pushes to it, makes an instrumented function start failing, and polls
//! Alertmanager's API (`GET /api/v2/alerts`) until the alert is there with the expected labels;
//! then lets the function recover and waits for the alert to resolve (Alertmanager drops a
//! resolved alert from its list). It prints the time from the first failing call to the alert
//! being visible in Alertmanager (the figure of docs/alerting.md), without asserting on it.
//!
//! The binary must be installed (`apt-get install prometheus-alertmanager`; `.ci/run` installs
//! it): without it the test fails, saying so.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use instrument::instrument_performance;
use instrument_sinks::SqliteSink;
use instrument_sinks::alerts::{
    AlertEngine, AlertmanagerNotifier, Condition, RetryPolicy, Rule, Severity, Threshold,
};
use instrument_sinks::sqlite::query::Store;
use serde_json::Value;

mod http_client;
mod server_process;
mod support;
use server_process::ServerProcess;
use support::{eventually, name, serial};

/// Fails while `FAILING` is set.
static FAILING: AtomicBool = AtomicBool::new(false);

#[derive(Debug, thiserror::Error)]
#[error("upstream refused the row")]
struct Refused;

#[instrument_performance]
fn load_row(i: u64) -> Result<u64, Refused> {
    if FAILING.load(Ordering::Relaxed) && i.is_multiple_of(2) {
        Err(Refused)
    } else {
        Ok(i)
    }
}

/// Starts Alertmanager in `dir` with a route that discards what it receives; returns once it is
/// ready.
fn start_alertmanager(dir: &Path) -> ServerProcess {
    let config = dir.join("alertmanager.yml");
    std::fs::write(
        &config,
        "route:\n  receiver: discard\n  group_wait: 0s\n  group_interval: 1s\n\
         receivers:\n  - name: discard\n",
    )
    .unwrap();
    server_process::start(
        "prometheus-alertmanager",
        dir,
        &[
            format!("--config.file={}", config.display()),
            format!("--storage.path={}", dir.join("data").display()),
            // No cluster: it would listen on port 9094 of every interface.
            "--cluster.listen-address=".to_owned(),
        ],
    )
}

/// The alerts Alertmanager lists now named `alertname`.
fn alerts(am: &ServerProcess, alertname: &str) -> Vec<Value> {
    let response = http_client::get(am.addr, "/api/v2/alerts", &[]);
    assert_eq!(response.status, 200, "GET /api/v2/alerts");
    let json: Value = serde_json::from_slice(&response.body).expect("JSON");
    json.as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|a| a["labels"]["alertname"] == alertname)
        .collect()
}

/// The store has the episode: fired, then resolved, with its labels and fingerprint.
fn assert_episode_stored(db: &Path, function: &str, fingerprint: &str) {
    let stored = Store::open(db).unwrap().alerts(true).unwrap();
    let episode = stored
        .iter()
        .find(|a| a.rule == "LoadRowFailing" && a.resolved.is_some())
        .unwrap_or_else(|| panic!("a resolved episode in {stored:?}"));
    assert_eq!(episode.state, "resolved");
    assert_eq!(episode.severity, "critical");
    assert_eq!(episode.labels["function"], function);
    assert_eq!(episode.fingerprint.as_deref(), Some(fingerprint));
    assert!(
        Store::open(db).unwrap().alerts(false).unwrap().is_empty(),
        "no open alert left"
    );
}

#[test]
fn a_failing_function_fires_an_alert_that_a_real_alertmanager_lists_then_resolves() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let am = start_alertmanager(dir.path());

    let function = name!("load_row");
    let rule = Rule::new(
        "LoadRowFailing",
        Condition::ErrorRatio {
            function: Some(function.to_owned()),
            window: Duration::from_secs(2),
            min_calls: 1,
        },
        Threshold::Above(0.05),
    )
    .severity(Severity::Critical)
    .label("team", "etl")
    .summary("{{function}} failed {{value_percent}} of its calls over {{window}}");
    let notifier = AlertmanagerNotifier::new(&format!("http://{}", am.addr)).unwrap();
    let engine = AlertEngine::builder()
        .rule(rule)
        .notifier(notifier)
        // Resolution is sent as soon as it happens rather than 10 s after the firing.
        .retry_policy(RetryPolicy::default().min_interval(Duration::from_millis(200)))
        .build()
        .unwrap();
    let handle = engine.handle();
    let db = dir.path().join("instrument.db");
    let store = SqliteSink::builder().path(&db).build().unwrap();
    // Default intervals: 1 s windows, a drain every 100 ms.
    let pipeline = instrument::builder()
        .sink(engine)
        .sink(store)
        .install()
        .unwrap();

    // A steady, healthy load.
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = load_row(i);
                i += 1;
                thread::sleep(Duration::from_millis(2));
            }
        })
    };
    thread::sleep(Duration::from_millis(1500));
    assert!(alerts(&am, "LoadRowFailing").is_empty());
    assert!(
        handle.alerts().is_empty(),
        "nothing fires while calls succeed"
    );

    // The first failing call is the next even `i` after this.
    let first_failure = Instant::now();
    FAILING.store(true, Ordering::Relaxed);
    let alert = eventually(
        "the alert in Alertmanager",
        Duration::from_millis(10),
        || alerts(&am, "LoadRowFailing").into_iter().next(),
    );
    let detected = first_failure.elapsed();
    eprintln!(
        "first failing call -> alert listed by Alertmanager: {} ms",
        detected.as_millis()
    );

    let labels = &alert["labels"];
    assert_eq!(labels["severity"], "critical");
    assert_eq!(labels["team"], "etl");
    assert_eq!(labels["function"], function);
    assert_eq!(alert["status"]["state"], "active");
    let summary = alert["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.starts_with(&format!("{function} failed ")) && summary.ends_with(" over 2s"),
        "{summary}"
    );
    let engine_alert = handle
        .alerts()
        .into_iter()
        .next()
        .expect("firing in the engine");
    assert_eq!(alert["labels"]["alertname"], engine_alert.rule);

    // Recovery: the errors leave the 2 s window, the alert resolves and Alertmanager drops it.
    FAILING.store(false, Ordering::Relaxed);
    eventually(
        "the alert to resolve in Alertmanager",
        Duration::from_millis(50),
        || alerts(&am, "LoadRowFailing").is_empty().then_some(()),
    );
    assert!(handle.alerts().is_empty(), "resolved in the engine too");
    stop.store(true, Ordering::Relaxed);
    load.join().unwrap();
    let notifier = &handle.notifiers()[0];
    assert!(notifier.sent >= 2, "firing and resolved sent: {notifier:?}");
    assert_eq!(notifier.dropped, 0, "{notifier:?}");
    pipeline.shutdown().unwrap();

    assert_episode_stored(&db, function, &engine_alert.fingerprint);
}
