//! The `tracing` bridge (`instrument::tracing::InstrumentLayer`): code that uses only `tracing`
//! gets the same aggregates, events and notices as instrumented code, exactly.
//!
//! Every test builds its own subscriber (the registry, the layer, and where needed a layer that
//! counts what `tracing` did) and installs the process-wide pipeline under `serial()`. Sync tests
//! run on the mock clock, so durations are exact; async ones on the counter clock, since tasks
//! move between worker threads and the mock clock is per thread.

// `explode` panics on purpose, which `panic!` says more plainly than `assert!`.
#![allow(clippy::manual_assert)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use instrument::testing::advance;
use instrument::tracing::InstrumentLayer;
use instrument::{
    Batch, CallsiteKind, Event, FieldValue, Interests, Level, Notice, Outcome, Sink, SinkError,
};
use instrument_sinks::MemorySink;
use tracing::level_filters::LevelFilter;
use tracing::{Dispatch, Instrument as _};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt as _};
use tracing_subscriber::registry::LookupSpan;

mod support;
use support::{count, events_of, flushed_snapshot, install, install_counter_clock, name, serial};

// ---------------------------------------------------------------------------------------------
// Code that knows only `tracing`.

#[derive(Debug, thiserror::Error)]
#[error("no digits in {0:?}")]
struct NoDigits(String);

#[tracing::instrument(err)]
fn parse(text: &str, attempt: u32) -> Result<u32, NoDigits> {
    advance(Duration::from_millis(3));
    text.parse().map_err(|_| NoDigits(text.to_owned()))
}

#[tracing::instrument]
fn inner(step: u64) {
    advance(Duration::from_millis(3));
    if step == 1 {
        tracing::warn!(file = "b.rs", retries = 2_u64, "slow disk");
    }
}

#[tracing::instrument(fields(total = tracing::field::Empty))]
fn outer() {
    advance(Duration::from_millis(1));
    inner(0);
    inner(1);
    tracing::Span::current().record("total", 2_u64);
    tracing::error!(stage = "outer", "gave up on one file");
    tracing::info!("not forwarded: below WARN");
}

#[tracing::instrument(ret, skip(big))]
fn summed(big: &[u64], label: &str) -> u64 {
    advance(Duration::from_micros(1));
    big.iter().sum()
}

#[tracing::instrument(err(Debug), fields(rows = tracing::field::Empty))]
fn store(table: &str, rows: u64) -> Result<(), std::io::Error> {
    tracing::Span::current().record("rows", rows);
    Err(std::io::Error::other(format!("{table} is full")))
}

#[tracing::instrument]
fn explode() {
    advance(Duration::from_millis(2));
    panic!("boom");
}

/// Opens and closes a span in its `Drop`, which may run during an unrelated panic.
struct Cleanup;

impl Drop for Cleanup {
    fn drop(&mut self) {
        tracing::info_span!("cleanup").in_scope(|| advance(Duration::from_millis(1)));
    }
}

#[tracing::instrument(err)]
async fn fetch(key: u64, yields: u32) -> Result<u64, NoDigits> {
    for _ in 0..yields {
        tokio::task::yield_now().await;
    }
    if key.is_multiple_of(5) {
        return Err(NoDigits(key.to_string()));
    }
    Ok(key)
}

#[tracing::instrument]
async fn explode_async() {
    tokio::task::yield_now().await;
    panic!("async boom");
}

// ---------------------------------------------------------------------------------------------
// Helpers.

/// A future that is pending once (waking its task at once), then ready.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            return std::task::Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    }
}

/// A sink keeping the notices it receives (`MemorySink` keeps none).
#[derive(Clone, Default)]
struct Notices(Arc<Mutex<Vec<Notice>>>);

impl Notices {
    fn all(&self) -> Vec<Notice> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Sink for Notices {
    fn name(&self) -> &'static str {
        "notices"
    }
    fn interests(&self) -> Interests {
        Interests::NONE.with_notices(true)
    }
    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(batch.notices.iter().cloned());
        Ok(())
    }
}

/// A pipeline on the mock clock delivering to `sink` and `notices`.
fn install_with_notices(sink: &MemorySink, notices: &Notices) -> instrument::PipelineGuard {
    instrument::builder()
        .clock(instrument::ClockSource::Mock)
        .sink(sink.clone())
        .sink(notices.clone())
        .install()
        .expect("no other pipeline is installed")
}

/// The registry with the bridge and nothing else.
fn bridged() -> Dispatch {
    Dispatch::new(tracing_subscriber::registry().with(InstrumentLayer::new()))
}

/// Counts what `tracing` did per span name: how often spans were entered and closed.
#[derive(Clone, Default)]
struct Counting(Arc<Mutex<HashMap<&'static str, (u64, u64)>>>);

impl Counting {
    fn entered(&self, span: &str) -> u64 {
        self.0.lock().unwrap().get(span).map_or(0, |c| c.0)
    }
    fn closed(&self, span: &str) -> u64 {
        self.0.lock().unwrap().get(span).map_or(0, |c| c.1)
    }
}

impl<S: tracing::Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Counting {
    fn on_enter(&self, id: &tracing::span::Id, ctx: Context<'_, S>) {
        let name = ctx.span(id).expect("entered span exists").name();
        self.0.lock().unwrap().entry(name).or_default().0 += 1;
    }
    fn on_close(&self, id: tracing::span::Id, ctx: Context<'_, S>) {
        let name = ctx.span(&id).expect("closed span exists").name();
        self.0.lock().unwrap().entry(name).or_default().1 += 1;
    }
}

/// The value of field `name` of `event`.
fn field<'a>(event: &'a Event, name: &str) -> Option<&'a FieldValue> {
    event
        .fields
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// The value of field `name` of `notice`.
fn notice_field<'a>(notice: &'a Notice, name: &str) -> Option<&'a str> {
    notice
        .fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

// ---------------------------------------------------------------------------------------------
// Tests.

#[test]
fn spans_are_counted_and_timed_per_name_and_outcome() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);
    tracing::dispatcher::with_default(&bridged(), || {
        for i in 0..40_u32 {
            let text = if i % 4 == 0 {
                "x".to_owned()
            } else {
                i.to_string()
            };
            assert_eq!(parse(&text, i).is_ok(), i % 4 != 0);
        }
        for _ in 0..5 {
            outer();
        }
    });
    let snapshot = flushed_snapshot(&pipeline, &sink);

    let parse_name = name!("parse");
    assert_eq!(count(&snapshot, parse_name, Outcome::Ok), 30);
    assert_eq!(count(&snapshot, parse_name, Outcome::Error), 10);
    let ok = snapshot.call(parse_name, Outcome::Ok).unwrap();
    assert_eq!(ok.total.sum, Duration::from_millis(3 * 30));
    assert_eq!(
        (ok.total.min, ok.total.max),
        (Duration::from_millis(3), Duration::from_millis(3))
    );
    let errors = snapshot.call(parse_name, Outcome::Error).unwrap();
    assert_eq!(errors.error_kinds.len(), 1);
    assert_eq!(
        (errors.error_kinds[0].kind, errors.error_kinds[0].total),
        ("error", 10)
    );

    // Nested spans: each closes once per call, and the outer one's duration holds the inner ones.
    assert_eq!(count(&snapshot, name!("outer"), Outcome::Ok), 5);
    assert_eq!(count(&snapshot, name!("inner"), Outcome::Ok), 10);
    let outer = snapshot.call(name!("outer"), Outcome::Ok).unwrap();
    assert_eq!(outer.total.max, Duration::from_millis(1 + 3 + 3));
    let inner = snapshot.call(name!("inner"), Outcome::Ok).unwrap();
    assert_eq!(inner.total.sum, Duration::from_millis(3 * 10));
    for outcome in [Outcome::Error, Outcome::Panic, Outcome::Cancelled] {
        assert_eq!(count(&snapshot, name!("outer"), outcome), 0, "{outcome}");
    }

    // The callsite is described from the span's metadata.
    let meta = ok.callsite;
    assert_eq!(meta.kind(), CallsiteKind::Function);
    assert_eq!(meta.module_path(), module_path!());
    assert_eq!(meta.file(), file!());
    assert!(meta.line() > 0);
    assert_eq!(meta.labels_slice(), &[] as &[(&str, &str)]);
    support::assert_accounted(&snapshot);
}

#[test]
fn span_fields_and_errors_reach_events_as_captured_arguments() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);
    tracing::dispatcher::with_default(&bridged(), || {
        assert!(parse("x7", 2).is_err());
        assert!(store("files", 17).is_err());
        // Sampled is off and nothing is slow: an `ok` call with fields is not an event.
        assert_eq!(parse("12", 1).unwrap(), 12);
        assert_eq!(summed(&[1, 2, 3], "abc"), 6);
    });
    pipeline.flush().expect("flush");

    let events = events_of(&sink, name!("parse"));
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event.outcome, Outcome::Error);
    assert_eq!(event.error_kind, Some("error"));
    assert_eq!(event.duration, Duration::from_millis(3));
    assert_eq!(
        event.fields,
        vec![
            ("text", FieldValue::Str("x7".into())),
            ("attempt", FieldValue::U64(2)),
            ("error", FieldValue::Formatted("no digits in \"x7\"".into())),
        ]
    );

    // A field declared `Empty` and recorded later, and an `err(Debug)` error.
    let events = events_of(&sink, name!("store"));
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        field(&events[0], "table"),
        Some(&FieldValue::Str("files".into()))
    );
    assert_eq!(field(&events[0], "rows"), Some(&FieldValue::U64(17)));
    let Some(FieldValue::Formatted(error)) = field(&events[0], "error") else {
        panic!("error field: {:?}", events[0].fields);
    };
    assert!(
        error.starts_with("Custom {") && error.contains("files is full"),
        "{error}"
    );

    assert!(events_of(&sink, name!("summed")).is_empty());
}

#[test]
fn sampled_spans_carry_their_fields_and_return_value() {
    let _serial = serial();
    let sink = MemorySink::new();
    // Every call of at least 1 ns is an event: `ok` calls show their fields too.
    let pipeline = instrument::builder()
        .clock(instrument::ClockSource::Mock)
        .slow_threshold(Duration::from_nanos(1))
        .sink(sink.clone())
        .install()
        .expect("no other pipeline is installed");
    tracing::dispatcher::with_default(&bridged(), || {
        // Values longer than fit in place, and formatted ones.
        let path = "/srv/data/".repeat(8);
        let span = tracing::info_span!(
            "batch",
            size = 3_i64,
            ratio = 0.5,
            ok = true,
            path = path.as_str(),
            shown = %std::net::Ipv4Addr::LOCALHOST,
            debugged = ?Some("x"),
        );
        let _entered = span.enter();
        advance(Duration::from_micros(5));
        assert_eq!(summed(&[1, 2, 3], "abc"), 6);
    });
    pipeline.flush().expect("flush");

    let batch = events_of(&sink, name!("batch"));
    assert_eq!(batch.len(), 1, "{batch:?}");
    assert_eq!(batch[0].outcome, Outcome::Ok);
    assert_eq!(
        batch[0].fields,
        vec![
            ("size", FieldValue::I64(3)),
            ("ratio", FieldValue::F64(0.5)),
            ("ok", FieldValue::Bool(true)),
            ("path", FieldValue::Str("/srv/data/".repeat(8).into())),
            ("shown", FieldValue::Formatted("127.0.0.1".into())),
            ("debugged", FieldValue::Formatted("Some(\"x\")".into())),
        ]
    );
    // `ret`: the return value is a captured argument too.
    let summed = events_of(&sink, name!("summed"));
    assert_eq!(summed.len(), 1, "{summed:?}");
    assert_eq!(
        summed[0].fields,
        vec![
            ("label", FieldValue::Str("abc".into())),
            ("return", FieldValue::Formatted("6".into())),
        ]
    );
}

#[test]
fn warnings_and_errors_become_notices_with_their_span_path() {
    let _serial = serial();
    let sink = MemorySink::new();
    let notices = Notices::default();
    let pipeline = install_with_notices(&sink, &notices);
    tracing::dispatcher::with_default(&bridged(), || {
        outer();
        tracing::warn!(disk = "sda", "outside any span");
        tracing::debug!("not forwarded either");
        // An `err` event is the span's outcome, not also a notice.
        assert!(parse("y", 9).is_err());
    });
    pipeline.flush().expect("flush");

    let notices = notices.all();
    let summary: Vec<(Level, &str)> = notices
        .iter()
        .map(|n| (n.level, n.message.as_str()))
        .collect();
    assert_eq!(
        summary,
        [
            (Level::Warn, "slow disk"),
            (Level::Error, "gave up on one file"),
            (Level::Warn, "outside any span"),
        ]
    );
    for notice in &notices {
        assert_eq!(notice.source, "tracing");
        assert_eq!(notice_field(notice, "target"), Some(module_path!()));
        let location = notice_field(notice, "location").expect("location");
        assert!(location.starts_with(concat!(file!(), ":")), "{location}");
    }
    let slow = &notices[0];
    assert_eq!(notice_field(slow, "span_path"), Some("outer:inner"));
    assert_eq!(notice_field(slow, "file"), Some("b.rs"));
    assert_eq!(notice_field(slow, "retries"), Some("2"));
    assert_eq!(notice_field(&notices[1], "span_path"), Some("outer"));
    assert_eq!(notice_field(&notices[1], "stage"), Some("outer"));
    assert_eq!(notice_field(&notices[2], "span_path"), None);
    assert_eq!(notice_field(&notices[2], "disk"), Some("sda"));

    // The failed `parse` is in the event stream instead.
    assert_eq!(events_of(&sink, name!("parse")).len(), 1);
}

#[test]
fn the_notice_level_is_configurable() {
    let _serial = serial();
    let sink = MemorySink::new();
    let notices = Notices::default();
    let pipeline = install_with_notices(&sink, &notices);
    let errors_only = Dispatch::new(
        tracing_subscriber::registry().with(InstrumentLayer::new().notices(LevelFilter::ERROR)),
    );
    tracing::dispatcher::with_default(&errors_only, outer);
    let none = Dispatch::new(
        tracing_subscriber::registry().with(InstrumentLayer::new().notices(LevelFilter::OFF)),
    );
    tracing::dispatcher::with_default(&none, outer);
    let snapshot = flushed_snapshot(&pipeline, &sink);

    let messages: Vec<String> = notices.all().into_iter().map(|n| n.message).collect();
    assert_eq!(messages, ["gave up on one file"]);
    // Spans are recorded whatever the notice level.
    assert_eq!(count(&snapshot, name!("outer"), Outcome::Ok), 2);
}

#[test]
fn async_spans_are_one_call_each_across_their_await_points() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install_counter_clock(&sink);
    let counting = Counting::default();
    let dispatch = Dispatch::new(
        tracing_subscriber::registry()
            .with(InstrumentLayer::new())
            .with(counting.clone()),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(3)
        .on_thread_start({
            let dispatch = dispatch.clone();
            move || {
                // Every worker records to this test's subscriber.
                let guard = tracing::dispatcher::set_default(&dispatch);
                std::mem::forget(guard);
            }
        })
        .build()
        .unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..8_u64)
            .map(|t| {
                tokio::spawn(async move {
                    for i in 0..25 {
                        let key = t * 25 + i;
                        assert_eq!(fetch(key, 4).await.is_ok(), key % 5 != 0);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("task");
        }
    });
    drop(runtime);
    let snapshot = flushed_snapshot(&pipeline, &sink);

    // 200 calls, each entered once per poll (five polls at least: four yields), measured once.
    assert!(
        counting.entered("fetch") >= 200 * 5,
        "{}",
        counting.entered("fetch")
    );
    assert_eq!(counting.closed("fetch"), 200);
    assert_eq!(count(&snapshot, name!("fetch"), Outcome::Ok), 160);
    assert_eq!(count(&snapshot, name!("fetch"), Outcome::Error), 40);
    let events = events_of(&sink, name!("fetch"));
    assert_eq!(events.len(), 40);
    assert!(
        events
            .iter()
            .all(|e| field(e, "yields") == Some(&FieldValue::U64(4)))
    );
    support::assert_accounted(&snapshot);
}

#[test]
fn a_span_closed_on_another_thread_is_one_call() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install_counter_clock(&sink);
    let dispatch = bridged();
    let span = tracing::dispatcher::with_default(&dispatch, || {
        let span = tracing::info_span!("handoff", job = 7_u64);
        span.in_scope(|| tracing::trace!("on the first thread"));
        span
    });
    std::thread::spawn(move || {
        // Entered and dropped on this thread, which has no subscriber of its own: the span
        // keeps the one it was created under.
        span.in_scope(|| tracing::trace!("on the second thread"));
        drop(span);
    })
    .join()
    .unwrap();
    let snapshot = flushed_snapshot(&pipeline, &sink);
    assert_eq!(count(&snapshot, name!("handoff"), Outcome::Ok), 1);
    let calls: u64 = Outcome::ALL
        .iter()
        .map(|&o| count(&snapshot, name!("handoff"), o))
        .sum();
    assert_eq!(calls, 1);
}

#[test]
fn panics_are_recorded_in_sync_and_async_spans() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);
    let dispatch = bridged();
    tracing::dispatcher::with_default(&dispatch, || {
        for _ in 0..3 {
            assert!(std::panic::catch_unwind(explode).is_err());
        }
        // A span that lives only inside the unwinding of a panic that is not its own.
        let unrelated = std::panic::catch_unwind(|| {
            let _cleanup = Cleanup;
            panic!("unrelated");
        });
        assert!(unrelated.is_err());
    });
    // tokio drops a task's future while the panic unwinds out of its poll: the span closes
    // during the unwinding.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let dispatch_for_task = dispatch.clone();
    runtime.block_on(async move {
        let _default = tracing::dispatcher::set_default(&dispatch_for_task);
        let task = tokio::spawn(explode_async());
        assert!(task.await.unwrap_err().is_panic());
    });
    // An executor that catches the panic and drops the future later, when the thread is no
    // longer unwinding (an `Instrumented` future, not an `async fn`, whose locals the unwinding
    // would drop): the span was exited by the unwinding, which is what marks it.
    tracing::dispatcher::with_default(&dispatch, || {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let body = async {
            YieldOnce(false).await;
            panic!("instrumented boom");
        };
        let mut future = Box::pin(body.instrument(tracing::info_span!("explode_instrumented")));
        assert!(future.as_mut().poll(&mut cx).is_pending());
        let polled = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            future.as_mut().poll(&mut cx)
        }));
        assert!(polled.is_err());
        assert!(!std::thread::panicking());
        drop(future);
    });
    let snapshot = flushed_snapshot(&pipeline, &sink);
    assert_eq!(count(&snapshot, name!("explode"), Outcome::Panic), 3);
    assert_eq!(count(&snapshot, name!("explode"), Outcome::Ok), 0);
    let panics = snapshot.call(name!("explode"), Outcome::Panic).unwrap();
    assert_eq!(panics.total.sum, Duration::from_millis(2 * 3));
    assert_eq!(count(&snapshot, name!("cleanup"), Outcome::Ok), 1);
    assert_eq!(count(&snapshot, name!("cleanup"), Outcome::Panic), 0);
    assert_eq!(count(&snapshot, name!("explode_async"), Outcome::Panic), 1);
    assert_eq!(count(&snapshot, name!("explode_async"), Outcome::Ok), 0);
    assert_eq!(
        count(&snapshot, name!("explode_instrumented"), Outcome::Panic),
        1
    );
    assert_eq!(
        count(&snapshot, name!("explode_instrumented"), Outcome::Ok),
        0
    );
}

#[test]
fn callsites_stay_one_per_span_name_however_many_field_values() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = install(&sink);
    let overflows_before = pipeline.self_metrics().callsite_overflows;
    tracing::dispatcher::with_default(&bridged(), || {
        for i in 0..20_000_u64 {
            let name = format!("file-{i}.rs");
            let span = tracing::info_span!("read", path = %name, size = i);
            let _entered = span.enter();
        }
    });
    let snapshot = flushed_snapshot(&pipeline, &sink);
    let reads: Vec<_> = snapshot
        .calls
        .iter()
        .filter(|c| c.callsite.name() == name!("read"))
        .collect();
    assert_eq!(reads.len(), 1, "one callsite, one outcome");
    assert_eq!(reads[0].total.count, 20_000);
    // The callsite the bridge registered is the one the name interns to: no other was made.
    let registered = instrument::metric(name!("read")).function().unwrap();
    assert!(std::ptr::eq(registered.metadata(), reads[0].callsite));
    assert_eq!(pipeline.self_metrics().callsite_overflows, overflows_before);
}

#[test]
fn spans_open_before_install_are_not_recorded() {
    let _serial = serial();
    let dispatch = bridged();
    // No pipeline: spans open and close without effect.
    tracing::dispatcher::with_default(&dispatch, || {
        for _ in 0..3 {
            outer();
        }
    });
    let early = tracing::dispatcher::with_default(&dispatch, || tracing::info_span!("early"));

    let sink = MemorySink::new();
    let pipeline = install(&sink);
    drop(early);
    tracing::dispatcher::with_default(&dispatch, outer);
    let snapshot = flushed_snapshot(&pipeline, &sink);
    assert_eq!(count(&snapshot, name!("outer"), Outcome::Ok), 1);
    assert_eq!(count(&snapshot, name!("inner"), Outcome::Ok), 2);
    assert!(snapshot.call(name!("early"), Outcome::Ok).is_none());
}

#[test]
fn spans_and_notices_reach_the_sqlite_store_as_rows() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("instrument.db");
    let store = instrument_sinks::SqliteSink::builder()
        .path(&path)
        .build()
        .expect("opens");
    let pipeline = instrument::builder()
        .clock(instrument::ClockSource::Mock)
        .sink(store)
        .install()
        .expect("no other pipeline is installed");
    tracing::dispatcher::with_default(&bridged(), || {
        for i in 0..12_u32 {
            let text = if i % 3 == 0 {
                format!("#{i}")
            } else {
                i.to_string()
            };
            let _ = parse(&text, i);
        }
        outer();
    });
    pipeline.flush().expect("flush");
    drop(pipeline);

    let db = rusqlite::Connection::open(&path).expect("opens the store");
    // Each call is in exactly one window row of its callsite and outcome.
    let calls = |name: &str, outcome: &str| -> (i64, i64) {
        db.query_row(
            "SELECT COUNT(*), COALESCE(SUM(w.count), 0)
             FROM windows w JOIN callsites c ON c.id = w.callsite_id
             WHERE c.name = ?1 AND w.outcome = ?2",
            [name, outcome],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    let (ok_rows, ok) = calls(name!("parse"), "ok");
    let (error_rows, error) = calls(name!("parse"), "error");
    assert!(ok_rows >= 1 && error_rows >= 1);
    assert_eq!((ok, error), (8, 4));
    assert_eq!(calls(name!("inner"), "ok").1, 2);
    assert_eq!(calls(name!("outer"), "ok").1, 1);

    let (module, kind, file): (String, String, String) = db
        .query_row(
            "SELECT module, kind, file FROM callsites WHERE name = ?1",
            [name!("parse")],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (module.as_str(), kind.as_str(), file.as_str()),
        (module_path!(), "function", file!())
    );

    let kinds: Vec<(String, i64)> = {
        let mut statement = db
            .prepare(
                "SELECT e.kind, SUM(e.count) FROM window_errors e
                 JOIN windows w ON w.id = e.window_id JOIN callsites c ON c.id = w.callsite_id
                 WHERE c.name = ?1 GROUP BY e.kind",
            )
            .unwrap();
        statement
            .query_map([name!("parse")], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(kinds, [("error".to_owned(), 4)]);

    let (events, fields): (i64, String) = db
        .query_row(
            "SELECT COUNT(*), MIN(e.fields) FROM events e JOIN callsites c ON c.id = e.callsite_id
             WHERE c.name = ?1 AND e.outcome = 'error' AND e.error_kind = 'error'",
            [name!("parse")],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(events, 4);
    let fields: serde_json::Value = serde_json::from_str(&fields).unwrap();
    assert!(fields.to_string().contains("no digits in"), "{fields}");

    let (message, level, notice_fields): (String, String, String) = db
        .query_row(
            "SELECT message, level, fields FROM notices WHERE source = 'tracing' AND level = 'warn'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((message.as_str(), level.as_str()), ("slow disk", "warn"));
    let notice_fields: serde_json::Value = serde_json::from_str(&notice_fields).unwrap();
    assert!(
        notice_fields
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["span_path", "outer:inner"])),
        "{notice_fields}"
    );
}

#[test]
fn spans_and_warnings_reach_the_json_lines_logs() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let logs = instrument_sinks::JsonlSink::builder()
        .dir(dir.path())
        .build()
        .expect("opens the directory");
    let pipeline = instrument::builder()
        .clock(instrument::ClockSource::Mock)
        .sink(logs)
        .install()
        .expect("no other pipeline is installed");
    tracing::dispatcher::with_default(&bridged(), || {
        for i in 0..6_u32 {
            let _ = parse(&format!("#{i}"), i);
        }
        outer();
    });
    pipeline.flush().expect("flush");
    drop(pipeline);

    let lines = |stream: &str| -> Vec<serde_json::Value> {
        std::fs::read_to_string(dir.path().join(format!("{stream}.jsonl")))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).expect("a JSON line"))
            .collect()
    };
    let errors = lines("error");
    let failed: Vec<_> = errors
        .iter()
        .filter(|l| l["kind"] == "call" && l["name"] == name!("parse"))
        .collect();
    assert_eq!(failed.len(), 6, "{errors:#?}");
    for line in &failed {
        assert_eq!(line["outcome"], "error");
        assert_eq!(line["error_kind"], "error");
        assert_eq!(line["duration_ns"], 3_000_000);
        assert!(
            line["fields"]["error"]
                .as_str()
                .is_some_and(|e| e.starts_with("no digits in")),
            "{line}"
        );
    }
    let notices: Vec<_> = errors.iter().filter(|l| l["kind"] == "notice").collect();
    let messages: Vec<(&str, &str)> = notices
        .iter()
        .map(|l| {
            (
                l["level"].as_str().unwrap(),
                l["fields"]["span_path"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        messages,
        [("warn", "outer:inner"), ("error", "outer")],
        "{notices:#?}"
    );
    let aggregates: u64 = lines("performance")
        .iter()
        .filter(|l| l["kind"] == "aggregate" && l["name"] == name!("parse"))
        .map(|l| l["fields"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(aggregates, 6);
}
