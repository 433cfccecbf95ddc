use instrument::instrument_performance;

#[instrument_performance(labels(outcome = "ok"))]
fn f() {}

fn main() {}
