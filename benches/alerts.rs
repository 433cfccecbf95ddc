//! What evaluating alert rules costs per snapshot.
//!
//! `cargo bench --bench alerts`. Group `alerts`, function `evaluate/<rules>`: the alert engine
//! (a sink) handles one snapshot of 200 callsites, 200 gauges and 100 counters with `rules`
//! rules (10, 100, 1,000): 40 % gauge thresholds, 20 % counter rates over 1 min, 30 % error
//! ratios of a named callsite over 30 s, 10 % p99 latencies of a named callsite over 1 min. The
//! snapshot is the same each time, with its window moved one second on, so windows fill and
//! slide as in a running process; building that copy is outside the timed part
//! (`iter_batched`). The bar: 1,000 rules in at most 1 ms per evaluation.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion};
use instrument::{Batch, Sink, Snapshot};
use instrument_sinks::MemorySink;
use instrument_sinks::alerts::{AlertEngine, Condition, Quantile, Rule, Threshold};

const CALLSITES: usize = 200;
const GAUGES: usize = 200;
const COUNTERS: usize = 100;

/// A snapshot with calls (some failing), gauges and counters, cut by a real pipeline.
fn snapshot() -> Arc<Snapshot> {
    let sink = MemorySink::new();
    let pipeline = instrument::builder().sink(sink.clone()).install().unwrap();
    for i in 0..CALLSITES {
        let timer = instrument::metric(format!("bench_stage_{i}"))
            .function()
            .unwrap();
        for call in 0..50 {
            let t = timer.start();
            if call % 10 == 0 {
                t.error("Io");
            } else {
                drop(t);
            }
        }
    }
    for i in 0..GAUGES {
        instrument::metric(format!("bench_gauge_{}", i % 50))
            .label("shard", (i / 50).to_string())
            .gauge()
            .unwrap()
            .set(i as f64);
    }
    for i in 0..COUNTERS {
        instrument::metric(format!("bench_rows_{i}_total"))
            .counter()
            .unwrap()
            .add(i as u64);
    }
    pipeline.flush().unwrap();
    let snapshot = sink.last_snapshot().unwrap();
    drop(pipeline);
    snapshot
}

fn rules(n: usize) -> Vec<Rule> {
    (0..n)
        .map(|i| {
            let name = format!("rule_{i}");
            match i % 10 {
                0..=3 => Rule::new(
                    name,
                    Condition::Value {
                        metric: format!("bench_gauge_{}", i % 50),
                        matchers: vec![],
                    },
                    Threshold::Above(1e9),
                ),
                4 | 5 => Rule::new(
                    name,
                    Condition::Rate {
                        metric: format!("bench_rows_{}_total", i % COUNTERS),
                        matchers: vec![],
                        window: Duration::from_secs(60),
                    },
                    Threshold::Above(1e9),
                ),
                6..=8 => Rule::new(
                    name,
                    Condition::ErrorRatio {
                        function: Some(format!("bench_stage_{}", i % CALLSITES)),
                        window: Duration::from_secs(30),
                        min_calls: 1,
                    },
                    Threshold::Above(0.5),
                ),
                _ => Rule::new(
                    name,
                    Condition::Percentile {
                        function: Some(format!("bench_stage_{}", i % CALLSITES)),
                        quantile: Quantile::P99,
                        window: Duration::from_secs(60),
                    },
                    Threshold::Above(10.0),
                ),
            }
        })
        .collect()
}

fn main() {
    let mut criterion = Criterion::default().configure_from_args();
    let base = snapshot();
    let mut group = criterion.benchmark_group("alerts");
    for n in [10, 100, 1000] {
        let mut engine = AlertEngine::builder()
            .rules(instrument_sinks::alerts::RuleSet { rules: rules(n) })
            .build()
            .unwrap();
        let mut second = 0u64;
        group.bench_function(BenchmarkId::new("evaluate", n), |b| {
            b.iter_batched(
                || {
                    second += 1;
                    let mut moved = (*base).clone();
                    moved.window_start += Duration::from_secs(second);
                    moved.window_end += Duration::from_secs(second);
                    let mut batch = Batch::default();
                    batch.snapshot = Some(Arc::new(moved));
                    batch
                },
                |batch| engine.write(black_box(&batch)).unwrap(),
                BatchSize::SmallInput,
            );
        });
    }
    group.finish();
    criterion.final_summary();
}
