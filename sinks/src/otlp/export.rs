//! The exporter thread: a bounded backlog of encoded requests, posted in order with hyper's
//! client, retried with backoff (honouring `Retry-After`) while the collector is down, slow or
//! answers 429/502/503/504.

use crate::errors::error_chain;
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::Uri;
use hyper::header::{HeaderName, HeaderValue};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceResponse;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use prost::Message as _;

use super::OtlpError;
use super::config::Compression;

/// Which signal a request carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Signal {
    Metrics,
    Logs,
}

impl Signal {
    fn items(self) -> &'static str {
        match self {
            Signal::Metrics => "data point(s)",
            Signal::Logs => "log record(s)",
        }
    }
}

/// One encoded request waiting to be sent.
pub(crate) struct Request {
    pub(crate) signal: Signal,
    pub(crate) body: Bytes,
    /// Data points or log records in it.
    pub(crate) items: u64,
}

/// What the exporter has done since the sink was built.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OtlpStatus {
    /// Requests accepted by the collector (2xx).
    pub sent_requests: u64,
    /// Data points in accepted metrics requests.
    pub sent_points: u64,
    /// Log records in accepted logs requests.
    pub sent_log_records: u64,
    /// Requests waiting in the backlog, the one being sent included.
    pub backlog_requests: u64,
    /// Their encoded size in bytes.
    pub backlog_bytes: u64,
    /// Requests dropped, oldest first, because the backlog was full, plus those left when
    /// shutdown's wait ended.
    pub dropped_requests: u64,
    /// Data points and log records in those requests.
    pub dropped_items: u64,
    /// Requests the collector refused for good (4xx other than 429): not retried.
    pub refused_requests: u64,
    /// Failed attempts that were retried (connection errors, timeouts, 429, 502, 503, 504).
    pub retries: u64,
    /// Data points the collector rejected in partial-success answers.
    pub rejected_points: u64,
    /// Log records the collector rejected in partial-success answers.
    pub rejected_log_records: u64,
    /// Failed attempts in a row (0 after a success).
    pub consecutive_failures: u64,
    /// The latest failure or partial-success message, if any.
    pub last_error: Option<String>,
}

struct Queue {
    backlog: VecDeque<(u64, Request)>,
    bytes: usize,
    next_id: u64,
    stop: bool,
    status: OtlpStatus,
}

pub(crate) struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// Signalled whenever the backlog shrinks.
    drained: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn status(&self) -> OtlpStatus {
        let q = self.lock();
        let mut status = q.status.clone();
        status.backlog_requests = q.backlog.len() as u64;
        status.backlog_bytes = q.bytes as u64;
        status
    }

    /// Waits until the backlog is empty or `timeout` passes; whether it is empty.
    pub(crate) fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut q = self.lock();
        loop {
            if q.backlog.is_empty() {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            q = self
                .drained
                .wait_timeout(q, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// The settings the exporter thread needs.
pub(crate) struct Settings {
    pub(crate) metrics_uri: Uri,
    pub(crate) logs_uri: Option<Uri>,
    pub(crate) headers: Vec<(HeaderName, HeaderValue)>,
    pub(crate) timeout: Duration,
    pub(crate) compression: Compression,
    pub(crate) backlog_bytes: usize,
    pub(crate) backlog_requests: usize,
    pub(crate) first_backoff: Duration,
    pub(crate) max_backoff: Duration,
}

/// The exporter: its thread and the backlog it shares with the sink.
pub(crate) struct Exporter {
    pub(crate) shared: Arc<Shared>,
    limits: (usize, usize),
    thread: Option<JoinHandle<()>>,
}

impl Exporter {
    pub(crate) fn start(settings: Settings) -> Result<Exporter, OtlpError> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                backlog: VecDeque::new(),
                bytes: 0,
                next_id: 0,
                stop: false,
                status: OtlpStatus::default(),
            }),
            wake: Condvar::new(),
            drained: Condvar::new(),
        });
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(OtlpError::Runtime)?;
        let limits = (settings.backlog_bytes, settings.backlog_requests);
        let thread = {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name("instrument-otlp".into())
                .spawn(move || {
                    let client = Client::builder(TokioExecutor::new()).build_http();
                    let sender = Sender {
                        settings,
                        runtime,
                        client,
                    };
                    run(&sender, &shared);
                })
                .map_err(OtlpError::Thread)?
        };
        Ok(Exporter {
            shared,
            limits,
            thread: Some(thread),
        })
    }

    /// Queues a request; when the backlog is then over a bound, the oldest requests are
    /// dropped and counted. Never blocks beyond the queue's lock.
    pub(crate) fn push(&self, request: Request) {
        let (max_bytes, max_requests) = self.limits;
        let mut q = self.shared.lock();
        q.bytes += request.body.len();
        let id = q.next_id;
        q.next_id += 1;
        q.backlog.push_back((id, request));
        while q.backlog.len() > max_requests || (q.bytes > max_bytes && q.backlog.len() > 1) {
            let Some((_, old)) = q.backlog.pop_front() else {
                break;
            };
            q.bytes -= old.body.len();
            q.status.dropped_requests += 1;
            q.status.dropped_items += old.items;
        }
        drop(q);
        self.shared.wake.notify_all();
    }

    /// Waits up to `grace` for the backlog to empty, then stops the thread; what is left is
    /// counted as dropped and returned as (requests, items).
    pub(crate) fn stop(&mut self, grace: Duration) -> (u64, u64) {
        self.shared.wait_idle(grace);
        let left = {
            let mut q = self.shared.lock();
            q.stop = true;
            let left = (
                q.backlog.len() as u64,
                q.backlog.iter().map(|(_, r)| r.items).sum::<u64>(),
            );
            q.status.dropped_requests += left.0;
            q.status.dropped_items += left.1;
            q.backlog.clear();
            q.bytes = 0;
            left
        };
        self.shared.wake.notify_all();
        self.shared.drained.notify_all();
        if let Some(thread) = self.thread.take() {
            // A request in flight is bounded by the timeout; wait for it that long at most.
            let _ = thread.join();
        }
        left
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.shared.lock().stop = true;
        self.shared.wake.notify_all();
    }
}

struct Sender {
    settings: Settings,
    runtime: tokio::runtime::Runtime,
    client: Client<HttpConnector, Full<Bytes>>,
}

/// How one attempt ended.
enum Attempt {
    /// Accepted; the partial-success rejection count and message, if any.
    Accepted(u64, Option<String>),
    /// Worth retrying, after the server's `Retry-After` if it gave one.
    Retry(String, Option<Duration>),
    /// Refused for good.
    Refused(String),
}

fn run(sender: &Sender, shared: &Shared) {
    let mut backoff = sender.settings.first_backoff;
    let mut q = shared.lock();
    loop {
        if q.stop {
            return;
        }
        let Some((id, request)) = q
            .backlog
            .front()
            .map(|(id, r)| (*id, (r.signal, r.body.clone(), r.items)))
        else {
            q = shared.wake.wait(q).unwrap_or_else(PoisonError::into_inner);
            continue;
        };
        drop(q);
        let (signal, body, items) = request;
        let attempt = sender.send(signal, body);
        q = shared.lock();
        let done = match attempt {
            Attempt::Accepted(rejected, message) => {
                let s = &mut q.status;
                s.sent_requests += 1;
                s.consecutive_failures = 0;
                match signal {
                    Signal::Metrics => {
                        s.sent_points += items;
                        s.rejected_points += rejected;
                    }
                    Signal::Logs => {
                        s.sent_log_records += items;
                        s.rejected_log_records += rejected;
                    }
                }
                if rejected > 0 || message.is_some() {
                    s.last_error = Some(format!(
                        "partial success: the collector rejected {rejected} {}{}",
                        signal.items(),
                        message.map(|m| format!(": {m}")).unwrap_or_default()
                    ));
                }
                backoff = sender.settings.first_backoff;
                true
            }
            Attempt::Refused(error) => {
                q.status.refused_requests += 1;
                q.status.consecutive_failures = 0;
                q.status.last_error = Some(error);
                true
            }
            Attempt::Retry(error, after) => {
                q.status.retries += 1;
                q.status.consecutive_failures += 1;
                q.status.last_error = Some(error);
                // Retry-After sets the pause (bounded by ten times the longest backoff).
                let pause = after.map_or(backoff, |a| a.min(sender.settings.max_backoff * 10));
                backoff = (backoff * 2).min(sender.settings.max_backoff);
                q = shared
                    .wake
                    .wait_timeout_while(q, pause, |q| !q.stop)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
                false
            }
        };
        // The request may have been dropped from a full backlog meanwhile.
        if done && q.backlog.front().is_some_and(|(front, _)| *front == id) {
            if let Some((_, r)) = q.backlog.pop_front() {
                q.bytes -= r.body.len();
            }
            shared.drained.notify_all();
        }
    }
}

impl Sender {
    fn send(&self, signal: Signal, body: Bytes) -> Attempt {
        let uri = match signal {
            Signal::Metrics => &self.settings.metrics_uri,
            Signal::Logs => match &self.settings.logs_uri {
                Some(uri) => uri,
                None => return Attempt::Refused("no logs endpoint".into()),
            },
        };
        let mut builder = hyper::Request::post(uri.clone())
            .header(hyper::header::CONTENT_TYPE, "application/x-protobuf")
            .header(
                hyper::header::USER_AGENT,
                concat!("instrument-sinks/", env!("CARGO_PKG_VERSION")),
            );
        if self.settings.compression == Compression::Gzip {
            builder = builder.header(hyper::header::CONTENT_ENCODING, "gzip");
        }
        for (name, value) in &self.settings.headers {
            builder = builder.header(name, value);
        }
        let request = match builder.body(Full::new(body)) {
            Ok(request) => request,
            Err(e) => return Attempt::Refused(format!("POST {uri}: {e}")),
        };
        let timeout = self.settings.timeout;
        self.runtime.block_on(async {
            let response = match tokio::time::timeout(timeout, self.client.request(request)).await {
                Err(_) => {
                    return Attempt::Retry(
                        format!(
                            "POST {uri}: no answer within {}",
                            humantime::format_duration(timeout)
                        ),
                        None,
                    );
                }
                Ok(Err(e)) => {
                    return Attempt::Retry(format!("POST {uri}: {}", error_chain(&e)), None);
                }
                Ok(Ok(response)) => response,
            };
            let status = response.status();
            let retry_after = response
                .headers()
                .get(hyper::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| retry_after(v, SystemTime::now()));
            let body = tokio::time::timeout(timeout, response.into_body().collect())
                .await
                .ok()
                .and_then(Result::ok)
                .map(http_body_util::Collected::to_bytes)
                .unwrap_or_default();
            if status.is_success() {
                let (rejected, message) = partial_success(signal, &body);
                return Attempt::Accepted(rejected, message);
            }
            let text = describe_body(&body);
            let error = format!("POST {uri}: HTTP {status}{text}");
            match status.as_u16() {
                429 | 502 | 503 | 504 => Attempt::Retry(error, retry_after),
                _ => Attempt::Refused(error),
            }
        })
    }
}

/// The rejected count and message of a 2xx answer's partial success.
fn partial_success(signal: Signal, body: &[u8]) -> (u64, Option<String>) {
    if body.is_empty() {
        return (0, None);
    }
    let (rejected, message) = match signal {
        Signal::Metrics => match ExportMetricsServiceResponse::decode(body) {
            Ok(r) => r.partial_success.map_or((0, String::new()), |p| {
                (p.rejected_data_points, p.error_message)
            }),
            Err(_) => return (0, None),
        },
        Signal::Logs => match ExportLogsServiceResponse::decode(body) {
            Ok(r) => r.partial_success.map_or((0, String::new()), |p| {
                (p.rejected_log_records, p.error_message)
            }),
            Err(_) => return (0, None),
        },
    };
    let message = (!message.is_empty()).then_some(message);
    (u64::try_from(rejected).unwrap_or(0), message)
}

/// A short text of an error answer's body: a `google.rpc.Status` message would need its own
/// type, so the printable part is shown as it is.
fn describe_body(body: &[u8]) -> String {
    let text: String = String::from_utf8_lossy(body)
        .chars()
        .filter(|c| !c.is_control() || *c == ' ')
        .take(300)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        String::new()
    } else {
        format!(": {text}")
    }
}

/// `Retry-After`: delay-seconds or an HTTP-date (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub(crate) fn retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let parts: Vec<&str> = value.split_whitespace().collect();
    let [_, day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ]
    .iter()
    .zip(1i64..)
    .find(|(m, _)| *m == month)?
    .1;
    let day: i64 = day.parse().ok()?;
    let year: i64 = year.parse().ok()?;
    let mut hms = time.split(':').map(|p| p.parse::<i64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    let days = crate::calendar::days_from_civil(year, month, day);
    let at = days * 86_400 + h * 3600 + m * 60 + s;
    let now = now.duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(
        u64::try_from(at).ok()?.saturating_sub(now),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after("soon", now), None);
    }

    #[test]
    fn partial_success_is_read() {
        use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsPartialSuccess;
        let body = ExportMetricsServiceResponse {
            partial_success: Some(ExportMetricsPartialSuccess {
                rejected_data_points: 3,
                error_message: "bad unit".into(),
            }),
        }
        .encode_to_vec();
        assert_eq!(
            partial_success(Signal::Metrics, &body),
            (3, Some("bad unit".into()))
        );
        assert_eq!(partial_success(Signal::Metrics, &[]), (0, None));
    }
}
