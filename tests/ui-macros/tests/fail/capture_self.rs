use instrument::instrument_performance;

struct S;

impl S {
    #[instrument_performance(capture(self))]
    fn f(&self) {}
}

fn main() {}
