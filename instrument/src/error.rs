//! The runtime's error type.

use crate::sink::SinkShortfall;
use std::path::PathBuf;

/// Everything that can go wrong installing, configuring, flushing or shutting down a pipeline,
/// or registering a metric at run time.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `install` was called while another pipeline's guard is alive.
    #[error(
        "a pipeline is already installed in this process; drop its guard before installing another"
    )]
    AlreadyInstalled,
    /// An operation that needs a pipeline ran with none installed.
    #[error("no pipeline is installed; call instrument::builder().install() first")]
    NotInstalled,
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The configuration file could not be read.
    #[error("cannot read configuration file {}", path.display())]
    ReadConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The configuration text is not valid TOML or has unknown keys or bad values.
    #[error("invalid configuration{}: {message}", path.as_ref().map(|p| format!(" in {}", p.display())).unwrap_or_default())]
    ParseConfig {
        /// The file, when read from one.
        path: Option<PathBuf>,
        /// What is wrong, naming the key.
        message: String,
    },
    /// A pipeline thread could not be started.
    #[error("cannot start the {what} thread")]
    Spawn {
        /// Which thread.
        what: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Some sinks do not hold everything recorded before a flush or shutdown: named, each with
    /// what went wrong and what it lacks.
    #[error("{operation} incomplete: {}", sinks.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
    Incomplete {
        /// `flush` or `shutdown`.
        operation: &'static str,
        /// The sinks concerned.
        sinks: Vec<SinkShortfall>,
    },
    /// The drain panicked since the last flush; the panic was caught and the drain went on, but
    /// records it was handling may be missing from the aggregates.
    #[error(
        "the drain panicked {count} time(s) since the last flush (last: {message}); records it was handling may be missing"
    )]
    DrainPanicked {
        /// Panics since the last flush.
        count: u64,
        /// The last panic's message.
        message: String,
    },
    /// The drain stopped after panicking repeatedly; recording is off.
    #[error("the drain stopped after repeated panics (last: {message}); recording is off")]
    DrainFailed {
        /// The last panic's message.
        message: String,
    },
    /// A metric registered at run time has a name that breaks the metric name rule.
    #[error("invalid metric name `{name}`: metric names must match [a-zA-Z_:][a-zA-Z0-9_:]*")]
    InvalidMetricName {
        /// The name.
        name: String,
    },
    /// A metric registered at run time has a label name that breaks a label name rule.
    #[error("invalid label name `{label}` on metric `{metric}`: {rule}")]
    InvalidLabelName {
        /// The metric's name.
        metric: String,
        /// The label name.
        label: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// A metric registered at run time names the same label twice.
    #[error("label `{label}` is given twice on metric `{metric}`: label names must be unique")]
    DuplicateLabel {
        /// The metric's name.
        metric: String,
        /// The label name.
        label: String,
    },
    /// The process holds as many callsites registered at run time as it can count, and the
    /// metric's name has no overflow series yet to fold a new label set into.
    #[error(
        "cannot register metric `{metric}`: the process already holds {limit} callsites \
         registered at run time"
    )]
    TooManyCallsites {
        /// The metric's name.
        metric: String,
        /// The process-wide limit.
        limit: usize,
    },
}
