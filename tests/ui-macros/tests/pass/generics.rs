//! Generic functions: type, const and lifetime parameters, where clauses, `impl Trait` and
//! destructuring patterns.

use std::fmt::{Debug, Display};

use instrument::instrument_performance;

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
fn elided(text: &str) -> &str {
    text.trim()
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

#[instrument_performance]
fn impl_return(n: u32) -> impl Iterator<Item = u32> + Clone {
    (0..n).map(|x| x * 2)
}

#[instrument_performance]
fn impl_return_borrowing<'a>(text: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    text.split(',')
}

#[instrument_performance]
fn impl_inside_result(ok: bool) -> Result<impl Display, std::fmt::Error> {
    if !ok {
        return Err(std::fmt::Error);
    }
    Ok(42)
}

#[instrument_performance]
fn destructuring((a, b): (u32, u32), Point { x, y: _ }: Point, [first, ..]: [u8; 3]) -> u32 {
    a + b + x + u32::from(first)
}

#[instrument_performance]
fn wildcard(_: u8, _unused: u8) -> u8 {
    1
}

#[instrument_performance]
fn generic_result<T: std::str::FromStr>(text: &str) -> Result<T, T::Err> {
    let value = text.parse::<T>()?;
    Ok(value)
}

struct Point {
    x: u32,
    y: u32,
}

fn main() {
    assert_eq!(first(&[1, 2]), Some(1));
    assert_eq!(sum_array([1, 2, 3]), 6);
    assert_eq!(longest("ab", "c"), "ab");
    assert_eq!(elided(" a "), "a");
    assert_eq!(with_where("k", 1), "k=1");
    assert_eq!(impl_argument(vec![1, 5, 2]), 5);
    assert_eq!(impl_return(3).clone().sum::<u32>(), 6);
    assert_eq!(impl_return_borrowing("a,b").count(), 2);
    assert_eq!(impl_inside_result(true).unwrap().to_string(), "42");
    assert!(impl_inside_result(false).is_err());
    let point = Point { x: 1, y: 2 };
    assert_eq!(point.y, 2);
    assert_eq!(destructuring((1, 2), point, [4, 5, 6]), 8);
    assert_eq!(wildcard(0, 0), 1);
    assert_eq!(generic_result::<u8>("7"), Ok(7));
    assert!(generic_result::<u8>("x").is_err());
}
