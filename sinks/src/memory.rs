//! An in-memory sink.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use instrument::{
    AuditEntry, Batch, DropMarker, Event, Interests, Notice, Sink, SinkError, Snapshot,
};

#[derive(Debug, Default)]
struct Store {
    events: Vec<Event>,
    drops: Vec<DropMarker>,
    snapshots: Vec<Arc<Snapshot>>,
    audit: Vec<AuditEntry>,
    notices: Vec<Notice>,
    batches: u64,
    flushes: u64,
    shut_down: bool,
}

/// Keeps every batch it receives. Clones share one store: install one clone, read another.
///
/// Memory grows with what it receives; it is meant for tests and short runs.
#[derive(Clone, Debug)]
pub struct MemorySink {
    name: String,
    interests: Interests,
    store: Arc<Mutex<Store>>,
}

impl Default for MemorySink {
    fn default() -> Self {
        Self::new()
    }
}

impl MemorySink {
    /// A sink named `memory`, interested in everything.
    #[must_use]
    pub fn new() -> Self {
        MemorySink {
            name: "memory".to_owned(),
            interests: Interests::ALL,
            store: Arc::default(),
        }
    }

    /// The same sink under another name (names label the sink's self-metrics).
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The same sink, receiving only what `interests` names.
    #[must_use]
    pub fn with_interests(mut self, interests: Interests) -> Self {
        self.interests = interests;
        self
    }

    fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Every event received, in delivery order.
    #[must_use]
    pub fn events(&self) -> Vec<Event> {
        self.store().events.clone()
    }

    /// Every drop marker received.
    #[must_use]
    pub fn drops(&self) -> Vec<DropMarker> {
        self.store().drops.clone()
    }

    /// Every snapshot received.
    #[must_use]
    pub fn snapshots(&self) -> Vec<Arc<Snapshot>> {
        self.store().snapshots.clone()
    }

    /// The most recent snapshot.
    #[must_use]
    pub fn last_snapshot(&self) -> Option<Arc<Snapshot>> {
        self.store().snapshots.last().cloned()
    }

    /// Every audit entry received, in delivery order.
    #[must_use]
    pub fn audit(&self) -> Vec<AuditEntry> {
        self.store().audit.clone()
    }

    /// Every notice received (health changes, alerts, bridged log lines), in delivery order.
    #[must_use]
    pub fn notices(&self) -> Vec<Notice> {
        self.store().notices.clone()
    }

    /// Number of batches received.
    #[must_use]
    pub fn batches(&self) -> u64 {
        self.store().batches
    }

    /// Number of flushes received.
    #[must_use]
    pub fn flushes(&self) -> u64 {
        self.store().flushes
    }

    /// Whether the pipeline shut this sink down.
    #[must_use]
    pub fn is_shut_down(&self) -> bool {
        self.store().shut_down
    }
}

impl Sink for MemorySink {
    fn name(&self) -> &str {
        &self.name
    }

    fn interests(&self) -> Interests {
        self.interests
    }

    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        let interests = self.interests;
        let mut store = self.store();
        store.batches += 1;
        if interests.events {
            store.events.extend(batch.events.iter().cloned());
            store.drops.extend(batch.drops.iter().cloned());
        }
        if interests.snapshots
            && let Some(snapshot) = &batch.snapshot
        {
            store.snapshots.push(Arc::clone(snapshot));
        }
        if interests.audit {
            store.audit.extend(batch.audit.iter().cloned());
        }
        if interests.notices {
            store.notices.extend(batch.notices.iter().cloned());
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        self.store().flushes += 1;
        Ok(())
    }

    fn shutdown(&mut self) -> Result<(), SinkError> {
        let mut store = self.store();
        store.flushes += 1;
        store.shut_down = true;
        Ok(())
    }
}
