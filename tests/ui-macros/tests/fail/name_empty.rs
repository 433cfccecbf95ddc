use instrument::instrument_performance;

#[instrument_performance(name = "")]
fn f() {}

fn main() {}
