use instrument::instrument_performance;

#[instrument_performance(capture(a), capture(b))]
fn f(a: u8, b: u8) -> u8 {
    a + b
}

fn main() {}
