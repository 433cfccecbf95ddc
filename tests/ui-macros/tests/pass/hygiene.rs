//! Expansions use absolute paths and hygienic locals: they compile with `core` shadowed by a
//! module, common names shadowed, and under `unused` and `unused_qualifications` denied.
#![deny(unused, unused_qualifications)]

use instrument::{ErrorKind, instrument_performance};

#[allow(dead_code)]
mod core {}

#[allow(dead_code)]
mod std {}

#[allow(dead_code)]
type Result = ();

#[allow(dead_code)]
struct Option;

#[allow(dead_code)]
struct Some;

#[allow(dead_code)]
struct Box;

#[allow(dead_code)]
trait FnOnce {}

#[allow(dead_code)]
mod __private {}

#[derive(Debug, ErrorKind)]
enum Error {
    Bad,
}

#[instrument_performance]
fn ok(value: u8) -> ::core::result::Result<u8, Error> {
    if value == 0 {
        return ::core::result::Result::Err(Error::Bad);
    }
    ::core::result::Result::Ok(value)
}

#[instrument_performance(capture(value), slow = "1ms", labels(stage = "parse"))]
fn unit(value: u8) {
    let _ = value;
}

// A body that names the expansion's locals sees its own bindings.
#[instrument_performance]
fn shadows_locals(__instrument_guard: u8) -> u8 {
    let __instrument_result = __instrument_guard + 1;
    __instrument_result
}

#[instrument_performance]
async fn asynchronous() -> ::core::result::Result<(), Error> {
    ::core::result::Result::Err(Error::Bad)
}

#[instrument_performance]
impl Error {
    fn kind(&self) -> &'static str {
        self.error_kind()
    }
}

fn main() {
    let _ = ok(1);
    unit(2);
    let _ = shadows_locals(3);
    let _ = asynchronous();
    let _ = Error::Bad.kind();
}
