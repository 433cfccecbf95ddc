use instrument::instrument_performance;

#[instrument_performance]
const fn f() -> u8 {
    1
}

fn main() {}
