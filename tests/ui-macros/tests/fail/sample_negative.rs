use instrument::instrument_performance;

#[instrument_performance(sample = -0.5)]
fn f() {}

fn main() {}
