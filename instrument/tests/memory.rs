//! Memory budget: with the default configuration, thread buffers and aggregates for 100
//! callsites recorded from 16 threads stay under 16 MiB, however many calls are made.

use std::sync::Barrier;
use std::time::Duration;

use instrument::{ClockSource, testing};

/// 100 distinct block-timer callsites; `timer!` declares one `static` per expansion.
macro_rules! callsites {
    ($($n:literal)*) => {
        fn call(index: usize, nanos: u64) {
            match index {
                $($n => {
                    let _t = instrument::timer!("memory_probe");
                    testing::advance(Duration::from_nanos(nanos));
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

#[test]
fn hundred_callsites_sixteen_threads_stay_under_16_mib() {
    assert_eq!(CALLSITES, 100);
    let pipeline = instrument::builder()
        .clock(ClockSource::Mock)
        .install()
        .unwrap();
    let rounds = 3u64;
    let threads = 16u64;
    let calls = 5_000u64;
    let barrier = Barrier::new(threads as usize + 1);
    let mut peak = 0;
    std::thread::scope(|s| {
        for t in 0..threads {
            let barrier = &barrier;
            s.spawn(move || {
                for _ in 0..rounds {
                    // Each callsite's durations spread over two octaves around its own base
                    // (1 µs .. 0.5 s across callsites): a wide latency profile.
                    for i in 0..calls {
                        let index = ((i + t) % 100) as usize;
                        let base = 1_000u64 << (index % 20);
                        call(index, base + (i * 7919 + t * 104_729) % (3 * base));
                    }
                    barrier.wait(); // recorded; main measures while every thread is alive
                    barrier.wait();
                }
            });
        }
        for _ in 0..rounds {
            barrier.wait();
            pipeline.flush().unwrap();
            let metrics = pipeline.self_metrics();
            assert!(
                metrics.threads >= threads,
                "threads seen: {}",
                metrics.threads
            );
            peak = peak.max(metrics.memory_bytes);
            barrier.wait();
        }
    });
    pipeline.flush().unwrap();
    let metrics = pipeline.self_metrics();
    assert_eq!(
        metrics.events_recorded + metrics.events_dropped,
        rounds * threads * calls
    );
    assert!(peak > 0);
    assert!(
        peak < 16 << 20,
        "buffers + aggregates use {peak} bytes, over 16 MiB"
    );
    println!("peak memory for 100 callsites x 16 threads: {peak} bytes");
}
