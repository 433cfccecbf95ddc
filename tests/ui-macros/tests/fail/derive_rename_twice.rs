use instrument::ErrorKind;

#[derive(ErrorKind)]
enum FetchError {
    #[error_kind(rename = "timeout")]
    #[error_kind(rename = "slow")]
    Timeout,
}

fn main() {}
