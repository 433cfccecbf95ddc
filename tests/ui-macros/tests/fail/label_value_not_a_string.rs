use instrument::instrument_performance;

#[instrument_performance(labels(shard = 3))]
fn f() {}

fn main() {}
