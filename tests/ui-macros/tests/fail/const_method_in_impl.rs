use instrument::instrument_performance;

struct S;

#[instrument_performance]
impl S {
    const fn f(&self) -> u8 {
        1
    }
}

fn main() {}
