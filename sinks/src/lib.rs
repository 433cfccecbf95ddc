//! Sinks for the [`instrument`] SDK.
//!
//! - [`MemorySink`] (feature `memory`, default): keeps everything it receives in memory, behind a
//!   cloneable handle, so tests and embedding applications can read back events, snapshots, drop
//!   markers and audit entries.
//!
//! ```
//! use instrument_sinks::MemorySink;
//!
//! let sink = MemorySink::new();
//! let pipeline = instrument::builder().sink(sink.clone()).install()?;
//! instrument::audit(instrument::AuditEntry::new("load").input("a.rs"))?;
//! pipeline.flush()?;
//! assert_eq!(sink.audit()[0].inputs, ["a.rs"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "memory")]
mod memory;

#[cfg(feature = "memory")]
pub use crate::memory::MemorySink;
