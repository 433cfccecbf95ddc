//! `#[derive(ErrorKind)]` with its `#[error_kind(...)]` helper: `rename` on variants and
//! structs, and `crate = path` for crates that re-export `instrument`.

mod reexport {
    pub use instrument;
}

// What a crate re-exporting `instrument` under another path writes.
#[derive(Debug, reexport::instrument::ErrorKind)]
#[error_kind(crate = reexport::instrument)]
enum FetchError {
    #[error_kind(rename = "fetch.timeout")]
    Timeout,
    Status(u16),
    #[error_kind(rename = "fetch.decode")]
    Decode {
        offset: usize,
    },
    #[error_kind(rename = "fetch.timeout")]
    ConnectTimeout,
    #[error_kind(rename = "raw")]
    r#Type,
}

#[derive(Debug, instrument::ErrorKind)]
#[error_kind(rename = "queue.full")]
struct QueueFull;

#[derive(Debug, instrument::ErrorKind)]
#[error_kind(crate = ::instrument, rename = "generic")]
struct Generic<'a, T: std::fmt::Debug>(&'a T);

// `crate = path` names the path the trait is implemented at: this stand-in would not compile
// if the derive still named `::instrument`.
mod standin {
    pub trait ErrorKind {
        fn error_kind(&self) -> &'static str;
    }
}

#[derive(instrument::ErrorKind)]
#[error_kind(crate = standin)]
enum Local {
    #[error_kind(rename = "local")]
    A,
}

#[reexport::instrument::instrument_performance(crate = reexport::instrument)]
fn fetch(code: u16) -> Result<u16, FetchError> {
    match code {
        0 => Err(FetchError::Timeout),
        1 => Err(FetchError::Decode { offset: 3 }),
        200 => Ok(code),
        other => Err(FetchError::Status(other)),
    }
}

fn main() {
    use instrument::ErrorKind as _;

    assert_eq!(fetch(0).unwrap_err().error_kind(), "fetch.timeout");
    assert_eq!(fetch(1).unwrap_err().error_kind(), "fetch.decode");
    assert_eq!(fetch(404).unwrap_err().error_kind(), "Status");
    assert_eq!(fetch(200).unwrap(), 200);
    assert_eq!(FetchError::ConnectTimeout.error_kind(), "fetch.timeout");
    assert_eq!(FetchError::Type.error_kind(), "raw");
    assert_eq!(QueueFull.error_kind(), "queue.full");
    assert_eq!(Generic(&1).error_kind(), "generic");
    assert_eq!(standin::ErrorKind::error_kind(&Local::A), "local");
}
