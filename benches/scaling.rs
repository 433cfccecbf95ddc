//! How instrumented calls scale with threads.
//!
//! `cargo bench --bench scaling`. Group `scaling`, for 1, 2, 4, ... threads up to
//! `available_parallelism` (always included):
//!
//! - `instrument_performance/<threads>`: every thread calls the `#[instrument_performance]`
//!   workload in a tight loop, pipeline installed with `NullSink` and default settings, so the
//!   drain thread runs beside them.
//! - `thread_local_counter_clock_pair/<threads>`: the same loop doing only what no recorder can
//!   avoid: two `quanta` clock reads and an add to a thread-local counter. Its curve is the
//!   machine's ceiling for per-call timing.
//!
//! Each iteration is `CALLS_PER_THREAD` calls on every thread; throughput counts calls over all
//! threads, so perfect scaling doubles calls/s when threads double. Wall time runs from the first
//! thread's start to the last thread's end (threads start together at a barrier).

mod shared;

use std::cell::Cell;
use std::hint::black_box;

use criterion::Criterion;

use shared::{for_all_configs, instrumented, run_on_threads, thread_counts};

/// Calls per thread per iteration.
const CALLS_PER_THREAD: u64 = 1_000;

thread_local! {
    static CALLS: Cell<u64> = const { Cell::new(0) };
    static TICKS: Cell<u64> = const { Cell::new(0) };
}

/// The workload, timed with a clock pair into thread-local totals.
#[inline(never)]
fn counted(clock: &quanta::Clock, x: u64) -> u64 {
    let start = clock.raw();
    let out = black_box(x).wrapping_mul(3);
    let end = clock.raw();
    CALLS.with(|c| c.set(c.get() + 1));
    TICKS.with(|t| t.set(t.get().wrapping_add(end.wrapping_sub(start))));
    out
}

fn scaling(c: &mut Criterion) {
    let pipeline = instrument::builder()
        .sink(instrument::NullSink)
        .install()
        .expect("no other pipeline is installed in this process");
    let counts = thread_counts();
    let calls = |threads: usize| threads as u64 * CALLS_PER_THREAD;

    let mut group = c.benchmark_group("scaling");
    for_all_configs(
        &mut group,
        "instrument_performance",
        &counts,
        calls,
        |threads, iters| {
            run_on_threads(
                threads,
                // The first recorded call of a thread allocates its queue: keep it out of the timing.
                |_| {
                    black_box(instrumented(0));
                },
                |_| {
                    for x in 0..iters * CALLS_PER_THREAD {
                        black_box(instrumented(black_box(x)));
                    }
                },
            )
        },
    );
    let clock = quanta::Clock::new();
    for_all_configs(
        &mut group,
        "thread_local_counter_clock_pair",
        &counts,
        calls,
        |threads, iters| {
            run_on_threads(
                threads,
                |_| {
                    black_box(counted(&clock, 0));
                },
                |_| {
                    for x in 0..iters * CALLS_PER_THREAD {
                        black_box(counted(&clock, black_box(x)));
                    }
                },
            )
        },
    );
    group.finish();

    pipeline.flush().expect("flush");
    let m = pipeline.self_metrics();
    let total = m.events_recorded + m.events_dropped;
    eprintln!(
        "scaling: pipeline recorded {} calls, dropped {} ({:.3}%), queue high water {}",
        m.events_recorded,
        m.events_dropped,
        100.0 * m.events_dropped as f64 / total.max(1) as f64,
        m.queue_high_water,
    );
    pipeline.shutdown().expect("shutdown");
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    scaling(&mut c);
    c.final_summary();
}
