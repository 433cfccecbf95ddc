//! Helpers shared by the bench targets: the measured functions and the thread-count sweep.
//!
//! Included with `mod shared;` by each bench; not every bench uses every item.
#![allow(
    dead_code,
    reason = "each bench target compiles this module and uses only part of it"
)]

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, BenchmarkId, Throughput};
use instrument::instrument_performance;

/// The uninstrumented workload: a call the optimiser cannot remove or inline.
#[inline(never)]
pub(crate) fn work(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

/// The same workload under `#[instrument_performance]`.
#[instrument_performance]
#[inline(never)]
pub(crate) fn instrumented(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

/// The same workload timed through a function callsite registered at run time
/// (`instrument::metric(..).function()`), its handle registered once by the caller.
#[inline(never)]
pub(crate) fn dynamic_timed(call: instrument::TimerHandle, x: u64) -> u64 {
    let timer = call.start();
    let out = black_box(x).wrapping_mul(3);
    timer.finish();
    out
}

/// The same workload with its argument captured (`x=7` attached to the call's event).
#[instrument_performance(capture(x))]
#[inline(never)]
pub(crate) fn instrumented_capture(x: u64) -> u64 {
    black_box(x).wrapping_mul(3)
}

/// The error an instrumented call returns in the error-path benches.
#[derive(Debug)]
pub(crate) struct BenchError;

/// The same workload returning `Err`: recorded with outcome `error` and kind `BenchError`'s type
/// name.
#[instrument_performance]
#[inline(never)]
pub(crate) fn instrumented_err(x: u64) -> Result<u64, BenchError> {
    black_box(x);
    Err(BenchError)
}

/// Prints how many calls a pipeline recorded and dropped between reports. A call whose thread's
/// queue is full is dropped (counted, its duration lost): the caller then paid for the loss
/// path, not the push, which matters when reading a measured cost.
#[derive(Default)]
pub(crate) struct Drops {
    recorded: u64,
    dropped: u64,
}

impl Drops {
    /// Flushes `pipeline` and prints the calls recorded and dropped since the last report.
    pub(crate) fn report(&mut self, label: &str, pipeline: &instrument::PipelineGuard) {
        pipeline.flush().expect("flush");
        let m = pipeline.self_metrics();
        let recorded = m.events_recorded - self.recorded;
        let dropped = m.events_dropped - self.dropped;
        (self.recorded, self.dropped) = (m.events_recorded, m.events_dropped);
        if recorded + dropped == 0 {
            // Filtered out on the command line.
            return;
        }
        eprintln!(
            "{label}: {recorded} calls recorded, {dropped} dropped ({:.2}%)",
            100.0 * dropped as f64 / (recorded + dropped).max(1) as f64,
        );
    }
}

/// Thread counts to sweep: powers of two below `available_parallelism`, then
/// `available_parallelism` itself (1, 2, 4, 8, 12 on 12 cores).
pub(crate) fn thread_counts() -> Vec<usize> {
    let max = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut counts: Vec<usize> = std::iter::successors(Some(1usize), |n| n.checked_mul(2))
        .take_while(|&n| n < max)
        .collect();
    counts.push(max);
    counts
}

/// Registers `name/<config>` in `group` for every config, each with a throughput of
/// `elements(config)` per iteration. `routine(config, iters)` runs `iters` iterations and returns
/// the time they took (as `Bencher::iter_custom`).
pub(crate) fn for_all_configs(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    configs: &[usize],
    elements: impl Fn(usize) -> u64,
    mut routine: impl FnMut(usize, u64) -> Duration,
) {
    for &config in configs {
        group.throughput(Throughput::Elements(elements(config)));
        group.bench_with_input(BenchmarkId::new(name, config), &config, |b, &config| {
            b.iter_custom(|iters| routine(config, iters));
        });
    }
}

/// Runs `per_thread(thread_index)` on `threads` new threads at once and returns the wall time
/// from the first thread's start until the last thread's end.
///
/// Each thread first runs `warm(thread_index)` (untimed: the first recorded call registers the
/// thread's queue), then all wait on a barrier and start together. Each thread reads the clock
/// itself, so a late wake-up of the spawning thread does not count.
pub(crate) fn run_on_threads(
    threads: usize,
    warm: impl Fn(usize) + Sync,
    per_thread: impl Fn(usize) + Sync,
) -> Duration {
    let barrier = Barrier::new(threads);
    let spans: Vec<(Instant, Instant)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|i| {
                let (barrier, warm, per_thread) = (&barrier, &warm, &per_thread);
                scope.spawn(move || {
                    warm(i);
                    barrier.wait();
                    let start = Instant::now();
                    per_thread(i);
                    (start, Instant::now())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("bench thread panicked"))
            .collect()
    });
    let start = spans
        .iter()
        .map(|s| s.0)
        .min()
        .expect("at least one thread");
    let end = spans
        .iter()
        .map(|s| s.1)
        .max()
        .expect("at least one thread");
    end - start
}
