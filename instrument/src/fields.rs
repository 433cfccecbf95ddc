//! Captured argument values of one call: kept raw on the hot path, turned into key/value pairs
//! on the drain thread.
//!
//! `capture(..)` records the arguments before the body runs (the body may move them), on every
//! timed call, although only some calls become events. Formatting them there with `core::fmt`
//! cost more than the rest of the call. So values of common types (integers, floats, `bool`,
//! `char`, strings) are copied as they are, with a one-byte type tag, and only the drain turns
//! them into [`FieldValue`]s, for the calls that become events. Values of other types are
//! formatted in place with their `Debug` (or, for `%name`, `Display`) implementation. Which of
//! the two a value gets is decided at compile time by autoref specialisation on its type (see
//! [`capture`]); a generic parameter is formatted.
//!
//! # Encoding
//! The values of one call are a byte string of entries in capture order. Each entry is a tag
//! byte followed by its payload: 8 little-endian bytes for `i64`/`u64`/`f64`, 4 for `f32` and
//! `char`, 1 for `bool`, and for a string or formatted text its UTF-8 bytes followed by
//! [`END`] (`0xFF`, a byte UTF-8 never contains, so text can be appended piece by piece without
//! knowing its length first). Up to [`INLINE`] bytes stay in place, in the call's guard and then
//! in its detail slot; longer ones move to the heap. The names come from a per-callsite
//! [`FieldNames`] static, so a call stores only a pointer to them.

use std::fmt::{self, Write as _};

/// Bytes of encoded values kept without allocating: what is left of 48 bytes after the names
/// pointer, the length and the variant tag (a [`Detail`](crate::record::Detail) is 64 bytes).
pub(crate) const INLINE: usize = 38;

/// Ends a string or formatted text; never part of UTF-8.
const END: u8 = 0xFF;

const TAG_I64: u8 = 1;
const TAG_U64: u8 = 2;
const TAG_F64: u8 = 3;
const TAG_F32: u8 = 4;
const TAG_BOOL: u8 = 5;
const TAG_CHAR: u8 = 6;
const TAG_STR: u8 = 7;
const TAG_TEXT: u8 = 8;

/// One captured argument value, as a sink receives it in [`Event::fields`](crate::Event::fields).
///
/// Integers, floats, `bool`, `char` and strings (`&str`, `String`, `Box<str>`, `Cow<str>`, and
/// references to them) arrive as their value; any other type as the text its `Debug`
/// implementation (or `Display`, for arguments captured as `%name`) wrote. Its `Display` writes
/// the value the way a `name=value` log line would.
///
/// ```
/// use instrument::FieldValue;
///
/// assert_eq!(FieldValue::U64(7).to_string(), "7");
/// assert_eq!(FieldValue::F64(1.0).to_string(), "1.0");
/// assert_eq!(FieldValue::Str("ann".into()).to_string(), "ann");
/// assert_eq!(FieldValue::Formatted("Some(3)".into()).to_string(), "Some(3)");
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum FieldValue {
    /// A signed integer (`i8` to `i64`, `isize`).
    I64(i64),
    /// An unsigned integer (`u8` to `u64`, `usize`).
    U64(u64),
    /// A float. An `f32` arrives as the `f64` with its shortest decimal form (`0.1f32` as `0.1`).
    F64(f64),
    /// A `bool`.
    Bool(bool),
    /// A string or a `char`, as it is (not quoted or escaped, even when captured with `Debug`).
    Str(Box<str>),
    /// The text that the value's `Debug` (or, for `%name`, `Display`) implementation wrote.
    Formatted(Box<str>),
}

impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValue::I64(v) => fmt::Display::fmt(v, f),
            FieldValue::U64(v) => fmt::Display::fmt(v, f),
            // `Debug` keeps the `.0` of whole numbers and writes exponents for extremes.
            FieldValue::F64(v) => fmt::Debug::fmt(v, f),
            FieldValue::Bool(v) => fmt::Display::fmt(v, f),
            FieldValue::Str(text) | FieldValue::Formatted(text) => f.write_str(text),
        }
    }
}

/// The names of a callsite's captured arguments, in capture order. One `static` per callsite,
/// declared by `#[instrument_performance(capture(..))]`.
#[doc(hidden)]
#[derive(Debug)]
pub struct FieldNames(&'static [&'static str]);

impl FieldNames {
    /// The names `names`.
    #[must_use]
    pub const fn new(names: &'static [&'static str]) -> FieldNames {
        FieldNames(names)
    }
}

/// Captured argument values of one call. Built by `#[instrument_performance(capture(..))]`.
#[doc(hidden)]
#[derive(Clone, Default)]
pub struct Fields(Repr);

#[derive(Clone, Default)]
enum Repr {
    /// Nothing captured: what every call without `capture` carries, so it is one byte to write.
    #[default]
    Empty,
    Inline {
        names: &'static FieldNames,
        len: u8,
        bytes: [u8; INLINE],
    },
    Heap {
        names: &'static FieldNames,
        bytes: Vec<u8>,
    },
    /// Values decoded already, with their names: what a bridge from other instrumentation hands
    /// over ([`Timer::set_fields`](crate::Timer::set_fields)), whose field names and types are
    /// known only at run time. Never empty.
    Pairs(Vec<(&'static str, FieldValue)>),
}

const _: () = assert!(std::mem::size_of::<Fields>() == 48);

impl Fields {
    /// No values yet, for the arguments named by `names`.
    #[inline(always)]
    #[must_use]
    pub fn new(names: &'static FieldNames) -> Fields {
        Fields(Repr::Inline {
            names,
            len: 0,
            bytes: [0; INLINE],
        })
    }

    /// Values given as name/value pairs, in that order; no values is nothing captured.
    pub(crate) fn from_pairs(pairs: Vec<(&'static str, FieldValue)>) -> Fields {
        if pairs.is_empty() {
            Fields(Repr::Empty)
        } else {
            Fields(Repr::Pairs(pairs))
        }
    }

    /// Whether nothing was captured.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        matches!(self.0, Repr::Empty)
    }

    /// The captured arguments as name/value pairs, in capture order; empty when nothing was
    /// captured. Decodes and allocates: the drain calls it for calls that become events.
    pub(crate) fn pairs(&self) -> Vec<(&'static str, FieldValue)> {
        let (names, bytes) = match &self.0 {
            Repr::Empty => return Vec::new(),
            Repr::Inline { names, len, bytes } => (names.0, &bytes[..usize::from(*len)]),
            Repr::Heap { names, bytes } => (names.0, bytes.as_slice()),
            Repr::Pairs(pairs) => return pairs.clone(),
        };
        names.iter().copied().zip(Entries(bytes)).collect()
    }

    /// Appends one entry: `tag` and `payload`.
    #[inline(always)]
    fn push(&mut self, tag: u8, payload: &[u8]) {
        if let Repr::Inline { len, bytes, .. } = &mut self.0 {
            let at = usize::from(*len);
            if at + 1 + payload.len() <= INLINE {
                bytes[at] = tag;
                bytes[at + 1..at + 1 + payload.len()].copy_from_slice(payload);
                *len = (at + 1 + payload.len()) as u8;
                return;
            }
        }
        self.push_slow(&[tag]);
        self.push_slow(payload);
    }

    /// Appends `piece` to the open entry, moving the values to the heap when they outgrow the
    /// inline bytes.
    #[inline(never)]
    fn push_slow(&mut self, piece: &[u8]) {
        match &mut self.0 {
            // Capture appends only to fields it created with `new`.
            Repr::Empty | Repr::Pairs(_) => {}
            Repr::Heap { bytes, .. } => bytes.extend_from_slice(piece),
            Repr::Inline { names, len, bytes } => {
                let (names, at) = (*names, usize::from(*len));
                if at + piece.len() <= INLINE {
                    bytes[at..at + piece.len()].copy_from_slice(piece);
                    *len = (at + piece.len()) as u8;
                } else {
                    let mut heap = Vec::with_capacity(2 * INLINE + piece.len());
                    heap.extend_from_slice(&bytes[..at]);
                    heap.extend_from_slice(piece);
                    self.0 = Repr::Heap { names, bytes: heap };
                }
            }
        }
    }

    #[inline(always)]
    fn push_i64(&mut self, value: i64) {
        self.push(TAG_I64, &value.to_le_bytes());
    }

    #[inline(always)]
    fn push_u64(&mut self, value: u64) {
        self.push(TAG_U64, &value.to_le_bytes());
    }

    #[inline(always)]
    fn push_str(&mut self, text: &str) {
        if let Repr::Inline { len, bytes, .. } = &mut self.0 {
            let at = usize::from(*len);
            if at + text.len() + 2 <= INLINE {
                bytes[at] = TAG_STR;
                bytes[at + 1..at + 1 + text.len()].copy_from_slice(text.as_bytes());
                bytes[at + 1 + text.len()] = END;
                *len = (at + text.len() + 2) as u8;
                return;
            }
        }
        self.push_slow(&[TAG_STR]);
        self.push_slow(text.as_bytes());
        self.push_slow(&[END]);
    }

    /// Formats `args` into a text entry, in place.
    #[inline(never)]
    fn push_formatted(&mut self, args: fmt::Arguments<'_>) {
        self.push_slow(&[TAG_TEXT]);
        // Writing to memory cannot fail; a `Debug`/`Display` impl that reports an error leaves
        // what it wrote so far.
        let _ = match args.as_str() {
            Some(text) => self.write_str(text),
            None => self.write_fmt(args),
        };
        self.push_slow(&[END]);
    }
}

impl fmt::Write for Fields {
    fn write_str(&mut self, piece: &str) -> fmt::Result {
        self.push_slow(piece.as_bytes());
        Ok(())
    }
}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.pairs()).finish()
    }
}

/// Reads the entries of an encoded byte string back as values.
struct Entries<'a>(&'a [u8]);

impl Entries<'_> {
    fn fixed<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (payload, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*payload)
    }

    fn text(&mut self) -> Box<str> {
        let end = self
            .0
            .iter()
            .position(|&b| b == END)
            .unwrap_or(self.0.len());
        let text = String::from_utf8_lossy(&self.0[..end]).into();
        self.0 = self.0.get(end + 1..).unwrap_or_default();
        text
    }
}

impl Iterator for Entries<'_> {
    type Item = FieldValue;

    fn next(&mut self) -> Option<FieldValue> {
        let (&tag, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(match tag {
            TAG_I64 => FieldValue::I64(i64::from_le_bytes(self.fixed()?)),
            TAG_U64 => FieldValue::U64(u64::from_le_bytes(self.fixed()?)),
            TAG_F64 => FieldValue::F64(f64::from_le_bytes(self.fixed()?)),
            TAG_F32 => {
                let value = f32::from_le_bytes(self.fixed()?);
                // The `f64` a reader would write for this `f32`: 0.1f32 is 0.1, not
                // 0.100000001490116.
                FieldValue::F64(value.to_string().parse().unwrap_or(f64::from(value)))
            }
            TAG_BOOL => FieldValue::Bool(self.fixed::<1>()?[0] != 0),
            TAG_CHAR => {
                let value = char::from_u32(u32::from_le_bytes(self.fixed()?))?;
                FieldValue::Str(value.to_string().into())
            }
            TAG_STR => FieldValue::Str(self.text()),
            TAG_TEXT => FieldValue::Formatted(self.text()),
            _ => return None,
        })
    }
}

/// Autoref-specialisation helpers the macro expands to, per captured argument `x`:
///
/// ```text
/// (&Capture(&x)).__instrument_debug_kind().push(&mut fields, &x);   // `capture(x)`
/// (&Capture(&x)).__instrument_display_kind().push(&mut fields, &x); // `capture(%x)`
/// ```
///
/// `Capture<T>` has the method by value when `T: RawValue` (then the value is copied as it is);
/// otherwise method lookup takes the next autoref step and finds the impl for `&Capture<T>`,
/// which formats. The kinds' `push` takes the value again so that a type that is neither raw
/// nor `Debug` is reported as "doesn't implement `Debug`" at the captured argument.
pub(crate) mod capture {
    use std::borrow::Cow;
    use std::fmt::{Debug, Display};

    use super::{Fields, TAG_BOOL, TAG_CHAR, TAG_F32, TAG_F64};

    /// A captured argument, borrowed.
    pub struct Capture<'a, T: ?Sized>(pub &'a T);

    /// Types whose values are copied raw into [`Fields`] and only decoded on the drain.
    pub trait RawValue {
        /// Appends this value.
        fn push_raw(&self, fields: &mut Fields);
    }

    macro_rules! raw_signed {
        ($($ty:ty),*) => {$(
            impl RawValue for $ty {
                #[inline(always)]
                fn push_raw(&self, fields: &mut Fields) {
                    fields.push_i64(i64::from(*self));
                }
            }
        )*};
    }
    macro_rules! raw_unsigned {
        ($($ty:ty),*) => {$(
            impl RawValue for $ty {
                #[inline(always)]
                fn push_raw(&self, fields: &mut Fields) {
                    fields.push_u64(u64::from(*self));
                }
            }
        )*};
    }
    raw_signed!(i8, i16, i32, i64);
    raw_unsigned!(u8, u16, u32, u64);

    impl RawValue for isize {
        #[inline(always)]
        fn push_raw(&self, fields: &mut Fields) {
            // `isize` is at most 64 bits on every supported target.
            fields.push_i64(*self as i64);
        }
    }

    impl RawValue for usize {
        #[inline(always)]
        fn push_raw(&self, fields: &mut Fields) {
            fields.push_u64(*self as u64);
        }
    }

    impl RawValue for f64 {
        #[inline(always)]
        fn push_raw(&self, fields: &mut Fields) {
            fields.push(TAG_F64, &self.to_le_bytes());
        }
    }

    impl RawValue for f32 {
        #[inline(always)]
        fn push_raw(&self, fields: &mut Fields) {
            fields.push(TAG_F32, &self.to_le_bytes());
        }
    }

    impl RawValue for bool {
        #[inline(always)]
        fn push_raw(&self, fields: &mut Fields) {
            fields.push(TAG_BOOL, &[u8::from(*self)]);
        }
    }

    impl RawValue for char {
        #[inline(always)]
        fn push_raw(&self, fields: &mut Fields) {
            fields.push(TAG_CHAR, &u32::from(*self).to_le_bytes());
        }
    }

    impl RawValue for str {
        #[inline(always)]
        fn push_raw(&self, fields: &mut Fields) {
            fields.push_str(self);
        }
    }

    impl RawValue for String {
        #[inline(always)]
        fn push_raw(&self, fields: &mut Fields) {
            fields.push_str(self);
        }
    }

    impl RawValue for Box<str> {
        #[inline(always)]
        fn push_raw(&self, fields: &mut Fields) {
            fields.push_str(self);
        }
    }

    impl RawValue for Cow<'_, str> {
        #[inline(always)]
        fn push_raw(&self, fields: &mut Fields) {
            fields.push_str(self);
        }
    }

    impl<T: RawValue + ?Sized> RawValue for &T {
        #[inline(always)]
        fn push_raw(&self, fields: &mut Fields) {
            (**self).push_raw(fields);
        }
    }

    impl<T: RawValue + ?Sized> RawValue for &mut T {
        #[inline(always)]
        fn push_raw(&self, fields: &mut Fields) {
            (**self).push_raw(fields);
        }
    }

    /// Copies a value raw.
    #[derive(Clone, Copy, Debug)]
    pub struct RawKind;

    impl RawKind {
        /// Appends `value` to `fields`.
        #[inline(always)]
        #[allow(
            clippy::unused_self,
            reason = "the kind chosen for the argument's type is the receiver"
        )]
        pub fn push<T: RawValue + ?Sized>(self, fields: &mut Fields, value: &T) {
            value.push_raw(fields);
        }
    }

    /// Formats a value with `Debug`.
    #[derive(Clone, Copy, Debug)]
    pub struct DebugKind;

    impl DebugKind {
        /// Appends `value`, formatted with `Debug`, to `fields`. A trait object rather than a
        /// generic bound, so that a type without `Debug` is reported at the argument, with no
        /// note pointing into this crate.
        #[inline(always)]
        #[allow(
            clippy::unused_self,
            reason = "the kind chosen for the argument's type is the receiver"
        )]
        pub fn push(self, fields: &mut Fields, value: &dyn Debug) {
            fields.push_formatted(format_args!("{value:?}"));
        }
    }

    /// Formats a value with `Display`.
    #[derive(Clone, Copy, Debug)]
    pub struct DisplayKind;

    impl DisplayKind {
        /// Appends `value`, formatted with `Display`, to `fields`.
        #[inline(always)]
        #[allow(
            clippy::unused_self,
            reason = "the kind chosen for the argument's type is the receiver"
        )]
        pub fn push(self, fields: &mut Fields, value: &dyn Display) {
            fields.push_formatted(format_args!("{value}"));
        }
    }

    /// Picked for raw types: `capture(x)` and `capture(%x)` alike copy the value.
    pub trait ViaRaw {
        /// How to capture a value captured with `Debug`.
        fn __instrument_debug_kind(&self) -> RawKind;
        /// How to capture a value captured with `Display`.
        fn __instrument_display_kind(&self) -> RawKind;
    }

    impl<T: RawValue + ?Sized> ViaRaw for Capture<'_, T> {
        #[inline(always)]
        fn __instrument_debug_kind(&self) -> RawKind {
            RawKind
        }
        #[inline(always)]
        fn __instrument_display_kind(&self) -> RawKind {
            RawKind
        }
    }

    /// Picked for every other type captured with `Debug`.
    pub trait ViaDebug {
        /// Format with `Debug`.
        fn __instrument_debug_kind(&self) -> DebugKind;
    }

    impl<T: ?Sized> ViaDebug for &Capture<'_, T> {
        #[inline(always)]
        fn __instrument_debug_kind(&self) -> DebugKind {
            DebugKind
        }
    }

    /// Picked for every other type captured with `Display` (`%name`).
    pub trait ViaDisplay {
        /// Format with `Display`.
        fn __instrument_display_kind(&self) -> DisplayKind;
    }

    impl<T: ?Sized> ViaDisplay for &Capture<'_, T> {
        #[inline(always)]
        fn __instrument_display_kind(&self) -> DisplayKind {
            DisplayKind
        }
    }
}

#[cfg(test)]
mod tests {
    use super::capture::{Capture, ViaDebug as _, ViaDisplay as _, ViaRaw as _};
    use super::*;

    static ONE: FieldNames = FieldNames::new(&["a"]);
    static THREE: FieldNames = FieldNames::new(&["a", "b", "c"]);

    /// What the expansion does for `capture(a, b, %c)`.
    macro_rules! captured {
        ($names:expr, $($kind:ident $value:expr),*) => {{
            let mut fields = Fields::new($names);
            $(captured!(@one fields, $kind, $value);)*
            fields
        }};
        (@one $fields:ident, debug, $value:expr) => {
            (&Capture(&$value)).__instrument_debug_kind().push(&mut $fields, &$value)
        };
        (@one $fields:ident, display, $value:expr) => {
            (&Capture(&$value)).__instrument_display_kind().push(&mut $fields, &$value)
        };
    }

    fn pairs(fields: &Fields) -> Vec<(&'static str, FieldValue)> {
        fields.pairs()
    }

    #[test]
    fn common_types_are_kept_raw_and_decoded_as_values() {
        let text = String::from("ann");
        let fields = captured!(&THREE, debug 7u64, debug -3i8, debug text);
        assert!(matches!(fields.0, Repr::Inline { .. }));
        assert_eq!(
            pairs(&fields),
            [
                ("a", FieldValue::U64(7)),
                ("b", FieldValue::I64(-3)),
                ("c", FieldValue::Str("ann".into()))
            ]
        );
        let reference: &&str = &"x";
        let fields = captured!(&THREE, debug 1.5f64, display true, debug reference);
        assert_eq!(
            pairs(&fields),
            [
                ("a", FieldValue::F64(1.5)),
                ("b", FieldValue::Bool(true)),
                ("c", FieldValue::Str("x".into()))
            ]
        );
        let fields = captured!(&THREE, debug 0.1f32, debug 'é', debug usize::MAX);
        assert_eq!(
            pairs(&fields),
            [
                ("a", FieldValue::F64(0.1)),
                ("b", FieldValue::Str("é".into())),
                ("c", FieldValue::U64(u64::MAX))
            ]
        );
    }

    struct Shown;

    impl fmt::Display for Shown {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("shown")
        }
    }

    fn generic<T: fmt::Debug>(value: T) -> Fields {
        captured!(&ONE, debug value)
    }

    #[test]
    fn other_types_are_formatted_in_place() {
        let fields = captured!(&THREE, debug Some(3), display Shown, debug [1u8, 2]);
        assert_eq!(
            pairs(&fields),
            [
                ("a", FieldValue::Formatted("Some(3)".into())),
                ("b", FieldValue::Formatted("shown".into())),
                ("c", FieldValue::Formatted("[1, 2]".into()))
            ]
        );
        // A generic parameter is formatted: its type is not known to be raw.
        assert_eq!(
            pairs(&generic(5u8)),
            [("a", FieldValue::Formatted("5".into()))]
        );
    }

    #[test]
    fn long_values_move_to_the_heap() {
        let exactly = "x".repeat(INLINE - 2);
        let fields = captured!(&ONE, debug exactly);
        assert!(matches!(fields.0, Repr::Inline { .. }));
        assert_eq!(pairs(&fields), [("a", FieldValue::Str(exactly.into()))]);

        let long = format!("{}é", "y".repeat(INLINE));
        let fields = captured!(&THREE, debug 1u32, debug long, debug Some(long.as_str()));
        assert!(matches!(fields.0, Repr::Heap { .. }));
        assert_eq!(
            pairs(&fields),
            [
                ("a", FieldValue::U64(1)),
                ("b", FieldValue::Str(long.clone().into())),
                ("c", FieldValue::Formatted(format!("Some({long:?})").into()))
            ]
        );

        // A formatted value that outgrows the inline bytes half way through.
        let fields = captured!(&THREE, debug 2i64, debug 3u64, debug vec![long.as_str(); 2]);
        assert!(matches!(fields.0, Repr::Heap { .. }));
        assert_eq!(
            pairs(&fields)[2].1,
            FieldValue::Formatted(format!("[{long:?}, {long:?}]").into())
        );
    }

    #[test]
    fn nothing_captured_reads_as_no_pairs() {
        assert!(Fields::default().is_empty());
        assert_eq!(pairs(&Fields::default()), []);
        assert!(!Fields::new(&ONE).is_empty());
        assert_eq!(
            format!("{:?}", captured!(&ONE, debug 4u8)),
            "[(\"a\", U64(4))]"
        );
    }

    #[test]
    fn pairs_given_at_run_time_read_back_as_given() {
        let given = vec![
            ("table", FieldValue::Str("files".into())),
            ("rows", FieldValue::U64(3)),
        ];
        let fields = Fields::from_pairs(given.clone());
        assert!(!fields.is_empty());
        assert_eq!(pairs(&fields), given);
        // Capture never appends to them.
        let mut fields = fields;
        fields.push_u64(9);
        assert_eq!(pairs(&fields), given);
        assert!(Fields::from_pairs(Vec::new()).is_empty());
    }

    #[test]
    fn field_values_display_like_a_log_line() {
        assert_eq!(FieldValue::I64(-1).to_string(), "-1");
        assert_eq!(FieldValue::F64(2.0).to_string(), "2.0");
        assert_eq!(FieldValue::Bool(false).to_string(), "false");
    }
}
