use instrument::instrument_performance;

#[instrument_performance(skip(a, a))]
fn f(a: u8) -> u8 {
    a
}

fn main() {}
