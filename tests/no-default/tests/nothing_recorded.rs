//! With `instrument`'s `enabled` feature off, annotated items behave exactly as written and a
//! pipeline installed around them receives nothing from them.
//!
//! Only one pipeline can be installed per process, so the tests that install one take `LOCK`.

use std::future::Future;
use std::pin::pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

use instrument::{AuditEntry, ErrorKind};
use instrument_no_default::{
    Overflow, ParseError, Tally, double_later, login, manual_metrics, overflow_kind, parse,
};
use instrument_sinks::MemorySink;

static LOCK: Mutex<()> = Mutex::new(());

const UNIFIED: &str = "instrument's `enabled` feature is on: features unify across a workspace \
    build, so run this crate alone with `cargo test -p instrument-no-default`";

fn serial() -> MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(PoisonError::into_inner)
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

/// Calls everything the library annotates, checking each result.
fn exercise() {
    assert_eq!(parse(" 42 "), Ok(42));
    assert_eq!(parse(""), Err(ParseError::Empty));
    assert_eq!(parse("x"), Err(ParseError::Invalid("x".into())));
    assert!(login("admin", "hunter2"));
    assert!(!login("admin", "guess"));
    assert_eq!(block_on(double_later(21)), 42);
    let mut tally = Tally::new();
    assert_eq!(tally.add(2), Ok(2));
    assert_eq!(tally.add(u64::MAX), Err(Overflow));
    assert_eq!(tally.total(), 2);
    assert_eq!(manual_metrics(&[1, 2, 3]), 6);
}

#[test]
fn a_pipeline_receives_nothing_from_annotated_code() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = instrument::builder()
        .sink(sink.clone())
        .install()
        .expect("install");
    exercise();
    pipeline.flush().expect("flush");
    let snapshot = sink.last_snapshot().expect("a flush delivers a snapshot");
    drop(pipeline);

    let names: Vec<_> = snapshot.calls.iter().map(|c| c.callsite.name()).collect();
    assert!(
        names.is_empty(),
        "calls were recorded: {names:?}; {UNIFIED}"
    );
    assert!(snapshot.counters.is_empty(), "counter! recorded; {UNIFIED}");
    assert!(snapshot.gauges.is_empty(), "gauge! recorded; {UNIFIED}");
    assert!(
        sink.events().is_empty(),
        "events were sent (slow/sample options); {UNIFIED}"
    );
    assert!(sink.drops().is_empty());
    assert!(
        sink.audit().is_empty(),
        "the `audit` option made entries; {UNIFIED}"
    );
    assert_eq!(snapshot.self_metrics.events_recorded, 0, "{UNIFIED}");
}

/// `audit()` is a function of the runtime, not a macro: the `enabled` feature does not remove
/// it, and an entry made by hand still reaches the sinks.
#[test]
fn manual_audit_entries_still_reach_sinks() {
    let _serial = serial();
    let sink = MemorySink::new();
    let pipeline = instrument::builder()
        .sink(sink.clone())
        .install()
        .expect("install");
    instrument::audit(AuditEntry::new("load").input("a.rs").output("ast:1")).expect("audit");
    pipeline.flush().expect("flush");
    let audit = sink.audit();
    assert_eq!(audit.len(), 1);
    assert_eq!(
        (audit[0].inputs.as_slice(), audit[0].outputs.as_slice()),
        (
            ["a.rs".to_owned()].as_slice(),
            ["ast:1".to_owned()].as_slice()
        )
    );
}

#[test]
fn annotated_items_keep_their_signatures_and_behaviour() {
    // Function pointers of exactly the written types.
    let parse_fn: fn(&str) -> Result<u32, ParseError> = parse;
    let login_fn: fn(&str, &str) -> bool = login;
    let add_fn: fn(&mut Tally, u64) -> Result<u64, Overflow> = Tally::add;
    let new_fn: fn() -> Tally = Tally::new;
    assert_eq!(parse_fn("7"), Ok(7));
    assert!(login_fn("admin", "hunter2"));
    let mut tally = new_fn();
    assert_eq!(add_fn(&mut tally, 5), Ok(5));

    // The derive and the `err_kind` function are ordinary code either way.
    assert_eq!(ParseError::Empty.error_kind(), "Empty");
    assert_eq!(ParseError::Invalid(String::new()).error_kind(), "Invalid");
    assert_eq!(overflow_kind(&Overflow), "overflow");

    // Without a pipeline everything runs as written, including the `async fn`.
    exercise();
}
