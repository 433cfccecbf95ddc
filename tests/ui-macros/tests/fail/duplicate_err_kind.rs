use instrument::instrument_performance;

#[instrument_performance(err_kind = kind, err_kind = kind)]
fn f() -> Result<(), String> {
    Ok(())
}

fn kind(_: &String) -> &'static str {
    "string"
}

fn main() {}
