//! With `instrument`'s `serde` feature, what sinks receive serializes to the JSON that
//! docs/data-types.md describes: `snake_case` names, RFC 3339 times with microseconds, integer
//! nanoseconds in `_ns` fields, lower-case enum strings, labels and fields as maps.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instrument::testing::advance;
use instrument::{
    AuditEntry, Batch, ClockSource, CorrelationId, Level, Notice, PipelineGuard, Sink, SinkError,
    StartInfo, instrument_performance,
};
use instrument_sinks::MemorySink;
use serde_json::{Value, json};

mod support;
use support::{events_of, install, name, serial};

#[instrument_performance(capture(text, attempt))]
fn parse(text: &str, attempt: u32) -> Result<u32, std::num::ParseIntError> {
    advance(Duration::from_millis(3));
    let _ = attempt;
    text.parse()
}

#[instrument_performance(audit, capture(%id))]
fn copy_file(id: &str) {
    advance(Duration::from_millis(2));
}

/// `value` serialized to JSON text and parsed back, as a reader of a sink's output sees it.
fn json_of(value: &impl serde::Serialize) -> Value {
    serde_json::from_str(&serde_json::to_string(value).expect("serializes")).expect("parses")
}

/// The time an RFC 3339 string names, checking its form: UTC, exactly six fractional digits.
fn time_of(value: &Value) -> SystemTime {
    let text = value
        .as_str()
        .unwrap_or_else(|| panic!("not a string: {value}"));
    let fraction = text
        .strip_suffix('Z')
        .and_then(|t| t.rsplit_once('.'))
        .unwrap_or_else(|| panic!("not UTC with a fraction: {text}"))
        .1;
    assert_eq!(fraction.len(), 6, "six fractional digits: {text}");
    assert!(fraction.bytes().all(|b| b.is_ascii_digit()), "{text}");
    humantime::parse_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// `time` truncated to the microsecond, as the serialized form keeps it.
fn micros(time: SystemTime) -> SystemTime {
    let since = time.duration_since(UNIX_EPOCH).unwrap();
    UNIX_EPOCH + Duration::from_micros(since.as_micros() as u64)
}

/// The entry of `list` whose `callsite.name` is `name` (and `outcome`, when given).
fn entry<'a>(list: &'a Value, name: &str, outcome: Option<&str>) -> &'a Value {
    list.as_array()
        .expect("a list")
        .iter()
        .find(|e| e["callsite"]["name"] == name && outcome.is_none_or(|o| e["outcome"] == o))
        .unwrap_or_else(|| panic!("no {name} {outcome:?} in {list:#}"))
}

/// What every test here records: two `ok` calls and one `error` call with captured arguments
/// (the error under a correlation id, which it returns), a manual audit entry (returned) and
/// an audited call, a counter and a gauge with labels; flushed.
fn record(sink: &MemorySink) -> (PipelineGuard, CorrelationId, AuditEntry) {
    let pipeline = install(sink);
    parse("41", 1).unwrap();
    parse("42", 2).unwrap();
    let id = CorrelationId::new();
    instrument::with_correlation(id, || parse("x1", 3)).unwrap_err();
    let manual = AuditEntry::new("copy")
        .input("a.rs")
        .output("b.rs")
        .actor("etl")
        .field("bytes", &42);
    instrument::audit(manual.clone()).unwrap();
    copy_file("f-7");
    instrument::counter!("rows_written_total", 5, "table" => "files");
    instrument::gauge!("pending_files", 12.5, "stage" => "parse"; unit = Count, description = "Files waiting.");
    pipeline.flush().unwrap();
    (pipeline, id, manual)
}

#[test]
fn a_snapshot_serializes_calls_counters_and_gauges() {
    let _serial = serial();
    let sink = MemorySink::new();
    let _pipeline = record(&sink);

    // The snapshot, with its calls, counters, gauges and self-metrics.
    let snapshot = sink.last_snapshot().unwrap();
    let json = json_of(&*snapshot);
    assert_eq!(json["sequence"], snapshot.sequence);
    assert_eq!(json["reason"], "flush");
    assert_eq!(
        time_of(&json["window_start"]),
        micros(snapshot.window_start)
    );
    assert_eq!(time_of(&json["window_end"]), micros(snapshot.window_end));

    let ok = entry(&json["calls"], name!("parse"), Some("ok"));
    assert_eq!(
        ok["callsite"],
        json!({
            "name": name!("parse"),
            "module": module_path!(),
            "file": file!(),
            "line": ok["callsite"]["line"].as_u64().expect("an integer line"),
            "kind": "function",
            "labels": {},
            "unit": null,
            "description": null,
        })
    );
    assert_eq!(ok["window"]["count"], 2);
    assert_eq!(ok["total"]["timed"], 2);
    assert_eq!(ok["total"]["dropped"], 0);
    assert_eq!(
        ok["total"]["sum_ns"], 6_000_000,
        "two calls of 3 ms: {ok:#}"
    );
    for key in ["min_ns", "max_ns", "p50_ns", "p90_ns", "p99_ns", "p999_ns"] {
        assert_eq!(ok["window"][key], 3_000_000, "{key}: {ok:#}");
    }
    assert!(ok["total"].get("sum").is_none(), "durations only as _ns");
    assert_eq!(ok["error_kinds"], json!([]));
    for key in ["histogram", "window_histogram"] {
        let histogram = &ok[key];
        assert_eq!(histogram["count"], 2, "{key}: {histogram:#}");
        assert_eq!(histogram["sum"], 6_000_000);
        assert_eq!(histogram["exact_below"], 2048);
        assert_eq!(histogram["sub_buckets"], 1024);
        let buckets = histogram["buckets"].as_array().unwrap();
        assert_eq!(buckets.len(), 1, "{histogram:#}");
        assert_eq!(buckets[0][1], 2);
        // The serialized histogram rebuilds into the one the sink received.
        let rebuilt: instrument::Histogram = serde_json::from_value(histogram.clone()).unwrap();
        let received = snapshot
            .call(name!("parse"), instrument::Outcome::Ok)
            .unwrap();
        assert_eq!(rebuilt.quantile(0.5), received.histogram.quantile(0.5));
    }

    let errors = entry(&json["calls"], name!("parse"), Some("error"));
    assert_eq!(
        errors["error_kinds"],
        json!([{"kind": "core::num::error::ParseIntError", "window": 1, "total": 1}])
    );

    let rows = entry(&json["counters"], "rows_written_total", None);
    assert_eq!(rows["window"], 5);
    assert_eq!(rows["total"], 5);
    assert_eq!(rows["callsite"]["kind"], "counter");
    assert_eq!(rows["callsite"]["labels"], json!({"table": "files"}));

    let pending = entry(&json["gauges"], "pending_files", None);
    assert_eq!(pending["value"], 12.5);
    assert_eq!(pending["callsite"]["labels"], json!({"stage": "parse"}));
    assert_eq!(pending["callsite"]["unit"], "count");
    assert_eq!(pending["callsite"]["description"], "Files waiting.");

    let metrics = &json["self_metrics"];
    assert!(
        metrics["events_recorded"].as_u64().unwrap() >= 4,
        "{metrics:#}"
    );
    assert!(metrics["drain_cycle_ns"].is_u64(), "{metrics:#}");
    assert!(metrics.get("drain_cycle").is_none());
}

#[test]
fn an_event_serializes_its_call_with_fields_as_a_map() {
    let _serial = serial();
    let sink = MemorySink::new();
    let (_pipeline, id, _) = record(&sink);

    // The failed call's event.
    let events = events_of(&sink, name!("parse"));
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = json_of(&events[0]);
    assert_eq!(event["callsite"]["name"], name!("parse"));
    assert_eq!(event["outcome"], "error");
    assert_eq!(event["error_kind"], "core::num::error::ParseIntError");
    assert_eq!(time_of(&event["start"]), micros(events[0].start));
    assert_eq!(event["duration_ns"], 3_000_000);
    assert_eq!(event["thread"]["id"], events[0].thread.id);
    assert_eq!(event["correlation"], id.to_string());
    assert_eq!(event["correlation"].as_str().unwrap().len(), 16);
    assert_eq!(event["fields"], json!({"text": "x1", "attempt": 3}));
    assert_eq!(event["reason"], "outcome");
}

#[test]
fn audit_entries_serialize_with_their_callsite_when_they_have_one() {
    let _serial = serial();
    let sink = MemorySink::new();
    let (_pipeline, _, manual) = record(&sink);

    // Audit entries: the manual one, then the audited call's.
    let entries = sink.audit();
    assert_eq!(entries.len(), 2, "{entries:#?}");
    let manual_json = json_of(&entries[0]);
    assert_eq!(
        manual_json,
        json!({
            "sequence": entries[0].sequence,
            "operation": "copy",
            "timestamp": manual_json["timestamp"],
            "inputs": ["a.rs"],
            "outputs": ["b.rs"],
            "actor": "etl",
            "correlation": null,
            "outcome": null,
            "error_kind": null,
            "duration_ns": null,
            "fields": {"bytes": "42"},
            "callsite": null,
        })
    );
    assert_eq!(time_of(&manual_json["timestamp"]), micros(manual.timestamp));
    let call = json_of(&entries[1]);
    assert_eq!(call["operation"], name!("copy_file"));
    assert_eq!(call["outcome"], "ok");
    assert_eq!(call["duration_ns"], 2_000_000);
    assert_eq!(call["fields"], json!({"id": "f-7"}));
    assert_eq!(call["callsite"]["name"], name!("copy_file"));
    assert_eq!(call["callsite"]["kind"], "function");
}

#[test]
fn self_metrics_serialize_with_each_sink_status() {
    let _serial = serial();
    let sink = MemorySink::new();
    let (pipeline, _, _) = record(&sink);

    // Self-metrics as the pipeline reports them.
    let reported = pipeline.self_metrics();
    let metrics = json_of(&reported);
    assert_eq!(metrics["events_recorded"], reported.events_recorded);
    assert_eq!(metrics["threads"], reported.threads);
    assert_eq!(
        metrics["drain_cycle_ns"],
        u64::try_from(reported.drain_cycle.as_nanos()).unwrap()
    );
    let status = &metrics["sinks"][0];
    assert_eq!(status["name"], "memory");
    assert_eq!(status["errors"], 0);
    assert_eq!(status["delivered"], reported.sinks[0].delivered);
    assert_eq!(status["audit_delivered"], reported.sinks[0].audit_delivered);
    assert_eq!(status["health"], json!({"status": "healthy"}));
    assert_eq!(
        status["lost"],
        json!({"batches": 0, "events": 0, "snapshots": 0, "audit_entries": 0})
    );
    assert_eq!(status["last_error"], Value::Null);
}

/// Serializes what it is given as it arrives, as a file or network sink would.
#[derive(Clone, Default)]
struct JsonSink(Arc<Mutex<(Option<Value>, Vec<Value>)>>);

impl Sink for JsonSink {
    fn name(&self) -> &'static str {
        "json"
    }
    fn start(&mut self, info: &StartInfo) -> Result<(), SinkError> {
        let text = serde_json::to_string(info).map_err(|e| SinkError::with_source("start", e))?;
        self.0.lock().unwrap().0 = Some(serde_json::from_str(&text).unwrap());
        Ok(())
    }
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let text = serde_json::to_string(batch).map_err(|e| SinkError::with_source("write", e))?;
        self.0
            .lock()
            .unwrap()
            .1
            .push(serde_json::from_str(&text).unwrap());
        Ok(())
    }
}

#[test]
fn a_sink_serializes_its_start_info_and_whole_batches() {
    let _serial = serial();
    let sink = JsonSink::default();
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .window(Duration::from_secs(7))
        .sink(sink.clone())
        .install()
        .unwrap();
    assert!(instrument::publish(
        Notice::new("health", Level::Warn, "disk 91% full").field("component", "disk")
    ));
    parse("nope", 9).unwrap_err();
    pipeline.flush().unwrap();

    let (start, batches) = sink.0.lock().unwrap().clone();
    let start = start.expect("start info");
    assert_eq!(start["window_ns"], 7_000_000_000u64);
    assert!(start["tick_ns"].as_u64().unwrap() > 0, "{start:#}");
    assert_eq!(start["process"]["pid"], std::process::id());
    let started = time_of(&start["pipeline_start"]);
    assert!(started <= SystemTime::now());

    let notice = batches
        .iter()
        .flat_map(|b| b["notices"].as_array().unwrap())
        .next()
        .unwrap_or_else(|| panic!("no notice in {batches:#?}"));
    assert_eq!(notice["source"], "health");
    assert_eq!(notice["level"], "warn");
    assert_eq!(notice["message"], "disk 91% full");
    assert_eq!(notice["fields"], json!({"component": "disk"}));
    assert!(time_of(&notice["time"]) >= micros(started));

    let event = batches
        .iter()
        .flat_map(|b| b["events"].as_array().unwrap())
        .find(|e| e["callsite"]["name"] == name!("parse"))
        .unwrap_or_else(|| panic!("no event in {batches:#?}"));
    assert_eq!(event["fields"], json!({"text": "nope", "attempt": 9}));
    // The snapshot travels as the object itself, not as a pointer.
    let snapshot = batches
        .iter()
        .rev()
        .find(|b| b["snapshot"].is_object())
        .unwrap_or_else(|| panic!("no snapshot in {batches:#?}"));
    assert_eq!(snapshot["snapshot"]["reason"], "flush");
    assert_eq!(
        entry(
            &snapshot["snapshot"]["calls"],
            name!("parse"),
            Some("error")
        )["total"]["count"],
        1
    );
}
