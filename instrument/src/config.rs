//! Pipeline configuration: in code through [`Builder`](crate::Builder), or from TOML with the same
//! keys. Unknown keys are errors.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::clock::ClockSource;
use crate::error::Error;

/// Pipeline settings. Every field has a default; see [`Config::default`].
///
/// The TOML form uses the same names, durations as text (`"100ms"`, `"1s"`):
///
/// ```
/// let config = instrument::Config::from_toml_str(r#"
///     drain_interval = "50ms"
///     window = "10s"
///     queue_capacity = 16384
///     slow_threshold = "5ms"
/// "#)?;
/// assert_eq!(config.queue_capacity, 16384);
///
/// let err = instrument::Config::from_toml_str("queue_capacty = 1").unwrap_err();
/// assert!(err.to_string().contains("queue_capacty"));
/// # Ok::<(), instrument::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Config {
    /// How often the drain empties the thread queues (default 100 ms). It also wakes early when
    /// a queue fills past half or on `flush`.
    pub drain_interval: Duration,
    /// Length of an aggregation window (default 1 s).
    pub window: Duration,
    /// Records per thread queue (default 8192), for threads that start recording after
    /// install: 256 KiB of 32-byte records plus 256 KiB (half as many 64-byte slots) for the
    /// captured arguments and rarer error kinds some calls carry. A ring that fits in the drain's core cache makes every
    /// wraparound steal lines back from it; 8192 measured cheaper per call than 4096 (see
    /// docs/performance.md).
    pub queue_capacity: usize,
    /// Audit entries waiting for the drain before producers wait (default 65,536).
    pub audit_capacity: usize,
    /// Batches waiting for one sink before event/snapshot batches are dropped (default 256).
    pub sink_backlog: usize,
    /// How long `flush` waits for every sink (default 30 s).
    pub flush_timeout: Duration,
    /// Default `slow` threshold for callsites that set none (default: none).
    pub slow_threshold: Option<Duration>,
    /// Retries of a failed event/snapshot batch before it is dropped (default 5).
    pub max_retries: u32,
    /// The clock (default: the CPU counter).
    pub clock: ClockSource,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            drain_interval: Duration::from_millis(100),
            window: Duration::from_secs(1),
            queue_capacity: 8192,
            audit_capacity: 65_536,
            sink_backlog: 256,
            flush_timeout: Duration::from_secs(30),
            slow_threshold: None,
            max_retries: 5,
            clock: ClockSource::Counter,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    drain_interval: Option<String>,
    window: Option<String>,
    queue_capacity: Option<usize>,
    audit_capacity: Option<usize>,
    sink_backlog: Option<usize>,
    flush_timeout: Option<String>,
    slow_threshold: Option<String>,
    max_retries: Option<u32>,
    clock: Option<String>,
}

fn duration(key: &str, text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text).map_err(|e| {
        format!("`{key}` = {text:?} is not a duration ({e}); write e.g. \"100ms\" or \"1s\"")
    })
}

impl Config {
    /// Parses TOML text.
    ///
    /// # Errors
    /// [`Error::ParseConfig`] naming the bad or unknown key, or [`Error::InvalidConfig`] for values
    /// out of range.
    pub fn from_toml_str(text: &str) -> Result<Config, Error> {
        Self::parse(text, None)
    }

    /// Reads and parses a TOML file.
    ///
    /// # Errors
    /// [`Error::ReadConfig`] if the file cannot be read, else as [`Config::from_toml_str`].
    pub fn from_toml_file(path: impl AsRef<Path>) -> Result<Config, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| Error::ReadConfig {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(&text, Some(path))
    }

    fn parse(text: &str, path: Option<&Path>) -> Result<Config, Error> {
        let fail = |message: String| Error::ParseConfig {
            path: path.map(Path::to_owned),
            message,
        };
        // toml's full message shows the line and points at the offending key or value.
        let raw: Raw =
            toml::from_str(text).map_err(|e| fail(e.to_string().trim_end().to_owned()))?;
        let mut config = Config::default();
        if let Some(v) = raw.drain_interval {
            config.drain_interval = duration("drain_interval", &v).map_err(fail)?;
        }
        if let Some(v) = raw.window {
            config.window = duration("window", &v).map_err(fail)?;
        }
        if let Some(v) = raw.flush_timeout {
            config.flush_timeout = duration("flush_timeout", &v).map_err(fail)?;
        }
        if let Some(v) = raw.slow_threshold {
            config.slow_threshold = Some(duration("slow_threshold", &v).map_err(fail)?);
        }
        if let Some(v) = raw.clock {
            config.clock = match v.as_str() {
                "counter" => ClockSource::Counter,
                "mock" => ClockSource::Mock,
                other => {
                    return Err(fail(format!(
                        "`clock` = {other:?} is not one of \"counter\", \"mock\""
                    )));
                }
            };
        }
        config.queue_capacity = raw.queue_capacity.unwrap_or(config.queue_capacity);
        config.audit_capacity = raw.audit_capacity.unwrap_or(config.audit_capacity);
        config.sink_backlog = raw.sink_backlog.unwrap_or(config.sink_backlog);
        config.max_retries = raw.max_retries.unwrap_or(config.max_retries);
        config.validate()?;
        Ok(config)
    }

    /// Checks ranges.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the field.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: &str| Err(Error::InvalidConfig(m.to_owned()));
        if self.drain_interval.is_zero() {
            return bad("drain_interval must be greater than zero");
        }
        if self.window.is_zero() {
            return bad("window must be greater than zero");
        }
        if self.queue_capacity == 0 || self.queue_capacity > 1 << 24 {
            return bad("queue_capacity must be between 1 and 16,777,216");
        }
        if self.audit_capacity == 0 {
            return bad("audit_capacity must be at least 1");
        }
        if self.sink_backlog == 0 {
            return bad("sink_backlog must be at least 1");
        }
        if self.flush_timeout.is_zero() {
            return bad("flush_timeout must be greater than zero");
        }
        if self.slow_threshold.is_some_and(|d| d.is_zero()) {
            return bad("slow_threshold must be greater than zero when set");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_errors_naming_the_key() {
        let err = Config::from_toml_str("drain_intervall = \"1s\"").unwrap_err();
        assert!(matches!(err, Error::ParseConfig { .. }));
        assert!(err.to_string().contains("drain_intervall"), "{err}");
    }

    #[test]
    fn bad_durations_name_the_key() {
        let err = Config::from_toml_str("window = \"soon\"").unwrap_err();
        assert!(err.to_string().contains("`window`"), "{err}");
    }

    #[test]
    fn type_errors_point_at_the_key() {
        let err = Config::from_toml_str("queue_capacity = \"big\"").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("queue_capacity"), "{text}");
        assert!(text.contains("expected usize"), "{text}");
    }

    #[test]
    fn out_of_range_values_are_rejected() {
        let err = Config::from_toml_str("queue_capacity = 0").unwrap_err();
        assert!(err.to_string().contains("queue_capacity"), "{err}");
    }

    #[test]
    fn every_key_parses() {
        let c = Config::from_toml_str(
            "drain_interval = \"5ms\"\nwindow = \"2s\"\nqueue_capacity = 16\naudit_capacity = 8\nsink_backlog = 4\nflush_timeout = \"3s\"\nslow_threshold = \"1ms\"\nmax_retries = 2\nclock = \"mock\"\n",
        )
        .unwrap();
        assert_eq!(c.drain_interval, Duration::from_millis(5));
        assert_eq!(c.window, Duration::from_secs(2));
        assert_eq!(
            (
                c.queue_capacity,
                c.audit_capacity,
                c.sink_backlog,
                c.max_retries
            ),
            (16, 8, 4, 2)
        );
        assert_eq!(c.flush_timeout, Duration::from_secs(3));
        assert_eq!(c.slow_threshold, Some(Duration::from_millis(1)));
        assert_eq!(c.clock, ClockSource::Mock);
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = Config::from_toml_file("/nonexistent/instrument.toml").unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent/instrument.toml"),
            "{err}"
        );
    }
}
