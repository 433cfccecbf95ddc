use instrument::instrument_performance;

struct S;

#[instrument_performance]
impl S {
    #[instrument_performance]
    #[instrument_performance(audit)]
    fn f(&self) {}
}

fn main() {}
