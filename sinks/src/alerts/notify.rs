//! Notifiers and the threads that drive them.
//!
//! Each notifier runs on a thread of its own (`instrument-notify-<name>`) behind a map of the
//! alerts waiting to be sent, keyed by fingerprint: the engine only inserts into that map (a
//! newer state of an alert replaces an older one not yet sent), so a slow or failing notifier
//! never holds up evaluation or the pipeline. A failed send is retried with backoff (100 ms
//! doubling to 5 s, [`RetryPolicy`]) up to `max_attempts`; meanwhile newer states of the same
//! alerts replace the ones being retried. An alert is sent at most once per `min_interval`
//! (default 10 s): a state that changes faster is coalesced, the latest winning, so flapping
//! input cannot turn into a notification storm.

use crate::errors::error_chain;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Uri;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde_json::{Value, json};

use super::{Alert, AlertState};

/// Why a notification failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotifyError(pub String);

/// Sends alerts somewhere: an Alertmanager, a webhook, a pager.
///
/// `send` runs on the notifier's own thread, so it may block (bounded by its own timeout); an
/// `Err` is retried with backoff.
pub trait Notifier: Send + 'static {
    /// A short name for thread names, statuses and messages.
    fn name(&self) -> &str;

    /// Sends the current state of `alerts` (firing or resolved).
    ///
    /// # Errors
    /// Any failure; the alerts are sent again after a backoff.
    fn send(&mut self, alerts: &[Alert]) -> Result<(), NotifyError>;
}

/// How a notifier's thread retries and paces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryPolicy {
    /// The first pause after a failure (default 100 ms); it doubles.
    pub first_backoff: Duration,
    /// The longest pause (default 5 s).
    pub max_backoff: Duration,
    /// Attempts before a batch is given up and counted (default 10, about 20 s).
    pub max_attempts: u32,
    /// The shortest time between two sends of one alert (default 10 s); states in between are
    /// coalesced.
    pub min_interval: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            max_attempts: 10,
            min_interval: Duration::from_secs(10),
        }
    }
}

impl RetryPolicy {
    /// This policy with `min_interval` set.
    #[must_use]
    pub fn min_interval(mut self, interval: Duration) -> Self {
        self.min_interval = interval;
        self
    }

    /// This policy with the backoff bounds set.
    #[must_use]
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.first_backoff = first;
        self.max_backoff = max;
        self
    }

    /// This policy with `max_attempts` set (at least 1).
    #[must_use]
    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }
}

/// What a notifier's thread has done.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct NotifierStatus {
    /// The notifier's name.
    pub name: String,
    /// Alerts delivered (an alert sent in one request counts once).
    pub sent: u64,
    /// Failed attempts.
    pub failures: u64,
    /// Alerts given up on after `max_attempts`.
    pub dropped: u64,
    /// Alerts waiting.
    pub pending: u64,
    /// The last failure, if any.
    pub last_error: Option<String>,
}

#[derive(Default)]
struct Queue {
    pending: BTreeMap<String, Alert>,
    last_sent: HashMap<String, Instant>,
    status: NotifierStatus,
    stop: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A notifier on its own thread.
pub(crate) struct Dispatch {
    name: String,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatch")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl Dispatch {
    pub(crate) fn start(
        mut notifier: Box<dyn Notifier>,
        policy: RetryPolicy,
    ) -> std::io::Result<Dispatch> {
        let name = notifier.name().to_owned();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                status: NotifierStatus {
                    name: name.clone(),
                    ..NotifierStatus::default()
                },
                ..Queue::default()
            }),
            wake: Condvar::new(),
        });
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("instrument-notify-{name}"))
                .spawn(move || run(&mut *notifier, &shared, policy))?
        };
        Ok(Dispatch {
            name,
            shared,
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Queues `alert`'s current state, replacing an older one not yet sent. Never blocks
    /// beyond the queue's lock.
    pub(crate) fn queue(&self, alert: &Alert) {
        self.shared
            .lock()
            .pending
            .insert(alert.fingerprint.clone(), alert.clone());
        self.shared.wake.notify_all();
    }

    pub(crate) fn status(&self) -> NotifierStatus {
        let queue = self.shared.lock();
        let mut status = queue.status.clone();
        status.pending = queue.pending.len() as u64;
        status
    }

    /// Sends what is pending (giving it up to `grace`), then stops the thread.
    pub(crate) fn stop(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        loop {
            let pending = self.shared.lock().pending.len();
            if pending == 0 || Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            // A notifier stuck in `send` (bounded by its own timeout) is left to finish on
            // its own after a second.
            let stopped = Instant::now() + Duration::from_secs(1);
            while !thread.is_finished() && Instant::now() < stopped {
                std::thread::sleep(Duration::from_millis(5));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

impl Drop for Dispatch {
    /// Tells the thread to stop, without waiting for it.
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
    }
}

fn run(notifier: &mut dyn Notifier, shared: &Shared, policy: RetryPolicy) {
    let mut queue = shared.lock();
    loop {
        if queue.stop {
            return;
        }
        // What may be sent now, and when the next of the others may.
        let now = Instant::now();
        let mut next_due: Option<Instant> = None;
        let ready: Vec<String> = queue
            .pending
            .keys()
            .filter(|fp| match queue.last_sent.get(*fp) {
                Some(at) if *at + policy.min_interval > now => {
                    let due = *at + policy.min_interval;
                    next_due = Some(next_due.map_or(due, |d| d.min(due)));
                    false
                }
                _ => true,
            })
            .cloned()
            .collect();
        if ready.is_empty() {
            queue = match next_due {
                Some(due) => {
                    let wait = due.saturating_duration_since(now);
                    shared
                        .wake
                        .wait_timeout(queue, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => shared
                    .wake
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner),
            };
            continue;
        }
        let mut batch: Vec<Alert> = ready
            .iter()
            .filter_map(|fp| queue.pending.remove(fp))
            .collect();
        drop(queue);
        let mut backoff = policy.first_backoff;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let result = notifier.send(&batch);
            let mut q = shared.lock();
            match result {
                Ok(()) => {
                    let sent_at = Instant::now();
                    for alert in &batch {
                        q.last_sent.insert(alert.fingerprint.clone(), sent_at);
                    }
                    // Resolved alerts are done: forget when they were sent.
                    for alert in batch.iter().filter(|a| !a.state.is_active()) {
                        if !q.pending.contains_key(&alert.fingerprint) {
                            q.last_sent.remove(&alert.fingerprint);
                        }
                    }
                    q.status.sent += batch.len() as u64;
                    queue = q;
                    break;
                }
                Err(error) => {
                    q.status.failures += 1;
                    q.status.last_error = Some(error.to_string());
                    // A newer state queued meanwhile replaces the one being retried.
                    batch.retain(|a| !q.pending.contains_key(&a.fingerprint));
                    if batch.is_empty() {
                        queue = q;
                        break;
                    }
                    if attempts >= policy.max_attempts || q.stop {
                        q.status.dropped += batch.len() as u64;
                        eprintln!(
                            "instrument: notifier `{}` gave up on {} alert(s) after {attempts} attempt(s): {error}",
                            notifier.name(),
                            batch.len()
                        );
                        queue = q;
                        break;
                    }
                    let (q, _) = shared
                        .wake
                        .wait_timeout_while(q, backoff, |q| !q.stop)
                        .unwrap_or_else(PoisonError::into_inner);
                    drop(q);
                    backoff = (backoff * 2).min(policy.max_backoff);
                }
            }
        }
    }
}

/// Posts JSON with hyper's client on a current-thread runtime owned by the notifier.
struct Poster {
    uri: Uri,
    timeout: Duration,
    runtime: tokio::runtime::Runtime,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// Why a notifier could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NotifierError {
    /// The URL is not an `http://` URL.
    #[error("invalid notifier URL `{url}`: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The runtime could not be created.
    #[error("cannot start the notifier's runtime")]
    Runtime(#[source] std::io::Error),
}

impl Poster {
    fn new(url: &str, path: &str, timeout: Duration) -> Result<Poster, NotifierError> {
        let bad = |reason: &str| NotifierError::Url {
            url: url.to_owned(),
            reason: reason.to_owned(),
        };
        let base: Uri = url
            .parse()
            .map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
        match base.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(bad(
                    "https is not supported (no TLS client is built in); reach the receiver over \
                     http on a trusted network, or through a local proxy",
                ));
            }
            _ => return Err(bad("give an http:// URL such as http://127.0.0.1:9093")),
        }
        let authority = base
            .authority()
            .ok_or_else(|| bad("the URL has no host"))?
            .clone();
        let prefix = base.path().trim_end_matches('/');
        let full = format!("{prefix}{path}");
        let uri = Uri::builder()
            .scheme("http")
            .authority(authority)
            .path_and_query(if full.is_empty() { "/" } else { full.as_str() })
            .build()
            .map_err(|e| bad(&e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(NotifierError::Runtime)?;
        let client = Client::builder(TokioExecutor::new()).build_http();
        Ok(Poster {
            uri,
            timeout,
            runtime,
            client,
        })
    }

    fn post(&self, body: &Value) -> Result<(), NotifyError> {
        let body = serde_json::to_vec(body).map_err(|e| NotifyError(e.to_string()))?;
        let request = hyper::Request::post(self.uri.clone())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(
                hyper::header::USER_AGENT,
                concat!("instrument-sinks/", env!("CARGO_PKG_VERSION")),
            )
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| NotifyError(e.to_string()))?;
        let uri = &self.uri;
        self.runtime.block_on(async {
            let response = tokio::time::timeout(self.timeout, self.client.request(request))
                .await
                .map_err(|_| {
                    NotifyError(format!(
                        "POST {uri}: no answer within {}",
                        humantime::format_duration(self.timeout)
                    ))
                })?
                .map_err(|e| NotifyError(format!("POST {uri}: {}", error_chain(&e))))?;
            let status = response.status();
            let body = tokio::time::timeout(self.timeout, response.into_body().collect())
                .await
                .ok()
                .and_then(Result::ok)
                .map(http_body_util::Collected::to_bytes)
                .unwrap_or_default();
            if status.is_success() {
                Ok(())
            } else {
                let text = String::from_utf8_lossy(&body);
                Err(NotifyError(format!(
                    "POST {uri}: HTTP {status}: {}",
                    text.trim().chars().take(300).collect::<String>()
                )))
            }
        })
    }
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

fn annotations(alert: &Alert) -> Value {
    json!({
        "summary": alert.summary,
        "value": super::eval::number(alert.value),
    })
}

/// Pushes alerts to an Alertmanager's v2 API (`POST /api/v2/alerts`), as Prometheus does:
/// labels (`alertname`, `severity`, the rule's and the series' labels), annotations
/// (`summary`, `value`), `startsAt`, and `endsAt`: for a firing alert, now plus four times the
/// re-send interval (Alertmanager resolves it by itself if the process stops sending), for a
/// resolved one the time it resolved. Firing alerts are sent again every re-send interval
/// (default 1 min) while they fire.
///
/// Only `http://` URLs: no TLS client is built in.
pub struct AlertmanagerNotifier {
    name: String,
    poster: Poster,
    valid_for: Duration,
    generator_url: Option<String>,
}

impl fmt::Debug for AlertmanagerNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertmanagerNotifier")
            .field("uri", &self.poster.uri)
            .finish_non_exhaustive()
    }
}

impl AlertmanagerNotifier {
    /// A notifier for the Alertmanager at `url` (e.g. `http://127.0.0.1:9093`), with a
    /// request timeout of 5 s.
    ///
    /// # Errors
    /// [`NotifierError::Url`] naming the URL when it is not `http://host[:port][/prefix]`.
    pub fn new(url: &str) -> Result<AlertmanagerNotifier, NotifierError> {
        Ok(AlertmanagerNotifier {
            name: "alertmanager".into(),
            poster: Poster::new(url, "/api/v2/alerts", Duration::from_secs(5))?,
            valid_for: Duration::from_secs(4 * 60),
            generator_url: None,
        })
    }

    /// The request timeout (default 5 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.poster.timeout = timeout;
        self
    }

    /// How long past now a firing alert's `endsAt` is set (default 4 min, four re-send
    /// intervals); the engine sets it from its re-send interval.
    #[must_use]
    pub fn valid_for(mut self, valid_for: Duration) -> Self {
        self.valid_for = valid_for;
        self
    }

    /// The `generatorURL` of every alert (default: none), e.g. the operations page.
    #[must_use]
    pub fn generator_url(mut self, url: impl Into<String>) -> Self {
        self.generator_url = Some(url.into());
        self
    }

    /// The body of `POST /api/v2/alerts` for `alerts`.
    #[must_use]
    pub fn payload(&self, alerts: &[Alert], now: SystemTime) -> Value {
        Value::Array(
            alerts
                .iter()
                .map(|alert| {
                    let ends = match alert.state {
                        AlertState::Firing | AlertState::Pending => now + self.valid_for,
                        AlertState::Resolved | AlertState::Inactive => {
                            alert.resolved_at.unwrap_or(now)
                        }
                    };
                    let mut body = json!({
                        "labels": alert.labels,
                        "annotations": annotations(alert),
                        "startsAt": rfc3339(alert.fired_at.or(alert.started_at).unwrap_or(now)),
                        "endsAt": rfc3339(ends),
                    });
                    if let Some(url) = &self.generator_url {
                        body["generatorURL"] = Value::String(url.clone());
                    }
                    body
                })
                .collect(),
        )
    }
}

impl Notifier for AlertmanagerNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn send(&mut self, alerts: &[Alert]) -> Result<(), NotifyError> {
        let body = self.payload(alerts, SystemTime::now());
        self.poster.post(&body)
    }
}

/// Posts each alert to a webhook as Alertmanager's webhook payload, version 4 (one group per
/// alert, `groupKey` its fingerprint), so receivers written for Alertmanager read it unchanged.
///
/// Only `http://` URLs: no TLS client is built in.
pub struct WebhookNotifier {
    name: String,
    poster: Poster,
    receiver: String,
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier")
            .field("uri", &self.poster.uri)
            .finish_non_exhaustive()
    }
}

impl WebhookNotifier {
    /// A notifier posting to `url` (the whole URL, path included), with a request timeout of
    /// 5 s and receiver name `instrument`.
    ///
    /// # Errors
    /// [`NotifierError::Url`] naming the URL when it is not an `http://` URL.
    pub fn new(url: &str) -> Result<WebhookNotifier, NotifierError> {
        Ok(WebhookNotifier {
            name: "webhook".into(),
            poster: Poster::new(url, "", Duration::from_secs(5))?,
            receiver: "instrument".into(),
        })
    }

    /// The notifier's name (default `webhook`), for statuses and thread names.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The request timeout (default 5 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.poster.timeout = timeout;
        self
    }

    /// The webhook body (Alertmanager's payload, version 4) of one alert.
    #[must_use]
    pub fn payload(&self, alert: &Alert) -> Value {
        let status = if alert.state.is_active() {
            "firing"
        } else {
            "resolved"
        };
        let ends = match alert.resolved_at {
            Some(at) if !alert.state.is_active() => rfc3339(at),
            _ => "0001-01-01T00:00:00Z".to_owned(),
        };
        let starts = rfc3339(
            alert
                .fired_at
                .or(alert.started_at)
                .unwrap_or_else(SystemTime::now),
        );
        let group_labels = json!({ "alertname": alert.rule });
        json!({
            "version": "4",
            "groupKey": format!("{{}}:{{alertname=\"{}\", fingerprint=\"{}\"}}", alert.rule, alert.fingerprint),
            "truncatedAlerts": 0,
            "status": status,
            "receiver": self.receiver,
            "groupLabels": group_labels,
            "commonLabels": alert.labels,
            "commonAnnotations": annotations(alert),
            "externalURL": "",
            "alerts": [{
                "status": status,
                "labels": alert.labels,
                "annotations": annotations(alert),
                "startsAt": starts,
                "endsAt": ends,
                "generatorURL": "",
                "fingerprint": alert.fingerprint,
            }],
        })
    }
}

impl Notifier for WebhookNotifier {
    fn name(&self) -> &str {
        &self.name
    }

    fn send(&mut self, alerts: &[Alert]) -> Result<(), NotifyError> {
        for alert in alerts {
            self.poster.post(&self.payload(alert))?;
        }
        Ok(())
    }
}
