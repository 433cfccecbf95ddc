//! Health checks end to end: a registry with the pipeline's built-in checks and checks that
//! hang, panic or fail, served as `/health` and `/ready` on a real operations endpoint over
//! HTTP, with every status change stored by the `SQLite` sink and read back as
//! `instrumentctl health` reads it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use instrument_sinks::health::checks::DiskThresholds;
use instrument_sinks::health::{Health, HealthRegistry, Status};
use instrument_sinks::http::Endpoint;
use instrument_sinks::sqlite::query::{Store, TimeRange};
use instrument_sinks::{MemorySink, SqliteSink};
use serde_json::Value;

mod http_client;
mod support;
use support::{eventually, serial};

/// How often the tests look again for a check's answer or a notice.
const POLL: Duration = Duration::from_millis(50);

fn component<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["components"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no component {name} in {report}"))
}

/// Every change was stored, in `health` as in `notices`, and reads back as `instrumentctl
/// health` shows it.
fn assert_history_stored(db: &std::path::Path) {
    let history = Store::open(db)
        .unwrap()
        .health(TimeRange::ALL, 1000)
        .unwrap();
    let upstream: Vec<&str> = history
        .history
        .iter()
        .rev()
        .filter(|r| r.component == "upstream")
        .map(|r| r.status.as_str())
        .collect();
    assert_eq!(upstream, ["healthy", "unhealthy", "healthy"]);
    let overall: Vec<&str> = history
        .history
        .iter()
        .rev()
        .filter(|r| r.component == "overall")
        .map(|r| r.status.as_str())
        .collect();
    // `broken` keeps the whole degraded; the drain's end is not stored (the pipeline is gone).
    assert_eq!(overall, ["degraded", "unhealthy", "degraded"]);
    let latest_broken = history
        .latest
        .iter()
        .find(|r| r.component == "broken")
        .unwrap();
    assert_eq!(latest_broken.status, "unhealthy");
    assert_eq!(
        latest_broken.reason.as_deref(),
        Some("the check panicked: lost the connection pool")
    );
    assert_eq!(history.latest[0].component, "overall");
    let notices: i64 = rusqlite::Connection::open(db)
        .unwrap()
        .query_row(
            "SELECT count(*) FROM notices WHERE source = 'health'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        usize::try_from(notices).unwrap(),
        history.history.len(),
        "one notice per stored change"
    );
}

/// The first `/health` of the test: degraded but ready, the hanging and the panicking checks
/// unhealthy and nothing else.
fn assert_first_report(addr: std::net::SocketAddr) {
    let response = http_client::get(addr, "/health", &[]);
    assert_eq!(response.status, 200, "degraded is still ready");
    assert_eq!(
        response.headers["content-type"], "application/json",
        "{response:?}"
    );
    let report: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(report["status"], "degraded", "{report}");
    assert_eq!(report["ready"], true);
    // The hanging and the panicking checks make only their own components unhealthy.
    let stuck = component(&report, "stuck");
    assert_eq!(stuck["status"], "unhealthy");
    assert_eq!(stuck["reason"], "the check did not answer within 300ms");
    let broken = component(&report, "broken");
    assert_eq!(broken["status"], "unhealthy");
    assert_eq!(
        broken["reason"],
        "the check panicked: lost the connection pool"
    );
    for healthy in [
        "drain",
        "queues",
        "sink:sqlite",
        "sink:memory",
        "data_dir",
        "upstream",
    ] {
        assert_eq!(
            component(&report, healthy)["status"],
            "healthy",
            "{healthy}: {report}"
        );
    }
}

#[test]
fn health_and_ready_over_http_with_hanging_panicking_and_failing_checks() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("instrument.db");
    let store = SqliteSink::builder().path(&db).build().unwrap();
    let memory = MemorySink::new();
    let pipeline = instrument::builder()
        .sink(store)
        .sink(memory.clone())
        .install()
        .unwrap();

    let registry = HealthRegistry::new();
    registry.watch_pipeline(&pipeline.monitor());
    // Thresholds no file system reaches: what this test judges must not depend on how full
    // the machine's disk is (the thresholds themselves are checked below).
    registry.watch_data_dir(dir.path(), DiskThresholds::new(100.0, 100.0));
    // A check that hangs until released, one that panics, and a dependency that goes down.
    let (release, hold) = std::sync::mpsc::channel::<()>();
    let hold = Mutex::new(hold);
    registry
        .component("stuck")
        .critical(false)
        .timeout(Duration::from_millis(300))
        .ttl(Duration::ZERO)
        .check(move || {
            let _ = hold.lock().unwrap().recv();
            Health::healthy()
        });
    registry
        .component("broken")
        .critical(false)
        .check(|| -> Health { panic!("lost the connection pool") });
    let upstream_down = Arc::new(AtomicBool::new(false));
    let down = Arc::clone(&upstream_down);
    registry
        .component("upstream")
        .ttl(Duration::ZERO)
        .check(move || {
            if down.load(Ordering::Relaxed) {
                Health::unhealthy("connection refused")
            } else {
                Health::healthy()
            }
        });

    let endpoint = registry
        .mount(Endpoint::builder().listen("127.0.0.1:0".parse().unwrap()))
        .start()
        .unwrap();
    let addr = endpoint.local_addr();

    assert_first_report(addr);
    let ready = http_client::get(addr, "/ready", &[]);
    assert_eq!((ready.status, &ready.body[..]), (200, &b"ready\n"[..]));

    // A critical dependency down: not ready, and /ready names it.
    upstream_down.store(true, Ordering::Relaxed);
    let ready = http_client::get(addr, "/ready", &[]);
    assert_eq!(ready.status, 503);
    assert_eq!(
        String::from_utf8_lossy(&ready.body),
        "not ready: upstream unhealthy (connection refused)\n"
    );
    let response = http_client::get(addr, "/health", &[]);
    assert_eq!(response.status, 503);
    let report: Value = serde_json::from_slice(&response.body).unwrap();
    assert_eq!(report["status"], "unhealthy");
    let still = component(&report, "stuck")["reason"].as_str().unwrap();
    assert!(
        still.starts_with("the check has not answered for ")
            && still.ends_with(", longer than its timeout of 300ms"),
        "a hung check is reported as still running, not started again: {still}"
    );

    // Back up; the hung check answers at last.
    upstream_down.store(false, Ordering::Relaxed);
    release.send(()).unwrap();
    eventually("the stuck check's answer", POLL, || {
        (registry.report().component("stuck").unwrap().status == Status::Healthy).then_some(())
    });
    assert_eq!(http_client::get(addr, "/ready", &[]).status, 200);

    // Shutting the pipeline down makes the drain check unhealthy.
    let monitor = pipeline.monitor();
    pipeline.flush().unwrap();
    let changes_before_shutdown = memory
        .notices()
        .iter()
        .filter(|n| n.source == "health")
        .count();
    assert!(changes_before_shutdown > 0, "status changes are notices");
    pipeline.shutdown().unwrap();
    assert!(!monitor.drain_running());
    let report = registry.report_at(Instant::now() + Duration::from_secs(2));
    assert_eq!(report.component("drain").unwrap().status, Status::Unhealthy);
    assert_eq!(
        report.component("drain").unwrap().reason.as_deref(),
        Some("the pipeline is shut down")
    );
    endpoint.shutdown().unwrap();

    assert_history_stored(&db);
}

#[test]
fn the_data_directory_check_judges_reachability_writability_and_free_space() {
    let dir = tempfile::tempdir().unwrap();
    let registry = HealthRegistry::new();
    registry.watch_data_dir(dir.path(), DiskThresholds::new(0.0, 100.0));
    let report = registry.report();
    let data_dir = report.component("data_dir").unwrap();
    assert_eq!(data_dir.status, Status::Degraded, "{data_dir:?}");
    let reason = data_dir.reason.as_deref().unwrap();
    assert!(
        reason.starts_with(&format!("the file system of {} (", dir.path().display()))
            && reason.ends_with("% full (degraded at 0%)"),
        "{reason}"
    );

    let missing = dir.path().join("gone");
    let registry = HealthRegistry::new();
    registry.watch_data_dir(&missing, DiskThresholds::default());
    let report = registry.report();
    let data_dir = report.component("data_dir").unwrap();
    assert_eq!(data_dir.status, Status::Unhealthy);
    assert_eq!(
        data_dir.reason.as_deref(),
        Some(
            format!(
                "cannot reach {}: No such file or directory (os error 2)",
                missing.display()
            )
            .as_str()
        )
    );
    assert!(!report.ready, "the data directory is critical");
}

#[test]
fn a_checker_thread_publishes_changes_as_they_happen() {
    let _serial = serial();
    let memory = MemorySink::new();
    let pipeline = instrument::builder()
        .sink(memory.clone())
        .install()
        .unwrap();
    let registry = HealthRegistry::new();
    let flag = Arc::new(AtomicBool::new(false));
    let down = Arc::clone(&flag);
    registry
        .component("queue")
        .ttl(Duration::from_millis(10))
        .check(move || {
            if down.load(Ordering::Relaxed) {
                Health::degraded("backlog growing")
            } else {
                Health::healthy()
            }
        });
    let checker = registry.start_checker(Duration::from_millis(20)).unwrap();
    flag.store(true, Ordering::Relaxed);
    let notice = eventually("the degraded notice", POLL, || {
        pipeline.flush().unwrap();
        memory
            .notices()
            .into_iter()
            .find(|n| n.source == "health" && n.message == "queue is degraded: backlog growing")
    });
    assert_eq!(notice.level, instrument::Level::Warn);
    let field = |k: &str| {
        notice
            .fields
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(field("component").as_deref(), Some("queue"));
    assert_eq!(field("status").as_deref(), Some("degraded"));
    assert_eq!(field("reason").as_deref(), Some("backlog growing"));
    checker.stop();
}
