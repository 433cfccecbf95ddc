//! The JSON endpoints under `/api/` (see `docs/operations-page.md` for every shape and status).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery};
use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::Semaphore;

use super::OpsHandle;
use crate::http::EndpointBuilder;
use crate::sqlite::SqliteError;
use crate::sqlite::query::{CallGraph, QueryError, Store, TimeRange};

/// The most slow calls one request may ask for.
pub(crate) const MAX_TOP: usize = 1_000;
/// The most health changes one request may ask for.
pub(crate) const MAX_LIMIT: usize = 10_000;
/// Store queries running at once; further requests wait their turn.
pub(crate) const STORE_SLOTS: usize = 4;

/// What the routes share.
pub(crate) struct Api {
    pub(crate) live: Option<OpsHandle>,
    pub(crate) store: Option<PathBuf>,
    #[cfg(feature = "alerts")]
    pub(crate) alerts: Option<crate::alerts::AlertHandle>,
    #[cfg(feature = "health")]
    pub(crate) health: Option<crate::health::HealthRegistry>,
    pub(crate) ack: bool,
    pub(crate) slots: Semaphore,
}

/// A failed request: its status and the one-line message of its `{"error": ...}` body.
#[derive(Debug)]
pub(crate) struct Failure(StatusCode, String);

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.1 }).to_string();
        body.push('\n');
        (
            self.0,
            [
                (CONTENT_TYPE, "application/json"),
                (CACHE_CONTROL, "no-store"),
            ],
            body,
        )
            .into_response()
    }
}

fn fail(status: StatusCode, message: impl Into<String>) -> Failure {
    Failure(status, message.into())
}

/// A `200` answer with `value` as JSON, never cached.
fn answer(value: &impl Serialize) -> Response {
    match serde_json::to_string(value) {
        Ok(mut body) => {
            body.push('\n');
            (
                StatusCode::OK,
                [
                    (CONTENT_TYPE, "application/json"),
                    (CACHE_CONTROL, "no-store"),
                ],
                body,
            )
                .into_response()
        }
        Err(e) => fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write the answer as JSON: {e}"),
        )
        .into_response(),
    }
}

/// An error and its causes on one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    crate::errors::error_chain(error)
}

fn store_failure(error: &QueryError) -> Failure {
    match error {
        QueryError::BadCorrelation(_) => fail(StatusCode::BAD_REQUEST, error.to_string()),
        QueryError::UnknownRun { .. }
        | QueryError::UnknownCallsite { .. }
        | QueryError::NoData { .. } => fail(StatusCode::NOT_FOUND, error.to_string()),
        QueryError::Open(open) => open_failure(open),
        _ => fail(StatusCode::INTERNAL_SERVER_ERROR, chain(error)),
    }
}

fn open_failure(error: &SqliteError) -> Failure {
    fail(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the store cannot be read now: {}", chain(error)),
    )
}

/// The query string's parameters, each at most once and each one of `allowed`.
struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    fn parse(query: Option<&str>, path: &str, allowed: &[&str]) -> Result<Params, Failure> {
        let mut pairs: Vec<(String, String)> = Vec::new();
        for part in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (key, value) = part.split_once('=').unwrap_or((part, ""));
            let key = decode(key).ok_or_else(|| bad_encoding(path))?;
            let value = decode(value).ok_or_else(|| bad_encoding(path))?;
            if !allowed.contains(&key.as_str()) {
                let takes = if allowed.is_empty() {
                    "it takes none".to_owned()
                } else {
                    format!("it takes {}", allowed.join(", "))
                };
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    format!("unknown query parameter `{key}` for {path}; {takes}"),
                ));
            }
            if pairs.iter().any(|(k, _)| *k == key) {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    format!("query parameter `{key}` given twice"),
                ));
            }
            pairs.push((key, value));
        }
        Ok(Params { pairs })
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    fn range(&self, default_since: &str, now: SystemTime) -> Result<TimeRange, Failure> {
        Ok(TimeRange {
            since: time("since", self.get("since").unwrap_or(default_since), now)?,
            until: match self.get("until") {
                Some(text) => time("until", text, now)?,
                None => None,
            },
        })
    }

    fn number(&self, key: &str, default: usize, max: usize) -> Result<usize, Failure> {
        let Some(text) = self.get(key) else {
            return Ok(default);
        };
        match text.parse::<usize>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(fail(
                StatusCode::BAD_REQUEST,
                format!("invalid {key} `{text}`: give a whole number from 1 to {max}"),
            )),
        }
    }

    fn flag(&self, key: &str) -> Result<bool, Failure> {
        match self.get(key) {
            None | Some("false" | "0") => Ok(false),
            Some("true" | "1" | "") => Ok(true),
            Some(other) => Err(fail(
                StatusCode::BAD_REQUEST,
                format!("invalid {key} `{other}`: give true or false"),
            )),
        }
    }
}

fn bad_encoding(path: &str) -> Failure {
    fail(
        StatusCode::BAD_REQUEST,
        format!("the query string of {path} is not valid percent-encoded UTF-8"),
    )
}

/// Percent-decodes a query component (`+` is a space); `None` for a bad escape or bad UTF-8.
pub(crate) fn decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// `text` of parameter `name` as a time, as `instrumentctl` reads `--since`: `all` (no bound),
/// a duration before `now`, or an RFC 3339 UTC time.
fn time(name: &str, text: &str, now: SystemTime) -> Result<Option<SystemTime>, Failure> {
    if text == "all" {
        return Ok(None);
    }
    if let Ok(ago) = humantime::parse_duration(text) {
        return now.checked_sub(ago).map(Some).ok_or_else(|| {
            fail(
                StatusCode::BAD_REQUEST,
                format!("{name} `{text}` reaches further back than this system's clock can"),
            )
        });
    }
    if let Ok(time) = humantime::parse_rfc3339_weak(text) {
        return Ok(Some(time));
    }
    Err(fail(
        StatusCode::BAD_REQUEST,
        format!(
            "invalid {name} `{text}`: give a duration such as 1h, 30m or 7d (that long ago), an \
             RFC 3339 UTC time such as 2026-01-01T00:00:00Z, or `all`"
        ),
    ))
}

impl Api {
    /// Runs `query` on the store, opened read-only for this request, on tokio's blocking pool
    /// (never on the endpoint's thread), at most [`STORE_SLOTS`] at once.
    async fn with_store<T, F>(self: &Arc<Self>, query: F) -> Result<T, Failure>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, Failure> + Send + 'static,
    {
        let Some(path) = self.store.clone() else {
            return Err(fail(
                StatusCode::NOT_FOUND,
                "this process has no SQLite store configured for the operations page, so \
                 summaries, slow calls, errors, traces, audit trails and stored alerts and \
                 health are not available",
            ));
        };
        let _slot = self.slots.acquire().await.map_err(|_| {
            fail(
                StatusCode::SERVICE_UNAVAILABLE,
                "the operations endpoint is stopping",
            )
        })?;
        tokio::task::spawn_blocking(move || {
            let store = Store::open(&path).map_err(|e| open_failure(&e))?;
            query(&store)
        })
        .await
        .map_err(|e| {
            fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the store query failed: {e}"),
            )
        })?
    }
}

type Shared = Arc<Api>;

/// Adds a `GET` route whose handler takes the shared state and the raw query.
fn query_route<F, Fut>(api: &Shared, handler: F) -> MethodRouter
where
    F: Fn(Shared, Option<String>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response, Failure>> + Send + 'static,
{
    let api = Arc::clone(api);
    get(move |RawQuery(query): RawQuery| {
        let api = Arc::clone(&api);
        let handler = handler.clone();
        async move {
            handler(api, query)
                .await
                .unwrap_or_else(IntoResponse::into_response)
        }
    })
}

/// Adds a `GET` route whose handler takes the shared state, one path capture and the query.
fn capture_route<F, Fut>(api: &Shared, handler: F) -> MethodRouter
where
    F: Fn(Shared, String, Option<String>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Response, Failure>> + Send + 'static,
{
    let api = Arc::clone(api);
    get(
        move |Path(capture): Path<String>, RawQuery(query): RawQuery| {
            let api = Arc::clone(&api);
            let handler = handler.clone();
            async move {
                handler(api, capture, query)
                    .await
                    .unwrap_or_else(IntoResponse::into_response)
            }
        },
    )
}

/// Mounts every `/api/` route.
pub(crate) fn mount(endpoint: EndpointBuilder, api: &Shared) -> EndpointBuilder {
    endpoint
        .route("/api/config", query_route(api, config))
        .route("/api/live", query_route(api, live))
        .route("/api/summary", query_route(api, summary))
        .route("/api/slow", query_route(api, slow))
        .route("/api/errors", query_route(api, errors))
        .route("/api/trace/{correlation_id}", capture_route(api, trace))
        .route("/api/audit/{id}", capture_route(api, audit))
        .route("/api/alerts", query_route(api, stored_alerts))
        .route("/api/alerts/live", query_route(api, live_alerts))
        .route("/api/alerts/{id}/ack", ack_route(api))
        .route("/api/health", query_route(api, stored_health))
        .route("/api/health/now", query_route(api, health_now))
        .route("/api/runs", query_route(api, runs))
        .route("/api/callgraph", query_route(api, callgraph))
}

async fn config(api: Shared, query: Option<String>) -> Result<Response, Failure> {
    Params::parse(query.as_deref(), "/api/config", &[])?;
    #[cfg(feature = "alerts")]
    let alerts = api.alerts.is_some();
    #[cfg(not(feature = "alerts"))]
    let alerts = false;
    #[cfg(feature = "health")]
    let health = api.health.is_some();
    #[cfg(not(feature = "health"))]
    let health = false;
    Ok(answer(&json!({
        "version": env!("CARGO_PKG_VERSION"),
        "live": api.live.is_some(),
        "history_seconds": api.live.as_ref().map(OpsHandle::history_seconds),
        "store": api.store.as_ref().map(|p| p.display().to_string()),
        "alerts": alerts,
        "health": health,
        "ack": api.ack && alerts,
    })))
}

async fn live(api: Shared, query: Option<String>) -> Result<Response, Failure> {
    let params = Params::parse(query.as_deref(), "/api/live", &["after"])?;
    let after = match params.get("after") {
        None => None,
        Some(text) => Some(text.parse::<u64>().map_err(|_| {
            fail(
                StatusCode::BAD_REQUEST,
                format!("invalid after `{text}`: give a snapshot sequence number"),
            )
        })?),
    };
    let Some(handle) = api.live.clone() else {
        return Err(fail(
            StatusCode::NOT_FOUND,
            "this process feeds no OpsSink to the operations page, so there are no live charts",
        ));
    };
    let value = tokio::task::spawn_blocking(move || handle.to_json(after))
        .await
        .map_err(|e| {
            fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("reading the live data failed: {e}"),
            )
        })?;
    Ok(answer(&value))
}

async fn summary(api: Shared, query: Option<String>) -> Result<Response, Failure> {
    let params = Params::parse(query.as_deref(), "/api/summary", &["since", "until"])?;
    let range = params.range("1h", SystemTime::now())?;
    let summary = api
        .with_store(move |store| store.summary(range).map_err(|e| store_failure(&e)))
        .await?;
    Ok(answer(&summary))
}

async fn slow(api: Shared, query: Option<String>) -> Result<Response, Failure> {
    let params = Params::parse(query.as_deref(), "/api/slow", &["top", "since", "until"])?;
    let top = params.number("top", 20, MAX_TOP)?;
    let range = params.range("1h", SystemTime::now())?;
    let events = api
        .with_store(move |store| store.slow(top, range).map_err(|e| store_failure(&e)))
        .await?;
    Ok(answer(&events))
}

async fn errors(api: Shared, query: Option<String>) -> Result<Response, Failure> {
    let params = Params::parse(query.as_deref(), "/api/errors", &["since", "until"])?;
    let range = params.range("1h", SystemTime::now())?;
    let groups = api
        .with_store(move |store| store.errors(range).map_err(|e| store_failure(&e)))
        .await?;
    Ok(answer(&groups))
}

async fn trace(api: Shared, id: String, query: Option<String>) -> Result<Response, Failure> {
    Params::parse(query.as_deref(), "/api/trace/{correlation_id}", &[])?;
    let trace = api
        .with_store(move |store| {
            let trace = store.trace(&id).map_err(|e| store_failure(&e))?;
            if trace.entries.is_empty() {
                return Err(fail(
                    StatusCode::NOT_FOUND,
                    format!(
                        "no event, audit entry or notice is stored under correlation id {}",
                        trace.correlation
                    ),
                ));
            }
            Ok(trace)
        })
        .await?;
    Ok(answer(&trace))
}

async fn audit(api: Shared, id: String, query: Option<String>) -> Result<Response, Failure> {
    Params::parse(query.as_deref(), "/api/audit/{id}", &[])?;
    if id.is_empty() {
        return Err(fail(StatusCode::BAD_REQUEST, "give an artifact id"));
    }
    let trail = api
        .with_store(move |store| {
            let trail = store.audit_trail(&id).map_err(|e| store_failure(&e))?;
            if trail.entries.is_empty() {
                return Err(fail(
                    StatusCode::NOT_FOUND,
                    format!("no audit entry names `{id}` as an input or an output"),
                ));
            }
            Ok(trail)
        })
        .await?;
    Ok(answer(&trail))
}

async fn runs(api: Shared, query: Option<String>) -> Result<Response, Failure> {
    Params::parse(query.as_deref(), "/api/runs", &[])?;
    let runs = api
        .with_store(move |store| store.runs().map_err(|e| store_failure(&e)))
        .await?;
    Ok(answer(&runs))
}

/// Which instrumented function called which (`instrumentctl callgraph --json`), over one run
/// (`?run=ID`) or every stored one.
async fn callgraph(api: Shared, query: Option<String>) -> Result<Response, Failure> {
    let params = Params::parse(query.as_deref(), "/api/callgraph", &["run"])?;
    let run = match params.get("run") {
        None => None,
        Some(text) => Some(text.parse::<i64>().map_err(|_| {
            fail(
                StatusCode::BAD_REQUEST,
                format!("run `{text}` is not a run id (a number, as /api/runs lists)"),
            )
        })?),
    };
    let graph = api
        .with_store(move |store| match store.callgraph(run) {
            // Nothing stored yet is an empty graph here (the page polls from the start), where
            // `instrumentctl callgraph` says so and fails.
            Err(QueryError::NoData { .. }) => Ok(CallGraph {
                run_id: run,
                events: 0,
                nodes: Vec::new(),
                edges: Vec::new(),
            }),
            other => other.map_err(|e| store_failure(&e)),
        })
        .await?;
    Ok(answer(&graph))
}

async fn stored_alerts(api: Shared, query: Option<String>) -> Result<Response, Failure> {
    let params = Params::parse(query.as_deref(), "/api/alerts", &["all"])?;
    let all = params.flag("all")?;
    let alerts = api
        .with_store(move |store| store.alerts(all).map_err(|e| store_failure(&e)))
        .await?;
    Ok(answer(&alerts))
}

async fn stored_health(api: Shared, query: Option<String>) -> Result<Response, Failure> {
    let params = Params::parse(query.as_deref(), "/api/health", &["since", "limit"])?;
    let range = params.range("24h", SystemTime::now())?;
    let limit = params.number("limit", 50, MAX_LIMIT)?;
    let health = api
        .with_store(move |store| store.health(range, limit).map_err(|e| store_failure(&e)))
        .await?;
    Ok(answer(&health))
}

#[cfg(feature = "health")]
async fn health_now(api: Shared, query: Option<String>) -> Result<Response, Failure> {
    Params::parse(query.as_deref(), "/api/health/now", &[])?;
    let Some(registry) = api.health.clone() else {
        return Err(no_health());
    };
    let report = tokio::task::spawn_blocking(move || registry.report())
        .await
        .map_err(|e| {
            fail(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the health report failed: {e}"),
            )
        })?;
    Ok(answer(&report))
}

#[cfg(not(feature = "health"))]
async fn health_now(_api: Shared, query: Option<String>) -> Result<Response, Failure> {
    Params::parse(query.as_deref(), "/api/health/now", &[])?;
    Err(no_health())
}

fn no_health() -> Failure {
    fail(
        StatusCode::NOT_FOUND,
        "this process gives the operations page no health registry",
    )
}

fn no_alerts() -> Failure {
    fail(
        StatusCode::NOT_FOUND,
        "this process gives the operations page no alert engine",
    )
}

/// An alert of the engine as `/api/alerts/live` lists it.
#[cfg(feature = "alerts")]
fn alert_json(alert: &crate::alerts::Alert) -> Value {
    let mut value = serde_json::to_value(alert).unwrap_or(Value::Null);
    if let Some(object) = value.as_object_mut() {
        object.insert("state".into(), alert.display_state().into());
        let (acked, by) = match &alert.acknowledged {
            Some((at, by)) => (
                Value::from(humantime::format_rfc3339_micros(*at).to_string()),
                Value::from(by.clone()),
            ),
            None => (Value::Null, Value::Null),
        };
        object.insert("acked".into(), acked);
        object.insert("acked_by".into(), by);
    }
    value
}

#[cfg(feature = "alerts")]
async fn live_alerts(api: Shared, query: Option<String>) -> Result<Response, Failure> {
    Params::parse(query.as_deref(), "/api/alerts/live", &[])?;
    let Some(alerts) = api.alerts.clone() else {
        return Err(no_alerts());
    };
    let list: Vec<Value> = alerts.alerts().iter().map(alert_json).collect();
    Ok(answer(&list))
}

#[cfg(not(feature = "alerts"))]
async fn live_alerts(_api: Shared, query: Option<String>) -> Result<Response, Failure> {
    Params::parse(query.as_deref(), "/api/alerts/live", &[])?;
    Err(no_alerts())
}

/// `POST /api/alerts/{id}/ack`: the only write. A JSON body (`Content-Type: application/json`,
/// which a page of another origin cannot send without asking first) may name who acknowledges.
fn ack_route(api: &Shared) -> MethodRouter {
    let api = Arc::clone(api);
    post(
        move |Path(id): Path<String>, headers: HeaderMap, body: Bytes| {
            let api = Arc::clone(&api);
            async move { ack(&api, &id, &headers, &body).unwrap_or_else(IntoResponse::into_response) }
        },
    )
}

fn ack(api: &Api, id: &str, headers: &HeaderMap, body: &[u8]) -> Result<Response, Failure> {
    if !api.ack {
        return Err(fail(
            StatusCode::FORBIDDEN,
            "acknowledging alerts is turned off on this operations endpoint (read-only)",
        ));
    }
    let json_body = headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"));
    if !json_body {
        return Err(fail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the acknowledgement with Content-Type: application/json and a JSON object \
             body such as {\"by\": \"ann\"}",
        ));
    }
    let by = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        let value: Value = serde_json::from_slice(body).map_err(|e| {
            fail(
                StatusCode::BAD_REQUEST,
                format!("the body is not JSON: {e}"),
            )
        })?;
        match value.get("by") {
            None | Some(Value::Null) if value.is_object() => None,
            Some(Value::String(by)) if !by.trim().is_empty() && by.len() <= 200 => {
                Some(by.trim().to_owned())
            }
            _ => {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    "the body must be a JSON object whose optional `by` is a name of 1 to 200 \
                     characters",
                ));
            }
        }
    };
    ack_alert(api, id, by.as_deref().unwrap_or("operations page"))
}

#[cfg(feature = "alerts")]
fn ack_alert(api: &Api, id: &str, by: &str) -> Result<Response, Failure> {
    use crate::alerts::AlertState;
    let Some(alerts) = &api.alerts else {
        return Err(no_alerts());
    };
    let find = || {
        alerts
            .alerts()
            .into_iter()
            .find(|a| a.id.to_string() == id || a.fingerprint == id)
    };
    let Some(alert) = find() else {
        return Err(fail(
            StatusCode::NOT_FOUND,
            format!("no pending or firing alert has the id or fingerprint `{id}`"),
        ));
    };
    if alert.state != AlertState::Firing {
        return Err(fail(
            StatusCode::CONFLICT,
            format!(
                "alert {id} ({}) is {}, not firing; only a firing alert can be acknowledged",
                alert.rule,
                alert.display_state()
            ),
        ));
    }
    if let Some((_, by)) = &alert.acknowledged {
        return Err(fail(
            StatusCode::CONFLICT,
            format!(
                "alert {id} ({}) was already acknowledged by {by}",
                alert.rule
            ),
        ));
    }
    if !alerts.ack(id, by) {
        return Err(fail(
            StatusCode::CONFLICT,
            format!(
                "alert {id} ({}) changed state meanwhile; reload the alerts",
                alert.rule
            ),
        ));
    }
    let alert = find().map_or(Value::Null, |a| alert_json(&a));
    Ok(answer(&alert))
}

#[cfg(not(feature = "alerts"))]
fn ack_alert(_api: &Api, _id: &str, _by: &str) -> Result<Response, Failure> {
    Err(no_alerts())
}

#[cfg(test)]
mod tests {
    use super::decode;

    #[test]
    fn query_components_are_percent_decoded() {
        assert_eq!(decode("a%2Fb+c").as_deref(), Some("a/b c"));
        assert_eq!(decode("%E2%9C%93").as_deref(), Some("\u{2713}"));
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%4"), None);
        assert_eq!(decode("%FF"), None);
    }
}
