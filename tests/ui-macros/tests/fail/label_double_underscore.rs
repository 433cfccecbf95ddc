use instrument::instrument_performance;

#[instrument_performance(labels(__name__ = "x"))]
fn f() {}

fn main() {}
