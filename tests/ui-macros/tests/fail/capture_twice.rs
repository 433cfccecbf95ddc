use instrument::instrument_performance;

#[instrument_performance(capture(id, %id))]
fn f(id: u64) -> u64 {
    id
}

fn main() {}
