//! A real Prometheus server scrapes the Prometheus sink: the test starts Debian's `prometheus`
//! binary on a loopback port with exemplar storage on and a generated configuration that scrapes
//! this test process every second, then asks Prometheus' HTTP API for the series and exemplars
//! it stored. The binary must be installed (`apt-get install prometheus`; `.ci/run` installs
//! it): without it the test fails, saying so.

use std::collections::HashSet;
use std::thread;
use std::time::Duration;

use instrument::{CorrelationId, instrument_performance};
use instrument_sinks::prometheus::PrometheusSink;

mod http_client;
mod prometheus_process;
mod server_process;
mod support;
use prometheus_process::Prometheus;
use support::{eventually, name, serial};

/// How often the test looks again at Prometheus.
const POLL: Duration = Duration::from_millis(200);

#[instrument_performance]
fn transform(input: &str) -> Result<usize, std::num::ParseIntError> {
    // Long enough that the error calls land in a bucket of their own.
    thread::sleep(Duration::from_millis(2));
    input.parse()
}

/// The single value of an instant query, once it has exactly one series.
fn single_value(prometheus: &Prometheus, promql: &str) -> Option<String> {
    let result = prometheus.query(promql);
    match result.as_slice() {
        [series] => series["value"][1].as_str().map(str::to_owned),
        _ => None,
    }
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

    let prometheus = prometheus_process::start(dir.path(), target, &[]);
    eventually("the target to be scraped and up", POLL, || {
        single_value(&prometheus, "up{job=\"instrument\"}").filter(|v| v == "1")
    });

    let function = name!("transform");
    let selector = |metric: &str, outcome: &str| {
        format!("{metric}{{job=\"instrument\",function=\"{function}\",outcome=\"{outcome}\"}}")
    };
    let ok_calls = eventually("the ok calls", POLL, || {
        single_value(&prometheus, &selector("instrument_calls_total", "ok"))
    });
    assert_eq!(ok_calls, "7");
    let errors = eventually("the error calls", POLL, || {
        single_value(&prometheus, &selector("instrument_calls_total", "error"))
    });
    assert_eq!(errors, "2");
    let error_kind = prometheus.query(&selector("instrument_calls_total", "error"));
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
    let exemplars = eventually("an exemplar", POLL, || {
        let found = prometheus.exemplars(&selector("instrument_duration_seconds_bucket", "error"));
        (!found.is_empty()).then_some(found)
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
