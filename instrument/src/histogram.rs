//! The sparse HDR histogram; see [`Histogram`].

const EXACT: u64 = 2048;
const SUB_BITS: u32 = 10;
const SUB: u64 = 1 << SUB_BITS;
const CHUNK: usize = 256;

/// A sparse HDR histogram of nanosecond durations, 3 significant digits.
///
/// Layout (the `HdrHistogram` layout with `lowest = 1`, `sigfig = 3`): values below 2048 get one
/// exact slot each; each octave `[2^e, 2^(e+1))` above that is split into 1024 equal sub-buckets,
/// so any recorded value is reported within 1/1024 of itself. The slot index of `v >= 2048` is
/// `2048 + (e - 11) * 1024 + ((v >> (e - 10)) - 1024)` where `e = floor(log2 v)`.
///
/// Unlike a dense HDR histogram (about 270 KiB for a 1 ns .. 1 h range), slots live in chunks
/// of 256 that are allocated on first use: a function whose durations span a few octaves costs a
/// few KiB. That is what keeps 100 callsites x outcomes x (window + total) inside the memory
/// budget.
///
/// # Serialized form (feature `serde`)
/// A histogram serializes as its layout parameters, its exact count, sum, min and max, and its
/// non-empty slots as `[value, count]` pairs in increasing order, where `value` is the highest
/// value of the slot (what [`Histogram::iter_buckets`] yields):
///
/// ```json
/// {"exact_below": 2048, "sub_buckets": 1024, "count": 3, "sum": 1000120, "min": 20,
///  "max": 1000000, "buckets": [[20, 1], [100, 1], [1000447, 1]]}
/// ```
///
/// Each `value` falls in the slot it names, so recording `count` times `value` into a histogram
/// of the same layout rebuilds it. `Deserialize` does that (rejecting another layout or counts
/// that do not add up), so a store can keep windows' histograms and later
/// [`merge`](Histogram::merge) any range of them with the same result as one histogram that had
/// recorded every value.
///
/// Keeps `u64` values (nanoseconds) with count, sum, min, max and quantiles.
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    chunks: Vec<Option<Box<[u64; CHUNK]>>>,
    count: u64,
    sum: u128,
    min: u64,
    max: u64,
}

#[inline]
fn slot(v: u64) -> usize {
    if v < EXACT {
        v as usize
    } else {
        let e = v.ilog2();
        let shift = e - SUB_BITS;
        (EXACT + u64::from(e - 11) * SUB + ((v >> shift) - SUB)) as usize
    }
}

/// The highest value that maps to `slot`.
fn highest_in(slot: usize) -> u64 {
    let s = slot as u64;
    if s < EXACT {
        s
    } else {
        let rel = s - EXACT;
        let e = rel / SUB + 11;
        let shift = e - u64::from(SUB_BITS);
        let sub = rel % SUB + SUB;
        let low = sub << shift;
        low.saturating_add((1u64 << shift) - 1)
    }
}

impl Histogram {
    /// An empty histogram.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Records one value.
    #[inline]
    pub fn record(&mut self, value: u64) {
        self.record_n(value, 1);
    }

    /// Records `n` occurrences of `value`.
    #[inline]
    pub fn record_n(&mut self, value: u64, n: u64) {
        if n == 0 {
            return;
        }
        let s = slot(value);
        let (c, i) = (s / CHUNK, s % CHUNK);
        if c >= self.chunks.len() {
            self.chunks.resize_with(c + 1, || None);
        }
        let chunk = self.chunks[c].get_or_insert_with(|| Box::new([0; CHUNK]));
        chunk[i] += n;
        if self.count == 0 || value < self.min {
            self.min = value;
        }
        if value > self.max {
            self.max = value;
        }
        self.count += n;
        self.sum += u128::from(value) * u128::from(n);
    }

    /// Adds every value of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        if other.count == 0 {
            return;
        }
        if other.chunks.len() > self.chunks.len() {
            self.chunks.resize_with(other.chunks.len(), || None);
        }
        for (mine, theirs) in self.chunks.iter_mut().zip(&other.chunks) {
            if let Some(theirs) = theirs {
                let mine = mine.get_or_insert_with(|| Box::new([0; CHUNK]));
                for (a, b) in mine.iter_mut().zip(theirs.iter()) {
                    *a += b;
                }
            }
        }
        if self.count == 0 || other.min < self.min {
            self.min = other.min;
        }
        self.max = self.max.max(other.max);
        self.count += other.count;
        self.sum += other.sum;
    }

    /// Empties the histogram, keeping its allocations for reuse.
    pub fn reset(&mut self) {
        for chunk in self.chunks.iter_mut().flatten() {
            chunk.fill(0);
        }
        self.count = 0;
        self.sum = 0;
        self.min = 0;
        self.max = 0;
    }

    /// Number of recorded values.
    #[must_use]
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Sum of recorded values (exact).
    #[must_use]
    pub fn sum(&self) -> u128 {
        self.sum
    }

    /// Smallest recorded value (exact); 0 when empty.
    #[must_use]
    pub fn min(&self) -> u64 {
        self.min
    }

    /// Largest recorded value (exact); 0 when empty.
    #[must_use]
    pub fn max(&self) -> u64 {
        self.max
    }

    /// The value at quantile `q` (0.0 ..= 1.0): the highest value equivalent to the recorded
    /// value of rank `ceil(q * count)`, clamped to `[min, max]`; within 1/1024 of it.
    #[must_use]
    pub fn quantile(&self, q: f64) -> u64 {
        if self.count == 0 {
            return 0;
        }
        let q = q.clamp(0.0, 1.0);
        let rank = ((q * self.count as f64).ceil() as u64).clamp(1, self.count);
        let mut seen = 0u64;
        for (c, chunk) in self.chunks.iter().enumerate() {
            let Some(chunk) = chunk else { continue };
            for (i, &n) in chunk.iter().enumerate() {
                seen += n;
                if n > 0 && seen >= rank {
                    return highest_in(c * CHUNK + i).clamp(self.min, self.max);
                }
            }
        }
        self.max
    }

    /// Bytes allocated for counts.
    #[must_use]
    pub fn memory_bytes(&self) -> usize {
        self.chunks.capacity() * std::mem::size_of::<Option<Box<[u64; CHUNK]>>>()
            + self.chunks.iter().flatten().count() * CHUNK * 8
    }

    /// Recorded values as `(highest equivalent value, count)` pairs in increasing order, for
    /// exporters that re-bucket (for example into Prometheus `le` buckets).
    pub fn iter_buckets(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.chunks.iter().enumerate().flat_map(|(c, chunk)| {
            chunk.iter().flat_map(move |chunk| {
                chunk
                    .iter()
                    .enumerate()
                    .filter(|&(_, &n)| n > 0)
                    .map(move |(i, &n)| (highest_in(c * CHUNK + i), n))
            })
        })
    }
}

#[cfg(feature = "serde")]
mod serialized {
    use serde::de::Error as _;
    use serde::ser::SerializeStruct as _;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{EXACT, Histogram, SUB, slot};

    /// See the [type docs](Histogram).
    impl Serialize for Histogram {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            struct Buckets<'a>(&'a Histogram);
            impl Serialize for Buckets<'_> {
                fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                    s.collect_seq(self.0.iter_buckets())
                }
            }
            let mut st = s.serialize_struct("Histogram", 7)?;
            st.serialize_field("exact_below", &EXACT)?;
            st.serialize_field("sub_buckets", &SUB)?;
            st.serialize_field("count", &self.count)?;
            st.serialize_field("sum", &self.sum)?;
            st.serialize_field("min", &self.min)?;
            st.serialize_field("max", &self.max)?;
            st.serialize_field("buckets", &Buckets(self))?;
            st.end()
        }
    }

    /// What [`Histogram`]'s `Serialize` writes.
    #[derive(Deserialize)]
    struct Serialized {
        exact_below: u64,
        sub_buckets: u64,
        count: u64,
        sum: u128,
        min: u64,
        max: u64,
        buckets: Vec<(u64, u64)>,
    }

    /// Rebuilds a histogram from its serialized form; see the [type docs](Histogram).
    impl<'de> Deserialize<'de> for Histogram {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            rebuild(&Serialized::deserialize(d)?).map_err(D::Error::custom)
        }
    }

    fn rebuild(s: &Serialized) -> Result<Histogram, String> {
        if (s.exact_below, s.sub_buckets) != (EXACT, SUB) {
            return Err(format!(
                "histogram layout exact_below = {}, sub_buckets = {} is not this one's \
                 ({EXACT}, {SUB})",
                s.exact_below, s.sub_buckets
            ));
        }
        let total = s
            .buckets
            .iter()
            .try_fold(0u64, |total, &(_, n)| total.checked_add(n));
        if total != Some(s.count) {
            return Err(format!(
                "histogram bucket counts do not add up to its count {}",
                s.count
            ));
        }
        let mut h = Histogram::new();
        for &(value, n) in &s.buckets {
            h.record_n(value, n);
        }
        if s.count == 0 {
            return if (s.sum, s.min, s.max) == (0, 0, 0) {
                Ok(h)
            } else {
                Err("an empty histogram has a sum, min or max".to_owned())
            };
        }
        // The exact min and max must lie in the lowest and highest slots, and the sum between
        // count times each.
        let count = u128::from(s.count);
        if slot(s.min) != slot(h.min)
            || slot(s.max) != slot(h.max)
            || s.min > s.max
            || s.sum < u128::from(s.min) * count
            || s.sum > u128::from(s.max) * count
        {
            return Err(format!(
                "histogram min {}, max {} or sum {} does not fit its buckets",
                s.min, s.max, s.sum
            ));
        }
        (h.min, h.max, h.sum) = (s.min, s.max, s.sum);
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn slots_are_monotonic_and_bounded() {
        let mut last = 0;
        for v in (0..5000).chain([1 << 20, (1 << 20) + 1, u64::MAX / 2, u64::MAX]) {
            let s = slot(v);
            assert!(s >= last, "slot({v}) = {s} < {last}");
            last = s;
            assert!(
                highest_in(s) >= v,
                "highest_in(slot({v})) = {} < {v}",
                highest_in(s)
            );
        }
        assert_eq!(slot(u64::MAX), 2048 + 52 * 1024 + 1023);
        assert_eq!(highest_in(slot(u64::MAX)), u64::MAX);
    }

    #[test]
    fn small_values_are_exact() {
        let mut h = Histogram::new();
        for v in 1..=1000 {
            h.record(v);
        }
        assert_eq!(h.count(), 1000);
        assert_eq!(h.quantile(0.5), 500);
        assert_eq!(h.quantile(0.99), 990);
        assert_eq!(h.quantile(1.0), 1000);
        assert_eq!(h.min(), 1);
        assert_eq!(h.sum(), 500_500);
    }

    #[test]
    fn merge_equals_recording_both() {
        let mut a = Histogram::new();
        let mut b = Histogram::new();
        let mut both = Histogram::new();
        for v in [5, 3000, 70_000, 1_000_000_007] {
            a.record(v);
            both.record(v);
        }
        for v in [1, 2_500_000, 9] {
            b.record(v);
            both.record(v);
        }
        a.merge(&b);
        for q in [0.0, 0.25, 0.5, 0.9, 1.0] {
            assert_eq!(a.quantile(q), both.quantile(q));
        }
        assert_eq!(
            (a.count(), a.sum(), a.min(), a.max()),
            (both.count(), both.sum(), both.min(), both.max())
        );
    }

    #[test]
    fn reset_keeps_nothing() {
        let mut h = Histogram::new();
        h.record(123_456);
        h.reset();
        assert_eq!(h.count(), 0);
        assert_eq!(h.quantile(0.5), 0);
        h.record(7);
        assert_eq!((h.min(), h.max()), (7, 7));
    }

    #[cfg(feature = "serde")]
    fn roundtrip(h: &Histogram) -> Histogram {
        serde_json::from_str(&serde_json::to_string(h).unwrap()).unwrap()
    }

    #[cfg(feature = "serde")]
    fn same(a: &Histogram, b: &Histogram) {
        assert_eq!(
            (a.count(), a.sum(), a.min(), a.max()),
            (b.count(), b.sum(), b.min(), b.max())
        );
        assert!(a.iter_buckets().eq(b.iter_buckets()));
    }

    #[cfg(feature = "serde")]
    #[test]
    fn serializes_as_its_layout_totals_and_sparse_buckets() {
        let mut h = Histogram::new();
        for v in [20, 100, 1_000_000] {
            h.record(v);
        }
        let json: serde_json::Value = serde_json::to_value(&h).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "exact_below": 2048, "sub_buckets": 1024,
                "count": 3, "sum": 1_000_120, "min": 20, "max": 1_000_000,
                "buckets": [[20, 1], [100, 1], [1_000_447, 1]],
            })
        );
        same(&roundtrip(&h), &h);
        same(&roundtrip(&Histogram::new()), &Histogram::new());
    }

    #[cfg(feature = "serde")]
    #[test]
    fn deserialized_windows_merge_like_the_originals() {
        let windows: Vec<Histogram> = (0..4u64)
            .map(|w| {
                let mut h = Histogram::new();
                for i in 1..=500 {
                    h.record_n(i * i * (w + 1) * 997, i % 3 + 1);
                }
                h
            })
            .collect();
        let (mut merged, mut rebuilt) = (Histogram::new(), Histogram::new());
        for h in &windows {
            merged.merge(h);
            rebuilt.merge(&roundtrip(h));
        }
        same(&rebuilt, &merged);
        for q in [0.0, 0.5, 0.9, 0.99, 0.999, 1.0] {
            assert_eq!(rebuilt.quantile(q), merged.quantile(q));
        }
    }

    #[cfg(feature = "serde")]
    #[test]
    fn deserializing_rejects_another_layout_or_inconsistent_totals() {
        let base = serde_json::json!({
            "exact_below": 2048, "sub_buckets": 1024,
            "count": 2, "sum": 120, "min": 20, "max": 100,
            "buckets": [[20, 1], [100, 1]],
        });
        assert_eq!(
            serde_json::from_value::<Histogram>(base.clone())
                .unwrap()
                .quantile(1.0),
            100
        );
        for (key, value, message) in [
            ("sub_buckets", serde_json::json!(2048), "layout"),
            ("count", serde_json::json!(3), "add up"),
            ("min", serde_json::json!(5), "does not fit"),
            ("sum", serde_json::json!(500), "does not fit"),
        ] {
            let mut bad = base.clone();
            bad[key] = value;
            let err = serde_json::from_value::<Histogram>(bad).unwrap_err();
            assert!(err.to_string().contains(message), "{key}: {err}");
        }
    }

    proptest! {
        // Quantiles agree with the reference HdrHistogram implementation within its precision.
        #[test]
        fn quantiles_match_hdrhistogram(values in proptest::collection::vec(1u64..10_000_000_000, 1..400)) {
            let mut ours = Histogram::new();
            let mut reference = hdrhistogram::Histogram::<u64>::new(3).unwrap();
            for &v in &values {
                ours.record(v);
                reference.record(v).unwrap();
            }
            for q in [0.5, 0.9, 0.99, 0.999, 1.0] {
                let a = ours.quantile(q) as f64;
                let b = reference.value_at_quantile(q) as f64;
                prop_assert!((a - b).abs() <= b / 1000.0 + 1.0, "q={} ours={} reference={}", q, a, b);
            }
            prop_assert_eq!(ours.count(), values.len() as u64);
        }

        // Every quantile is within 1/1024 of an exact order statistic.
        #[test]
        fn quantiles_within_precision_of_exact(mut values in proptest::collection::vec(0u64..u64::MAX / 4, 1..300)) {
            let mut h = Histogram::new();
            for &v in &values {
                h.record(v);
            }
            values.sort_unstable();
            for q in [0.5, 0.9, 0.99, 1.0] {
                let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
                let exact = values[rank - 1] as f64;
                let got = h.quantile(q) as f64;
                prop_assert!(got >= exact && got <= exact + exact / 1024.0 + 1.0, "q={} exact={} got={}", q, exact, got);
            }
        }
    }
}
