use instrument::instrument_performance;

struct S;

#[instrument_performance(capture(id))]
impl S {
    fn get(&self, id: u64) -> u64 {
        id
    }
    fn len(&self) -> usize {
        0
    }
}

fn main() {}
