//! The operations page in a real browser: a test process runs a pipeline with the page on
//! (`ops_process`), Debian's headless Chromium opens it over the `DevTools` protocol, and the test
//! asserts on the rendered DOM once the live data has arrived: every stage listed with calls, a
//! chart drawn, the unit of work of a slow call opened with its events and audit entries, an
//! audit trail looked up, an alert acknowledged from the page, every resource loaded from the
//! endpoint itself, and no error in the browser's console. A screenshot is saved as
//! `target/test-artifacts/ops-page.png`.
//!
//! Chromium must be installed (`apt-get install chromium`; `.ci/run` installs it): without it
//! the test fails, saying so.

use std::ffi::OsStr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use headless_chrome::protocol::cdp::Page::CaptureScreenshotFormatOption;
use headless_chrome::protocol::cdp::Runtime::RemoteObject;
use headless_chrome::protocol::cdp::types::Event;
use headless_chrome::{Browser, LaunchOptions, Tab};
use serde_json::Value;

mod http_client;
mod ops_process;
mod support;

use ops_process::{Options, eventually};
use support::serial;

/// The live history of the test process: short, so that the test sees the page drop old points.
const HISTORY: Duration = Duration::from_secs(10);

/// The latest snapshot the process's `OpsSink` took.
fn live_sequence(addr: std::net::SocketAddr) -> u64 {
    let live: Value =
        serde_json::from_str(&http_client::get(addr, "/api/live", &[]).text()).unwrap();
    live["sequence"].as_u64().unwrap_or(0)
}

/// Where Debian's package puts the browser.
fn chromium() -> PathBuf {
    for candidate in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        let path = PathBuf::from(candidate);
        if path.exists() {
            return path;
        }
    }
    panic!(
        "Chromium is not installed: this test drives Debian's `chromium` package \
         (apt-get install chromium; .ci/run installs it)"
    );
}

/// The value of a JavaScript expression, as JSON.
fn eval(tab: &Tab, expression: &str) -> Value {
    let wrapped = format!("JSON.stringify((() => {{ return {expression}; }})())");
    let result: RemoteObject = tab
        .evaluate(&wrapped, false)
        .unwrap_or_else(|e| panic!("{expression}: {e}"));
    match result.value {
        Some(Value::String(text)) => serde_json::from_str(&text).unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// Every console message, page error and log entry of level `error`, as text.
fn collect_errors(tab: &Tab) -> Arc<Mutex<Vec<String>>> {
    let errors = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&errors);
    tab.add_event_listener(Arc::new(move |event: &Event| {
        let line = match event {
            Event::RuntimeConsoleAPICalled(call) => {
                let kind = format!("{:?}", call.params.Type);
                (kind == "Error" || kind == "Assert").then(|| {
                    let args: Vec<String> = call
                        .params
                        .args
                        .iter()
                        .map(|a| {
                            a.value
                                .as_ref()
                                .map_or_else(|| format!("{:?}", a.description), Value::to_string)
                        })
                        .collect();
                    format!("console.{kind}: {}", args.join(" "))
                })
            }
            Event::RuntimeExceptionThrown(thrown) => Some(format!(
                "uncaught: {}",
                thrown
                    .params
                    .exception_details
                    .exception
                    .as_ref()
                    .and_then(|e| e.description.clone())
                    .unwrap_or_else(|| thrown.params.exception_details.text.clone())
            )),
            Event::LogEntryAdded(entry) => {
                let level = format!("{:?}", entry.params.entry.level);
                (level == "Error").then(|| {
                    format!(
                        "log: {} {}",
                        entry.params.entry.text,
                        entry.params.entry.url.clone().unwrap_or_default()
                    )
                })
            }
            _ => None,
        };
        if let Some(line) = line {
            sink.lock().unwrap().push(line);
        }
    }))
    .expect("listens to the tab");
    errors
}

fn artifact_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"),
        PathBuf::from,
    );
    let dir = target.join("test-artifacts");
    std::fs::create_dir_all(&dir).expect("creates target/test-artifacts");
    dir
}

#[test]
fn the_page_shows_the_live_pipeline_in_a_real_browser() {
    let _serial = serial();
    let process = ops_process::start(Options {
        ack: true,
        keep_working: true,
        units_at_start: 20,
        history: HISTORY,
    });
    let profile = tempfile::tempdir().unwrap();
    let options = LaunchOptions::default_builder()
        .path(Some(chromium()))
        .headless(true)
        // Root cannot use Chromium's sandbox; the page is our own, on loopback.
        .sandbox(false)
        .window_size(Some((1400, 4200)))
        .user_data_dir(Some(profile.path().to_owned()))
        .idle_browser_timeout(Duration::from_secs(180))
        .args(vec![
            OsStr::new("--disable-gpu"),
            OsStr::new("--disable-dev-shm-usage"),
            OsStr::new("--no-first-run"),
            OsStr::new("--disable-extensions"),
        ])
        .build()
        .expect("launch options");
    let browser = Browser::new(options).expect("Chromium starts");
    let tab = browser.new_tab().expect("a tab");
    tab.set_default_timeout(Duration::from_secs(90));
    let errors = collect_errors(&tab);
    tab.enable_runtime().unwrap();
    tab.enable_log().unwrap();
    let url = format!("http://{}/", process.addr);
    tab.navigate_to(&url).unwrap();
    tab.wait_until_navigated().unwrap();

    check_stages(&tab);
    check_chart(&tab);
    check_unit_of_work(&tab);
    check_audit_lookup(&tab);
    check_panels(&tab);
    check_ack(&tab, &process);
    check_local_and_bounded(&tab, &process);

    let png = tab
        .capture_screenshot(CaptureScreenshotFormatOption::Png, None, None, true)
        .expect("a screenshot");
    let path = artifact_dir().join("ops-page.png");
    std::fs::write(&path, png).expect("writes the screenshot");
    eprintln!("screenshot: {}", path.display());

    let errors = errors.lock().unwrap().clone();
    assert!(
        errors.is_empty(),
        "the browser console has errors: {errors:#?}"
    );
}

/// Every stage is listed with calls.
fn check_stages(tab: &Tab) {
    // Every stage is listed, with calls.
    let stages = eventually("every stage listed with calls", || {
        let rows = eval(
            tab,
            "[...document.querySelectorAll('#stages tbody tr[data-stage]')]\
             .map(r => [r.dataset.stage, Number(r.dataset.calls)])",
        );
        let rows: Vec<(String, u64)> = serde_json::from_value(rows).ok()?;
        (rows.len() == 4 && rows.iter().all(|(_, calls)| *calls > 0)).then_some(rows)
    });
    let names: Vec<&str> = stages.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["parse_file", "read_source", "transform", "write_output"]
    );
}

/// A chart has drawn.
fn check_chart(tab: &Tab) {
    // A chart has drawn: several windows of points, and its series' colours (the page's first
    // four: blue, red, green, orange; overlapping lines hide one another) on its canvas.
    let coloured = eventually("the calls-per-second chart to draw its lines", || {
        let drawn = eval(
            tab,
            "(() => { const el = document.getElementById('chart-rate'); \
               const c = el.querySelector('canvas'); \
               if (!c || Number(el.dataset.points) < 3) return 0; \
               const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
               const colours = [[31, 119, 180], [214, 39, 40], [44, 160, 44], [255, 127, 14]]; \
               let n = 0; \
               for (let i = 0; i < d.length; i += 4) { \
                 if (d[i + 3] > 200 && colours.some(([r, g, b]) => Math.abs(d[i] - r) < 30 \
                     && Math.abs(d[i + 1] - g) < 30 && Math.abs(d[i + 2] - b) < 30)) n++; \
               } \
               return n; })()",
        );
        drawn.as_u64().filter(|n| *n > 100)
    });
    assert!(coloured > 100);
    let series = eval(tab, "document.getElementById('chart-p99').dataset.series");
    assert_eq!(series, "4");
}

/// The unit of work of a slow call opens.
fn check_unit_of_work(tab: &Tab) {
    // The unit of work of a slow call: its events and audit entries in time order.
    let correlation = eventually("a slow transform call listed", || {
        eval(
            tab,
            "(() => { const r = [...document.querySelectorAll('#slow tbody tr[data-correlation]')]\
               .find(r => r.cells[1].textContent === 'transform'); \
               return r ? r.dataset.correlation : null; })()",
        )
        .as_str()
        .map(str::to_owned)
    });
    tab.find_element(&format!(
        "#slow tbody tr[data-correlation='{correlation}'] td"
    ))
    .expect("the slow call's row")
    .click()
    .expect("clicks the row");
    let trace = eventually("the unit of work to open", || {
        let rows = eval(
            tab,
            "document.getElementById('trace-section').hidden ? [] : \
             [...document.querySelectorAll('#trace tbody tr[data-type]')]\
             .map(r => [r.dataset.type, r.cells[2].textContent])",
        );
        let rows: Vec<(String, String)> = serde_json::from_value(rows).ok()?;
        (!rows.is_empty()).then_some(rows)
    });
    assert_eq!(
        eval(tab, "document.getElementById('trace-id').textContent"),
        correlation
    );
    let trace: Vec<(&str, &str)> = trace
        .iter()
        .map(|(t, w)| (t.as_str(), w.as_str()))
        .collect();
    assert_eq!(
        trace,
        [
            ("audit", "parse"),
            ("event", "transform"),
            ("audit", "write_output"),
            ("audit", "emit")
        ]
    );
}

/// An audit trail is looked up.
fn check_audit_lookup(tab: &Tab) {
    // An audit-trail lookup.
    tab.find_element("#audit-id").unwrap().click().unwrap();
    tab.type_str("out/file3.json").unwrap();
    tab.press_key("Enter").unwrap();
    let lineage = eventually("the audit trail of out/file3.json", || {
        let rows = eval(
            tab,
            "[...document.querySelectorAll('#audit tbody tr[data-direction]')]\
             .map(r => [r.cells[4].textContent, r.dataset.direction])",
        );
        let rows: Vec<(String, String)> = serde_json::from_value(rows).ok()?;
        (!rows.is_empty()).then_some(rows)
    });
    let lineage: Vec<(&str, &str)> = lineage
        .iter()
        .map(|(o, d)| (o.as_str(), d.as_str()))
        .collect();
    assert_eq!(lineage, [("parse", "upstream"), ("emit", "upstream")]);
}

/// Health, system and pipeline figures are shown.
fn check_panels(tab: &Tab) {
    // Health, system and pipeline figures are shown.
    eventually("the health components", || {
        let n = eval(
            tab,
            "document.querySelectorAll('#health-now tr[data-component]').length",
        );
        (n.as_u64()? > 0).then_some(())
    });
    eventually("the system gauges and sinks", || {
        let found = eval(
            tab,
            "[!!document.querySelector('#system tr[data-gauge=\"system_memory_usage_percent\"]'), \
              document.querySelectorAll('#sinks tr[data-sink]').length]",
        );
        (found[0] == true && found[1] == 3).then_some(())
    });
}

/// An alert is acknowledged from the page.
fn check_ack(tab: &Tab, process: &ops_process::OpsProcess) {
    // Acknowledging the firing alert from the page.
    eventually("the firing alert's Ack button", || {
        let n = eval(
            tab,
            "document.querySelectorAll('#alerts-live tr[data-state=\"firing\"] button.ack').length",
        );
        (n.as_u64()? > 0).then_some(())
    });
    tab.find_element("#alerts-live tr[data-state='firing'] button.ack")
        .unwrap()
        .click()
        .unwrap();
    eventually("the alert to read acknowledged", || {
        let state = eval(
            tab,
            "(document.querySelector('#alerts-live tr[data-alert]') || {dataset: {}}).dataset.state",
        );
        (state == "acknowledged").then_some(())
    });
    let acked = process.alerts.alerts();
    assert_eq!(
        acked[0].acknowledged.as_ref().map(|(_, by)| by.as_str()),
        Some("operations page")
    );
}

/// Nothing was loaded from elsewhere, and the page keeps only its history.
fn check_local_and_bounded(tab: &Tab, process: &ops_process::OpsProcess) {
    // No request left the machine: every resource came from the endpoint.
    let foreign = eval(
        tab,
        "performance.getEntriesByType('resource').map(e => e.name)\
         .filter(n => !n.startsWith(location.origin))",
    );
    assert_eq!(foreign, Value::Array(Vec::new()));

    // Bounded: after twice its history of windows, the page keeps only the history's points.
    let first = live_sequence(process.addr);
    let windows = 2 * HISTORY.as_secs() + 2;
    eventually("the page to run for twice its history", || {
        (live_sequence(process.addr) >= first + windows).then_some(())
    });
    let points = eval(
        tab,
        "Number(document.getElementById('chart-rate').dataset.points)",
    );
    let points = points.as_u64().unwrap();
    assert!(
        (3..=HISTORY.as_secs() + 2).contains(&points),
        "{points} points on the chart"
    );
    let kept = eval(
        tab,
        "Number(document.getElementById('chart-system').dataset.points)",
    );
    assert_eq!(kept.as_u64(), Some(points));
}
