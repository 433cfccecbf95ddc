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
    /// How often the drain empties the thread queues and hands the sinks their batches (default
    /// 500 ms). It also wakes early when a queue fills past half, when an audit producer waits
    /// for room, or on `flush`; aggregation windows are cut on time whatever its value. Each
    /// cycle costs every sink a write (a transaction, a log write), so a shorter interval
    /// delivers sooner at the price of more of the SDK's CPU time: in the main job, 100 ms
    /// took the SDK's threads about twice the samples of 500 ms (docs/performance.md).
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
    /// Batches waiting for one sink before the oldest event/snapshot batches are dropped
    /// (default 256).
    pub sink_backlog: usize,
    /// Events, drop markers and notices waiting for one sink before the oldest batches are
    /// dropped (default 65,536; a snapshot counts one per call group). Bounds what an error
    /// storm behind a slow sink can hold.
    pub sink_backlog_events: usize,
    /// Label sets each metric name registered at run time ([`metric`](crate::metric)) may
    /// have before further ones fold into the name's `overflow="true"` series (default 10,000).
    pub cardinality_limit: usize,
    /// How often each sink's [`tick`](crate::Sink::tick) runs and its health is polled
    /// (default 1 s).
    pub sink_tick: Duration,
    /// How long `flush` waits for every sink (default 30 s).
    pub flush_timeout: Duration,
    /// Default `slow` threshold for callsites that set none (default: none).
    pub slow_threshold: Option<Duration>,
    /// Retries of a failed event/snapshot batch before it is dropped (default 14: with the
    /// back-off of 10 ms doubling to 5 s, about 30 s).
    pub max_retries: u32,
    /// The clock (default: the CPU counter).
    pub clock: ClockSource,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            drain_interval: Duration::from_millis(500),
            window: Duration::from_secs(1),
            queue_capacity: 8192,
            audit_capacity: 65_536,
            sink_backlog: 256,
            sink_backlog_events: 65_536,
            cardinality_limit: 10_000,
            sink_tick: Duration::from_secs(1),
            flush_timeout: Duration::from_secs(30),
            slow_threshold: None,
            max_retries: 14,
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
    sink_backlog_events: Option<usize>,
    cardinality_limit: Option<usize>,
    sink_tick: Option<String>,
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
        if let Some(v) = raw.sink_tick {
            config.sink_tick = duration("sink_tick", &v).map_err(fail)?;
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
        config.cardinality_limit = raw.cardinality_limit.unwrap_or(config.cardinality_limit);
        config.sink_backlog_events = raw
            .sink_backlog_events
            .unwrap_or(config.sink_backlog_events);
        config.max_retries = raw.max_retries.unwrap_or(config.max_retries);
        config.validate()?;
        Ok(config)
    }

    /// Checks every value against its allowed range, so that whatever passes works: no
    /// overflowing deadline, no allocation the process cannot make.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] naming the key, the value and the allowed range.
    pub fn validate(&self) -> Result<(), Error> {
        const HOUR: Duration = Duration::from_secs(3600);
        const DAY: Duration = Duration::from_secs(86_400);
        fn within(key: &str, value: Duration, max: Duration) -> Result<(), Error> {
            if value.is_zero() || value > max {
                return Err(Error::InvalidConfig(format!(
                    "`{key}` = {} is out of range: allowed more than 0 and at most {}",
                    humantime::format_duration(value),
                    humantime::format_duration(max)
                )));
            }
            Ok(())
        }
        fn count(key: &str, value: usize, max: usize) -> Result<(), Error> {
            if value == 0 || value > max {
                return Err(Error::InvalidConfig(format!(
                    "`{key}` = {value} is out of range: allowed 1 to {max}"
                )));
            }
            Ok(())
        }
        within("drain_interval", self.drain_interval, HOUR)?;
        within("window", self.window, DAY)?;
        within("flush_timeout", self.flush_timeout, HOUR)?;
        within("sink_tick", self.sink_tick, HOUR)?;
        if let Some(slow) = self.slow_threshold {
            within("slow_threshold", slow, DAY)?;
        }
        count("queue_capacity", self.queue_capacity, 1 << 24)?;
        count("audit_capacity", self.audit_capacity, 1 << 24)?;
        count("sink_backlog", self.sink_backlog, 1 << 16)?;
        count("sink_backlog_events", self.sink_backlog_events, 1 << 24)?;
        count("cardinality_limit", self.cardinality_limit, 1 << 20)?;
        if self.max_retries > 100 {
            return Err(Error::InvalidConfig(format!(
                "`max_retries` = {} is out of range: allowed 0 to 100",
                self.max_retries
            )));
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

    /// Issue 7 of the core's second round: values that used to panic or abort at install.
    #[test]
    fn huge_values_are_rejected_naming_key_and_range() {
        for (toml, key) in [
            ("flush_timeout = \"100000000years\"", "flush_timeout"),
            ("drain_interval = \"1000days\"", "drain_interval"),
            ("window = \"400days\"", "window"),
            ("sink_backlog = 18446744073709551615", "sink_backlog"),
            ("audit_capacity = 18446744073709551615", "audit_capacity"),
            ("queue_capacity = 18446744073709551615", "queue_capacity"),
            ("sink_backlog_events = 0", "sink_backlog_events"),
            ("max_retries = 4000000000", "max_retries"),
        ] {
            let err = Config::from_toml_str(toml).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, Error::InvalidConfig(_)), "{toml}: {text}");
            assert!(
                text.contains(key) && text.contains("allowed"),
                "{toml}: {text}"
            );
        }
        let config = Config {
            flush_timeout: Duration::MAX,
            ..Config::default()
        };
        assert!(
            config
                .validate()
                .unwrap_err()
                .to_string()
                .contains("flush_timeout")
        );
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
