//! Functions returning `!` with `capture(..)` or `skip(..)`: the arguments are formatted into
//! the guard before the body runs (failure mode 9: the guard was not mutable).

use instrument::instrument_performance;

#[instrument_performance(capture(x))]
fn spins(x: u32) -> ! {
    let _ = x;
    loop {}
}

#[instrument_performance(skip(code))]
fn exits(name: &str, code: i32) -> ! {
    let _ = name;
    std::process::exit(code)
}

#[instrument_performance(capture(%reason))]
fn fails(reason: String) -> ! {
    panic!("{reason}")
}

struct Worker;

#[instrument_performance(capture(id))]
impl Worker {
    fn run(&self, id: u64) -> ! {
        panic!("worker {id} stopped")
    }
}

fn main() {
    if std::env::args().count() > 1000 {
        spins(1);
    }
    if std::env::args().count() > 1000 {
        exits("main", 0);
    }
    if std::env::args().count() > 1000 {
        fails("stopped".to_owned());
    }
    if std::env::args().count() > 1000 {
        Worker.run(3);
    }
}
