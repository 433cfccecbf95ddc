use instrument::instrument_performance;

#[instrument_performance(audit, audit)]
fn f() {}

fn main() {}
