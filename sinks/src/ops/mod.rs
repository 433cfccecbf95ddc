//! The operations page: a live web view of the pipeline at `/` of the operations endpoint
//! ([`http`](crate::http)), on the JSON endpoints under `/api/` it is built on.
//!
//! Two sources feed it:
//! - [`OpsSink`], a sink interested in snapshots, keeps per callsite (function, `async fn` or
//!   `timer!`) a bounded ring of the drain's windows (calls per second, error ratio, p50 and
//!   p99 over the last 15 minutes by default, at most 3,600 points and 200 callsites), the
//!   totals since install, the pipeline's own metrics and sinks, and the latest `system_*` and
//!   `process_*` gauges (from [`SystemSampler`](crate::system::SystemSampler) when one runs).
//!   The page asks `/api/live` every second for the points it has not seen, so it works
//!   before anything reaches a store.
//! - The `SQLite` store ([`OpsPage::store`]): summaries over a range, slow calls, errors,
//!   traces (every event, audit entry and notice of a correlation id), audit trails, and the
//!   stored health and alert history, with the shapes `instrumentctl --json` prints. Each
//!   request opens the file read-only on tokio's blocking pool (at most four at once), never
//!   on the endpoint's thread and never in the way of the sink that writes it.
//!
//! With an [`AlertHandle`](crate::alerts::AlertHandle) the page lists the firing alerts and
//! can acknowledge them (`POST /api/alerts/{id}/ack`, the only request that changes anything;
//! [`OpsPage::allow_ack`] turns it off); with a
//! [`HealthRegistry`](crate::health::HealthRegistry) it shows each component's status now.
//! Parts not given answer `404` with a message saying what is missing, and `/api/config`
//! tells the page which parts there are. `docs/operations-page.md` lists every endpoint, its
//! JSON and its status codes.
//!
//! The page, its script and style, and the vendored chart library (uPlot 1.6.32, MIT, its
//! licence at `/assets/LICENSE-uPlot.txt`) are embedded in the binary and served with their
//! media types, an `ETag` and `Cache-Control`; the page loads nothing from elsewhere.
//!
//! # Example
//! ```
//! # let dir = tempfile::tempdir()?;
//! # let db = dir.path().join("instrument.db");
//! use instrument_sinks::SqliteSink;
//! use instrument_sinks::http::Endpoint;
//! use instrument_sinks::ops::{OpsPage, OpsSink};
//!
//! let ops = OpsSink::new();
//! let endpoint = OpsPage::new()
//!     .live(ops.handle())
//!     .store(&db)
//!     .mount(Endpoint::builder().listen("127.0.0.1:0".parse()?))
//!     .start()?;
//! let pipeline = instrument::builder()
//!     .sink(ops)
//!     .sink(SqliteSink::builder().path(&db).build()?)
//!     .install()?;
//! // The page is at http://{addr}/ and its data under http://{addr}/api/.
//! let addr = endpoint.local_addr();
//! # let _ = addr;
//! pipeline.shutdown()?;
//! endpoint.shutdown()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod api;
mod assets;
mod live;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use instrument::{Batch, Interests, Sink, SinkError};
use serde_json::Value;
use tokio::sync::Semaphore;

pub use self::assets::UPLOT_VERSION;
use self::live::Live;
use crate::http::EndpointBuilder;

/// How much history the live charts keep by default: 15 minutes.
pub const DEFAULT_HISTORY: Duration = Duration::from_secs(15 * 60);
/// The most points the live ring keeps by default, whatever the window: 3,600.
pub const DEFAULT_MAX_POINTS: usize = 3_600;
/// The most callsites the live ring keeps by default: 200 (more are counted, not drawn).
pub const DEFAULT_MAX_CALLSITES: usize = 200;

/// Configures an [`OpsSink`].
#[derive(Clone, Copy, Debug)]
pub struct OpsSinkBuilder {
    history: Duration,
    max_points: usize,
    max_callsites: usize,
}

impl OpsSinkBuilder {
    /// How far back the live charts go (default [`DEFAULT_HISTORY`]).
    #[must_use]
    pub fn history(mut self, history: Duration) -> Self {
        self.history = history;
        self
    }

    /// The most windows kept (default [`DEFAULT_MAX_POINTS`]); with the default one-second
    /// window the history is the tighter bound.
    #[must_use]
    pub fn max_points(mut self, points: usize) -> Self {
        self.max_points = points;
        self
    }

    /// The most callsites kept (default [`DEFAULT_MAX_CALLSITES`]); callsites seen after that
    /// are counted in `untracked_callsites` of `/api/live`.
    #[must_use]
    pub fn max_callsites(mut self, callsites: usize) -> Self {
        self.max_callsites = callsites;
        self
    }

    /// The sink.
    #[must_use]
    pub fn build(self) -> OpsSink {
        OpsSink {
            live: Arc::new(Mutex::new(Live::new(
                self.history,
                self.max_points,
                self.max_callsites,
            ))),
            history: self.history,
        }
    }
}

/// Keeps the live data of the operations page from each snapshot; see the
/// [module docs](self). Its memory is bounded by its history, point and callsite limits.
pub struct OpsSink {
    live: Arc<Mutex<Live>>,
    history: Duration,
}

impl fmt::Debug for OpsSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpsSink")
            .field("history", &self.history)
            .finish_non_exhaustive()
    }
}

impl Default for OpsSink {
    fn default() -> Self {
        OpsSink::new()
    }
}

impl OpsSink {
    /// A sink with the defaults.
    #[must_use]
    pub fn new() -> OpsSink {
        OpsSink::builder().build()
    }

    /// A builder with the defaults: [`DEFAULT_HISTORY`], [`DEFAULT_MAX_POINTS`],
    /// [`DEFAULT_MAX_CALLSITES`].
    #[must_use]
    pub fn builder() -> OpsSinkBuilder {
        OpsSinkBuilder {
            history: DEFAULT_HISTORY,
            max_points: DEFAULT_MAX_POINTS,
            max_callsites: DEFAULT_MAX_CALLSITES,
        }
    }

    /// A handle for [`OpsPage::live`], usable after the sink has moved into the pipeline.
    #[must_use]
    pub fn handle(&self) -> OpsHandle {
        OpsHandle {
            live: Arc::clone(&self.live),
            history: self.history,
        }
    }
}

impl Sink for OpsSink {
    fn name(&self) -> &'static str {
        "ops"
    }

    fn interests(&self) -> Interests {
        Interests::NONE.with_snapshots(true)
    }

    fn write(&mut self, batch: &Batch) -> Result<(), SinkError> {
        if let Some(snapshot) = &batch.snapshot {
            let received = SystemTime::now();
            self.live
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .apply(snapshot, received);
        }
        Ok(())
    }
}

/// A cloneable handle on what an [`OpsSink`] keeps.
#[derive(Clone)]
pub struct OpsHandle {
    live: Arc<Mutex<Live>>,
    history: Duration,
}

impl fmt::Debug for OpsHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpsHandle").finish_non_exhaustive()
    }
}

impl OpsHandle {
    /// What `/api/live` answers: the points after snapshot `after` (all of them, with
    /// `"reset": true`, for `None` or a sequence no longer kept). See
    /// `docs/operations-page.md`.
    #[must_use]
    pub fn to_json(&self, after: Option<u64>) -> Value {
        self.live
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .to_json(after)
    }

    fn history_seconds(&self) -> u64 {
        self.history.as_secs()
    }
}

/// The operations page and its API, to mount on an operations endpoint being built.
#[derive(Clone, Default)]
pub struct OpsPage {
    live: Option<OpsHandle>,
    store: Option<PathBuf>,
    #[cfg(feature = "alerts")]
    alerts: Option<crate::alerts::AlertHandle>,
    #[cfg(feature = "health")]
    health: Option<crate::health::HealthRegistry>,
    deny_ack: bool,
}

impl fmt::Debug for OpsPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpsPage")
            .field("live", &self.live.is_some())
            .field("store", &self.store)
            .field("ack", &!self.deny_ack)
            .finish_non_exhaustive()
    }
}

impl OpsPage {
    /// A page with no sources yet: add them with [`live`](Self::live), [`store`](Self::store)
    /// and, with their features, `alerts` and `health`.
    #[must_use]
    pub fn new() -> OpsPage {
        OpsPage::default()
    }

    /// The live charts, totals and pipeline metrics, from an [`OpsSink`] in the pipeline.
    #[must_use]
    pub fn live(mut self, handle: OpsHandle) -> Self {
        self.live = Some(handle);
        self
    }

    /// The `SQLite` store to read (the file a [`SqliteSink`](crate::SqliteSink) writes),
    /// opened read-only per request.
    #[must_use]
    pub fn store(mut self, path: impl AsRef<Path>) -> Self {
        self.store = Some(path.as_ref().to_owned());
        self
    }

    /// The firing alerts of an alert engine, which the page can acknowledge.
    #[cfg(feature = "alerts")]
    #[must_use]
    pub fn alerts(mut self, handle: crate::alerts::AlertHandle) -> Self {
        self.alerts = Some(handle);
        self
    }

    /// The components of a health registry, reported when the page asks.
    #[cfg(feature = "health")]
    #[must_use]
    pub fn health(mut self, registry: crate::health::HealthRegistry) -> Self {
        self.health = Some(registry);
        self
    }

    /// Whether the page may acknowledge alerts (default `true`); with `false`, every request
    /// is read-only and `POST /api/alerts/{id}/ack` answers `403`.
    #[must_use]
    pub fn allow_ack(mut self, allow: bool) -> Self {
        self.deny_ack = !allow;
        self
    }

    /// Adds `/`, `/assets/...` and `/api/...` to `endpoint`. A path some other part already
    /// registered makes [`EndpointBuilder::start`] fail naming it.
    #[must_use]
    pub fn mount(self, endpoint: EndpointBuilder) -> EndpointBuilder {
        let api = Arc::new(api::Api {
            live: self.live,
            store: self.store,
            #[cfg(feature = "alerts")]
            alerts: self.alerts,
            #[cfg(feature = "health")]
            health: self.health,
            ack: !self.deny_ack,
            slots: Semaphore::new(api::STORE_SLOTS),
        });
        api::mount(assets::mount(endpoint), &api)
    }
}
