//! Compile-pass and compile-fail cases of `#[instrument_performance]`, `#[no_instrument]` and
//! `#[derive(ErrorKind)]`, run by trybuild from `tests/ui.rs`.
//!
//! `tests/pass/` holds every function shape the attribute supports, the hygiene and name
//! resolution cases, and cases that check at run time what options record;
//! `tests/fail/` holds one case per error message, each with its reviewed `.stderr`.
