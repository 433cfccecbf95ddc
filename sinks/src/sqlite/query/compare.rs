//! Comparing two runs callsite by callsite, with a verdict that accounts for sample size.
//!
//! # The verdict rule
//! For each timed callsite both runs called, from the runs' merged window histograms (every
//! timed call, within the histogram's 1/1024 precision):
//!
//! - **Latency.** A two-sided Mann–Whitney U test of B's durations against A's: the
//!   histograms' buckets are the ranked values (calls in one bucket are ties and share their
//!   mean rank), `z` is the normal approximation with the tie correction and a continuity
//!   correction of 0.5, and `p = 2 (1 − Φ(|z|))`. Latency `regressed` when `p < alpha` (default
//!   0.01), B ranks above A (`z > 0`) and B's median is at least `min_change` (default 5%)
//!   above A's; `improved` symmetrically; otherwise `unchanged`.
//! - **Errors.** A two-proportion z-test of B's error ratio (`error` and `panic` outcomes over
//!   all calls) against A's, pooled variance. Errors `regressed` when `p < alpha` and B's ratio
//!   is at least `min_error_change` (default 0.01, one percentage point) above A's;
//!   `improved` symmetrically.
//! - Either side with fewer than `min_calls` (default 10) calls (timed calls, for latency):
//!   `unchanged`, too few calls to tell.
//!
//! The callsite's verdict is `regressed` if either test regressed, else `improved` if either
//! improved, else `unchanged`. A callsite only one run called is `added` (only in B) or
//! `removed` (only in A). So a change is reported only when it is both unlikely to be noise at
//! the runs' sample sizes (large samples make small shifts significant) and large enough to
//! matter (the minimum effect keeps a significant 1% shift `unchanged`).
//!
//! Limits: the test is about the bulk of the distribution; a change confined to the slowest
//! 1% of calls shows in `p99_change` but moves the verdict only when it moves the ranks enough.
//! Calls of a run are treated as independent samples, which calls that share a cause of delay
//! (a slow disk for a while) are not, so `p` is optimistic for such runs.

use instrument::Histogram;
use serde::Serialize;
use serde_json::Value;

use super::runs::RunScope;
use super::{Acc, QueryError, RunRecord, Store};

/// The thresholds of the verdict rule.
///
/// For each timed callsite both runs called, from the runs' merged window histograms:
/// - **latency**: a two-sided Mann–Whitney U test of B's durations against A's (histogram
///   buckets as ranked values, ties sharing their mean rank, normal approximation with tie and
///   continuity corrections); `regressed` when `p < alpha`, B ranks above A and B's median is
///   at least `min_change` above A's; `improved` symmetrically;
/// - **errors**: a two-proportion z-test of the error ratios; `regressed` when `p < alpha`
///   and B's ratio is at least `min_error_change` above A's; `improved` symmetrically;
/// - fewer than `min_calls` calls on either side: `unchanged`.
///
/// The callsite regressed if either test did, else improved if either did, else it is
/// unchanged; see `docs/instrumentctl.md` for the reasoning and the limits.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct VerdictRule {
    /// The significance level of both tests (default 0.01).
    pub alpha: f64,
    /// The smallest relative change of the median that counts (default 0.05).
    pub min_change: f64,
    /// The smallest change of the error ratio that counts, in ratio units (default 0.01).
    pub min_error_change: f64,
    /// The fewest calls on each side for a test to be made (default 10).
    pub min_calls: u64,
}

impl Default for VerdictRule {
    fn default() -> Self {
        VerdictRule {
            alpha: 0.01,
            min_change: 0.05,
            min_error_change: 0.01,
            min_calls: 10,
        }
    }
}

/// What changed from A to B.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Slower or failing more, beyond noise and the minimum effect.
    Regressed,
    /// Faster or failing less, beyond noise and the minimum effect.
    Improved,
    /// Within noise, below the minimum effect, or too few calls to tell.
    Unchanged,
    /// Called in B only.
    Added,
    /// Called in A only.
    Removed,
}

impl Verdict {
    /// `regressed`, `improved`, `unchanged`, `added` or `removed`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Regressed => "regressed",
            Verdict::Improved => "improved",
            Verdict::Unchanged => "unchanged",
            Verdict::Added => "added",
            Verdict::Removed => "removed",
        }
    }
}

/// The latency test of one callsite: see the [rule](VerdictRule).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LatencyTest {
    /// Timed calls of A and of B.
    pub calls: [u64; 2],
    /// Mann–Whitney U of B (how often a call of B was slower than one of A, ties half).
    pub u: f64,
    /// Its normal approximation; positive when B is slower.
    pub z: f64,
    /// Two-sided p-value.
    pub p_value: f64,
    /// `(median B − median A) / median A`; `null` when A's median is 0.
    pub median_change: Option<f64>,
    /// The verdict of this test alone.
    pub verdict: Verdict,
    /// Why, in words.
    pub reason: String,
}

/// The error test of one callsite: see the [rule](VerdictRule).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ErrorTest {
    /// Calls of A and of B.
    pub calls: [u64; 2],
    /// Failed calls of A and of B.
    pub errors: [u64; 2],
    /// The two-proportion z; positive when B fails more.
    pub z: f64,
    /// Two-sided p-value (1 when neither or both runs always fail).
    pub p_value: f64,
    /// Error ratio of B minus that of A.
    pub change: f64,
    /// The verdict of this test alone.
    pub verdict: Verdict,
    /// Why, in words.
    pub reason: String,
}

/// One run's side of a [`CallsiteComparison`].
#[derive(Clone, Debug, Serialize)]
pub struct Side {
    /// Calls, whatever their outcome.
    pub calls: u64,
    /// Failed calls (`error` and `panic`).
    pub errors: u64,
    /// `errors / calls`.
    pub error_ratio: f64,
    /// Calls with a duration.
    pub timed: u64,
    /// Median of the merged histogram.
    pub p50_ns: u64,
    /// 90th percentile.
    pub p90_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
}

/// One callsite in A and B, from [`Store::compare`].
#[derive(Clone, Debug, Serialize)]
pub struct CallsiteComparison {
    /// The callsite's name.
    pub name: String,
    /// Its module.
    pub module: String,
    /// Its kind.
    pub kind: String,
    /// Its labels.
    pub labels: Value,
    /// In run A, `null` when A did not call it.
    pub a: Option<Side>,
    /// In run B, `null` when B did not call it.
    pub b: Option<Side>,
    /// Relative changes of p50, p90 and p99, `(B − A) / A`; `null` where A's is 0 or a side
    /// is missing.
    pub p50_change: Option<f64>,
    /// See `p50_change`.
    pub p90_change: Option<f64>,
    /// See `p50_change`.
    pub p99_change: Option<f64>,
    /// B's error ratio minus A's.
    pub error_ratio_change: Option<f64>,
    /// The latency test, when both runs called it.
    pub latency: Option<LatencyTest>,
    /// The error test, when both runs called it.
    pub errors: Option<ErrorTest>,
    /// The callsite's verdict.
    pub verdict: Verdict,
}

/// Two runs compared, from [`Store::compare`].
#[derive(Clone, Debug, Serialize)]
pub struct Comparison {
    /// Run A (the baseline).
    pub a: RunRecord,
    /// Run B.
    pub b: RunRecord,
    /// The thresholds used.
    pub rule: VerdictRule,
    /// `regressed` if any callsite regressed, else `improved` if any improved, else
    /// `unchanged`.
    pub verdict: Verdict,
    /// Callsites that regressed.
    pub regressed: usize,
    /// Callsites that improved.
    pub improved: usize,
    /// One entry per timed callsite either run called, by name, module, kind and labels.
    pub callsites: Vec<CallsiteComparison>,
}

impl Store {
    /// Compares run `b` with run `a` per callsite under `rule` (see the [rule](VerdictRule)).
    ///
    /// # Errors
    /// [`QueryError::UnknownRun`], [`QueryError::NoData`] when neither run has calls,
    /// [`QueryError::Read`], [`QueryError::BadRow`].
    pub fn compare(&self, a: i64, b: i64, rule: VerdictRule) -> Result<Comparison, QueryError> {
        let _tx = self.snapshot()?;
        let (scope_a, scope_b) = (self.run_scope(a)?, self.run_scope(b)?);
        self.compare_scopes(&scope_a, &scope_b, rule)
    }

    pub(super) fn compare_scopes(
        &self,
        scope_a: &RunScope,
        scope_b: &RunScope,
        rule: VerdictRule,
    ) -> Result<Comparison, QueryError> {
        let mut stats_a = self.run_callsites(scope_a)?;
        let stats_b = self.run_callsites(scope_b)?;
        if stats_a.is_empty() && stats_b.is_empty() {
            return Err(QueryError::NoData {
                path: self.path.clone(),
                what: format!(
                    "neither run {} nor run {} recorded calls of a timed callsite",
                    scope_a.id, scope_b.id
                ),
            });
        }
        let mut callsites = Vec::new();
        for (key, b) in stats_b {
            let a = stats_a.remove(&key);
            callsites.push(compare_callsite(key, a, Some(b), rule));
        }
        for (key, a) in stats_a {
            callsites.push(compare_callsite(key, Some(a), None, rule));
        }
        callsites.sort_by(|x, y| {
            (&x.name, &x.module, &x.kind, x.labels.to_string()).cmp(&(
                &y.name,
                &y.module,
                &y.kind,
                y.labels.to_string(),
            ))
        });
        let count = |v: Verdict| callsites.iter().filter(|c| c.verdict == v).count();
        let (regressed, improved) = (count(Verdict::Regressed), count(Verdict::Improved));
        let verdict = if regressed > 0 {
            Verdict::Regressed
        } else if improved > 0 {
            Verdict::Improved
        } else {
            Verdict::Unchanged
        };
        Ok(Comparison {
            a: self.run_record(scope_a)?,
            b: self.run_record(scope_b)?,
            rule,
            verdict,
            regressed,
            improved,
            callsites,
        })
    }
}

fn side(acc: &Acc) -> Side {
    let calls = acc.outcomes.iter().fold(0u64, |s, c| s.saturating_add(*c));
    let errors = acc.outcomes[1].saturating_add(acc.outcomes[2]);
    Side {
        calls,
        errors,
        error_ratio: ratio(errors, calls),
        timed: acc.histogram.count(),
        p50_ns: acc.histogram.quantile(0.5),
        p90_ns: acc.histogram.quantile(0.9),
        p99_ns: acc.histogram.quantile(0.99),
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

fn relative(a: u64, b: u64) -> Option<f64> {
    (a > 0).then(|| (b as f64 - a as f64) / a as f64)
}

fn compare_callsite(
    (name, module, kind, labels): (String, String, String, String),
    a: Option<Acc>,
    b: Option<Acc>,
    rule: VerdictRule,
) -> CallsiteComparison {
    let labels_value = a
        .as_ref()
        .or(b.as_ref())
        .map_or(Value::Null, |acc| acc.labels.clone());
    let _ = labels;
    let (side_a, side_b) = (a.as_ref().map(side), b.as_ref().map(side));
    let mut comparison = CallsiteComparison {
        name,
        module,
        kind,
        labels: labels_value,
        a: side_a.clone(),
        b: side_b.clone(),
        p50_change: None,
        p90_change: None,
        p99_change: None,
        error_ratio_change: None,
        latency: None,
        errors: None,
        verdict: if a.is_some() {
            Verdict::Removed
        } else {
            Verdict::Added
        },
    };
    let (Some(a), Some(b), Some(sa), Some(sb)) = (a, b, side_a, side_b) else {
        return comparison;
    };
    comparison.p50_change = relative(sa.p50_ns, sb.p50_ns);
    comparison.p90_change = relative(sa.p90_ns, sb.p90_ns);
    comparison.p99_change = relative(sa.p99_ns, sb.p99_ns);
    comparison.error_ratio_change = Some(sb.error_ratio - sa.error_ratio);
    let latency = latency_test(&a.histogram, &b.histogram, rule);
    let errors = error_test([sa.calls, sb.calls], [sa.errors, sb.errors], rule);
    comparison.verdict = combine(latency.verdict, errors.verdict);
    comparison.latency = Some(latency);
    comparison.errors = Some(errors);
    comparison
}

/// `regressed` if either is, else `improved` if either is, else `unchanged`.
fn combine(x: Verdict, y: Verdict) -> Verdict {
    if x == Verdict::Regressed || y == Verdict::Regressed {
        Verdict::Regressed
    } else if x == Verdict::Improved || y == Verdict::Improved {
        Verdict::Improved
    } else {
        Verdict::Unchanged
    }
}

/// The latency half of the [rule](VerdictRule): a Mann–Whitney U test of `b` against `a`, and the
/// change of the median.
#[must_use]
pub fn latency_test(a: &Histogram, b: &Histogram, rule: VerdictRule) -> LatencyTest {
    let (na, nb) = (a.count(), b.count());
    let median_change = relative(a.quantile(0.5), b.quantile(0.5));
    let mut test = LatencyTest {
        calls: [na, nb],
        u: 0.0,
        z: 0.0,
        p_value: 1.0,
        median_change,
        verdict: Verdict::Unchanged,
        reason: String::new(),
    };
    if na < rule.min_calls || nb < rule.min_calls {
        test.reason = format!(
            "too few timed calls to tell ({na} and {nb}; {} each needed)",
            rule.min_calls
        );
        return test;
    }
    // Ranks over both samples, bucket by bucket in increasing value; a bucket's calls tie.
    let (mut ia, mut ib) = (a.iter_buckets().peekable(), b.iter_buckets().peekable());
    let (mut rank, mut rank_sum_b, mut ties) = (0.0_f64, 0.0_f64, 0.0_f64);
    loop {
        let value = match (ia.peek(), ib.peek()) {
            (None, None) => break,
            (Some(&(va, _)), None) => va,
            (None, Some(&(vb, _))) => vb,
            (Some(&(va, _)), Some(&(vb, _))) => va.min(vb),
        };
        let ca = ia.next_if(|&(v, _)| v == value).map_or(0, |(_, c)| c) as f64;
        let cb = ib.next_if(|&(v, _)| v == value).map_or(0, |(_, c)| c) as f64;
        let t = ca + cb;
        // The mean of the ranks rank + 1 ..= rank + t.
        rank_sum_b += cb * (rank + f64::midpoint(t, 1.0));
        ties += t * t * t - t;
        rank += t;
    }
    let (size_a, size_b) = (na as f64, nb as f64);
    let total = size_a + size_b;
    let u_b = rank_sum_b - size_b * (size_b + 1.0) / 2.0;
    let mean = size_a * size_b / 2.0;
    let variance = size_a * size_b / 12.0 * ((total + 1.0) - ties / (total * (total - 1.0)));
    test.u = u_b;
    if variance <= 0.0 {
        // Every call of both runs in one bucket: nothing to tell apart.
        "every call of both runs took the same time".clone_into(&mut test.reason);
        return test;
    }
    let shifted = (u_b - mean).abs() - 0.5;
    let z = (shifted.max(0.0) / variance.sqrt()).copysign(u_b - mean);
    test.z = z;
    test.p_value = two_sided_p(z);
    let change = median_change.unwrap_or(0.0);
    let percent = change * 100.0;
    if test.p_value >= rule.alpha {
        test.reason = format!(
            "within noise (p = {:.3} >= {}; median {percent:+.1}%)",
            test.p_value, rule.alpha
        );
    } else if z > 0.0 && change >= rule.min_change {
        test.verdict = Verdict::Regressed;
        test.reason = format!(
            "slower (p = {:.2e}; median {percent:+.1}% >= {:.1}%)",
            test.p_value,
            rule.min_change * 100.0
        );
    } else if z < 0.0 && change <= -rule.min_change {
        test.verdict = Verdict::Improved;
        test.reason = format!("faster (p = {:.2e}; median {percent:+.1}%)", test.p_value);
    } else {
        test.reason = format!(
            "significant (p = {:.2e}) but the median moved {percent:+.1}%, under {:.1}%",
            test.p_value,
            rule.min_change * 100.0
        );
    }
    test
}

/// The error half of the [rule](VerdictRule): a two-proportion z-test of `errors[1] / calls[1]`
/// against `errors[0] / calls[0]`.
#[must_use]
pub fn error_test(calls: [u64; 2], errors: [u64; 2], rule: VerdictRule) -> ErrorTest {
    let (ra, rb) = (ratio(errors[0], calls[0]), ratio(errors[1], calls[1]));
    let change = rb - ra;
    let mut test = ErrorTest {
        calls,
        errors,
        z: 0.0,
        p_value: 1.0,
        change,
        verdict: Verdict::Unchanged,
        reason: String::new(),
    };
    if calls[0] < rule.min_calls || calls[1] < rule.min_calls {
        test.reason = format!(
            "too few calls to tell ({} and {}; {} each needed)",
            calls[0], calls[1], rule.min_calls
        );
        return test;
    }
    let (na, nb) = (calls[0] as f64, calls[1] as f64);
    let pooled = (errors[0] as f64 + errors[1] as f64) / (na + nb);
    let se = (pooled * (1.0 - pooled) * (1.0 / na + 1.0 / nb)).sqrt();
    if se == 0.0 {
        test.reason = if pooled == 0.0 {
            "no errors in either run".to_owned()
        } else {
            "every call failed in both runs".to_owned()
        };
        return test;
    }
    test.z = change / se;
    test.p_value = two_sided_p(test.z);
    let points = change * 100.0;
    if test.p_value >= rule.alpha {
        test.reason = format!(
            "within noise (p = {:.3} >= {}; {points:+.2} points)",
            test.p_value, rule.alpha
        );
    } else if change >= rule.min_error_change {
        test.verdict = Verdict::Regressed;
        test.reason = format!(
            "more errors (p = {:.2e}; {points:+.2} points)",
            test.p_value
        );
    } else if change <= -rule.min_error_change {
        test.verdict = Verdict::Improved;
        test.reason = format!(
            "fewer errors (p = {:.2e}; {points:+.2} points)",
            test.p_value
        );
    } else {
        test.reason = format!(
            "significant (p = {:.2e}) but {points:+.2} points, under {:.2}",
            test.p_value,
            rule.min_error_change * 100.0
        );
    }
    test
}

/// `2 (1 − Φ(|z|))`.
fn two_sided_p(z: f64) -> f64 {
    erfc(z.abs() / std::f64::consts::SQRT_2).min(1.0)
}

/// The complementary error function, with a fractional error below 1.2e-7 everywhere
/// (Numerical Recipes' `erfcc`, a Chebyshev fit).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A histogram of `values`, each recorded `times` times.
    fn histogram(values: impl IntoIterator<Item = u64>, times: u64) -> Histogram {
        let mut h = Histogram::new();
        for v in values {
            h.record_n(v, times);
        }
        h
    }

    /// A deterministic spread around `center`: 1,000 values from 0.8 to 1.2 times it, from a
    /// linear congruential sequence seeded with `seed`.
    fn noisy(center: u64, seed: u64, n: usize) -> Histogram {
        let mut x = seed;
        let mut h = Histogram::new();
        for _ in 0..n {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
            h.record((center as f64 * (0.8 + 0.4 * unit)) as u64);
        }
        h
    }

    #[test]
    fn the_normal_tail_is_right() {
        assert!((two_sided_p(0.0) - 1.0).abs() < 1e-6);
        assert!((two_sided_p(1.959_964) - 0.05).abs() < 1e-6);
        assert!((two_sided_p(-2.575_829) - 0.01).abs() < 1e-6);
        assert!((two_sided_p(3.290_527) - 0.001).abs() < 1e-7);
    }

    #[test]
    fn u_counts_pairs_and_ties_count_half() {
        // A = {1, 2, 3}, B = {2, 4, 5}: B beats A in 3 + 3 + 1.5 = 7.5 of 9 pairs.
        let rule = VerdictRule {
            min_calls: 1,
            ..VerdictRule::default()
        };
        let test = latency_test(&histogram([1, 2, 3], 1), &histogram([2, 4, 5], 1), rule);
        assert!((test.u - 7.5).abs() < 1e-9, "{test:?}");
        assert!(test.z > 0.0);
    }

    #[test]
    fn a_delay_well_past_the_noise_regresses_and_its_removal_improves() {
        let rule = VerdictRule::default();
        let a = noisy(1_000_000, 1, 500);
        let b = noisy(1_200_000, 2, 500);
        let slower = latency_test(&a, &b, rule);
        assert_eq!(slower.verdict, Verdict::Regressed, "{slower:?}");
        assert!(slower.p_value < 1e-10);
        let faster = latency_test(&b, &a, rule);
        assert_eq!(faster.verdict, Verdict::Improved, "{faster:?}");
    }

    #[test]
    fn two_samples_of_one_distribution_are_unchanged() {
        let rule = VerdictRule::default();
        for seed in 0..20 {
            let test = latency_test(
                &noisy(1_000_000, seed, 300),
                &noisy(1_000_000, seed + 100, 300),
                rule,
            );
            assert_eq!(test.verdict, Verdict::Unchanged, "seed {seed}: {test:?}");
        }
    }

    #[test]
    fn a_significant_shift_below_the_minimum_effect_is_unchanged() {
        // 2% slower, every one of 100,000 calls: certainly real, too small to count.
        let rule = VerdictRule::default();
        let a = histogram((0..1000).map(|i| 1_000_000 + i * 100), 100);
        let b = histogram((0..1000).map(|i| 1_020_000 + i * 100), 100);
        let test = latency_test(&a, &b, rule);
        assert!(test.p_value < 1e-10, "{test:?}");
        assert_eq!(test.verdict, Verdict::Unchanged);
        assert!(test.reason.contains("under 5.0%"), "{}", test.reason);
    }

    #[test]
    fn a_large_change_in_few_calls_is_unchanged() {
        let rule = VerdictRule::default();
        // Nine calls each: fewer than the minimum.
        let test = latency_test(&histogram([1_000; 9], 1), &histogram([9_000; 9], 1), rule);
        assert_eq!(test.verdict, Verdict::Unchanged);
        assert!(test.reason.contains("too few"), "{}", test.reason);
        // Ten calls each, overlapping: a doubling of the median, not significant at 0.01.
        let a = histogram([100, 200, 300, 400, 500, 600, 700, 800, 900, 1000], 1);
        let b = histogram([150, 250, 350, 450, 950, 1050, 1150, 1250, 1350, 1450], 1);
        let test = latency_test(&a, &b, rule);
        assert!(test.median_change.unwrap() > 0.5);
        assert_eq!(test.verdict, Verdict::Unchanged, "{test:?}");
    }

    #[test]
    fn error_ratios_are_tested_as_proportions() {
        let rule = VerdictRule::default();
        // 1% to 5% of 2,000 calls: regressed.
        let test = error_test([2000, 2000], [20, 100], rule);
        assert_eq!(test.verdict, Verdict::Regressed, "{test:?}");
        // 1% to 1.5% of 2,000 calls: within noise.
        let test = error_test([2000, 2000], [20, 30], rule);
        assert_eq!(test.verdict, Verdict::Unchanged, "{test:?}");
        // 1% to 1.5% of 10 million calls: significant, under one point.
        let test = error_test([10_000_000, 10_000_000], [100_000, 150_000], rule);
        assert!(test.p_value < 1e-10);
        assert_eq!(test.verdict, Verdict::Unchanged, "{test:?}");
        // 10% to 0%: improved.
        let test = error_test([500, 500], [50, 0], rule);
        assert_eq!(test.verdict, Verdict::Improved, "{test:?}");
        // No errors anywhere.
        let test = error_test([500, 500], [0, 0], rule);
        assert_eq!((test.verdict, test.p_value), (Verdict::Unchanged, 1.0));
    }

    #[test]
    fn either_regression_makes_the_callsite_regress() {
        use Verdict::{Improved, Regressed, Unchanged};
        assert_eq!(combine(Regressed, Improved), Regressed);
        assert_eq!(combine(Unchanged, Regressed), Regressed);
        assert_eq!(combine(Improved, Unchanged), Improved);
        assert_eq!(combine(Unchanged, Unchanged), Unchanged);
    }
}
