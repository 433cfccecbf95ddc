//! `capture(..)` of every kind of argument: values copied raw (integers, floats, `bool`, `char`,
//! strings and references to them), values formatted with `Debug` or `Display`, generic
//! parameters, and mutable references.

use std::borrow::Cow;
use std::fmt::{self, Debug, Display};
use std::path::Path;

use instrument::instrument_performance;

#[derive(Debug)]
struct Id(u32);

impl Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

#[instrument_performance(capture(a, b, c, d, e, f, g, h, i, j, k, l))]
#[allow(clippy::too_many_arguments)]
fn raw(
    a: i8,
    b: i16,
    c: i32,
    d: i64,
    e: isize,
    f: u8,
    g: u16,
    h: u32,
    i: u64,
    j: usize,
    k: f32,
    l: f64,
) -> f64 {
    f64::from(a) + f64::from(b) + f64::from(c) + d as f64 + e as f64 + f64::from(f)
        + f64::from(g)
        + f64::from(h)
        + i as f64
        + j as f64
        + f64::from(k)
        + l
}

#[instrument_performance(capture(flag, letter, text, owned, boxed, cow, %shown))]
fn strings(
    flag: bool,
    letter: char,
    text: &str,
    owned: String,
    boxed: Box<str>,
    cow: Cow<'_, str>,
    shown: &&str,
) -> usize {
    usize::from(flag) + letter.len_utf8() + text.len() + owned.len() + boxed.len() + cow.len()
        + shown.len()
}

#[instrument_performance(capture(count, id, %display_id, path, maybe, list))]
fn formatted(
    count: &mut u32,
    id: Id,
    display_id: &Id,
    path: &Path,
    maybe: Option<u8>,
    list: [u16; 2],
) -> u32 {
    *count += 1;
    *count + id.0 + display_id.0 + u32::from(maybe.unwrap_or(0)) + u32::from(list[0])
        + u32::try_from(path.as_os_str().len()).unwrap()
}

#[instrument_performance(capture(value, %label))]
fn generic<T: Debug, L: Display>(value: T, label: L) -> String {
    format!("{label}: {value:?}")
}

#[instrument_performance(capture(n))]
async fn later(n: u64) -> u64 {
    n
}

struct Store<T>(T);

#[instrument_performance(capture(key))]
impl<T: Clone> Store<T> {
    fn get(&self, key: &str) -> T {
        let _ = key;
        self.0.clone()
    }
}

fn main() {
    assert!((raw(1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 0.5, 0.25) - 55.75).abs() < 1e-9);
    assert_eq!(
        strings(true, 'é', "a", "b".to_owned(), "c".into(), Cow::Borrowed("d"), &"e"),
        8
    );
    let mut count = 0;
    assert_eq!(
        formatted(&mut count, Id(1), &Id(2), Path::new("p"), Some(3), [4, 5]),
        12
    );
    assert_eq!(generic(1u8, "one"), "one: 1");
    let _ = later(1);
    assert_eq!(Store(7u8).get("k"), 7);
}
