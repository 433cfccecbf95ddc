//! Memory budget, measured on the process: with the default configuration, 100 callsites
//! recorded from 16 threads at full rate raise the resident set by at most 16 MiB over the same
//! workload without a pipeline, and `SelfMetrics::memory_bytes` is within 10 % of that rise
//! (measured 3-4 % below it).
//! Linux only (reads `RssAnon` from `/proc/self/status`).

use std::sync::Barrier;

/// 100 distinct block-timer callsites; `timer!` declares one `static` per expansion.
macro_rules! callsites {
    ($($n:literal)*) => {
        fn call(index: usize) {
            match index {
                $($n => {
                    let _t = instrument::timer!("memory_probe");
                    std::hint::black_box(index);
                })*
                _ => unreachable!(),
            }
        }
        const CALLSITES: usize = [$($n),*].len();
    };
}

callsites!(0 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33
    34 35 36 37 38 39 40 41 42 43 44 45 46 47 48 49 50 51 52 53 54 55 56 57 58 59 60 61 62 63 64 65 66
    67 68 69 70 71 72 73 74 75 76 77 78 79 80 81 82 83 84 85 86 87 88 89 90 91 92 93 94 95 96 97 98 99);

/// Captured arguments travel on the detail ring: every slot of it gets used too.
#[instrument::instrument_performance(capture(i))]
fn captured(i: u64) -> u64 {
    i
}

/// Anonymous resident memory (`RssAnon`): the heap, thread stacks and mapped buffers, without
/// the executable's code pages that running the pipeline's code pulls in (about 300 KiB here).
fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("RssAnon:"))
        .expect("RssAnon in /proc/self/status")
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kib * 1024
}

const THREADS: usize = 16;
const CALLS: u64 = 200_000;

/// Runs the workload on 16 threads and returns the resident set measured while all of them are
/// alive, after their calls.
fn run(measure: impl FnOnce() -> u64) -> u64 {
    let barrier = Barrier::new(THREADS + 1);
    let mut rss = 0;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let barrier = &barrier;
            s.spawn(move || {
                for i in 0..CALLS {
                    call(((i + t as u64) % 100) as usize);
                    if i % 4 == 0 {
                        std::hint::black_box(captured(i));
                    }
                }
                barrier.wait();
                barrier.wait();
            });
        }
        barrier.wait();
        rss = measure();
        barrier.wait();
    });
    rss
}

#[test]
fn hundred_callsites_sixteen_threads_cost_at_most_16_mib_of_resident_memory() {
    assert_eq!(CALLSITES, 100);
    // Without a pipeline: thread stacks, allocator arenas, the test harness.
    let baseline = run(resident_bytes);
    let pipeline = instrument::builder().install().unwrap();
    let mut reported = 0;
    let with_pipeline = run(|| {
        pipeline.flush().ok();
        reported = pipeline.self_metrics().memory_bytes;
        resident_bytes()
    });
    let rise = with_pipeline.saturating_sub(baseline);
    println!(
        "resident set: {baseline} bytes without a pipeline, {with_pipeline} with; rise {rise}, memory_bytes {reported}"
    );
    assert!(
        rise <= 16 << 20,
        "the pipeline raised the resident set by {rise} bytes"
    );
    let error = (reported as f64 - rise as f64).abs() / rise as f64;
    assert!(
        error <= 0.10,
        "memory_bytes {reported} is {:.0} % away from the measured rise {rise}",
        error * 100.0
    );
}
