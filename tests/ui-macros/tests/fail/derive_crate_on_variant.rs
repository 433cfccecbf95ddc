use instrument::ErrorKind;

#[derive(ErrorKind)]
enum FetchError {
    #[error_kind(crate = ::instrument)]
    Timeout,
}

fn main() {}
