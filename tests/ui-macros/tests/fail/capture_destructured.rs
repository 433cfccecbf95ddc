use instrument::instrument_performance;

#[instrument_performance(capture(x))]
fn f((x, y): (u8, u8)) -> u8 {
    x + y
}

fn main() {}
