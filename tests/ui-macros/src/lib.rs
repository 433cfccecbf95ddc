//! Compile-pass and compile-fail cases of `#[instrument_performance]`, `#[no_instrument]` and
//! `#[derive(ErrorKind)]`, run by trybuild from `tests/ui.rs`.
//!
//! `tests/pass/` holds every function shape the attribute supports and the hygiene cases;
//! `tests/fail/` holds one case per error message, each with its reviewed `.stderr`.
