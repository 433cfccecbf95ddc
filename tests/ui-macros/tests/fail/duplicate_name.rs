use instrument::instrument_performance;

#[instrument_performance(name = "a", name = "b")]
fn f() {}

fn main() {}
