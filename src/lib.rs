//! Examples, benchmarks and end-to-end tests of the [`instrument`] SDK.
//!
//! This package is not published. It is the workspace root, so that `examples/`, `benches/` and
//! `tests/` can use every crate of the SDK together:
//!
//! - `examples/ast_pipeline.rs`, the main job: a staged pipeline that discovers, reads, parses
//!   and analyzes real Rust sources and stores what it finds, under `#[instrument_performance]`,
//!   with every sink on. Its command line is in the example; the pipeline is [`job`], so that
//!   tests drive the same code.
//! - `benches/`: criterion benchmarks of the SDK's overhead and drain.
//! - `tests/`: end-to-end tests across crates.
//!
//! Modules:
//!
//! - [`corpus`] finds `.rs` files: the dependency sources Cargo unpacked under
//!   `$CARGO_HOME/registry/src`, or this workspace's own.
//! - [`ast`] measures what a parsed file contains: counts, per-function cyclomatic complexity
//!   and nesting depth, debt markers.
//! - [`job`] runs the stages on worker threads connected by bounded channels and stores the
//!   results in tables of their own in the SDK's `SQLite` file.
//!
//! ```
//! use instrument_workspace::{ast::AstStats, corpus::Corpus};
//!
//! let mut corpus = Corpus::new(10);
//! corpus.add(env!("CARGO_MANIFEST_DIR").as_ref())?;
//! let source = std::fs::read_to_string(&corpus.files[0])?;
//! let stats = AstStats::of(&syn::parse_file(&source)?);
//! assert!(stats.items > 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod ast;
pub mod corpus;
pub mod job;
