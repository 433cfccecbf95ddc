//! A blocking HTTP/1.1 client on hyper for the endpoint tests, and a parser of the Prometheus
//! text format good enough to compare scrapes.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Read as _;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Empty};
use hyper::header::{HOST, HeaderMap};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A response, read to its end.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Response {
    /// A header's value, as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as text, gunzipped when it came compressed.
    pub fn text(&self) -> String {
        if self.header("content-encoding") == Some("gzip") {
            let mut out = String::new();
            flate2::read::GzDecoder::new(&self.body[..])
                .read_to_string(&mut out)
                .expect("valid gzip");
            out
        } else {
            String::from_utf8(self.body.clone()).expect("UTF-8 body")
        }
    }
}

/// `GET http://{addr}{path_and_query}` with extra headers; panics if no response arrives within
/// 60 s (a guard against hanging, not a timing assertion).
pub fn get(addr: SocketAddr, path_and_query: &str, headers: &[(&str, &str)]) -> Response {
    try_get(addr, path_and_query, headers).unwrap_or_else(|e| panic!("GET {path_and_query}: {e}"))
}

/// Like [`get`], returning transport errors.
pub fn try_get(
    addr: SocketAddr,
    path_and_query: &str,
    headers: &[(&str, &str)],
) -> Result<Response, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
        let mut request = hyper::Request::get(format!("http://{addr}{path_and_query}"))
            .header(HOST, addr.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let request = request.body(Empty::new()).map_err(|e| e.to_string())?;
        let response = tokio::time::timeout(Duration::from_secs(60), client.request(request))
            .await
            .map_err(|_| "no response within 60 s".to_owned())?
            .map_err(|e| format!("{e:?}"))?;
        let (parts, body) = response.into_parts();
        let body = tokio::time::timeout(Duration::from_secs(60), body.collect())
            .await
            .map_err(|_| "no body within 60 s".to_owned())?
            .map_err(|e| e.to_string())?
            .to_bytes()
            .to_vec();
        Ok(Response {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    })
}

/// Percent-encodes a query parameter value.
pub fn encode(value: &str) -> String {
    let mut out = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The samples of a text-format or `OpenMetrics` exposition: `name{labels}` (as written) to the
/// value as written. Comment lines and exemplars are left out.
pub fn samples(exposition: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for line in exposition.lines() {
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        let line = line.split(" # ").next().unwrap();
        let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
        assert!(
            out.insert(series.to_owned(), value.to_owned()).is_none(),
            "series {series} appears twice"
        );
    }
    out
}
