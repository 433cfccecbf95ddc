//! `async fn`s on a multi-threaded tokio runtime: counted like sync functions, timed across
//! their awaits, `cancelled` when dropped before they finish, `panic` when they panic, and
//! correlated through `FutureExt::with_correlation` across awaits, worker threads and nested
//! instrumented calls.
//!
//! The counter clock is used: a task may move between worker threads, and the mock clock is
//! per thread. A pipeline is process-wide: every test holds `LOCK` (a tokio mutex, since it is
//! held across awaits) while it records.

// `explode` panics on purpose, which `panic!` says more plainly than `assert!`.
#![allow(clippy::manual_assert)]

use std::collections::HashMap;
use std::time::Duration;

use instrument::{
    CallsiteKind, CorrelationId, Event, FieldValue, FutureExt, Outcome, instrument_performance,
};
use instrument_sinks::MemorySink;
use tokio::sync::{Mutex, oneshot};
use tokio::time::{sleep, timeout};

mod support;
use support::{count, events_of, flushed_snapshot, install_counter_clock as install, name};

static LOCK: Mutex<()> = Mutex::const_new(());

#[derive(Debug, instrument::ErrorKind, thiserror::Error)]
enum FetchError {
    #[error("missing")]
    Missing,
}

#[instrument_performance]
async fn fetch(key: u32) -> Result<u32, FetchError> {
    tokio::task::yield_now().await;
    if key.is_multiple_of(4) {
        return Err(FetchError::Missing);
    }
    tokio::task::yield_now().await;
    Ok(key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn async_fns_are_counted_exactly() {
    let _serial = LOCK.lock().await;
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    // 16 tasks x 48 calls; every fourth key fails.
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            tokio::spawn(async move {
                for key in 0..48 {
                    assert_eq!(fetch(key).await.is_ok(), key % 4 != 0);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }

    let snapshot = flushed_snapshot(&pipeline, &sink);
    let ok = snapshot.call(name!("fetch"), Outcome::Ok).unwrap();
    assert_eq!(ok.callsite.kind(), CallsiteKind::Async);
    assert_eq!(ok.total.count, 16 * 36);
    assert_eq!(count(&snapshot, name!("fetch"), Outcome::Error), 16 * 12);
    assert_eq!(count(&snapshot, name!("fetch"), Outcome::Cancelled), 0);
    let errors = events_of(&sink, name!("fetch"));
    assert_eq!(errors.len(), 16 * 12);
    assert!(errors.iter().all(|e| e.error_kind == Some("Missing")));
}

#[instrument_performance]
async fn waits(millis: u64) -> u64 {
    sleep(Duration::from_millis(millis)).await;
    millis
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_duration_spans_every_await() {
    let _serial = LOCK.lock().await;
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    let (a, b, c) = tokio::join!(
        tokio::spawn(waits(25)),
        tokio::spawn(waits(25)),
        tokio::spawn(waits(25))
    );
    assert_eq!((a.unwrap(), b.unwrap(), c.unwrap()), (25, 25, 25));

    let snapshot = flushed_snapshot(&pipeline, &sink);
    let total = snapshot.call(name!("waits"), Outcome::Ok).unwrap().total;
    assert_eq!(total.count, 3);
    assert!(
        total.min >= Duration::from_millis(20),
        "a call sleeping 25 ms was timed at {:?}",
        total.min
    );
}

#[instrument_performance]
async fn never_ready() {
    std::future::pending::<()>().await;
}

#[instrument_performance]
async fn slow_call() -> Result<(), FetchError> {
    sleep(Duration::from_secs(3600)).await;
    Ok(())
}

#[instrument_performance]
async fn parked(started: oneshot::Sender<()>) {
    let _ = started.send(());
    std::future::pending::<()>().await;
}

#[instrument_performance]
async fn never_polled() {
    std::future::ready(()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn futures_dropped_before_they_finish_are_cancelled() {
    let _serial = LOCK.lock().await;
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    // Dropped by `timeout`.
    assert!(
        timeout(Duration::from_millis(10), never_ready())
            .await
            .is_err()
    );
    // Dropped by the losing branch of `select!`.
    tokio::select! {
        _ = slow_call() => panic!("slow_call finished"),
        () = sleep(Duration::from_millis(5)) => {}
    }
    // Dropped by the runtime when its task is aborted, on a worker thread.
    let (started, is_started) = oneshot::channel();
    let task = tokio::spawn(parked(started));
    is_started.await.unwrap();
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    // Never polled: the function never started, so there is nothing to record.
    drop(never_polled());

    let snapshot = flushed_snapshot(&pipeline, &sink);
    for name in [name!("never_ready"), name!("slow_call"), name!("parked")] {
        assert_eq!(count(&snapshot, name, Outcome::Cancelled), 1, "{name}");
        assert_eq!(count(&snapshot, name, Outcome::Ok), 0, "{name}");
        assert_eq!(count(&snapshot, name, Outcome::Error), 0, "{name}");
    }
    assert!(
        snapshot
            .calls
            .iter()
            .all(|c| c.callsite.name() != name!("never_polled"))
    );
    let cancelled = sink.events();
    assert_eq!(cancelled.len(), 3);
    assert!(cancelled.iter().all(|e| e.outcome == Outcome::Cancelled));
    // Cancelled after at least the 10 ms timeout.
    let never_ready = events_of(&sink, name!("never_ready"));
    assert!(never_ready[0].duration >= Duration::from_millis(10));
}

#[instrument_performance]
async fn explode(code: u32) -> Result<u32, FetchError> {
    tokio::task::yield_now().await;
    if code > 0 {
        panic!("async boom {code}");
    }
    Ok(code)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_panic_in_a_spawned_async_fn_is_recorded_and_reaches_the_join_handle() {
    let _serial = LOCK.lock().await;
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    let err = tokio::spawn(explode(7)).await.unwrap_err();
    assert!(err.is_panic());
    let payload = err.into_panic();
    assert_eq!(
        payload.downcast_ref::<String>().map(String::as_str),
        Some("async boom 7")
    );
    assert_eq!(tokio::spawn(explode(0)).await.unwrap().unwrap(), 0);

    let snapshot = flushed_snapshot(&pipeline, &sink);
    assert_eq!(count(&snapshot, name!("explode"), Outcome::Panic), 1);
    assert_eq!(count(&snapshot, name!("explode"), Outcome::Cancelled), 0);
    assert_eq!(count(&snapshot, name!("explode"), Outcome::Ok), 1);
    let events = sink.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].outcome, Outcome::Panic);
}

#[instrument_performance(capture(task))]
fn check(task: usize) -> Result<(), FetchError> {
    let _ = task;
    Err(FetchError::Missing)
}

#[instrument_performance(capture(task))]
async fn step(task: usize) -> Result<(), FetchError> {
    tokio::task::yield_now().await;
    check(task)?;
    Ok(())
}

#[instrument_performance(capture(task))]
async fn job(task: usize) -> Result<(), FetchError> {
    for _ in 0..3 {
        sleep(Duration::from_millis(1)).await;
        let _ = step(task).await;
    }
    Err(FetchError::Missing)
}

/// The task number captured in an event's fields (`task`).
fn task_of(event: &Event) -> usize {
    match event.fields[..] {
        [("task", FieldValue::U64(task))] => usize::try_from(task).unwrap(),
        _ => panic!("no task field: {event:?}"),
    }
}

const TASKS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn correlation_ids_follow_each_task_across_awaits_threads_and_nested_calls() {
    let _serial = LOCK.lock().await;
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    let ids: Vec<_> = (0..TASKS).map(|_| CorrelationId::new()).collect();
    let tasks: Vec<_> = ids
        .iter()
        .enumerate()
        .map(|(task, &id)| tokio::spawn(job(task).with_correlation(id)))
        .collect();
    // `in_current_correlation` takes the id current where the task is spawned.
    let outer = CorrelationId::new();
    let spawned = {
        let _scope = outer.enter();
        tokio::spawn(job(TASKS).in_current_correlation())
    };
    assert_eq!(CorrelationId::current(), None);
    for task in tasks {
        assert!(task.await.unwrap().is_err());
    }
    assert!(spawned.await.unwrap().is_err());
    pipeline.flush().unwrap();

    let events = sink.events();
    // Per task: 3 `check` errors, 3 `step` errors and the `job` error.
    assert_eq!(events.len(), (TASKS + 1) * 7);
    let mut per_task: HashMap<usize, usize> = HashMap::new();
    for event in &events {
        let task = task_of(event);
        let expected = if task == TASKS { outer } else { ids[task] };
        assert_eq!(
            event.correlation,
            Some(expected),
            "{} of task {task}",
            event.callsite.name()
        );
        *per_task.entry(task).or_default() += 1;
    }
    assert!(per_task.values().all(|&n| n == 7), "{per_task:?}");
    // Work outside any correlated future has no id.
    check(0).unwrap_err();
    pipeline.flush().unwrap();
    let last = sink.events().pop().unwrap();
    assert_eq!(last.callsite.name(), name!("check"));
    assert_eq!(last.correlation, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cancelled_calls_keep_their_correlation_id() {
    let _serial = LOCK.lock().await;
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    let by_timeout = CorrelationId::new();
    assert!(
        timeout(
            Duration::from_millis(5),
            slow_call().with_correlation(by_timeout)
        )
        .await
        .is_err()
    );
    let by_abort = CorrelationId::new();
    let (started, is_started) = oneshot::channel();
    let task = tokio::spawn(parked(started).with_correlation(by_abort));
    is_started.await.unwrap();
    task.abort();
    assert!(task.await.unwrap_err().is_cancelled());
    pipeline.flush().unwrap();

    let slow = events_of(&sink, name!("slow_call"));
    assert_eq!(slow.len(), 1);
    assert_eq!(slow[0].outcome, Outcome::Cancelled);
    assert_eq!(
        slow[0].correlation,
        Some(by_timeout),
        "the cancelled call ran under this id"
    );
    let parked = events_of(&sink, name!("parked"));
    assert_eq!(parked.len(), 1);
    assert_eq!(parked[0].outcome, Outcome::Cancelled);
    assert_eq!(
        parked[0].correlation,
        Some(by_abort),
        "the cancelled call ran under this id"
    );
}

#[tokio::test(flavor = "current_thread")]
async fn a_panicking_task_does_not_leave_its_correlation_id_on_the_thread() {
    let _serial = LOCK.lock().await;
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    // On a current-thread runtime every task is polled on this thread.
    let id = CorrelationId::new();
    let err = tokio::spawn(explode(1).with_correlation(id))
        .await
        .unwrap_err();
    assert!(err.is_panic());
    let after = tokio::spawn(async { (CorrelationId::current(), check(1).is_err()) })
        .await
        .unwrap();
    assert_eq!(
        after,
        (None, true),
        "an unrelated task runs with the id of the task that panicked"
    );
    assert_eq!(CorrelationId::current(), None);
    pipeline.flush().unwrap();

    let explode = events_of(&sink, name!("explode"));
    assert_eq!(explode.len(), 1);
    assert_eq!(explode[0].outcome, Outcome::Panic);
    assert_eq!(explode[0].correlation, Some(id));
    let check = events_of(&sink, name!("check"));
    assert_eq!(check.len(), 1);
    assert_eq!(check[0].correlation, None);
}
