//! How many records per second the single drain thread takes out of the thread queues,
//! aggregates and hands to a sink.
//!
//! `cargo bench --bench drain`. Group `drain`, function `null_sink/<producers>`: `producers`
//! threads (1, and `available_parallelism - 1` when that differs) each make
//! `RECORDS_PER_PRODUCER` instrumented calls while the drain is parked (the drain interval and
//! window are an hour, and no queue passes half full, which would wake it). Then the timed part:
//! `PipelineGuard::flush`, which returns once the drain has emptied every queue, aggregated every
//! record into its histogram and the `NullSink` has flushed. Throughput is records per second of
//! flush.
//!
//! Function `record_drain_parked/<producers>` times the other half of the same iterations, the
//! producers' calls: what a call costs while the drain is parked and not reading the queues
//! (compare with `overhead/instrument_performance`, where the drain runs beside the caller).
//!
//! Every iteration checks with `self_metrics` that the drain took nothing before the flush
//! started, took every record during it, and dropped none.

mod shared;

use std::hint::black_box;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode};
use crossbeam_channel::{Receiver, Sender};

use shared::{for_all_configs, instrumented};

/// Calls each producer makes per iteration.
const RECORDS_PER_PRODUCER: u64 = 1_000_000;
/// Queue capacity per producer thread: more than twice `RECORDS_PER_PRODUCER`, so that no queue
/// passes half full and wakes the drain early.
const QUEUE_CAPACITY: usize = 1 << 21;

const _: () = assert!(2 * RECORDS_PER_PRODUCER < QUEUE_CAPACITY as u64);

/// Threads that make instrumented calls on request, kept alive across iterations so that their
/// queues are allocated once.
struct Producers {
    requests: Vec<Sender<u64>>,
    done: Receiver<()>,
    threads: Vec<JoinHandle<()>>,
}

impl Producers {
    fn spawn(count: usize) -> Producers {
        let (done_tx, done) = crossbeam_channel::unbounded();
        let mut requests = Vec::with_capacity(count);
        let threads = (0..count)
            .map(|i| {
                let (tx, rx) = crossbeam_channel::unbounded::<u64>();
                requests.push(tx);
                let done_tx = done_tx.clone();
                std::thread::Builder::new()
                    .name(format!("producer-{i}"))
                    .spawn(move || {
                        for calls in rx {
                            for x in 0..calls {
                                black_box(instrumented(black_box(x)));
                            }
                            done_tx.send(()).expect("bench alive");
                        }
                    })
                    .expect("spawn producer")
            })
            .collect();
        Producers {
            requests,
            done,
            threads,
        }
    }

    /// Every producer makes `calls` calls; returns when all are done.
    fn fill(&self, calls: u64) {
        for tx in &self.requests {
            tx.send(calls).expect("producer alive");
        }
        for _ in &self.requests {
            self.done.recv().expect("producer alive");
        }
    }

    fn stop(self) {
        drop(self.requests);
        for thread in self.threads {
            thread.join().expect("producer panicked");
        }
    }
}

/// Which part of an iteration is timed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Timed {
    /// The producers' calls, while the drain is parked.
    Record,
    /// The flush: the drain emptying the queues.
    Flush,
}

/// The pipeline and the producer threads of the current configuration.
struct Rig {
    pipeline: instrument::PipelineGuard,
    producers: Option<(usize, Producers)>,
}

impl Rig {
    /// Runs `iters` fill-then-flush iterations with `count` producers and returns the time spent
    /// in the `timed` part.
    fn run(&mut self, count: usize, iters: u64, timed: Timed) -> Duration {
        if self.producers.as_ref().is_none_or(|(n, _)| *n != count) {
            if let Some((_, old)) = self.producers.take() {
                old.stop();
            }
            // Spawned after install, so their queues get this pipeline's capacity.
            self.producers = Some((count, Producers::spawn(count)));
        }
        let (_, producers) = self.producers.as_ref().expect("spawned above");
        let expected = count as u64 * RECORDS_PER_PRODUCER;
        let mut elapsed = Duration::ZERO;
        for _ in 0..iters {
            let before = self.pipeline.self_metrics();
            let start = Instant::now();
            producers.fill(RECORDS_PER_PRODUCER);
            if timed == Timed::Record {
                elapsed += start.elapsed();
            }
            let filled = self.pipeline.self_metrics();
            assert_eq!(
                filled.events_recorded, before.events_recorded,
                "the drain ran while the queues were filled: the flush would not see all records",
            );
            let start = Instant::now();
            self.pipeline.flush().expect("flush");
            if timed == Timed::Flush {
                elapsed += start.elapsed();
            }
            let after = self.pipeline.self_metrics();
            assert_eq!(after.events_dropped, 0, "records were dropped");
            assert_eq!(
                after.events_recorded - before.events_recorded,
                expected,
                "the flush did not take every record",
            );
        }
        elapsed
    }
}

fn drain(c: &mut Criterion) {
    let pipeline = instrument::builder()
        .queue_capacity(QUEUE_CAPACITY)
        .drain_interval(Duration::from_secs(3600))
        .window(Duration::from_secs(3600))
        .sink(instrument::NullSink)
        .install()
        .expect("no other pipeline is installed in this process");
    let mut rig = Rig {
        pipeline,
        producers: None,
    };

    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    let mut configs = vec![1, cores.saturating_sub(1).max(1)];
    configs.dedup();
    let records = |producers: usize| producers as u64 * RECORDS_PER_PRODUCER;

    let mut group = c.benchmark_group("drain");
    // Each iteration moves millions of records: a few per sample are enough.
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    for_all_configs(&mut group, "null_sink", &configs, records, |p, iters| {
        rig.run(p, iters, Timed::Flush)
    });
    for_all_configs(
        &mut group,
        "record_drain_parked",
        &configs,
        records,
        |p, iters| rig.run(p, iters, Timed::Record),
    );
    group.finish();

    if let Some((_, producers)) = rig.producers.take() {
        producers.stop();
    }
    let m = rig.pipeline.self_metrics();
    eprintln!(
        "drain: recorded {} records, dropped {}, queue high water {}",
        m.events_recorded, m.events_dropped, m.queue_high_water
    );
    rig.pipeline.shutdown().expect("shutdown");
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    drain(&mut c);
    c.final_summary();
}
