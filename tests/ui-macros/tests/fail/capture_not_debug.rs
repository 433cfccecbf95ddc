use instrument::instrument_performance;

struct Opaque;

#[instrument_performance(capture(value))]
fn f(value: Opaque) {}

fn main() {}
