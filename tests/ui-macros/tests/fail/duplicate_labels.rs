use instrument::instrument_performance;

#[instrument_performance(labels(a = "1"), labels(b = "2"))]
fn f() {}

fn main() {}
