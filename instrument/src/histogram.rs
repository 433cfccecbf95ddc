//! A sparse HDR histogram of nanosecond durations, 3 significant digits.
//!
//! Layout (the `HdrHistogram` layout with `lowest = 1`, `sigfig = 3`): values below 2048 get one
//! exact slot each; each octave `[2^e, 2^(e+1))` above that is split into 1024 equal sub-buckets,
//! so any recorded value is reported within 1/1024 of itself. The slot index of `v >= 2048` is
//! `2048 + (e - 11) * 1024 + ((v >> (e - 10)) - 1024)` where `e = floor(log2 v)`.
//!
//! Unlike a dense HDR histogram (about 270 KiB for a 1 ns .. 1 h range), slots live in chunks
//! of 256 that are allocated on first use: a function whose durations span a few octaves costs a
//! few KiB. That is what keeps 100 callsites x outcomes x (window + total) inside the memory
//! budget.

const EXACT: u64 = 2048;
const SUB_BITS: u32 = 10;
const SUB: u64 = 1 << SUB_BITS;
const CHUNK: usize = 256;

/// A histogram of `u64` values (nanoseconds) with count, sum, min, max and quantiles.
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
