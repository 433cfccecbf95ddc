use instrument::instrument_performance;

struct S;

#[instrument_performance(name = "s")]
impl S {
    fn f(&self) {}
}

fn main() {}
