//! A real OTLP/HTTP receiver for the tests: `receiver.py`, which decodes each request with
//! the official OpenTelemetry protobuf definitions (Python's `opentelemetry-proto`, installed
//! by `.ci/prerequisites` into `target/otlp-venv`) and writes it as a JSON line; and readers of
//! those lines.
#![allow(dead_code, unreachable_pub)] // Each test file uses a different part.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The receiver process; killed and reaped when dropped.
pub struct Receiver {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// The JSON lines it writes.
    pub out: PathBuf,
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("OTLP_RECEIVER_PYTHON") {
        return p.into();
    }
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/otlp-venv/bin/python");
    if venv.exists() {
        return venv;
    }
    "python3".into()
}

pub fn start_receiver(dir: &Path, extra: &[&str]) -> Receiver {
    let python = python();
    let check = Command::new(&python)
        .args([
            "-c",
            "import opentelemetry.proto.collector.metrics.v1.metrics_service_pb2",
        ])
        .output();
    match check {
        Ok(out) if out.status.success() => {}
        other => panic!(
            "{} cannot import opentelemetry-proto ({other:?}); install it with \
             `python3 -m venv target/otlp-venv && target/otlp-venv/bin/pip install \
             opentelemetry-proto` (.ci/run does) or set OTLP_RECEIVER_PYTHON",
            python.display()
        ),
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/otlp_receiver/receiver.py");
    let out = dir.join("received.jsonl");
    let port_file = dir.join("port");
    let child = Command::new(&python)
        .arg(&script)
        .arg("--out")
        .arg(&out)
        .arg("--port-file")
        .arg(&port_file)
        .args(["--max-seconds", "120"])
        .args(extra)
        .stdin(Stdio::null())
        .spawn()
        .expect("start the receiver");
    let deadline = Instant::now() + Duration::from_secs(30);
    let port = loop {
        if let Ok(text) = std::fs::read_to_string(&port_file) {
            break text.trim().to_owned();
        }
        assert!(Instant::now() < deadline, "the receiver did not start");
        thread::sleep(Duration::from_millis(20));
    };
    Receiver {
        child,
        url: format!("http://127.0.0.1:{port}"),
        out,
    }
}

/// Every line the receiver wrote.
pub fn received(receiver: &Receiver) -> Vec<Value> {
    std::fs::read_to_string(&receiver.out)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

pub fn accepted<'a>(lines: &'a [Value], path: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|l| l["path"] == path && l["status"] == 200)
        .collect()
}

/// A 64-bit integer of protobuf's JSON mapping (a string) or a plain number.
pub fn int(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().expect("an integer"),
        Value::Number(n) => n.as_u64().expect("an unsigned integer"),
        Value::Null => 0,
        other => panic!("not an integer: {other}"),
    }
}

pub fn attrs(v: &Value) -> BTreeMap<String, String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .map(|kv| {
                    let value = &kv["value"];
                    let text = value["string_value"].as_str().map_or_else(
                        || {
                            value
                                .get("int_value")
                                .map_or_else(|| value.to_string(), |v| int(v).to_string())
                        },
                        str::to_owned,
                    );
                    (kv["key"].as_str().unwrap().to_owned(), text)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The metrics of a request, by name.
pub fn metrics(request: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for rm in request["request"]["resource_metrics"].as_array().unwrap() {
        for sm in rm["scope_metrics"].as_array().unwrap() {
            for m in sm["metrics"].as_array().unwrap() {
                out.insert(m["name"].as_str().unwrap().to_owned(), m.clone());
            }
        }
    }
    out
}

/// The data point of `metric` whose attributes include all of `want`.
pub fn point<'a>(metric: &'a Value, want: &[(&str, &str)]) -> Option<&'a Value> {
    let data = ["sum", "gauge", "histogram", "exponential_histogram"]
        .iter()
        .find_map(|k| metric.get(*k))?;
    data["data_points"].as_array()?.iter().find(|p| {
        let a = attrs(&p["attributes"]);
        want.iter()
            .all(|(k, v)| a.get(*k).map(String::as_str) == Some(*v))
    })
}
