use instrument::ErrorKind;

#[derive(ErrorKind)]
enum FetchError {
    Status {
        #[error_kind(rename = "status")]
        code: u16,
    },
}

fn main() {}
