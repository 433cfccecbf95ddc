//! `instrument` built with its `enabled` feature off: every attribute, derive and manual macro
//! still compiles, and none of them records anything.
//!
//! The functions here carry every option of `#[instrument_performance]`, in every shape it
//! accepts (free function, `async fn`, `impl` block with a `#[no_instrument]` method), plus
//! `counter!`, `gauge!` and `timer!`. `tests/nothing_recorded.rs` installs a pipeline, calls
//! them and checks that the sink received no call, counter, gauge, event or audit entry.
//!
//! Run it on its own, `cargo test -p instrument-no-default`: in a workspace-wide build other
//! packages turn `instrument/enabled` on, and Cargo unifies features.

use instrument::{ErrorKind, instrument_performance};

/// Why [`parse`] failed.
#[derive(Debug, PartialEq, Eq, ErrorKind)]
pub enum ParseError {
    /// The text was empty.
    Empty,
    /// The text was not a number.
    Invalid(String),
}

/// Parses a decimal number, with every per-function option of the attribute set.
///
/// # Errors
/// [`ParseError::Empty`] for blank text, [`ParseError::Invalid`] for anything else that is not
/// a `u32`.
#[instrument_performance(
    name = "no_default.parse",
    labels(stage = "parse"),
    slow = "1ns",
    sample = 1.0,
    capture(%text),
    audit
)]
pub fn parse(text: &str) -> Result<u32, ParseError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(ParseError::Empty);
    }
    text.parse()
        .map_err(|_| ParseError::Invalid(text.to_owned()))
}

/// Checks a password, skipping it from captured arguments.
#[instrument_performance(skip(password), audit)]
#[must_use]
pub fn login(user: &str, password: &str) -> bool {
    user == "admin" && password == "hunter2"
}

/// Doubles `x` after one yield to the executor.
#[instrument_performance(slow = "1ns", sample = 1.0)]
pub async fn double_later(x: u32) -> u32 {
    YieldOnce(false).await;
    x * 2
}

/// A future that is pending once, then ready.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}

/// Adding past `u64::MAX`.
#[derive(Debug, PartialEq, Eq)]
pub struct Overflow;

/// The error kind of [`Overflow`], for `err_kind = ...`.
#[must_use]
pub fn overflow_kind(_: &Overflow) -> &'static str {
    "overflow"
}

/// A running total.
#[derive(Debug, Default)]
pub struct Tally {
    total: u64,
}

#[instrument_performance(slow = "1ns", sample = 1.0, audit)]
impl Tally {
    /// An empty tally.
    #[must_use]
    pub fn new() -> Self {
        Tally { total: 0 }
    }

    /// Adds `n`, returning the new total.
    ///
    /// # Errors
    /// [`Overflow`] when the total would pass `u64::MAX`; the total is unchanged.
    #[instrument_performance(err_kind = overflow_kind)]
    pub fn add(&mut self, n: u64) -> Result<u64, Overflow> {
        self.total = self.total.checked_add(n).ok_or(Overflow)?;
        Ok(self.total)
    }

    /// The total so far.
    #[no_instrument]
    #[must_use]
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// Uses every manual macro (`counter!`, `gauge!`, `timer!`) and every handle `metric` returns,
/// and returns the sum of `values`.
#[must_use]
pub fn manual_metrics(values: &[u64]) -> u64 {
    let _timer = instrument::timer!("sum_values", "stage" => "sum");
    let sum = values.iter().sum();
    instrument::counter!("values_total", values.len() as u64, "stage" => "sum");
    instrument::counter!("sums_total");
    instrument::gauge!("last_sum", sum as f64);
    let failed = instrument::timer!("failing_block");
    failed.error("Always");
    // Registered at run time: the handles exist, and record nothing either.
    let disk = instrument::metric("disk_reads_total")
        .label("disk", "sda")
        .counter()
        .expect("a valid metric");
    disk.add(sum);
    let depth = instrument::metric("queue_depth")
        .gauge()
        .expect("a valid metric");
    depth.set(1.0);
    depth.add(2.0);
    let sizes = instrument::metric("value_sizes")
        .histogram()
        .expect("a valid metric");
    sizes.record(sum);
    let step = instrument::metric("step")
        .function()
        .expect("a valid metric");
    step.start().finish();
    drop(
        instrument::metric("block")
            .timer()
            .expect("a valid metric")
            .start(),
    );
    sum
}
