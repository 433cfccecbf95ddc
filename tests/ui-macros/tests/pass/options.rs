//! Every option, alone and together, and `crate = path` for re-exporting crates.

use std::fmt;

use instrument::instrument_performance;

mod reexport {
    pub use instrument;
}

#[instrument_performance(name = "custom.name")]
fn named() {}

#[instrument_performance(labels(region = "eu", "tier" = "gold", r#type = "batch"))]
fn labelled() {}

#[instrument_performance(slow = "1s 500ms")]
fn slow() {}

#[instrument_performance(sample = 0.01)]
fn sampled() {}

#[instrument_performance(sample = 1)]
fn always_sampled() {}

#[instrument_performance(audit)]
fn audited() {}

#[derive(Debug)]
struct Id(u32);

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

#[instrument_performance(capture(id, %name, %display_id))]
fn captured(id: u32, name: &str, display_id: Id, not_debug: NotDebug) -> u32 {
    let _ = not_debug;
    id + display_id.0 + u32::try_from(name.len()).unwrap()
}

// Captured values are formatted before the body moves them.
#[instrument_performance(capture(values))]
fn moves_captured(values: Vec<String>) -> Vec<String> {
    values
}

#[instrument_performance(skip(not_debug))]
fn skipping(a: u8, mut b: String, not_debug: NotDebug, (c, d): (u8, u8)) -> String {
    let _ = not_debug;
    b.push(char::from(a + c + d));
    b
}

#[instrument_performance(skip())]
fn skip_nothing(a: u8) -> u8 {
    a
}

#[instrument_performance(skip(self))]
fn skip_self_without_receiver(r#type: u8) -> u8 {
    r#type
}

struct NotDebug;

#[instrument_performance(crate = ::instrument)]
fn absolute_crate_path() {}

#[instrument_performance(crate = reexport::instrument, name = "via.reexport")]
fn reexported_crate_path() -> Result<(), std::fmt::Error> {
    Ok(())
}

#[instrument_performance(
    name = "everything",
    labels(stage = "all"),
    slow = "5ms",
    sample = 0.5,
    capture(x),
    audit,
    err_kind = kind,
    crate = ::instrument,
)]
fn everything(x: u8) -> Result<u8, String> {
    if x == 0 { Err("zero".into()) } else { Ok(x) }
}

fn kind(_: &String) -> &'static str {
    "string"
}

fn main() {
    named();
    labelled();
    slow();
    sampled();
    always_sampled();
    audited();
    assert_eq!(captured(1, "ab", Id(2), NotDebug), 5);
    assert_eq!(moves_captured(vec!["a".into()]), ["a"]);
    assert_eq!(skipping(b'a', String::new(), NotDebug, (0, 0)), "a");
    assert_eq!(skip_nothing(1), 1);
    assert_eq!(skip_self_without_receiver(2), 2);
    absolute_crate_path();
    reexported_crate_path().unwrap();
    assert_eq!(everything(1), Ok(1));
    assert!(everything(0).is_err());
}
