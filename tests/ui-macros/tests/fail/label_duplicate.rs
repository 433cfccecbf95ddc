use instrument::instrument_performance;

#[instrument_performance(labels(region = "eu", region = "us"))]
fn f() {}

fn main() {}
