use instrument::instrument_performance;

#[instrument_performance(crate = ::instrument, crate = ::instrument)]
fn f() {}

fn main() {}
