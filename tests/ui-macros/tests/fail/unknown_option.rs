use instrument::instrument_performance;

#[instrument_performance(nmae = "x")]
fn f() {}

fn main() {}
