//! The OTLP sink's settings: in code ([`OtlpSinkBuilder`]), from TOML with the same names, and
//! from the standard `OTEL_*` environment variables.

use std::collections::BTreeMap;
use std::time::Duration;

use hyper::Uri;
use serde::Deserialize;

use super::OtlpError;
use crate::buckets::DEFAULT_BUCKETS;

/// How request bodies are compressed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Compression {
    /// gzip, with `Content-Encoding: gzip` (the default).
    #[default]
    Gzip,
    /// None.
    None,
}

impl Compression {
    fn parse(text: &str) -> Option<Compression> {
        match text.trim().to_ascii_lowercase().as_str() {
            "gzip" => Some(Compression::Gzip),
            "none" | "" => Some(Compression::None),
            _ => None,
        }
    }
}

/// Configures an [`OtlpSink`](super::OtlpSink). Every setting has a default; an endpoint must be
/// given (in code, TOML or `OTEL_EXPORTER_OTLP_ENDPOINT`) before [`build`](Self::build).
#[derive(Clone, Debug)]
pub struct OtlpSinkBuilder {
    pub(crate) endpoint: Option<String>,
    pub(crate) metrics_endpoint: Option<String>,
    pub(crate) logs_endpoint: Option<String>,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) timeout: Duration,
    pub(crate) interval: Duration,
    pub(crate) compression: Compression,
    pub(crate) logs: bool,
    pub(crate) service_name: Option<String>,
    pub(crate) instance: Option<String>,
    pub(crate) resource: Vec<(String, String)>,
    pub(crate) prefix: String,
    pub(crate) buckets: Vec<Duration>,
    pub(crate) backlog_bytes: usize,
    pub(crate) backlog_requests: usize,
    pub(crate) first_backoff: Duration,
    pub(crate) max_backoff: Duration,
    pub(crate) flush_timeout: Duration,
    pub(crate) shutdown_timeout: Duration,
    pub(crate) self_metrics: bool,
}

impl Default for OtlpSinkBuilder {
    fn default() -> Self {
        OtlpSinkBuilder {
            endpoint: None,
            metrics_endpoint: None,
            logs_endpoint: None,
            headers: Vec::new(),
            timeout: Duration::from_secs(10),
            interval: Duration::from_secs(10),
            compression: Compression::Gzip,
            logs: false,
            service_name: None,
            instance: None,
            resource: Vec::new(),
            prefix: "instrument".to_owned(),
            buckets: DEFAULT_BUCKETS.to_vec(),
            backlog_bytes: 16 << 20,
            backlog_requests: 1024,
            first_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(30),
            flush_timeout: Duration::from_secs(10),
            shutdown_timeout: Duration::from_secs(10),
            self_metrics: true,
        }
    }
}

/// The TOML form: the builder's names, durations as text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    endpoint: Option<String>,
    metrics_endpoint: Option<String>,
    logs_endpoint: Option<String>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    timeout: Option<String>,
    interval: Option<String>,
    compression: Option<String>,
    logs: Option<bool>,
    service_name: Option<String>,
    instance: Option<String>,
    #[serde(default)]
    resource: BTreeMap<String, String>,
    prefix: Option<String>,
    buckets: Option<Vec<String>>,
    backlog_bytes: Option<usize>,
    backlog_requests: Option<usize>,
    first_backoff: Option<String>,
    max_backoff: Option<String>,
    flush_timeout: Option<String>,
    shutdown_timeout: Option<String>,
    self_metrics: Option<bool>,
}

fn config_error(message: String) -> OtlpError {
    OtlpError::Config { message }
}

fn duration(key: &str, text: &str) -> Result<Duration, OtlpError> {
    humantime::parse_duration(text).map_err(|e| {
        config_error(format!(
            "`{key}` = {text:?} is not a duration ({e}); write e.g. \"500ms\" or \"10s\""
        ))
    })
}

/// A duration in milliseconds, as the `OTEL_*` variables give them.
fn millis(var: &str, text: &str) -> Result<Duration, OtlpError> {
    text.trim()
        .parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| {
            config_error(format!(
                "{var}={text:?} is not a whole number of milliseconds"
            ))
        })
}

/// `%XX` escapes decoded (the `OTEL_*` list variables are percent-encoded).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Some(b) = std::str::from_utf8(&bytes[i + 1..i + 3])
                .ok()
                .and_then(|hex| u8::from_str_radix(hex, 16).ok())
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `key=value,key2=value2`, values percent-decoded, as `OTEL_EXPORTER_OTLP_HEADERS` and
/// `OTEL_RESOURCE_ATTRIBUTES` write them.
///
/// # Errors
/// A clear message naming `var` and the entry without `=`.
fn key_values(var: &str, text: &str) -> Result<Vec<(String, String)>, OtlpError> {
    let mut pairs = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let Some((key, value)) = entry.split_once('=') else {
            return Err(config_error(format!(
                "{var}: entry {entry:?} is not key=value"
            )));
        };
        let key = percent_decode(key.trim());
        if key.is_empty() {
            return Err(config_error(format!("{var}: entry {entry:?} has no key")));
        }
        pairs.push((key, percent_decode(value.trim())));
    }
    Ok(pairs)
}

/// The URL of one signal: `{base}/v1/{signal}`, or a signal's own URL used as it is.
pub(crate) fn signal_uri(
    base: Option<&str>,
    own: Option<&str>,
    signal: &str,
) -> Result<Uri, OtlpError> {
    let (url, append) = match (own, base) {
        (Some(own), _) => (own, false),
        (None, Some(base)) => (base, true),
        (None, None) => return Err(OtlpError::NoEndpoint),
    };
    let bad = |reason: &str| OtlpError::Url {
        url: url.to_owned(),
        reason: reason.to_owned(),
    };
    let parsed: Uri = url
        .trim()
        .parse()
        .map_err(|e: hyper::http::uri::InvalidUri| bad(&e.to_string()))?;
    match parsed.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(bad(
                "https is not supported (no TLS client is built in); send to a collector over \
                 http on loopback or a trusted network",
            ));
        }
        _ => return Err(bad("give an http:// URL such as http://127.0.0.1:4318")),
    }
    let authority = parsed
        .authority()
        .ok_or_else(|| bad("the URL has no host"))?
        .clone();
    let mut path = parsed.path().trim_end_matches('/').to_owned();
    if append {
        // A base that already names the signal's path is taken as that path.
        let suffix = format!("/v1/{signal}");
        if !path.ends_with(&suffix) {
            path.push_str(&suffix);
        }
    } else if path.is_empty() {
        path.push('/');
    }
    Uri::builder()
        .scheme("http")
        .authority(authority)
        .path_and_query(path)
        .build()
        .map_err(|e| bad(&e.to_string()))
}

impl OtlpSinkBuilder {
    /// The collector's base URL (e.g. `http://127.0.0.1:4318`): metrics go to
    /// `{endpoint}/v1/metrics`, logs to `{endpoint}/v1/logs`, as for
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`. Only `http://` (no TLS client is built in).
    #[must_use]
    pub fn endpoint(mut self, url: impl Into<String>) -> Self {
        self.endpoint = Some(url.into());
        self
    }

    /// The full URL metrics are posted to, instead of `{endpoint}/v1/metrics`
    /// (`OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`).
    #[must_use]
    pub fn metrics_endpoint(mut self, url: impl Into<String>) -> Self {
        self.metrics_endpoint = Some(url.into());
        self
    }

    /// The full URL logs are posted to, instead of `{endpoint}/v1/logs`
    /// (`OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`).
    #[must_use]
    pub fn logs_endpoint(mut self, url: impl Into<String>) -> Self {
        self.logs_endpoint = Some(url.into());
        self
    }

    /// Whether an endpoint has been given, in code, TOML or the environment.
    #[must_use]
    pub fn has_endpoint(&self) -> bool {
        self.endpoint.is_some() || self.metrics_endpoint.is_some()
    }

    /// Adds a header to every request, e.g. `Authorization` or an API key.
    #[must_use]
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// How long one request may take, connecting included (default 10 s).
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How often the metrics are exported (default 10 s). Snapshots in between only update
    /// what the next export sends; a flush or shutdown exports at once.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// How request bodies are compressed (default gzip).
    #[must_use]
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Whether to export events, drop markers, audit entries and notices as OTLP logs
    /// (default off).
    #[must_use]
    pub fn logs(mut self, on: bool) -> Self {
        self.logs = on;
        self
    }

    /// The `service.name` resource attribute (default: `OTEL_SERVICE_NAME`, else the
    /// executable's name).
    #[must_use]
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// The `service.instance.id` resource attribute (default `{host}:{pid}`).
    #[must_use]
    pub fn instance(mut self, id: impl Into<String>) -> Self {
        self.instance = Some(id.into());
        self
    }

    /// Adds a resource attribute (replacing one of the same key).
    #[must_use]
    pub fn resource(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        let key = key.into();
        self.resource.retain(|(k, _)| *k != key);
        self.resource.push((key, value.into()));
        self
    }

    /// The prefix of the SDK's own metric names (default `instrument`): `<prefix>.calls`,
    /// `<prefix>.duration`, ...
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// The upper bounds of the duration histogram's buckets (default the Prometheus sink's,
    /// 1 us .. 10 s); sorted and deduplicated.
    #[must_use]
    pub fn buckets(mut self, bounds: impl IntoIterator<Item = Duration>) -> Self {
        self.buckets = bounds.into_iter().collect();
        self
    }

    /// The backlog's bounds: requests waiting to be sent, in encoded bytes and in number
    /// (default 16 MiB and 1,024). Beyond either, the oldest request is dropped and counted.
    #[must_use]
    pub fn backlog(mut self, bytes: usize, requests: usize) -> Self {
        self.backlog_bytes = bytes.max(1);
        self.backlog_requests = requests.max(1);
        self
    }

    /// The pause after a failed request (default 100 ms), doubling up to `max` (default 30 s);
    /// a `Retry-After` answer sets the pause instead.
    #[must_use]
    pub fn backoff(mut self, first: Duration, max: Duration) -> Self {
        self.first_backoff = first;
        self.max_backoff = max.max(first);
        self
    }

    /// How long `flush` waits for the backlog to empty (default 10 s); what is still queued
    /// then is reported by the flush's error and keeps being retried.
    #[must_use]
    pub fn flush_timeout(mut self, timeout: Duration) -> Self {
        self.flush_timeout = timeout;
        self
    }

    /// How long shutdown waits for the backlog to empty (default 10 s) before what is left is
    /// given up and reported.
    #[must_use]
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Whether the sink records its own counters and gauges (`instrument_otlp_*`, default
    /// on) through the pipeline, so every sink shows the backlog.
    #[must_use]
    pub fn self_metrics(mut self, on: bool) -> Self {
        self.self_metrics = on;
        self
    }

    /// The builder a program's `--otlp URL` flag and the environment ask for: the defaults
    /// with the standard variables applied ([`env`](Self::env)), then `url`, when given, as
    /// the endpoint. `None` when neither `url` nor `OTEL_EXPORTER_OTLP_ENDPOINT` (or
    /// `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`) gives an endpoint: nothing is to be sent.
    /// Settings made on the builder afterwards (`.logs(true)`, `.service_name(..)`) apply.
    ///
    /// # Errors
    /// As [`env`](Self::env).
    pub fn from_env_or(url: Option<&str>) -> Result<Option<OtlpSinkBuilder>, OtlpError> {
        let mut builder = OtlpSinkBuilder::default().env()?;
        if let Some(url) = url {
            builder = builder.endpoint(url);
        }
        Ok(builder.has_endpoint().then_some(builder))
    }

    /// These settings with the standard variables applied over them, where set:
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`,
    /// `OTEL_EXPORTER_OTLP_LOGS_ENDPOINT`, `OTEL_EXPORTER_OTLP_HEADERS` (added to the
    /// headers), `OTEL_EXPORTER_OTLP_TIMEOUT` (ms), `OTEL_EXPORTER_OTLP_COMPRESSION`
    /// (`gzip`, `none`), `OTEL_EXPORTER_OTLP_PROTOCOL` (only `http/protobuf`),
    /// `OTEL_METRIC_EXPORT_INTERVAL` (ms), `OTEL_SERVICE_NAME` and `OTEL_RESOURCE_ATTRIBUTES`.
    ///
    /// # Errors
    /// [`OtlpError::Config`] naming the variable whose value cannot be used.
    pub fn env(self) -> Result<Self, OtlpError> {
        self.apply_env(|name| std::env::var(name).ok())
    }

    /// As [`env`](Self::env), reading variables through `var` (for tests and embedding).
    ///
    /// # Errors
    /// As [`env`](Self::env).
    pub fn apply_env(mut self, var: impl Fn(&str) -> Option<String>) -> Result<Self, OtlpError> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        if let Some(protocol) = get("OTEL_EXPORTER_OTLP_PROTOCOL")
            && protocol.trim() != "http/protobuf"
        {
            return Err(config_error(format!(
                "OTEL_EXPORTER_OTLP_PROTOCOL={protocol:?} is not supported: this exporter \
                 speaks http/protobuf only"
            )));
        }
        if let Some(v) = get("OTEL_EXPORTER_OTLP_ENDPOINT") {
            self.endpoint = Some(v.trim().to_owned());
        }
        if let Some(v) = get("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT") {
            self.metrics_endpoint = Some(v.trim().to_owned());
        }
        if let Some(v) = get("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT") {
            self.logs_endpoint = Some(v.trim().to_owned());
        }
        if let Some(v) = get("OTEL_EXPORTER_OTLP_HEADERS") {
            self.headers
                .extend(key_values("OTEL_EXPORTER_OTLP_HEADERS", &v)?);
        }
        if let Some(v) = get("OTEL_EXPORTER_OTLP_TIMEOUT") {
            self.timeout = millis("OTEL_EXPORTER_OTLP_TIMEOUT", &v)?;
        }
        if let Some(v) = get("OTEL_EXPORTER_OTLP_COMPRESSION") {
            self.compression = Compression::parse(&v).ok_or_else(|| {
                config_error(format!(
                    "OTEL_EXPORTER_OTLP_COMPRESSION={v:?} is not `gzip` or `none`"
                ))
            })?;
        }
        if let Some(v) = get("OTEL_METRIC_EXPORT_INTERVAL") {
            self.interval = millis("OTEL_METRIC_EXPORT_INTERVAL", &v)?;
        }
        if let Some(v) = get("OTEL_SERVICE_NAME") {
            self.service_name = Some(v.trim().to_owned());
        }
        if let Some(v) = get("OTEL_RESOURCE_ATTRIBUTES") {
            for (key, value) in key_values("OTEL_RESOURCE_ATTRIBUTES", &v)? {
                // `service.name` in the attributes counts unless OTEL_SERVICE_NAME is set.
                if key == "service.name" {
                    if get("OTEL_SERVICE_NAME").is_none() {
                        self.service_name = Some(value);
                    }
                } else {
                    self = self.resource(key, value);
                }
            }
        }
        Ok(self)
    }

    /// Parses the TOML form: the builder's names, durations as text.
    ///
    /// ```
    /// use instrument_sinks::otlp::OtlpSinkBuilder;
    ///
    /// let builder = OtlpSinkBuilder::from_toml_str(r#"
    ///     endpoint = "http://127.0.0.1:4318"
    ///     headers = { "x-api-key" = "secret" }
    ///     timeout = "5s"
    ///     interval = "15s"
    ///     compression = "gzip"        # or "none"
    ///     logs = true                 # events, audit entries and notices as OTLP logs
    ///     service_name = "ast-pipeline"
    ///     resource = { "deployment.environment" = "test" }
    ///     backlog_bytes = 8388608
    ///     backlog_requests = 512
    /// "#)?;
    /// assert!(builder.has_endpoint());
    ///
    /// let err = OtlpSinkBuilder::from_toml_str("interval = \"often\"").unwrap_err();
    /// assert!(err.to_string().contains("`interval` = \"often\" is not a duration"));
    /// let err = OtlpSinkBuilder::from_toml_str("endpiont = \"http://x\"").unwrap_err();
    /// assert!(err.to_string().contains("endpiont"));
    /// # Ok::<(), instrument_sinks::otlp::OtlpError>(())
    /// ```
    ///
    /// # Errors
    /// [`OtlpError::Config`] naming the unknown key or the bad value.
    pub fn from_toml_str(text: &str) -> Result<OtlpSinkBuilder, OtlpError> {
        let raw: Raw =
            toml::from_str(text).map_err(|e| config_error(e.to_string().trim_end().to_owned()))?;
        let mut b = OtlpSinkBuilder {
            endpoint: raw.endpoint,
            metrics_endpoint: raw.metrics_endpoint,
            logs_endpoint: raw.logs_endpoint,
            headers: raw.headers.into_iter().collect(),
            service_name: raw.service_name,
            instance: raw.instance,
            resource: raw.resource.into_iter().collect(),
            ..OtlpSinkBuilder::default()
        };
        if let Some(v) = raw.timeout {
            b.timeout = duration("timeout", &v)?;
        }
        if let Some(v) = raw.interval {
            b.interval = duration("interval", &v)?;
        }
        if let Some(v) = raw.compression {
            b.compression = Compression::parse(&v).ok_or_else(|| {
                config_error(format!("`compression` = {v:?} is not \"gzip\" or \"none\""))
            })?;
        }
        if let Some(v) = raw.logs {
            b.logs = v;
        }
        if let Some(v) = raw.prefix {
            b.prefix = v;
        }
        if let Some(list) = raw.buckets {
            b.buckets = list
                .iter()
                .map(|v| duration("buckets", v))
                .collect::<Result<_, _>>()?;
        }
        if let Some(v) = raw.backlog_bytes {
            b.backlog_bytes = v.max(1);
        }
        if let Some(v) = raw.backlog_requests {
            b.backlog_requests = v.max(1);
        }
        if let Some(v) = raw.first_backoff {
            b.first_backoff = duration("first_backoff", &v)?;
        }
        if let Some(v) = raw.max_backoff {
            b.max_backoff = duration("max_backoff", &v)?.max(b.first_backoff);
        }
        if let Some(v) = raw.flush_timeout {
            b.flush_timeout = duration("flush_timeout", &v)?;
        }
        if let Some(v) = raw.shutdown_timeout {
            b.shutdown_timeout = duration("shutdown_timeout", &v)?;
        }
        if let Some(v) = raw.self_metrics {
            b.self_metrics = v;
        }
        Ok(b)
    }

    /// Reads and parses a TOML file.
    ///
    /// # Errors
    /// [`OtlpError::Config`] naming the file when it cannot be read, else as
    /// [`from_toml_str`](Self::from_toml_str) with the path in front of the message.
    pub fn from_toml_file(path: impl AsRef<std::path::Path>) -> Result<OtlpSinkBuilder, OtlpError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| config_error(format!("cannot read {}: {e}", path.display())))?;
        Self::from_toml_str(&text).map_err(|e| match e {
            OtlpError::Config { message } => config_error(format!("{}: {message}", path.display())),
            other => other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn env_sets_endpoint_headers_and_resource() {
        let b = OtlpSinkBuilder::default()
            .apply_env(vars(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/"),
                (
                    "OTEL_EXPORTER_OTLP_HEADERS",
                    "api-key=se%3Dcret, x-team = etl",
                ),
                ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
                ("OTEL_EXPORTER_OTLP_COMPRESSION", "none"),
                ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "service.name=svc,deployment.environment=ci",
                ),
            ]))
            .unwrap();
        assert_eq!(b.endpoint.as_deref(), Some("http://127.0.0.1:4318/"));
        assert_eq!(
            b.headers,
            [
                ("api-key".to_owned(), "se=cret".to_owned()),
                ("x-team".to_owned(), "etl".to_owned())
            ]
        );
        assert_eq!(b.timeout, Duration::from_millis(2500));
        assert_eq!(b.compression, Compression::None);
        assert_eq!(b.interval, Duration::from_secs(1));
        assert_eq!(b.service_name.as_deref(), Some("svc"));
        assert_eq!(
            b.resource,
            [("deployment.environment".to_owned(), "ci".to_owned())]
        );
        let uri = signal_uri(b.endpoint.as_deref(), None, "metrics").unwrap();
        assert_eq!(uri.to_string(), "http://127.0.0.1:4318/v1/metrics");
    }

    #[test]
    fn env_errors_name_the_variable() {
        let err = OtlpSinkBuilder::default()
            .apply_env(vars(&[("OTEL_EXPORTER_OTLP_TIMEOUT", "10s")]))
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("OTEL_EXPORTER_OTLP_TIMEOUT=\"10s\""),
            "{err}"
        );
        let err = OtlpSinkBuilder::default()
            .apply_env(vars(&[("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")]))
            .unwrap_err();
        assert!(
            err.to_string().contains("OTEL_EXPORTER_OTLP_PROTOCOL"),
            "{err}"
        );
        let err = OtlpSinkBuilder::default()
            .apply_env(vars(&[("OTEL_EXPORTER_OTLP_HEADERS", "novalue")]))
            .unwrap_err();
        assert!(
            err.to_string().contains("\"novalue\" is not key=value"),
            "{err}"
        );
    }

    #[test]
    fn signal_urls() {
        let base = Some("http://collector:4318/otlp");
        assert_eq!(
            signal_uri(base, None, "logs").unwrap().to_string(),
            "http://collector:4318/otlp/v1/logs"
        );
        assert_eq!(
            signal_uri(Some("http://c:4318/v1/metrics"), None, "metrics")
                .unwrap()
                .to_string(),
            "http://c:4318/v1/metrics"
        );
        assert_eq!(
            signal_uri(base, Some("http://other:9000/ingest"), "metrics")
                .unwrap()
                .to_string(),
            "http://other:9000/ingest"
        );
        let err = signal_uri(Some("https://c:4318"), None, "metrics").unwrap_err();
        assert!(err.to_string().contains("https is not supported"), "{err}");
        assert!(matches!(
            signal_uri(None, None, "metrics"),
            Err(OtlpError::NoEndpoint)
        ));
    }
}
