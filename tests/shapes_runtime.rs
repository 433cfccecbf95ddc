//! Every function shape `#[instrument_performance]` accepts, run against a live pipeline: each
//! test checks the exact set of callsite names recorded and the count per outcome.
//!
//! Generic functions share one callsite across instantiations. A method annotated on its own is
//! named `module::method`; methods of an annotated `impl` block are named `module::Type::method`.
//! A pipeline is process-wide: every test takes `LOCK` before it records anything.

// `diverges` panics on purpose, which `panic!` says more plainly than `assert!`.
#![allow(clippy::manual_assert)]

use std::collections::BTreeMap;
use std::fmt::{Debug, Display};
use std::num::ParseIntError;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use instrument::{Outcome, Snapshot, instrument_performance};
use instrument_sinks::MemorySink;

mod support;
use support::name;

static LOCK: Mutex<()> = Mutex::new(());

/// Runs `body` under a fresh pipeline and returns the snapshot flushed after it.
fn recorded(body: impl FnOnce()) -> Arc<Snapshot> {
    let _serial: MutexGuard<'_, ()> = LOCK.lock().unwrap_or_else(PoisonError::into_inner);
    let sink = MemorySink::new();
    let pipeline = instrument::builder()
        .sink(sink.clone())
        .install()
        .expect("no other pipeline is installed");
    body();
    pipeline.flush().expect("flush");
    sink.last_snapshot().expect("flush delivers a snapshot")
}

/// Every recorded callsite name with its `(outcome, count)` pairs.
fn by_name(snapshot: &Snapshot) -> BTreeMap<&'static str, Vec<(Outcome, u64)>> {
    let mut names: BTreeMap<_, Vec<_>> = BTreeMap::new();
    for call in &snapshot.calls {
        names
            .entry(call.callsite.name())
            .or_default()
            .push((call.outcome, call.total.count));
    }
    for outcomes in names.values_mut() {
        outcomes.sort_unstable();
    }
    names
}

/// Asserts the exact set of callsites recorded and their counts per outcome.
macro_rules! assert_recorded {
    ($snapshot:expr, { $($name:expr => [$(($outcome:ident, $count:expr)),* $(,)?]),* $(,)? }) => {{
        let expected: BTreeMap<&str, Vec<(Outcome, u64)>> =
            BTreeMap::from([$(($name, vec![$((Outcome::$outcome, $count)),*])),*]);
        assert_eq!(by_name(&$snapshot), expected);
    }};
}

// ---------------------------------------------------------------------------------------------
// Free functions.

#[instrument_performance]
fn first<T: Clone>(items: &[T]) -> Option<T> {
    items.first().cloned()
}

#[instrument_performance]
fn sum_array<const N: usize>(values: [u32; N]) -> u32 {
    values.iter().sum()
}

#[instrument_performance]
fn longest<'a, 'b: 'a>(a: &'a str, b: &'b str) -> &'a str {
    if a.len() >= b.len() { a } else { b }
}

#[instrument_performance]
fn with_where<K, V>(key: K, value: V) -> String
where
    K: Display,
    V: Debug,
{
    format!("{key}={value:?}")
}

#[instrument_performance]
fn impl_argument(values: impl IntoIterator<Item = u32>) -> u32 {
    values.into_iter().max().unwrap_or(0)
}

/// Timed until the iterator is returned, not until it is consumed.
#[instrument_performance]
fn impl_return(n: u32) -> impl Iterator<Item = u32> + Clone {
    (0..n).map(|x| x * 2)
}

#[instrument_performance]
fn impl_inside_result(ok: bool) -> Result<impl Display, std::fmt::Error> {
    if !ok {
        return Err(std::fmt::Error);
    }
    Ok(42)
}

struct Point {
    x: u32,
    y: u32,
}

#[instrument_performance]
fn destructuring((a, b): (u32, u32), Point { x, y: _ }: Point, [head, ..]: [u8; 3]) -> u32 {
    a + b + x + u32::from(head)
}

#[instrument_performance]
fn generic_result<T: FromStr>(text: &str) -> Result<T, T::Err> {
    let value = text.parse::<T>()?;
    Ok(value)
}

/// # Safety
/// `p` must be valid for reads.
#[instrument_performance]
unsafe fn raw_read(p: *const u32) -> u32 {
    // SAFETY: the caller passes a valid pointer.
    unsafe { p.read() }
}

#[instrument_performance]
fn unit_early_return(skip: bool, out: &mut Vec<u8>) {
    if skip {
        return;
    }
    out.push(1);
}

#[instrument_performance]
fn diverges(code: u8) -> ! {
    panic!("diverged with {code}");
}

#[instrument_performance]
fn recursive(n: u32) -> u32 {
    if n == 0 { 0 } else { 1 + recursive(n - 1) }
}

mod stages {
    use instrument::instrument_performance;

    #[instrument_performance]
    pub(crate) fn parse(text: &str) -> Result<u32, std::num::ParseIntError> {
        text.parse()
    }
}

#[test]
fn free_functions_of_every_shape() {
    let snapshot = recorded(|| {
        assert_eq!(first(&[1u8, 2]), Some(1));
        assert_eq!(first(&["a".to_owned()]), Some("a".to_owned()));
        assert_eq!(first::<u8>(&[]), None);
        assert_eq!(sum_array([1, 2]), 3);
        assert_eq!(sum_array([1, 2, 3]), 6);
        assert_eq!(longest("ab", "c"), "ab");
        assert_eq!(with_where("k", 1), "k=1");
        assert_eq!(impl_argument(vec![1, 5, 2]), 5);
        assert_eq!(impl_return(3).clone().sum::<u32>(), 6);
        assert_eq!(impl_inside_result(true).unwrap().to_string(), "42");
        assert!(impl_inside_result(false).is_err());
        let point = Point { x: 1, y: 2 };
        assert_eq!(point.y, 2);
        assert_eq!(destructuring((1, 2), point, [4, 5, 6]), 8);
        assert_eq!(generic_result::<u8>("7"), Ok(7));
        assert!(generic_result::<u8>("x").is_err());
        assert!(generic_result::<f64>("y").is_err());
        let value = 9;
        // SAFETY: a reference is valid for reads.
        assert_eq!(unsafe { raw_read(&raw const value) }, 9);
        let mut out = Vec::new();
        unit_early_return(true, &mut out);
        unit_early_return(false, &mut out);
        assert_eq!(out, [1]);
        assert!(std::panic::catch_unwind(|| diverges(3)).is_err());
        assert_eq!(recursive(4), 4);
        assert_eq!(stages::parse("5"), Ok(5));
        assert!(stages::parse("five").is_err());
    });

    assert_recorded!(snapshot, {
        name!("first") => [(Ok, 3)],
        name!("sum_array") => [(Ok, 2)],
        name!("longest") => [(Ok, 1)],
        name!("with_where") => [(Ok, 1)],
        name!("impl_argument") => [(Ok, 1)],
        name!("impl_return") => [(Ok, 1)],
        name!("impl_inside_result") => [(Ok, 1), (Error, 1)],
        name!("destructuring") => [(Ok, 1)],
        name!("generic_result") => [(Ok, 1), (Error, 2)],
        name!("raw_read") => [(Ok, 1)],
        name!("unit_early_return") => [(Ok, 2)],
        name!("diverges") => [(Panic, 1)],
        name!("recursive") => [(Ok, 5)],
        name!("stages::parse") => [(Ok, 1), (Error, 1)],
    });
    // One callsite for all instantiations; the error kind follows the instantiation.
    let generic = snapshot
        .call(name!("generic_result"), Outcome::Error)
        .unwrap();
    let mut kinds: Vec<_> = generic
        .error_kinds
        .iter()
        .map(|k| (k.kind, k.total))
        .collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        [
            ("core::num::dec2flt::ParseFloatError", 1),
            ("core::num::error::ParseIntError", 1)
        ]
    );
    let fmt_error = snapshot
        .call(name!("impl_inside_result"), Outcome::Error)
        .unwrap();
    assert_eq!(fmt_error.error_kinds[0].kind, "core::fmt::Error");
    let parse = snapshot.call(name!("stages::parse"), Outcome::Ok).unwrap();
    assert_eq!(
        parse.callsite.module_path(),
        concat!(module_path!(), "::stages")
    );
}

// ---------------------------------------------------------------------------------------------
// Methods annotated one by one.

#[derive(Debug, Default)]
struct Store {
    values: Vec<u32>,
}

impl Store {
    #[instrument_performance]
    fn create(values: &[u32]) -> Self {
        Store {
            values: values.to_vec(),
        }
    }

    #[instrument_performance]
    fn total(&self) -> u32 {
        self.values.iter().sum()
    }

    #[instrument_performance]
    fn push(&mut self, value: u32) {
        self.values.push(value);
    }

    #[instrument_performance]
    fn first_mut(&mut self) -> Option<&mut u32> {
        self.values.first_mut()
    }

    #[instrument_performance]
    fn into_values(self) -> Vec<u32> {
        self.values
    }

    #[instrument_performance]
    fn with(mut self, value: u32) -> Self {
        self.values.push(value);
        self
    }

    #[instrument_performance]
    fn boxed(self: Box<Self>) -> usize {
        self.values.len()
    }

    #[instrument_performance]
    fn pinned(self: Pin<&mut Self>) -> usize {
        self.values.len()
    }

    #[instrument_performance]
    fn checked(&self, index: usize) -> Result<u32, String> {
        self.values
            .get(index)
            .copied()
            .ok_or_else(|| format!("no value at {index}"))
    }
}

trait Describe {
    fn describe(&self) -> String;

    #[instrument_performance]
    fn shout(&self) -> String {
        self.describe().to_uppercase()
    }
}

impl Describe for Store {
    #[instrument_performance]
    fn describe(&self) -> String {
        format!("{} values", self.values.len())
    }
}

#[test]
fn methods_with_every_receiver() {
    let snapshot = recorded(|| {
        let mut store = Store::create(&[1, 2]);
        assert_eq!(store.total(), 3);
        store.push(3);
        if let Some(first) = store.first_mut() {
            *first += 10;
        }
        assert_eq!(store.checked(0), Ok(11));
        assert!(store.checked(9).is_err());
        assert_eq!(store.shout(), "3 VALUES");
        assert_eq!(Pin::new(&mut store).pinned(), 3);
        let store = store.with(4);
        assert_eq!(Box::new(Store::create(&[7])).boxed(), 1);
        assert_eq!(store.into_values(), [11, 2, 3, 4]);
    });

    // Annotated one by one, methods are named after the module, not the type.
    assert_recorded!(snapshot, {
        name!("create") => [(Ok, 2)],
        name!("total") => [(Ok, 1)],
        name!("push") => [(Ok, 1)],
        name!("first_mut") => [(Ok, 1)],
        name!("checked") => [(Ok, 1), (Error, 1)],
        name!("shout") => [(Ok, 1)],
        name!("describe") => [(Ok, 1)],
        name!("pinned") => [(Ok, 1)],
        name!("with") => [(Ok, 1)],
        name!("boxed") => [(Ok, 1)],
        name!("into_values") => [(Ok, 1)],
    });
    let checked = snapshot.call(name!("checked"), Outcome::Error).unwrap();
    assert_eq!(checked.error_kinds[0].kind, "alloc::string::String");
}

// ---------------------------------------------------------------------------------------------
// Annotated `impl` blocks.

#[derive(Debug, Default)]
struct Counter {
    n: u64,
}

#[instrument_performance(labels(component = "counter"))]
impl Counter {
    fn new() -> Self {
        Counter { n: 0 }
    }

    fn incr(&mut self) -> u64 {
        self.n += 1;
        self.n
    }

    fn get(&self) -> u64 {
        self.n
    }

    // The marker written as a path (an imported bare `#[no_instrument]` works too).
    #[instrument::no_instrument]
    fn raw(&self) -> u64 {
        self.n
    }

    #[instrument_performance(name = "counter.reset", labels(stage = "reset"))]
    fn reset(&mut self) {
        self.n = 0;
    }

    fn into_inner(self) -> u64 {
        self.n
    }

    fn boxed(self: Box<Self>) -> u64 {
        self.n
    }
}

#[instrument_performance]
impl FromStr for Counter {
    type Err = ParseIntError;

    fn from_str(text: &str) -> Result<Self, ParseIntError> {
        Ok(Counter { n: text.parse()? })
    }
}

#[instrument_performance]
impl Display for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "counter at {}", self.n)
    }
}

struct Wrapper<T>(T);

#[instrument_performance]
impl<T: Clone> Wrapper<T> {
    fn get(&self) -> T {
        self.0.clone()
    }
}

#[test]
fn impl_blocks_name_methods_after_their_type() {
    let snapshot = recorded(|| {
        let mut counter = Counter::new();
        assert_eq!(counter.incr(), 1);
        assert_eq!(counter.incr(), 2);
        assert_eq!(counter.get(), 2);
        assert_eq!(counter.raw(), 2);
        assert_eq!(counter.to_string(), "counter at 2");
        counter.reset();
        assert_eq!(counter.into_inner(), 0);
        assert_eq!("41".parse::<Counter>().unwrap().get(), 41);
        assert!("x".parse::<Counter>().is_err());
        assert_eq!(Box::new(Counter::new()).boxed(), 0);
        assert_eq!(Wrapper(5u8).get(), 5);
        assert_eq!(Wrapper("s").get(), "s");
    });

    assert_recorded!(snapshot, {
        name!("Counter::new") => [(Ok, 2)],
        name!("Counter::incr") => [(Ok, 2)],
        name!("Counter::get") => [(Ok, 2)],
        "counter.reset" => [(Ok, 1)],
        name!("Counter::into_inner") => [(Ok, 1)],
        name!("Counter::boxed") => [(Ok, 1)],
        name!("Counter::from_str") => [(Ok, 1), (Error, 1)],
        name!("Counter::fmt") => [(Ok, 1)],
        // Same method name, different type: a different callsite.
        name!("Wrapper::get") => [(Ok, 2)],
    });
    let incr = snapshot.call(name!("Counter::incr"), Outcome::Ok).unwrap();
    assert_eq!(incr.callsite.labels_slice(), [("component", "counter")]);
    // A method's own labels replace the block's.
    let reset = snapshot.call("counter.reset", Outcome::Ok).unwrap();
    assert_eq!(reset.callsite.labels_slice(), [("stage", "reset")]);
    let from_str = snapshot
        .call(name!("Counter::from_str"), Outcome::Error)
        .unwrap();
    assert_eq!(
        from_str.error_kinds[0].kind,
        "core::num::error::ParseIntError"
    );
}

// ---------------------------------------------------------------------------------------------
// Names and labels.

#[instrument_performance(name = "pipeline.parse", labels(stage = "parse", format = "json"))]
fn named(text: &str) -> Result<u32, ParseIntError> {
    text.parse()
}

#[instrument_performance(labels(stage = "emit"))]
fn labelled() {}

#[test]
fn names_and_labels_are_what_the_options_say() {
    let snapshot = recorded(|| {
        assert_eq!(named("1"), Ok(1));
        assert!(named("one").is_err());
        labelled();
    });

    assert_recorded!(snapshot, {
        "pipeline.parse" => [(Ok, 1), (Error, 1)],
        name!("labelled") => [(Ok, 1)],
    });
    let named = snapshot.call("pipeline.parse", Outcome::Error).unwrap();
    assert_eq!(
        named.callsite.labels_slice(),
        [("stage", "parse"), ("format", "json")]
    );
    assert_eq!(named.callsite.module_path(), module_path!());
    assert_eq!(named.callsite.file(), file!());
    let labelled = snapshot.call(name!("labelled"), Outcome::Ok).unwrap();
    assert_eq!(labelled.callsite.labels_slice(), [("stage", "emit")]);
}
