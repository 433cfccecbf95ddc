//! The fixed-size record a call writes into its thread's queue, and call outcomes.

use std::fmt;

use crate::fields::Fields;

/// How a call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
#[non_exhaustive]
pub enum Outcome {
    /// Returned normally (for `Result`-returning functions: returned `Ok`).
    Ok = 0,
    /// Returned `Err`.
    Error = 1,
    /// Panicked; the panic continued unchanged.
    Panic = 2,
    /// An `async fn` whose future was dropped before it completed.
    Cancelled = 3,
}

/// The number of outcomes, and of per-callsite loss counters.
pub(crate) const KINDS: usize = 4;

impl Outcome {
    /// All outcomes, in index order.
    pub const ALL: [Outcome; KINDS] = [
        Outcome::Ok,
        Outcome::Error,
        Outcome::Panic,
        Outcome::Cancelled,
    ];

    /// The lower-case name used in labels and logs: `ok`, `error`, `panic`, `cancelled`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Error => "error",
            Outcome::Panic => "panic",
            Outcome::Cancelled => "cancelled",
        }
    }

    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One timed call, as written on the hot path. Durations and timestamps are raw clock ticks; the
/// drain converts them.
///
/// Half a cache line, aligned to half a line, so two records share each line of the ring: the
/// lines a call moves between its thread and the drain are what the installed call pays for
/// beyond its clock reads. What only some calls carry (an error kind, captured arguments) goes
/// into a [`Detail`] on a second ring.
#[derive(Clone, Copy, Debug)]
#[repr(align(32))]
pub(crate) struct Record {
    pub(crate) start: u64,
    pub(crate) duration: u64,
    pub(crate) correlation: u64,
    pub(crate) callsite: u32,
    pub(crate) outcome: Outcome,
    /// Low byte of the pipeline generation that was installed when the call started.
    pub(crate) generation: u8,
    /// Whether this record's [`Detail`] was pushed onto the thread's detail ring just before it.
    pub(crate) detailed: bool,
    /// The error kind's position among its callsite's kinds (`Callsite::kind_slot`); 0 for no
    /// kind, or a kind carried by the detail instead.
    pub(crate) kind: u8,
}

const _: () = assert!(std::mem::size_of::<Record>() == 32);

/// What only some calls carry: the error kind of an `error` outcome and captured arguments.
#[derive(Debug, Default)]
pub(crate) struct Detail {
    pub(crate) error_kind: Option<&'static str>,
    pub(crate) fields: Fields,
}
