//! The operations page's JSON API over real HTTP: every endpoint's answer against the shape
//! `docs/operations-page.md` documents (and, for the store's, the shape `instrumentctl --json`
//! prints, from the same queries), acknowledgement, the embedded assets' types and caching, and
//! bad input answered `4xx` with a message, never `500`.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use instrument_sinks::http::Endpoint;
use instrument_sinks::ops::OpsPage;
use instrument_sinks::sqlite::query::{Store, TimeRange};
use serde_json::Value;

mod http_client;
mod ops_process;
mod support;

use ops_process::{Options, eventually, output_of};
use support::serial;

fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let response = http_client::get(addr, path, &[]);
    assert_eq!(
        response.header("content-type"),
        Some("application/json"),
        "{path}"
    );
    assert_eq!(response.header("cache-control"), Some("no-store"), "{path}");
    let text = response.text();
    let value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"));
    (response.status, value)
}

fn ok_json(addr: SocketAddr, path: &str) -> Value {
    let (status, value) = get_json(addr, path);
    assert_eq!(status, 200, "{path}: {value}");
    value
}

/// `POST` with an optional content type and body, over a plain socket: status and body.
fn post(addr: SocketAddr, path: &str, content_type: Option<&str>, body: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).expect("connects");
    stream
        .set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(content_type) = content_type {
        let _ = write!(request, "Content-Type: {content_type}\r\n");
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().expect("a status code");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The keys of a JSON object.
fn keys(value: &Value) -> BTreeSet<&str> {
    value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
    names.iter().copied().collect()
}

/// Asserts that `actual` has the same shape as `expected`: the same keys in every object, the
/// same JSON types (`null` matching anything optional), arrays compared by their first item.
fn same_shape(path: &str, actual: &Value, expected: &Value) {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            assert_eq!(keys(actual), keys(expected), "keys at {path}");
            for (k, v) in a {
                same_shape(&format!("{path}.{k}"), v, &e[k]);
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            if let (Some(a), Some(e)) = (a.first(), e.first()) {
                same_shape(&format!("{path}[0]"), a, e);
            }
        }
        (_, Value::Null) | (Value::Null, _) => {}
        (a, e) => assert_eq!(
            std::mem::discriminant(a),
            std::mem::discriminant(e),
            "type at {path}: {a} vs {e}"
        ),
    }
}

#[test]
fn every_endpoint_answers_its_documented_shape() {
    let _serial = serial();
    let process = ops_process::start(Options {
        ack: true,
        keep_working: false,
        history: instrument_sinks::ops::DEFAULT_HISTORY,
        units_at_start: 20,
    });
    let addr = process.addr;

    check_config(addr, &process.db);
    check_live(addr);
    check_store_answers(addr, &process.db);
    check_alerts_and_ack(addr, &process);
    check_health(addr, &process.db);
}

/// `/api/config`: every part there, acknowledgement on.
fn check_config(addr: SocketAddr, db: &std::path::Path) {
    let config = ok_json(addr, "/api/config");
    assert_eq!(
        keys(&config),
        set(&[
            "version",
            "live",
            "history_seconds",
            "store",
            "alerts",
            "health",
            "ack"
        ])
    );
    assert_eq!(config["live"], true);
    assert_eq!(config["history_seconds"], 900);
    assert_eq!(config["store"], db.display().to_string());
    assert_eq!(
        (&config["alerts"], &config["health"], &config["ack"]),
        (&Value::Bool(true), &Value::Bool(true), &Value::Bool(true))
    );
}

/// `/api/live`: every stage, its points aligned with the time axis, totals since install.
fn check_live(addr: SocketAddr) {
    // Live: every stage, its points aligned with the time axis, totals since install.
    let live = ok_json(addr, "/api/live");
    assert_eq!(
        keys(&live),
        set(&[
            "sequence",
            "reset",
            "history_seconds",
            "updated_at",
            "time",
            "callsites",
            "untracked_callsites",
            "system",
            "pipeline",
            "sinks"
        ])
    );
    assert_eq!(live["reset"], true);
    let points = live["time"].as_array().unwrap().len();
    assert!(points >= 1, "{live}");
    let stages: Vec<&str> = live["callsites"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        stages,
        ["parse_file", "read_source", "transform", "write_output"]
    );
    for callsite in live["callsites"].as_array().unwrap() {
        check_live_callsite(callsite, points);
    }
    let parse = &live["callsites"][0]["totals"];
    assert_eq!((&parse["calls"], &parse["errors"]), (&20.into(), &4.into()));
    assert_eq!(parse["error_ratio"], 0.2);
    let transform = &live["callsites"][2]["totals"];
    assert_eq!(transform["calls"], 16);
    assert!(transform["max_ns"].as_u64().unwrap() >= 20_000_000);
    assert_eq!(
        keys(&live["system"]),
        set(&["cpu_percent", "memory_percent", "gauges"])
    );
    for key in [
        "events_recorded",
        "events_dropped",
        "drain_cycle_ns",
        "snapshot_delay_ns",
        "notices_dropped",
    ] {
        assert!(live["pipeline"].get(key).is_some(), "pipeline.{key}");
    }
    let sinks: Vec<&str> = live["sinks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(sinks, ["ops", "sqlite", "alerts"]);
    // Only what is new after a sequence.
    let sequence = live["sequence"].as_u64().unwrap();
    let newer = ok_json(addr, &format!("/api/live?after={sequence}"));
    assert_eq!(newer["reset"], false);
    assert!(newer["sequence"].as_u64().unwrap() >= sequence);
    let new_points = newer["time"].as_array().unwrap().len();
    assert_eq!(
        newer["callsites"][0]["p99_ns"].as_array().unwrap().len(),
        new_points
    );
}

/// One callsite of `/api/live`: its keys, and `points` points in each series.
fn check_live_callsite(callsite: &Value, points: usize) {
    assert_eq!(
        keys(callsite),
        set(&[
            "id",
            "name",
            "module",
            "kind",
            "labels",
            "calls_per_second",
            "error_ratio",
            "p50_ns",
            "p99_ns",
            "totals"
        ])
    );
    assert_eq!(callsite["kind"], "function");
    for series in ["calls_per_second", "error_ratio", "p50_ns", "p99_ns"] {
        assert_eq!(
            callsite[series].as_array().unwrap().len(),
            points,
            "{series}"
        );
    }
    assert_eq!(
        keys(&callsite["totals"]),
        set(&[
            "calls",
            "ok",
            "errors",
            "panics",
            "cancelled",
            "error_ratio",
            "timed",
            "mean_ns",
            "p50_ns",
            "p99_ns",
            "max_ns"
        ])
    );
}

/// The store's answers.
fn check_store_answers(addr: SocketAddr, db: &std::path::Path) {
    // The store's answers: the shapes of the library's queries, which `instrumentctl --json`
    // prints, and the same figures.
    let store = Store::open(db).unwrap();
    let summary = ok_json(addr, "/api/summary?since=all");
    let expected = serde_json::to_value(store.summary(TimeRange::ALL).unwrap()).unwrap();
    same_shape("summary", &summary, &expected);
    let calls = |v: &Value| -> Vec<(String, u64, u64)> {
        v["callsites"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                (
                    c["name"].as_str().unwrap().to_owned(),
                    c["calls"].as_u64().unwrap(),
                    c["errors"].as_u64().unwrap(),
                )
            })
            .collect()
    };
    assert_eq!(calls(&summary), calls(&expected));
    assert!(calls(&summary).contains(&("parse_file".to_owned(), 20, 4)));

    // Runs and the call graph: the library's answers, as `instrumentctl runs|callgraph --json`.
    let runs = ok_json(addr, "/api/runs");
    assert_eq!(runs, serde_json::to_value(store.runs().unwrap()).unwrap());
    assert_eq!(runs.as_array().unwrap().len(), 1, "{runs}");
    let graph = ok_json(addr, "/api/callgraph");
    let expected = serde_json::to_value(store.callgraph(None).unwrap()).unwrap();
    same_shape("callgraph", &graph, &expected);
    assert_eq!(graph["nodes"], expected["nodes"]);
    let run = runs[0]["id"].as_i64().unwrap();
    let of_run = ok_json(addr, &format!("/api/callgraph?run={run}"));
    assert_eq!(of_run["run_id"], run);

    let slow = ok_json(addr, "/api/slow?top=3&since=all");
    let expected = serde_json::to_value(store.slow(3, TimeRange::ALL).unwrap()).unwrap();
    same_shape("slow", &slow, &expected);
    assert_eq!(slow, expected);
    assert_eq!(slow.as_array().unwrap().len(), 3);
    let slowest = &slow[0];
    assert_eq!(slowest["callsite"], "transform");
    assert_eq!(slowest["reason"], "slow");
    assert!(slowest["fields"]["n"].is_number());
    let correlation = slowest["correlation"].as_str().unwrap().to_owned();

    let errors = ok_json(addr, "/api/errors?since=all");
    let expected = serde_json::to_value(store.errors(TimeRange::ALL).unwrap()).unwrap();
    same_shape("errors", &errors, &expected);
    assert_eq!(errors[0]["callsite"], "parse_file");
    assert_eq!(errors[0]["kind"], "syntax");
    assert_eq!(errors[0]["count"], 4);
    assert_eq!(errors[0]["latest"]["fields"]["path"], "src/file19.rs");

    let trace = ok_json(addr, &format!("/api/trace/{correlation}"));
    let expected = serde_json::to_value(store.trace(&correlation).unwrap()).unwrap();
    assert_eq!(trace, expected);
    let types: Vec<(&str, &str)> = trace["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let what = e
                .get("callsite")
                .and_then(Value::as_str)
                .filter(|_| e["type"] == "event")
                .or_else(|| e.get("operation").and_then(Value::as_str))
                .unwrap_or_default();
            (e["type"].as_str().unwrap(), what)
        })
        .collect();
    // The slow transform, then the audit entries of its unit of work, in time order.
    assert_eq!(
        types,
        [
            ("audit", "parse"),
            ("event", "transform"),
            ("audit", "write_output"),
            ("audit", "emit")
        ],
        "{trace}"
    );

    let output = output_of(3);
    let trail = ok_json(
        addr,
        &format!("/api/audit/{}", http_client::encode(&output)),
    );
    let expected = serde_json::to_value(store.audit_trail(&output).unwrap()).unwrap();
    assert_eq!(trail, expected);
    let lineage: Vec<(&str, &str, u64)> = trail["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["operation"].as_str().unwrap(),
                e["direction"].as_str().unwrap(),
                e["depth"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(lineage, [("parse", "upstream", 2), ("emit", "upstream", 1)]);
}

/// Alerts, live and stored, and acknowledgement.
fn check_alerts_and_ack(addr: SocketAddr, process: &ops_process::OpsProcess) {
    // Alerts: live, with the engine's ids, and stored, as `instrumentctl alerts --json`.
    let firing = eventually("the parse_file alert to fire", || {
        let alerts = ok_json(addr, "/api/alerts/live");
        alerts
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["state"] == "firing")
            .cloned()
    });
    assert_eq!(
        keys(&firing),
        set(&[
            "id",
            "rule",
            "fingerprint",
            "state",
            "severity",
            "labels",
            "summary",
            "value",
            "started_at",
            "fired_at",
            "resolved_at",
            "silenced",
            "escalated",
            "acked",
            "acked_by"
        ])
    );
    assert_eq!(firing["rule"], "ParseErrors");
    assert_eq!(firing["labels"]["function"], "parse_file");
    let stored = eventually("the alert to be stored", || {
        let stored = ok_json(addr, "/api/alerts?all=true");
        (!stored.as_array().unwrap().is_empty()).then_some(stored)
    });
    let expected =
        serde_json::to_value(Store::open(&process.db).unwrap().alerts(true).unwrap()).unwrap();
    same_shape("alerts", &stored, &expected);
    assert_eq!(stored[0]["rule"], "ParseErrors");

    // Acknowledging: the only write.
    let id = firing["id"].as_u64().unwrap();
    let path = format!("/api/alerts/{id}/ack");
    let (status, body) = post(addr, &path, Some("application/json"), r#"{"by": "ann"}"#);
    assert_eq!(status, 200, "{body}");
    let acked: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&acked["state"], &acked["acked_by"]),
        (&"acknowledged".into(), &"ann".into())
    );
    assert_eq!(
        process.alerts.alerts()[0].acknowledged.as_ref().unwrap().1,
        "ann"
    );
    let (status, body) = post(addr, &path, Some("application/json"), "{}");
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("already acknowledged by ann"), "{body}");
}

/// Health, live and stored.
fn check_health(addr: SocketAddr, db: &std::path::Path) {
    // Health: live, as `/health` reports it, and stored, as `instrumentctl health --json`.
    let now = ok_json(addr, "/api/health/now");
    assert_eq!(
        keys(&now),
        set(&["status", "ready", "checked_at", "components"])
    );
    assert!(
        now["components"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["name"] == "drain")
    );
    let history = eventually("health changes to be stored", || {
        let history = ok_json(addr, "/api/health?since=all&limit=100");
        (!history["latest"].as_array().unwrap().is_empty()).then_some(history)
    });
    let expected = serde_json::to_value(
        Store::open(db)
            .unwrap()
            .health(TimeRange::ALL, 100)
            .unwrap(),
    )
    .unwrap();
    same_shape("health", &history, &expected);
    assert_eq!(keys(&history), set(&["latest", "history"]));
}

#[test]
fn bad_input_is_a_4xx_with_a_message_never_a_500() {
    let _serial = serial();
    let process = ops_process::start(Options {
        ack: true,
        keep_working: false,
        history: instrument_sinks::ops::DEFAULT_HISTORY,
        units_at_start: 5,
    });
    let addr = process.addr;
    let cases: &[(&str, u16, &str)] = &[
        ("/api/trace/zz", 400, "is not a correlation id"),
        (
            "/api/trace/0123456789abcdef",
            404,
            "no event, audit entry or notice",
        ),
        (
            "/api/audit/nothing-made-this",
            404,
            "no audit entry names `nothing-made-this`",
        ),
        (
            "/api/summary?since=yesterday",
            400,
            "invalid since `yesterday`",
        ),
        ("/api/summary?until=soon", 400, "invalid until `soon`"),
        (
            "/api/summary?colour=red",
            400,
            "unknown query parameter `colour` for /api/summary",
        ),
        ("/api/summary?since=1h&since=2h", 400, "`since` given twice"),
        (
            "/api/summary?since=%ZZ",
            400,
            "not valid percent-encoded UTF-8",
        ),
        ("/api/slow?top=abc", 400, "invalid top `abc`"),
        ("/api/slow?top=0", 400, "invalid top `0`"),
        ("/api/slow?top=1000000", 400, "from 1 to 1000"),
        ("/api/errors?since=-1h", 400, "invalid since"),
        ("/api/alerts?all=maybe", 400, "invalid all `maybe`"),
        ("/api/health?limit=-1", 400, "invalid limit `-1`"),
        ("/api/live?after=x", 400, "invalid after `x`"),
        ("/api/config?x=1", 400, "it takes none"),
        ("/api/callgraph?run=abc", 400, "is not a run id"),
        ("/api/callgraph?run=999", 404, "999"),
        ("/api/runs?all=1", 400, "unknown query parameter"),
        (
            "/api/trace/0123456789abcdef?x=1",
            400,
            "unknown query parameter",
        ),
    ];
    for (path, status, message) in cases {
        let (got, body) = get_json(addr, path);
        assert_eq!(got, *status, "{path}: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(error.contains(message), "{path}: {error}");
    }
    // Malformed path captures and methods are refused by the router, with a message too.
    for (path, status) in [("/api/trace/%FF%FE", 400), ("/api/audit/%C0", 400)] {
        let response = http_client::get(addr, path, &[]);
        assert_eq!(response.status, status, "{path}");
        assert!(!response.text().trim().is_empty(), "{path}");
    }
    let (status, _) = post(addr, "/api/summary", Some("application/json"), "{}");
    assert_eq!(status, 405);

    check_bad_acks(addr);
}

/// Acknowledgement: unknown alerts, missing content type, bad bodies.
fn check_bad_acks(addr: SocketAddr) {
    // Acknowledgement: unknown alerts, missing content type, bad bodies.
    for (path, content_type, body, status, message) in [
        (
            "/api/alerts/999/ack",
            Some("application/json"),
            "{}",
            404,
            "no pending or firing alert",
        ),
        (
            "/api/alerts/999/ack",
            None,
            "",
            415,
            "Content-Type: application/json",
        ),
        (
            "/api/alerts/999/ack",
            Some("text/plain"),
            "{}",
            415,
            "Content-Type",
        ),
        (
            "/api/alerts/999/ack",
            Some("application/json"),
            "{",
            400,
            "not JSON",
        ),
        (
            "/api/alerts/999/ack",
            Some("application/json"),
            r#"{"by": 3}"#,
            400,
            "`by`",
        ),
        (
            "/api/alerts/999/ack",
            Some("application/json"),
            "[]",
            400,
            "a JSON object",
        ),
    ] {
        let (got, body) = post(addr, path, content_type, body);
        assert_eq!(got, status, "{path} {content_type:?}: {body}");
        let value: Value = serde_json::from_str(&body).unwrap();
        assert!(value["error"].as_str().unwrap().contains(message), "{body}");
    }
}

#[test]
fn acknowledging_can_be_turned_off() {
    let _serial = serial();
    let process = ops_process::start(Options {
        ack: false,
        keep_working: false,
        history: instrument_sinks::ops::DEFAULT_HISTORY,
        units_at_start: 10,
    });
    let addr = process.addr;
    assert_eq!(ok_json(addr, "/api/config")["ack"], false);
    let id = eventually("the parse_file alert to fire", || {
        process.alerts.alerts().first().map(|a| a.id)
    });
    let (status, body) = post(
        addr,
        &format!("/api/alerts/{id}/ack"),
        Some("application/json"),
        "{}",
    );
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("turned off"), "{body}");
    assert!(process.alerts.alerts()[0].acknowledged.is_none());
}

#[test]
fn missing_parts_answer_404_and_an_unreadable_store_503() {
    let dir = tempfile::tempdir().unwrap();
    let endpoint = OpsPage::new()
        .mount(Endpoint::builder().listen("127.0.0.1:0".parse().unwrap()))
        .start()
        .unwrap();
    let addr = endpoint.local_addr();
    let config = ok_json(addr, "/api/config");
    assert_eq!(
        (
            &config["live"],
            &config["store"],
            &config["alerts"],
            &config["ack"]
        ),
        (
            &Value::Bool(false),
            &Value::Null,
            &Value::Bool(false),
            &Value::Bool(false)
        )
    );
    for (path, message) in [
        ("/api/live", "no OpsSink"),
        ("/api/summary", "no SQLite store configured"),
        ("/api/trace/0123456789abcdef", "no SQLite store configured"),
        ("/api/alerts/live", "no alert engine"),
        ("/api/health/now", "no health registry"),
    ] {
        let (status, body) = get_json(addr, path);
        assert_eq!(status, 404, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains(message), "{body}");
    }
    endpoint.shutdown().unwrap();

    // A store that is not there (yet), or is not a store: 503 naming the file.
    let missing = dir.path().join("gone.db");
    let foreign = dir.path().join("notes.txt");
    std::fs::write(&foreign, "not a database at all, just some text").unwrap();
    for (path, message) in [
        (&missing, "does not exist"),
        (&foreign, "not a SQLite database"),
    ] {
        let endpoint = OpsPage::new()
            .store(path)
            .mount(Endpoint::builder().listen("127.0.0.1:0".parse().unwrap()))
            .start()
            .unwrap();
        let (status, body) = get_json(endpoint.local_addr(), "/api/summary");
        assert_eq!(status, 503, "{body}");
        let error = body["error"].as_str().unwrap();
        assert!(error.contains(message), "{error}");
        assert!(error.contains(&path.display().to_string()), "{error}");
        endpoint.shutdown().unwrap();
    }
}

#[test]
fn assets_are_embedded_with_their_types_and_caching() {
    let endpoint = OpsPage::new()
        .mount(Endpoint::builder().listen("127.0.0.1:0".parse().unwrap()))
        .start()
        .unwrap();
    let addr = endpoint.local_addr();
    let page = http_client::get(addr, "/", &[]);
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("cache-control"), Some("no-cache"));
    let html = page.text();
    // Nothing is loaded from another machine: every script and style is local.
    for attribute in ["src=\"", "href=\""] {
        for (i, _) in html.match_indices(attribute) {
            let url = &html[i + attribute.len()..];
            assert!(
                url.starts_with('/') || url.starts_with("data:") || url.starts_with('#'),
                "{}",
                &url[..url.find('"').unwrap()]
            );
        }
    }
    for (path, content_type, cache) in [
        (
            "/assets/ops.js",
            "text/javascript; charset=utf-8",
            "no-cache",
        ),
        ("/assets/ops.css", "text/css; charset=utf-8", "no-cache"),
        (
            "/assets/uPlot-1.6.32.iife.min.js",
            "text/javascript; charset=utf-8",
            "public, max-age=31536000, immutable",
        ),
        (
            "/assets/uPlot-1.6.32.min.css",
            "text/css; charset=utf-8",
            "public, max-age=31536000, immutable",
        ),
        (
            "/assets/LICENSE-uPlot.txt",
            "text/plain; charset=utf-8",
            "no-cache",
        ),
    ] {
        assert!(
            html.contains(path) || content_type.starts_with("text/plain"),
            "{path}"
        );
        let response = http_client::get(addr, path, &[("accept-encoding", "gzip")]);
        assert_eq!(response.status, 200, "{path}");
        assert_eq!(
            response.header("content-type"),
            Some(content_type),
            "{path}"
        );
        assert_eq!(response.header("cache-control"), Some(cache), "{path}");
        assert_eq!(response.header("x-content-type-options"), Some("nosniff"));
        assert!(!response.text().is_empty());
        // Revalidation: the same ETag answers 304 without a body.
        let etag = response.header("etag").expect("an ETag").to_owned();
        let again = http_client::get(addr, path, &[("if-none-match", &etag)]);
        assert_eq!(again.status, 304, "{path}");
        assert!(again.body.is_empty());
        let other = http_client::get(addr, path, &[("if-none-match", "\"0000\"")]);
        assert_eq!(other.status, 200, "{path}");
    }
    let licence = http_client::get(addr, "/assets/LICENSE-uPlot.txt", &[]).text();
    assert!(licence.starts_with("The MIT License (MIT)"));
    endpoint.shutdown().unwrap();
}
