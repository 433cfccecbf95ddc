//! The generated operations artifacts against a real Prometheus: a background thread keeps
//! recording calls of several callsites (errors, slow calls with correlation ids, panics) into
//! a pipeline with the `SQLite` store and the Prometheus sink; the rules of
//! `instrumentctl prometheus rules` are written for the store's callsites, with tiny thresholds
//! for two of them, and loaded by Debian's `prometheus` scraping this process. The test waits
//! until every rule evaluates without error, the recording rules return data and the alerts
//! with tiny thresholds go pending or firing (and the one with the default does not); then it
//! runs every query of `docs/grafana/pipeline.json` and expects data from each.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use instrument::{CorrelationId, instrument_performance};
use instrument_sinks::SqliteSink;
use instrument_sinks::prometheus::{Format, PrometheusSink};
use instrument_sinks::rules::{Callsite, Objective, Rule, RulesConfig};
use instrument_sinks::sqlite::query::Store;
use serde_json::Value;

mod http_client;
mod prometheus_process;
mod server_process;
mod support;
use prometheus_process::Prometheus;
use support::{eventually, name, serial};

/// How often the test looks again at the store and at Prometheus.
const POLL: Duration = Duration::from_millis(250);

#[derive(Debug, thiserror::Error)]
#[error("missing file {0}")]
struct Missing(u64);

#[instrument_performance]
fn load_file(i: u64) -> Result<u64, Missing> {
    thread::sleep(Duration::from_millis(2));
    if i.is_multiple_of(4) {
        Err(Missing(i))
    } else {
        Ok(i)
    }
}

#[instrument_performance(slow = "10ms")]
fn transform(i: u64) -> u64 {
    thread::sleep(Duration::from_millis(20));
    i * 2
}

#[instrument_performance]
fn store_result(i: u64) -> u64 {
    thread::sleep(Duration::from_micros(300));
    i
}

#[instrument_performance]
fn explode() {
    panic!("a recorded panic");
}

/// Keeps the deliberate panics of `explode` off stderr; any other panic is reported.
fn quiet_recorded_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if info.payload().downcast_ref::<&str>() != Some(&"a recorded panic") {
            default(info);
        }
    }));
}

/// Records a round of calls every 20 ms until `stop`, on the real clock (exemplars carry the
/// calls' wall-clock end times, which Prometheus stores).
fn keep_recording(stop: Arc<AtomicBool>) -> thread::JoinHandle<()> {
    thread::spawn(move || {
        let mut i = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let _ = load_file(i);
            instrument::with_correlation(CorrelationId::new(), || transform(i));
            store_result(i);
            if i.is_multiple_of(10) {
                assert!(std::panic::catch_unwind(explode).is_err());
            }
            i += 1;
            thread::sleep(Duration::from_millis(20));
        }
    })
}

/// Every identifier of `expr` that names one of the SDK's metrics.
fn metric_names(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|token| token.starts_with("instrument_"))
        .map(str::to_owned)
        .collect()
}

/// Whether `docs/prometheus.md` lists `metric` (a sample name: `_bucket`, `_sum` and
/// `_count` of a listed histogram count).
fn documented(docs: &str, metric: &str) -> bool {
    let rest = metric.strip_prefix("instrument_").expect("an SDK metric");
    let listed = |name: &str| docs.contains(&format!("`<prefix>_{name}`"));
    listed(rest)
        || ["_bucket", "_sum", "_count"]
            .iter()
            .any(|suffix| rest.strip_suffix(suffix).is_some_and(listed))
}

/// Whether the exposition has samples named `metric`.
fn exported(exposition: &str, metric: &str) -> bool {
    exposition.lines().any(|line| {
        line.strip_prefix(metric)
            .is_some_and(|rest| rest.starts_with(['{', ' ']))
    })
}

/// The dashboard's queries: (panel title, expression with the dashboard's variables replaced
/// as Grafana would for "All" and a 1 s scrape interval).
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String, bool)> {
    let mut queries = Vec::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        let title = panel["title"].as_str().unwrap_or_default();
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("every target has an expr");
            let expr = expr
                .replace("$__rate_interval", "1m")
                .replace("$job", ".*")
                .replace("$instance", ".*")
                .replace("$function", ".*");
            assert!(!expr.contains('$'), "{title}: a variable left in {expr}");
            let exemplar = target["exemplar"].as_bool().unwrap_or(false);
            queries.push((title.to_owned(), expr, exemplar));
        }
    }
    queries
}

/// Whether a result has a sample whose value is a number (not `NaN`).
fn has_number(result: &[Value]) -> bool {
    result.iter().any(|series| {
        series["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .is_some_and(|v| !v.is_nan())
    })
}

#[test]
fn generated_rules_and_the_grafana_dashboard_work_against_a_real_prometheus() {
    let _serial = serial();
    quiet_recorded_panics();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("instrument.db");
    let prometheus_sink = PrometheusSink::builder()
        .listen("127.0.0.1:0".parse().unwrap())
        .build()
        .expect("a free port");
    let target = prometheus_sink.local_addr().unwrap();
    let exposition = prometheus_sink.handle();
    let pipeline = instrument::builder()
        .sink(SqliteSink::builder().path(&db).build().unwrap())
        .sink(prometheus_sink)
        .install()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let recorder = keep_recording(Arc::clone(&stop));
    eventually("the store to know the callsites", POLL, || {
        pipeline.flush().unwrap();
        let callsites = Store::open(&db).ok()?.callsites().ok()?;
        (callsites.len() >= 4).then_some(callsites)
    });

    // The rules for every timed callsite of the store, as `instrumentctl prometheus rules`
    // writes them: defaults, but `transform` must end within 1 ms and `load_file` may fail in
    // 1 % of its calls, so that their alerts fire.
    let callsites: Vec<Callsite> = Store::open(&db)
        .unwrap()
        .callsites()
        .unwrap()
        .into_iter()
        .filter(|c| matches!(c.kind.as_str(), "function" | "async" | "timer"))
        .map(|c| Callsite::new(c.name, c.module))
        .collect();
    assert_eq!(callsites.len(), 4, "{callsites:?}");
    let mut config = RulesConfig {
        for_duration: Duration::from_secs(1),
        ..RulesConfig::default()
    };
    let (load, slow, fast) = (
        name!("load_file"),
        name!("transform"),
        name!("store_result"),
    );
    config.overrides.insert(
        slow.to_owned(),
        Objective {
            p99: Some(Duration::from_millis(1)),
            ..Objective::default()
        },
    );
    config.overrides.insert(
        load.to_owned(),
        Objective {
            error_ratio: Some(0.01),
            ..Objective::default()
        },
    );
    let rules = config.rules(&callsites).unwrap();
    let rules_file = dir.path().join("rules.yml");
    std::fs::write(&rules_file, rules.to_yaml()).unwrap();

    let prometheus = prometheus_process::start(dir.path(), target, &[&rules_file]);
    check_rules(&prometheus, load, slow, fast);
    check_dashboard(&prometheus);

    // Only metric names the sink exports, all of them documented.
    let docs = std::fs::read_to_string("docs/prometheus.md").unwrap();
    let exposition = exposition.render(Format::Text);
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string("docs/grafana/pipeline.json").unwrap())
            .unwrap();
    let dashboard_exprs: Vec<String> = dashboard_queries(&dashboard)
        .into_iter()
        .map(|(_, expr, _)| expr)
        .collect();
    let rules_exprs: Vec<String> = rules
        .file
        .groups
        .iter()
        .flat_map(|g| &g.rules)
        .map(|rule| match rule {
            Rule::Record { expr, .. } | Rule::Alert { expr, .. } => expr.clone(),
        })
        .collect();
    for (source, exprs) in [("rules", &rules_exprs), ("dashboard", &dashboard_exprs)] {
        let text = exprs.join("\n");
        let names = metric_names(&text);
        assert!(names.len() >= 2, "{source}: {names:?}");
        for metric in names {
            assert!(
                documented(&docs, &metric),
                "{source}: {metric} is not in docs/prometheus.md"
            );
            assert!(
                exported(&exposition, &metric),
                "{source}: {metric} is not exported"
            );
        }
    }

    stop.store(true, Ordering::Relaxed);
    recorder.join().unwrap();
    drop(prometheus);
    drop(pipeline);
}

/// Every rule evaluates without error; the recording rules return data; the alerts with tiny
/// thresholds go pending or firing, the latency alert of `fast` (default 500 ms) does not.
fn check_rules(prometheus: &Prometheus, load: &str, slow: &str, fast: &str) {
    eventually("every rule to evaluate without error", POLL, || {
        let groups = prometheus.api("/api/v1/rules")["groups"].clone();
        let rules: Vec<Value> = groups
            .as_array()?
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .collect();
        assert_eq!(rules.len(), 10 + 4 * 10, "{groups}");
        for rule in &rules {
            assert_ne!(rule["health"], "err", "{rule}");
        }
        rules.iter().all(|r| r["health"] == "ok").then_some(())
    });
    let calls = eventually("the calls per second of load_file", POLL, || {
        let result = prometheus.query(&format!(
            "job_function:instrument_calls:rate5m{{function=\"{load}\"}} > 0"
        ));
        has_number(&result).then_some(result)
    });
    assert_eq!(calls[0]["metric"]["job"], "instrument");
    let ratio: f64 = eventually("the error ratio of load_file", POLL, || {
        let result = prometheus.query(&format!(
            "job_function:instrument_call_errors:ratio_rate5m{{function=\"{load}\"}}"
        ));
        result.first()?["value"][1].as_str()?.parse().ok()
    });
    assert!(
        ratio > 0.0 && ratio < 1.0,
        "one call in four fails: {ratio}"
    );
    eventually("the slow-call ratio of transform", POLL, || {
        let result = prometheus.query(&format!(
            "job_function:instrument_slow_calls:ratio_rate5m{{function=\"{slow}\"}} == 1"
        ));
        has_number(&result).then_some(())
    });

    let active = |alert: &str, function: &str| -> Option<String> {
        let alerts = prometheus.api("/api/v1/alerts")["alerts"].clone();
        alerts.as_array()?.iter().find_map(|a| {
            (a["labels"]["alertname"] == alert && a["labels"]["function"] == function)
                .then(|| a["state"].as_str().unwrap_or_default().to_owned())
        })
    };
    for (alert, function) in [
        ("InstrumentLatencyHigh", slow),
        ("InstrumentLatencyBudgetBurn", slow),
        ("InstrumentErrorRatioHigh", load),
    ] {
        let state = eventually(&format!("{alert} of {function}"), POLL, || {
            active(alert, function)
        });
        assert!(
            state == "pending" || state == "firing",
            "{alert} of {function}: {state}"
        );
    }
    assert_eq!(active("InstrumentLatencyHigh", fast), None);
    assert_eq!(active("InstrumentErrorRatioHigh", fast), None);
}

/// Every query of the dashboard returns data, and its latency panels show exemplars of real
/// calls.
fn check_dashboard(prometheus: &Prometheus) {
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string("docs/grafana/pipeline.json").expect("the dashboard"),
    )
    .expect("the dashboard is JSON");
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 20, "{}", queries.len());
    for (title, expr, _) in &queries {
        eventually(&format!("data for panel {title:?}: {expr}"), POLL, || {
            has_number(&prometheus.query(expr)).then_some(())
        });
    }
    let latency: Vec<_> = queries
        .iter()
        .filter(|(_, expr, _)| expr.contains("histogram_quantile"))
        .collect();
    assert_eq!(latency.len(), 2);
    for (title, expr, exemplar) in latency {
        assert!(exemplar, "{title}: exemplars are on for latency panels");
        let found = eventually(&format!("exemplars for {title:?}"), POLL, || {
            let found = prometheus.exemplars(expr);
            (!found.is_empty()).then_some(found)
        });
        assert!(
            found.iter().all(|e| e["labels"]["correlation_id"]
                .as_str()
                .is_some_and(|id| id.len() == 16)),
            "{found:?}"
        );
    }
}
