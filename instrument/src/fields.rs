//! Captured argument values of one call, formatted on the hot path without allocating when they
//! are short.
//!
//! `capture(..)` formats the arguments before the body runs (the body may move them), on every
//! timed call, although only some calls become events. Formatting into a `String` cost an
//! allocation on the calling thread and a free on the drain's; up to [`INLINE`] bytes now stay
//! in place, in the call's guard and then in its detail slot, and only the drain allocates, for
//! the calls that become events.

use std::fmt::{self, Write as _};

/// Bytes of formatted text kept without allocating.
pub(crate) const INLINE: usize = 46;

/// Formatted `name=value` pairs of one call. Built by `#[instrument_performance(capture(..))]`.
#[doc(hidden)]
#[derive(Clone, Default)]
pub struct Fields(Repr);

#[derive(Clone, Default)]
enum Repr {
    #[default]
    Empty,
    /// Whole `str` pieces appended in order, so the bytes are always UTF-8.
    Inline {
        len: u8,
        bytes: [u8; INLINE],
    },
    Heap(String),
}

impl Fields {
    /// Formats `args`: `Fields::format(format_args!("a={:?} b={}", a, b))`.
    #[must_use]
    pub fn format(args: fmt::Arguments<'_>) -> Fields {
        let mut fields = Fields::default();
        match args.as_str() {
            Some(text) => {
                let _ = fields.write_str(text);
            }
            None => {
                // Writing to memory cannot fail; a `Debug`/`Display` impl that reports an
                // error leaves what it wrote so far.
                let _ = fields.write_fmt(args);
            }
        }
        fields
    }

    /// Whether nothing was captured.
    #[inline]
    pub(crate) fn is_empty(&self) -> bool {
        match &self.0 {
            Repr::Empty => true,
            Repr::Inline { len, .. } => *len == 0,
            Repr::Heap(text) => text.is_empty(),
        }
    }

    /// The formatted text; `None` when nothing was captured.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match &self.0 {
            Repr::Empty => None,
            Repr::Inline { len, bytes } => std::str::from_utf8(&bytes[..usize::from(*len)]).ok(),
            Repr::Heap(text) => Some(text),
        }
    }

    /// The formatted text as an owned string, for an event; `None` when nothing was captured.
    pub(crate) fn into_boxed_str(self) -> Option<Box<str>> {
        match self.0 {
            Repr::Heap(text) => Some(text.into_boxed_str()),
            _ => self.as_str().map(Box::from),
        }
    }
}

impl fmt::Write for Fields {
    fn write_str(&mut self, piece: &str) -> fmt::Result {
        if let Repr::Empty = self.0 {
            // Filled in place: building the array elsewhere and moving it in would load wide
            // words over bytes just stored one at a time, which stalls until the stores retire.
            self.0 = Repr::Inline {
                len: 0,
                bytes: [0; INLINE],
            };
        }
        match &mut self.0 {
            Repr::Heap(text) => text.push_str(piece),
            Repr::Inline { len, bytes } if usize::from(*len) + piece.len() <= INLINE => {
                let start = usize::from(*len);
                bytes[start..start + piece.len()].copy_from_slice(piece.as_bytes());
                *len += piece.len() as u8;
            }
            _ => {
                let mut text = String::with_capacity(2 * INLINE + piece.len());
                text.push_str(self.as_str().unwrap_or_default());
                text.push_str(piece);
                self.0 = Repr::Heap(text);
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Fields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_stays_inline_and_long_text_moves_to_the_heap() {
        let short = Fields::format(format_args!("id={} name={:?}", 7, "a"));
        assert!(matches!(short.0, Repr::Inline { .. }));
        assert_eq!(short.as_str(), Some("id=7 name=\"a\""));

        let exactly = "x".repeat(INLINE);
        let full = Fields::format(format_args!("{exactly}"));
        assert!(matches!(full.0, Repr::Inline { .. }));
        assert_eq!(full.as_str(), Some(exactly.as_str()));

        let long = format!("{}é", "y".repeat(INLINE - 1));
        let spilled = Fields::format(format_args!("a={} b={long}", 1));
        assert!(matches!(spilled.0, Repr::Heap(_)));
        assert_eq!(spilled.as_str(), Some(format!("a=1 b={long}").as_str()));
        assert_eq!(
            spilled.into_boxed_str().as_deref(),
            Some(format!("a=1 b={long}").as_str())
        );
    }

    #[test]
    fn multi_byte_text_is_never_split() {
        // 45 ASCII bytes, then a 2-byte character that does not fit in the last inline byte.
        let text = format!("{}é", "z".repeat(INLINE - 1));
        let fields = Fields::format(format_args!("{}{}", &text[..INLINE - 1], "é"));
        assert_eq!(fields.as_str(), Some(text.as_str()));
    }

    #[test]
    fn nothing_captured_reads_as_none() {
        assert_eq!(Fields::default().as_str(), None);
        assert!(Fields::default().is_empty());
        assert_eq!(Fields::default().into_boxed_str(), None);
        assert_eq!(
            Fields::format(format_args!("static")).as_str(),
            Some("static")
        );
    }
}
