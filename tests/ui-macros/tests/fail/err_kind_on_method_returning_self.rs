use instrument::instrument_performance;

struct Counter(u8);

// The block's `err_kind` skips `new`, but a method's own `err_kind` is checked.
#[instrument_performance(err_kind = kind)]
impl Counter {
    #[instrument_performance(err_kind = kind)]
    fn new() -> Self {
        Counter(0)
    }

    fn bump(&mut self) -> Result<u8, String> {
        self.0 = self.0.checked_add(1).ok_or("overflow")?;
        Ok(self.0)
    }
}

fn kind(_: &String) -> &'static str {
    "string"
}

fn main() {}
