//! The OTLP sink end to end, against a real OTLP/HTTP receiver: `tests/otlp_receiver/receiver.py`
//! decodes every request with the official OpenTelemetry protobuf definitions (the
//! `opentelemetry-proto` package from `PyPI`) and writes it as a JSON line. The tests run a
//! pipeline with the OTLP sink and a memory sink side by side and compare what the receiver
//! decoded with what was recorded.
//!
//! The receiver needs a Python with `opentelemetry-proto`: `$OTLP_RECEIVER_PYTHON`, else
//! `target/otlp-venv/bin/python` (`.ci/run` makes it:
//! `python3 -m venv target/otlp-venv && target/otlp-venv/bin/pip install opentelemetry-proto`),
//! else `python3`. Without one, the tests fail, saying so.

use std::collections::BTreeSet;

use std::thread;
use std::time::{Duration, Instant};

use instrument::{AuditEntry, CorrelationId, Outcome, Snapshot, instrument_performance};
use instrument_sinks::MemorySink;
use instrument_sinks::otlp::{DEFAULT_BUCKETS, OtlpHandle, OtlpSink};
use serde_json::Value;

mod otlp_receiver;
mod support;
use otlp_receiver::{accepted, attrs, int, metrics, point, received, start_receiver};
use support::serial;

#[instrument_performance]
fn parse_number(input: &str) -> Result<u64, std::num::ParseIntError> {
    thread::sleep(Duration::from_micros(200));
    input.parse()
}

fn log_records(lines: &[Value]) -> Vec<Value> {
    let mut out = Vec::new();
    for line in accepted(lines, "/v1/logs") {
        for rl in line["request"]["resource_logs"].as_array().unwrap() {
            for sl in rl["scope_logs"].as_array().unwrap() {
                out.extend(sl["log_records"].as_array().unwrap().iter().cloned());
            }
        }
    }
    out
}

/// The explicit-bucket counts of a histogram for the sink's default bounds.
fn expected_buckets(histogram: &instrument::Histogram) -> Vec<u64> {
    let bounds: Vec<u64> = DEFAULT_BUCKETS
        .iter()
        .map(|d| u64::try_from(d.as_nanos()).unwrap())
        .collect();
    let mut out = vec![0u64; bounds.len() + 1];
    for (value, n) in histogram.iter_buckets() {
        out[bounds.partition_point(|&b| b < value)] += n;
    }
    out
}

fn wait_idle(handle: &OtlpHandle) {
    assert!(
        handle.wait_idle(Duration::from_secs(60)),
        "the OTLP backlog did not empty: {:?}",
        handle.status()
    );
}

/// Checks the last accepted metrics request against the snapshot the memory sink got last.
fn check_metrics(last: &Value, snapshot: &Snapshot) {
    let m = metrics(last);
    let function = snapshot
        .calls
        .iter()
        .find(|c| c.callsite.name().ends_with("parse_number"))
        .expect("parse_number was recorded")
        .callsite
        .name();
    let calls = &m["instrument.calls"];
    assert_eq!(
        calls["sum"]["aggregation_temporality"],
        "AGGREGATION_TEMPORALITY_CUMULATIVE"
    );
    assert_eq!(calls["sum"]["is_monotonic"], true);
    let ok = snapshot.call(function, Outcome::Ok).expect("ok calls");
    let ok_point = point(calls, &[("function", function), ("outcome", "ok")]).expect("ok point");
    assert_eq!(int(&ok_point["as_int"]), ok.total.count);
    let attributes = attrs(&ok_point["attributes"]);
    assert_eq!(attributes["module"], ok.callsite.module_path());
    let err = snapshot
        .call(function, Outcome::Error)
        .expect("error calls");
    let kind = err.error_kinds[0].kind;
    let err_point = point(
        calls,
        &[
            ("function", function),
            ("outcome", "error"),
            ("error_kind", kind),
        ],
    )
    .expect("error point");
    assert_eq!(int(&err_point["as_int"]), err.total.count);

    let duration = &m["instrument.duration"];
    assert_eq!(duration["unit"], "s");
    for call in [ok, err] {
        let p = point(
            duration,
            &[("function", function), ("outcome", call.outcome.as_str())],
        )
        .expect("a duration point");
        assert_eq!(int(&p["count"]), call.histogram.count());
        let buckets: Vec<u64> = p["bucket_counts"]
            .as_array()
            .unwrap()
            .iter()
            .map(int)
            .collect();
        assert_eq!(buckets, expected_buckets(&call.histogram));
        assert_eq!(buckets.iter().sum::<u64>(), call.histogram.count());
        assert_eq!(
            p["explicit_bounds"].as_array().unwrap().len(),
            DEFAULT_BUCKETS.len()
        );
        let sum = p["sum"].as_f64().unwrap();
        let want = call.histogram.sum() as f64 / 1e9;
        assert!((sum - want).abs() <= want * 1e-9, "sum {sum} != {want}");
    }

    let files = point(&m["files_parsed_total"], &[("stage", "parse")]).expect("counter point");
    assert_eq!(
        int(&files["as_int"]),
        snapshot.counter("files_parsed_total").unwrap()
    );
    let depth = point(&m["queue_depth"], &[]).expect("gauge point");
    assert_eq!(depth["as_double"].as_f64(), snapshot.gauge("queue_depth"));
    let rows = &m["batch_rows"]["exponential_histogram"]["data_points"][0];
    let recorded = snapshot
        .call("batch_rows", Outcome::Ok)
        .expect("value histogram");
    assert_eq!(int(&rows["count"]), recorded.histogram.count());
    let sum = rows["sum"].as_f64().unwrap();
    assert!(
        (sum - recorded.histogram.sum() as f64).abs() < 0.5,
        "sum {sum}"
    );
    let positive: u64 = rows["positive"]["bucket_counts"]
        .as_array()
        .unwrap()
        .iter()
        .map(int)
        .sum();
    assert_eq!(
        positive + int(&rows["zero_count"]),
        recorded.histogram.count()
    );
}

#[test]
fn receiver_decodes_what_was_recorded() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let receiver = start_receiver(dir.path(), &[]);
    let memory = MemorySink::new();
    let sink = OtlpSink::builder()
        .endpoint(&receiver.url)
        .header("x-api-key", "test-key")
        .service_name("otlp-test")
        .instance("instance-1")
        .resource("deployment.environment", "test")
        .logs(true)
        .build()
        .unwrap();
    let otlp = sink.handle();
    let pipeline = instrument::builder()
        .sink(memory.clone())
        .sink(sink)
        .install()
        .unwrap();

    let files = instrument::metric("files_parsed_total")
        .label("stage", "parse")
        .counter()
        .unwrap();
    let depth = instrument::metric("queue_depth").gauge().unwrap();
    let rows = instrument::metric("batch_rows").histogram().unwrap();
    let id = CorrelationId::new();
    let scope = id.enter();
    for i in 0..40u64 {
        let input = if i % 5 == 0 {
            "x".to_owned()
        } else {
            i.to_string()
        };
        let _ = parse_number(&input);
        files.add(1);
        rows.record(i * 37);
    }
    depth.set(7.5);
    instrument::audit(
        AuditEntry::new("load_corpus")
            .input("corpus/a.rs")
            .output("ast/a.json"),
    )
    .unwrap();
    drop(scope);
    pipeline.flush().expect("flush");
    wait_idle(&otlp);
    let snapshot = memory.last_snapshot().expect("a snapshot");
    pipeline.shutdown().expect("shutdown");

    let lines = received(&receiver);
    let metrics_requests = accepted(&lines, "/v1/metrics");
    assert!(!metrics_requests.is_empty(), "no metrics request arrived");
    let last = metrics_requests.last().unwrap();
    assert_eq!(last["encoding"], "gzip");
    assert_eq!(last["headers"]["x-api-key"], "test-key");
    let resource = attrs(&last["request"]["resource_metrics"][0]["resource"]["attributes"]);
    assert_eq!(resource["service.name"], "otlp-test");
    assert_eq!(resource["service.instance.id"], "instance-1");
    assert_eq!(resource["deployment.environment"], "test");
    assert_eq!(resource["process.pid"], std::process::id().to_string());
    assert!(resource.contains_key("host.name"), "{resource:?}");
    check_metrics(last, &snapshot);

    // Logs: the error events and the audit entry, with the correlation id as trace id.
    let records = log_records(&lines);
    let errors: Vec<&Value> = records
        .iter()
        .filter(|r| {
            r["event_name"] == "instrument.call" && attrs(&r["attributes"])["outcome"] == "error"
        })
        .collect();
    let recorded_errors = memory
        .events()
        .iter()
        .filter(|e| e.outcome == Outcome::Error)
        .count();
    assert_eq!(errors.len(), recorded_errors);
    assert_eq!(errors.len(), 8);
    let trace = format!("{:032x}", id.get());
    for e in &errors {
        assert_eq!(e["severity_text"], "ERROR");
        assert_eq!(e["trace_id"], trace);
        assert!(attrs(&e["attributes"])["function"].ends_with("parse_number"));
    }
    let audit: Vec<&Value> = records
        .iter()
        .filter(|r| r["event_name"] == "instrument.audit")
        .collect();
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0]["body"]["string_value"], "load_corpus");
    assert_eq!(audit[0]["trace_id"], trace);
    let entry = &memory.audit()[0];
    assert_eq!(
        attrs(&audit[0]["attributes"])["audit.sequence"],
        entry.sequence.to_string()
    );

    let status = otlp.status();
    assert_eq!(status.dropped_requests, 0);
    assert_eq!(
        status.sent_requests as usize,
        accepted(&lines, "/v1/metrics").len() + accepted(&lines, "/v1/logs").len()
    );
}

/// Accepted metrics requests carry non-decreasing cumulative points, and some of them were
/// taken during the outage (between the first and the last 503) and delivered after it.
fn check_delivery_order(lines: &[Value], metrics_requests: &[&Value], function: &str) {
    let mut previous = (0u64, 0u64);
    for request in metrics_requests {
        let m = metrics(request);
        let p = point(
            &m["instrument.calls"],
            &[("function", function), ("outcome", "ok")],
        );
        let (time, count) = p.map_or((0, 0), |p| (int(&p["time_unix_nano"]), int(&p["as_int"])));
        assert!(
            time >= previous.0 && count >= previous.1,
            "cumulative points went back"
        );
        previous = (time, count);
    }
    // Requests encoded during the outage were delivered after it: some accepted points were
    // taken between the first and the last 503.
    let refused_at: Vec<u64> = lines
        .iter()
        .filter(|l| l["status"] == 503)
        .map(|l| int(&l["received_at_ns"]))
        .collect();
    let (outage_start, outage_end) = (refused_at[0], *refused_at.last().unwrap());
    let during = metrics_requests
        .iter()
        .filter(|r| {
            let m = metrics(r);
            point(
                &m["instrument.calls"],
                &[("function", function), ("outcome", "ok")],
            )
            .is_some_and(|p| (outage_start..outage_end).contains(&int(&p["time_unix_nano"])))
        })
        .count();
    assert!(during >= 1, "no point taken during the outage arrived");
}

#[test]
fn outage_with_503_loses_nothing() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // 503 with Retry-After: 1 for the first 3 s after the first request.
    let receiver = start_receiver(dir.path(), &["--fail-for", "3", "--retry-after", "1"]);
    let memory = MemorySink::new();
    let sink = OtlpSink::builder()
        .endpoint(&receiver.url)
        .interval(Duration::from_millis(200))
        .backoff(Duration::from_millis(50), Duration::from_millis(400))
        .logs(true)
        .build()
        .unwrap();
    let otlp = sink.handle();
    let pipeline = instrument::builder()
        .window(Duration::from_millis(100))
        .sink(memory.clone())
        .sink(sink)
        .install()
        .unwrap();

    let files = instrument::metric("files_parsed_total")
        .label("stage", "parse")
        .counter()
        .unwrap();
    let depth = instrument::metric("queue_depth").gauge().unwrap();
    let rows = instrument::metric("batch_rows").histogram().unwrap();
    // Recording goes on through the outage and past it: about 5 s.
    let mut sequences = BTreeSet::new();
    for i in 0..50u64 {
        let input = if i % 7 == 0 {
            "x".to_owned()
        } else {
            i.to_string()
        };
        let _ = parse_number(&input);
        files.add(2);
        rows.record(i + 1);
        depth.set(i as f64);
        instrument::audit(AuditEntry::new("step").input(format!("item-{i}"))).unwrap();
        thread::sleep(Duration::from_millis(100));
    }
    // The outage was seen while recording: the sink retried, and the pipeline never waited.
    let lines = received(&receiver);
    assert!(
        lines.iter().any(|l| l["status"] == 503),
        "the receiver never answered 503"
    );
    pipeline.flush().expect("flush after recovery");
    wait_idle(&otlp);
    let snapshot = memory.last_snapshot().unwrap();
    pipeline.shutdown().expect("shutdown");
    for entry in memory.audit() {
        sequences.insert(entry.sequence);
    }
    assert_eq!(sequences.len(), 50);

    let status = otlp.status();
    assert!(status.retries >= 1, "{status:?}");
    assert_eq!(status.dropped_requests, 0, "{status:?}");
    assert_eq!(status.backlog_requests, 0, "{status:?}");

    let lines = received(&receiver);
    let rejected = lines.iter().filter(|l| l["status"] == 503).count() as u64;
    assert_eq!(status.retries, rejected);
    // Every request the sink made was eventually accepted, in order.
    let metrics_requests = accepted(&lines, "/v1/metrics");
    assert_eq!(
        status.sent_requests as usize,
        metrics_requests.len() + accepted(&lines, "/v1/logs").len()
    );
    let function = snapshot
        .calls
        .iter()
        .find(|c| c.callsite.name().ends_with("parse_number"))
        .unwrap()
        .callsite
        .name();
    check_delivery_order(&lines, &metrics_requests, function);
    check_metrics(metrics_requests.last().unwrap(), &snapshot);

    // Every audit entry recorded during the outage arrived exactly once.
    let audit: Vec<u64> = log_records(&lines)
        .iter()
        .filter(|r| r["event_name"] == "instrument.audit")
        .map(|r| attrs(&r["attributes"])["audit.sequence"].parse().unwrap())
        .collect();
    assert_eq!(audit.len(), 50);
    assert_eq!(audit.iter().copied().collect::<BTreeSet<_>>(), sequences);
}

#[test]
fn a_full_backlog_drops_the_oldest_and_counts_them() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    // The receiver refuses everything for 4 s; the backlog holds 3 requests.
    let receiver = start_receiver(dir.path(), &["--fail-for", "4", "--retry-after", "1"]);
    let memory = MemorySink::new();
    let sink = OtlpSink::builder()
        .endpoint(&receiver.url)
        .interval(Duration::from_millis(100))
        .backoff(Duration::from_millis(50), Duration::from_millis(200))
        .backlog(16 << 20, 3)
        .build()
        .unwrap();
    let otlp = sink.handle();
    let pipeline = instrument::builder()
        .window(Duration::from_millis(100))
        .sink_tick(Duration::from_millis(100))
        .sink(memory.clone())
        .sink(sink)
        .install()
        .unwrap();
    let files = instrument::metric("files_parsed_total")
        .label("stage", "parse")
        .counter()
        .unwrap();
    let depth = instrument::metric("queue_depth").gauge().unwrap();
    let rows = instrument::metric("batch_rows").histogram().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while otlp.status().dropped_requests == 0 {
        assert!(
            Instant::now() < deadline,
            "nothing was dropped: {:?}",
            otlp.status()
        );
        let _ = parse_number("12");
        let _ = parse_number("x");
        files.add(1);
        rows.record(3);
        depth.set(1.0);
        thread::sleep(Duration::from_millis(50));
    }
    // The drop is counted in the self-metrics every sink sees.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        pipeline.flush().ok();
        let counted = memory
            .snapshots()
            .iter()
            .filter_map(|s| s.counter("instrument_otlp_dropped_requests_total"))
            .max()
            .unwrap_or(0);
        if counted > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the drop never reached the self-metrics"
        );
        thread::sleep(Duration::from_millis(100));
    }
    let backlog = memory
        .last_snapshot()
        .and_then(|s| s.gauge("instrument_otlp_backlog_requests"))
        .expect("the backlog gauge");
    assert!((0.0..=3.0).contains(&backlog), "{backlog}");
    assert!(otlp.status().backlog_requests <= 3);
    // After the outage the latest totals still arrive: cumulative points lose no counts.
    let _ = parse_number("1");
    pipeline.flush().ok();
    wait_idle(&otlp);
    pipeline.flush().expect("flush after recovery");
    wait_idle(&otlp);
    let snapshot = memory.last_snapshot().unwrap();
    pipeline.shutdown().expect("shutdown");
    let lines = received(&receiver);
    let last = *accepted(&lines, "/v1/metrics")
        .last()
        .expect("a request got through");
    check_metrics(last, &snapshot);
}
