//! `async fn`s: free, generic, methods and trait methods, with `?` and early `return`.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use instrument::instrument_performance;

#[instrument_performance]
async fn unit() {}

#[instrument_performance]
async fn always_panics() {
    panic!("never polled")
}

#[instrument_performance]
async fn double(x: u32) -> u32 {
    x * 2
}

#[instrument_performance]
async fn parse(text: &str) -> Result<u32, std::num::ParseIntError> {
    if text.is_empty() {
        return Ok(0);
    }
    let value: u32 = text.trim().parse()?;
    Ok(value + double(1).await)
}

#[instrument_performance]
async fn with_anyhow(text: String) -> anyhow::Result<u32> {
    let value: u32 = text.parse()?;
    anyhow::ensure!(value < 100, "too large: {value}");
    Ok(value)
}

#[instrument_performance]
async fn generic<T: Clone + Send>(value: &T) -> T {
    value.clone()
}

#[instrument_performance]
async fn borrowing<'a>(items: &'a [u8], (from, to): (usize, usize)) -> &'a [u8] {
    &items[from..to]
}

#[instrument_performance]
async fn returns_impl(n: u32) -> impl Iterator<Item = u32> {
    0..n
}

struct Counter {
    count: u32,
}

impl Counter {
    #[instrument_performance]
    async fn bump(&mut self) -> &mut u32 {
        self.count += 1;
        &mut self.count
    }

    #[instrument_performance]
    async fn read(&self) -> u32 {
        self.count
    }

    #[instrument_performance]
    async fn finish(self) -> u32 {
        self.count
    }
}

trait Load {
    async fn load(&self, key: u32) -> Result<u32, String>;

    #[instrument_performance]
    async fn load_twice(&self, key: u32) -> Result<u32, String> {
        let a = self.load(key).await?;
        Ok(a + self.load(key).await?)
    }
}

impl Load for Counter {
    #[instrument_performance]
    async fn load(&self, key: u32) -> Result<u32, String> {
        if key == 0 {
            return Err("zero".to_owned());
        }
        Ok(key + self.count)
    }
}

fn is_send<F: Future + Send>(future: F) -> F {
    future
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
    block_on(unit());
    assert_eq!(block_on(double(2)), 4);
    assert_eq!(block_on(is_send(parse("40"))), Ok(42));
    assert_eq!(block_on(parse("")), Ok(0));
    assert!(block_on(parse("x")).is_err());
    assert_eq!(block_on(with_anyhow("7".to_owned())).unwrap(), 7);
    assert!(block_on(with_anyhow("700".to_owned())).is_err());
    assert_eq!(block_on(generic(&5)), 5);
    assert_eq!(block_on(borrowing(&[1, 2, 3], (1, 3))), [2, 3]);
    assert_eq!(block_on(returns_impl(3)).count(), 3);
    let mut counter = Counter { count: 0 };
    *block_on(counter.bump()) += 10;
    assert_eq!(block_on(counter.read()), 11);
    assert_eq!(block_on(counter.load_twice(1)), Ok(24));
    assert!(block_on(counter.load(0)).is_err());
    assert_eq!(block_on(counter.finish()), 11);
    // Dropped before completion: the guard is dropped with the future.
    drop(double(3));
    drop(always_panics());
}
