//! Prometheus recording and alerting rules for the callsites of a pipeline, over the series the
//! Prometheus sink exports (`<prefix>_calls_total` and `<prefix>_duration_seconds_bucket`, see
//! `docs/prometheus.md`); `instrumentctl prometheus rules` prints them for every timed callsite
//! of a store.
//!
//! Two objectives per callsite, each with a default that [`RulesConfig`] overrides for all
//! callsites or for one:
//! - **errors**: at most [`error_ratio`](Objective::error_ratio) of the calls fail (outcome
//!   `error` or `panic`); default 5 %.
//! - **latency**: 99 % of the calls end within [`p99`](Objective::p99); default 500 ms. It must
//!   be one of the histogram's bucket bounds (the sink's [`DEFAULT_BUCKETS`] unless told
//!   otherwise), because the share of slower calls is read from that bucket.
//!
//! The rules:
//! - group `instrument-recording`, for all callsites at once, per `job`, `function` and
//!   `module`: calls per second (`job_function:<prefix>_calls:rate<W>`), the error ratio
//!   (`job_function:<prefix>_call_errors:ratio_rate<W>`, 0 while there are calls and no
//!   errors) over 5m, 30m, 1h, 6h and the configured window, and the p50 and p99 latency over
//!   the window (`job_function:<prefix>_duration_seconds:p99_rate<W>`, by
//!   `histogram_quantile` over the buckets);
//! - a group per callsite, `instrument-callsite <name>` (and the module, for a name that several
//!   modules' callsites share): the share
//!   of calls slower than its latency objective over the four burn-rate windows
//!   (`job_function:<prefix>_slow_calls:ratio_rate<W>`), then its alerts:
//!   - `InstrumentErrorRatioHigh`: the error ratio over the window above the objective, for
//!     [`for_duration`](RulesConfig::for_duration) (default 30 s); severity `warning`;
//!   - `InstrumentLatencyHigh`: the p99 over the window above the objective, as long;
//!     `warning`;
//!   - `InstrumentErrorBudgetBurn` and `InstrumentLatencyBudgetBurn`, the multi-window burn
//!     rates of the objectives (as in Google's SRE workbook): 14.4 times the budget over both
//!     1h and 5m (for 2m, severity `critical`: 2 % of a 30-day budget in an hour), and 6 times
//!     over both 6h and 30m (for 15m, `warning`). A burn-rate alert whose threshold would be a
//!     ratio of 1 or more can never fire (an error objective above 1/14.4); it is left out, and
//!     [`Rules::notes`] says so.
//!
//! ```
//! use instrument_sinks::rules::{Callsite, RulesConfig};
//!
//! let callsites = [Callsite::new("etl::parse", "etl")];
//! let rules = RulesConfig::default().rules(&callsites)?;
//! let yaml = rules.to_yaml();
//! assert!(yaml.contains("alert: InstrumentErrorRatioHigh"));
//! assert!(yaml.contains(r#"instrument_duration_seconds_bucket{function="etl::parse",module="etl",le="0.5"}"#));
//! # Ok::<(), instrument_sinks::rules::RulesError>(())
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

pub use crate::buckets::DEFAULT_BUCKETS;

/// The windows of the burn-rate alerts: (long, short, burn factor, `for`, severity).
const BURN_RATES: [(Duration, Duration, f64, Duration, &str); 2] = [
    (
        Duration::from_secs(3600),
        Duration::from_secs(300),
        14.4,
        Duration::from_secs(120),
        "critical",
    ),
    (
        Duration::from_secs(6 * 3600),
        Duration::from_secs(1800),
        6.0,
        Duration::from_secs(900),
        "warning",
    ),
];

/// The share of calls a p99 objective allows to be slower.
const P99_BUDGET: f64 = 0.01;

/// Why rules could not be made from a configuration.
#[derive(Debug, thiserror::Error, PartialEq)]
#[non_exhaustive]
pub enum RulesError {
    /// An error ratio outside `0 < ratio < 1`.
    #[error("invalid error ratio {ratio} for {scope}: give a ratio between 0 and 1, such as 0.05")]
    ErrorRatio {
        /// `all callsites` or `callsite NAME`.
        scope: String,
        /// The ratio given.
        ratio: f64,
    },
    /// A latency objective that is not a bucket bound.
    #[error(
        "the p99 objective {given} for {scope} is not a bucket bound of \
         {prefix}_duration_seconds ({bounds}): choose one of them, or give the sink's buckets"
    )]
    NotABucket {
        /// `all callsites` or `callsite NAME`.
        scope: String,
        /// The objective, as written.
        given: String,
        /// The metric prefix.
        prefix: String,
        /// The bucket bounds, as written.
        bounds: String,
    },
    /// A window or `for` duration of zero, or one finer than a millisecond.
    #[error("invalid {what} {given}: give a whole number of milliseconds, at least 1ms")]
    Duration {
        /// `window`, `for` or `bucket`.
        what: &'static str,
        /// The duration, as written.
        given: String,
    },
    /// A prefix that cannot start a metric name.
    #[error("invalid metric prefix {0:?}: it must match [a-zA-Z_:][a-zA-Z0-9_:]*")]
    Prefix(String),
    /// An override names a callsite that is not among those given.
    #[error("{flag} names `{name}`, which is not a timed callsite of the store")]
    UnknownCallsite {
        /// What set the override (`--error-ratio-for`, ...), or `override`.
        flag: String,
        /// The name.
        name: String,
    },
}

/// A timed callsite to write rules for: its Prometheus `function` and `module` labels.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Callsite {
    /// The callsite's name (`function`).
    pub name: String,
    /// Its module path (`module`; empty for a callsite registered at run time).
    pub module: String,
}

impl Callsite {
    /// A callsite named `name` in `module`.
    #[must_use]
    pub fn new(name: impl Into<String>, module: impl Into<String>) -> Self {
        Callsite {
            name: name.into(),
            module: module.into(),
        }
    }
}

/// The objectives of a callsite; `None` takes the configuration's default.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Objective {
    /// The error ratio allowed, `0 < ratio < 1`.
    pub error_ratio: Option<f64>,
    /// The duration 99 % of calls must end within; a bucket bound.
    pub p99: Option<Duration>,
}

/// What the rules are written for. `Default` is the defaults listed in the [module docs](self).
#[derive(Clone, Debug)]
pub struct RulesConfig {
    /// The prefix the Prometheus sink was built with (default `instrument`).
    pub prefix: String,
    /// The objectives of every callsite that has no override.
    pub objective: Objective,
    /// Per callsite name: objectives that replace the defaults (each field that is `Some`).
    pub overrides: BTreeMap<String, Objective>,
    /// The window of the threshold alerts and of the p50/p99 recording rules (default 5m).
    pub window: Duration,
    /// How long a threshold alert's condition must hold before it fires (default 30s).
    pub for_duration: Duration,
    /// The sink's histogram buckets (default [`DEFAULT_BUCKETS`]).
    pub buckets: Vec<Duration>,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            prefix: "instrument".to_owned(),
            objective: Objective {
                error_ratio: Some(0.05),
                p99: Some(Duration::from_millis(500)),
            },
            overrides: BTreeMap::new(),
            window: Duration::from_secs(300),
            for_duration: Duration::from_secs(30),
            buckets: DEFAULT_BUCKETS.to_vec(),
        }
    }
}

/// A Prometheus rule file: its groups, in the order Prometheus evaluates them.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RuleFile {
    /// The rule groups.
    pub groups: Vec<RuleGroup>,
}

/// A group of rules, evaluated in order.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct RuleGroup {
    /// Its name, unique in the file.
    pub name: String,
    /// Its rules.
    pub rules: Vec<Rule>,
}

/// A recording or an alerting rule.
#[derive(Clone, Debug, Serialize, PartialEq)]
#[serde(untagged)]
pub enum Rule {
    /// A recording rule.
    Record {
        /// The name of the series it records.
        record: String,
        /// The `PromQL` expression.
        expr: String,
        /// Labels set on what it records: a per-callsite rule's `function` and `module`,
        /// which its expression keeps anyway (they tell its rule apart from the other
        /// callsites' rules of the same name, as `promtool`'s duplicate check wants).
        #[serde(skip_serializing_if = "BTreeMap::is_empty")]
        labels: BTreeMap<String, String>,
    },
    /// An alerting rule.
    Alert {
        /// The alert's name.
        alert: String,
        /// The `PromQL` expression; the alert is active for each series it returns.
        expr: String,
        /// How long it must be active before it fires.
        #[serde(rename = "for")]
        for_duration: String,
        /// Labels added to the alert: `severity`, and the callsite's `function` and `module`
        /// (which its expression keeps anyway).
        labels: BTreeMap<String, String>,
        /// `summary` and `description`, Go templates.
        annotations: BTreeMap<String, String>,
    },
}

/// The rules for a set of callsites, and what could not be written.
#[derive(Clone, Debug, PartialEq)]
pub struct Rules {
    /// The rule file.
    pub file: RuleFile,
    /// Rules left out and why, one line each.
    pub notes: Vec<String>,
}

impl Rules {
    /// The rule file as YAML, as Prometheus' `rule_files` reads it.
    ///
    /// # Panics
    /// Never: the file holds only strings, maps and lists.
    #[must_use]
    pub fn to_yaml(&self) -> String {
        serde_norway::to_string(&self.file).expect("rule files serialize")
    }
}

impl RulesConfig {
    /// The rules for `callsites` (each `(name, module)` once; order kept).
    ///
    /// # Errors
    /// [`RulesError`]: a bad ratio, duration or prefix, a p99 objective that is not a bucket
    /// bound, or an override naming none of `callsites`.
    pub fn rules(&self, callsites: &[Callsite]) -> Result<Rules, RulesError> {
        self.check(callsites)?;
        let mut seen = std::collections::BTreeSet::new();
        let callsites: Vec<&Callsite> = callsites.iter().filter(|c| seen.insert(*c)).collect();
        let mut notes = Vec::new();
        let mut groups = vec![self.recording()];
        let mut names = std::collections::BTreeSet::new();
        for callsite in callsites {
            // Group names are unique in a file: a name shared by callsites of several modules
            // says which module.
            let mut who = callsite.name.clone();
            if !names.insert(who.clone()) {
                who = format!("{} (module \"{}\")", callsite.name, callsite.module);
                names.insert(who.clone());
            }
            groups.push(self.callsite_group(callsite, &who, &mut notes));
        }
        Ok(Rules {
            file: RuleFile { groups },
            notes,
        })
    }

    fn check(&self, callsites: &[Callsite]) -> Result<(), RulesError> {
        if !is_metric_name(&self.prefix) {
            return Err(RulesError::Prefix(self.prefix.clone()));
        }
        for (what, d) in [("window", self.window), ("for", self.for_duration)] {
            if d.as_millis() == 0 || d.subsec_nanos() % 1_000_000 != 0 {
                return Err(RulesError::Duration {
                    what,
                    given: humantime::format_duration(d).to_string(),
                });
            }
        }
        for bound in &self.buckets {
            if bound.is_zero() {
                return Err(RulesError::Duration {
                    what: "bucket",
                    given: "0s".to_owned(),
                });
            }
        }
        let scopes = std::iter::once(("all callsites".to_owned(), self.objective)).chain(
            self.overrides
                .iter()
                .map(|(name, o)| (format!("callsite {name}"), *o)),
        );
        for (scope, objective) in scopes {
            if let Some(ratio) = objective.error_ratio
                && !(ratio > 0.0 && ratio < 1.0)
            {
                return Err(RulesError::ErrorRatio { scope, ratio });
            }
            if let Some(p99) = objective.p99
                && !self.buckets.contains(&p99)
            {
                let mut bounds = self.buckets.clone();
                bounds.sort_unstable();
                bounds.dedup();
                let bounds: Vec<String> = bounds
                    .iter()
                    .map(|b| humantime::format_duration(*b).to_string())
                    .collect();
                return Err(RulesError::NotABucket {
                    scope,
                    given: humantime::format_duration(p99).to_string(),
                    prefix: self.prefix.clone(),
                    bounds: bounds.join(", "),
                });
            }
        }
        for name in self.overrides.keys() {
            if !callsites.iter().any(|c| &c.name == name) {
                return Err(RulesError::UnknownCallsite {
                    flag: "override".to_owned(),
                    name: name.clone(),
                });
            }
        }
        Ok(())
    }

    /// The burn-rate windows and the configured window, shortest first, each once.
    fn windows(&self) -> Vec<Duration> {
        let mut windows: Vec<Duration> = BURN_RATES
            .iter()
            .flat_map(|&(long, short, ..)| [long, short])
            .chain([self.window])
            .collect();
        windows.sort_unstable();
        windows.dedup();
        windows
    }

    fn recording(&self) -> RuleGroup {
        let (p, by) = (&self.prefix, BY);
        let mut rules = Vec::new();
        for w in self.windows() {
            let w = promql_duration(w);
            let calls = format!("job_function:{p}_calls:rate{w}");
            rules.push(Rule::Record {
                record: calls.clone(),
                expr: format!("sum by ({by}) (rate({p}_calls_total[{w}]))"),
                labels: BTreeMap::new(),
            });
            rules.push(Rule::Record {
                record: format!("job_function:{p}_call_errors:ratio_rate{w}"),
                expr: format!(
                    "(sum by ({by}) (rate({p}_calls_total{{outcome=~\"error|panic\"}}[{w}])) \
                     or 0 * {calls}) / {calls}"
                ),
                labels: BTreeMap::new(),
            });
        }
        let w = promql_duration(self.window);
        for (name, q) in [("p50", "0.5"), ("p99", "0.99")] {
            rules.push(Rule::Record {
                record: format!("job_function:{p}_duration_seconds:{name}_rate{w}"),
                expr: format!(
                    "histogram_quantile({q}, sum by ({by}, le) \
                     (rate({p}_duration_seconds_bucket[{w}])))"
                ),
                labels: BTreeMap::new(),
            });
        }
        RuleGroup {
            name: "instrument-recording".to_owned(),
            rules,
        }
    }

    fn callsite_group(&self, callsite: &Callsite, who: &str, notes: &mut Vec<String>) -> RuleGroup {
        let overrides = self.overrides.get(&callsite.name);
        let target = Target {
            who,
            matchers: format!(
                "function=\"{}\",module=\"{}\"",
                escape(&callsite.name),
                escape(&callsite.module)
            ),
            labels: BTreeMap::from([
                ("function".to_owned(), callsite.name.clone()),
                ("module".to_owned(), callsite.module.clone()),
            ]),
            error_ratio: overrides
                .and_then(|o| o.error_ratio)
                .or(self.objective.error_ratio)
                .unwrap_or(0.05),
            p99: overrides
                .and_then(|o| o.p99)
                .or(self.objective.p99)
                .unwrap_or(Duration::from_millis(500)),
        };
        let mut rules = self.slow_ratios(&target);
        rules.extend(self.threshold_alerts(&target));
        rules.extend(self.burn_rate_alerts(&target, notes));
        RuleGroup {
            name: format!("instrument-callsite {who}"),
            rules,
        }
    }

    /// The share of the callsite's calls slower than its p99 objective, per burn-rate window.
    fn slow_ratios(&self, t: &Target<'_>) -> Vec<Rule> {
        let (p, by, m) = (&self.prefix, BY, &t.matchers);
        let le = seconds(t.p99);
        let mut rules = Vec::new();
        for (long, short, ..) in BURN_RATES {
            for w in [short, long] {
                let w = promql_duration(w);
                rules.push(Rule::Record {
                    record: format!("job_function:{p}_slow_calls:ratio_rate{w}"),
                    expr: format!(
                        "1 - sum by ({by}) (rate({p}_duration_seconds_bucket{{{m},le=\"{le}\"}}[{w}])) \
                         / sum by ({by}) (rate({p}_duration_seconds_bucket{{{m},le=\"+Inf\"}}[{w}]))"
                    ),
                    labels: t.labels.clone(),
                });
            }
        }
        rules
    }

    /// The error ratio and the p99 over the window above their objectives.
    fn threshold_alerts(&self, t: &Target<'_>) -> [Rule; 2] {
        let (p, m, who) = (&self.prefix, &t.matchers, t.who);
        let w = promql_duration(self.window);
        let hold = promql_duration(self.for_duration);
        let (ratio, percent) = (t.error_ratio, t.error_ratio * 100.0);
        let objective = humantime::format_duration(t.p99).to_string();
        [
            alert(
                t,
                ("InstrumentErrorRatioHigh", "warning", hold.clone()),
                format!("job_function:{p}_call_errors:ratio_rate{w}{{{m}}} > {ratio}"),
                format!("{who}: more than {percent}% of calls fail"),
                format!(
                    "{{{{ $labels.function }}}} on {{{{ $labels.job }}}}: \
                     {{{{ $value | humanizePercentage }}}} of its calls failed over the last {w} \
                     (objective: at most {percent}%)."
                ),
            ),
            alert(
                t,
                ("InstrumentLatencyHigh", "warning", hold),
                format!(
                    "job_function:{p}_duration_seconds:p99_rate{w}{{{m}}} > {}",
                    seconds(t.p99)
                ),
                format!("{who}: p99 latency above {objective}"),
                format!(
                    "{{{{ $labels.function }}}} on {{{{ $labels.job }}}}: p99 \
                     {{{{ $value | humanizeDuration }}}} over the last {w} (objective: {objective})."
                ),
            ),
        ]
    }

    /// The multi-window burn-rate alerts of both objectives; those that cannot fire are left
    /// out, with a note.
    fn burn_rate_alerts(&self, t: &Target<'_>, notes: &mut Vec<String>) -> Vec<Rule> {
        let (p, m, who) = (&self.prefix, &t.matchers, t.who);
        let mut rules = Vec::new();
        for (long, short, factor, hold, severity) in BURN_RATES {
            let (long, short) = (promql_duration(long), promql_duration(short));
            let hold = promql_duration(hold);
            for (name, series, budget, what) in [
                (
                    "InstrumentErrorBudgetBurn",
                    "call_errors",
                    t.error_ratio,
                    "error",
                ),
                (
                    "InstrumentLatencyBudgetBurn",
                    "slow_calls",
                    P99_BUDGET,
                    "latency",
                ),
            ] {
                let threshold = factor * budget;
                if threshold >= 1.0 {
                    notes.push(format!(
                        "{name} ({long}/{short}) of {who} left out: {factor} times an {what} \
                         budget of {budget} is {threshold:.3}, a ratio no callsite can exceed"
                    ));
                    continue;
                }
                // Rounded so that 14.4 * 0.05 reads 0.72, not 0.7200000000000001.
                let threshold = (threshold * 1e9).round() / 1e9;
                rules.push(alert(
                    t,
                    (name, severity, hold.clone()),
                    format!(
                        "job_function:{p}_{series}:ratio_rate{long}{{{m}}} > {threshold} \
                         and job_function:{p}_{series}:ratio_rate{short}{{{m}}} > {threshold}"
                    ),
                    format!("{who}: {what} budget burning {factor}x too fast"),
                    format!(
                        "{{{{ $labels.function }}}} on {{{{ $labels.job }}}} spends its {what} \
                         budget ({budget} of calls) {factor} times faster than the objective \
                         allows, over both {long} and {short}."
                    ),
                ));
            }
        }
        rules
    }
}

/// What the aggregations of the rules keep.
const BY: &str = "job, function, module";

/// One callsite's rules being written: who, its selector and labels, its objectives.
struct Target<'a> {
    who: &'a str,
    matchers: String,
    labels: BTreeMap<String, String>,
    error_ratio: f64,
    p99: Duration,
}

/// An alerting rule of `t`: (name, severity, `for`), its expression, summary and description.
fn alert(
    t: &Target<'_>,
    (name, severity, hold): (&str, &str, String),
    expr: String,
    summary: String,
    description: String,
) -> Rule {
    let mut labels = t.labels.clone();
    labels.insert("severity".to_owned(), severity.to_owned());
    Rule::Alert {
        alert: name.to_owned(),
        expr,
        for_duration: hold,
        labels,
        annotations: BTreeMap::from([
            ("summary".to_owned(), summary),
            ("description".to_owned(), description),
        ]),
    }
}

/// `d` as a `PromQL` duration in its largest whole unit: `5m`, `90s`, `1500ms`, `6h`, `2d`.
fn promql_duration(d: Duration) -> String {
    let ms = d.as_millis();
    for (unit, size) in [
        ("d", 86_400_000),
        ("h", 3_600_000),
        ("m", 60_000),
        ("s", 1_000),
    ] {
        if ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// `d` in seconds as the Prometheus sink writes its `le` labels: `0.5`, `1`, `0.000001`.
fn seconds(d: Duration) -> String {
    let mut text = d.as_secs().to_string();
    let nanos = d.subsec_nanos();
    if nanos != 0 {
        let fraction = format!("{nanos:09}");
        let _ = write!(text, ".{}", fraction.trim_end_matches('0'));
    }
    text
}

/// `text` inside a double-quoted `PromQL` string.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_promql_writes_them() {
        assert_eq!(promql_duration(Duration::from_secs(300)), "5m");
        assert_eq!(promql_duration(Duration::from_secs(90)), "90s");
        assert_eq!(promql_duration(Duration::from_secs(6 * 3600)), "6h");
        assert_eq!(promql_duration(Duration::from_secs(2 * 86_400)), "2d");
        assert_eq!(promql_duration(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn bucket_bounds_are_written_as_the_sink_writes_le() {
        assert_eq!(seconds(Duration::from_millis(500)), "0.5");
        assert_eq!(seconds(Duration::from_secs(1)), "1");
        assert_eq!(seconds(Duration::from_micros(1)), "0.000001");
        assert_eq!(seconds(Duration::from_millis(1500)), "1.5");
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape("x\ny"), "x\\ny");
    }

    #[test]
    fn a_callsite_gets_recordings_and_four_kinds_of_alert() {
        let rules = RulesConfig::default()
            .rules(&[
                Callsite::new("etl::parse", "etl"),
                Callsite::new("etl::parse", "etl"),
            ])
            .unwrap();
        assert!(rules.notes.is_empty(), "{:?}", rules.notes);
        let groups = &rules.file.groups;
        assert_eq!(groups.len(), 2, "the duplicate callsite is written once");
        assert_eq!(groups[1].name, "instrument-callsite etl::parse");
        let alerts: Vec<&str> = groups[1]
            .rules
            .iter()
            .filter_map(|r| match r {
                Rule::Alert { alert, .. } => Some(alert.as_str()),
                Rule::Record { .. } => None,
            })
            .collect();
        assert_eq!(
            alerts,
            [
                "InstrumentErrorRatioHigh",
                "InstrumentLatencyHigh",
                "InstrumentErrorBudgetBurn",
                "InstrumentLatencyBudgetBurn",
                "InstrumentErrorBudgetBurn",
                "InstrumentLatencyBudgetBurn",
            ]
        );
        let yaml = rules.to_yaml();
        assert!(yaml.contains("> 0.72 and"), "{yaml}");
        assert!(yaml.contains("for: 30s"), "{yaml}");
    }

    #[test]
    fn overrides_apply_to_their_callsite_only() {
        let mut config = RulesConfig::default();
        config.overrides.insert(
            "b".to_owned(),
            Objective {
                error_ratio: Some(0.01),
                p99: Some(Duration::from_millis(100)),
            },
        );
        let yaml = config
            .rules(&[Callsite::new("a", ""), Callsite::new("b", "")])
            .unwrap()
            .to_yaml();
        assert!(
            yaml.contains(r#"{function="a",module=""} > 0.05"#),
            "{yaml}"
        );
        assert!(
            yaml.contains(r#"{function="b",module=""} > 0.01"#),
            "{yaml}"
        );
        assert!(yaml.contains(r#"{function="b",module=""} > 0.1"#), "{yaml}");
        assert!(
            yaml.contains(r#"function="b",module="",le="0.1""#),
            "{yaml}"
        );
        assert!(
            yaml.contains(r#"function="a",module="",le="0.5""#),
            "{yaml}"
        );
    }

    #[test]
    fn impossible_burn_rates_are_left_out_with_a_note() {
        let config = RulesConfig {
            objective: Objective {
                error_ratio: Some(0.1),
                p99: None,
            },
            ..RulesConfig::default()
        };
        let rules = config.rules(&[Callsite::new("a", "m")]).unwrap();
        assert_eq!(rules.notes.len(), 1, "{:?}", rules.notes);
        assert!(
            rules.notes[0].starts_with("InstrumentErrorBudgetBurn (1h/5m) of a left out"),
            "{}",
            rules.notes[0]
        );
    }

    #[test]
    fn bad_settings_are_refused_naming_them() {
        let bad = |config: RulesConfig| config.rules(&[Callsite::new("a", "")]).unwrap_err();
        let mut config = RulesConfig::default();
        config.objective.error_ratio = Some(1.5);
        assert_eq!(
            bad(config).to_string(),
            "invalid error ratio 1.5 for all callsites: give a ratio between 0 and 1, such as 0.05"
        );
        let mut config = RulesConfig::default();
        config.objective.p99 = Some(Duration::from_millis(300));
        let message = bad(config).to_string();
        assert!(
            message.starts_with(
                "the p99 objective 300ms for all callsites is not a bucket bound of \
                 instrument_duration_seconds (1us, 5us, 10us"
            ),
            "{message}"
        );
        let mut config = RulesConfig::default();
        config
            .overrides
            .insert("nope".to_owned(), Objective::default());
        assert_eq!(
            bad(config),
            RulesError::UnknownCallsite {
                flag: "override".to_owned(),
                name: "nope".to_owned()
            }
        );
        let config = RulesConfig {
            window: Duration::ZERO,
            ..RulesConfig::default()
        };
        assert!(matches!(
            bad(config),
            RulesError::Duration { what: "window", .. }
        ));
        let config = RulesConfig {
            prefix: "1x".to_owned(),
            ..RulesConfig::default()
        };
        assert_eq!(bad(config), RulesError::Prefix("1x".to_owned()));
    }
}
