use instrument::ErrorKind;

#[derive(ErrorKind)]
#[error_kind(rename = "fetch")]
enum FetchError {
    Timeout,
}

fn main() {}
