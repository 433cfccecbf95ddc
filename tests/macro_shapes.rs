//! What `#[instrument_performance]` expansions record for each function shape: callsite names,
//! metadata from the options, outcomes and error kinds, captured arguments.
//!
//! A pipeline is process-wide, so each test installs its own under `LOCK`. The file also proves
//! the expansions are clean under `clippy::pedantic` and `unused_qualifications`.
#![deny(clippy::pedantic, unused_qualifications)]

use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use instrument::{
    CallsiteKind, ErrorKind, FieldValue, Outcome, Snapshot, instrument_performance, no_instrument,
};
use instrument_sinks::MemorySink;

mod support;
use support::name;

static LOCK: Mutex<()> = Mutex::new(());

/// Runs `body` with a pipeline installed, then flushes and returns the sink.
fn record(body: impl FnOnce()) -> MemorySink {
    let _serial: MutexGuard<'_, ()> = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let sink = MemorySink::new();
    let pipeline = instrument::builder()
        .sink(sink.clone())
        .install()
        .expect("no other pipeline is installed");
    body();
    pipeline.flush().expect("flush");
    drop(pipeline);
    sink
}

fn snapshot(sink: &MemorySink) -> Arc<Snapshot> {
    sink.last_snapshot().expect("flush delivers a snapshot")
}

fn count(snapshot: &Snapshot, name: &str, outcome: Outcome) -> u64 {
    snapshot
        .call(name, outcome)
        .map_or(0, |stats| stats.total.count)
}

fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

#[derive(Debug, ErrorKind, thiserror::Error)]
enum FetchError {
    #[error("timed out")]
    Timeout,
    #[error("status {0}")]
    Status(u16),
}

#[instrument_performance]
fn fetch(code: u16) -> Result<u16, FetchError> {
    match code {
        0 => return Err(FetchError::Timeout),
        200 => {}
        other => Err(FetchError::Status(other))?,
    }
    Ok(code)
}

#[instrument_performance]
fn parse(text: &str) -> anyhow::Result<u32> {
    Ok(text.parse()?)
}

#[instrument_performance]
fn io_alias(fail: bool) -> std::io::Result<()> {
    if fail {
        return Err(std::io::Error::other("failed"));
    }
    Ok(())
}

fn classify(error: &std::io::Error) -> &'static str {
    if error.kind() == std::io::ErrorKind::NotFound {
        "not_found"
    } else {
        "io"
    }
}

#[instrument_performance(err_kind = classify)]
fn with_err_kind() -> std::io::Result<()> {
    Err(std::io::ErrorKind::NotFound.into())
}

/// The line of `fn plain`, which its callsite records (not the attribute's line).
const PLAIN_LINE: u32 = line!() + 2;
#[instrument_performance]
fn plain(x: u32) -> u32 {
    x + 1
}

#[instrument_performance]
fn panics() {
    panic!("instrumented panic");
}

#[test]
fn results_are_classified_by_outcome_and_error_kind() {
    let sink = record(|| {
        assert_eq!(fetch(200).unwrap(), 200);
        assert!(fetch(0).is_err());
        assert!(fetch(404).is_err());
        assert!(fetch(500).is_err());
        assert_eq!(parse("7").unwrap(), 7);
        assert!(parse("x").is_err());
        assert!(io_alias(true).is_err());
        assert!(with_err_kind().is_err());
        assert_eq!(plain(1), 2);
        assert!(std::panic::catch_unwind(panics).is_err());
    });
    let snapshot = snapshot(&sink);
    assert_eq!(count(&snapshot, name!("fetch"), Outcome::Ok), 1);
    let errors = snapshot.call(name!("fetch"), Outcome::Error).unwrap();
    let mut kinds: Vec<_> = errors
        .error_kinds
        .iter()
        .map(|k| (k.kind, k.total))
        .collect();
    kinds.sort_unstable();
    assert_eq!(kinds, [("Status", 2), ("Timeout", 1)]);

    let parse_errors = snapshot.call(name!("parse"), Outcome::Error).unwrap();
    assert_eq!(parse_errors.error_kinds[0].kind, "anyhow::Error");
    let io_errors = snapshot.call(name!("io_alias"), Outcome::Error).unwrap();
    assert_eq!(io_errors.error_kinds[0].kind, "std::io::error::Error");
    let custom = snapshot
        .call(name!("with_err_kind"), Outcome::Error)
        .unwrap();
    assert_eq!(custom.error_kinds[0].kind, "not_found");
    let plain = snapshot.call(name!("plain"), Outcome::Ok).unwrap();
    assert_eq!(plain.total.count, 1);
    assert_eq!(plain.callsite.line(), PLAIN_LINE);
    assert_eq!(count(&snapshot, name!("panics"), Outcome::Panic), 1);
}

#[instrument_performance(
    name = "shapes.options",
    labels(stage = "parse"),
    slow = "5ms",
    sample = 1,
    audit,
    capture(id, %label)
)]
fn with_options(id: u64, label: &str, ignored: &[u8]) -> usize {
    label.len() + ignored.len() + usize::try_from(id).unwrap()
}

#[instrument_performance(skip(secret), sample = 1)]
fn with_skip(user: &str, secret: &str, attempt: u8) -> bool {
    !user.is_empty() && !secret.is_empty() && attempt > 0
}

#[test]
fn options_reach_the_callsite_and_events() {
    let sink = record(|| {
        assert_eq!(with_options(3, "ab", &[0]), 6);
        assert!(with_skip("ann", "hunter2", 1));
    });
    let events = sink.events();
    let event = events
        .iter()
        .find(|e| e.callsite.name() == "shapes.options")
        .expect("sample = 1 sends every call");
    let meta = event.callsite;
    assert_eq!(meta.labels_slice(), [("stage", "parse")]);
    assert_eq!(meta.slow_threshold(), Some(Duration::from_millis(5)));
    assert!((meta.sample_rate() - 1.0).abs() < f64::EPSILON);
    assert!(meta.is_audited());
    assert!(meta.captures_arguments());
    assert_eq!(meta.kind(), CallsiteKind::Function);
    assert_eq!(meta.file(), file!());
    assert_eq!(meta.module_path(), module_path!());
    assert_eq!(
        event.fields,
        [
            ("id", FieldValue::U64(3)),
            ("label", FieldValue::Str("ab".into()))
        ]
    );
    assert!(
        sink.audit()
            .iter()
            .any(|entry| format!("{entry:?}").contains("shapes.options"))
    );

    let skip = events
        .iter()
        .find(|e| e.callsite.name() == name!("with_skip"))
        .unwrap();
    assert_eq!(
        skip.fields,
        [
            ("user", FieldValue::Str("ann".into())),
            ("attempt", FieldValue::U64(1))
        ]
    );
}

#[instrument_performance]
async fn load(key: u32) -> Result<u32, FetchError> {
    if key == 0 {
        return Err(FetchError::Timeout);
    }
    Ok(key)
}

#[instrument_performance]
async fn never_finishes() {
    std::future::pending::<()>().await;
}

#[test]
fn async_fns_record_when_the_future_completes_or_is_dropped() {
    let sink = record(|| {
        assert_eq!(block_on(load(1)).unwrap(), 1);
        assert!(block_on(load(0)).is_err());
        let mut pending = Box::pin(never_finishes());
        let poll = pending
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()));
        assert!(poll.is_pending());
        drop(pending);
    });
    let snapshot = snapshot(&sink);
    let ok = snapshot.call(name!("load"), Outcome::Ok).unwrap();
    assert_eq!(ok.total.count, 1);
    assert_eq!(ok.callsite.kind(), CallsiteKind::Async);
    assert_eq!(count(&snapshot, name!("load"), Outcome::Error), 1);
    assert_eq!(
        count(&snapshot, name!("never_finishes"), Outcome::Cancelled),
        1
    );
}

#[derive(Debug, Default)]
struct Store {
    values: Vec<u32>,
}

#[instrument_performance(slow = "1s")]
impl Store {
    fn push(&mut self, value: u32) {
        self.values.push(value);
    }

    fn first_mut(&mut self) -> Option<&mut u32> {
        self.values.first_mut()
    }

    #[no_instrument]
    fn len(&self) -> usize {
        self.values.len()
    }

    #[instrument_performance(name = "store.clear", audit)]
    fn clear(&mut self) {
        self.values.clear();
    }
}

trait Describe {
    fn describe(&self) -> String;

    #[instrument_performance]
    fn shout(&self) -> String {
        self.describe().to_uppercase()
    }
}

#[instrument_performance]
impl Describe for Store {
    fn describe(&self) -> String {
        format!("{} values", self.values.len())
    }
}

#[test]
fn impl_blocks_name_methods_after_the_type() {
    let sink = record(|| {
        let mut store = Store::default();
        store.push(1);
        if let Some(first) = store.first_mut() {
            *first += 1;
        }
        assert_eq!(store.len(), 1);
        assert_eq!(store.shout(), "1 VALUES");
        store.clear();
    });
    let snapshot = snapshot(&sink);
    let push = snapshot.call(name!("Store::push"), Outcome::Ok).unwrap();
    assert_eq!(push.callsite.slow_threshold(), Some(Duration::from_secs(1)));
    let first_mut = snapshot
        .call(name!("Store::first_mut"), Outcome::Ok)
        .unwrap();
    assert_eq!(first_mut.total.count, 1);
    // Each method records its own line, not the line of the block's attribute.
    assert!(first_mut.callsite.line() > push.callsite.line());
    assert_eq!(count(&snapshot, name!("Store::describe"), Outcome::Ok), 1);
    // A trait default method is named after the method only: the attribute cannot see the trait.
    assert_eq!(count(&snapshot, name!("shout"), Outcome::Ok), 1);
    let clear = snapshot.call("store.clear", Outcome::Ok).unwrap();
    assert!(clear.callsite.is_audited());
    assert_eq!(
        clear.callsite.slow_threshold(),
        Some(Duration::from_secs(1))
    );
    assert!(
        snapshot
            .calls
            .iter()
            .all(|c| !c.callsite.name().ends_with("len"))
    );
}

#[no_instrument]
fn not_instrumented() -> u8 {
    1
}

#[test]
fn no_instrument_outside_an_impl_block_changes_nothing() {
    let sink = record(|| assert_eq!(not_instrumented(), 1));
    let snapshot = snapshot(&sink);
    assert!(
        snapshot
            .call(name!("not_instrumented"), Outcome::Ok)
            .is_none()
    );
}
