//! The runtime's error type.

use std::path::PathBuf;
use std::time::Duration;

use crate::sink::SinkError;

/// Everything that can go wrong installing, configuring, flushing or shutting down a pipeline.
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
    /// Some sinks did not finish a flush in time.
    #[error("flush did not finish within {timeout:?}; still waiting on sink(s): {}", sinks.join(", "))]
    FlushTimeout {
        /// The flush timeout.
        timeout: Duration,
        /// The sinks that did not answer.
        sinks: Vec<String>,
    },
    /// A sink's flush or shutdown returned an error.
    #[error("sink `{sink}` failed to flush")]
    SinkFlush {
        /// The sink.
        sink: String,
        /// Its error.
        #[source]
        source: SinkError,
    },
}
