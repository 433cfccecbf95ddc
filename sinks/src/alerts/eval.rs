//! Evaluation: each snapshot becomes a [`Frame`], and every rule updates its alert instances
//! from it, incrementally (a ring of the window's frames per instance with running sums).

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use instrument::{CallsiteKind, Histogram, Metadata, Outcome, Snapshot};

use super::rule::{Condition, Rule, Severity, render_template};
use super::{Alert, AlertState};

/// One callsite's calls in one frame.
#[derive(Clone, Debug)]
pub(crate) struct CallFrame {
    pub(crate) callsite: &'static Metadata,
    /// Calls in the window, every outcome.
    pub(crate) calls: u64,
    /// Calls that ended in `error` or `panic`.
    pub(crate) errors: u64,
    /// The window's histograms, one per outcome, merged only when a percentile rule needs them.
    pub(crate) histograms: Vec<Arc<Histogram>>,
}

/// What one snapshot says, as the rules read it.
#[derive(Clone, Debug, Default)]
pub(crate) struct Frame {
    /// The end of the snapshot's window: the evaluation time.
    pub(crate) time: Option<SystemTime>,
    /// How long the snapshot's window was (a flush cuts one short).
    pub(crate) length: Duration,
    pub(crate) gauges: Vec<(&'static Metadata, f64)>,
    /// Counters: increase in the window, total.
    pub(crate) counters: Vec<(&'static Metadata, u64, u64)>,
    pub(crate) calls: Vec<CallFrame>,
}

impl Frame {
    pub(crate) fn from_snapshot(snapshot: &Snapshot) -> Frame {
        let mut calls: Vec<CallFrame> = Vec::new();
        let mut index: HashMap<*const Metadata, usize> = HashMap::new();
        for stats in &snapshot.calls {
            if !matches!(
                stats.callsite.kind(),
                CallsiteKind::Function | CallsiteKind::Async | CallsiteKind::Timer
            ) {
                continue;
            }
            let at = *index
                .entry(std::ptr::from_ref(stats.callsite))
                .or_insert_with(|| {
                    calls.push(CallFrame {
                        callsite: stats.callsite,
                        calls: 0,
                        errors: 0,
                        histograms: Vec::new(),
                    });
                    calls.len() - 1
                });
            let call = &mut calls[at];
            call.calls += stats.window.count;
            if matches!(stats.outcome, Outcome::Error | Outcome::Panic) {
                call.errors += stats.window.count;
            }
            if stats.window.timed > 0 {
                call.histograms.push(Arc::clone(&stats.window_histogram));
            }
        }
        Frame {
            time: Some(snapshot.window_end),
            length: snapshot
                .window_end
                .duration_since(snapshot.window_start)
                .unwrap_or(Duration::ZERO),
            gauges: snapshot
                .gauges
                .iter()
                .map(|g| (g.callsite, g.value))
                .collect(),
            counters: snapshot
                .counters
                .iter()
                .map(|c| (c.callsite, c.window, c.total))
                .collect(),
            calls,
        }
    }
}

/// One frame in a [`Window`]: its time, two values summed over the window, and (for
/// percentile rules) the frame's durations as (highest equivalent value, count) buckets.
type WindowEntry = (SystemTime, f64, f64, Vec<(u64, u64)>);

/// A ring of the frames within a window, with running sums.
#[derive(Debug, Default)]
struct Window {
    entries: VecDeque<WindowEntry>,
    a: f64,
    b: f64,
    /// The buckets of every frame in the window, added as frames enter and subtracted as they
    /// leave, so a quantile costs a walk of the distinct buckets, not a merge per frame.
    buckets: BTreeMap<u64, u64>,
    timed: u64,
}

impl Window {
    fn push(&mut self, time: SystemTime, a: f64, b: f64, buckets: Vec<(u64, u64)>, span: Duration) {
        for &(value, n) in &buckets {
            *self.buckets.entry(value).or_default() += n;
            self.timed += n;
        }
        self.entries.push_back((time, a, b, buckets));
        self.a += a;
        self.b += b;
        while let Some((oldest, ..)) = self.entries.front() {
            let age = time.duration_since(*oldest).unwrap_or(Duration::ZERO);
            if age < span {
                break;
            }
            if let Some((_, a, b, buckets)) = self.entries.pop_front() {
                self.a -= a;
                self.b -= b;
                for (value, n) in buckets {
                    if let std::collections::btree_map::Entry::Occupied(mut e) =
                        self.buckets.entry(value)
                    {
                        *e.get_mut() -= n;
                        if *e.get() == 0 {
                            e.remove();
                        }
                    }
                    self.timed -= n;
                }
            }
        }
        if self.entries.len() == 1 {
            // Running sums of floats drift; a ring of one resets them.
            self.a = a;
            self.b = b;
        }
    }

    /// The value at quantile `q` of the window's durations, as `Histogram::quantile` computes
    /// it (the highest value equivalent to the value of rank `ceil(q * count)`); `None` when
    /// empty.
    fn quantile(&self, q: f64) -> Option<u64> {
        if self.timed == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.timed as f64).ceil() as u64).clamp(1, self.timed);
        let mut seen = 0;
        for (&value, &n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return Some(value);
            }
        }
        self.buckets.keys().next_back().copied()
    }
}

/// An alert instance: one series of one rule.
#[derive(Debug)]
struct Instance {
    alert: Alert,
    window: Window,
    /// When the condition last held (for `keep_firing_for`).
    last_true: Option<SystemTime>,
    /// When the series last had data (for `absent`).
    last_seen: Option<SystemTime>,
}

/// A rule and its instances.
#[derive(Debug)]
struct RuleState {
    rule: Rule,
    summary: String,
    instances: HashMap<usize, Instance>,
    /// When the rule started being evaluated (for `absent` before any data).
    since: Option<SystemTime>,
}

/// Every rule's instances; the state machine of the [module docs](super).
#[derive(Debug, Default)]
pub(crate) struct Evaluator {
    rules: Vec<RuleState>,
    next_id: u64,
}

/// 64-bit FNV-1a: a fingerprint that stays the same across runs and releases.
fn fnv1a(parts: &BTreeMap<String, String>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in parts {
        for byte in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xfe]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

fn matches(meta: &Metadata, name: &str, matchers: &[(String, String)]) -> bool {
    meta.name() == name
        && matchers.iter().all(|(k, v)| {
            meta.labels_slice()
                .iter()
                .any(|(mk, mv)| *mk == k.as_str() && *mv == v.as_str())
        })
}

/// A number for people: up to 4 decimals, trailing zeros dropped.
pub(crate) fn number(value: f64) -> String {
    if !value.is_finite() {
        return value.to_string();
    }
    let text = format!("{value:.4}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    if text == "-0" {
        "0".to_owned()
    } else {
        text.to_owned()
    }
}

impl Evaluator {
    pub(crate) fn new(rules: Vec<Rule>) -> Evaluator {
        Evaluator {
            rules: rules
                .into_iter()
                .map(|rule| RuleState {
                    summary: rule
                        .summary
                        .clone()
                        .unwrap_or_else(|| rule.default_summary()),
                    rule,
                    instances: HashMap::new(),
                    since: None,
                })
                .collect(),
            next_id: 1,
        }
    }

    pub(crate) fn rules(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter().map(|r| &r.rule)
    }

    /// Every instance's alert that is pending or firing.
    pub(crate) fn active(&self) -> impl Iterator<Item = &Alert> {
        self.rules
            .iter()
            .flat_map(|r| r.instances.values())
            .map(|i| &i.alert)
            .filter(|a| matches!(a.state, AlertState::Pending | AlertState::Firing))
    }

    pub(crate) fn active_mut(&mut self) -> impl Iterator<Item = &mut Alert> {
        self.rules
            .iter_mut()
            .flat_map(|r| r.instances.values_mut())
            .map(|i| &mut i.alert)
            .filter(|a| matches!(a.state, AlertState::Pending | AlertState::Firing))
    }

    /// Updates every rule from `frame`; the alerts whose state changed, in their new state.
    pub(crate) fn evaluate(&mut self, frame: &Frame) -> Vec<Alert> {
        let Some(now) = frame.time else {
            return Vec::new();
        };
        let mut changes = Vec::new();
        let index = Index::of(frame);
        let next_id = &mut self.next_id;
        for state in &mut self.rules {
            let RuleState {
                rule,
                summary,
                instances,
                since,
            } = state;
            let since = *since.get_or_insert(now);
            let present = observe(rule, instances, next_id, frame, &index, now, since);
            for (key, inst) in instances.iter_mut() {
                let value = if present.contains(key) {
                    Some(inst.alert.value)
                } else {
                    None
                };
                if let Some(alert) = step(rule, summary, inst, value, now) {
                    changes.push(alert);
                }
            }
            // Instances that went quiet and inactive are forgotten; their series may come back.
            instances.retain(|key, inst| present.contains(key) || inst.alert.state.is_active());
        }
        changes
    }

    /// Finds an instance's alert by id or fingerprint.
    pub(crate) fn find_mut(&mut self, id_or_fingerprint: &str) -> Option<&mut Alert> {
        self.rules
            .iter_mut()
            .flat_map(|r| r.instances.values_mut())
            .map(|i| &mut i.alert)
            .find(|a| a.id.to_string() == id_or_fingerprint || a.fingerprint == id_or_fingerprint)
    }

    /// Resolves an instance by hand; the next frame starts it over if its condition holds.
    pub(crate) fn resolve(&mut self, id_or_fingerprint: &str, now: SystemTime) -> Option<Alert> {
        for state in &mut self.rules {
            for inst in state.instances.values_mut() {
                let alert = &mut inst.alert;
                if (alert.id.to_string() == id_or_fingerprint
                    || alert.fingerprint == id_or_fingerprint)
                    && alert.state.is_active()
                {
                    alert.state = AlertState::Resolved;
                    alert.resolved_at = Some(now);
                    let resolved = alert.clone();
                    inst.last_true = None;
                    return Some(resolved);
                }
            }
        }
        None
    }
}

/// Updates the instances of `rule` from `frame`; the keys of the instances whose series the
/// frame has (with their value set).
fn observe(
    rule: &Rule,
    instances: &mut HashMap<usize, Instance>,
    next_id: &mut u64,
    frame: &Frame,
    index: &Index<'_>,
    now: SystemTime,
    since: SystemTime,
) -> Vec<usize> {
    let mut present: Vec<usize> = Vec::new();
    match &rule.condition {
        Condition::Value { metric, matchers } => {
            for &(meta, value) in index.gauges(metric) {
                if matches(meta, metric, matchers) {
                    let key = std::ptr::from_ref(meta) as usize;
                    present.push(key);
                    let inst = instance(instances, rule, next_id, key, meta, None);
                    inst.alert.value = value;
                }
            }
            for &(meta, _, total) in index.counters(metric) {
                if matches(meta, metric, matchers) {
                    let key = std::ptr::from_ref(meta) as usize;
                    present.push(key);
                    let inst = instance(instances, rule, next_id, key, meta, None);
                    inst.alert.value = total as f64;
                }
            }
        }
        Condition::Rate {
            metric,
            matchers,
            window,
        } => {
            let window = *window;
            for &(meta, increase, _) in index.counters(metric) {
                if matches(meta, metric, matchers) {
                    let key = std::ptr::from_ref(meta) as usize;
                    present.push(key);
                    let inst = instance(instances, rule, next_id, key, meta, None);
                    let length = frame.length.as_secs_f64();
                    inst.window
                        .push(now, increase as f64, length, Vec::new(), window);
                    // The increase over the time the window's snapshots cover.
                    inst.alert.value = if inst.window.b > 0.0 {
                        inst.window.a / inst.window.b
                    } else {
                        f64::NAN
                    };
                }
            }
        }
        Condition::Percentile {
            function,
            quantile,
            window,
        } => {
            let (window, q) = (*window, quantile.fraction());
            for call in index.calls_of(frame, function.as_deref()) {
                let key = std::ptr::from_ref(call.callsite) as usize;
                present.push(key);
                let inst = instance(
                    instances,
                    rule,
                    next_id,
                    key,
                    call.callsite,
                    Some(call.callsite.name()),
                );
                inst.alert.value = percentile(&mut inst.window, call, now, window, q);
            }
        }
        Condition::ErrorRatio {
            function,
            window,
            min_calls,
        } => {
            let (window, min_calls) = (*window, *min_calls);
            for call in index.calls_of(frame, function.as_deref()) {
                let key = std::ptr::from_ref(call.callsite) as usize;
                present.push(key);
                let inst = instance(
                    instances,
                    rule,
                    next_id,
                    key,
                    call.callsite,
                    Some(call.callsite.name()),
                );
                inst.alert.value = error_ratio(&mut inst.window, call, now, window, min_calls);
            }
        }
        Condition::Absent {
            metric, matchers, ..
        } => {
            let inst = absent_instance(instances, rule, next_id);
            inst.alert.value = absent_for(inst, frame, index, metric, matchers, now, since);
            present.push(0);
        }
    }
    present
}

/// The share of a callsite's calls over the window that failed, once `call`'s frame is in it;
/// `NaN` below `min_calls` calls.
fn error_ratio(
    window: &mut Window,
    call: &CallFrame,
    now: SystemTime,
    span: Duration,
    min_calls: u64,
) -> f64 {
    window.push(now, call.calls as f64, call.errors as f64, Vec::new(), span);
    if window.a >= min_calls.max(1) as f64 {
        window.b / window.a
    } else {
        f64::NAN
    }
}

/// The quantile `q` of a callsite's durations over the window, in seconds, once `call`'s
/// frame is in it; `NaN` without timed calls.
fn percentile(
    window: &mut Window,
    call: &CallFrame,
    now: SystemTime,
    span: Duration,
    q: f64,
) -> f64 {
    let mut buckets: Vec<(u64, u64)> = Vec::new();
    for h in &call.histograms {
        buckets.extend(h.iter_buckets());
    }
    window.push(now, 0.0, 0.0, buckets, span);
    window.quantile(q).map_or(f64::NAN, |ns| ns as f64 / 1e9)
}

/// Seconds since a series named `metric` (with `matchers`) last had data: a gauge present, a
/// counter grown, or a callsite called; counted from `since` (the first evaluation) before any.
fn absent_for(
    inst: &mut Instance,
    frame: &Frame,
    index: &Index<'_>,
    metric: &str,
    matchers: &[(String, String)],
    now: SystemTime,
    since: SystemTime,
) -> f64 {
    let seen = index
        .gauges(metric)
        .iter()
        .any(|(m, _)| matches(m, metric, matchers))
        || index
            .counters(metric)
            .iter()
            .any(|(m, increase, _)| *increase > 0 && matches(m, metric, matchers))
        || index
            .calls_of(frame, Some(metric))
            .iter()
            .any(|c| c.calls > 0 && matches(c.callsite, metric, matchers));
    if seen {
        inst.last_seen = Some(now);
    }
    let last = inst.last_seen.unwrap_or(since);
    now.duration_since(last)
        .unwrap_or(Duration::ZERO)
        .as_secs_f64()
}

/// A frame's series by name, built once per frame so that each rule looks its series up
/// instead of scanning them all.
struct Index<'f> {
    /// Gauges and counters by name (copies of the frame's small rows).
    gauges: HashMap<&'f str, Vec<(&'static Metadata, f64)>>,
    counters: HashMap<&'f str, Vec<(&'static Metadata, u64, u64)>>,
    /// Callsites by name: positions in the frame's calls.
    calls: HashMap<&'f str, Vec<usize>>,
}

impl<'f> Index<'f> {
    fn of(frame: &'f Frame) -> Index<'f> {
        let mut index = Index {
            gauges: HashMap::new(),
            counters: HashMap::new(),
            calls: HashMap::new(),
        };
        for &(meta, value) in &frame.gauges {
            index
                .gauges
                .entry(meta.name())
                .or_default()
                .push((meta, value));
        }
        for &row in &frame.counters {
            index.counters.entry(row.0.name()).or_default().push(row);
        }
        for (i, call) in frame.calls.iter().enumerate() {
            index.calls.entry(call.callsite.name()).or_default().push(i);
        }
        index
    }

    fn gauges(&self, name: &str) -> &[(&'static Metadata, f64)] {
        self.gauges.get(name).map_or(&[], Vec::as_slice)
    }

    fn counters(&self, name: &str) -> &[(&'static Metadata, u64, u64)] {
        self.counters.get(name).map_or(&[], Vec::as_slice)
    }

    /// The callsites named `function`, or every callsite.
    fn calls_of<'a>(&self, frame: &'a Frame, function: Option<&str>) -> Vec<&'a CallFrame> {
        match function {
            Some(name) => self
                .calls
                .get(name)
                .into_iter()
                .flatten()
                .map(|&i| &frame.calls[i])
                .collect(),
            None => frame.calls.iter().collect(),
        }
    }
}

fn base_labels(rule: &Rule) -> BTreeMap<String, String> {
    let mut labels = rule.labels.clone();
    labels.insert("alertname".into(), rule.name.clone());
    labels.insert("severity".into(), rule.severity.as_str().into());
    labels
}

fn new_alert(rule: &Rule, labels: BTreeMap<String, String>, next_id: &mut u64) -> Alert {
    let id = *next_id;
    *next_id += 1;
    Alert {
        id,
        rule: rule.name.clone(),
        fingerprint: format!("{:016x}", fnv1a(&labels)),
        state: AlertState::Inactive,
        severity: rule.severity,
        labels,
        summary: String::new(),
        value: f64::NAN,
        started_at: None,
        fired_at: None,
        resolved_at: None,
        acknowledged: None,
        silenced: false,
        escalated: false,
    }
}

fn instance<'s>(
    instances: &'s mut HashMap<usize, Instance>,
    rule: &Rule,
    next_id: &mut u64,
    key: usize,
    meta: &'static Metadata,
    function: Option<&'static str>,
) -> &'s mut Instance {
    match instances.entry(key) {
        Entry::Occupied(e) => e.into_mut(),
        Entry::Vacant(e) => {
            let mut labels = base_labels(rule);
            for (k, v) in meta.labels_slice() {
                labels
                    .entry((*k).to_owned())
                    .or_insert_with(|| (*v).to_owned());
            }
            match function {
                Some(name) => {
                    labels.insert("function".into(), name.to_owned());
                }
                None => {
                    labels.insert("metric".into(), meta.name().to_owned());
                }
            }
            e.insert(Instance {
                alert: new_alert(rule, labels, next_id),
                window: Window::default(),
                last_true: None,
                last_seen: None,
            })
        }
    }
}

fn absent_instance<'s>(
    instances: &'s mut HashMap<usize, Instance>,
    rule: &Rule,
    next_id: &mut u64,
) -> &'s mut Instance {
    instances.entry(0).or_insert_with(|| {
        let mut labels = base_labels(rule);
        if let Condition::Absent {
            metric, matchers, ..
        } = &rule.condition
        {
            labels.insert("metric".into(), metric.clone());
            for (k, v) in matchers {
                labels.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        Instance {
            alert: new_alert(rule, labels, next_id),
            window: Window::default(),
            last_true: None,
            last_seen: None,
        }
    })
}

/// The state machine of one instance: inactive -> pending (condition holds) -> firing (held
/// for `for`) -> resolved (stopped holding, `keep_firing_for` ago; hysteresis while firing);
/// pending -> inactive when it stops holding first. Returns the alert when its state changed.
fn step(
    rule: &Rule,
    summary: &str,
    inst: &mut Instance,
    value: Option<f64>,
    now: SystemTime,
) -> Option<Alert> {
    let firing = inst.alert.state == AlertState::Firing;
    let holds = match (&rule.condition, value) {
        (Condition::Absent { window, .. }, Some(v)) => v >= window.as_secs_f64(),
        (_, Some(v)) if v.is_nan() => false,
        (_, Some(v)) => rule.holds(v, firing),
        (_, None) => false,
    };
    if holds {
        inst.last_true = Some(now);
    }
    let alert = &mut inst.alert;
    let before = alert.state;
    match (alert.state, holds) {
        (AlertState::Inactive | AlertState::Resolved, true) => {
            alert.started_at = Some(now);
            alert.fired_at = None;
            alert.resolved_at = None;
            alert.acknowledged = None;
            alert.escalated = false;
            if rule.for_duration.is_zero() {
                alert.state = AlertState::Firing;
                alert.fired_at = Some(now);
            } else {
                alert.state = AlertState::Pending;
            }
        }
        (AlertState::Pending, true) => {
            let since = alert.started_at.unwrap_or(now);
            if now.duration_since(since).unwrap_or(Duration::ZERO) >= rule.for_duration {
                alert.state = AlertState::Firing;
                alert.fired_at = Some(now);
            }
        }
        (AlertState::Pending, false) => {
            alert.state = AlertState::Inactive;
            alert.resolved_at = Some(now);
        }
        (AlertState::Firing, false) => {
            let last = inst.last_true.unwrap_or(now);
            if now.duration_since(last).unwrap_or(Duration::ZERO) >= rule.keep_firing_for {
                alert.state = AlertState::Resolved;
                alert.resolved_at = Some(now);
            }
        }
        _ => {}
    }
    if alert.state == before {
        return None;
    }
    if alert.state != AlertState::Resolved && alert.state != AlertState::Inactive {
        // Keep the message of the value that fired it; a resolution keeps that too.
        alert.summary = render(rule, summary, alert);
    }
    Some(alert.clone())
}

fn render(rule: &Rule, template: &str, alert: &Alert) -> String {
    let value = alert.value;
    render_template(template, &|name| match name {
        "rule" => rule.name.clone(),
        "severity" => rule.severity.as_str().to_owned(),
        "value" => number(value),
        "value_percent" => format!("{}%", number(value * 100.0)),
        "value_ms" => format!("{}ms", number(value * 1000.0)),
        "threshold" => number(rule.threshold.value()),
        "window" => humantime::format_duration(rule.condition.window()).to_string(),
        "function" | "metric" => alert.labels.get(name).cloned().unwrap_or_default(),
        other => other
            .strip_prefix("labels.")
            .and_then(|label| alert.labels.get(label))
            .cloned()
            .unwrap_or_default(),
    })
}

impl AlertState {
    pub(crate) fn is_active(self) -> bool {
        matches!(self, AlertState::Pending | AlertState::Firing)
    }
}

/// Whether `severity` is critical (escalation applies).
pub(crate) fn is_critical(severity: Severity) -> bool {
    severity == Severity::Critical
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alerts::rule::Threshold;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
    }

    fn gauge_frame(meta: &'static Metadata, secs: u64, value: f64) -> Frame {
        Frame {
            time: Some(at(secs)),
            length: Duration::from_secs(1),
            gauges: vec![(meta, value)],
            ..Frame::default()
        }
    }

    fn calls_frame(meta: &'static Metadata, secs: u64, calls: u64, errors: u64) -> Frame {
        Frame {
            time: Some(at(secs)),
            length: Duration::from_secs(1),
            calls: vec![CallFrame {
                callsite: meta,
                calls,
                errors,
                histograms: Vec::new(),
            }],
            ..Frame::default()
        }
    }

    fn gauge_meta(name: &'static str) -> &'static Metadata {
        instrument::metric(name)
            .label("disk", "sda")
            .gauge()
            .unwrap()
            .metadata()
    }

    fn value_rule(name: &str, metric: &str) -> Rule {
        Rule::new(
            name,
            Condition::Value {
                metric: metric.into(),
                matchers: vec![],
            },
            Threshold::Above(90.0),
        )
    }

    fn states(changes: &[Alert]) -> Vec<AlertState> {
        changes.iter().map(|a| a.state).collect()
    }

    #[test]
    fn for_keeps_an_alert_pending_until_it_has_held_that_long() {
        let meta = gauge_meta("eval_for_usage");
        let mut eval = Evaluator::new(vec![
            value_rule("Full", "eval_for_usage")
                .for_duration(Duration::from_secs(3))
                .summary("{{labels.disk}} at {{value}}%"),
        ]);
        assert!(eval.evaluate(&gauge_frame(meta, 0, 50.0)).is_empty());
        assert_eq!(
            states(&eval.evaluate(&gauge_frame(meta, 1, 95.0))),
            [AlertState::Pending]
        );
        assert!(eval.evaluate(&gauge_frame(meta, 2, 96.0)).is_empty());
        assert!(eval.evaluate(&gauge_frame(meta, 3, 97.0)).is_empty());
        let fired = eval.evaluate(&gauge_frame(meta, 4, 98.5));
        assert_eq!(states(&fired), [AlertState::Firing]);
        assert_eq!(fired[0].summary, "sda at 98.5%");
        assert_eq!(fired[0].started_at, Some(at(1)));
        assert_eq!(fired[0].labels["alertname"], "Full");
        assert_eq!(fired[0].labels["disk"], "sda");
        let resolved = eval.evaluate(&gauge_frame(meta, 5, 10.0));
        assert_eq!(states(&resolved), [AlertState::Resolved]);
        assert_eq!(resolved[0].resolved_at, Some(at(5)));
    }

    #[test]
    fn a_pending_alert_that_stops_holding_goes_inactive_without_firing() {
        let meta = gauge_meta("eval_pending_usage");
        let mut eval = Evaluator::new(vec![
            value_rule("Full", "eval_pending_usage").for_duration(Duration::from_secs(10)),
        ]);
        assert_eq!(
            states(&eval.evaluate(&gauge_frame(meta, 0, 95.0))),
            [AlertState::Pending]
        );
        assert_eq!(
            states(&eval.evaluate(&gauge_frame(meta, 1, 50.0))),
            [AlertState::Inactive]
        );
    }

    #[test]
    fn keep_firing_for_and_hysteresis_hold_a_flapping_alert() {
        let meta = gauge_meta("eval_flap_usage");
        let mut eval = Evaluator::new(vec![
            value_rule("Full", "eval_flap_usage")
                .resolve_at(80.0)
                .keep_firing_for(Duration::from_secs(5)),
        ]);
        let mut changes = Vec::new();
        // Flapping around the threshold every second for a minute.
        for s in 0..60 {
            let value = if s % 2 == 0 { 95.0 } else { 85.0 };
            changes.extend(eval.evaluate(&gauge_frame(meta, s, value)));
        }
        assert_eq!(
            states(&changes),
            [AlertState::Firing],
            "one firing, no storm"
        );
        // Below the resolve threshold, it resolves once keep_firing_for has passed.
        for s in 60..64 {
            assert!(eval.evaluate(&gauge_frame(meta, s, 50.0)).is_empty());
        }
        assert_eq!(
            states(&eval.evaluate(&gauge_frame(meta, 64, 50.0))),
            [AlertState::Resolved]
        );
    }

    #[test]
    fn error_ratio_is_over_the_window_per_callsite() {
        let meta = instrument::metric("eval_ratio_parse")
            .function()
            .unwrap()
            .metadata();
        let mut eval = Evaluator::new(vec![
            Rule::new(
                "Errors",
                Condition::ErrorRatio {
                    function: None,
                    window: Duration::from_secs(3),
                    min_calls: 10,
                },
                Threshold::Above(0.05),
            )
            .summary("{{function}} failed {{value_percent}} over {{window}}"),
        ]);
        // 1 error in 100 calls: 1 %.
        assert!(eval.evaluate(&calls_frame(meta, 0, 100, 1)).is_empty());
        // 10 more errors in 100: 11 of 200 = 5.5 %.
        let fired = eval.evaluate(&calls_frame(meta, 1, 100, 10));
        assert_eq!(states(&fired), [AlertState::Firing]);
        assert_eq!(fired[0].summary, "eval_ratio_parse failed 5.5% over 3s");
        assert_eq!(fired[0].labels["function"], "eval_ratio_parse");
        // 12 of 210 = 5.7 %; then frame 0 leaves the 3 s window: 12 of 120 = 10 %.
        assert!(eval.evaluate(&calls_frame(meta, 2, 10, 1)).is_empty());
        assert!(eval.evaluate(&calls_frame(meta, 3, 10, 1)).is_empty());
        // Frame 1's ten errors leave: 2 of 30 = 6.7 %, still firing.
        assert!(eval.evaluate(&calls_frame(meta, 4, 10, 0)).is_empty());
        // 1 of 120 = 0.8 %: resolved.
        let resolved = eval.evaluate(&calls_frame(meta, 5, 100, 0));
        assert_eq!(states(&resolved), [AlertState::Resolved]);
        assert!((resolved[0].value - 1.0 / 120.0).abs() < 1e-9);
    }

    #[test]
    fn absence_fires_after_the_window_without_data() {
        let meta = gauge_meta("eval_absent_heartbeat");
        let mut eval = Evaluator::new(vec![Rule::new(
            "NoHeartbeat",
            Condition::Absent {
                metric: "eval_absent_heartbeat".into(),
                matchers: vec![],
                window: Duration::from_secs(5),
            },
            Threshold::Above(0.0),
        )]);
        let empty = |s| Frame {
            time: Some(at(s)),
            length: Duration::from_secs(1),
            ..Frame::default()
        };
        assert!(eval.evaluate(&gauge_frame(meta, 0, 1.0)).is_empty());
        for s in 1..5 {
            assert!(eval.evaluate(&empty(s)).is_empty(), "at {s}");
        }
        assert_eq!(states(&eval.evaluate(&empty(5))), [AlertState::Firing]);
        assert_eq!(
            states(&eval.evaluate(&gauge_frame(meta, 6, 1.0))),
            [AlertState::Resolved]
        );
    }

    #[test]
    fn counter_rate_is_per_second_over_the_window() {
        let meta = instrument::metric("eval_rate_errors_total")
            .counter()
            .unwrap()
            .metadata();
        let mut eval = Evaluator::new(vec![Rule::new(
            "ErrorBurst",
            Condition::Rate {
                metric: "eval_rate_errors_total".into(),
                matchers: vec![],
                window: Duration::from_secs(10),
            },
            Threshold::Above(5.0),
        )]);
        let frame = |s, increase| Frame {
            time: Some(at(s)),
            length: Duration::from_secs(1),
            counters: vec![(meta, increase, 0)],
            ..Frame::default()
        };
        // 3 per 1 s window: 3/s, then 6 over 2 s: 3/s.
        assert!(eval.evaluate(&frame(0, 3)).is_empty());
        assert!(eval.evaluate(&frame(1, 3)).is_empty());
        // 26 over 3 s.
        let fired = eval.evaluate(&frame(2, 20));
        assert_eq!(states(&fired), [AlertState::Firing]);
        assert!(
            (fired[0].value - 26.0 / 3.0).abs() < 1e-9,
            "{}",
            fired[0].value
        );
        // Quiet windows dilute it: 26 over 4 s, 5 s, then 26 over 6 s = 4.33/s resolves.
        assert!(eval.evaluate(&frame(3, 0)).is_empty());
        assert!(eval.evaluate(&frame(4, 0)).is_empty());
        assert_eq!(states(&eval.evaluate(&frame(5, 0))), [AlertState::Resolved]);
    }

    #[test]
    fn percentiles_come_from_the_windows_histograms() {
        let meta = instrument::metric("eval_p99_parse")
            .function()
            .unwrap()
            .metadata();
        let mut eval = Evaluator::new(vec![
            Rule::new(
                "Slow",
                Condition::Percentile {
                    function: Some("eval_p99_parse".into()),
                    quantile: crate::alerts::Quantile::P99,
                    window: Duration::from_secs(60),
                },
                Threshold::Above(0.25),
            )
            .summary("p99 {{value_ms}}"),
        ]);
        let frame = |s, nanos: u64| {
            let mut h = Histogram::new();
            h.record_n(nanos, 100);
            Frame {
                time: Some(at(s)),
                length: Duration::from_secs(1),
                calls: vec![CallFrame {
                    callsite: meta,
                    calls: 100,
                    errors: 0,
                    histograms: vec![Arc::new(h)],
                }],
                ..Frame::default()
            }
        };
        assert!(eval.evaluate(&frame(0, 10_000_000)).is_empty());
        let fired = eval.evaluate(&frame(1, 400_000_000));
        assert_eq!(states(&fired), [AlertState::Firing]);
        assert!(
            fired[0].summary.starts_with("p99 4"),
            "{}",
            fired[0].summary
        );
    }

    #[test]
    fn numbers_read_like_people_write_them() {
        assert_eq!(number(5.5), "5.5");
        assert_eq!(number(98.0), "98");
        assert_eq!(number(0.123_456), "0.1235");
    }
}
