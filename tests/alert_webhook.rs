//! The webhook notifier against a local HTTP server that fails its first requests: the alert
//! engine's notifier retries with backoff until the server accepts, the body is Alertmanager's
//! webhook payload (version 4), evaluation never waits for the failing receiver, and a
//! flapping value sends one notification, not one per flap.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, SystemTime};

use instrument_sinks::MemorySink;
use instrument_sinks::alerts::{
    AlertEngine, AlertState, Condition, RetryPolicy, Rule, Severity, Silence, Threshold,
    WebhookNotifier,
};
use serde_json::Value;

mod support;
use support::{eventually, serial};

/// How often the tests look again for what the receiver got.
const POLL: Duration = Duration::from_millis(20);

/// A receiver that answers `500` to its first `failures` requests and `200` after, keeping
/// every body it was sent.
struct Receiver {
    addr: SocketAddr,
    bodies: Arc<Mutex<Vec<(u16, Value)>>>,
}

fn receiver(failures: usize) -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let kept = Arc::clone(&bodies);
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            // A connection may carry several requests (keep-alive).
            loop {
                let mut length = 0usize;
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                        break;
                    }
                    if let Some((name, value)) = header.split_once(':')
                        && name.eq_ignore_ascii_case("content-length")
                    {
                        length = value.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let mut kept = kept.lock().unwrap();
                let status = if kept.len() < failures { 500 } else { 200 };
                kept.push((status, serde_json::from_slice(&body).unwrap()));
                drop(kept);
                let reply = if status == 200 {
                    "200 OK"
                } else {
                    "500 Internal Server Error"
                };
                let _ = write!(stream, "HTTP/1.1 {reply}\r\ncontent-length: 0\r\n\r\n");
            }
        }
    });
    Receiver { addr, bodies }
}

fn depth_rule() -> Rule {
    Rule::new(
        "QueueBackedUp",
        Condition::Value {
            metric: "webhook_test_queue_depth".into(),
            matchers: vec![],
        },
        Threshold::Above(100.0),
    )
    .severity(Severity::Warning)
    .label("team", "etl")
    .summary("queue at {{value}} (above {{threshold}})")
}

#[test]
fn the_webhook_notifier_retries_until_the_receiver_accepts() {
    let _serial = serial();
    let receiver = receiver(2);
    let engine = AlertEngine::builder()
        .rule(depth_rule())
        .notifier(WebhookNotifier::new(&format!("http://{}/hooks/alerts", receiver.addr)).unwrap())
        .retry_policy(
            RetryPolicy::default()
                .backoff(Duration::from_millis(20), Duration::from_millis(100))
                .min_interval(Duration::ZERO),
        )
        .build()
        .unwrap();
    let handle = engine.handle();
    let memory = MemorySink::new();
    let pipeline = instrument::builder()
        .sink(engine)
        .sink(memory.clone())
        .install()
        .unwrap();
    let depth = instrument::metric("webhook_test_queue_depth")
        .gauge()
        .unwrap();
    depth.set(250.0);
    pipeline.flush().unwrap();
    // Evaluation did not wait for the failing receiver: the alert is firing already.
    assert_eq!(handle.alerts()[0].state, AlertState::Firing);

    let bodies = eventually("an accepted POST", POLL, || {
        let bodies = receiver.bodies.lock().unwrap().clone();
        bodies
            .iter()
            .any(|(status, _)| *status == 200)
            .then_some(bodies)
    });
    let statuses: Vec<u16> = bodies.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        statuses,
        [500, 500, 200],
        "two failures, then the retry that succeeded"
    );
    let body = &bodies[2].1;
    assert_eq!(body["version"], "4");
    assert_eq!(body["status"], "firing");
    assert_eq!(body["receiver"], "instrument");
    assert_eq!(body["truncatedAlerts"], 0);
    let alert = &body["alerts"][0];
    assert_eq!(alert["status"], "firing");
    assert_eq!(alert["labels"]["alertname"], "QueueBackedUp");
    assert_eq!(alert["labels"]["severity"], "warning");
    assert_eq!(alert["labels"]["team"], "etl");
    assert_eq!(alert["labels"]["metric"], "webhook_test_queue_depth");
    assert_eq!(alert["annotations"]["summary"], "queue at 250 (above 100)");
    assert_eq!(alert["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(alert["fingerprint"], handle.alerts()[0].fingerprint);
    let status = &handle.notifiers()[0];
    assert_eq!(
        (status.sent, status.failures, status.dropped),
        (1, 2, 0),
        "{status:?}"
    );
    assert!(
        status.last_error.as_deref().unwrap().contains("HTTP 500"),
        "{status:?}"
    );

    // Resolved: sent with its end time.
    depth.set(3.0);
    pipeline.flush().unwrap();
    let resolved = eventually("the resolved POST", POLL, || {
        receiver
            .bodies
            .lock()
            .unwrap()
            .iter()
            .find(|(_, b)| b["status"] == "resolved")
            .map(|(_, b)| b.clone())
    });
    assert_ne!(resolved["alerts"][0]["endsAt"], "0001-01-01T00:00:00Z");
    // Every state change is a notice too (the log stream), firing and resolved.
    pipeline.flush().unwrap();
    let changes: Vec<String> = memory
        .notices()
        .iter()
        .filter(|n| n.source == "alerts")
        .filter_map(|n| {
            n.fields
                .iter()
                .find(|(k, _)| k == "state")
                .map(|(_, v)| v.clone())
        })
        .collect();
    assert_eq!(changes, ["firing", "resolved"]);
    pipeline.shutdown().unwrap();
}

#[test]
fn a_flapping_value_does_not_storm_the_receiver() {
    let _serial = serial();
    let receiver = receiver(0);
    let engine = AlertEngine::builder()
        // No hysteresis and no keep_firing_for: every flap changes the alert's state.
        .rule(depth_rule())
        .notifier(WebhookNotifier::new(&format!("http://{}/", receiver.addr)).unwrap())
        // At most one notification per alert per hour (default 10 s), so that what this test
        // sees does not depend on how fast it runs.
        .retry_policy(RetryPolicy::default().min_interval(Duration::from_secs(3600)))
        .build()
        .unwrap();
    let memory = MemorySink::new();
    let pipeline = instrument::builder()
        .sink(engine)
        .sink(memory.clone())
        .install()
        .unwrap();
    let depth = instrument::metric("webhook_test_queue_depth")
        .gauge()
        .unwrap();
    // The first firing goes out at once...
    depth.set(500.0);
    pipeline.flush().unwrap();
    eventually("the first notification", POLL, || {
        (!receiver.bodies.lock().unwrap().is_empty()).then_some(())
    });
    // ...then the value flaps 19 more times.
    for i in 1..20 {
        depth.set(if i % 2 == 0 { 500.0 } else { 0.0 });
        pipeline.flush().unwrap();
    }
    // The history is whole: every change is a notice (the engine publishes while it handles a
    // flush's snapshot, so the next flush delivers the last ones)...
    pipeline.flush().unwrap();
    let changes = memory
        .notices()
        .iter()
        .filter(|n| n.source == "alerts")
        .count();
    assert_eq!(changes, 20, "ten firings and ten resolutions recorded");
    // ...while the receiver got the first one only; the rest wait, coalesced into the latest
    // state, for the pacing interval.
    thread::sleep(Duration::from_millis(300));
    let bodies = receiver.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1, "{bodies:?}");
    assert_eq!(bodies[0].1["status"], "firing");
    pipeline.shutdown().unwrap();
}

/// The `state` field of the `alerts` notices received so far.
fn alert_states(memory: &MemorySink) -> Vec<(String, String)> {
    memory
        .notices()
        .iter()
        .filter(|n| n.source == "alerts")
        .map(|n| {
            let field = |k: &str| {
                n.fields
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            (field("state"), field("silenced"))
        })
        .collect()
}

/// A critical `QueueBackedUp` posting to `hook`, escalated to `pager` at once.
fn critical_engine(hook: &Receiver, pager: &Receiver) -> AlertEngine {
    AlertEngine::builder()
        .rule(depth_rule().severity(Severity::Critical))
        .notifier(WebhookNotifier::new(&format!("http://{}/", hook.addr)).unwrap())
        .escalation(
            Duration::ZERO,
            WebhookNotifier::new(&format!("http://{}/", pager.addr))
                .unwrap()
                .named("pager"),
        )
        .retry_policy(RetryPolicy::default().min_interval(Duration::ZERO))
        .build()
        .unwrap()
}

/// A pipeline delivering to `engine` and `memory`, ticking every 20 ms (ticks drive
/// escalation and re-sends).
fn install(engine: AlertEngine, memory: &MemorySink) -> instrument::PipelineGuard {
    instrument::builder()
        .sink(engine)
        .sink(memory.clone())
        .sink_tick(Duration::from_millis(20))
        .install()
        .unwrap()
}

#[test]
fn a_silence_suppresses_notifications_but_not_history() {
    let _serial = serial();
    let (pager, hook) = (receiver(0), receiver(0));
    let engine = critical_engine(&hook, &pager);
    let alerts = engine.handle();
    let memory = MemorySink::new();
    let pipeline = install(engine, &memory);
    let depth = instrument::metric("webhook_test_queue_depth")
        .gauge()
        .unwrap();
    alerts.silence(
        Silence::new([("alertname", "QueueBackedUp")], Duration::from_secs(3600))
            .comment("planned maintenance"),
    );
    depth.set(500.0);
    pipeline.flush().unwrap();
    depth.set(0.0);
    pipeline.flush().unwrap();
    pipeline.flush().unwrap();
    // The state changes are published, marked silenced...
    assert_eq!(
        alert_states(&memory),
        [
            ("firing".to_owned(), "true".to_owned()),
            ("resolved".to_owned(), "true".to_owned())
        ]
    );
    // ...and nothing is sent or escalated (ticks every 20 ms had their chance).
    thread::sleep(Duration::from_millis(200));
    assert!(hook.bodies.lock().unwrap().is_empty(), "silenced: not sent");
    assert!(
        pager.bodies.lock().unwrap().is_empty(),
        "silenced: not escalated"
    );
    let silences = alerts.silences();
    assert_eq!(silences.len(), 1);
    assert_eq!(silences[0].comment, "planned maintenance");
    pipeline.shutdown().unwrap();
}

#[test]
fn a_critical_alert_escalates_once_then_is_acknowledged_and_resolved_by_hand() {
    let _serial = serial();
    let (pager, hook) = (receiver(0), receiver(0));
    let engine = critical_engine(&hook, &pager);
    let alerts = engine.handle();
    let memory = MemorySink::new();
    let pipeline = install(engine, &memory);
    let depth = instrument::metric("webhook_test_queue_depth")
        .gauge()
        .unwrap();
    // A maintenance window that is over does not silence.
    let now = SystemTime::now();
    alerts.silence(Silence::between(
        [("alertname", "QueueBackedUp")],
        now - Duration::from_secs(7200),
        now - Duration::from_secs(3600),
    ));
    depth.set(500.0);
    pipeline.flush().unwrap();
    let escalated = eventually("the escalation", POLL, || {
        pager.bodies.lock().unwrap().first().map(|(_, b)| b.clone())
    });
    assert_eq!(escalated["alerts"][0]["labels"]["severity"], "critical");
    assert_eq!(hook.bodies.lock().unwrap()[0].1["status"], "firing");
    let alert = alerts.alerts().into_iter().next().unwrap();
    assert!(alert.escalated);

    // Acknowledged: reads `acknowledged`, published once.
    assert!(alerts.ack(&alert.fingerprint, "ann"));
    assert!(!alerts.ack(&alert.fingerprint, "bob"), "acknowledged once");
    assert_eq!(alerts.alerts()[0].display_state(), "acknowledged");
    // Resolved by hand: sent as resolved; the condition still holds, so the next snapshot
    // starts a new episode.
    assert!(alerts.resolve(&alert.id.to_string()));
    assert!(!alerts.resolve("no-such-alert"));
    eventually("the resolved notification", POLL, || {
        hook.bodies
            .lock()
            .unwrap()
            .iter()
            .any(|(_, b)| b["status"] == "resolved")
            .then_some(())
    });
    pipeline.flush().unwrap();
    pipeline.flush().unwrap();
    let states: Vec<String> = alert_states(&memory).into_iter().map(|(s, _)| s).collect();
    assert_eq!(
        states[..4],
        ["firing", "firing", "acknowledged", "resolved"],
        "firing, escalated (published again), acknowledged, resolved by hand: {states:?}"
    );
    assert_eq!(
        states[4], "firing",
        "the next snapshot starts it over: {states:?}"
    );
    // Escalated once in the first episode. The new episode is critical and unacknowledged
    // too, so with no escalation delay it may reach the pager by now: count by episode.
    let first = &escalated["alerts"][0]["startsAt"];
    let escalations = pager.bodies.lock().unwrap().clone();
    let of_first = escalations
        .iter()
        .filter(|(_, b)| &b["alerts"][0]["startsAt"] == first)
        .count();
    assert_eq!(
        of_first, 1,
        "the first episode escalated once: {escalations:?}"
    );
    assert!(
        escalations.len() <= 2,
        "at most once more, for the new episode: {escalations:?}"
    );
    pipeline.shutdown().unwrap();
}
