//! Methods of `#[async_trait]` impls. `#[async_trait]` on the impl expands before an attribute
//! on one of its methods, which then sees a plain `fn` returning
//! `Pin<Box<dyn Future<..>>>` whose body is `Box::pin(async move { .. })`. The instrumented
//! call must be the future, not its creation: timed across its awaits, `cancelled` when dropped,
//! classified by its `Result`. With the attribute on the impl block, both orders of the two
//! attributes work.
//!
//! The counter clock is used: tasks move between worker threads, and the mock clock is per
//! thread. Tests hold `LOCK` (a tokio mutex, since it is held across awaits) while recording.

use std::time::Duration;

use async_trait::async_trait;
use instrument::{CallsiteKind, FieldValue, Outcome, instrument_performance};
use instrument_sinks::MemorySink;
use tokio::sync::Mutex;
use tokio::time::{sleep, timeout};

mod support;
use support::{count, events_of, flushed_snapshot, install_counter_clock as install, name};

static LOCK: Mutex<()> = Mutex::const_new(());

#[derive(Debug, instrument::ErrorKind)]
enum Lookup {
    Even,
}

#[async_trait]
trait Store {
    async fn get(&self, key: u32) -> Result<u32, Lookup>;
    async fn wait(&self, ms: u64);
}

/// The attribute on each method, inside an `#[async_trait]` impl.
struct Methods;

#[async_trait]
impl Store for Methods {
    #[instrument_performance(capture(key))]
    async fn get(&self, key: u32) -> Result<u32, Lookup> {
        tokio::task::yield_now().await;
        if key.is_multiple_of(2) {
            return Err(Lookup::Even);
        }
        Ok(key)
    }

    #[instrument_performance]
    async fn wait(&self, ms: u64) {
        sleep(Duration::from_millis(ms)).await;
    }
}

/// The attribute on the impl block, under `#[async_trait]`: expanded second.
struct Inner;

#[async_trait]
#[instrument_performance]
impl Store for Inner {
    async fn get(&self, key: u32) -> Result<u32, Lookup> {
        if key.is_multiple_of(2) {
            return Err(Lookup::Even);
        }
        Ok(key)
    }

    async fn wait(&self, ms: u64) {
        sleep(Duration::from_millis(ms)).await;
    }
}

/// The attribute on the impl block, over `#[async_trait]`: expanded first, on `async fn`s.
struct Outer;

#[instrument_performance]
#[async_trait]
impl Store for Outer {
    async fn get(&self, key: u32) -> Result<u32, Lookup> {
        if key.is_multiple_of(2) {
            return Err(Lookup::Even);
        }
        Ok(key)
    }

    async fn wait(&self, ms: u64) {
        sleep(Duration::from_millis(ms)).await;
    }
}

/// Calls every method of `store` through `dyn Store`: 10 `get`s (5 even), one 20 ms `wait`,
/// and one `wait` dropped by a timeout after 5 ms.
async fn exercise(store: &(dyn Store + Sync)) {
    for key in 0..10 {
        let _ = store.get(key).await;
    }
    store.wait(20).await;
    assert!(
        timeout(Duration::from_millis(5), store.wait(10_000))
            .await
            .is_err()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_trait_methods_are_timed_as_futures() {
    let _serial = LOCK.lock().await;
    let sink = MemorySink::new();
    let pipeline = install(&sink);

    exercise(&Methods).await;
    exercise(&Inner).await;
    exercise(&Outer).await;
    let snapshot = flushed_snapshot(&pipeline, &sink);

    for (get, wait) in [
        (name!("get"), name!("wait")),
        (name!("Inner::get"), name!("Inner::wait")),
        (name!("Outer::get"), name!("Outer::wait")),
    ] {
        assert_eq!(count(&snapshot, get, Outcome::Ok), 5, "{get}");
        assert_eq!(count(&snapshot, get, Outcome::Error), 5, "{get}");
        let errors = snapshot.call(get, Outcome::Error).unwrap();
        assert_eq!(errors.error_kinds.len(), 1, "{get}");
        assert_eq!(
            (errors.error_kinds[0].kind, errors.error_kinds[0].total),
            ("Even", 5),
            "{get}"
        );
        assert_eq!(errors.callsite.kind(), CallsiteKind::Async, "{get}");

        // Timed across the sleep: the future, not its creation.
        let waited = snapshot.call(wait, Outcome::Ok).unwrap();
        assert_eq!(waited.total.count, 1, "{wait}");
        assert!(
            waited.total.min >= Duration::from_millis(20),
            "{wait}: {:?}",
            waited.total
        );
        assert_eq!(count(&snapshot, wait, Outcome::Cancelled), 1, "{wait}");
    }

    // Captured arguments reach the events of the method-level attribute.
    let mut keys: Vec<_> = events_of(&sink, name!("get"))
        .into_iter()
        .map(|e| match e.fields[..] {
            [("key", FieldValue::U64(key))] => key,
            _ => panic!("captured key: {:?}", e.fields),
        })
        .collect();
    keys.sort_unstable();
    assert_eq!(keys, [0, 2, 4, 6, 8]);
}
