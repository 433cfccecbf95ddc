//! A real Prometheus server scrapes the Prometheus sink: the test starts Debian's `prometheus`
//! binary on a loopback port with exemplar storage on and a generated configuration that scrapes
//! this test process every second, then asks Prometheus' HTTP API for the series and exemplars
//! it stored. The binary must be installed (`apt-get install prometheus`; `.ci/run` installs
//! it): without it the test fails, saying so.

use std::collections::HashSet;
use std::fs::File;
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use instrument::{CorrelationId, instrument_performance};
use instrument_sinks::prometheus::PrometheusSink;
use serde_json::Value;

mod http_client;
mod support;
use http_client::encode;
use support::{name, serial};

#[instrument_performance]
fn transform(input: &str) -> Result<usize, std::num::ParseIntError> {
    // Long enough that the error calls land in a bucket of their own.
    thread::sleep(Duration::from_millis(2));
    input.parse()
}

/// The Prometheus process; killed and reaped when dropped, its log printed if the test failed.
struct Prometheus {
    child: Child,
    addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            eprintln!("--- prometheus log ---\n{log}");
        }
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
}

fn start_prometheus(dir: &Path, target: SocketAddr) -> Prometheus {
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: instrument\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )
    .unwrap();
    let addr = free_port();
    let log = dir.join("prometheus.log");
    let out = File::create(&log).unwrap();
    let child = Command::new("prometheus")
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--enable-feature=exemplar-storage")
        .stdout(Stdio::from(out.try_clone().unwrap()))
        .stderr(Stdio::from(out))
        .spawn();
    let child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "the `prometheus` binary is not installed: install Debian's `prometheus` package \
             (`apt-get install prometheus`; `.ci/run` installs it)"
        ),
        Err(e) => panic!("cannot start prometheus: {e}"),
    };
    Prometheus { child, addr, log }
}

/// Polls `check` every 200 ms until it returns `Some`, panicking with `what` after 90 s (a
/// guard against waiting for ever, not a timing assertion).
fn eventually<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        thread::sleep(Duration::from_millis(200));
    }
}

/// Runs an instant query; the result vector.
fn query(prometheus: &Prometheus, promql: &str) -> Vec<Value> {
    let response = http_client::get(
        prometheus.addr,
        &format!("/api/v1/query?query={}", encode(promql)),
        &[],
    );
    let json: Value = serde_json::from_slice(&response.body).expect("JSON");
    assert_eq!(json["status"], "success", "{promql}: {json}");
    json["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The single value of an instant query, once it has exactly one series.
fn single_value(prometheus: &Prometheus, promql: &str) -> Option<String> {
    let result = query(prometheus, promql);
    match result.as_slice() {
        [series] => series["value"][1].as_str().map(str::to_owned),
        _ => None,
    }
}

/// The exemplars Prometheus stored for the series `selector` selects, over the last and next
/// ten minutes; `None` while there are none.
fn exemplars(prometheus: &Prometheus, selector: &str) -> Option<Vec<Value>> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let response = http_client::get(
        prometheus.addr,
        &format!(
            "/api/v1/query_exemplars?query={}&start={}&end={}",
            encode(selector),
            now - 600,
            now + 600
        ),
        &[],
    );
    let json: Value = serde_json::from_slice(&response.body).expect("JSON");
    assert_eq!(json["status"], "success", "{json}");
    let found: Vec<Value> = json["data"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|series| series["exemplars"].as_array().cloned().unwrap_or_default())
        .collect();
    (!found.is_empty()).then_some(found)
}

#[test]
fn a_real_prometheus_scrapes_the_counts_and_exemplars() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let sink = PrometheusSink::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .build()
        .expect("a free port");
    let target = sink.local_addr().unwrap();
    let pipeline = instrument::builder().sink(sink).install().unwrap();

    for i in 0..7 {
        transform(&i.to_string()).unwrap();
    }
    let mut ids = HashSet::new();
    for _ in 0..2 {
        let id = CorrelationId::new();
        ids.insert(id.to_string());
        assert!(instrument::with_correlation(id, || transform("not a number")).is_err());
    }
    pipeline.flush().expect("flush");

    let prometheus = start_prometheus(dir.path(), target);
    eventually("Prometheus to be ready", || {
        http_client::try_get(prometheus.addr, "/-/ready", &[])
            .ok()
            .filter(|r| r.status == 200)
    });
    eventually("the target to be scraped and up", || {
        single_value(&prometheus, "up{job=\"instrument\"}").filter(|v| v == "1")
    });

    let function = name!("transform");
    let selector = |metric: &str, outcome: &str| {
        format!("{metric}{{job=\"instrument\",function=\"{function}\",outcome=\"{outcome}\"}}")
    };
    let ok_calls = eventually("the ok calls", || {
        single_value(&prometheus, &selector("instrument_calls_total", "ok"))
    });
    assert_eq!(ok_calls, "7");
    let errors = eventually("the error calls", || {
        single_value(&prometheus, &selector("instrument_calls_total", "error"))
    });
    assert_eq!(errors, "2");
    let error_kind = query(&prometheus, &selector("instrument_calls_total", "error"));
    assert_eq!(
        error_kind[0]["metric"]["error_kind"],
        "core::num::error::ParseIntError"
    );
    assert_eq!(
        single_value(
            &prometheus,
            &selector("instrument_duration_seconds_count", "ok")
        ),
        Some("7".to_owned())
    );
    let inf = format!(
        "instrument_duration_seconds_bucket{{job=\"instrument\",function=\"{function}\",outcome=\"ok\",le=\"+Inf\"}}"
    );
    assert_eq!(single_value(&prometheus, &inf), Some("7".to_owned()));
    // Prometheus computes a p99 from the buckets; the calls slept at least 2 ms.
    let p99: f64 = single_value(
        &prometheus,
        &format!(
            "histogram_quantile(0.99, {})",
            selector("instrument_duration_seconds_bucket", "ok")
        ),
    )
    .expect("a p99")
    .parse()
    .unwrap();
    assert!(p99 >= 0.002, "p99 {p99}");

    // Exemplars: stored from the OpenMetrics scrape, each naming a real call.
    let exemplars = eventually("an exemplar", || {
        exemplars(
            &prometheus,
            &selector("instrument_duration_seconds_bucket", "error"),
        )
    });
    for exemplar in &exemplars {
        let id = exemplar["labels"]["correlation_id"]
            .as_str()
            .expect("a correlation id");
        assert!(
            ids.contains(id),
            "exemplar {exemplar} names no recorded call ({ids:?})"
        );
        let seconds: f64 = exemplar["value"].as_str().unwrap().parse().unwrap();
        assert!(seconds >= 0.002, "exemplar value {seconds}");
    }
    drop(prometheus);
    drop(pipeline);
}
