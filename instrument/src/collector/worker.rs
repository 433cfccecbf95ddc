//! A sink's worker thread: takes from the sink's queue, writes, retries, ticks, answers markers.
//!
//! Audit entries come first: whenever some are waiting and no retry back-off is running, the
//! worker writes them (up to `AUDIT_BATCH` per batch) before the next data batch. A failed audit
//! batch is put back and retried after a back-off (10 ms doubling to 5 s) without limit, while
//! data batches keep flowing in between. A failed data batch is put back at the head of the
//! queue and retried after the same back-off, up to `max_retries` times (with the default 14,
//! about 30 s), then given up and counted as lost; batches arriving meanwhile wait behind it,
//! within the queue's bounds, so an outage shorter than that loses nothing but what overflows
//! the bounds. The worker never sleeps: audit entries, ticks (where a sink notices that its
//! cause went away) and health polls go on while a data batch waits for its retry.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use super::delivery::{Item, Marker, SinkQueue, lost_batch};
use crate::sink::{Batch, Lost, Sink, SinkError, SinkHealth, SinkShortfall, SinkStatus, StartInfo};

/// Audit entries per audit batch.
const AUDIT_BATCH: usize = 4096;
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

pub(crate) struct Worker {
    pub(crate) sink: Box<dyn Sink>,
    pub(crate) queue: Arc<SinkQueue>,
    pub(crate) status: Arc<Mutex<SinkStatus>>,
    pub(crate) max_retries: u32,
    pub(crate) start: StartInfo,
}

/// The retry of the data batch at the head of the queue after it failed.
#[derive(Default)]
struct Retry {
    /// Failed attempts so far.
    attempts: u32,
    /// When the batch may be tried again; `None` when the head has not failed.
    at: Option<Instant>,
}

impl Retry {
    /// The wait before the next attempt: 10 ms doubling per failed attempt, at most 5 s.
    fn next_backoff(&self) -> Duration {
        FIRST_BACKOFF
            .saturating_mul(1 << self.attempts.min(16))
            .min(MAX_BACKOFF)
    }
}

enum Work {
    Audit(Vec<crate::AuditEntry>),
    Item(Item),
    Tick,
}

impl Worker {
    pub(crate) fn run(mut self) {
        let start = self.start.clone();
        let _ = guarded(&self.status, || self.sink.start(&start));
        self.poll_health();
        let tick = self.start.tick;
        let mut next_tick = Instant::now() + tick;
        let mut audit_retry: Option<Instant> = None;
        let mut backoff = FIRST_BACKOFF;
        let mut data_retry = Retry::default();
        loop {
            let work = {
                let mut state = self.queue.lock();
                loop {
                    let now = Instant::now();
                    let audit_ready =
                        !state.audit.is_empty() && audit_retry.is_none_or(|at| now >= at);
                    if audit_ready {
                        let n = state.audit.len().min(AUDIT_BATCH);
                        break Work::Audit(state.audit.drain(..n).collect());
                    }
                    let data_ready = data_retry.at.is_none_or(|at| now >= at);
                    if let Some(item) = data_ready.then(|| state.items.pop_front()).flatten() {
                        if let Item::Batch(batch, _) = &item {
                            state.batches -= 1;
                            state.events -= batch.weight();
                        }
                        break Work::Item(item);
                    }
                    if now >= next_tick {
                        break Work::Tick;
                    }
                    let until = audit_retry
                        .filter(|_| !state.audit.is_empty())
                        .map_or(next_tick, |at| at.min(next_tick));
                    let until = data_retry
                        .at
                        .filter(|_| !state.items.is_empty())
                        .map_or(until, |at| at.min(until));
                    state = self.queue.wait(state, until);
                }
            };
            match work {
                Work::Audit(entries) => {
                    if self.write_audit(entries) {
                        audit_retry = None;
                        backoff = FIRST_BACKOFF;
                    } else {
                        audit_retry = Some(Instant::now() + backoff);
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
                Work::Item(Item::Batch(batch, keep)) => {
                    self.write_batch(batch, keep, &mut data_retry);
                }
                Work::Item(Item::Flush(marker)) => self.finish(&marker, false),
                Work::Item(Item::Shutdown(marker)) => {
                    self.finish(&marker, true);
                    return;
                }
                Work::Tick => {
                    let _ = guarded(&self.status, || self.sink.tick(SystemTime::now()));
                    self.poll_health();
                    next_tick = Instant::now() + tick;
                }
            }
        }
    }

    /// Writes audit entries once; on failure puts them back at the front of the queue.
    fn write_audit(&mut self, entries: Vec<crate::AuditEntry>) -> bool {
        let batch = Batch {
            audit: entries,
            ..Batch::default()
        };
        if guarded(&self.status, || self.sink.write(&batch)).is_ok() {
            let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            status.delivered += 1;
            status.audit_delivered += batch.audit.len() as u64;
            return true;
        }
        let mut state = self.queue.lock();
        for entry in batch.audit.into_iter().rev() {
            state.audit.push_front(entry);
        }
        false
    }

    /// Writes a data batch once. On failure puts it back at the head of the queue for a retry
    /// after the back-off, or, past `max_retries`, gives it up and counts it as lost.
    fn write_batch(&mut self, batch: Arc<Batch>, keep: bool, retry: &mut Retry) {
        if guarded(&self.status, || self.sink.write(&batch)).is_ok() {
            self.status
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .delivered += 1;
            *retry = Retry::default();
        } else if retry.attempts >= self.max_retries {
            let lost = lost_batch(&batch);
            self.queue.lock().lost.add(lost);
            let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
            status.dropped_batches += 1;
            status.lost.add(lost);
            drop(status);
            *retry = Retry::default();
        } else {
            let mut state = self.queue.lock();
            state.batches += 1;
            state.events += batch.weight();
            state.items.push_front(Item::Batch(batch, keep));
            drop(state);
            let backoff = retry.next_backoff();
            retry.attempts += 1;
            retry.at = Some(Instant::now() + backoff);
        }
        self.poll_health();
    }

    /// Answers a flush or shutdown marker: writes the audit entries accepted before it, flushes
    /// (or shuts down), and reports what the sink lacks since the last flush whose caller read
    /// the answer (a loss answered to a flush that had timed out is reported again).
    fn finish(&mut self, marker: &Marker, shutdown: bool) {
        let (answer, taken) = self.answer(marker, shutdown);
        if !marker.ticket.answer(marker.index, answer) {
            // Nobody read it: what was lost for good is reported to the next flush. Audit
            // entries still waiting are not: the next flush finds them itself if they are
            // still not written.
            self.queue.lock().lost.add(taken);
        }
    }

    /// The answer, and what it took out of the sink's lost count.
    fn answer(&mut self, marker: &Marker, shutdown: bool) -> (Result<(), SinkShortfall>, Lost) {
        // The entries accepted before the marker, written with the same retries as a data
        // batch: the flush's promise depends on them.
        let n = self
            .queue
            .lock()
            .audit
            .iter()
            .take_while(|e| e.sequence <= marker.audit_upto)
            .count();
        let mut missing_audit = 0;
        if n > 0 {
            let mut backoff = FIRST_BACKOFF;
            for attempt in 0..=self.max_retries {
                if attempt > 0 {
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                let batch: Vec<_> = {
                    let mut state = self.queue.lock();
                    let k = n.min(state.audit.len());
                    state.audit.drain(..k).collect()
                };
                if self.write_audit(batch) {
                    break;
                }
                if attempt == self.max_retries {
                    missing_audit = n as u64;
                }
            }
        }
        let result = if shutdown {
            guarded(&self.status, || {
                let flushed = self.sink.flush();
                let closed = self.sink.shutdown();
                flushed.and(closed)
            })
        } else {
            guarded(&self.status, || self.sink.flush())
        };
        self.poll_health();
        let taken = std::mem::take(&mut self.queue.lock().lost);
        let mut lost = taken;
        lost.audit_entries += missing_audit;
        if shutdown {
            // What is still queued will never be written.
            let state = self.queue.lock();
            lost.audit_entries += state.audit.len() as u64;
        }
        if result.is_ok() && lost.is_none() {
            return (Ok(()), taken);
        }
        let name = self
            .status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .name
            .clone();
        let shortfall = SinkShortfall {
            sink: name,
            timed_out: false,
            error: result.err().map(|e| error_chain(&e)),
            lost,
        };
        (Err(shortfall), taken)
    }

    fn poll_health(&self) {
        let health = catch_unwind(AssertUnwindSafe(|| self.sink.health()))
            .unwrap_or_else(|_| SinkHealth::Unhealthy("health check panicked".into()));
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .health = health;
    }
}

pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic payload".to_owned())
}

/// Runs `f` against the sink, turning a panic into an error and counting failures.
fn guarded(
    status: &Mutex<SinkStatus>,
    f: impl FnOnce() -> Result<(), SinkError>,
) -> Result<(), SinkError> {
    let result = match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(panic) => {
            status.lock().unwrap_or_else(PoisonError::into_inner).panics += 1;
            Err(SinkError::new(format!(
                "sink panicked: {}",
                panic_message(&*panic)
            )))
        }
    };
    if let Err(e) = &result {
        let mut status = status.lock().unwrap_or_else(PoisonError::into_inner);
        status.errors += 1;
        status.last_error = Some(error_chain(e));
    }
    result
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}
