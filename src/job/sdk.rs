//! The SDK as the main job installs it: every sink on, health checks, system metrics and the
//! alert engine.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use instrument::{Interests, PipelineGuard};
use instrument_sinks::alerts::{
    Alert, AlertEngine, AlertHandle, AlertState, AlertmanagerNotifier, Condition, Rule, RuleSet,
    Severity, Threshold,
};
use instrument_sinks::health::checks::{DiskThresholds, SystemThresholds};
use instrument_sinks::health::{HealthChecker, HealthRegistry, HealthReport};
use instrument_sinks::ops::{OpsPage, OpsSink};
use instrument_sinks::otlp::OtlpSinkBuilder;
use instrument_sinks::system::SystemSampler;
use instrument_sinks::{JsonlSink, MemorySink, PrometheusSink, SqliteSink};

/// The rule the main job adds to the defaults: more than 5 % of the parse stage's calls failed
/// over 10 s, firing at the first snapshot that shows it (`for` 0 s).
pub const STAGE_ERRORS_RULE: &str = "StageErrors";

/// When the first parse call failed in this process (for the time to detection).
static FIRST_FAILURE: OnceLock<Instant> = OnceLock::new();

/// Notes the first failing stage call; the alert's detection time is measured from it.
pub(super) fn note_failure() {
    FIRST_FAILURE.get_or_init(Instant::now);
}

/// Where the SDK's data goes.
#[derive(Clone, Debug)]
pub struct InstrumentationOptions {
    /// The data directory: the store is `DIR/instrument.db`, the logs `DIR/logs/`.
    pub data_dir: PathBuf,
    /// Where to serve `/metrics`, if anywhere.
    pub prometheus: Option<SocketAddr>,
    /// The SDK's TOML configuration file, if any (otherwise the defaults).
    pub config: Option<PathBuf>,
    /// An Alertmanager to push alerts to (`http://127.0.0.1:9093`), besides the log stream.
    pub alertmanager: Option<String>,
    /// Serve the operations endpoint on an address other machines can reach (otherwise only a
    /// loopback address is accepted).
    pub allow_remote: bool,
    /// What this run was asked to do (the job's options, as text): its digest is stored with
    /// the run, so `instrumentctl runs` tells runs of different settings apart.
    pub run_config: String,
    /// An OTLP/HTTP collector's base URL (`http://127.0.0.1:4318`) to send the measurements,
    /// events and audit entries to; `OTEL_EXPORTER_OTLP_ENDPOINT` does the same. Neither: nothing
    /// is sent.
    pub otlp: Option<String>,
}

impl InstrumentationOptions {
    /// Everything under `data_dir`, no endpoint, no configuration file, no Alertmanager, no
    /// OTLP collector.
    #[must_use]
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        InstrumentationOptions {
            data_dir: data_dir.into(),
            prometheus: None,
            config: None,
            alertmanager: None,
            allow_remote: false,
            run_config: String::new(),
            otlp: None,
        }
    }
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
    /// The alert rules or a notifier could not be set up.
    #[error(transparent)]
    Alerts(#[from] instrument_sinks::alerts::AlertError),
    /// The Alertmanager URL is not usable.
    #[error(transparent)]
    Notifier(#[from] instrument_sinks::alerts::NotifierError),
    /// The system sampler or the health checker could not start its thread.
    #[error("{0}")]
    Thread(String),
    /// The OTLP settings (URL, environment variables) are invalid.
    #[error(transparent)]
    Otlp(#[from] instrument_sinks::otlp::OtlpError),
    /// The endpoint's address is not a loopback one and remote access was not allowed.
    #[error(
        "refusing to serve the operations endpoint on {0}: other machines could reach it; use a \
         loopback address such as 127.0.0.1:9464, or pass --allow-remote"
    )]
    Remote(SocketAddr),
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
    /// Where `/metrics`, `/health`, `/ready` and the operations page (`/`) are served.
    pub metrics_at: Option<SocketAddr>,
    /// Where OTLP metrics are sent, and the exporter's counts.
    pub otlp: Option<(String, instrument_sinks::otlp::OtlpHandle)>,
    /// The health registry: the pipeline, its sinks, the machine and the data directory.
    pub health: HealthRegistry,
    /// The alert engine's state: rules, alerts, acknowledgement.
    pub alerts: AlertHandle,
    sampler: SystemSampler,
    checker: HealthChecker,
    detection: Detection,
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
        let alert_engine = alert_engine(options.alertmanager.as_deref())?;
        let alerts = alert_engine.handle();
        let mut builder = instrument::builder();
        if let Some(file) = &options.config {
            builder = builder.config_file(file)?;
        }
        let store = SqliteSink::builder()
            .path(Self::database_in(&options.data_dir))
            .program_version(concat!("ast_pipeline ", env!("CARGO_PKG_VERSION")))
            .run_config(&options.run_config)
            .build()?;
        let database = store.path().to_owned();
        let logs_dir = options.data_dir.join("logs");
        let logs = JsonlSink::builder().dir(&logs_dir).build()?;
        let logs_dir = logs.dir().to_owned();
        let memory =
            MemorySink::new().with_interests(Interests::ALL.with_audit(false).with_notices(false));
        // The operations page's live charts: a bounded ring of windows per stage.
        let ops = OpsSink::new();
        let page = OpsPage::new()
            .live(ops.handle())
            .store(&database)
            .alerts(alerts.clone());
        builder = builder
            .sink(store)
            .sink(logs)
            .sink(memory.clone())
            .sink(alert_engine)
            .sink(ops);
        // `/metrics`, `/health`, `/ready`, the operations page (`/`) and its `/api/` on one
        // operations endpoint.
        let health = HealthRegistry::new();
        let mut metrics_at = None;
        if let Some(addr) = options.prometheus {
            if !addr.ip().is_loopback() && !options.allow_remote {
                return Err(SdkError::Remote(addr));
            }
            let endpoint = page.health(health.clone()).mount(
                health.mount(
                    instrument_sinks::http::Endpoint::builder()
                        .listen(addr)
                        .allow_remote(options.allow_remote),
                ),
            );
            let prometheus = PrometheusSink::builder().endpoint(endpoint).build()?;
            metrics_at = prometheus.local_addr();
            builder = builder.sink(prometheus);
        }
        let mut otlp = None;
        if let Some(exporter) = OtlpSinkBuilder::from_env_or(options.otlp.as_deref())? {
            // A collector that is down delays the end of the run by 2 s at the final flush and
            // 2 s at shutdown.
            let sink = exporter
                .service_name("ast_pipeline")
                .logs(true)
                .flush_timeout(Duration::from_secs(2))
                .shutdown_timeout(Duration::from_secs(2))
                .build()?;
            otlp = Some((sink.endpoint().to_owned(), sink.handle()));
            builder = builder.sink(sink);
        }
        let pipeline = Arc::new(builder.install()?);
        // The machine every 5 s on the sampler's thread; the checks refreshed every second.
        let sampler = SystemSampler::builder()
            .data_dir(&options.data_dir)
            .start()
            .map_err(|e| SdkError::Thread(format!("the system sampler: {e}")))?;
        health.watch_pipeline(&pipeline.monitor());
        health.watch_system(sampler.handle(), SystemThresholds::default());
        health.watch_data_dir(&options.data_dir, DiskThresholds::default());
        let checker = health
            .start_checker(Duration::from_secs(1))
            .map_err(|e| SdkError::Thread(format!("the health checker: {e}")))?;
        let detection = Detection::watch(alerts.clone());
        Ok(Instrumentation {
            pipeline,
            memory,
            database,
            logs: logs_dir,
            metrics_at,
            otlp,
            health,
            alerts,
            sampler,
            checker,
            detection,
        })
    }

    /// Health and alerts as the run ends. `expect_alert` (failures were injected) waits up to
    /// 5 s more for `StageErrors` to fire.
    #[must_use]
    pub fn operations(&mut self, expect_alert: bool) -> Operations {
        Operations {
            health: self.health.report(),
            alerts: self.alerts.alerts(),
            detected: self.detection.finish(expect_alert),
        }
    }

    /// Stops the sampler and the checker, then shuts the pipeline down (a final flush of every
    /// sink).
    ///
    /// # Errors
    /// The pipeline is still shared (a signal handler holds it) or a sink failed its shutdown.
    pub fn shutdown(mut self) -> Result<(), Box<dyn std::error::Error>> {
        self.checker.stop();
        self.sampler.stop();
        self.detection.finish(false);
        Arc::into_inner(self.pipeline)
            .ok_or("the pipeline is still shared at shutdown")?
            .shutdown()?;
        Ok(())
    }
}

/// Health and alerts at the end of a run, for the report.
#[derive(Debug)]
pub struct Operations {
    /// Every component's status.
    pub health: HealthReport,
    /// Alerts pending or firing (and acknowledged ones) as the run ends.
    pub alerts: Vec<Alert>,
    /// From the first failing call to `StageErrors` firing, when it did.
    pub detected: Option<Duration>,
}

/// The default rules and [`STAGE_ERRORS_RULE`], pushed to `alertmanager` if given.
fn alert_engine(alertmanager: Option<&str>) -> Result<AlertEngine, SdkError> {
    let mut alerts = AlertEngine::builder()
        .rules(RuleSet::defaults())
        .rule(stage_errors_rule());
    if let Some(url) = alertmanager {
        alerts = alerts.notifier(AlertmanagerNotifier::new(url)?);
    }
    Ok(alerts.build()?)
}

/// More than 5 % of the parse stage's calls failed over 10 s.
fn stage_errors_rule() -> Rule {
    Rule::new(
        STAGE_ERRORS_RULE,
        Condition::ErrorRatio {
            function: Some(super::STAGES[2].1.to_owned()),
            window: Duration::from_secs(10),
            min_calls: 1,
        },
        Threshold::Above(0.05),
    )
    .severity(Severity::Critical)
    .label("stage", "parse")
    .summary("{{function}} failed {{value_percent}} of its files over {{window}}")
}

/// Watches the alert engine for [`STAGE_ERRORS_RULE`] firing, on a thread of its own, to time
/// detection from the first failing call.
#[derive(Debug)]
struct Detection {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<Option<Instant>>>,
    fired: Option<Instant>,
}

impl Detection {
    fn watch(alerts: AlertHandle) -> Detection {
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("ast-alert-watch".into())
            .spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    let firing = alerts
                        .alerts()
                        .iter()
                        .any(|a| a.rule == STAGE_ERRORS_RULE && a.state == AlertState::Firing);
                    if firing {
                        return Some(Instant::now());
                    }
                    thread::sleep(Duration::from_millis(10));
                }
                None
            })
            .ok();
        Detection {
            stop,
            thread,
            fired: None,
        }
    }

    /// The time from the first failing call to the alert firing.
    fn finish(&mut self, expect: bool) -> Option<Duration> {
        if let Some(thread) = self.thread.take() {
            if expect {
                let deadline = Instant::now() + Duration::from_secs(5);
                while !thread.is_finished() && Instant::now() < deadline {
                    thread::sleep(Duration::from_millis(5));
                }
            }
            self.stop.store(true, Ordering::Relaxed);
            self.fired = thread.join().ok().flatten();
        }
        let first = *FIRST_FAILURE.get()?;
        Some(self.fired?.saturating_duration_since(first))
    }
}
