//! One JSON object per line: the fields of `docs/logs.md`, serialized with hand-written
//! `Serialize` impls straight into a stream's buffer (no intermediate `serde_json::Value`).
//!
//! Every string goes through `serde_json`, which escapes quotes, backslashes and every control
//! character (`\n` included), so no value can end a line early or break its JSON. Invalid UTF-8
//! never reaches here: captured values are `str`s, and the core turns bytes that are not UTF-8
//! into U+FFFD before a sink sees them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instrument::{
    CorrelationId, ErrorKindCount, FieldValue, Level, Outcome, SinkHealth, Stats, ThreadInfo,
};
use serde::Serialize;
use serde::ser::{SerializeMap, SerializeStruct, Serializer};

use super::Stream;
use super::json;

/// The last second RFC 3339 can write with a four-digit year (9999-12-31T23:59:59Z).
const LAST_SECOND: u64 = 253_402_300_799;

/// A time as written in `ts`: RFC 3339 UTC with six fractional digits,
/// `2026-11-25T10:16:53.123456Z`.
#[derive(Clone, Copy)]
pub(crate) struct Ts([u8; 27]);

impl Ts {
    /// The text.
    pub(crate) fn as_str(&self) -> &str {
        // Only ASCII digits and punctuation are ever written into it.
        std::str::from_utf8(&self.0).unwrap_or("1970-01-01T00:00:00.000000Z")
    }
}

impl Serialize for Ts {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Formats times, reusing the date and time of day of the last second formatted: lines of one
/// batch mostly share their second, so most times cost six digits.
pub(crate) struct TsCache {
    secs: u64,
    /// `YYYY-MM-DDTHH:MM:SS.` of `secs`.
    prefix: [u8; 20],
}

impl Default for TsCache {
    fn default() -> Self {
        TsCache {
            secs: 0,
            prefix: *b"1970-01-01T00:00:00.",
        }
    }
}

impl TsCache {
    /// `time`, truncated to the microsecond. Times before 1970 are written as the epoch and
    /// times after 9999 as the last microsecond of 9999: a wrong clock must not cost a line.
    pub(crate) fn format(&mut self, time: SystemTime) -> Ts {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
        let (secs, micros) = if since.as_secs() > LAST_SECOND {
            (LAST_SECOND, 999_999)
        } else {
            (since.as_secs(), since.subsec_micros())
        };
        if secs != self.secs {
            let text = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs))
                .to_string();
            // `YYYY-MM-DDTHH:MM:SSZ`: keep all but the `Z`.
            if let Some(head) = text.as_bytes().get(..19) {
                self.prefix[..19].copy_from_slice(head);
                self.prefix[19] = b'.';
                self.secs = secs;
            }
        }
        let mut out = [0u8; 27];
        out[..20].copy_from_slice(&self.prefix);
        let mut rest = micros;
        for slot in out[20..26].iter_mut().rev() {
            *slot = b'0' + (rest % 10) as u8;
            rest /= 10;
        }
        out[26] = b'Z';
        Ts(out)
    }
}

/// The audit lineage of an `audit` line.
pub(crate) struct AuditPart<'a> {
    pub(crate) sequence: u64,
    pub(crate) inputs: &'a [String],
    pub(crate) outputs: &'a [String],
    pub(crate) actor: Option<&'a str>,
    /// The previous line's `hash` (64 hex digits).
    pub(crate) prev_hash: &'a str,
}

/// One line. Fields that are `None` (or empty `labels`) are left out; `fields` is written when
/// `Some`. The `hash` of an audit line is appended after serialization (see `audit.rs`).
pub(crate) struct Line<'a, F> {
    pub(crate) ts: Ts,
    pub(crate) level: Level,
    pub(crate) stream: Stream,
    pub(crate) kind: &'static str,
    pub(crate) name: &'a str,
    pub(crate) module: Option<&'a str>,
    pub(crate) message: Option<&'a str>,
    pub(crate) duration_ns: Option<u64>,
    pub(crate) outcome: Option<Outcome>,
    pub(crate) error_kind: Option<&'a str>,
    pub(crate) reason: Option<&'static str>,
    pub(crate) labels: &'a [(&'static str, &'static str)],
    pub(crate) fields: Option<F>,
    pub(crate) thread: Option<&'a ThreadInfo>,
    pub(crate) correlation_id: Option<CorrelationId>,
    pub(crate) audit: Option<AuditPart<'a>>,
}

impl<'a> Line<'a, NoFields> {
    /// A line with the fields every line has, and nothing else.
    pub(crate) fn new(
        ts: Ts,
        level: Level,
        stream: Stream,
        kind: &'static str,
        name: &'a str,
    ) -> Self {
        Line {
            ts,
            level,
            stream,
            kind,
            name,
            module: None,
            message: None,
            duration_ns: None,
            outcome: None,
            error_kind: None,
            reason: None,
            labels: &[],
            fields: None,
            thread: None,
            correlation_id: None,
            audit: None,
        }
    }
}

impl<'a, F> Line<'a, F> {
    /// The same line with `fields`.
    pub(crate) fn with_fields<G>(self, fields: G) -> Line<'a, G> {
        Line {
            ts: self.ts,
            level: self.level,
            stream: self.stream,
            kind: self.kind,
            name: self.name,
            module: self.module,
            message: self.message,
            duration_ns: self.duration_ns,
            outcome: self.outcome,
            error_kind: self.error_kind,
            reason: self.reason,
            labels: self.labels,
            fields: Some(fields),
            thread: self.thread,
            correlation_id: self.correlation_id,
            audit: self.audit,
        }
    }
}

impl<F: Serialize> Serialize for Line<'_, F> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_struct("Line", 21)?;
        map.serialize_field("ts", &self.ts)?;
        map.serialize_field("level", &Word(self.level.as_str()))?;
        map.serialize_field("stream", &Word(self.stream.as_str()))?;
        map.serialize_field("kind", &Word(self.kind))?;
        map.serialize_field("name", self.name)?;
        if let Some(module) = self.module {
            map.serialize_field("module", module)?;
        }
        if let Some(message) = self.message {
            map.serialize_field("message", message)?;
        }
        if let Some(duration) = self.duration_ns {
            map.serialize_field("duration_ns", &duration)?;
        }
        if let Some(outcome) = self.outcome {
            map.serialize_field("outcome", &Word(outcome.as_str()))?;
        }
        if let Some(kind) = self.error_kind {
            map.serialize_field("error_kind", kind)?;
        }
        if let Some(reason) = self.reason {
            map.serialize_field("reason", &Word(reason))?;
        }
        if !self.labels.is_empty() {
            map.serialize_field("labels", &Pairs(self.labels))?;
        }
        if let Some(fields) = &self.fields {
            map.serialize_field("fields", fields)?;
        }
        if let Some(thread) = self.thread {
            map.serialize_field("thread", &Thread(thread))?;
        }
        if let Some(id) = self.correlation_id {
            map.serialize_field("correlation_id", &Hex16(id.get()))?;
        }
        if let Some(audit) = &self.audit {
            map.serialize_field("sequence", &audit.sequence)?;
            map.serialize_field("inputs", audit.inputs)?;
            map.serialize_field("outputs", audit.outputs)?;
            if let Some(actor) = audit.actor {
                map.serialize_field("actor", actor)?;
            }
            map.serialize_field("prev_hash", audit.prev_hash)?;
        }
        map.end()
    }
}

/// A fixed lower-case word (a level, stream, kind, outcome, reason): written as a string, like
/// a unit enum variant, which the line serializer copies without looking for bytes to escape.
struct Word(&'static str);

impl Serialize for Word {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_unit_variant("", 0, self.0)
    }
}

/// `fields` of a line that has none; never written (`Line::fields` is `None`).
pub(crate) enum NoFields {}

impl Serialize for NoFields {
    fn serialize<S: Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        match *self {}
    }
}

/// Name/value pairs as an object, in their order.
pub(crate) struct Pairs<'a, K, V>(pub(crate) &'a [(K, V)]);

impl<K: AsRef<str>, V: Serialize> Serialize for Pairs<'_, K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (key, value) in self.0 {
            map.serialize_entry(key.as_ref(), value)?;
        }
        map.end()
    }
}

struct Thread<'a>(&'a ThreadInfo);

impl Serialize for Thread<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_struct("Thread", 2)?;
        map.serialize_field("id", &self.0.id)?;
        if let Some(name) = &self.0.name {
            map.serialize_field("name", &**name)?;
        }
        map.end()
    }
}

/// `fields` of a `drop` line.
pub(crate) struct DropFields {
    pub(crate) dropped: u64,
    pub(crate) since: Ts,
    pub(crate) until: Ts,
}

impl Serialize for DropFields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_struct("DropFields", 3)?;
        map.serialize_field("dropped", &self.dropped)?;
        map.serialize_field("since", &self.since)?;
        map.serialize_field("until", &self.until)?;
        map.end()
    }
}

fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// `fields` of an `aggregate` line: one window of one callsite and outcome.
pub(crate) struct AggregateFields<'a> {
    pub(crate) window_start: Ts,
    pub(crate) window_end: Ts,
    pub(crate) stats: &'a Stats,
    pub(crate) error_kinds: &'a [ErrorKindCount],
}

impl Serialize for AggregateFields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Kinds<'a>(&'a [ErrorKindCount]);
        impl Serialize for Kinds<'_> {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(
                    self.0
                        .iter()
                        .filter(|k| k.window > 0)
                        .map(|k| (k.kind, k.window)),
                )
            }
        }
        let w = self.stats;
        let mut map = s.serialize_struct("AggregateFields", 13)?;
        map.serialize_field("window_start", &self.window_start)?;
        map.serialize_field("window_end", &self.window_end)?;
        map.serialize_field("count", &w.count)?;
        map.serialize_field("timed", &w.timed)?;
        map.serialize_field("dropped", &w.dropped)?;
        map.serialize_field("sum_ns", &nanos(w.sum))?;
        map.serialize_field("min_ns", &nanos(w.min))?;
        map.serialize_field("max_ns", &nanos(w.max))?;
        map.serialize_field("p50_ns", &nanos(w.p50))?;
        map.serialize_field("p90_ns", &nanos(w.p90))?;
        map.serialize_field("p99_ns", &nanos(w.p99))?;
        map.serialize_field("p999_ns", &nanos(w.p999))?;
        if self.error_kinds.iter().any(|k| k.window > 0) {
            map.serialize_field("error_kinds", &Kinds(self.error_kinds))?;
        }
        map.end()
    }
}

/// `fields` of a `counter` line.
pub(crate) struct CounterFields {
    pub(crate) window_start: Ts,
    pub(crate) window_end: Ts,
    pub(crate) window: u64,
    pub(crate) total: u64,
}

impl Serialize for CounterFields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_struct("CounterFields", 4)?;
        map.serialize_field("window_start", &self.window_start)?;
        map.serialize_field("window_end", &self.window_end)?;
        map.serialize_field("window", &self.window)?;
        map.serialize_field("total", &self.total)?;
        map.end()
    }
}

/// `fields` of a `gauge` line: the value, a number when finite, else `"NaN"`, `"inf"` or
/// `"-inf"` (as `docs/data-types.md` writes floats).
pub(crate) struct GaugeFields(pub(crate) f64);

impl Serialize for GaugeFields {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_struct("GaugeFields", 1)?;
        map.serialize_field("value", &FieldValue::F64(self.0))?;
        map.end()
    }
}

/// `fields` of the `start` line.
pub(crate) struct StartFields<'a> {
    pub(crate) pid: u32,
    pub(crate) hostname: Option<&'a str>,
    pub(crate) pipeline_start: Ts,
    pub(crate) window: Duration,
    pub(crate) tick: Duration,
}

impl Serialize for StartFields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_struct("StartFields", 5)?;
        map.serialize_field("pid", &self.pid)?;
        if let Some(host) = self.hostname {
            map.serialize_field("hostname", host)?;
        }
        map.serialize_field("pipeline_start", &self.pipeline_start)?;
        map.serialize_field("window_ns", &nanos(self.window))?;
        map.serialize_field("tick_ns", &nanos(self.tick))?;
        map.end()
    }
}

/// `fields` of a `sink` line: a sink's status as the pipeline saw it.
pub(crate) struct SinkFields<'a> {
    pub(crate) status: &'a instrument::SinkStatus,
    pub(crate) new_errors: u64,
}

impl Serialize for SinkFields<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let st = self.status;
        let (health, message) = match &st.health {
            SinkHealth::Degraded(m) => ("degraded", Some(m.as_str())),
            SinkHealth::Unhealthy(m) => ("unhealthy", Some(m.as_str())),
            _ => ("healthy", None),
        };
        let mut map = s.serialize_struct("SinkFields", 10)?;
        map.serialize_field("health", &Word(health))?;
        if let Some(message) = message {
            map.serialize_field("health_message", message)?;
        }
        map.serialize_field("errors", &st.errors)?;
        map.serialize_field("new_errors", &self.new_errors)?;
        map.serialize_field("panics", &st.panics)?;
        map.serialize_field("dropped_batches", &st.dropped_batches)?;
        map.serialize_field("lost_events", &st.lost.events)?;
        map.serialize_field("lost_snapshots", &st.lost.snapshots)?;
        map.serialize_field("lost_audit_entries", &st.lost.audit_entries)?;
        if let Some(error) = &st.last_error {
            map.serialize_field("last_error", error)?;
        }
        map.end()
    }
}

/// Appends `line` and a newline to `buf`; on a serialization error, `buf` is left as it was.
pub(crate) fn push<F: Serialize>(buf: &mut Vec<u8>, line: &Line<'_, F>) -> Result<(), json::Error> {
    let start = buf.len();
    match json::write(buf, line) {
        Ok(()) => {
            buf.push(b'\n');
            Ok(())
        }
        Err(error) => {
            buf.truncate(start);
            Err(error)
        }
    }
}

/// Appends `line` without a newline (for the audit line's ending).
pub(crate) fn serialize_into<F: Serialize>(
    buf: &mut Vec<u8>,
    line: &Line<'_, F>,
) -> Result<(), json::Error> {
    json::write(buf, line)
}

/// A correlation id as its 16 lower-case hex digits (its `Display`), without `fmt`.
struct Hex16(u64);

impl Serialize for Hex16 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut text = [0u8; 16];
        for (i, digit) in text.iter_mut().enumerate() {
            *digit = DIGITS[((self.0 >> (60 - 4 * i)) & 0xf) as usize];
        }
        s.serialize_str(std::str::from_utf8(&text).unwrap_or_default())
    }
}

/// A string as `serde_json` writes it, quoted and escaped.
#[cfg(test)]
pub(crate) fn json_string(text: &str) -> String {
    let mut out = Vec::new();
    let _ = serde_json::Serializer::new(&mut out).serialize_str(text);
    String::from_utf8(out).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn times_are_rfc3339_utc_with_microseconds() {
        let mut cache = TsCache::default();
        assert_eq!(
            cache.format(at(1_518_563_312, 123_456_789)).as_str(),
            "2018-02-13T23:08:32.123456Z"
        );
        // Same second: the cached prefix.
        assert_eq!(
            cache.format(at(1_518_563_312, 7_000)).as_str(),
            "2018-02-13T23:08:32.000007Z"
        );
        assert_eq!(
            cache.format(at(0, 0)).as_str(),
            "1970-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            cache.format(UNIX_EPOCH - Duration::from_secs(5)).as_str(),
            "1970-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            cache.format(at(400_000_000_000, 0)).as_str(),
            "9999-12-31T23:59:59.999999Z"
        );
    }

    proptest! {
        #[test]
        fn times_match_humantime(secs in 0u64..=LAST_SECOND, nanos in 0u32..1_000_000_000, again in 0u32..1_000_000_000) {
            let mut cache = TsCache::default();
            for t in [at(secs, nanos), at(secs, again)] {
                let ours = cache.format(t);
                prop_assert_eq!(ours.as_str(), humantime::format_rfc3339_micros(t).to_string());
            }
        }
    }

    #[test]
    fn correlation_ids_are_their_display_text() {
        for value in [1, 0xab, u64::MAX, 0x0123_4567_89ab_cdef] {
            let id = CorrelationId::from_u64(value).unwrap();
            let mut out = Vec::new();
            json::write(&mut out, &Hex16(value)).unwrap();
            assert_eq!(out, format!("\"{id}\"").into_bytes());
        }
    }

    #[test]
    fn lines_are_what_serde_json_writes() {
        let fields = [
            ("text", FieldValue::Str("a\u{0}\"b".into())),
            ("n", FieldValue::I64(-3)),
            ("f", FieldValue::F64(0.1)),
            ("nan", FieldValue::F64(f64::NAN)),
            ("ok", FieldValue::Bool(true)),
        ];
        let mut line = Line::new(
            TsCache::default().format(at(1_518_563_312, 123_456_789)),
            Level::Warn,
            Stream::Performance,
            "call",
            "app::parse",
        )
        .with_fields(Pairs(&fields[..]));
        line.module = Some("app");
        line.duration_ns = Some(u64::MAX);
        line.outcome = Some(Outcome::Ok);
        line.reason = Some("slow");
        line.labels = &[("table", "fi\tles")];
        line.correlation_id = CorrelationId::from_u64(0xab);
        let mut ours = Vec::new();
        push(&mut ours, &line).unwrap();
        let mut theirs = serde_json::to_vec(&line).unwrap();
        theirs.push(b'\n');
        assert_eq!(
            String::from_utf8(ours).unwrap(),
            String::from_utf8(theirs).unwrap()
        );
    }

    /// Every kind of `fields`, and the audit part, through both serializers.
    #[test]
    fn every_kind_of_line_is_what_serde_json_writes() {
        fn check<F: Serialize>(line: &Line<'_, F>) {
            let mut ours = Vec::new();
            json::write(&mut ours, line).unwrap();
            assert_eq!(
                String::from_utf8(ours).unwrap(),
                serde_json::to_string(line).unwrap()
            );
        }
        let mut cache = TsCache::default();
        let ts = cache.format(at(1_518_563_312, 5));
        let base = || Line::new(ts, Level::Info, Stream::Performance, "k", "n\"");
        check(&base());
        check(&base().with_fields(DropFields {
            dropped: 3,
            since: ts,
            until: ts,
        }));
        let stats = Stats::default();
        check(&base().with_fields(AggregateFields {
            window_start: ts,
            window_end: ts,
            stats: &stats,
            error_kinds: &[],
        }));
        check(&base().with_fields(CounterFields {
            window_start: ts,
            window_end: ts,
            window: 1,
            total: 2,
        }));
        check(&base().with_fields(GaugeFields(-1.5)));
        check(&base().with_fields(GaugeFields(f64::NEG_INFINITY)));
        check(&base().with_fields(StartFields {
            pid: 7,
            hostname: Some("h\u{1}"),
            pipeline_start: ts,
            window: Duration::from_secs(1),
            tick: Duration::MAX,
        }));
        let mut sink = instrument::SinkStatus::default();
        sink.health = SinkHealth::Unhealthy("disk\nfull".into());
        sink.last_error = Some("e".into());
        check(&base().with_fields(SinkFields {
            status: &sink,
            new_errors: 1,
        }));
        let notice_fields = [(std::borrow::Cow::Borrowed("k"), "v\u{0}".to_owned())];
        let inputs = ["a".to_owned(), "b\"".to_owned()];
        let mut audit = base().with_fields(Pairs(&notice_fields[..]));
        audit.audit = Some(AuditPart {
            sequence: 9,
            inputs: &inputs,
            outputs: &[],
            actor: Some("ann"),
            prev_hash: "00",
        });
        check(&audit);
    }

    #[test]
    fn control_characters_and_quotes_stay_on_one_line() {
        let nasty = "a\nb\r\"c\\\u{0}\u{1b}[31m\u{7f}\u{2028}\u{feff}\u{fffd}";
        let fields = [("text", FieldValue::Str(nasty.into()))];
        let mut line = Line::new(
            TsCache::default().format(at(1, 0)),
            Level::Error,
            Stream::Error,
            "call",
            nasty,
        )
        .with_fields(Pairs(&fields[..]));
        line.message = Some(nasty);
        let mut buf = Vec::new();
        push(&mut buf, &line).unwrap();
        assert_eq!(buf.iter().position(|&b| b == b'\n'), Some(buf.len() - 1));
        assert!(buf[..buf.len() - 1].iter().all(|&b| b >= 0x20));
        let value: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(value["name"], nasty);
        assert_eq!(value["message"], nasty);
        assert_eq!(value["fields"]["text"], nasty);
        assert_eq!(json_string("\n"), "\"\\n\"");
    }
}
