use instrument::instrument_performance;

#[derive(Debug)]
struct Error;

// Only a return type named `Result` is recognised as one.
type Fallible<T> = Result<T, Error>;

#[instrument_performance(err_kind = kind)]
fn parse(text: &str) -> Fallible<u8> {
    text.parse().map_err(|_| Error)
}

fn kind(_: &Error) -> &'static str {
    "error"
}

fn main() {}
