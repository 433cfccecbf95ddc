//! The SDK as the main job installs it: every sink on.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use instrument::{Interests, PipelineGuard};
use instrument_sinks::{JsonlSink, MemorySink, PrometheusSink, SqliteSink};

/// Where the SDK's data goes.
#[derive(Clone, Debug)]
pub struct InstrumentationOptions {
    /// The data directory: the store is `DIR/instrument.db`, the logs `DIR/logs/`.
    pub data_dir: PathBuf,
    /// Where to serve `/metrics`, if anywhere.
    pub prometheus: Option<SocketAddr>,
    /// The SDK's TOML configuration file, if any (otherwise the defaults).
    pub config: Option<PathBuf>,
}

/// The SDK could not be installed.
#[derive(Debug, thiserror::Error)]
pub enum SdkError {
    /// The configuration file, the pipeline or a sink (the error names which).
    #[error(transparent)]
    Instrument(#[from] instrument::Error),
    /// The `SQLite` store could not be opened.
    #[error(transparent)]
    Sqlite(#[from] instrument_sinks::SqliteError),
    /// The JSON-lines logs could not be set up.
    #[error(transparent)]
    Jsonl(#[from] instrument_sinks::JsonlError),
    /// The Prometheus sink could not be set up.
    #[error(transparent)]
    Prometheus(#[from] instrument_sinks::PrometheusError),
}

/// An installed pipeline with the job's sinks: the `SQLite` store, JSON-lines logs, the
/// Prometheus endpoint (unless off), and an in-memory sink for the final report (snapshots and
/// events; no audit entries, which the store keeps).
pub struct Instrumentation {
    /// The pipeline; shared with the signal handler that flushes it on Ctrl-C or `SIGTERM`.
    pub pipeline: Arc<PipelineGuard>,
    /// What the report is built from.
    pub memory: MemorySink,
    /// `DIR/instrument.db`.
    pub database: PathBuf,
    /// `DIR/logs`.
    pub logs: PathBuf,
    /// Where `/metrics` is served.
    pub metrics_at: Option<SocketAddr>,
}

impl std::fmt::Debug for Instrumentation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Instrumentation")
            .field("database", &self.database)
            .field("logs", &self.logs)
            .field("metrics_at", &self.metrics_at)
            .finish_non_exhaustive()
    }
}

impl Instrumentation {
    /// The store's path under `data_dir`.
    #[must_use]
    pub fn database_in(data_dir: &Path) -> PathBuf {
        data_dir.join("instrument.db")
    }

    /// Installs the pipeline.
    ///
    /// # Errors
    /// [`SdkError`], naming the file, directory or address: the configuration file cannot be
    /// read or is invalid, the store or log directory cannot be opened, the endpoint cannot
    /// listen, or another pipeline is installed.
    pub fn install(options: &InstrumentationOptions) -> Result<Instrumentation, SdkError> {
        let mut builder = instrument::builder();
        if let Some(file) = &options.config {
            builder = builder.config_file(file)?;
        }
        let store = SqliteSink::builder()
            .path(Self::database_in(&options.data_dir))
            .build()?;
        let database = store.path().to_owned();
        let logs_dir = options.data_dir.join("logs");
        let logs = JsonlSink::builder().dir(&logs_dir).build()?;
        let logs_dir = logs.dir().to_owned();
        let memory =
            MemorySink::new().with_interests(Interests::ALL.with_audit(false).with_notices(false));
        builder = builder.sink(store).sink(logs).sink(memory.clone());
        let mut metrics_at = None;
        if let Some(addr) = options.prometheus {
            let prometheus = PrometheusSink::builder().listen(addr).build()?;
            metrics_at = prometheus.local_addr();
            builder = builder.sink(prometheus);
        }
        Ok(Instrumentation {
            pipeline: Arc::new(builder.install()?),
            memory,
            database,
            logs: logs_dir,
            metrics_at,
        })
    }
}
