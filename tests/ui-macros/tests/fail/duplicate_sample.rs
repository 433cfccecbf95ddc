use instrument::instrument_performance;

#[instrument_performance(sample = 0.1, sample = 0.2)]
fn f() {}

fn main() {}
