//! `err_kind` on an `impl` block applies to the methods whose return type is written as a
//! `Result` (`Result<T, E>`, `io::Result<T>`, `anyhow::Result<T>`, `fmt::Result`, in `async fn`s
//! too); the other methods are instrumented without it. Checked against a live pipeline.

use std::fmt;
use std::fmt::Write as _;
use std::future::Future;
use std::io;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use instrument::{Batch, ErrorKind, Outcome, Sink, SinkError, instrument_performance};

#[derive(Debug, ErrorKind)]
enum CounterError {
    Overflow,
}

impl fmt::Display for CounterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("overflow")
    }
}

impl std::error::Error for CounterError {}

fn counter_kind(error: &CounterError) -> &'static str {
    match error {
        CounterError::Overflow => "counter.overflow",
    }
}

fn io_kind(error: &io::Error) -> &'static str {
    match error.kind() {
        io::ErrorKind::NotFound => "io.not_found",
        _ => "io.other",
    }
}

fn anyhow_kind(_: &anyhow::Error) -> &'static str {
    "anyhow"
}

fn fmt_kind(_: &fmt::Error) -> &'static str {
    "fmt"
}

struct Counter {
    count: u8,
}

#[instrument_performance(err_kind = counter_kind, sample = 1)]
impl Counter {
    fn new() -> Self {
        Counter { count: 0 }
    }

    fn get(&self) -> u8 {
        self.count
    }

    fn reset(&mut self) {
        self.count = 0;
    }

    fn get_mut(&mut self) -> &mut u8 {
        &mut self.count
    }

    fn checked(&self) -> Option<u8> {
        self.count.checked_add(1)
    }

    fn bump(&mut self) -> Result<u8, CounterError> {
        self.count = self.count.checked_add(1).ok_or(CounterError::Overflow)?;
        Ok(self.count)
    }

    async fn bump_later(&mut self) -> core::result::Result<u8, CounterError> {
        self.bump()
    }

    // A method's own `err_kind` wins over the block's.
    #[instrument_performance(err_kind = io_kind)]
    fn open(&self) -> io::Result<u8> {
        Err(io::Error::from(io::ErrorKind::NotFound))
    }

    // A method's own options without `err_kind` keep the block's.
    #[instrument_performance(name = "counter.bump_twice")]
    fn bump_twice(&mut self) -> Result<u8, CounterError> {
        self.bump()?;
        self.bump()
    }
}

#[instrument_performance(err_kind = anyhow_kind, sample = 1)]
impl Counter {
    fn parse(text: &str) -> anyhow::Result<u8> {
        Ok(text.parse()?)
    }

    fn describe(&self) -> String {
        format!("count {}", self.count)
    }
}

#[instrument_performance(err_kind = fmt_kind, sample = 1)]
impl fmt::Display for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.count == 0 {
            return Err(fmt::Error);
        }
        write!(f, "{}", self.count)
    }
}

/// Every event's callsite name, outcome and error kind, in order.
type Seen = Arc<Mutex<Vec<(String, Outcome, Option<&'static str>)>>>;

struct Collect(Seen);

impl Sink for Collect {
    fn name(&self) -> &str {
        "collect"
    }

    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let mut seen = self.0.lock().unwrap();
        for event in &batch.events {
            let name = event.callsite.name();
            let name = name
                .rsplit_once("::Counter::")
                .map_or(name, |(_, method)| method);
            seen.push((name.to_owned(), event.outcome, event.error_kind));
        }
        Ok(())
    }
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

fn main() {
    let seen = Seen::default();
    let pipeline = instrument::builder()
        .sink(Collect(Arc::clone(&seen)))
        .install()
        .unwrap();

    let mut counter = Counter::new();
    assert_eq!(counter.get(), 0);
    *counter.get_mut() = 254;
    assert_eq!(counter.checked(), Some(255));
    assert_eq!(counter.bump().unwrap(), 255);
    assert!(counter.bump().is_err());
    assert!(block_on(counter.bump_later()).is_err());
    assert!(counter.open().is_err());
    counter.reset();
    assert!(write!(String::new(), "{counter}").is_err());
    assert_eq!(counter.bump_twice().unwrap(), 2);
    assert_eq!(counter.to_string(), "2");
    assert!(Counter::parse("x").is_err());
    assert_eq!(counter.describe(), "count 2");
    pipeline.flush().unwrap();

    let seen = seen.lock().unwrap();
    let mut seen: Vec<_> = seen
        .iter()
        .map(|(name, outcome, kind)| (name.as_str(), *outcome, *kind))
        .collect();
    seen.sort_unstable();
    let mut expected = vec![
        ("new", Outcome::Ok, None),
        ("get", Outcome::Ok, None),
        ("get_mut", Outcome::Ok, None),
        ("checked", Outcome::Ok, None),
        ("bump", Outcome::Ok, None),
        ("bump", Outcome::Error, Some("counter.overflow")),
        ("bump", Outcome::Error, Some("counter.overflow")),
        ("bump_later", Outcome::Error, Some("counter.overflow")),
        ("open", Outcome::Error, Some("io.not_found")),
        ("reset", Outcome::Ok, None),
        ("fmt", Outcome::Error, Some("fmt")),
        ("bump", Outcome::Ok, None),
        ("bump", Outcome::Ok, None),
        ("counter.bump_twice", Outcome::Ok, None),
        ("fmt", Outcome::Ok, None),
        ("parse", Outcome::Error, Some("anyhow")),
        ("describe", Outcome::Ok, None),
    ];
    expected.sort_unstable();
    assert_eq!(seen, expected);
}
