use instrument::instrument_performance;

#[instrument_performance(name = f)]
fn f() {}

fn main() {}
