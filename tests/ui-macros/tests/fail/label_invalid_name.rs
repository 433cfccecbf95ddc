use instrument::instrument_performance;

#[instrument_performance(labels("http-method" = "GET"))]
fn f() {}

fn main() {}
