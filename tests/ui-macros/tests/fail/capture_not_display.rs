use instrument::instrument_performance;

#[derive(Debug)]
struct Opaque;

#[instrument_performance(capture(%value))]
fn f(value: Opaque) {}

fn main() {}
