//! Alerting in process: rules evaluated on every snapshot the drain cuts, alerts published as
//! notices and pushed to Alertmanager or a webhook.
//!
//! The [`AlertEngine`] is a [`Sink`] interested in snapshots: every window (default 1 s) it
//! turns the snapshot into the values its [`Rule`]s read and steps each alert instance's state
//! machine, on its own worker thread, never on the drain or a recording thread. So the time
//! from a failing call to a firing alert (with `for` zero) is at most one window plus a drain
//! interval and the evaluation, about 1.1 s with the defaults; pushing it to Alertmanager adds
//! one HTTP request.
//!
//! # Rules
//! A [`Condition`] (a gauge's value, a counter's rate, a callsite's latency quantile or error
//! ratio over a window, or absence of data), a [`Threshold`], and:
//! - `for`: the condition must hold that long before the alert fires; meanwhile it is
//!   *pending*, and it goes back to *inactive* if the condition stops holding first;
//! - `keep_firing_for`: a firing alert stays firing that long after the condition stopped
//!   holding;
//! - `resolve_at`: hysteresis; once firing, the alert resolves only when the value crosses this
//!   threshold instead (e.g. fire above 90, resolve below 80);
//! - a [`Severity`] (`info`, `warning`, `critical`), labels, and a summary template filled
//!   with the values that fired it ([`Rule::summary`]).
//!
//! A rule has one alert instance per series it matches: per label set of the metric, per
//! callsite for callsite rules without a `function`. Each alert is identified by a
//! fingerprint of its labels (`alertname`, `severity`, the rule's labels, the series' labels,
//! and `function` or `metric`), the same across runs, so repeated states deduplicate. Rules
//! are written in code or TOML ([`RuleSet::from_toml_str`]); invalid ones (unknown metric of
//! the SDK's own families, bad duration, quantile or threshold, bad template) are rejected at
//! load with the rule's name and the cause. [`RuleSet::defaults`] has the SDK's defaults: CPU
//! 75/90 %, memory 80/95 %, disk 85/95 % (warning/critical, for 1 min, resolving 5 points
//! lower) and any callsite's error ratio above 5 % for 30 s (warning).
//!
//! # Lifecycle, acknowledgement, silences, escalation
//! An alert goes inactive -> pending -> firing -> resolved. [`AlertHandle::ack`] acknowledges
//! a firing alert (its state reads `acknowledged` until it resolves); [`AlertHandle::resolve`]
//! resolves one by hand (it starts over at the next snapshot if its condition still holds).
//! A [`Silence`] (labels to match, and a time range: from now for a duration, or a maintenance
//! window in the future) suppresses the notifications of matching alerts; their state changes
//! are still published and stored, marked `silenced`. With an escalation route
//! ([`AlertEngineBuilder::escalation`]), a critical alert still firing and not acknowledged
//! that long after it fired is sent once to the escalation notifier.
//!
//! From outside the process, `instrumentctl alerts ack ID`, `alerts resolve ID`, `alerts
//! silence MATCHER... --for 1h` and `alerts expire SILENCE` write to the store; the running
//! `SQLite` sink hands each action on as a notice from source `alerts.control` at its next
//! tick (about a second), and the engine applies it like the [`AlertHandle`] calls. When the
//! sink starts it hands on the silences that have not ended and the acknowledgements of the
//! alerts still open, so a restarted process keeps both: an acknowledgement is carried to the
//! first alert of that fingerprint that fires in the new process.
//!
//! # Where alerts go
//! - Every state change is a [`Notice`] from source `alerts` (the log stream: the `SQLite`
//!   sink stores it in `notices` and in its `alerts` table, the JSON-lines sink writes it),
//!   with fields `id`, `rule`, `fingerprint`, `state` (`pending`, `firing`, `acknowledged`,
//!   `resolved`, `inactive`), `severity`, `labels` (a JSON object), `value`, `started_us`,
//!   `silenced`, and `acked_by` once acknowledged; its message is the summary.
//! - Firing and resolved alerts (not pending ones) go to every [`Notifier`]: the built-in
//!   [`AlertmanagerNotifier`] and [`WebhookNotifier`], or your own. Each runs on its own
//!   thread with retries and backoff ([`RetryPolicy`]); firing alerts are re-sent every
//!   [`resend_interval`](AlertEngineBuilder::resend_interval) (default 1 min).
//! - The gauge `instrument_alerts{rule, severity, state}` is 1 while an alert of the rule is
//!   pending (`state="pending"`) or firing (`state="firing"`), 0 otherwise, like Prometheus'
//!   own `ALERTS` series (which drops the series instead of going to 0).
//!
//! # Cost
//! Evaluation is incremental: each snapshot is indexed once, and each instance keeps a ring
//! of the frames inside its window with running sums, so a rule costs a lookup and O(1) per
//! matching series per snapshot; a percentile rule merges the window's histograms
//! (`cargo bench --bench alerts` measures 1,000 rules).
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use instrument::instrument_performance;
//! use instrument_sinks::alerts::{AlertEngine, AlertState, Condition, Rule, Threshold};
//!
//! #[instrument_performance]
//! fn parse(text: &str) -> Result<u32, std::num::ParseIntError> { text.parse() }
//!
//! let engine = AlertEngine::builder()
//!     .rule(Rule::new(
//!         "ParseErrors",
//!         Condition::ErrorRatio { function: None, window: Duration::from_secs(10), min_calls: 1 },
//!         Threshold::Above(0.05),
//!     ).summary("{{function}} failed {{value_percent}} of calls"))
//!     .build()?;
//! let alerts = engine.handle();
//! let pipeline = instrument::builder().sink(engine).install()?;
//! parse("1")?;
//! assert!(parse("x").is_err());
//! pipeline.flush()?; // a snapshot: the engine evaluates it
//! let firing = alerts.alerts();
//! assert_eq!(firing.len(), 1);
//! assert_eq!(firing[0].state, AlertState::Firing);
//! assert!(firing[0].summary.ends_with("::parse failed 50% of calls"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod eval;
mod notify;
mod rule;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use instrument::{Batch, Gauge, Interests, Level, Notice, Sink, SinkError, SinkHealth};
use serde::Serialize;

use self::eval::{Evaluator, Frame};
use self::notify::Dispatch;
pub use self::notify::{
    AlertmanagerNotifier, Notifier, NotifierError, NotifierStatus, NotifyError, RetryPolicy,
    WebhookNotifier,
};
pub use self::rule::{
    Condition, Quantile, Rule, RuleError, RuleSet, Severity, Threshold, default_rules,
};

/// Where an alert is in its lifecycle.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum AlertState {
    /// The condition does not hold (or held only briefly: a pending alert that cleared).
    Inactive,
    /// The condition holds, not yet for the rule's `for`.
    Pending,
    /// Firing.
    Firing,
    /// Was firing; the condition stopped holding (or it was resolved by hand).
    Resolved,
}

impl AlertState {
    /// `inactive`, `pending`, `firing` or `resolved`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Inactive => "inactive",
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// One alert: a rule's instance for one series, in its current state.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[non_exhaustive]
pub struct Alert {
    /// A number unique within this engine.
    pub id: u64,
    /// The rule's name.
    pub rule: String,
    /// 16 hexadecimal digits, a hash of the labels: the same alert has the same fingerprint
    /// across runs.
    pub fingerprint: String,
    /// The state.
    pub state: AlertState,
    /// The severity.
    pub severity: Severity,
    /// `alertname`, `severity`, the rule's labels and the series' labels.
    pub labels: BTreeMap<String, String>,
    /// The rule's summary filled with the values that fired it.
    pub summary: String,
    /// The latest value of the condition.
    pub value: f64,
    /// When the condition began to hold (pending from then).
    #[serde(serialize_with = "ser_time")]
    pub started_at: Option<SystemTime>,
    /// When it fired.
    #[serde(serialize_with = "ser_time")]
    pub fired_at: Option<SystemTime>,
    /// When it resolved.
    #[serde(serialize_with = "ser_time")]
    pub resolved_at: Option<SystemTime>,
    /// When and by whom it was acknowledged.
    #[serde(skip)]
    pub acknowledged: Option<(SystemTime, String)>,
    /// Whether a silence suppresses its notifications.
    pub silenced: bool,
    /// Whether it was sent to the escalation route.
    pub escalated: bool,
}

impl Alert {
    /// The state as operators see it: `acknowledged` for an acknowledged firing alert, else
    /// [`AlertState::as_str`].
    #[must_use]
    pub fn display_state(&self) -> &'static str {
        if self.state == AlertState::Firing && self.acknowledged.is_some() {
            "acknowledged"
        } else {
            self.state.as_str()
        }
    }
}

#[allow(clippy::ref_option)]
fn ser_time<S: serde::Serializer>(time: &Option<SystemTime>, s: S) -> Result<S::Ok, S::Error> {
    match time {
        Some(t) => s.collect_str(&humantime::format_rfc3339_micros(*t)),
        None => s.serialize_none(),
    }
}

fn micros(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
}

/// Suppresses the notifications of the alerts whose labels include all of `matchers`, from
/// `start` to `end`. History is kept: state changes are still published, marked `silenced`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Silence {
    /// Labels an alert must have (`alertname` for a rule).
    pub matchers: BTreeMap<String, String>,
    /// From when.
    #[serde(serialize_with = "ser_time_required")]
    pub start: SystemTime,
    /// Until when.
    #[serde(serialize_with = "ser_time_required")]
    pub end: SystemTime,
    /// Why, for people.
    pub comment: String,
    /// The store's id of a silence made with `instrumentctl alerts silence` (which `alerts
    /// expire ID` ends); `None` for one made in code.
    pub id: Option<i64>,
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn ser_time_required<S: serde::Serializer>(time: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_rfc3339_micros(*time))
}

impl Silence {
    /// A silence from now for `duration`.
    #[must_use]
    pub fn new<K: Into<String>, V: Into<String>>(
        matchers: impl IntoIterator<Item = (K, V)>,
        duration: Duration,
    ) -> Silence {
        let start = SystemTime::now();
        Silence::between(matchers, start, start + duration)
    }

    /// A maintenance window: from `start` to `end`.
    #[must_use]
    pub fn between<K: Into<String>, V: Into<String>>(
        matchers: impl IntoIterator<Item = (K, V)>,
        start: SystemTime,
        end: SystemTime,
    ) -> Silence {
        Silence {
            matchers: matchers
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            start,
            end,
            comment: String::new(),
            id: None,
        }
    }

    /// This silence with a comment.
    #[must_use]
    pub fn comment(mut self, comment: impl Into<String>) -> Silence {
        self.comment = comment.into();
        self
    }

    /// Whether it silences `alert` at `now`.
    #[must_use]
    pub fn covers(&self, alert: &Alert, now: SystemTime) -> bool {
        self.start <= now
            && now < self.end
            && self
                .matchers
                .iter()
                .all(|(k, v)| alert.labels.get(k) == Some(v))
    }
}

/// Why an [`AlertEngine`] could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AlertError {
    /// A rule is invalid.
    #[error(transparent)]
    Rule(#[from] RuleError),
    /// A notifier's thread could not be started.
    #[error("cannot start the thread of notifier `{name}`")]
    Spawn {
        /// The notifier.
        name: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The `instrument_alerts` gauge could not be registered.
    #[error("cannot register the instrument_alerts gauge of rule `{rule}`")]
    Gauge {
        /// The rule.
        rule: String,
        /// The cause.
        #[source]
        source: instrument::Error,
    },
}

/// Configures an [`AlertEngine`].
#[must_use = "a builder does nothing until `build` is called"]
pub struct AlertEngineBuilder {
    rules: Vec<Rule>,
    notifiers: Vec<Box<dyn Notifier>>,
    escalation: Option<(Duration, Box<dyn Notifier>)>,
    policy: RetryPolicy,
    resend_interval: Duration,
}

impl fmt::Debug for AlertEngineBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertEngineBuilder")
            .field("rules", &self.rules.len())
            .field(
                "notifiers",
                &self
                    .notifiers
                    .iter()
                    .map(|n| n.name().to_owned())
                    .collect::<Vec<_>>(),
            )
            .field("policy", &self.policy)
            .field("resend_interval", &self.resend_interval)
            .finish_non_exhaustive()
    }
}

impl AlertEngineBuilder {
    /// Adds a rule.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }

    /// Adds rules (e.g. [`RuleSet::defaults`] or a file's).
    pub fn rules(mut self, rules: RuleSet) -> Self {
        self.rules.extend(rules.rules);
        self
    }

    /// Adds a notifier, which gets firing and resolved alerts on a thread of its own.
    pub fn notifier(mut self, notifier: impl Notifier) -> Self {
        self.notifiers.push(Box::new(notifier));
        self
    }

    /// Sends a critical alert still firing and not acknowledged `after` it fired to
    /// `notifier`, once.
    pub fn escalation(mut self, after: Duration, notifier: impl Notifier) -> Self {
        self.escalation = Some((after, Box::new(notifier)));
        self
    }

    /// How notifiers retry and pace ([`RetryPolicy::default`]).
    pub fn retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// How often a firing alert is sent again (default 1 min).
    pub fn resend_interval(mut self, interval: Duration) -> Self {
        self.resend_interval = interval;
        self
    }

    /// Checks the rules, registers the `instrument_alerts` gauges and starts the notifiers'
    /// threads.
    ///
    /// # Errors
    /// [`AlertError`]: the first invalid rule (named), a gauge that cannot be registered, or
    /// a thread that cannot be started.
    pub fn build(self) -> Result<AlertEngine, AlertError> {
        RuleSet {
            rules: self.rules.clone(),
        }
        .validate()?;
        let mut gauges = HashMap::new();
        for rule in &self.rules {
            for state in [AlertState::Pending, AlertState::Firing] {
                let gauge = instrument::metric("instrument_alerts")
                    .label("rule", rule.name.clone())
                    .label("severity", rule.severity.as_str())
                    .label("state", state.as_str())
                    .description("1 while an alert of the rule is in the state, else 0.")
                    .module(module_path!())
                    .gauge()
                    .map_err(|source| AlertError::Gauge {
                        rule: rule.name.clone(),
                        source,
                    })?;
                gauge.set(0.0);
                gauges.insert((rule.name.clone(), rule.severity, state), (gauge, false));
            }
        }
        let spawn = |notifier: Box<dyn Notifier>| {
            let name = notifier.name().to_owned();
            Dispatch::start(notifier, self.policy)
                .map_err(|source| AlertError::Spawn { name, source })
        };
        let mut notifiers = Vec::new();
        for notifier in self.notifiers {
            notifiers.push(spawn(notifier)?);
        }
        let escalation = match self.escalation {
            Some((after, notifier)) => Some((after, spawn(notifier)?)),
            None => None,
        };
        let shared = Arc::new(Shared {
            state: Mutex::new(EngineState {
                eval: Evaluator::new(self.rules),
                silences: Vec::new(),
                last_sent: HashMap::new(),
                gauges,
                evaluations: 0,
                carried_acks: HashMap::new(),
            }),
            notifiers,
            escalation,
        });
        Ok(AlertEngine {
            shared,
            resend_interval: self.resend_interval,
        })
    }
}

struct EngineState {
    eval: Evaluator,
    silences: Vec<Silence>,
    /// When each firing alert was last handed to the notifiers.
    last_sent: HashMap<String, SystemTime>,
    /// `instrument_alerts` per rule, severity and state, with the value last set.
    gauges: HashMap<(String, Severity, AlertState), (Gauge, bool)>,
    evaluations: u64,
    /// Acknowledgements that arrived for a fingerprint with no firing alert (from the store,
    /// after a restart), by fingerprint: applied when it fires.
    carried_acks: HashMap<String, (SystemTime, String)>,
}

struct Shared {
    state: Mutex<EngineState>,
    notifiers: Vec<Dispatch>,
    escalation: Option<(Duration, Dispatch)>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, EngineState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Publishes a state change and hands it to the notifiers unless silenced or pending.
    fn announce(&self, state: &mut EngineState, alert: &mut Alert, now: SystemTime) {
        alert.silenced = state.silences.iter().any(|s| s.covers(alert, now));
        publish(alert);
        let notify = matches!(alert.state, AlertState::Firing | AlertState::Resolved);
        if notify && !alert.silenced {
            for notifier in &self.notifiers {
                notifier.queue(alert);
            }
        }
        if alert.state == AlertState::Firing {
            state.last_sent.insert(alert.fingerprint.clone(), now);
        } else {
            state.last_sent.remove(&alert.fingerprint);
        }
    }
}

fn publish(alert: &Alert) {
    let level = match (alert.state, alert.severity) {
        (AlertState::Firing, Severity::Critical) => Level::Error,
        (AlertState::Firing, Severity::Warning) => Level::Warn,
        _ => Level::Info,
    };
    let mut notice = Notice::new("alerts", level, alert.summary.clone())
        .field("id", alert.id)
        .field("rule", &alert.rule)
        .field("fingerprint", &alert.fingerprint)
        .field("state", alert.display_state())
        .field("severity", alert.severity)
        .field(
            "labels",
            serde_json::to_string(&alert.labels).unwrap_or_default(),
        )
        .field("value", eval::number(alert.value))
        .field("started_us", alert.started_at.map_or(0, micros))
        .field("silenced", alert.silenced);
    if let Some((_, by)) = &alert.acknowledged {
        notice = notice.field("acked_by", by);
    }
    if alert.escalated {
        notice = notice.field("escalated", true);
    }
    instrument::publish(notice);
}

/// The source of the notices that carry operators' actions from the store (the `SQLite`
/// sink's `alerts.control`).
const CONTROL_SOURCE: &str = "alerts.control";

/// Evaluates alert rules on every snapshot; see the [module docs](self).
pub struct AlertEngine {
    shared: Arc<Shared>,
    resend_interval: Duration,
}

impl fmt::Debug for AlertEngine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertEngine")
            .field("resend_interval", &self.resend_interval)
            .finish_non_exhaustive()
    }
}

impl AlertEngine {
    /// A builder with no rules and no notifiers, the default [`RetryPolicy`] and a re-send
    /// interval of 1 min.
    pub fn builder() -> AlertEngineBuilder {
        AlertEngineBuilder {
            rules: Vec::new(),
            notifiers: Vec::new(),
            escalation: None,
            policy: RetryPolicy::default(),
            resend_interval: Duration::from_secs(60),
        }
    }

    /// A handle to list, acknowledge, resolve and silence alerts from other threads.
    #[must_use]
    pub fn handle(&self) -> AlertHandle {
        AlertHandle {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Applies an operator's action handed on by the store (`instrumentctl alerts ...`).
    fn control(&self, notice: &Notice) {
        let field = |key: &str| {
            notice
                .fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let handle = self.handle();
        let actor = field("actor").unwrap_or("instrumentctl");
        match field("action") {
            Some("ack") => {
                let Some(fingerprint) = field("fingerprint") else {
                    return;
                };
                if !handle.ack(fingerprint, actor) {
                    let mut state = self.shared.lock();
                    let firing = state
                        .eval
                        .find_mut(fingerprint)
                        .is_some_and(|a| a.state == AlertState::Firing);
                    if !firing {
                        state
                            .carried_acks
                            .insert(fingerprint.to_owned(), (notice.time, actor.to_owned()));
                    }
                }
            }
            Some("resolve") => {
                if let Some(fingerprint) = field("fingerprint") {
                    let _resolved = handle.resolve(fingerprint);
                    self.shared.lock().carried_acks.remove(fingerprint);
                }
            }
            Some("silence") => {
                let id = field("silence_id").and_then(|v| v.parse::<i64>().ok());
                let matchers: Option<BTreeMap<String, String>> =
                    field("matchers").and_then(|m| serde_json::from_str(m).ok());
                let time = |key| {
                    field(key)
                        .and_then(|v| v.parse::<u64>().ok())
                        .map(|us| UNIX_EPOCH + Duration::from_micros(us))
                };
                let (Some(id), Some(matchers), Some(start), Some(end)) =
                    (id, matchers, time("starts_us"), time("ends_us"))
                else {
                    return;
                };
                let mut state = self.shared.lock();
                if state.silences.iter().any(|s| s.id == Some(id)) {
                    return;
                }
                let mut silence =
                    Silence::between(matchers, start, end).comment(field("comment").unwrap_or(""));
                silence.id = Some(id);
                state.silences.push(silence);
            }
            Some("expire") => {
                if let Some(id) = field("silence_id").and_then(|v| v.parse::<i64>().ok()) {
                    self.shared.lock().silences.retain(|s| s.id != Some(id));
                }
            }
            _ => {}
        }
    }

    fn evaluate(&self, frame: &Frame) {
        let Some(now) = frame.time else {
            return;
        };
        let mut state = self.shared.lock();
        let mut changes = state.eval.evaluate(frame);
        state.evaluations += 1;
        if !state.carried_acks.is_empty() {
            for alert in &mut changes {
                if alert.state == AlertState::Firing
                    && alert.acknowledged.is_none()
                    && let Some(ack) = state.carried_acks.remove(&alert.fingerprint)
                {
                    alert.acknowledged = Some(ack.clone());
                    if let Some(kept) = state.eval.find_mut(&alert.fingerprint) {
                        kept.acknowledged = Some(ack);
                    }
                }
            }
        }
        for mut alert in changes {
            self.shared.announce(&mut state, &mut alert, now);
            // Keep the engine's copy's silenced flag in step with what was announced.
            if let Some(kept) = state.eval.find_mut(&alert.fingerprint) {
                kept.silenced = alert.silenced;
            }
        }
        update_gauges(&mut state);
    }
}

/// Sets each `instrument_alerts` gauge to whether an alert of its rule is in its state.
fn update_gauges(state: &mut EngineState) {
    let mut on: std::collections::HashSet<(String, Severity, AlertState)> =
        std::collections::HashSet::new();
    for alert in state.eval.active() {
        on.insert((alert.rule.clone(), alert.severity, alert.state));
    }
    for (key, (gauge, value)) in &mut state.gauges {
        let now = on.contains(key);
        if now != *value {
            gauge.set(if now { 1.0 } else { 0.0 });
            *value = now;
        }
    }
}

impl Sink for AlertEngine {
    fn name(&self) -> &'static str {
        "alerts"
    }

    fn interests(&self) -> Interests {
        Interests::NONE.with_snapshots(true).with_notices(true)
    }

    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        for notice in &batch.notices {
            if notice.source == CONTROL_SOURCE {
                self.control(notice);
            }
        }
        if let Some(snapshot) = &batch.snapshot {
            self.evaluate(&Frame::from_snapshot(snapshot));
        }
        Ok(())
    }

    /// Re-sends firing alerts every re-send interval, and escalates.
    fn tick(&mut self, now: SystemTime) -> Result<(), SinkError> {
        let mut state = self.shared.lock();
        let EngineState {
            eval,
            silences,
            last_sent,
            ..
        } = &mut *state;
        silences.retain(|s| s.end > now);
        for alert in eval.active_mut() {
            if alert.state != AlertState::Firing {
                continue;
            }
            alert.silenced = silences.iter().any(|s| s.covers(alert, now));
            let due = last_sent.get(&alert.fingerprint).is_none_or(|at| {
                now.duration_since(*at).unwrap_or(Duration::ZERO) >= self.resend_interval
            });
            if due && !alert.silenced {
                for notifier in &self.shared.notifiers {
                    notifier.queue(alert);
                }
                last_sent.insert(alert.fingerprint.clone(), now);
            }
            if let Some((after, route)) = &self.shared.escalation {
                let overdue = alert
                    .fired_at
                    .is_some_and(|at| now.duration_since(at).unwrap_or(Duration::ZERO) >= *after);
                if eval::is_critical(alert.severity)
                    && overdue
                    && alert.acknowledged.is_none()
                    && !alert.escalated
                    && !alert.silenced
                {
                    alert.escalated = true;
                    route.queue(alert);
                    publish(alert);
                }
            }
        }
        Ok(())
    }

    fn health(&self) -> SinkHealth {
        let failing: Vec<String> = self
            .shared
            .notifiers
            .iter()
            .map(Dispatch::status)
            .filter(|s| s.pending > 0 && s.last_error.is_some())
            .map(|s| {
                format!(
                    "notifier `{}` failing ({} alert(s) waiting): {}",
                    s.name,
                    s.pending,
                    s.last_error.unwrap_or_default()
                )
            })
            .collect();
        if failing.is_empty() {
            SinkHealth::Healthy
        } else {
            SinkHealth::Degraded(failing.join("; "))
        }
    }

    fn shutdown(&mut self) -> Result<(), SinkError> {
        // Resolved alerts decided by the last snapshot still go out, within a short grace.
        for notifier in &self.shared.notifiers {
            notifier.stop(Duration::from_secs(2));
        }
        if let Some((_, route)) = &self.shared.escalation {
            route.stop(Duration::from_secs(2));
        }
        Ok(())
    }
}

/// Lists, acknowledges, resolves and silences the alerts of an [`AlertEngine`] from any thread.
#[derive(Clone)]
pub struct AlertHandle {
    shared: Arc<Shared>,
}

impl fmt::Debug for AlertHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertHandle").finish_non_exhaustive()
    }
}

impl AlertHandle {
    /// The pending and firing alerts.
    #[must_use]
    pub fn alerts(&self) -> Vec<Alert> {
        let state = self.shared.lock();
        let mut alerts: Vec<Alert> = state.eval.active().cloned().collect();
        alerts.sort_by_key(|a| a.id);
        alerts
    }

    /// Snapshots evaluated so far.
    #[must_use]
    pub fn evaluations(&self) -> u64 {
        self.shared.lock().evaluations
    }

    /// The rules, as loaded.
    #[must_use]
    pub fn rules(&self) -> Vec<Rule> {
        self.shared.lock().eval.rules().cloned().collect()
    }

    /// Acknowledges the firing alert with this id or fingerprint, by `by`; `false` if there
    /// is none. Its state reads `acknowledged`, it is no longer escalated, and the change is
    /// published.
    #[must_use = "false means no firing alert had this id or fingerprint"]
    pub fn ack(&self, id_or_fingerprint: &str, by: &str) -> bool {
        let mut state = self.shared.lock();
        let Some(alert) = state.eval.find_mut(id_or_fingerprint) else {
            return false;
        };
        if alert.state != AlertState::Firing || alert.acknowledged.is_some() {
            return false;
        }
        alert.acknowledged = Some((SystemTime::now(), by.to_owned()));
        publish(alert);
        true
    }

    /// Resolves the pending or firing alert with this id or fingerprint by hand; `false` if
    /// there is none. It is published and sent as resolved; if its condition still holds, the
    /// next snapshot starts it over.
    #[must_use = "false means no pending or firing alert had this id or fingerprint"]
    pub fn resolve(&self, id_or_fingerprint: &str) -> bool {
        let now = SystemTime::now();
        let mut state = self.shared.lock();
        let Some(mut alert) = state.eval.resolve(id_or_fingerprint, now) else {
            return false;
        };
        self.shared.announce(&mut state, &mut alert, now);
        update_gauges(&mut state);
        true
    }

    /// Adds a silence (or maintenance window).
    pub fn silence(&self, silence: Silence) {
        self.shared.lock().silences.push(silence);
    }

    /// The silences that have not ended.
    #[must_use]
    pub fn silences(&self) -> Vec<Silence> {
        let now = SystemTime::now();
        self.shared
            .lock()
            .silences
            .iter()
            .filter(|s| s.end > now)
            .cloned()
            .collect()
    }

    /// Each notifier's status (the escalation route's last).
    #[must_use]
    pub fn notifiers(&self) -> Vec<NotifierStatus> {
        let mut all: Vec<NotifierStatus> =
            self.shared.notifiers.iter().map(Dispatch::status).collect();
        if let Some((_, route)) = &self.shared.escalation {
            all.push(route.status());
        }
        all
    }
}
