//! A serde `Serializer` writing compact JSON straight into a `Vec<u8>`: the same bytes
//! `serde_json::to_writer` writes (tests compare the two), for less work per line.
//!
//! The lines' `Serialize` impls make many small calls (fifteen keys, short values), and
//! `serde_json`'s serializer pays for each: an `io::Write` call per piece and a byte-by-byte
//! escape scan per string. This one appends to the buffer directly and checks a string for
//! bytes that need escaping in one branch-free pass, copying it whole when there are none, which
//! is nearly always; the names of struct fields and unit variants, fixed words that never need
//! escaping, are copied without looking. Floats are left to `serde_json` (its shortest
//! round-trip form). It writes only the sink's own line types.

use std::fmt::{self, Write as _};

use serde::ser::{self, Impossible, Serialize};

/// Why serialization failed: only what a `Serialize` impl reports, or a map key that is not a
/// string or number.
#[derive(Debug)]
pub(crate) struct Error(String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Error(msg.to_string())
    }
}

/// Appends the JSON of `value` to `out`; on error, `out` may hold part of it.
pub(crate) fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) -> Result<(), Error> {
    value.serialize(&mut Json { out })
}

/// Whether `bytes` has a byte JSON requires escaped: `"`, `\` or a control character.
#[inline]
fn needs_escape(bytes: &[u8]) -> bool {
    // No early exit, so the loop vectorizes.
    bytes.iter().fold(0u8, |any, &b| {
        any | u8::from(b < 0x20) | u8::from(b == b'"') | u8::from(b == b'\\')
    }) != 0
}

/// Appends a struct field's or unit variant's name as a JSON string, as it is. Such names are
/// Rust identifiers or the fixed lower-case words of the lines (this serializer writes only the
/// sink's own types), which never need escaping; a debug build checks.
#[inline]
fn write_name(out: &mut Vec<u8>, name: &'static str) {
    debug_assert!(
        !needs_escape(name.as_bytes()),
        "a field or variant name that needs escaping: {name:?}"
    );
    out.reserve(name.len() + 2);
    out.push(b'"');
    out.extend_from_slice(name.as_bytes());
    out.push(b'"');
}

/// Appends `text` as a JSON string, escaped as `serde_json` escapes it.
#[inline]
pub(crate) fn write_str(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    if needs_escape(bytes) {
        write_escaped(out, bytes);
    } else {
        out.extend_from_slice(bytes);
    }
    out.push(b'"');
}

#[cold]
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut run = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..0x20 => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(b >> 4)],
                HEX[usize::from(b & 0xf)],
            ],
            _ => continue,
        };
        out.extend_from_slice(&bytes[run..i]);
        out.extend_from_slice(escape);
        run = i + 1;
    }
    out.extend_from_slice(&bytes[run..]);
}

fn write_u64(out: &mut Vec<u8>, value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = value;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

fn write_i64(out: &mut Vec<u8>, value: i64) {
    if value < 0 {
        out.push(b'-');
    }
    write_u64(out, value.unsigned_abs());
}

/// Escapes what `Display` writes, piece by piece.
struct Escaping<'a>(&'a mut Vec<u8>);

impl fmt::Write for Escaping<'_> {
    fn write_str(&mut self, piece: &str) -> fmt::Result {
        if needs_escape(piece.as_bytes()) {
            write_escaped(self.0, piece.as_bytes());
        } else {
            self.0.extend_from_slice(piece.as_bytes());
        }
        Ok(())
    }
}

pub(crate) struct Json<'a> {
    out: &'a mut Vec<u8>,
}

/// An array, object or the inside of an enum variant being written.
pub(crate) struct Compound<'s, 'a> {
    json: &'s mut Json<'a>,
    first: bool,
    /// Closing bytes: `]`, `}`, or those plus the `}` of a variant's wrapping object.
    close: &'static [u8],
}

impl Compound<'_, '_> {
    fn comma(&mut self) {
        if self.first {
            self.first = false;
        } else {
            self.json.out.push(b',');
        }
    }

    fn end(self) {
        self.json.out.extend_from_slice(self.close);
    }
}

impl<'s, 'a> Json<'a> {
    fn open(&'s mut self, open: &[u8], close: &'static [u8]) -> Compound<'s, 'a> {
        self.out.extend_from_slice(open);
        Compound {
            json: self,
            first: true,
            close,
        }
    }

    /// `{"variant":`, the start of an enum variant with data.
    fn variant(&mut self, variant: &str) {
        self.out.push(b'{');
        write_str(self.out, variant);
        self.out.push(b':');
    }

    fn float<F: Serialize>(&mut self, value: F) -> Result<(), Error> {
        serde_json::to_writer(&mut *self.out, &value).map_err(|e| Error(e.to_string()))
    }
}

impl<'s, 'a> ser::Serializer for &'s mut Json<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'s, 'a>;
    type SerializeTuple = Compound<'s, 'a>;
    type SerializeTupleStruct = Compound<'s, 'a>;
    type SerializeTupleVariant = Compound<'s, 'a>;
    type SerializeMap = Compound<'s, 'a>;
    type SerializeStruct = Compound<'s, 'a>;
    type SerializeStructVariant = Compound<'s, 'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out
            .extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.serialize_i64(i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        write_i64(self.out, v);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), Error> {
        let _ = write!(Escaping(self.out), "{v}");
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.serialize_u64(u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        write_u64(self.out, v);
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), Error> {
        let _ = write!(Escaping(self.out), "{v}");
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.float(v)
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.float(v)
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        write_str(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        write_str(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        let mut seq = self.open(b"[", b"]");
        for &b in v {
            seq.comma();
            write_u64(seq.json.out, u64::from(b));
        }
        seq.end();
        Ok(())
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.serialize_none()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        write_name(self.out, variant);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.variant(variant);
        value.serialize(&mut *self)?;
        self.out.push(b'}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'s, 'a>, Error> {
        Ok(self.open(b"[", b"]"))
    }
    fn serialize_tuple(self, _: usize) -> Result<Compound<'s, 'a>, Error> {
        Ok(self.open(b"[", b"]"))
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Compound<'s, 'a>, Error> {
        Ok(self.open(b"[", b"]"))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'s, 'a>, Error> {
        self.variant(variant);
        Ok(self.open(b"[", b"]}"))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'s, 'a>, Error> {
        Ok(self.open(b"{", b"}"))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'s, 'a>, Error> {
        Ok(self.open(b"{", b"}"))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'s, 'a>, Error> {
        self.variant(variant);
        Ok(self.open(b"{", b"}}"))
    }
    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<(), Error> {
        self.out.push(b'"');
        let _ = write!(Escaping(self.out), "{value}");
        self.out.push(b'"');
        Ok(())
    }
}

impl ser::SerializeSeq for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.comma();
        value.serialize(&mut *self.json)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self);
        Ok(())
    }
}

impl ser::SerializeTuple for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self);
        Ok(())
    }
}

impl ser::SerializeTupleStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self);
        Ok(())
    }
}

impl ser::SerializeTupleVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self);
        Ok(())
    }
}

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.comma();
        key.serialize(KeySerializer(self.json.out))?;
        self.json.out.push(b':');
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(&mut *self.json)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self);
        Ok(())
    }
}

impl ser::SerializeStruct for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.comma();
        write_name(self.json.out, key);
        self.json.out.push(b':');
        value.serialize(&mut *self.json)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self);
        Ok(())
    }
}

impl ser::SerializeStructVariant for Compound<'_, '_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        ser::SerializeMap::serialize_entry(self, key, value)
    }
    fn end(self) -> Result<(), Error> {
        Compound::end(self);
        Ok(())
    }
}

/// Writes a map key: a string, or a number or `bool` as a string, as `serde_json` does.
struct KeySerializer<'a>(&'a mut Vec<u8>);

fn key_error() -> Error {
    Error("a map key must be a string, a number or a bool".into())
}

impl KeySerializer<'_> {
    fn quoted(self, text: fmt::Arguments<'_>) {
        self.0.push(b'"');
        let _ = Escaping(self.0).write_fmt(text);
        self.0.push(b'"');
    }
}

impl ser::Serializer for KeySerializer<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        write_str(self.0, v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        write_str(self.0, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }
    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.quoted(format_args!("{v}"));
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Error> {
        self.quoted(format_args!("{v}"));
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<(), Error> {
        self.quoted(format_args!("{v}"));
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<(), Error> {
        self.quoted(format_args!("{v}"));
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), Error> {
        self.quoted(format_args!("{v}"));
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), Error> {
        self.quoted(format_args!("{v}"));
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), Error> {
        self.quoted(format_args!("{v}"));
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<(), Error> {
        self.quoted(format_args!("{v}"));
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), Error> {
        self.quoted(format_args!("{v}"));
        Ok(())
    }
    fn serialize_f32(self, _: f32) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_f64(self, _: f64) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_none(self) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_unit(self) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), Error> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        Err(key_error())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Impossible<(), Error>, Error> {
        Err(key_error())
    }
    fn serialize_tuple(self, _: usize) -> Result<Impossible<(), Error>, Error> {
        Err(key_error())
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Impossible<(), Error>, Error> {
        Err(key_error())
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Impossible<(), Error>, Error> {
        Err(key_error())
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Impossible<(), Error>, Error> {
        Err(key_error())
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Impossible<(), Error>, Error> {
        Err(key_error())
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Impossible<(), Error>, Error> {
        Err(key_error())
    }
    fn collect_str<T: fmt::Display + ?Sized>(self, value: &T) -> Result<(), Error> {
        self.quoted(format_args!("{value}"));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn ours<T: Serialize + ?Sized>(value: &T) -> String {
        let mut out = Vec::new();
        write(&mut out, value).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn same<T: Serialize + ?Sized>(value: &T) {
        assert_eq!(ours(value), serde_json::to_string(value).unwrap());
    }

    #[derive(serde::Serialize)]
    enum Shape {
        Unit,
        New(u8),
        Tuple(i8, String),
        Struct { a: Option<f32>, b: Vec<bool> },
    }

    #[derive(serde::Serialize)]
    struct Wrapper(u16);

    #[test]
    fn writes_what_serde_json_writes() {
        same(&[
            u64::MAX.to_string(),
            i64::MIN.to_string(),
            "\u{0}\u{1f}\u{7f}\"\\/\u{8}\u{c}\n\r\t\u{2028}\u{fffd}é".to_owned(),
        ]);
        same(&(u64::MAX, i64::MIN, -1i8, 0u8, i128::MIN, u128::MAX));
        same(&(0.1f64, 1e300f64, -0.0f64, 0.1f32, 1.0f64, f64::NAN));
        same(&(true, false, 'x', '\n', (), None::<u8>, Some(3)));
        same(&Wrapper(7));
        same(&serde_bytes_like());
        same(&[Shape::Unit, Shape::New(1), Shape::Tuple(-2, "t\"".into())]);
        same(&Shape::Struct {
            a: Some(0.5),
            b: vec![true, false],
        });
        let mut map = BTreeMap::new();
        map.insert("k\"ey", vec![1, 2]);
        map.insert("", vec![]);
        same(&map);
        let mut numbered = BTreeMap::new();
        numbered.insert(-3i32, "n");
        numbered.insert(4, "m");
        same(&numbered);
        same(&instrument::FieldValue::F64(f64::INFINITY));
        same(&format_args!("{}", "a\u{1}b"));
    }

    fn serde_bytes_like() -> Vec<u8> {
        vec![0, 255, 10]
    }

    #[test]
    fn every_byte_that_needs_escaping_is_found_wherever_it_is() {
        for len in 0..20 {
            let clean = "a\u{7f}é€".repeat(len);
            assert!(!needs_escape(clean.as_bytes()), "{clean:?}");
            for at in 0..clean.len() {
                for bad in [0u8, 0x1f, b'\n', b'"', b'\\'] {
                    let mut bytes = clean.as_bytes().to_vec();
                    bytes[at] = bad;
                    assert!(needs_escape(&bytes), "{bytes:?}");
                }
            }
        }
    }

    proptest! {
        #[test]
        fn strings_are_escaped_as_serde_json_escapes_them(text in any::<String>(), raw in proptest::collection::vec(0u8..0x80, 0..64)) {
            prop_assert_eq!(ours(&text), serde_json::to_string(&text).unwrap());
            let ascii = String::from_utf8(raw).unwrap();
            prop_assert_eq!(ours(&ascii), serde_json::to_string(&ascii).unwrap());
        }

        #[test]
        fn numbers_are_written_as_serde_json_writes_them(u in any::<u64>(), i in any::<i64>(), f in any::<f64>()) {
            prop_assert_eq!(ours(&(u, i, f)), serde_json::to_string(&(u, i, f)).unwrap());
        }
    }
}
