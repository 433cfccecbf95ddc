//! Functions returning `Result` and aliases of it, with `?`, early `return`, `ErrorKind` and
//! `err_kind = path`.

use std::fmt;
use std::io;

use instrument::{ErrorKind, instrument_performance};

#[derive(Debug, ErrorKind)]
enum FetchError {
    Timeout,
    Status(u16),
    Decode { offset: usize },
}

#[derive(Debug, ErrorKind)]
struct Unit;

#[derive(Debug, ErrorKind)]
enum Generic<'a, T: fmt::Debug>
where
    T: Clone,
{
    Borrowed(&'a T),
    Owned(T),
}

#[derive(ErrorKind)]
enum Never {}

#[instrument_performance]
fn fetch(code: u16) -> Result<u16, FetchError> {
    match code {
        0 => return Err(FetchError::Timeout),
        200 => {}
        1 => Err(FetchError::Decode { offset: 3 })?,
        other => Err(FetchError::Status(other))?,
    }
    Ok(code)
}

#[instrument_performance]
fn read_config(path: &str) -> io::Result<String> {
    if path.is_empty() {
        return Err(io::Error::other("empty path"));
    }
    let text = std::fs::read_to_string(path)?;
    Ok(text)
}

#[instrument_performance]
fn with_anyhow(text: &str) -> anyhow::Result<i64> {
    let value: i64 = text.parse()?;
    if value < 0 {
        anyhow::bail!("negative");
    }
    Ok(value)
}

#[instrument_performance]
fn boxed_error(text: &str) -> Result<u8, Box<dyn std::error::Error + Send + Sync>> {
    Ok(text.parse::<u8>()?)
}

fn classify(error: &FetchError) -> &'static str {
    match error {
        FetchError::Timeout => "timeout",
        _ => "other",
    }
}

#[instrument_performance(err_kind = classify)]
fn with_err_kind(code: u16) -> Result<(), FetchError> {
    if code == 0 {
        Err(FetchError::Timeout)
    } else {
        Ok(())
    }
}

#[instrument_performance(err_kind = self::kinds::io_kind)]
fn with_err_kind_path() -> io::Result<()> {
    Err(io::Error::from(io::ErrorKind::NotFound))
}

mod kinds {
    pub fn io_kind(error: &std::io::Error) -> &'static str {
        match error.kind() {
            std::io::ErrorKind::NotFound => "not_found",
            _ => "io",
        }
    }
}

#[instrument_performance]
fn generic_error<E: fmt::Debug>(error: E) -> Result<(), E> {
    Err(error)
}

#[instrument_performance]
fn option_is_not_an_error(value: Option<u8>) -> Option<u8> {
    let v = value?;
    Some(v + 1)
}

fn main() {
    assert_eq!(fetch(200).unwrap(), 200);
    assert_eq!(fetch(0).unwrap_err().error_kind(), "Timeout");
    assert_eq!(fetch(1).unwrap_err().error_kind(), "Decode");
    assert_eq!(fetch(404).unwrap_err().error_kind(), "Status");
    assert_eq!(Unit.error_kind(), "Unit");
    assert_eq!(Generic::Borrowed(&1).error_kind(), "Borrowed");
    assert_eq!(Generic::<u8>::Owned(1).error_kind(), "Owned");
    let _ = |never: Never| never.error_kind();
    assert!(read_config("").is_err());
    assert_eq!(with_anyhow("5").unwrap(), 5);
    assert!(with_anyhow("-5").is_err());
    assert!(with_anyhow("x").is_err());
    assert_eq!(boxed_error("3").unwrap(), 3);
    assert!(with_err_kind(0).is_err());
    assert!(with_err_kind_path().is_err());
    assert!(generic_error("e").is_err());
    assert_eq!(option_is_not_an_error(Some(1)), Some(2));
    assert_eq!(option_is_not_an_error(None), None);
}
