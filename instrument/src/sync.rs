//! The atomics the custom protocols in `signal.rs` and `retire.rs` use. `tests/loom.rs` compiles
//! both against a loom version of this module, so the protocols are model-checked as written.

pub(crate) use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
