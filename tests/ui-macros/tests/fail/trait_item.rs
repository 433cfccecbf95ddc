use instrument::instrument_performance;

#[instrument_performance]
trait Load {
    fn load(&self);
}

fn main() {}
