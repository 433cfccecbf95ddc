use instrument::instrument_performance;

#[instrument_performance]
struct Config {
    path: String,
}

fn main() {}
