use instrument::instrument_performance;

#[instrument_performance(slow = "1ms", slow = "2ms")]
fn f() {}

fn main() {}
