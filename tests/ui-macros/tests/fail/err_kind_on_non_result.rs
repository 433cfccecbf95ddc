use instrument::instrument_performance;

#[instrument_performance(err_kind = kind)]
fn count(text: &str) -> usize {
    text.len()
}

fn kind(_: &String) -> &'static str {
    "string"
}

fn main() {}
