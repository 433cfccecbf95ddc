//! Free functions of every visibility and qualifier keep their signature and attributes.

use instrument::instrument_performance;

#[instrument_performance]
fn private_unit() {}

/// Doc comments stay on the function.
#[instrument_performance]
pub fn public_value(a: u32, b: u32) -> u32 {
    a + b
}

#[instrument_performance]
pub(crate) fn crate_visible(text: &str) -> usize {
    if text.is_empty() {
        return 0;
    }
    text.len()
}

#[instrument_performance]
#[must_use]
#[inline]
fn with_other_attributes(x: u8) -> u8 {
    x.wrapping_mul(2)
}

#[instrument_performance]
fn explicit_unit() -> () {}

#[instrument_performance]
fn mutable_parameter(mut n: u64) -> u64 {
    n += 1;
    n
}

/// # Safety
/// `ptr` must be valid for reads.
#[instrument_performance]
unsafe fn read(ptr: *const u32) -> u32 {
    // SAFETY: the caller guarantees `ptr` is valid.
    unsafe { *ptr }
}

#[instrument_performance]
extern "C" fn c_abi(x: i32) -> i32 {
    x - 1
}

#[instrument_performance]
fn never_returns() -> ! {
    panic!("never called")
}

// The closure's output type must not be left to inference when the body always diverges.
#[instrument_performance]
fn always_panics() {
    panic!("never called")
}

#[instrument_performance]
fn always_panics_explicit_unit() -> () {
    unimplemented!()
}

#[instrument_performance]
fn raw_identifier(r#type: u8) -> u8 {
    r#type
}

#[instrument_performance]
fn with_inner_attribute() -> u8 {
    #![allow(clippy::let_and_return)]
    let x = 1;
    x
}

#[instrument_performance]
fn returns_a_closure(k: u32) -> Box<dyn Fn(u32) -> u32> {
    Box::new(move |x| x * k)
}

#[instrument_performance]
fn with_items_inside() -> u8 {
    const ONE: u8 = 1;
    fn helper() -> u8 {
        ONE
    }
    helper()
}

fn main() {
    private_unit();
    assert_eq!(public_value(1, 2), 3);
    assert_eq!(crate_visible(""), 0);
    assert_eq!(crate_visible("abc"), 3);
    assert_eq!(with_other_attributes(2), 4);
    explicit_unit();
    assert_eq!(mutable_parameter(1), 2);
    let x = 7;
    // SAFETY: `&x` is valid for reads.
    assert_eq!(unsafe { read(&x) }, 7);
    assert_eq!(c_abi(1), 0);
    if std::env::args().count() > 1000 {
        never_returns();
    }
    if std::env::args().count() > 1000 {
        always_panics();
        always_panics_explicit_unit();
    }
    assert_eq!(raw_identifier(3), 3);
    assert_eq!(with_inner_attribute(), 1);
    assert_eq!(returns_a_closure(2)(3), 6);
    assert_eq!(with_items_inside(), 1);
}
