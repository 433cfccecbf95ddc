use instrument::instrument_performance;

#[instrument_performance]
#[instrument_performance(slow = "1ms")]
fn f() {}

fn main() {}
