use instrument::instrument_performance;

struct S;

#[instrument_performance]
impl S {
    #[no_instrument]
    #[instrument_performance(audit)]
    fn f(&self) {}
}

fn main() {}
