use instrument::instrument_performance;

#[instrument_performance(capture())]
fn f(id: u64) -> u64 {
    id
}

fn main() {}
