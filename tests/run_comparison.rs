//! Comparing runs of a real process: this test binary runs itself twice as a child, a small
//! two-stage pipeline (each item goes through `parse`, then `analyze`, on one thread, so that
//! the child does not compete with itself for a core) with the real clock and the real
//! `SqliteSink`, into one store; the second run injects 3 ms of latency
//! into `parse` (as the main job's `--inject-latency parse=3ms` does). The comparison of the
//! two runs from the store must find `parse` regressed and `analyze` unchanged.
//!
//! The stages' own work is a spin until 2 ms have passed, so that their medians do not depend
//! on how loaded the machine is (a preempted call is longer, but rarely the median one).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use instrument::instrument_performance;
use instrument_sinks::SqliteSink;
use instrument_sinks::sqlite::query::{Store, Verdict, VerdictRule};

/// The child's role, `DB|INJECT` (INJECT `STAGE=DURATION` or empty).
const CHILD: &str = "INSTRUMENT_RUN_COMPARISON_CHILD";
const ITEMS: u64 = 120;

fn spin(d: Duration) {
    let start = Instant::now();
    while start.elapsed() < d {
        std::hint::spin_loop();
    }
}

/// `STAGE=DURATION` as the main job's `--inject-latency` takes it.
fn injected(spec: &str, stage: &str) -> Duration {
    spec.split(',')
        .filter_map(|one| one.split_once('='))
        .filter(|(s, _)| *s == stage)
        .map(|(_, d)| humantime::parse_duration(d).expect("a duration such as 2ms"))
        .sum()
}

#[instrument_performance(name = "run_comparison::parse", labels(stage = "parse"))]
fn parse(item: u64, delay: Duration) -> u64 {
    spin(Duration::from_millis(2));
    if !delay.is_zero() {
        std::thread::sleep(delay);
    }
    item * 2
}

#[instrument_performance(name = "run_comparison::analyze", labels(stage = "analyze"))]
fn analyze(item: u64) -> u64 {
    spin(Duration::from_millis(2));
    item + 1
}

/// In the child: one run of the pipeline into the store at `DB`.
fn child_role() -> bool {
    let Ok(role) = std::env::var(CHILD) else {
        return false;
    };
    let (db, inject) = role.split_once('|').expect("DB|INJECT");
    let sink = SqliteSink::builder()
        .path(db)
        .program_version(env!("CARGO_PKG_VERSION"))
        .run_config(format!("inject-latency={inject}"))
        .build()
        .expect("opens the store");
    let pipeline = instrument::builder()
        .sink(sink)
        .install()
        .expect("installs");
    let delay = injected(inject, "parse");
    let mut sum = 0;
    for item in 0..ITEMS {
        sum += analyze(parse(item, delay));
    }
    assert_eq!(sum, (0..ITEMS).map(|i| i * 2 + 1).sum::<u64>());
    pipeline.shutdown().expect("shuts down");
    true
}

fn run_child(db: &Path, inject: &str) {
    let status = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_run_with_injected_latency_regresses_in_that_stage_only",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, format!("{}|{inject}", db.display()))
        .status()
        .expect("starts the child");
    assert!(status.success(), "the child run failed");
}

#[test]
fn a_run_with_injected_latency_regresses_in_that_stage_only() {
    if child_role() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("instrument.db");
    run_child(&db, "");
    run_child(&db, "parse=3ms");

    let store = Store::open(&db).unwrap();
    let runs = store.runs().unwrap();
    assert_eq!(runs.len(), 2);
    for run in &runs {
        assert_eq!(run.calls, 2 * ITEMS, "{run:?}");
        assert!(run.ended.is_some(), "each child shut down: {run:?}");
        assert_eq!(
            run.program_version.as_deref(),
            Some(env!("CARGO_PKG_VERSION"))
        );
    }
    assert_ne!(runs[0].config_digest, runs[1].config_digest);
    assert_ne!(runs[0].pid, runs[1].pid);

    let comparison = store
        .compare(runs[0].id, runs[1].id, VerdictRule::default())
        .unwrap();
    let verdicts: Vec<(&str, Verdict)> = comparison
        .callsites
        .iter()
        .map(|c| (c.name.as_str(), c.verdict))
        .collect();
    assert_eq!(
        verdicts,
        [
            ("run_comparison::analyze", Verdict::Unchanged),
            ("run_comparison::parse", Verdict::Regressed),
        ],
        "{comparison:#?}"
    );
    assert_eq!(comparison.verdict, Verdict::Regressed);
    let parse = &comparison.callsites[1];
    // At least 2 ms became at least 5 ms.
    assert!(parse.p50_change.unwrap() > 1.0, "{parse:?}");
}
