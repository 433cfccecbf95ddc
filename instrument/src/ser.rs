//! `serde::Serialize` for the types sinks receive (feature `serde`): the formats that the
//! derives on those types name with `serialize_with`, and the impls that cannot be derived.
//!
//! The rules, and every type's fields, are in `docs/data-types.md`; sinks and tools read the
//! names written here, so they are stable:
//! - `SystemTime`: an RFC 3339 UTC string with exactly six fractional digits,
//!   `2026-11-25T10:16:53.123456Z` (truncated to the microsecond, years 0000 to 9999).
//! - `Duration`: integer nanoseconds, saturating at `u64::MAX`, in a field named `..._ns`.
//! - Enums: the lower-case string their `as_str` returns, where they have one.
//! - Name/value pairs (labels, captured arguments, audit and notice fields): a map, in order.
//! - Floats: a number when finite; `"NaN"`, `"inf"` or `"-inf"` otherwise, which JSON cannot
//!   write as numbers.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::ser::{Error as _, SerializeStruct as _};
use serde::{Serialize, Serializer};

use crate::correlation::CorrelationId;
use crate::fields::FieldValue;
use crate::metadata::{CallsiteKind, Metadata, Unit};
use crate::record::Outcome;

/// Seconds from 0000-01-01T00:00:00Z to the Unix epoch (negative), and from the epoch to
/// 10000-01-01T00:00:00Z: the range of a four-digit RFC 3339 year.
const FIRST_SECOND: i64 = -62_167_219_200;
const END_SECOND: i64 = 253_402_300_800;

/// A time as RFC 3339 UTC with microseconds: seconds since the epoch (floored) and the
/// microseconds past them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rfc3339Micros {
    secs: i64,
    micros: u32,
}

impl Rfc3339Micros {
    /// `time`, truncated to the microsecond (towards the past, also before the epoch); `None`
    /// outside years 0000 to 9999.
    pub(crate) fn new(time: SystemTime) -> Option<Self> {
        let (secs, micros) = match time.duration_since(UNIX_EPOCH) {
            Ok(after) => (i64::try_from(after.as_secs()).ok()?, after.subsec_micros()),
            Err(before) => {
                let before = before.duration();
                // Round the distance up to whole microseconds, so truncation goes to the past.
                let micros = before.as_nanos().div_ceil(1000);
                let secs = i64::try_from(micros.div_ceil(1_000_000)).ok()?;
                let past = (secs as u128 * 1_000_000 - micros) as u32;
                (-secs, past)
            }
        };
        (FIRST_SECOND..END_SECOND)
            .contains(&secs)
            .then_some(Rfc3339Micros { secs, micros })
    }
}

impl fmt::Display for Rfc3339Micros {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.secs.div_euclid(86_400);
        let of_day = self.secs.rem_euclid(86_400);
        // Howard Hinnant's `civil_from_days`: eras of 400 years (146,097 days) starting on
        // 0000-03-01, so that the leap day ends each year.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let day_of_era = z.rem_euclid(146_097);
        let year_of_era =
            (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
        let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
        let shifted_month = (5 * day_of_year + 2) / 153;
        let day = day_of_year - (153 * shifted_month + 2) / 5 + 1;
        let month = if shifted_month < 10 {
            shifted_month + 3
        } else {
            shifted_month - 9
        };
        let year = year_of_era + era * 400 + i64::from(month <= 2);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
            of_day / 3600,
            of_day / 60 % 60,
            of_day % 60,
            self.micros
        )
    }
}

/// A `SystemTime` as an RFC 3339 string; an error outside years 0000 to 9999.
pub(crate) fn time<S: Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    match Rfc3339Micros::new(*time) {
        Some(text) => s.collect_str(&text),
        None => Err(S::Error::custom(format_args!(
            "{time:?} is outside the years 0000 to 9999 that RFC 3339 can write"
        ))),
    }
}

/// A `Duration` as integer nanoseconds, saturating.
pub(crate) fn nanos<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX))
}

/// An optional `Duration` as integer nanoseconds or none.
#[allow(
    clippy::ref_option,
    reason = "serde's `serialize_with` passes a reference to the field"
)]
pub(crate) fn opt_nanos<S: Serializer>(
    duration: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match duration {
        Some(duration) => s.serialize_some(&u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)),
        None => s.serialize_none(),
    }
}

/// Name/value pairs as a map, in their order.
pub(crate) fn pairs<K: Serialize, V: Serialize, S: Serializer>(
    pairs: &[(K, V)],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

/// A float as a number when finite, else as `"NaN"`, `"inf"` or `"-inf"`.
#[allow(
    clippy::trivially_copy_pass_by_ref,
    reason = "serde's `serialize_with` passes a reference to the field"
)]
pub(crate) fn float<S: Serializer>(value: &f64, s: S) -> Result<S::Ok, S::Error> {
    if value.is_finite() {
        s.serialize_f64(*value)
    } else {
        s.collect_str(value)
    }
}

/// Enums with an `as_str`: written as it.
macro_rules! serialize_as_str {
    ($($ty:ty),*) => {$(
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    )*};
}

serialize_as_str!(Outcome, Unit);

/// `function`, `async`, `timer`, `counter`, `gauge` or `histogram`.
impl Serialize for CallsiteKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match self {
            CallsiteKind::Function => "function",
            CallsiteKind::Async => "async",
            CallsiteKind::Timer => "timer",
            CallsiteKind::Counter => "counter",
            CallsiteKind::Gauge => "gauge",
            CallsiteKind::Histogram => "histogram",
        })
    }
}

/// What identifies and describes the callsite; its recording options (`slow`, `sample`,
/// `audit`, captures) are configuration, not data, and are left out.
impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        struct Labels(&'static [(&'static str, &'static str)]);
        impl Serialize for Labels {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                pairs(self.0, s)
            }
        }
        let mut st = s.serialize_struct("Metadata", 8)?;
        st.serialize_field("name", self.name())?;
        st.serialize_field("module", self.module_path())?;
        st.serialize_field("file", self.file())?;
        st.serialize_field("line", &self.line())?;
        st.serialize_field("kind", &self.kind())?;
        st.serialize_field("labels", &Labels(self.labels_slice()))?;
        st.serialize_field("unit", &self.unit())?;
        st.serialize_field("description", &self.description())?;
        st.end()
    }
}

/// The 16 hex digits its `Display` writes.
impl Serialize for CorrelationId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The value itself: a number, a boolean or a string (`Str` and `Formatted` alike).
impl Serialize for FieldValue {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FieldValue::I64(v) => s.serialize_i64(*v),
            FieldValue::U64(v) => s.serialize_u64(*v),
            FieldValue::F64(v) => float(v, s),
            FieldValue::Bool(v) => s.serialize_bool(*v),
            FieldValue::Str(text) | FieldValue::Formatted(text) => s.serialize_str(text),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::{Level, SnapshotReason};
    use proptest::prelude::*;
    use serde_json::{Value, json};

    fn rfc3339(time: SystemTime) -> String {
        Rfc3339Micros::new(time).expect("in range").to_string()
    }

    fn at(secs: u64, nanos: u32) -> SystemTime {
        UNIX_EPOCH + Duration::new(secs, nanos)
    }

    #[test]
    fn times_are_rfc3339_utc_with_microseconds() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            rfc3339(at(1_518_563_312, 123_456_789)),
            "2018-02-13T23:08:32.123456Z"
        );
        // A leap day, and the end of the range.
        assert_eq!(rfc3339(at(951_782_400, 0)), "2000-02-29T00:00:00.000000Z");
        assert_eq!(
            rfc3339(at(253_402_300_799, 999_999_999)),
            "9999-12-31T23:59:59.999999Z"
        );
        assert!(Rfc3339Micros::new(at(253_402_300_800, 0)).is_none());
    }

    #[test]
    fn times_before_the_epoch_truncate_towards_the_past() {
        let before = |d: Duration| rfc3339(UNIX_EPOCH - d);
        assert_eq!(
            before(Duration::from_nanos(1)),
            "1969-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            before(Duration::from_micros(1)),
            "1969-12-31T23:59:59.999999Z"
        );
        assert_eq!(
            before(Duration::from_secs(1)),
            "1969-12-31T23:59:59.000000Z"
        );
        assert_eq!(
            before(Duration::from_secs(62_167_219_200)),
            "0000-01-01T00:00:00.000000Z"
        );
        assert!(Rfc3339Micros::new(UNIX_EPOCH - Duration::from_secs(62_167_219_201)).is_none());
    }

    #[test]
    fn a_time_out_of_range_is_an_error_not_a_panic() {
        let far = at(300_000_000_000, 0);
        let err = time(&far, serde_json::value::Serializer).unwrap_err();
        assert!(err.to_string().contains("0000 to 9999"), "{err}");
    }

    proptest! {
        // After the epoch, the same text as humantime's formatter.
        #[test]
        fn times_match_humantime(secs in 0u64..253_402_300_800, nanos in 0u32..1_000_000_000) {
            let t = at(secs, nanos);
            prop_assert_eq!(rfc3339(t), humantime::format_rfc3339_micros(t).to_string());
        }

        // Before the epoch, the text of the same time five 400-year eras (of exactly 146,097
        // days, so the calendar repeats) later, which is after the epoch, bar the year.
        #[test]
        fn times_before_the_epoch_repeat_each_era(secs in 0u64..62_167_219_200, nanos in 0u32..1_000_000_000) {
            let t = UNIX_EPOCH - Duration::new(secs, nanos);
            let later = humantime::format_rfc3339_micros(t + Duration::from_secs(5 * 146_097 * 86_400)).to_string();
            let ours = rfc3339(t);
            let year: u32 = ours[..4].parse().unwrap();
            prop_assert_eq!(format!("{:04}{}", year + 2000, &ours[4..]), later);
        }
    }

    #[test]
    fn durations_are_whole_nanoseconds_saturating() {
        let ns = |d| nanos(&d, serde_json::value::Serializer).unwrap();
        assert_eq!(ns(Duration::new(2, 5)), json!(2_000_000_005u64));
        assert_eq!(ns(Duration::MAX), json!(u64::MAX));
        let opt = |d| opt_nanos(&d, serde_json::value::Serializer).unwrap();
        assert_eq!(opt(Some(Duration::from_micros(3))), json!(3000));
        assert_eq!(opt(None), Value::Null);
    }

    #[test]
    fn enums_are_their_lower_case_names() {
        let text = |v: Value| v.as_str().unwrap().to_owned();
        for outcome in Outcome::ALL {
            assert_eq!(text(json!(outcome)), outcome.as_str());
        }
        for level in [Level::Debug, Level::Info, Level::Warn, Level::Error] {
            assert_eq!(text(json!(level)), level.as_str());
        }
        for reason in [
            SnapshotReason::Window,
            SnapshotReason::Flush,
            SnapshotReason::Shutdown,
        ] {
            assert_eq!(text(json!(reason)), reason.as_str());
        }
        assert_eq!(text(json!(Unit::Milliseconds)), "milliseconds");
        assert_eq!(text(json!(CallsiteKind::Async)), "async");
        assert_eq!(text(json!(CallsiteKind::Histogram)), "histogram");
        assert_eq!(
            json!([
                crate::EventReason::Outcome,
                crate::EventReason::Slow,
                crate::EventReason::Sampled
            ]),
            json!(["outcome", "slow", "sampled"])
        );
        assert_eq!(json!(Outcome::Cancelled), json!("cancelled"));
    }

    #[test]
    fn field_values_are_plain_values() {
        assert_eq!(
            json!([
                FieldValue::I64(-3),
                FieldValue::U64(u64::MAX),
                FieldValue::F64(0.5),
                FieldValue::Bool(true),
                FieldValue::Str("ann".into()),
                FieldValue::Formatted("Some(3)".into()),
            ]),
            json!([-3, u64::MAX, 0.5, true, "ann", "Some(3)"])
        );
        assert_eq!(
            json!([
                FieldValue::F64(f64::NAN),
                FieldValue::F64(f64::INFINITY),
                FieldValue::F64(f64::NEG_INFINITY),
            ]),
            json!(["NaN", "inf", "-inf"])
        );
    }

    #[test]
    fn metadata_is_its_description_with_labels_as_a_map() {
        static META: Metadata = Metadata::new(
            "rows_total",
            "app::load",
            "src/load.rs",
            12,
            CallsiteKind::Counter,
        )
        .labels(&[("table", "files"), ("stage", "read")])
        .with_unit(Unit::Count)
        .slow_ns(5);
        assert_eq!(
            json!(&META),
            json!({
                "name": "rows_total",
                "module": "app::load",
                "file": "src/load.rs",
                "line": 12,
                "kind": "counter",
                "labels": {"table": "files", "stage": "read"},
                "unit": "count",
                "description": null,
            })
        );
    }

    #[test]
    fn sink_health_is_a_status_with_its_message() {
        use crate::SinkHealth;
        assert_eq!(json!(SinkHealth::Healthy), json!({"status": "healthy"}));
        assert_eq!(
            json!(SinkHealth::Degraded("slow disk".into())),
            json!({"status": "degraded", "message": "slow disk"})
        );
        assert_eq!(
            json!(SinkHealth::Unhealthy("gone".into())),
            json!({"status": "unhealthy", "message": "gone"})
        );
    }

    #[test]
    fn shortfalls_and_drop_markers_name_their_parts() {
        static META: Metadata =
            Metadata::new("load", "app", "src/app.rs", 3, CallsiteKind::Function);
        let shortfall = crate::SinkShortfall {
            sink: "sqlite".into(),
            timed_out: true,
            error: None,
            lost: crate::Lost {
                batches: 1,
                events: 9,
                snapshots: 0,
                audit_entries: 2,
            },
        };
        assert_eq!(
            json!(shortfall),
            json!({
                "sink": "sqlite",
                "timed_out": true,
                "error": null,
                "lost": {"batches": 1, "events": 9, "snapshots": 0, "audit_entries": 2},
            })
        );
        let marker = crate::DropMarker {
            callsite: &META,
            count: 4,
            since: at(1_518_563_312, 5_000),
            until: at(1_518_563_313, 0),
        };
        let marker = json!(marker);
        assert_eq!(marker["callsite"]["name"], "load");
        assert_eq!(marker["count"], 4);
        assert_eq!(marker["since"], "2018-02-13T23:08:32.000005Z");
        assert_eq!(marker["until"], "2018-02-13T23:08:33.000000Z");
        let thread = crate::ThreadInfo {
            id: 7,
            name: Some("worker-1".into()),
        };
        assert_eq!(json!(thread), json!({"id": 7, "name": "worker-1"}));
    }

    #[test]
    fn correlation_ids_are_their_hex_text() {
        let id = CorrelationId::from_u64(0xab).unwrap();
        assert_eq!(json!(id), json!("00000000000000ab"));
        assert_eq!(json!(id), json!(id.to_string()));
    }
}
