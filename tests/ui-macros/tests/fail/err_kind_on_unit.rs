use instrument::instrument_performance;

#[instrument_performance(err_kind = kind)]
fn f() {}

fn kind(_: &String) -> &'static str {
    "string"
}

fn main() {}
