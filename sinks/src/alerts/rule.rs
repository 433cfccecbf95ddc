//! Alert rules: what they watch, when they fire, and how they are written in code and TOML.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// How urgent an alert is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Severity {
    /// For the record.
    Info,
    /// Someone should look soon.
    Warning,
    /// Someone should look now; escalated when not acknowledged in time.
    Critical,
}

impl Severity {
    /// `info`, `warning` or `critical`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "critical",
        }
    }

    /// The severity named by [`as_str`](Self::as_str).
    #[must_use]
    pub fn parse(text: &str) -> Option<Severity> {
        Some(match text {
            "info" => Severity::Info,
            "warning" => Severity::Warning,
            "critical" => Severity::Critical,
            _ => return None,
        })
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A comparison of a value with a threshold.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub enum Threshold {
    /// True when the value is above the threshold.
    Above(f64),
    /// True when the value is below the threshold.
    Below(f64),
}

impl Threshold {
    fn holds(self, value: f64) -> bool {
        match self {
            Threshold::Above(t) => value > t,
            Threshold::Below(t) => value < t,
        }
    }

    /// The threshold's number.
    #[must_use]
    pub fn value(self) -> f64 {
        match self {
            Threshold::Above(t) | Threshold::Below(t) => t,
        }
    }

    fn symbol(self) -> &'static str {
        match self {
            Threshold::Above(_) => ">",
            Threshold::Below(_) => "<",
        }
    }
}

/// A latency quantile of a callsite, from the window's HDR histograms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Quantile {
    /// Median.
    P50,
    /// 90th percentile.
    P90,
    /// 99th percentile.
    P99,
    /// 99.9th percentile.
    P999,
}

impl Quantile {
    /// `p50`, `p90`, `p99` or `p999`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Quantile::P50 => "p50",
            Quantile::P90 => "p90",
            Quantile::P99 => "p99",
            Quantile::P999 => "p999",
        }
    }

    pub(crate) fn fraction(self) -> f64 {
        match self {
            Quantile::P50 => 0.5,
            Quantile::P90 => 0.9,
            Quantile::P99 => 0.99,
            Quantile::P999 => 0.999,
        }
    }

    fn parse(text: &str) -> Option<Quantile> {
        Some(match text {
            "p50" => Quantile::P50,
            "p90" => Quantile::P90,
            "p99" => Quantile::P99,
            "p999" | "p99.9" => Quantile::P999,
            _ => return None,
        })
    }
}

/// What a rule watches. A rule gets one alert instance per series it matches (per label set
/// of a metric, per callsite for callsite rules), with the series' labels.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Condition {
    /// The latest value of a gauge (or the total of a counter).
    Value {
        /// The metric's name.
        metric: String,
        /// Labels a series must have (all of them).
        matchers: Vec<(String, String)>,
    },
    /// A counter's increase per second over a window.
    Rate {
        /// The counter's name.
        metric: String,
        /// Labels a series must have.
        matchers: Vec<(String, String)>,
        /// The window.
        window: Duration,
    },
    /// A callsite's latency quantile over a window, in seconds.
    Percentile {
        /// The callsite's name; `None` for every callsite (one instance each).
        function: Option<String>,
        /// Which quantile.
        quantile: Quantile,
        /// The window.
        window: Duration,
    },
    /// The share of a callsite's calls that ended in `error` or `panic` over a window (0 to 1).
    ErrorRatio {
        /// The callsite's name; `None` for every callsite (one instance each).
        function: Option<String>,
        /// The window.
        window: Duration,
        /// Calls the window needs before the ratio counts (default 1).
        min_calls: u64,
    },
    /// No data for a window: a gauge never set, a counter that did not grow, or a callsite
    /// without calls (whichever kind of series has the name). The value is the seconds since
    /// data was last seen.
    Absent {
        /// The metric's or callsite's name.
        metric: String,
        /// Labels a series must have.
        matchers: Vec<(String, String)>,
        /// The window.
        window: Duration,
    },
}

impl Condition {
    /// The window the condition looks back over (zero for [`Condition::Value`]).
    #[must_use]
    pub fn window(&self) -> Duration {
        match self {
            Condition::Value { .. } => Duration::ZERO,
            Condition::Rate { window, .. }
            | Condition::Percentile { window, .. }
            | Condition::ErrorRatio { window, .. }
            | Condition::Absent { window, .. } => *window,
        }
    }

    fn describe(&self) -> String {
        match self {
            Condition::Value { metric, .. } => metric.clone(),
            Condition::Rate { metric, window, .. } => {
                format!(
                    "rate of {metric} over {}",
                    humantime::format_duration(*window)
                )
            }
            Condition::Percentile {
                function,
                quantile,
                window,
                ..
            } => format!(
                "{} latency of {} over {}",
                quantile.as_str(),
                function.as_deref().unwrap_or("{{function}}"),
                humantime::format_duration(*window)
            ),
            Condition::ErrorRatio {
                function, window, ..
            } => format!(
                "error ratio of {} over {}",
                function.as_deref().unwrap_or("{{function}}"),
                humantime::format_duration(*window)
            ),
            Condition::Absent { metric, window, .. } => {
                format!(
                    "data of {metric} absent for {}",
                    humantime::format_duration(*window)
                )
            }
        }
    }
}

/// An alert rule. Build one with [`Rule::new`] and its setters, or load rules from TOML with
/// [`RuleSet::from_toml_str`].
///
/// ```
/// use std::time::Duration;
/// use instrument_sinks::alerts::{Condition, Rule, Severity, Threshold};
///
/// let rule = Rule::new(
///     "ParseErrors",
///     Condition::ErrorRatio { function: Some("app::parse".into()), window: Duration::from_secs(30), min_calls: 1 },
///     Threshold::Above(0.05),
/// )
/// .severity(Severity::Critical)
/// .for_duration(Duration::from_secs(10))
/// .resolve_at(0.02)
/// .label("team", "etl")
/// .summary("{{function}} fails {{value_percent}} of calls");
/// assert!(rule.validate().is_ok());
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Rule {
    /// The rule's name, the `alertname` label.
    pub name: String,
    /// What it watches.
    pub condition: Condition,
    /// When the condition holds.
    pub threshold: Threshold,
    /// With hysteresis: once firing, the alert resolves only when the value crosses this
    /// instead of the threshold (below it for `Above`, above it for `Below`).
    pub resolve_at: Option<f64>,
    /// How long the condition must hold before the alert fires (pending meanwhile).
    pub for_duration: Duration,
    /// How long a firing alert stays firing after the condition stops holding.
    pub keep_firing_for: Duration,
    /// The severity.
    pub severity: Severity,
    /// Labels added to every alert of the rule.
    pub labels: BTreeMap<String, String>,
    /// A message template; see [`Rule::summary`].
    pub summary: Option<String>,
}

/// Why a rule was rejected: its name and the cause.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("alert rule `{rule}`: {cause}")]
pub struct RuleError {
    /// The rule's name (or `#N` for the N-th rule of a file when it has none).
    pub rule: String,
    /// What is wrong with it.
    pub cause: String,
}

/// Metric names the SDK records itself: a rule naming one of these prefixes must name a metric
/// that exists, so a typo is caught at load.
const KNOWN_FAMILIES: &[(&str, &[&str])] = &[
    (
        "system_",
        &[
            "system_cpu_usage_percent",
            "system_cpu_core_usage_percent",
            "system_memory_total_bytes",
            "system_memory_used_bytes",
            "system_memory_available_bytes",
            "system_memory_usage_percent",
            "system_load1",
            "system_load5",
            "system_load15",
            "system_disk_total_bytes",
            "system_disk_available_bytes",
            "system_disk_usage_percent",
        ],
    ),
    (
        "process_",
        &[
            "process_cpu_usage_percent",
            "process_resident_memory_bytes",
            "process_threads",
            "process_open_fds",
        ],
    ),
];

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

fn is_label_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with("__")
}

/// The variables a summary template may use besides `labels.NAME`.
pub(crate) const TEMPLATE_VARIABLES: &[&str] = &[
    "rule",
    "severity",
    "value",
    "value_percent",
    "value_ms",
    "threshold",
    "window",
    "function",
    "metric",
];

/// Checks a template: every `{{` has its `}}`, and names a known variable or `labels.NAME`.
pub(crate) fn check_template(template: &str) -> Result<(), String> {
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            return Err(format!(
                "the summary template has `{{{{` without a closing `}}}}`: {template:?}"
            ));
        };
        let name = after[..close].trim();
        let known = TEMPLATE_VARIABLES.contains(&name)
            || name.strip_prefix("labels.").is_some_and(is_label_name);
        if !known {
            return Err(format!(
                "the summary template names the unknown variable `{name}`; known: {}, labels.NAME",
                TEMPLATE_VARIABLES.join(", ")
            ));
        }
        rest = &after[close + 2..];
    }
    if rest.contains("}}") {
        return Err(format!(
            "the summary template has `}}}}` without an opening `{{{{`: {template:?}"
        ));
    }
    Ok(())
}

/// Fills a template: `var` answers each variable's value.
pub(crate) fn render_template(template: &str, var: &dyn Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(template.len() + 16);
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let after = &rest[open + 2..];
        let Some(close) = after.find("}}") else {
            break;
        };
        out.push_str(&var(after[..close].trim()));
        rest = &after[close + 2..];
    }
    out.push_str(rest);
    out
}

impl Rule {
    /// A rule with severity `warning`, `for` and `keep_firing_for` zero, no hysteresis, no
    /// labels and the default summary.
    #[must_use]
    pub fn new(name: impl Into<String>, condition: Condition, threshold: Threshold) -> Rule {
        Rule {
            name: name.into(),
            condition,
            threshold,
            resolve_at: None,
            for_duration: Duration::ZERO,
            keep_firing_for: Duration::ZERO,
            severity: Severity::Warning,
            labels: BTreeMap::new(),
            summary: None,
        }
    }

    /// Sets the severity.
    #[must_use]
    pub fn severity(mut self, severity: Severity) -> Rule {
        self.severity = severity;
        self
    }

    /// Sets `for`: how long the condition must hold before the alert fires.
    #[must_use]
    pub fn for_duration(mut self, d: Duration) -> Rule {
        self.for_duration = d;
        self
    }

    /// Sets `keep_firing_for`.
    #[must_use]
    pub fn keep_firing_for(mut self, d: Duration) -> Rule {
        self.keep_firing_for = d;
        self
    }

    /// Sets the hysteresis threshold a firing alert must cross to resolve.
    #[must_use]
    pub fn resolve_at(mut self, value: f64) -> Rule {
        self.resolve_at = Some(value);
        self
    }

    /// Adds a label to the rule's alerts.
    #[must_use]
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Rule {
        self.labels.insert(name.into(), value.into());
        self
    }

    /// Sets the message template: text with `{{rule}}`, `{{severity}}`, `{{value}}` (the
    /// value that fired it, 4 significant decimals), `{{value_percent}}` (a ratio as a
    /// percentage), `{{value_ms}}` (seconds as milliseconds), `{{threshold}}`, `{{window}}`,
    /// `{{function}}`, `{{metric}}` and `{{labels.NAME}}` (any label of the alert).
    #[must_use]
    pub fn summary(mut self, template: impl Into<String>) -> Rule {
        self.summary = Some(template.into());
        self
    }

    /// Checks the rule: a name, valid metric and label names, a known metric where the SDK
    /// records the family, windows above zero where needed, thresholds that are numbers, a
    /// hysteresis on the resolving side of the threshold, and a valid template.
    ///
    /// # Errors
    /// [`RuleError`] naming the rule and the cause.
    pub fn validate(&self) -> Result<(), RuleError> {
        let fail = |cause: String| RuleError {
            rule: self.name.clone(),
            cause,
        };
        if self.name.is_empty() {
            return Err(fail("the rule has no name".into()));
        }
        let check_metric = |metric: &str| -> Result<(), RuleError> {
            if !is_metric_name(metric) {
                return Err(fail(format!(
                    "`{metric}` is not a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)"
                )));
            }
            for (prefix, names) in KNOWN_FAMILIES {
                if metric.starts_with(prefix) && !names.contains(&metric) {
                    return Err(fail(format!(
                        "unknown metric `{metric}`: the SDK records these {prefix}* metrics: {}",
                        names.join(", ")
                    )));
                }
            }
            Ok(())
        };
        let check_matchers = |matchers: &[(String, String)]| -> Result<(), RuleError> {
            for (name, _) in matchers {
                if !is_label_name(name) {
                    return Err(fail(format!("`{name}` is not a label name")));
                }
            }
            Ok(())
        };
        let check_window = |window: Duration| -> Result<(), RuleError> {
            if window.is_zero() {
                return Err(fail("the window must be greater than zero".into()));
            }
            if window > Duration::from_secs(7 * 86_400) {
                return Err(fail("the window must be at most 7 days".into()));
            }
            Ok(())
        };
        match &self.condition {
            Condition::Value { metric, matchers } => {
                check_metric(metric)?;
                check_matchers(matchers)?;
            }
            Condition::Rate {
                metric,
                matchers,
                window,
            }
            | Condition::Absent {
                metric,
                matchers,
                window,
            } => {
                if !matches!(self.condition, Condition::Absent { .. }) || !metric.contains("::") {
                    check_metric(metric)?;
                }
                check_matchers(matchers)?;
                check_window(*window)?;
            }
            Condition::Percentile { window, .. } | Condition::ErrorRatio { window, .. } => {
                check_window(*window)?;
            }
        }
        if !self.threshold.value().is_finite() {
            return Err(fail("the threshold must be a finite number".into()));
        }
        if let Some(resolve) = self.resolve_at {
            let on_resolving_side = match self.threshold {
                Threshold::Above(t) => resolve <= t,
                Threshold::Below(t) => resolve >= t,
            };
            if !resolve.is_finite() || !on_resolving_side {
                return Err(fail(format!(
                    "the resolve threshold {resolve} must be on the resolving side of the \
                     threshold ({} {})",
                    self.threshold.symbol(),
                    self.threshold.value()
                )));
            }
        }
        for name in self.labels.keys() {
            if !is_label_name(name) {
                return Err(fail(format!("`{name}` is not a label name")));
            }
        }
        if let Some(template) = &self.summary {
            check_template(template).map_err(fail)?;
        }
        Ok(())
    }

    /// Whether `value` makes the condition hold; `firing` applies the hysteresis.
    pub(crate) fn holds(&self, value: f64, firing: bool) -> bool {
        match (firing, self.resolve_at, self.threshold) {
            (true, Some(resolve), Threshold::Above(_)) => value > resolve,
            (true, Some(resolve), Threshold::Below(_)) => value < resolve,
            _ => self.threshold.holds(value),
        }
    }

    /// The template used when none is set.
    pub(crate) fn default_summary(&self) -> String {
        format!(
            "{}: {} is {{{{value}}}} ({} {})",
            self.name,
            self.condition.describe(),
            self.threshold.symbol(),
            self.threshold.value()
        )
    }
}

/// The rules the SDK starts with ([`RuleSet::defaults`]): CPU above 75 % (warning) and 90 %
/// (critical), memory above 80 % and 95 %, the data directory's disk above 85 % and 95 %, each
/// for 1 minute; and any callsite's error ratio above 5 % for 30 s (warning).
#[must_use]
pub fn default_rules() -> Vec<Rule> {
    let minute = Duration::from_secs(60);
    let value = |metric: &str| Condition::Value {
        metric: metric.to_owned(),
        matchers: Vec::new(),
    };
    let mut rules = Vec::new();
    for (name, metric, warning, critical) in [
        ("HighCpu", "system_cpu_usage_percent", 75.0, 90.0),
        ("HighMemory", "system_memory_usage_percent", 80.0, 95.0),
        ("DiskFilling", "system_disk_usage_percent", 85.0, 95.0),
    ] {
        for (severity, threshold) in [(Severity::Warning, warning), (Severity::Critical, critical)]
        {
            rules.push(
                Rule::new(name, value(metric), Threshold::Above(threshold))
                    .severity(severity)
                    .for_duration(minute)
                    .resolve_at(threshold - 5.0)
                    .summary(format!(
                        "{{{{metric}}}} at {{{{value}}}}% (above {threshold}% for 1m)"
                    )),
            );
        }
    }
    rules.push(
        Rule::new(
            "HighErrorRatio",
            Condition::ErrorRatio {
                function: None,
                window: Duration::from_secs(30),
                min_calls: 1,
            },
            Threshold::Above(0.05),
        )
        .severity(Severity::Warning)
        .for_duration(Duration::from_secs(30))
        .summary("{{function}} failed {{value_percent}} of its calls over {{window}}"),
    );
    rules
}

/// Rules, loaded together and checked as a whole (names of a rule and severity are unique).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleSet {
    /// The rules.
    pub rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    rule: Vec<RawRule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<String>,
    kind: String,
    metric: Option<String>,
    function: Option<String>,
    quantile: Option<String>,
    #[serde(default, rename = "match")]
    matchers: BTreeMap<String, String>,
    above: Option<toml::Value>,
    below: Option<toml::Value>,
    resolve_at: Option<toml::Value>,
    window: Option<String>,
    #[serde(rename = "for")]
    for_duration: Option<String>,
    keep_firing_for: Option<String>,
    severity: Option<String>,
    summary: Option<String>,
    min_calls: Option<u64>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

impl RuleSet {
    /// The default rules ([`default_rules`]).
    #[must_use]
    pub fn defaults() -> RuleSet {
        RuleSet {
            rules: default_rules(),
        }
    }

    /// Parses rules from TOML, one `[[rule]]` table each:
    ///
    /// ```
    /// use instrument_sinks::alerts::RuleSet;
    ///
    /// let rules = RuleSet::from_toml_str(r#"
    ///     [[rule]]
    ///     name = "ParseErrors"
    ///     kind = "error_ratio"        # value | rate | percentile | error_ratio | absent
    ///     function = "app::parse"     # callsite rules; omitted: every callsite
    ///     above = 0.05
    ///     resolve_at = 0.02           # hysteresis
    ///     window = "30s"
    ///     for = "10s"
    ///     keep_firing_for = "1m"
    ///     severity = "critical"       # info | warning | critical
    ///     summary = "{{function}} fails {{value_percent}} of calls"
    ///     labels = { team = "etl" }
    ///
    ///     [[rule]]
    ///     name = "SlowParse"
    ///     kind = "percentile"
    ///     function = "app::parse"
    ///     quantile = "p99"
    ///     above = "250ms"             # latency thresholds may be durations
    ///     window = "1m"
    ///
    ///     [[rule]]
    ///     name = "DiskNearlyFull"
    ///     kind = "value"
    ///     metric = "system_disk_usage_percent"
    ///     match = { mount = "/" }
    ///     above = 90
    /// "#)?;
    /// assert_eq!(rules.rules.len(), 3);
    ///
    /// let bad = RuleSet::from_toml_str("[[rule]]\nname = \"X\"\nkind = \"rate\"\nmetric = \"m\"\nabove = 1\nwindow = \"5 parsecs\"\n");
    /// assert!(bad.unwrap_err().to_string().starts_with("alert rule `X`: `window` = \"5 parsecs\" is not a duration"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    /// [`RuleError`] naming the rule (or `#N`, its position, when it has no name) and the
    /// cause: a TOML error, an unknown key or kind, a bad duration, quantile, severity or
    /// threshold, an unknown metric, a bad template, or a rule name and severity given twice.
    pub fn from_toml_str(text: &str) -> Result<RuleSet, RuleError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| RuleError {
            rule: "(file)".into(),
            cause: e.to_string().trim_end().to_owned(),
        })?;
        let mut rules = Vec::with_capacity(raw.rule.len());
        for (index, raw) in raw.rule.into_iter().enumerate() {
            rules.push(raw.into_rule(index)?);
        }
        let set = RuleSet { rules };
        set.validate()?;
        Ok(set)
    }

    /// Reads and parses a TOML file of rules.
    ///
    /// # Errors
    /// [`RuleError`] with rule `(file)` naming the path when it cannot be read, else as
    /// [`from_toml_str`](Self::from_toml_str) with the path in front of the cause.
    pub fn from_toml_file(path: impl AsRef<std::path::Path>) -> Result<RuleSet, RuleError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| RuleError {
            rule: "(file)".into(),
            cause: format!("cannot read {}: {e}", path.display()),
        })?;
        Self::from_toml_str(&text).map_err(|e| RuleError {
            rule: e.rule,
            cause: format!("{}: {}", path.display(), e.cause),
        })
    }

    /// Checks every rule and that no rule name and severity appear twice.
    ///
    /// # Errors
    /// The first [`RuleError`].
    pub fn validate(&self) -> Result<(), RuleError> {
        let mut seen = std::collections::HashSet::new();
        for rule in &self.rules {
            rule.validate()?;
            if !seen.insert((rule.name.as_str(), rule.severity)) {
                return Err(RuleError {
                    rule: rule.name.clone(),
                    cause: format!(
                        "a rule with this name and severity {} is defined twice",
                        rule.severity
                    ),
                });
            }
        }
        Ok(())
    }
}

/// A threshold's value: a number, or for latency rules a duration in seconds.
fn threshold_number(
    rule: &str,
    key: &str,
    value: &toml::Value,
    latency: bool,
) -> Result<f64, RuleError> {
    match value {
        toml::Value::Integer(i) => Ok(*i as f64),
        toml::Value::Float(f) => Ok(*f),
        toml::Value::String(text) if latency => Ok(parse_duration(rule, key, text)?.as_secs_f64()),
        other => Err(RuleError {
            rule: rule.to_owned(),
            cause: format!(
                "`{key}` = {} is not a number{}",
                match other {
                    toml::Value::String(text) => format!("{text:?}"),
                    toml::Value::Boolean(b) => b.to_string(),
                    other => format!("a {}", other.type_str()),
                },
                if latency {
                    " or a duration such as \"250ms\""
                } else {
                    ""
                }
            ),
        }),
    }
}

fn parse_duration(rule: &str, key: &str, text: &str) -> Result<Duration, RuleError> {
    humantime::parse_duration(text).map_err(|e| RuleError {
        rule: rule.to_owned(),
        cause: format!("`{key}` = {text:?} is not a duration ({e}); write e.g. \"30s\" or \"5m\""),
    })
}

impl RawRule {
    fn into_rule(self, index: usize) -> Result<Rule, RuleError> {
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| format!("#{}", index + 1));
        let fail = |cause: String| RuleError {
            rule: name.clone(),
            cause,
        };
        if self.name.is_none() {
            return Err(fail("the rule has no `name`".into()));
        }
        let condition = self.condition(&name)?;
        let latency = self.kind == "percentile";
        let number = |key: &str, value: &toml::Value| threshold_number(&name, key, value, latency);
        let threshold = match (&self.above, &self.below) {
            (Some(above), None) => Threshold::Above(number("above", above)?),
            (None, Some(below)) => Threshold::Below(number("below", below)?),
            (Some(_), Some(_)) => return Err(fail("give `above` or `below`, not both".into())),
            (None, None) if self.kind == "absent" => Threshold::Above(0.0),
            (None, None) => return Err(fail("the rule needs `above` or `below`".into())),
        };
        let mut rule = Rule::new(name.clone(), condition, threshold);
        if let Some(resolve) = &self.resolve_at {
            rule.resolve_at = Some(number("resolve_at", resolve)?);
        }
        if let Some(d) = &self.for_duration {
            rule.for_duration = parse_duration(&name, "for", d)?;
        }
        if let Some(d) = &self.keep_firing_for {
            rule.keep_firing_for = parse_duration(&name, "keep_firing_for", d)?;
        }
        if let Some(severity) = &self.severity {
            rule.severity = Severity::parse(severity).ok_or_else(|| {
                fail(format!(
                    "`severity` = {severity:?} is not one of info, warning, critical"
                ))
            })?;
        }
        rule.labels = self.labels;
        rule.summary = self.summary;
        rule.validate()?;
        Ok(rule)
    }

    /// The condition this rule's `kind` and keys describe.
    fn condition(&self, name: &str) -> Result<Condition, RuleError> {
        let fail = |cause: String| RuleError {
            rule: name.to_owned(),
            cause,
        };
        let window = self
            .window
            .as_deref()
            .map(|w| parse_duration(name, "window", w))
            .transpose()?;
        let need_window =
            || window.ok_or_else(|| fail(format!("a `{}` rule needs a `window`", self.kind)));
        let need_metric = || {
            self.metric
                .clone()
                .ok_or_else(|| fail(format!("a `{}` rule needs a `metric`", self.kind)))
        };
        let matchers: Vec<(String, String)> = self.matchers.clone().into_iter().collect();
        Ok(match self.kind.as_str() {
            "value" | "threshold" => Condition::Value {
                metric: need_metric()?,
                matchers,
            },
            "rate" => Condition::Rate {
                metric: need_metric()?,
                matchers,
                window: need_window()?,
            },
            "percentile" => Condition::Percentile {
                function: self.function.clone(),
                quantile: match self.quantile.as_deref() {
                    None => {
                        return Err(fail(
                            "a `percentile` rule needs a `quantile` (p50, p90, p99, p999)".into(),
                        ));
                    }
                    Some(q) => Quantile::parse(q).ok_or_else(|| {
                        fail(format!(
                            "`quantile` = {q:?} is not one of p50, p90, p99, p999"
                        ))
                    })?,
                },
                window: need_window()?,
            },
            "error_ratio" => Condition::ErrorRatio {
                function: self.function.clone(),
                window: need_window()?,
                min_calls: self.min_calls.unwrap_or(1),
            },
            "absent" => Condition::Absent {
                metric: self
                    .metric
                    .clone()
                    .or_else(|| self.function.clone())
                    .ok_or_else(|| {
                        fail("an `absent` rule needs a `metric` or `function`".into())
                    })?,
                matchers,
                window: need_window()?,
            },
            other => {
                return Err(fail(format!(
                    "`kind` = {other:?} is not one of value, rate, percentile, error_ratio, absent"
                )));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cause(toml: &str) -> String {
        RuleSet::from_toml_str(toml).unwrap_err().to_string()
    }

    #[test]
    fn invalid_rules_are_rejected_naming_the_rule_and_the_cause() {
        assert_eq!(
            cause("[[rule]]\nname = \"Cpu\"\nkind = \"value\"\nmetric = \"system_cpu_usge_percent\"\nabove = 90\n")
                .split(':')
                .take(2)
                .collect::<Vec<_>>()
                .join(":"),
            "alert rule `Cpu`: unknown metric `system_cpu_usge_percent`"
        );
        assert!(
            cause("[[rule]]\nname = \"Slow\"\nkind = \"percentile\"\nquantile = \"p99\"\nabove = \"fast\"\nwindow = \"1m\"\n")
                .starts_with("alert rule `Slow`: `above` = \"fast\" is not a duration")
        );
        assert!(
            cause("[[rule]]\nname = \"T\"\nkind = \"value\"\nmetric = \"m\"\nabove = 1\nsummary = \"{{vallue}}\"\n")
                .starts_with("alert rule `T`: the summary template names the unknown variable `vallue`")
        );
        assert!(
            cause("[[rule]]\nname = \"U\"\nkind = \"value\"\nmetric = \"m\"\nabove = 1\nsummary = \"{{value\"\n")
                .starts_with("alert rule `U`: the summary template has `{{` without a closing `}}`")
        );
        assert!(
            cause("[[rule]]\nname = \"K\"\nkind = \"ratio\"\nabove = 1\n")
                .starts_with("alert rule `K`: `kind` = \"ratio\" is not one of")
        );
        assert!(
            cause("[[rule]]\nname = \"H\"\nkind = \"value\"\nmetric = \"m\"\nabove = 10\nresolve_at = 12\n")
                .starts_with("alert rule `H`: the resolve threshold 12 must be on the resolving side")
        );
        assert!(cause("[[rule]]\nname = \"S\"\nkind = \"value\"\nmetric = \"m\"\nabove = 1\nseverity = \"page\"\n")
            .contains("`severity` = \"page\""));
        assert!(
            cause("[[rule]]\nkind = \"value\"\nmetric = \"m\"\nabove = 1\n")
                .starts_with("alert rule `#1`: the rule has no `name`")
        );
        assert!(cause("[[rule]]\nname = \"X\"\nkind = \"value\"\nmetric = \"m\"\nabove = 1\nfor = \"1m\"\ntypo = 1\n")
            .contains("typo"));
        assert!(cause(
            "[[rule]]\nname = \"D\"\nkind = \"value\"\nmetric = \"m\"\nabove = 1\n[[rule]]\nname = \"D\"\nkind = \"value\"\nmetric = \"n\"\nabove = 2\n"
        )
        .contains("defined twice"));
    }

    #[test]
    fn the_default_rules_are_valid() {
        RuleSet::defaults().validate().unwrap();
        assert_eq!(RuleSet::defaults().rules.len(), 7);
    }

    #[test]
    fn templates_fill_variables_and_labels() {
        let out = render_template(
            "{{rule}} at {{ value }} on {{labels.disk}}",
            &|name| match name {
                "rule" => "DiskFull".into(),
                "value" => "91.5".into(),
                "labels.disk" => "sda".into(),
                _ => String::new(),
            },
        );
        assert_eq!(out, "DiskFull at 91.5 on sda");
    }

    #[test]
    fn hysteresis_holds_a_firing_alert_until_the_resolve_threshold() {
        let rule = Rule::new(
            "r",
            Condition::Value {
                metric: "m".into(),
                matchers: vec![],
            },
            Threshold::Above(10.0),
        )
        .resolve_at(8.0);
        assert!(!rule.holds(9.0, false));
        assert!(rule.holds(9.0, true));
        assert!(!rule.holds(7.9, true));
    }
}
