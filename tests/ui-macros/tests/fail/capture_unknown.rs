use instrument::instrument_performance;

#[instrument_performance(capture(id, user))]
fn f(id: u64) -> u64 {
    id
}

fn main() {}
