use instrument::instrument_performance;

trait Load {
    #[instrument_performance]
    fn load(&self) -> u8;
}

fn main() {}
