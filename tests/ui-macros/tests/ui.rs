//! Compile-pass and compile-fail cases of the `instrument` macros.
//!
//! Refresh the `.stderr` files with `TRYBUILD=overwrite cargo test -p instrument-ui-macros` and
//! review the diff: each error must underline the offending token.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/pass/*.rs");
    cases.compile_fail("tests/fail/*.rs");
}
