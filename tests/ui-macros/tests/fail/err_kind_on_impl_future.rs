use std::future::Future;

use instrument::instrument_performance;

// The future is what is returned and classified; write an `async fn` to classify its output.
#[instrument_performance(err_kind = kind)]
fn load() -> impl Future<Output = Result<u8, String>> {
    async { Ok(1) }
}

fn kind(_: &String) -> &'static str {
    "string"
}

fn main() {}
