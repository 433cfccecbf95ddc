//! What `/metrics` shows: metric families in a fixed order, each with its series, their label
//! sets rendered once when the series is created, and their current values; and the renderer of
//! both exposition formats.
//!
//! Every name a family's samples use is reserved for it (`x_total` and `x_created` for a counter
//! `x`; `x_bucket`, `x_sum`, `x_count` for a histogram `x`, ...), so two families can never
//! write samples of the same name: a later family whose names clash with an earlier one is
//! refused, with a message naming both.

use std::collections::HashMap;
use std::fmt::Write as _;

use super::text::{escape_help, push_seconds, push_u64};

/// A series: its family and its place in the family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct SeriesRef {
    pub(super) family: u32,
    pub(super) series: u32,
}

/// A family's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Type {
    Counter,
    Gauge,
    Histogram,
    Summary,
}

impl Type {
    fn as_str(self) -> &'static str {
        match self {
            Type::Counter => "counter",
            Type::Gauge => "gauge",
            Type::Histogram => "histogram",
            Type::Summary => "summary",
        }
    }
}

/// How a summary's numbers are written: durations in nanoseconds as seconds, or plain values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Scale {
    Seconds,
    Plain,
}

/// The quantiles of summaries, matching `Stats::{p50, p90, p99, p999}`.
pub(super) const QUANTILES: [&str; 4] = ["0.5", "0.9", "0.99", "0.999"];

/// A recent call that fell into a histogram bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Exemplar {
    pub(super) correlation: u64,
    pub(super) nanos: u64,
    /// When the call ended, in milliseconds since the Unix epoch.
    pub(super) at_ms: u64,
}

#[derive(Debug)]
pub(super) struct HistogramValue {
    /// Per bucket (not cumulative), the last one `+Inf`.
    pub(super) counts: Box<[u64]>,
    pub(super) sum_nanos: u128,
    /// Per bucket, allocated with the first exemplar.
    pub(super) exemplars: Option<Box<[Option<Exemplar>]>>,
}

#[derive(Debug)]
pub(super) struct SummaryValue {
    /// `None` when the window had no values (written `NaN`).
    pub(super) quantiles: [Option<u64>; 4],
    /// Sum and count, for summaries that have them.
    pub(super) totals: Option<(u128, u64)>,
}

#[derive(Debug)]
pub(super) enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram(Box<HistogramValue>),
    Summary(Box<SummaryValue>),
}

#[derive(Debug)]
pub(super) struct Series {
    /// `name="value",...` without braces, escaped.
    labels: Box<str>,
    pub(super) value: Value,
}

#[derive(Debug)]
struct Family {
    kind: Type,
    scale: Scale,
    /// Where it comes from, for messages: `built in` or `counter at src/lib.rs:12`.
    origin: String,
    text_header: Box<str>,
    om_header: Box<str>,
    /// Counter: `x_total`; gauge: `x`; histogram: `x_bucket`, `x_sum`, `x_count`; summary:
    /// `x`, `x_sum`, `x_count`.
    samples: [Box<str>; 3],
    series: Vec<Series>,
    index: HashMap<Box<str>, u32>,
}

/// A family to register.
pub(super) struct FamilySpec<'a> {
    /// The name as exported: for a counter, with or without `_total`.
    pub(super) name: &'a str,
    pub(super) kind: Type,
    pub(super) scale: Scale,
    pub(super) help: &'a str,
    pub(super) unit: Option<&'a str>,
    pub(super) origin: String,
}

/// The families, in the order they were registered, and the names they reserve.
#[derive(Debug)]
pub(super) struct Registry {
    families: Vec<Family>,
    by_name: HashMap<Box<str>, u32>,
    reserved: HashMap<Box<str>, u32>,
    /// The `le="..."` label parts of the histogram buckets, the last `+Inf`.
    le: Box<[Box<str>]>,
    quantile_labels: [Box<str>; 4],
}

impl Registry {
    /// A registry whose histograms have buckets up to `bounds` (nanoseconds) and `+Inf`.
    pub(super) fn new(bounds: &[u64]) -> Registry {
        let mut le: Vec<Box<str>> = bounds
            .iter()
            .map(|&ns| {
                let mut seconds = Vec::new();
                push_seconds(&mut seconds, u128::from(ns));
                format!("le=\"{}\"", String::from_utf8_lossy(&seconds)).into()
            })
            .collect();
        le.push("le=\"+Inf\"".into());
        Registry {
            families: Vec::new(),
            by_name: HashMap::new(),
            reserved: HashMap::new(),
            le: le.into(),
            quantile_labels: QUANTILES.map(|q| format!("quantile=\"{q}\"").into()),
        }
    }

    /// The family `spec` describes: an existing one of the same name and type, or a new one.
    ///
    /// # Errors
    /// Why it cannot be exported: one of its names is taken by another family.
    pub(super) fn family(&mut self, spec: &FamilySpec<'_>) -> Result<u32, String> {
        let base = match spec.kind {
            Type::Counter => spec.name.strip_suffix("_total").unwrap_or(spec.name),
            _ => spec.name,
        };
        if let Some(&i) = self.by_name.get(base) {
            let family = &self.families[i as usize];
            if family.kind == spec.kind && family.scale == spec.scale {
                return Ok(i);
            }
            return Err(format!(
                "{} `{}` ({}) is not exported: `{base}` is already the {} of {}",
                spec.kind.as_str(),
                spec.name,
                spec.origin,
                family.kind.as_str(),
                family.origin
            ));
        }
        let reserves: Vec<String> = match spec.kind {
            Type::Counter => vec![
                base.to_owned(),
                format!("{base}_total"),
                format!("{base}_created"),
            ],
            Type::Gauge => vec![base.to_owned()],
            Type::Histogram => ["", "_bucket", "_sum", "_count", "_created"]
                .iter()
                .map(|s| format!("{base}{s}"))
                .collect(),
            Type::Summary => ["", "_sum", "_count", "_created"]
                .iter()
                .map(|s| format!("{base}{s}"))
                .collect(),
        };
        if let Some((name, &owner)) = reserves
            .iter()
            .find_map(|n| self.reserved.get_key_value(n.as_str()))
        {
            let owner = &self.families[owner as usize];
            return Err(format!(
                "{} `{}` ({}) is not exported: its sample name `{name}` is already used by {} `{}` ({})",
                spec.kind.as_str(),
                spec.name,
                spec.origin,
                owner.kind.as_str(),
                owner.samples[0],
                owner.origin
            ));
        }
        let index = u32::try_from(self.families.len()).expect("fewer than 2^32 families");
        for name in reserves {
            self.reserved.insert(name.into(), index);
        }
        self.by_name.insert(base.into(), index);
        let samples: [Box<str>; 3] = match spec.kind {
            Type::Counter => [format!("{base}_total").into(), "".into(), "".into()],
            Type::Gauge => [base.into(), "".into(), "".into()],
            Type::Histogram => [
                format!("{base}_bucket").into(),
                format!("{base}_sum").into(),
                format!("{base}_count").into(),
            ],
            Type::Summary => [
                base.into(),
                format!("{base}_sum").into(),
                format!("{base}_count").into(),
            ],
        };
        // The text format names a counter family by its sample name; OpenMetrics by its base.
        let text_name = if spec.kind == Type::Counter {
            &*samples[0]
        } else {
            base
        };
        let kind = spec.kind.as_str();
        let text_header = format!(
            "# HELP {text_name} {}\n# TYPE {text_name} {kind}\n",
            escape_help(spec.help, false)
        );
        let mut om_header = format!("# TYPE {base} {kind}\n");
        if let Some(unit) = spec.unit.filter(|u| base.ends_with(&format!("_{u}"))) {
            let _ = writeln!(om_header, "# UNIT {base} {unit}");
        }
        let _ = writeln!(om_header, "# HELP {base} {}", escape_help(spec.help, true));
        self.families.push(Family {
            kind: spec.kind,
            scale: spec.scale,
            origin: spec.origin.clone(),
            text_header: text_header.into(),
            om_header: om_header.into(),
            samples,
            series: Vec::new(),
            index: HashMap::new(),
        });
        Ok(index)
    }

    /// The series of `family` with `labels` (rendered by `label_set`), created empty if new.
    pub(super) fn series(&mut self, family: u32, labels: String) -> SeriesRef {
        let buckets = self.le.len();
        let f = &mut self.families[family as usize];
        if let Some(&series) = f.index.get(labels.as_str()) {
            return SeriesRef { family, series };
        }
        let series = u32::try_from(f.series.len()).expect("fewer than 2^32 series");
        let value = match f.kind {
            Type::Counter => Value::Counter(0),
            Type::Gauge => Value::Gauge(0.0),
            Type::Histogram => Value::Histogram(Box::new(HistogramValue {
                counts: vec![0; buckets].into(),
                sum_nanos: 0,
                exemplars: None,
            })),
            Type::Summary => Value::Summary(Box::new(SummaryValue {
                quantiles: [None; 4],
                totals: None,
            })),
        };
        let labels: Box<str> = labels.into();
        f.index.insert(labels.clone(), series);
        f.series.push(Series { labels, value });
        SeriesRef { family, series }
    }

    pub(super) fn value(&mut self, series: SeriesRef) -> &mut Value {
        &mut self.families[series.family as usize].series[series.series as usize].value
    }

    /// Adds to a counter.
    pub(super) fn add(&mut self, series: SeriesRef, n: u64) {
        if let Value::Counter(v) = self.value(series) {
            *v = v.saturating_add(n);
        }
    }

    /// Raises a counter to `total` if it is below (counters never go backwards).
    pub(super) fn raise(&mut self, series: SeriesRef, total: u64) {
        if let Value::Counter(v) = self.value(series) {
            *v = (*v).max(total);
        }
    }

    /// Sets a gauge.
    pub(super) fn set(&mut self, series: SeriesRef, value: f64) {
        if let Value::Gauge(v) = self.value(series) {
            *v = value;
        }
    }

    /// Series in all families.
    pub(super) fn len(&self) -> usize {
        self.families.iter().map(|f| f.series.len()).sum()
    }

    /// Renders every family with series, in the Prometheus text format or in `OpenMetrics`.
    pub(super) fn render(&self, out: &mut Vec<u8>, openmetrics: bool) {
        for family in &self.families {
            if family.series.is_empty() {
                continue;
            }
            let header = if openmetrics {
                &family.om_header
            } else {
                &family.text_header
            };
            out.extend_from_slice(header.as_bytes());
            let [first, sum, count] = &family.samples;
            for series in &family.series {
                let labels = &*series.labels;
                match &series.value {
                    Value::Counter(v) => {
                        sample(out, first, labels, None);
                        push_u64(out, *v);
                        out.push(b'\n');
                    }
                    Value::Gauge(v) => {
                        sample(out, first, labels, None);
                        super::text::push_f64(out, *v);
                        out.push(b'\n');
                    }
                    Value::Histogram(h) => {
                        let mut cumulative = 0u64;
                        for (i, (n, le)) in h.counts.iter().zip(self.le.iter()).enumerate() {
                            cumulative += n;
                            sample(out, first, labels, Some(le));
                            push_u64(out, cumulative);
                            if openmetrics && let Some(e) = h.exemplars.as_ref().and_then(|e| e[i])
                            {
                                exemplar(out, e);
                            }
                            out.push(b'\n');
                        }
                        sample(out, sum, labels, None);
                        push_seconds(out, h.sum_nanos);
                        out.push(b'\n');
                        sample(out, count, labels, None);
                        push_u64(out, cumulative);
                        out.push(b'\n');
                    }
                    Value::Summary(s) => {
                        for (q, label) in s.quantiles.iter().zip(&self.quantile_labels) {
                            sample(out, first, labels, Some(label));
                            match (q, family.scale) {
                                (None, _) => out.extend_from_slice(b"NaN"),
                                (Some(v), Scale::Seconds) => push_seconds(out, u128::from(*v)),
                                (Some(v), Scale::Plain) => push_u64(out, *v),
                            }
                            out.push(b'\n');
                        }
                        if let Some((total, n)) = s.totals {
                            sample(out, sum, labels, None);
                            match family.scale {
                                Scale::Seconds => push_seconds(out, total),
                                Scale::Plain => out.extend_from_slice(
                                    itoa::Buffer::new().format(total).as_bytes(),
                                ),
                            }
                            out.push(b'\n');
                            sample(out, count, labels, None);
                            push_u64(out, n);
                            out.push(b'\n');
                        }
                    }
                }
            }
        }
        if openmetrics {
            out.extend_from_slice(b"# EOF\n");
        }
    }
}

/// Writes `name{labels,extra} `.
#[inline]
fn sample(out: &mut Vec<u8>, name: &str, labels: &str, extra: Option<&str>) {
    out.extend_from_slice(name.as_bytes());
    match (labels.is_empty(), extra) {
        (true, None) => {}
        (false, None) => {
            out.push(b'{');
            out.extend_from_slice(labels.as_bytes());
            out.push(b'}');
        }
        (true, Some(extra)) => {
            out.push(b'{');
            out.extend_from_slice(extra.as_bytes());
            out.push(b'}');
        }
        (false, Some(extra)) => {
            out.push(b'{');
            out.extend_from_slice(labels.as_bytes());
            out.push(b',');
            out.extend_from_slice(extra.as_bytes());
            out.push(b'}');
        }
    }
    out.push(b' ');
}

/// Writes ` # {correlation_id="..."} value timestamp`.
fn exemplar(out: &mut Vec<u8>, e: Exemplar) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.extend_from_slice(b" # {correlation_id=\"");
    for shift in (0..16).rev() {
        out.push(HEX[((e.correlation >> (shift * 4)) & 0xf) as usize]);
    }
    out.extend_from_slice(b"\"} ");
    push_seconds(out, u128::from(e.nanos));
    out.push(b' ');
    push_seconds(out, u128::from(e.at_ms) * 1_000_000);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(name: &str, kind: Type) -> FamilySpec<'_> {
        FamilySpec {
            name,
            kind,
            scale: Scale::Seconds,
            help: "Help.",
            unit: None,
            origin: format!("test {name}"),
        }
    }

    fn registry() -> Registry {
        Registry::new(&[1_000, 1_000_000])
    }

    #[test]
    fn a_counter_with_and_without_total_is_one_family() {
        let mut r = registry();
        let a = r.family(&spec("rows_total", Type::Counter)).unwrap();
        let b = r.family(&spec("rows", Type::Counter)).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn clashing_names_are_refused_with_both_origins() {
        let mut r = registry();
        r.family(&spec("rows_total", Type::Counter)).unwrap();
        let err = r.family(&spec("rows_total", Type::Gauge)).unwrap_err();
        assert!(
            err.contains("rows_total") && err.contains("test rows_total"),
            "{err}"
        );
        let err = r.family(&spec("rows", Type::Gauge)).unwrap_err();
        assert!(
            err.contains("already the counter of test rows_total"),
            "{err}"
        );
        r.family(&spec("latency", Type::Histogram)).unwrap();
        let err = r.family(&spec("latency_count", Type::Gauge)).unwrap_err();
        assert!(
            err.contains("`latency_count` is already used by histogram"),
            "{err}"
        );
        r.family(&spec("size", Type::Gauge)).unwrap();
        let err = r.family(&spec("size", Type::Summary)).unwrap_err();
        assert!(err.contains("already the gauge"), "{err}");
    }

    #[test]
    fn renders_both_formats() {
        let mut r = registry();
        let mut s = spec("op_duration_seconds", Type::Histogram);
        s.unit = Some("seconds");
        s.help = "Say \"hi\"\\";
        let h = r.family(&s).unwrap();
        let c = r.family(&spec("rows", Type::Counter)).unwrap();
        let series = r.series(h, "op=\"a\"".into());
        if let Value::Histogram(v) = r.value(series) {
            v.counts[0] = 2;
            v.counts[2] = 1;
            v.sum_nanos = 2_000_500;
            let mut exemplars = vec![None; 3];
            exemplars[2] = Some(Exemplar {
                correlation: 0xab,
                nanos: 2_000_000,
                at_ms: 1_700_000_000_123,
            });
            v.exemplars = Some(exemplars.into());
        }
        let rows = r.series(c, String::new());
        r.add(rows, 5);
        r.raise(rows, 3);
        let mut out = Vec::new();
        r.render(&mut out, false);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "# HELP op_duration_seconds Say \"hi\"\\\\\n\
             # TYPE op_duration_seconds histogram\n\
             op_duration_seconds_bucket{op=\"a\",le=\"0.000001\"} 2\n\
             op_duration_seconds_bucket{op=\"a\",le=\"0.001\"} 2\n\
             op_duration_seconds_bucket{op=\"a\",le=\"+Inf\"} 3\n\
             op_duration_seconds_sum{op=\"a\"} 0.0020005\n\
             op_duration_seconds_count{op=\"a\"} 3\n\
             # HELP rows_total Help.\n\
             # TYPE rows_total counter\n\
             rows_total 5\n"
        );
        let mut out = Vec::new();
        r.render(&mut out, true);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "# TYPE op_duration_seconds histogram\n\
             # UNIT op_duration_seconds seconds\n\
             # HELP op_duration_seconds Say \\\"hi\\\"\\\\\n\
             op_duration_seconds_bucket{op=\"a\",le=\"0.000001\"} 2\n\
             op_duration_seconds_bucket{op=\"a\",le=\"0.001\"} 2\n\
             op_duration_seconds_bucket{op=\"a\",le=\"+Inf\"} 3 # {correlation_id=\"00000000000000ab\"} 0.002 1700000000.123\n\
             op_duration_seconds_sum{op=\"a\"} 0.0020005\n\
             op_duration_seconds_count{op=\"a\"} 3\n\
             # TYPE rows counter\n\
             # HELP rows Help.\n\
             rows_total 5\n\
             # EOF\n"
        );
    }
}
