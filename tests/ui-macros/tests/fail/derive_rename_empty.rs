use instrument::ErrorKind;

#[derive(ErrorKind)]
enum FetchError {
    #[error_kind(rename = "")]
    Timeout,
}

fn main() {}
