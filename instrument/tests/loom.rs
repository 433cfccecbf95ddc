//! Loom models of the crate's custom synchronisation (`src/signal.rs`, `src/retire.rs`), compiled
//! from the same source against loom's atomics:
//!
//! ```text
//! RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p instrument --no-default-features --test loom --release
//! ```
//!
//! `.ci/test` runs this; the models are kept small enough to be explored exhaustively in well
//! under a second.
#![cfg(loom)]
#![allow(dead_code, unreachable_pub, missing_docs)]

mod sync {
    pub(crate) use loom::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
}

#[path = "../src/signal.rs"]
mod signal;

#[path = "../src/retire.rs"]
mod retire;
