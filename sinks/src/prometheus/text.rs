//! The lexical rules of the two exposition formats: name checks, escaping, and number
//! formatting into a byte buffer without allocating.

use std::fmt::Write as _;

/// Prometheus metric name rule: `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub(super) fn is_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    bytes
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && bytes.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

/// Appends a label value, escaped: `\` as `\\`, `"` as `\"`, a newline as `\n` (the same in
/// both formats).
pub(super) fn escape_label_value(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// A `# HELP` text, escaped for the Prometheus text format (`\\` and `\n`) or for `OpenMetrics`
/// (also `\"`).
pub(super) fn escape_help(text: &str, openmetrics: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' if openmetrics => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    out
}

/// Renders `name="value"` pairs separated by commas, without braces.
pub(super) fn label_set<'a>(labels: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::new();
    for (name, value) in labels {
        if !out.is_empty() {
            out.push(',');
        }
        out.push_str(name);
        out.push_str("=\"");
        escape_label_value(&mut out, value);
        out.push('"');
    }
    out
}

/// Appends an unsigned integer.
#[inline]
pub(super) fn push_u64(out: &mut Vec<u8>, value: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
}

/// Appends `nanos` nanoseconds as seconds, exactly: `0.000734`, `12`, `1.5`.
#[inline]
pub(super) fn push_seconds(out: &mut Vec<u8>, nanos: u128) {
    let secs = nanos / 1_000_000_000;
    let frac = (nanos % 1_000_000_000) as u32;
    let mut buffer = itoa::Buffer::new();
    out.extend_from_slice(buffer.format(secs).as_bytes());
    if frac != 0 {
        let mut digits = [b'0'; 9];
        let mut rest = frac;
        for d in digits.iter_mut().rev() {
            *d = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        let len = 9 - digits.iter().rev().take_while(|&&d| d == b'0').count();
        out.push(b'.');
        out.extend_from_slice(&digits[..len]);
    }
}

/// Appends a float as both formats spell it: `NaN`, `+Inf`, `-Inf`, or the shortest decimal
/// that reads back as the same value.
pub(super) fn push_f64(out: &mut Vec<u8>, value: f64) {
    if value.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if value.is_infinite() {
        out.extend_from_slice(if value > 0.0 { b"+Inf" } else { b"-Inf" });
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        // Integral values print without the fraction, as Prometheus' own clients do.
        let mut s = String::new();
        let _ = write!(s, "{value:.0}");
        out.extend_from_slice(s.as_bytes());
    } else {
        let mut s = String::new();
        let _ = write!(s, "{value}");
        out.extend_from_slice(s.as_bytes());
    }
}

/// A float as text, as [`push_f64`] writes it.
#[cfg(test)]
fn f64_string(value: f64) -> String {
    let mut out = Vec::new();
    push_f64(&mut out, value);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seconds(nanos: u128) -> String {
        let mut out = Vec::new();
        push_seconds(&mut out, nanos);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn seconds_are_exact_decimals() {
        assert_eq!(seconds(0), "0");
        assert_eq!(seconds(1), "0.000000001");
        assert_eq!(seconds(734_000), "0.000734");
        assert_eq!(seconds(1_500_000_000), "1.5");
        assert_eq!(seconds(12_000_000_000), "12");
        assert_eq!(seconds(u128::from(u64::MAX)), "18446744073.709551615");
    }

    #[test]
    fn floats_spell_special_values_the_prometheus_way() {
        assert_eq!(f64_string(f64::NAN), "NaN");
        assert_eq!(f64_string(f64::INFINITY), "+Inf");
        assert_eq!(f64_string(f64::NEG_INFINITY), "-Inf");
        assert_eq!(f64_string(3.0), "3");
        assert_eq!(f64_string(-2.5), "-2.5");
        assert_eq!(f64_string(0.000_001), "0.000001");
        let round_trip: f64 = f64_string(1e300).parse().unwrap();
        assert_eq!(round_trip.to_bits(), 1e300f64.to_bits());
    }

    #[test]
    fn label_values_and_help_are_escaped() {
        assert_eq!(
            label_set([("path", "C:\\dir\\\"x\"\nnext"), ("empty", "")]),
            r#"path="C:\\dir\\\"x\"\nnext",empty="""#
        );
        assert_eq!(escape_help("a \"b\" \\ c\nd", false), "a \"b\" \\\\ c\\nd");
        assert_eq!(
            escape_help("a \"b\" \\ c\nd", true),
            "a \\\"b\\\" \\\\ c\\nd"
        );
    }

    #[test]
    fn metric_names() {
        assert!(is_metric_name("instrument"));
        assert!(is_metric_name("ns:sub_1"));
        assert!(!is_metric_name("1x"));
        assert!(!is_metric_name("a-b"));
        assert!(!is_metric_name(""));
        assert!(!is_metric_name("é"));
    }
}
