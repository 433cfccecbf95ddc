//! System metrics end to end: the `sysinfo` sampler on its own thread records gauges that reach
//! the `SQLite` store (rows of `gauges`) and a Prometheus scrape of `/metrics`, and the
//! `system` health check reads its samples.

use std::time::Duration;

use instrument_sinks::health::checks::SystemThresholds;
use instrument_sinks::health::{HealthRegistry, Status};
use instrument_sinks::prometheus::PrometheusSink;
use instrument_sinks::system::SystemSampler;
use instrument_sinks::{MemorySink, SqliteSink};

mod http_client;
mod support;
use http_client::samples;
use support::serial;

/// The store has a row per window for the gauges, with their labels.
fn assert_stored(db: &std::path::Path, mount: &str) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let rows: i64 = conn
        .query_row(
            "SELECT count(*) FROM gauges JOIN callsites ON callsites.id = gauges.callsite_id
             WHERE callsites.name = 'process_resident_memory_bytes' AND gauges.value > 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(rows >= 1, "process_resident_memory_bytes rows: {rows}");
    let labels: String = conn
        .query_row(
            "SELECT labels FROM callsites WHERE name = 'system_disk_total_bytes'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(labels, serde_json::json!({ "mount": mount }).to_string());
}

#[test]
fn system_gauges_reach_sqlite_and_metrics_from_the_samplers_own_thread() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("instrument.db");
    let store = SqliteSink::builder().path(&db).build().unwrap();
    let prometheus = PrometheusSink::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .build()
        .unwrap();
    let addr = prometheus.local_addr().unwrap();
    let memory = MemorySink::new();
    let pipeline = instrument::builder()
        .sink(store)
        .sink(prometheus)
        .sink(memory.clone())
        .install()
        .unwrap();
    let sampler = SystemSampler::builder()
        .interval(Duration::from_millis(100))
        .data_dir(dir.path())
        .start()
        .unwrap();
    // CPU percentages need two samples.
    let sample = sampler
        .wait_for_samples(3, Duration::from_secs(60))
        .expect("three samples within a minute");
    assert!(sample.memory_total_bytes > 0);
    assert!(sample.memory_used_bytes <= sample.memory_total_bytes);
    let cpu = sample
        .cpu_percent
        .expect("CPU use from the second sample on");
    assert!((0.0..=100.0).contains(&cpu), "{cpu}");
    assert!(sample.process_resident_bytes > 0);
    let threads = sample.process_threads.expect("threads are known on Linux");
    assert!(
        threads >= 3,
        "this test's threads, the drain, the sampler: {threads}"
    );
    assert!(
        sample
            .process_open_fds
            .expect("open files are known on Linux")
            > 0
    );
    let disk = sample
        .disk
        .clone()
        .expect("the data directory's file system");
    assert!(disk.total_bytes > 0 && disk.available_bytes <= disk.total_bytes);

    pipeline.flush().unwrap();
    let snapshot = memory.last_snapshot().unwrap();
    for name in [
        "system_cpu_usage_percent",
        "system_memory_total_bytes",
        "system_memory_available_bytes",
        "system_memory_usage_percent",
        "system_load1",
        "system_disk_usage_percent",
        "process_cpu_usage_percent",
        "process_resident_memory_bytes",
        "process_threads",
        "process_open_fds",
    ] {
        assert!(snapshot.gauge(name).is_some(), "{name} in the snapshot");
    }
    let cores = snapshot
        .gauges
        .iter()
        .filter(|g| g.callsite.name() == "system_cpu_core_usage_percent")
        .count();
    assert!(cores >= 1, "one gauge per core");
    assert_eq!(cores, sample.cpu_core_percent.len());

    // /metrics serves them.
    let scrape = http_client::get(addr, "/metrics", &[]);
    let series = samples(&scrape.text());
    let total = series
        .get("system_memory_total_bytes")
        .unwrap_or_else(|| panic!("system_memory_total_bytes in {}", scrape.text()));
    let total: f64 = total.parse().unwrap();
    assert!(
        (total - sample.memory_total_bytes as f64).abs() < 1.0,
        "{total}"
    );
    assert!(
        series
            .keys()
            .any(|k| k.starts_with("system_cpu_core_usage_percent{core=\"0\"")),
        "per-core series"
    );
    assert!(
        series.keys().any(|k| k.starts_with(&format!(
            "system_disk_usage_percent{{mount=\"{}\"",
            disk.mount
        ))),
        "the data directory's disk"
    );

    sampler.stop();
    pipeline.shutdown().unwrap();
    assert_stored(&db, &disk.mount);
}

#[test]
fn the_system_check_judges_the_latest_sample_against_thresholds() {
    let sampler = SystemSampler::builder()
        .interval(Duration::from_millis(100))
        .start()
        .unwrap();
    // CPU use is known from the second sample on; until then the check says `unknown`.
    let _ = sampler
        .wait_for_samples(2, Duration::from_secs(60))
        .expect("two samples within a minute");
    // Thresholds above 100 % are never reached: healthy.
    let registry = HealthRegistry::new();
    registry.watch_system(
        sampler.handle(),
        SystemThresholds::default()
            .cpu_degraded(101.0)
            .memory(101.0, 102.0),
    );
    assert_eq!(registry.report().status, Status::Healthy);
    // Memory degraded at 0 %: always reached, and the component is not critical.
    let strict = HealthRegistry::new();
    strict.watch_system(
        sampler.handle(),
        SystemThresholds::default().memory(0.0, 101.0),
    );
    let report = strict.report();
    let system = report.component("system").unwrap();
    assert_eq!(system.status, Status::Degraded);
    assert!(
        system.reason.as_deref().unwrap().starts_with("memory "),
        "{system:?}"
    );
    assert_eq!(
        report.status,
        Status::Degraded,
        "not critical: at most degraded"
    );
    sampler.stop();
}
