//! Callsites: one `static` per instrumented function or manual metric, or one leaked at run time
//! per metric name and label set (`dynamic.rs`).
//!
//! A callsite is registered lazily on its first recorded call: one relaxed load of its id after
//! that. Registration assigns a dense index so the drain can aggregate by array lookup.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};

use crate::metadata::{CallsiteKind, Metadata};

/// A registered-on-first-use callsite. Created by the macros as a `static`.
#[doc(hidden)]
#[derive(Debug)]
pub struct Callsite {
    meta: Metadata,
    /// Dense index + 1 once registered; 0 before.
    id: AtomicU32,
    /// The last `gauge!` value of this callsite, with who set it when.
    pub(crate) gauge: Mutex<GaugeCell>,
    /// Records lost because their thread was tearing down its thread-locals, per record kind.
    pub(crate) orphaned: [AtomicU64; SLOTS],
    /// The first error kinds this callsite returned, in order of first sight. A record names
    /// one by its position (one byte instead of a string on the side), and a dropped record's
    /// kind is still counted by it.
    pub(crate) kinds: [OnceLock<&'static str>; KIND_SLOTS],
    /// `counter!` additions of 2^32 or more, summed saturating at `u64::MAX`.
    large: AtomicU64,
}

/// Error kinds per callsite that records name by position.
pub(crate) const KIND_SLOTS: usize = 4;

/// Counter slots per callsite: one loss counter per outcome, the `counter!` total, then one
/// loss counter per error kind position (`Callsite::kind_slot`).
pub(crate) const SLOTS: usize = crate::record::KINDS + 1 + KIND_SLOTS;
/// The slot of the `counter!` total.
pub(crate) const COUNTER_SLOT: usize = crate::record::KINDS;
/// Slot of the losses of error kind position 1; position `k` is at `KIND_SLOT_BASE + k - 1`.
pub(crate) const KIND_SLOT_BASE: usize = crate::record::KINDS + 1;

/// Whether two error kinds are the same. Kinds are `&'static str`s, usually the very same
/// string each time, so the pointers are compared before the text.
#[inline]
pub(crate) fn same_kind(a: &str, b: &str) -> bool {
    std::ptr::eq(a, b) || a == b
}

/// A gauge value, the pipeline state word it was set under, and a process-wide sequence number
/// that orders sets across callsites.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GaugeCell {
    pub(crate) state: u32,
    pub(crate) sequence: u64,
    pub(crate) value: f64,
}

static REGISTRY: Mutex<Vec<&'static Callsite>> = Mutex::new(Vec::new());

impl Callsite {
    #[doc(hidden)]
    #[must_use]
    pub const fn new(meta: Metadata) -> Self {
        Callsite {
            meta,
            id: AtomicU32::new(0),
            gauge: Mutex::new(GaugeCell {
                state: 0,
                sequence: 0,
                value: 0.0,
            }),
            orphaned: [const { AtomicU64::new(0) }; SLOTS],
            kinds: [const { OnceLock::new() }; KIND_SLOTS],
            large: AtomicU64::new(0),
        }
    }

    /// The position + 1 of `kind` among this callsite's error kinds, taking a free position
    /// for a new kind; 0 once all positions hold other kinds. Lock-free once a kind is known.
    #[inline]
    pub(crate) fn kind_slot(&self, kind: &'static str) -> u8 {
        for (i, cell) in self.kinds.iter().enumerate() {
            let known = match cell.get() {
                Some(known) => *known,
                None => *cell.get_or_init(|| kind),
            };
            if same_kind(known, kind) {
                return i as u8 + 1;
            }
        }
        0
    }

    /// Adds a large `counter!` increment, saturating at `u64::MAX`.
    #[cold]
    pub(crate) fn add_large(&'static self, n: u64) {
        let _ = self.index();
        let _ = self
            .large
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_add(n))
            });
    }

    /// The saturating total of large increments.
    pub(crate) fn large_added(&self) -> u64 {
        self.large.load(Ordering::Relaxed)
    }

    /// The error kind at `slot` (as returned by `kind_slot`).
    pub(crate) fn kind_at(&self, slot: u8) -> Option<&'static str> {
        self.kinds
            .get(usize::from(slot).checked_sub(1)?)?
            .get()
            .copied()
    }

    /// The callsite's static description.
    #[must_use]
    pub fn metadata(&'static self) -> &'static Metadata {
        &self.meta
    }
    /// Whether the callsite records plain values rather than durations
    /// (`CallsiteKind::Histogram`).
    #[inline]
    pub(crate) fn is_value_histogram(&self) -> bool {
        self.meta.kind() == CallsiteKind::Histogram
    }

    /// Dense index of the callsite, registering it on first use.
    #[inline(always)]
    pub(crate) fn index(&'static self) -> u32 {
        let id = self.id.load(Ordering::Relaxed);
        if id != 0 { id - 1 } else { self.register() }
    }

    #[cold]
    #[inline(never)]
    fn register(&'static self) -> u32 {
        let mut registry = REGISTRY
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let id = self.id.load(Ordering::Acquire);
        if id != 0 {
            return id - 1;
        }
        registry.push(self);
        let index = u32::try_from(registry.len() - 1).expect("fewer than 2^32 callsites");
        self.id.store(index + 1, Ordering::Release);
        index
    }
}

/// Copies the registered callsites from index `from` on into `into`.
pub(crate) fn registered_since(from: usize, into: &mut Vec<&'static Callsite>) {
    let registry = REGISTRY
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if registry.len() > from {
        into.extend_from_slice(&registry[from..]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::Unit;

    #[test]
    fn registration_is_idempotent_and_dense() {
        static A: Callsite = Callsite::new(Metadata::new("a", "m", "f", 1, CallsiteKind::Function));
        static B: Callsite = Callsite::new(Metadata::new("b", "m", "f", 2, CallsiteKind::Function));
        let a = A.index();
        assert_eq!(A.index(), a);
        let b = B.index();
        assert_ne!(a, b);
        let mut all = Vec::new();
        registered_since(0, &mut all);
        assert!(std::ptr::eq(all[a as usize], &raw const A));
        assert!(std::ptr::eq(all[b as usize], &raw const B));
    }

    #[test]
    fn metadata_is_a_map_key_by_identity() {
        static A: Callsite = Callsite::new(Metadata::new("same", "m", "f", 1, CallsiteKind::Timer));
        static B: Callsite = Callsite::new(Metadata::new("same", "m", "f", 1, CallsiteKind::Timer));
        let mut seen: std::collections::HashMap<&'static Metadata, u32> =
            std::collections::HashMap::new();
        *seen.entry(A.metadata()).or_default() += 1;
        *seen.entry(B.metadata()).or_default() += 10;
        *seen.entry(A.metadata()).or_default() += 1;
        // Equal in every field, yet two callsites: two keys.
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[A.metadata()], 2);
        assert_eq!(seen[B.metadata()], 10);
    }

    #[test]
    fn unit_and_description_default_to_none() {
        let plain = Metadata::new("queue_depth", "m", "f", 1, CallsiteKind::Gauge);
        assert_eq!((plain.unit(), plain.description()), (None, None));
        let described = Metadata::new("read_bytes", "m", "f", 1, CallsiteKind::Histogram)
            .with_unit(Unit::Bytes)
            .with_description("Bytes per read call.");
        assert_eq!(described.unit(), Some(Unit::Bytes));
        assert_eq!(described.description(), Some("Bytes per read call."));
    }
}
