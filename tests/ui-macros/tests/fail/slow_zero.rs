use instrument::instrument_performance;

#[instrument_performance(slow = "0ms")]
fn f() {}

fn main() {}
