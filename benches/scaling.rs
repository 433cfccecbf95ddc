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
//! After each thread count of `instrument_performance`, the calls recorded and dropped (full
//! queue) are printed on stderr: a dropped call costs its caller less than a recorded one.
//!
//! Each iteration is `CALLS_PER_THREAD` calls on every thread; throughput counts calls over all
//! threads, so perfect scaling doubles calls/s when threads double. Wall time runs from the first
//! thread's start to the last thread's end (threads start together at a barrier).

mod shared;

use std::cell::Cell;
use std::hint::black_box;

use criterion::Criterion;

use shared::{Drops, for_all_configs, instrumented, run_on_threads, thread_counts};

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
    let mut drops = Drops::default();
    // One thread count at a time, to report the calls each dropped.
    for threads in counts.iter().map(std::slice::from_ref) {
        for_all_configs(
            &mut group,
            "instrument_performance",
            threads,
            calls,
            |threads, iters| {
                run_on_threads(
                    threads,
                    // A thread's first recorded call allocates its queue: keep it out of the timing.
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
        drops.report(
            &format!("scaling/instrument_performance/{}", threads[0]),
            &pipeline,
        );
    }
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
    pipeline.shutdown().expect("shutdown");
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    scaling(&mut c);
    c.final_summary();
}
