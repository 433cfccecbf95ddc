//! Trends: one callsite's calls, errors and latency per hour or day, from its stored windows.

use std::collections::BTreeMap;

use instrument::Histogram;
use serde::Serialize;

use super::runs::outcome_slot;
use super::{QueryError, Store, TimeRange, count, rfc3339};

/// The width of a trend's buckets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Bucket {
    /// UTC hours.
    Hour,
    /// UTC days.
    Day,
    /// Any width, in microseconds (the charts of a report over a short range).
    Micros(i64),
}

impl Bucket {
    /// The width in microseconds (at least 1).
    #[must_use]
    pub fn micros(self) -> i64 {
        match self {
            Bucket::Hour => 3_600_000_000,
            Bucket::Day => 86_400_000_000,
            Bucket::Micros(us) => us.max(1),
        }
    }
}

/// One bucket of a [`Trend`].
#[derive(Clone, Debug, Serialize)]
pub struct TrendBucket {
    /// The bucket's start (UTC).
    pub start: String,
    /// Its end.
    pub end: String,
    /// The start as microseconds since the Unix epoch (for charts).
    #[serde(skip)]
    pub start_us: i64,
    /// Calls whose window started in the bucket.
    pub calls: u64,
    /// Of them, failed (`error` and `panic`).
    pub errors: u64,
    /// `errors / calls`.
    pub error_ratio: f64,
    /// Median of the merged window histograms.
    pub p50_ns: u64,
    /// 99th percentile.
    pub p99_ns: u64,
}

/// One callsite's buckets over a range, from [`Store::trend`].
#[derive(Clone, Debug, Serialize)]
pub struct Trend {
    /// The callsite's name (every callsite of that name, whatever its labels or module, is
    /// merged).
    pub callsite: String,
    /// The bucket width in seconds.
    pub bucket_seconds: i64,
    /// Buckets with calls, oldest first; buckets without calls are left out.
    pub buckets: Vec<TrendBucket>,
}

#[derive(Default)]
struct Acc {
    calls: u64,
    errors: u64,
    histogram: Histogram,
}

impl Store {
    /// The calls of the callsites named `name` in `range`, per `bucket`: a window counts in
    /// the bucket its start falls in (buckets are aligned to the Unix epoch, so hours and days
    /// are UTC ones).
    ///
    /// # Errors
    /// [`QueryError::UnknownCallsite`] when no callsite has that name,
    /// [`QueryError::NoData`] when it has no calls in the range, [`QueryError::Read`],
    /// [`QueryError::BadRow`].
    pub fn trend(&self, name: &str, range: TimeRange, bucket: Bucket) -> Result<Trend, QueryError> {
        let read = self.read();
        let _tx = self.snapshot()?;
        let known: bool = self
            .conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM callsites WHERE name = ?1)",
                [name],
                |row| row.get(0),
            )
            .map_err(&read)?;
        if !known {
            return Err(QueryError::UnknownCallsite {
                path: self.path.clone(),
                name: name.to_owned(),
            });
        }
        let trend = self.trend_of(name, range, bucket)?;
        if trend.buckets.is_empty() {
            return Err(QueryError::NoData {
                path: self.path.clone(),
                what: format!(
                    "no calls of `{name}` from {} to {}",
                    range.since.map_or_else(
                        || "the first window".to_owned(),
                        |t| rfc3339(super::super::micros(t))
                    ),
                    range
                        .until
                        .map_or_else(|| "now".to_owned(), |t| rfc3339(super::super::micros(t))),
                ),
            });
        }
        Ok(trend)
    }

    /// [`Store::trend`] without its checks: empty when nothing is stored.
    pub(super) fn trend_of(
        &self,
        name: &str,
        range: TimeRange,
        bucket: Bucket,
    ) -> Result<Trend, QueryError> {
        let read = self.read();
        let (since, until) = range.bounds();
        let width = bucket.micros();
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT w.id, w.window_start_us, w.outcome, w.count, w.histogram
                 FROM windows w JOIN callsites c ON c.id = w.callsite_id
                 WHERE c.name = ?1 AND w.window_end_us > ?2 AND w.window_start_us < ?3
                 ORDER BY w.id",
            )
            .map_err(&read)?;
        let mut rows = statement.query((name, since, until)).map_err(&read)?;
        let mut buckets: BTreeMap<i64, Acc> = BTreeMap::new();
        while let Some(row) = rows.next().map_err(&read)? {
            let id: i64 = row.get(0).map_err(&read)?;
            let start: i64 = row.get(1).map_err(&read)?;
            let outcome: String = row.get(2).map_err(&read)?;
            let slot = outcome_slot(&outcome)
                .ok_or_else(|| self.bad_row("windows", id, format!("outcome `{outcome}`")))?;
            let calls = count(row, 3, &read)?;
            let histogram = self.histogram(id, row.get_ref(4).map_err(&read)?)?;
            let acc = buckets.entry(start.div_euclid(width) * width).or_default();
            acc.calls = acc.calls.saturating_add(calls);
            if slot == 1 || slot == 2 {
                acc.errors = acc.errors.saturating_add(calls);
            }
            acc.histogram.merge(&histogram);
        }
        Ok(Trend {
            callsite: name.to_owned(),
            bucket_seconds: width / 1_000_000,
            buckets: buckets
                .into_iter()
                .map(|(start, acc)| TrendBucket {
                    start: rfc3339(start),
                    end: rfc3339(start.saturating_add(width)),
                    start_us: start,
                    calls: acc.calls,
                    errors: acc.errors,
                    error_ratio: if acc.calls == 0 {
                        0.0
                    } else {
                        acc.errors as f64 / acc.calls as f64
                    },
                    p50_ns: acc.histogram.quantile(0.5),
                    p99_ns: acc.histogram.quantile(0.99),
                })
                .collect(),
        })
    }
}
