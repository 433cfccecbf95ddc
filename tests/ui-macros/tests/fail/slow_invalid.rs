use instrument::instrument_performance;

#[instrument_performance(slow = "5 parsecs")]
fn f() {}

fn main() {}
