use instrument::instrument_performance;

struct S;

#[instrument_performance(audit)]
impl S {
    #[instrument_performance(slow = "soon")]
    fn f(&self) {}
}

fn main() {}
