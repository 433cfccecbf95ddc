use instrument::no_instrument;

#[no_instrument(reason = "hot")]
fn f() {}

fn main() {}
