use instrument::{instrument_performance, no_instrument};

#[instrument_performance]
#[no_instrument]
fn f() {}

fn main() {}
