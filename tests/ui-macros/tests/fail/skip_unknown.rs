use instrument::instrument_performance;

#[instrument_performance(skip(passwrd))]
fn f(password: &str) -> usize {
    password.len()
}

fn main() {}
