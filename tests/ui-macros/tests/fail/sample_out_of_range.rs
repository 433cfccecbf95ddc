use instrument::instrument_performance;

#[instrument_performance(sample = 1.5)]
fn f() {}

fn main() {}
