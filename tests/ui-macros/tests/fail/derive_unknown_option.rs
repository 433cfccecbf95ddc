use instrument::ErrorKind;

#[derive(ErrorKind)]
#[error_kind(name = "fetch")]
enum FetchError {
    Timeout,
}

fn main() {}
