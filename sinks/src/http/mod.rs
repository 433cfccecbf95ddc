//! The operations endpoint: the process's one HTTP server for operators and scrapers.
//!
//! Parts of the SDK register routes on an [`EndpointBuilder`]; [`EndpointBuilder::start`] binds
//! the address and serves them on a thread of its own (a single-threaded tokio runtime), so the
//! endpoint never runs on a thread of the host or of the pipeline. The
//! [`PrometheusSink`](crate::PrometheusSink) contributes `/metrics`; health, readiness and the
//! operations page mount on the same server.
//!
//! # Defaults, and what a slow or hostile client can do
//! - Address `127.0.0.1:9464` ([`DEFAULT_ADDR`]). An address other machines can reach (not
//!   loopback) is refused unless [`allow_remote`](EndpointBuilder::allow_remote) says so, so a
//!   typo in a configuration cannot expose the endpoint.
//! - At most 64 connections at once ([`max_connections`](EndpointBuilder::max_connections));
//!   further clients wait in the kernel's accept queue until one closes.
//! - Request headers must arrive within 5 s of the connection becoming ready for a request,
//!   idle keep-alive connections included
//!   ([`header_read_timeout`](EndpointBuilder::header_read_timeout)); a client that trickles its
//!   headers (slowloris) or never sends them is disconnected then.
//! - Headers larger than 16 KiB are refused (`431`), bodies larger than 64 KiB too (`413`); a
//!   request whose handling exceeds 30 s is answered `408`.
//! - A connection is closed (gracefully, then forcibly after the request timeout) after 120 s
//!   ([`max_connection_age`](EndpointBuilder::max_connection_age)), so a client that stops
//!   reading a response cannot hold a connection slot forever.
//! - Responses are compressed with gzip when the request's `Accept-Encoding` allows it.
//!
//! Handlers run on the endpoint's thread: they must answer quickly and never wait for the
//! pipeline.
//!
//! # Example
//! ```
//! use instrument_sinks::http::{Endpoint, axum::routing::get};
//!
//! let endpoint = Endpoint::builder()
//!     .listen("127.0.0.1:0".parse()?) // any free port
//!     .route("/hello", get(|| async { "hello\n" }))
//!     .start()?;
//! let addr = endpoint.local_addr();
//!
//! use std::io::{Read, Write};
//! let mut stream = std::net::TcpStream::connect(addr)?;
//! stream.write_all(b"GET /hello HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")?;
//! let mut response = String::new();
//! stream.read_to_string(&mut response)?;
//! assert!(response.starts_with("HTTP/1.1 200 OK"));
//! assert!(response.ends_with("hello\n"));
//!
//! endpoint.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeSet;
use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::pin::pin;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::MethodRouter;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower_http::compression::{CompressionLayer, CompressionLevel};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

/// The web framework the routes are written in, re-exported so that parts mounting routes use
/// the same version as the endpoint.
pub use axum;

/// The default address: loopback, port 9464 (Prometheus' registry of default exporter ports
/// lists 9464 for OpenTelemetry-style exporters).
pub const DEFAULT_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9464);

/// Why the operations endpoint could not start or stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HttpError {
    /// The address could not be bound: in use, not local, or not permitted.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// What went wrong, in words (`address already in use`, ...).
        reason: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The address is reachable from other machines and that was not allowed.
    #[error(
        "refusing to listen on {addr}: other machines can reach it; listen on a loopback \
         address such as 127.0.0.1, or allow it with `allow_remote(true)`"
    )]
    NotLoopback {
        /// The address.
        addr: SocketAddr,
    },
    /// Two parts registered the same path.
    #[error("the route {path} is registered twice on the operations endpoint")]
    DuplicateRoute {
        /// The path.
        path: String,
    },
    /// Two routes capture a segment at the same place under different names (`/a/{x}` and
    /// `/a/{y}/b`), which the router cannot tell apart.
    #[error(
        "the route {path} clashes with {other} on the operations endpoint: they capture the \
         same segment under different names"
    )]
    RouteClash {
        /// The path added last.
        path: String,
        /// The route it clashes with.
        other: String,
    },
    /// A path that is not a route path.
    #[error(
        "invalid route {path:?}: a route is a path starting with `/` whose segments are text or \
         a capture such as `{{id}}`"
    )]
    InvalidRoute {
        /// The path.
        path: String,
    },
    /// A limit set to zero.
    #[error("invalid operations endpoint setting: {setting} must be greater than zero")]
    ZeroLimit {
        /// The setting's name.
        setting: &'static str,
    },
    /// The thread or runtime of the endpoint could not be created.
    #[error("cannot start the operations endpoint on {addr}")]
    Start {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The endpoint did not stop in time; its thread was left to finish on its own.
    #[error("the operations endpoint on {addr} did not stop within {timeout:?}")]
    StopTimeout {
        /// The address.
        addr: SocketAddr,
        /// How long shutdown waited.
        timeout: Duration,
    },
}

/// Limits that protect the endpoint (and through it, the process) from slow or hostile clients.
#[derive(Clone, Copy, Debug)]
struct Limits {
    max_connections: usize,
    header_read_timeout: Duration,
    request_timeout: Duration,
    max_connection_age: Duration,
    max_header_bytes: usize,
    max_body_bytes: usize,
    shutdown_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 64,
            header_read_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
            max_connection_age: Duration::from_secs(120),
            max_header_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
            shutdown_timeout: Duration::from_secs(1),
        }
    }
}

/// Configures and starts an [`Endpoint`]; parts add their routes with
/// [`route`](EndpointBuilder::route).
#[derive(Clone, Debug)]
pub struct EndpointBuilder {
    addr: SocketAddr,
    allow_remote: bool,
    limits: Limits,
    router: Router,
    paths: BTreeSet<String>,
    /// The first invalid, duplicate or clashing route, reported by `start`.
    route_error: Option<RouteError>,
}

impl Default for EndpointBuilder {
    fn default() -> Self {
        EndpointBuilder {
            addr: DEFAULT_ADDR,
            allow_remote: false,
            limits: Limits::default(),
            router: Router::new(),
            paths: BTreeSet::new(),
            route_error: None,
        }
    }
}

impl EndpointBuilder {
    /// The address to listen on (default [`DEFAULT_ADDR`]); port 0 picks a free port, which
    /// [`Endpoint::local_addr`] tells.
    #[must_use]
    pub fn listen(mut self, addr: SocketAddr) -> Self {
        self.addr = addr;
        self
    }

    /// The address this builder will listen on.
    #[must_use]
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Whether an address other machines can reach (anything but loopback) may be used
    /// (default `false`).
    #[must_use]
    pub fn allow_remote(mut self, allow: bool) -> Self {
        self.allow_remote = allow;
        self
    }

    /// Connections served at once (default 64); further clients wait to be accepted.
    #[must_use]
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.limits.max_connections = connections;
        self
    }

    /// How long a client has to send a request's headers once its connection is ready for a
    /// request, idle keep-alive connections included (default 5 s).
    #[must_use]
    pub fn header_read_timeout(mut self, timeout: Duration) -> Self {
        self.limits.header_read_timeout = timeout;
        self
    }

    /// How long handling a request (reading its body and producing the response) may take
    /// before it is answered `408 Request Timeout` (default 30 s).
    #[must_use]
    pub fn request_timeout(mut self, timeout: Duration) -> Self {
        self.limits.request_timeout = timeout;
        self
    }

    /// How long a connection may stay open (default 120 s); then it is closed after its current
    /// response, or dropped if that response has not gone out within the request timeout.
    #[must_use]
    pub fn max_connection_age(mut self, age: Duration) -> Self {
        self.limits.max_connection_age = age;
        self
    }

    /// The largest request head (request line and headers) accepted (default 16 KiB; at least
    /// 8 KiB is used).
    #[must_use]
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_header_bytes = bytes;
        self
    }

    /// The largest request body accepted (default 64 KiB).
    #[must_use]
    pub fn max_body_bytes(mut self, bytes: usize) -> Self {
        self.limits.max_body_bytes = bytes;
        self
    }

    /// How long [`Endpoint::shutdown`] lets requests in progress finish (default 1 s).
    #[must_use]
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.limits.shutdown_timeout = timeout;
        self
    }

    /// Adds a route: `path` (e.g. `/metrics`) served by `handler`, an axum method router such
    /// as `get(handler)`. A segment may be a capture, `{name}` (letters, digits and `_`), which
    /// matches one segment and is read with axum's `Path` extractor (`/api/trace/{id}`). A path
    /// registered twice (captures compared by position, whatever their names), one whose capture
    /// sits where another path has a capture of another name, or one not starting with `/`
    /// makes [`start`](EndpointBuilder::start) fail with an error naming it.
    #[must_use]
    pub fn route(mut self, path: &str, handler: MethodRouter) -> Self {
        let path_owned = || path.to_owned();
        let error = if valid_route(path) {
            self.paths
                .iter()
                .find_map(|known| match routes_conflict(known, path) {
                    Conflict::None => None,
                    Conflict::Same => Some(RouteError::Duplicate(path_owned())),
                    Conflict::Clash => Some(RouteError::Clash(path_owned(), known.clone())),
                })
        } else {
            Some(RouteError::Invalid(path_owned()))
        };
        if let Some(error) = error {
            self.route_error.get_or_insert(error);
        } else {
            self.paths.insert(path.to_owned());
            self.router = self.router.route(path, handler);
        }
        self
    }

    /// Whether a route for `path` was added.
    #[must_use]
    pub fn has_route(&self, path: &str) -> bool {
        self.paths.contains(path)
    }

    /// Binds the address and starts serving on a new thread.
    ///
    /// # Errors
    /// [`HttpError`] naming the address: it is in use or cannot be bound
    /// ([`HttpError::Bind`]), it is not loopback and remote access was not allowed, a route is
    /// invalid or duplicated, a limit is zero, or the thread cannot be started.
    pub fn start(self) -> Result<Endpoint, HttpError> {
        if let Some(error) = self.route_error {
            return Err(match error {
                RouteError::Invalid(path) => HttpError::InvalidRoute { path },
                RouteError::Duplicate(path) => HttpError::DuplicateRoute { path },
                RouteError::Clash(path, other) => HttpError::RouteClash { path, other },
            });
        }
        let limits = self.limits;
        for (setting, zero) in [
            ("max_connections", limits.max_connections == 0),
            ("header_read_timeout", limits.header_read_timeout.is_zero()),
            ("request_timeout", limits.request_timeout.is_zero()),
            ("max_connection_age", limits.max_connection_age.is_zero()),
        ] {
            if zero {
                return Err(HttpError::ZeroLimit { setting });
            }
        }
        if !self.addr.ip().is_loopback() && !self.allow_remote {
            return Err(HttpError::NotLoopback { addr: self.addr });
        }
        let listener =
            StdTcpListener::bind(self.addr).map_err(|source| bind_error(self.addr, source))?;
        let addr = listener
            .local_addr()
            .map_err(|source| bind_error(self.addr, source))?;
        listener
            .set_nonblocking(true)
            .map_err(|source| HttpError::Start { addr, source })?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .build()
            .map_err(|source| HttpError::Start { addr, source })?;
        let listing = self.paths.iter().cloned().collect::<Vec<_>>().join(", ");
        let router = self
            .router
            .fallback(move || {
                let listing = listing.clone();
                async move {
                    (
                        StatusCode::NOT_FOUND,
                        format!("not found; this endpoint serves {listing}\n"),
                    )
                }
            })
            .layer(RequestBodyLimitLayer::new(limits.max_body_bytes))
            .layer(TimeoutLayer::with_status_code(
                StatusCode::REQUEST_TIMEOUT,
                limits.request_timeout,
            ))
            .layer(CompressionLayer::new().quality(CompressionLevel::Fastest));
        let (stop, stopped) = watch::channel(false);
        let (done_tx, done) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("instrument-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    // Registering with the reactor fails only when the runtime cannot, and then
                    // nothing is served; shutdown still finds the thread done.
                    if let Ok(listener) = TcpListener::from_std(listener) {
                        serve(listener, router, limits, stopped).await;
                    }
                });
                drop(runtime);
                let _ = done_tx.send(());
            })
            .map_err(|source| HttpError::Start { addr, source })?;
        Ok(Endpoint {
            addr,
            shutdown_timeout: limits.shutdown_timeout,
            stop: Some(stop),
            thread: Some(thread),
            done,
        })
    }
}

/// Whether `path` starts with `/` and each of its segments is plain text or a whole-segment
/// capture `{name}`.
fn valid_route(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    rest.split('/').all(|segment| {
        if let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        } else {
            !segment.contains(['{', '}', '*'])
        }
    })
}

/// A route `start` refuses: invalid, registered twice, or clashing with another (which).
#[derive(Clone, Debug)]
enum RouteError {
    Invalid(String),
    Duplicate(String),
    Clash(String, String),
}

/// How two valid routes relate in the router.
#[derive(Debug, PartialEq, Eq)]
enum Conflict {
    /// Both can be served.
    None,
    /// The same path, captures at the same places (whatever their names).
    Same,
    /// Captures of different names after the same leading segments.
    Clash,
}

fn routes_conflict(a: &str, b: &str) -> Conflict {
    let capture = |s: &str| s.starts_with('{');
    let (a, b): (Vec<&str>, Vec<&str>) = (a.split('/').collect(), b.split('/').collect());
    if a.len() == b.len()
        && a.iter()
            .zip(&b)
            .all(|(x, y)| x == y || (capture(x) && capture(y)))
    {
        return Conflict::Same;
    }
    for (x, y) in a.iter().zip(&b) {
        if capture(x) && capture(y) {
            if x != y {
                return Conflict::Clash;
            }
        } else if x != y {
            return Conflict::None;
        }
    }
    Conflict::None
}

fn bind_error(addr: SocketAddr, source: io::Error) -> HttpError {
    let reason = match source.kind() {
        io::ErrorKind::AddrInUse => "address already in use".to_owned(),
        io::ErrorKind::AddrNotAvailable => "address not available on this machine".to_owned(),
        io::ErrorKind::PermissionDenied => "permission denied".to_owned(),
        _ => source.to_string(),
    };
    HttpError::Bind {
        addr,
        reason,
        source,
    }
}

/// A running operations endpoint. Dropping it stops it, like [`shutdown`](Endpoint::shutdown).
#[derive(Debug)]
pub struct Endpoint {
    addr: SocketAddr,
    shutdown_timeout: Duration,
    stop: Option<watch::Sender<bool>>,
    thread: Option<JoinHandle<()>>,
    done: mpsc::Receiver<()>,
}

impl Endpoint {
    /// A builder with the defaults: [`DEFAULT_ADDR`], loopback only, no routes.
    #[must_use]
    pub fn builder() -> EndpointBuilder {
        EndpointBuilder::default()
    }

    /// The address the endpoint listens on (with the port the system chose for port 0).
    #[must_use]
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting connections, lets requests in progress finish for up to the shutdown
    /// timeout, closes every connection and joins the endpoint's thread.
    ///
    /// # Errors
    /// [`HttpError::StopTimeout`] if the thread did not finish in time (a handler is stuck); it
    /// is left to finish on its own.
    pub fn shutdown(mut self) -> Result<(), HttpError> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> Result<(), HttpError> {
        let Some(stop) = self.stop.take() else {
            return Ok(());
        };
        let _ = stop.send(true);
        // The server gives connections `shutdown_timeout`, then drops them; the margin covers
        // the runtime's own teardown.
        let wait = self.shutdown_timeout + Duration::from_secs(1);
        match self.done.recv_timeout(wait) {
            Ok(()) | Err(mpsc::RecvTimeoutError::Disconnected) => {
                if let Some(thread) = self.thread.take() {
                    let _ = thread.join();
                }
                Ok(())
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(HttpError::StopTimeout {
                addr: self.addr,
                timeout: wait,
            }),
        }
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}

/// Accepts connections until `stop` turns true, then waits for them to finish (bounded).
async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let max_connections = limits.max_connections.min(1 << 20);
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let service = TowerToHyperService::new(router);
    loop {
        // A free slot first: at the limit, new clients wait in the accept queue.
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => break,
            },
            _ = stop.wait_for(|s| *s) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|s| *s) => break,
        };
        let Ok((stream, _peer)) = accepted else {
            // Out of file descriptors or a connection reset before accept: back off briefly
            // instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let connection = http.serve_connection(TokioIo::new(stream), service.clone());
        let stop = stop.clone();
        tokio::spawn(async move {
            let mut stop = stop;
            let mut connection = pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => return,
                _ = stop.wait_for(|s| *s) => {}
                () = tokio::time::sleep(limits.max_connection_age) => {}
            }
            connection.as_mut().graceful_shutdown();
            let grace = if *stop.borrow() {
                limits.shutdown_timeout
            } else {
                limits.request_timeout
            };
            let _ = tokio::time::timeout(grace, connection).await;
            drop(slot);
        });
    }
    drop(listener);
    // Every slot back means every connection closed; those still open after the timeout are
    // dropped with the runtime.
    let all = u32::try_from(max_connections).unwrap_or(u32::MAX);
    let _ = tokio::time::timeout(limits.shutdown_timeout, slots.acquire_many(all)).await;
}

#[cfg(test)]
mod tests {
    use super::{Conflict, routes_conflict, valid_route};

    #[test]
    fn routes_take_whole_segment_captures_only() {
        for ok in [
            "/",
            "/metrics",
            "/api/trace/{correlation_id}",
            "/api/alerts/{id}/ack",
        ] {
            assert!(valid_route(ok), "{ok}");
        }
        for bad in [
            "metrics",
            "/a/{}",
            "/a/{b",
            "/a/x{b}",
            "/a/{*rest}",
            "/a/{b-c}",
            "/a/*",
        ] {
            assert!(!valid_route(bad), "{bad}");
        }
    }

    #[test]
    fn captures_clash_by_position_and_name() {
        assert_eq!(routes_conflict("/a/{x}", "/a/{y}"), Conflict::Same);
        assert_eq!(routes_conflict("/metrics", "/metrics"), Conflict::Same);
        assert_eq!(routes_conflict("/a/{x}", "/a/{y}/b"), Conflict::Clash);
        assert_eq!(routes_conflict("/a/{x}", "/a/{x}/b"), Conflict::None);
        assert_eq!(routes_conflict("/a/{x}", "/a/b"), Conflict::None);
        assert_eq!(
            routes_conflict("/api/trace/{id}", "/api/audit/{id}"),
            Conflict::None
        );
        let error = super::Endpoint::builder()
            .route("/a/{x}", axum::routing::get(|| async { "" }))
            .route("/a/{y}/b", axum::routing::get(|| async { "" }))
            .start()
            .unwrap_err();
        assert_eq!(
            error.to_string(),
            "the route /a/{y}/b clashes with /a/{x} on the operations endpoint: they capture \
             the same segment under different names"
        );
    }
}
