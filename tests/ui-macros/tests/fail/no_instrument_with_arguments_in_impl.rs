use instrument::instrument_performance;

struct S;

#[instrument_performance]
impl S {
    #[no_instrument(hot)]
    fn f(&self) {}
}

fn main() {}
