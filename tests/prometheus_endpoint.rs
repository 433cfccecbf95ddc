//! The Prometheus sink over real HTTP: a pipeline records, the sink serves `/metrics` on a
//! loopback port, and the tests scrape it with hyper's client (and, for hostile clients, raw
//! sockets), check both formats, gzip, escaping, merging, the cardinality limit, a busy port,
//! concurrent scrapes while recording, and slow clients; `promtool check metrics` (Debian's
//! `prometheus` package) must accept the text format.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use instrument::testing::advance;
use instrument::{
    ClockSource, CorrelationId, PipelineGuard, SinkHealth, Unit, instrument_performance,
};
use instrument_sinks::http::axum::routing::get;
use instrument_sinks::http::{Endpoint, HttpError};
use instrument_sinks::prometheus::{BindFailure, Format, PrometheusError, PrometheusSink};

mod http_client;
mod support;
use http_client::{Response, samples};
use support::{name, serial, status, within};

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const ACCEPT_OPENMETRICS: (&str, &str) = (
    "accept",
    "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
);

#[instrument_performance]
fn parse(text: &str, millis: u64) -> Result<u32, std::num::ParseIntError> {
    advance(Duration::from_millis(millis));
    text.parse()
}

#[instrument_performance]
fn work(n: u64) -> u64 {
    n.wrapping_mul(31)
}

fn loopback() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// A sink on a free loopback port, a pipeline on the mock clock with windows long enough that
/// only flushes cut snapshots, and the sink's address.
fn install_mock() -> (PipelineGuard, SocketAddr) {
    let sink = PrometheusSink::builder()
        .listen(loopback())
        .build()
        .expect("a free port");
    let addr = sink.local_addr().expect("listening");
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .window(Duration::from_secs(3600))
        .sink(sink)
        .install()
        .expect("no other pipeline is installed");
    (pipeline, addr)
}

fn scrape(addr: SocketAddr) -> Response {
    http_client::get(addr, "/metrics", &[])
}

/// Runs `promtool check metrics` on `exposition` and panics with its report if it objects.
fn promtool_accepts(exposition: &str) {
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "`promtool` is not installed: install Debian's `prometheus` package \
             (`apt-get install prometheus`; `.ci/run` installs it)"
        ),
        Err(e) => panic!("cannot run promtool: {e}"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(exposition.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "promtool check metrics rejects the exposition:\n{}{}\n--- exposition ---\n{exposition}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Samples of the exposition without the sink's own scrape statistics, which change with
/// every render.
fn stable_samples(exposition: &str) -> std::collections::BTreeMap<String, String> {
    let mut all = samples(exposition);
    all.retain(|k, _| !k.starts_with("instrument_prometheus_"));
    all
}

fn labels(function: &str, outcome: &str) -> String {
    format!("function=\"{function}\",module=\"prometheus_endpoint\",outcome=\"{outcome}\"")
}

/// Three `ok` calls of 3 ms, an error of 20 ms under a new correlation id (returned), a
/// counter, a gauge and a value histogram.
fn record_some_of_everything() -> CorrelationId {
    for _ in 0..3 {
        assert_eq!(parse("1", 3), Ok(1));
    }
    let id = CorrelationId::new();
    assert!(instrument::with_correlation(id, || parse("x", 20)).is_err());
    instrument::counter!("files_parsed_total", 5, "stage" => "parse");
    instrument::gauge!("queue_depth", 7.0);
    let sizes = instrument::metric("payload_bytes")
        .unit(Unit::Bytes)
        .description("Payload sizes.")
        .histogram()
        .unwrap();
    for size in [100, 200, 300, 400] {
        sizes.record(size);
    }
    id
}

/// What `record_some_of_everything` left, in `OpenMetrics` with the error call's exemplar, and
/// gzip-compressed: the same samples as `text`.
fn openmetrics_and_gzip(addr: SocketAddr, text: &str, id: CorrelationId) {
    let error = labels(name!("parse"), "error");
    // OpenMetrics, asked for as Prometheus asks.
    let response = http_client::get(addr, "/metrics", &[ACCEPT_OPENMETRICS]);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some(OPENMETRICS));
    let om = response.text();
    assert!(om.ends_with("\n# EOF\n"), "{om}");
    assert!(om.contains("# TYPE instrument_calls counter\n"), "{om}");
    assert!(om.contains(
        "# TYPE instrument_duration_seconds histogram\n# UNIT instrument_duration_seconds seconds\n"
    ));
    assert!(om.contains("# TYPE payload_bytes summary\n# UNIT payload_bytes bytes\n"));
    let exemplar = format!(
        "instrument_duration_seconds_bucket{{{error},le=\"0.05\"}} 1 # {{correlation_id=\"{id}\"}} 0.02 "
    );
    assert!(
        om.lines().any(|l| l.starts_with(&exemplar)),
        "no exemplar line starting {exemplar} in\n{om}"
    );
    assert_eq!(stable_samples(&om), stable_samples(text));

    // gzip when the client takes it, the same content.
    let response = http_client::get(addr, "/metrics", &[("accept-encoding", "gzip")]);
    assert_eq!(response.header("content-encoding"), Some("gzip"));
    assert_eq!(response.header("content-type"), Some(TEXT));
    assert_eq!(stable_samples(&response.text()), stable_samples(text));
    let response = http_client::get(
        addr,
        "/metrics",
        &[ACCEPT_OPENMETRICS, ("accept-encoding", "gzip, br")],
    );
    assert_eq!(response.header("content-encoding"), Some("gzip"));
    assert!(response.text().ends_with("# EOF\n"));
}

#[test]
fn text_and_openmetrics_with_exemplars_and_gzip() {
    let _serial = serial();
    let (pipeline, addr) = install_mock();
    let id = record_some_of_everything();
    pipeline.flush().expect("flush");

    let response = scrape(addr);
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some(TEXT));
    assert_eq!(response.header("content-encoding"), None);
    let text = response.text();
    promtool_accepts(&text);
    let s = samples(&text);
    let parse_name = name!("parse");
    let ok = labels(parse_name, "ok");
    let error = labels(parse_name, "error");
    let expect = [
        (format!("instrument_calls_total{{{ok}}}"), "3"),
        (
            format!(
                "instrument_calls_total{{{error},error_kind=\"core::num::error::ParseIntError\"}}"
            ),
            "1",
        ),
        (
            format!("instrument_duration_seconds_bucket{{{ok},le=\"0.001\"}}"),
            "0",
        ),
        (
            format!("instrument_duration_seconds_bucket{{{ok},le=\"0.005\"}}"),
            "3",
        ),
        (
            format!("instrument_duration_seconds_bucket{{{ok},le=\"+Inf\"}}"),
            "3",
        ),
        (format!("instrument_duration_seconds_sum{{{ok}}}"), "0.009"),
        (format!("instrument_duration_seconds_count{{{ok}}}"), "3"),
        (
            format!("instrument_duration_seconds_bucket{{{error},le=\"0.01\"}}"),
            "0",
        ),
        (
            format!("instrument_duration_seconds_bucket{{{error},le=\"0.05\"}}"),
            "1",
        ),
        (
            format!("instrument_duration_quantile_seconds{{{ok},quantile=\"0.99\"}}"),
            "0.003",
        ),
        ("files_parsed_total{stage=\"parse\"}".to_owned(), "5"),
        ("queue_depth".to_owned(), "7"),
        ("payload_bytes{quantile=\"0.5\"}".to_owned(), "200"),
        ("payload_bytes_sum".to_owned(), "1000"),
        ("payload_bytes_count".to_owned(), "4"),
        (
            "instrument_sink_errors_total{sink=\"prometheus\"}".to_owned(),
            "0",
        ),
        (
            "instrument_sink_health{sink=\"prometheus\",state=\"healthy\"}".to_owned(),
            "1",
        ),
    ];
    for (series, value) in expect {
        assert_eq!(
            s.get(&series).map(String::as_str),
            Some(value),
            "{series} in\n{text}"
        );
    }
    let recorded: u64 = s["instrument_events_recorded_total"].parse().unwrap();
    assert!(recorded >= 4, "{recorded} records reached the drain");
    assert!(text.contains("# HELP payload_bytes Payload sizes.\n# TYPE payload_bytes summary\n"));

    openmetrics_and_gzip(addr, &text, id);

    // Other paths say what is served.
    let response = http_client::get(addr, "/nothing-here", &[]);
    assert_eq!(response.status, 404);
    assert!(response.text().contains("/metrics"));
}

#[instrument_performance(name = "shared_step")]
fn step_a() {
    instrument::counter!("merged_total", 2, "source" => "both");
}

#[instrument_performance(name = "shared_step")]
fn step_b() {
    instrument::counter!("merged_total", 3, "source" => "both");
}

#[test]
fn series_of_the_same_name_and_labels_are_merged() {
    let _serial = serial();
    let (pipeline, addr) = install_mock();
    step_a();
    step_b();
    step_b();
    pipeline.flush().expect("flush");
    let text = scrape(addr).text();
    promtool_accepts(&text);
    // `samples` fails on a series written twice.
    let s = samples(&text);
    let shared = labels("shared_step", "ok");
    assert_eq!(s[&format!("instrument_calls_total{{{shared}}}")], "3");
    assert_eq!(
        s[&format!("instrument_duration_seconds_count{{{shared}}}")],
        "3"
    );
    assert_eq!(s["merged_total{source=\"both\"}"], "8");
}

#[test]
fn label_values_are_escaped_and_clashing_names_are_refused() {
    let _serial = serial();
    let (pipeline, addr) = install_mock();
    let awkward = "C:\\data\\\"quoted\"\nnext line";
    instrument::metric("escaped_total")
        .label("path", awkward)
        .description("Paths with\nbackslashes \\ and \"quotes\".")
        .counter()
        .unwrap()
        .add(1);
    instrument::metric("clash_total").counter().unwrap().add(4);
    instrument::metric("clash_total").gauge().unwrap().set(1.0);
    pipeline.flush().expect("flush");
    pipeline
        .flush()
        .expect("the health after the first flush is reported");

    let text = scrape(addr).text();
    promtool_accepts(&text);
    assert!(
        text.contains("escaped_total{path=\"C:\\\\data\\\\\\\"quoted\\\"\\nnext line\"} 1\n"),
        "{text}"
    );
    assert!(text.contains("# HELP escaped_total Paths with\\nbackslashes \\\\ and \"quotes\".\n"));
    let om = http_client::get(addr, "/metrics", &[ACCEPT_OPENMETRICS]).text();
    assert!(om.contains("# HELP escaped Paths with\\nbackslashes \\\\ and \\\"quotes\\\".\n"));

    // The counter came first; the gauge of the same name is not exported, and says why.
    let s = samples(&text);
    assert_eq!(s["clash_total"], "4");
    assert_eq!(s["instrument_prometheus_name_clashes_total"], "1");
    match status(&pipeline, "prometheus").health {
        SinkHealth::Degraded(message) => {
            assert!(message.contains("gauge `clash_total`"), "{message}");
            assert!(message.contains("counter"), "{message}");
        }
        other => panic!("expected a degraded sink, got {other:?}"),
    }
}

#[test]
fn label_sets_past_the_cardinality_limit_share_the_overflow_series() {
    let _serial = serial();
    let sink = PrometheusSink::builder()
        .listen(loopback())
        .build()
        .unwrap();
    let addr = sink.local_addr().unwrap();
    let pipeline = instrument::builder()
        .cardinality_limit(3)
        .sink(sink)
        .install()
        .unwrap();
    for path in ["/a", "/b", "/c", "/d", "/e"] {
        instrument::metric("requests_total")
            .label("path", path)
            .counter()
            .unwrap()
            .add(1);
    }
    pipeline.flush().expect("flush");
    let text = scrape(addr).text();
    promtool_accepts(&text);
    let s = samples(&text);
    for path in ["/a", "/b", "/c"] {
        assert_eq!(s[&format!("requests_total{{path=\"{path}\"}}")], "1");
    }
    assert_eq!(s["requests_total{overflow=\"true\"}"], "2");
    assert_eq!(
        s.keys().filter(|k| k.starts_with("requests_total")).count(),
        4
    );
    let overflows = pipeline.self_metrics().callsite_overflows;
    assert!(overflows >= 2);
    assert_eq!(
        s["instrument_callsite_overflow_total"],
        overflows.to_string()
    );
}

#[test]
fn a_busy_port_is_a_clear_error_or_an_unhealthy_sink() {
    let _serial = serial();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();

    let error = PrometheusSink::builder().listen(addr).build().unwrap_err();
    assert!(matches!(
        error,
        PrometheusError::Endpoint(HttpError::Bind { .. })
    ));
    assert_eq!(
        error.to_string(),
        format!("cannot listen on {addr}: address already in use")
    );

    // As configured: the sink is built, reports itself unhealthy, and the pipeline goes on.
    let sink = PrometheusSink::builder()
        .listen(addr)
        .on_bind_failure(BindFailure::Unhealthy)
        .build()
        .expect("a busy port is not an error here");
    assert_eq!(sink.local_addr(), None);
    let pipeline = instrument::builder()
        .sink_tick(Duration::from_millis(50))
        .sink(sink)
        .install()
        .unwrap();
    work(1);
    pipeline
        .flush()
        .expect("the pipeline runs without its endpoint");
    match status(&pipeline, "prometheus").health {
        SinkHealth::Unhealthy(message) => assert!(
            message.contains(&addr.to_string()) && message.contains("address already in use"),
            "{message}"
        ),
        other => panic!("expected an unhealthy sink, got {other:?}"),
    }

    // Once the port is free, a tick starts the endpoint, with everything recorded meanwhile.
    drop(taken);
    let response = within(
        "the endpoint to come up",
        Duration::from_secs(60),
        move || loop {
            if let Ok(response) = http_client::try_get(addr, "/metrics", &[]) {
                return response;
            }
            thread::sleep(Duration::from_millis(50));
        },
    );
    let s = samples(&response.text());
    assert_eq!(
        s[&format!("instrument_calls_total{{{}}}", labels(name!("work"), "ok"))],
        "1"
    );
    pipeline.flush().unwrap();
    assert_eq!(status(&pipeline, "prometheus").health, SinkHealth::Healthy);
}

#[test]
fn remote_addresses_and_duplicate_routes_are_refused() {
    let _serial = serial();
    let error = PrometheusSink::builder()
        .listen("0.0.0.0:0".parse().unwrap())
        .build()
        .unwrap_err();
    assert!(
        error
            .to_string()
            .starts_with("refusing to listen on 0.0.0.0:0: other machines can reach it"),
        "{error}"
    );
    let remote = PrometheusSink::builder()
        .endpoint(
            Endpoint::builder()
                .listen("0.0.0.0:0".parse().unwrap())
                .allow_remote(true),
        )
        .build()
        .expect("allowed explicitly");
    drop(remote);

    let taken = Endpoint::builder()
        .listen(loopback())
        .route("/metrics", get(|| async { "mine" }));
    let error = PrometheusSink::builder()
        .endpoint(taken)
        .build()
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "the route /metrics is registered twice on the operations endpoint"
    );
}

#[test]
fn other_parts_mount_routes_on_the_same_endpoint_which_stops_with_the_pipeline() {
    let _serial = serial();
    let endpoint = Endpoint::builder()
        .listen(loopback())
        .route("/health", get(|| async { "ok\n" }));
    let sink = PrometheusSink::builder()
        .endpoint(endpoint)
        .build()
        .unwrap();
    let addr = sink.local_addr().unwrap();
    let pipeline = instrument::builder().sink(sink).install().unwrap();
    work(2);
    pipeline.flush().unwrap();
    assert_eq!(http_client::get(addr, "/health", &[]).text(), "ok\n");
    assert!(scrape(addr).text().contains("instrument_calls_total{"));

    pipeline.shutdown().expect("shutdown");
    let refused = TcpStream::connect(addr);
    assert!(
        refused.is_err(),
        "the endpoint still accepts after shutdown"
    );
}

/// Checks one scrape: each histogram series' buckets are cumulative and its `+Inf` bucket
/// equals its `_count`; returns the calls of `work`.
fn check_scrape(text: &str) -> u64 {
    let s = samples(text);
    let mut histograms = 0;
    for (series, count) in &s {
        let Some(rest) = series.strip_prefix("instrument_duration_seconds_count{") else {
            continue;
        };
        histograms += 1;
        let labels = rest.strip_suffix('}').unwrap();
        let prefix = format!("instrument_duration_seconds_bucket{{{labels},le=\"");
        let mut buckets: Vec<(f64, u64)> = s
            .iter()
            .filter_map(|(k, v)| {
                let le = k.strip_prefix(&prefix)?.strip_suffix("\"}")?;
                let le = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    le.parse().unwrap()
                };
                Some((le, v.parse().unwrap()))
            })
            .collect();
        buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(
            buckets.windows(2).all(|w| w[0].1 <= w[1].1),
            "buckets of {labels} are not cumulative: {buckets:?}"
        );
        assert_eq!(
            buckets.last(),
            Some(&(f64::INFINITY, count.parse().unwrap())),
            "+Inf bucket and _count of {labels}"
        );
    }
    assert!(histograms >= 1, "{text}");
    let work = format!("instrument_calls_total{{{}}}", labels(name!("work"), "ok"));
    s.get(&work).map_or(0, |v| v.parse().unwrap())
}

#[test]
fn concurrent_scrapes_while_recording() {
    const RECORDERS: usize = 4;
    const SCRAPERS: usize = 3;
    const SCRAPES: usize = 12;
    let _serial = serial();
    let sink = PrometheusSink::builder()
        .listen(loopback())
        .build()
        .unwrap();
    let addr = sink.local_addr().unwrap();
    let pipeline = instrument::builder()
        .window(Duration::from_millis(100))
        .sink(sink)
        .install()
        .unwrap();
    work(0);
    pipeline.flush().unwrap();

    // Recorders call until every scraper is done, so each scrape happens while they record.
    let recording = Arc::new(AtomicBool::new(true));
    let recorders: Vec<_> = (0..RECORDERS)
        .map(|_| {
            let recording = Arc::clone(&recording);
            thread::spawn(move || {
                let mut calls = 0u64;
                while recording.load(Ordering::Relaxed) {
                    std::hint::black_box(work(calls));
                    calls += 1;
                }
                calls
            })
        })
        .collect();
    let scrapers: Vec<_> = (0..SCRAPERS)
        .map(|t| {
            thread::spawn(move || {
                let mut last = 0;
                for scrape in 0..SCRAPES {
                    let headers: &[(&str, &str)] = match (t + scrape) % 3 {
                        0 => &[],
                        1 => &[ACCEPT_OPENMETRICS],
                        _ => &[("accept-encoding", "gzip")],
                    };
                    let response = http_client::get(addr, "/metrics", headers);
                    assert_eq!(response.status, 200);
                    let calls = check_scrape(&response.text());
                    assert!(calls >= last, "calls went backwards: {last} then {calls}");
                    last = calls;
                }
            })
        })
        .collect();
    for scraper in scrapers {
        scraper.join().expect("a scraper failed");
    }
    recording.store(false, Ordering::Relaxed);
    let recorded: u64 = recorders.into_iter().map(|r| r.join().unwrap()).sum();
    pipeline.flush().unwrap();
    let text = scrape(addr).text();
    assert_eq!(check_scrape(&text), recorded + 1);
    promtool_accepts(&text);
}

/// Reads until the server closes the connection; `false` if it was still open after 60 s (a
/// guard against hanging, not a timing assertion).
fn closed_by_server(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buffer = [0u8; 1024];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn slow_and_hostile_clients_cannot_stall_the_endpoint() {
    let _serial = serial();
    let endpoint = Endpoint::builder()
        .listen(loopback())
        .header_read_timeout(Duration::from_millis(500))
        .max_connections(4);
    let sink = PrometheusSink::builder()
        .endpoint(endpoint)
        .build()
        .unwrap();
    let addr = sink.local_addr().unwrap();
    let pipeline = instrument::builder().sink(sink).install().unwrap();
    work(3);
    pipeline.flush().unwrap();

    // A client that starts a request and never finishes it (slowloris)...
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Slow: 1")
        .unwrap();
    // ...does not keep others from scraping,
    let started = Instant::now();
    assert_eq!(scrape(addr).status, 200);
    // and is disconnected once its headers are overdue.
    assert!(
        closed_by_server(&mut slow),
        "the slow client is still connected"
    );
    assert!(started.elapsed() >= Duration::from_millis(400));

    // Clients holding every connection slot without sending anything are disconnected too, and
    // a scrape waiting behind them is served.
    let idle: Vec<TcpStream> = (0..4).map(|_| TcpStream::connect(addr).unwrap()).collect();
    let response = within(
        "a scrape behind 4 idle connections",
        Duration::from_secs(60),
        move || scrape(addr),
    );
    assert_eq!(response.status, 200);
    for mut stream in idle {
        assert!(
            closed_by_server(&mut stream),
            "an idle client is still connected"
        );
    }

    // Oversized headers are refused.
    let mut huge = TcpStream::connect(addr).unwrap();
    let request = format!(
        "GET /metrics HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(64 * 1024)
    );
    let _ = huge.write_all(request.as_bytes());
    huge.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut head = [0u8; 12];
    huge.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 431");

    // So are bodies beyond the limit, from their announced length.
    let mut big = TcpStream::connect(addr).unwrap();
    big.write_all(b"POST /metrics HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1048576\r\n\r\n")
        .unwrap();
    big.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    big.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 413");

    // The pipeline was never held up.
    work(4);
    pipeline.flush().unwrap();
    let s = samples(&scrape(addr).text());
    assert_eq!(
        s[&format!("instrument_calls_total{{{}}}", labels(name!("work"), "ok"))],
        "2"
    );
}

#[test]
fn connections_are_closed_at_their_maximum_age() {
    let _serial = serial();
    // Headers may take longer than the test waits, so only the age can close the connection.
    let endpoint = Endpoint::builder()
        .listen(loopback())
        .header_read_timeout(Duration::from_secs(600))
        .max_connection_age(Duration::from_millis(300))
        .route("/ping", get(|| async { "pong" }))
        .start()
        .unwrap();
    let mut stream = TcpStream::connect(endpoint.local_addr()).unwrap();
    assert!(
        closed_by_server(&mut stream),
        "the connection outlived its age"
    );
    assert_eq!(
        http_client::get(endpoint.local_addr(), "/ping", &[]).text(),
        "pong"
    );
    endpoint.shutdown().unwrap();
}

#[test]
fn render_without_an_endpoint() {
    let _serial = serial();
    let sink = PrometheusSink::builder()
        .serve(false)
        .prefix("etl")
        .buckets([Duration::from_millis(1), Duration::from_millis(10)])
        .quantiles(false)
        .build()
        .unwrap();
    assert_eq!(sink.local_addr(), None);
    let handle = sink.handle();
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .sink(sink)
        .install()
        .unwrap();
    parse("7", 5).unwrap();
    pipeline.flush().unwrap();
    let text = handle.render(Format::Text);
    let s = samples(&text);
    let ok = labels(name!("parse"), "ok");
    assert_eq!(s[&format!("etl_calls_total{{{ok}}}")], "1");
    assert_eq!(
        s[&format!("etl_duration_seconds_bucket{{{ok},le=\"0.001\"}}")],
        "0"
    );
    assert_eq!(
        s[&format!("etl_duration_seconds_bucket{{{ok},le=\"0.01\"}}")],
        "1"
    );
    assert!(!text.contains("quantile"));
    assert!(!text.contains("instrument_"));

    assert!(matches!(
        PrometheusSink::builder()
            .serve(false)
            .prefix("9lives")
            .build(),
        Err(PrometheusError::Prefix { .. })
    ));
    assert!(matches!(
        PrometheusSink::builder().serve(false).buckets([]).build(),
        Err(PrometheusError::Buckets { .. })
    ));
}
