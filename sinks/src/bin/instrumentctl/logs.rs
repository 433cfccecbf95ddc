//! `instrumentctl logs ...`: search, statistics, tail and the audit chain of the JSON-lines
//! log directory (`instrument_sinks::jsonl`), by default `DIR/logs`.

use std::fmt::Write as _;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use clap::{Args, Subcommand, ValueEnum};
use instrument::Level;
use instrument_sinks::jsonl::search::{self, Hit, Query, ReadError, Stats, StreamStats, Warning};
use instrument_sinks::jsonl::tail::Tail;
use instrument_sinks::jsonl::{AuditChainError, GENESIS, Stream, verify_audit_chain};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Columns, Failure, human, print, time};

/// How often `tail --follow` looks for new lines.
const FOLLOW_EVERY: Duration = Duration::from_millis(200);

#[derive(Debug, Args)]
pub(crate) struct LogsArgs {
    /// The log directory, instead of DIR/logs.
    #[arg(long, global = true, value_name = "PATH")]
    logs_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: LogsCommand,
}

#[derive(Debug, Subcommand)]
enum LogsCommand {
    /// Lines that match every condition given, in time order, from the current and rotated
    /// (also gzipped) files.
    Search {
        /// Only this stream; repeat for several (default: all).
        #[arg(long, value_enum, value_name = "STREAM")]
        stream: Vec<StreamArg>,
        /// Lines at this level or more severe.
        #[arg(long, value_enum, value_name = "LEVEL")]
        level: Option<LevelArg>,
        /// Lines whose text contains TEXT (case-sensitive, as written, escapes included).
        #[arg(long, value_name = "TEXT")]
        grep: Option<String>,
        /// Lines where KEY is VALUE: a top-level field, or an entry of `fields` or `labels`;
        /// repeat for several (all must hold).
        #[arg(long, value_name = "KEY=VALUE")]
        field: Vec<String>,
        /// Start: a duration ago (1h, 30m, 7d), an RFC 3339 UTC time, or `all`.
        #[arg(long, default_value = "all", value_name = "WHEN")]
        since: String,
        /// End, like --since (default: no end).
        #[arg(long, value_name = "WHEN")]
        until: Option<String>,
        /// Lines of this correlation id (16 hexadecimal digits).
        #[arg(long, value_name = "ID")]
        correlation: Option<String>,
        /// At most this many lines (the first ones in time order).
        #[arg(long, value_name = "N")]
        limit: Option<u64>,
    },
    /// Lines per stream and level, files and their sizes, oldest and newest entry.
    Stats,
    /// The last lines of the streams in time order; with --follow, then the lines written
    /// after them, across rotations, until interrupted.
    Tail {
        /// Only this stream; repeat for several (default: all).
        #[arg(long, value_enum, value_name = "STREAM")]
        stream: Vec<StreamArg>,
        /// How many lines to print first.
        #[arg(short = 'n', long, default_value_t = 10, value_name = "N")]
        lines: usize,
        /// Keep printing lines as they are written.
        #[arg(short, long)]
        follow: bool,
    },
    /// Checks the audit stream's hash chain across its files; exits 1 naming the first broken
    /// line.
    Verify,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum StreamArg {
    Main,
    Error,
    Performance,
    Audit,
}

impl From<StreamArg> for Stream {
    fn from(stream: StreamArg) -> Stream {
        match stream {
            StreamArg::Main => Stream::Main,
            StreamArg::Error => Stream::Error,
            StreamArg::Performance => Stream::Performance,
            StreamArg::Audit => Stream::Audit,
        }
    }
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LevelArg {
    Debug,
    Info,
    #[value(alias = "warning")]
    Warn,
    Error,
}

impl From<LevelArg> for Level {
    fn from(level: LevelArg) -> Level {
        match level {
            LevelArg::Debug => Level::Debug,
            LevelArg::Info => Level::Info,
            LevelArg::Warn => Level::Warn,
            LevelArg::Error => Level::Error,
        }
    }
}

pub(crate) fn run(
    args: LogsArgs,
    data_dir: &Path,
    json: bool,
    now: SystemTime,
) -> Result<ExitCode, Failure> {
    let dir = args.logs_dir.unwrap_or_else(|| data_dir.join("logs"));
    match args.command {
        LogsCommand::Search {
            stream,
            level,
            grep,
            field,
            since,
            until,
            correlation,
            limit,
        } => {
            let mut query = Query::new();
            for stream in stream {
                query = query.stream(stream.into());
            }
            if let Some(level) = level {
                query = query.level(level.into());
            }
            if let Some(text) = &grep {
                query = query.grep(text);
            }
            for text in &field {
                let (key, value) = key_value(text)?;
                query = query.field(key, value);
            }
            if let Some(since) = time("--since", &since, now)? {
                query = query.since(since);
            }
            if let Some(Some(until)) = until
                .as_deref()
                .map(|text| time("--until", text, now))
                .transpose()?
            {
                query = query.until(until);
            }
            if let Some(id) = &correlation {
                query = query.correlation(&correlation_id(id)?);
            }
            if let Some(limit) = limit {
                query = query.limit(limit);
            }
            check_dir(&dir)?;
            search(&dir, &query, json)
        }
        LogsCommand::Stats => {
            check_dir(&dir)?;
            let stats = search::stats(&dir, warn).map_err(|e| failure(&e))?;
            print(json, &stats, || stats_table(&stats))?;
            incomplete(stats.incomplete, "the counts")
        }
        LogsCommand::Tail {
            stream,
            lines,
            follow,
        } => {
            let streams: Vec<Stream> = stream.into_iter().map(Stream::from).collect();
            check_dir(&dir)?;
            tail(&dir, &streams, lines, follow, json)
        }
        LogsCommand::Verify => {
            check_dir(&dir)?;
            verify(&dir, json)
        }
    }
}

/// A missing or wrong directory is named before anything is read.
fn check_dir(dir: &Path) -> Result<(), Failure> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(Failure(format!(
            "the log directory {} is not a directory",
            dir.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(Failure(format!(
            "no log directory at {} (give the pipeline's data directory with --data-dir, or \
             the log directory itself with --logs-dir)",
            dir.display()
        ))),
        Err(e) => Err(Failure(format!(
            "cannot read the log directory {}: {e}",
            dir.display()
        ))),
    }
}

/// `KEY=VALUE` of `--field`.
fn key_value(text: &str) -> Result<(&str, &str), Failure> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key, value)),
        _ => Err(Failure(format!(
            "invalid --field `{text}`: give KEY=VALUE, such as outcome=error or disk=sda"
        ))),
    }
}

fn correlation_id(text: &str) -> Result<String, Failure> {
    if text.len() == 16 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(Failure(format!(
            "invalid --correlation `{text}`: give 16 hexadecimal digits, as in a line's \
             correlation_id"
        )))
    }
}

/// A warning: one line on stderr.
fn warn(warning: &Warning) {
    let text: String = warning
        .to_string()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let _ = writeln!(io::stderr(), "instrumentctl: warning: {text}");
}

fn failure(error: &ReadError) -> Failure {
    Failure(super::one_line(error))
}

/// Exit status after an answer that warnings said is missing lines.
fn incomplete(incomplete: bool, what: &str) -> Result<ExitCode, Failure> {
    if incomplete {
        Err(Failure(format!(
            "{what} may be missing lines: files could not be read (see the warnings above)"
        )))
    } else {
        Ok(ExitCode::SUCCESS)
    }
}

/// Whether an output error is the reader going away (`| head`), which ends a command quietly.
fn closed(error: &ReadError) -> bool {
    matches!(error, ReadError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe)
}

fn search(dir: &Path, query: &Query, json: bool) -> Result<ExitCode, Failure> {
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let result = search::search(dir, query, |hit| write_hit(&mut out, hit, json), warn);
    let report = match result {
        Ok(report) => report,
        Err(e) if closed(&e) => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(failure(&e)),
    };
    match out.flush() {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(Failure(format!("cannot write to stdout: {e}"))),
    }
    if report.late > 0 {
        let _ = writeln!(
            io::stderr(),
            "instrumentctl: warning: {} line{} printed out of time order: {} stream{} had \
             {} more than 4096 matching lines after later ones",
            report.late,
            if report.late == 1 { "" } else { "s" },
            if report.late == 1 { "its" } else { "their" },
            if report.late == 1 { "" } else { "s" },
            if report.late == 1 { "it" } else { "them" },
        );
    }
    incomplete(report.incomplete, "the answer")
}

fn tail(
    dir: &Path,
    streams: &[Stream],
    lines: usize,
    follow: bool,
    json: bool,
) -> Result<ExitCode, Failure> {
    let mut out = BufWriter::with_capacity(64 * 1024, io::stdout().lock());
    let flush = |out: &mut BufWriter<_>| -> Result<bool, Failure> {
        match Write::flush(out) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(Failure(format!("cannot write to stdout: {e}"))),
        }
    };
    let mut tail = match Tail::open(
        dir,
        streams,
        lines,
        |hit| write_hit(&mut out, hit, json),
        warn,
    ) {
        Ok(tail) => tail,
        Err(e) if closed(&e) => return Ok(ExitCode::SUCCESS),
        Err(e) => return Err(failure(&e)),
    };
    if !flush(&mut out)? || !follow {
        return Ok(ExitCode::SUCCESS);
    }
    loop {
        std::thread::sleep(FOLLOW_EVERY);
        match tail.poll(|hit| write_hit(&mut out, hit, json), warn) {
            Ok(_) => {}
            Err(e) if closed(&e) => return Ok(ExitCode::SUCCESS),
            Err(e) => return Err(failure(&e)),
        }
        if !flush(&mut out)? {
            return Ok(ExitCode::SUCCESS);
        }
    }
}

/// A line as written (`--json`: JSON lines for `jq`), or for people.
fn write_hit(out: &mut impl Write, hit: &Hit<'_>, json: bool) -> io::Result<()> {
    if json {
        out.write_all(hit.line)?;
        out.write_all(b"\n")
    } else {
        writeln!(out, "{}", for_people(hit.line))
    }
}

/// What [`for_people`] shows of a line; `fields` and `labels` keep their order and repeated
/// keys.
#[derive(Deserialize)]
struct PeopleLine {
    #[serde(default)]
    ts: String,
    #[serde(default)]
    level: String,
    #[serde(default)]
    stream: String,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    name: String,
    outcome: Option<String>,
    error_kind: Option<String>,
    duration_ns: Option<u64>,
    message: Option<String>,
    inputs: Option<Vec<Value>>,
    outputs: Option<Vec<Value>>,
    actor: Option<String>,
    labels: Option<Ordered>,
    fields: Option<Ordered>,
    correlation_id: Option<String>,
}

/// A JSON object's entries in the order written, repeated keys included.
struct Ordered(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<Ordered, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry::<String, Value>()? {
                    entries.push(entry);
                }
                Ok(Ordered(entries))
            }
        }
        d.deserialize_map(V)
    }
}

/// One line for people: time, level, stream, kind and name, then what the kind says. Control
/// characters in values are escaped, so a line stays one line.
fn for_people(line: &[u8]) -> String {
    let Ok(l) = serde_json::from_slice::<PeopleLine>(line) else {
        return escape(&String::from_utf8_lossy(line));
    };
    let mut parts = vec![format!(
        "{}  {:<5}  {:<11}  {:<9}  {}",
        l.ts, l.level, l.stream, l.kind, l.name
    )];
    if let Some(outcome) = &l.outcome {
        let mut part = outcome.clone();
        if let Some(kind) = &l.error_kind {
            let _ = write!(part, " ({kind})");
        }
        if let Some(ns) = l.duration_ns {
            let _ = write!(part, " {}", human(i128::from(ns)));
        }
        parts.push(part);
    }
    if let Some(message) = &l.message {
        parts.push(message.clone());
    }
    if l.inputs.is_some() || l.outputs.is_some() {
        let list = |items: &Option<Vec<Value>>| {
            let items: Vec<String> = items.iter().flatten().map(text_of).collect();
            if items.is_empty() {
                "-".to_owned()
            } else {
                items.join(", ")
            }
        };
        let mut part = format!("{} -> {}", list(&l.inputs), list(&l.outputs));
        if let Some(actor) = &l.actor {
            let _ = write!(part, " by {actor}");
        }
        parts.push(part);
    }
    for entries in [&l.labels, &l.fields].into_iter().flatten() {
        if !entries.0.is_empty() {
            let text: Vec<String> = entries
                .0
                .iter()
                .map(|(k, v)| format!("{k}={}", text_of(v)))
                .collect();
            parts.push(text.join(" "));
        }
    }
    if let Some(id) = &l.correlation_id {
        parts.push(format!("[{id}]"));
    }
    escape(&parts.join("  "))
}

/// A string as it is, anything else as JSON.
fn text_of(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

fn stats_table(stats: &Stats) -> String {
    let mut table = Columns::new(&[
        ("STREAM", false),
        ("FILES", true),
        ("GZIPPED", true),
        ("BYTES", true),
        ("LINES", true),
        ("DEBUG", true),
        ("INFO", true),
        ("WARN", true),
        ("ERROR", true),
        ("SKIPPED", true),
        ("OLDEST", false),
        ("NEWEST", false),
    ]);
    let row = |name: &str, s: &StreamStats| {
        vec![
            name.to_owned(),
            s.files.to_string(),
            s.compressed_files.to_string(),
            s.bytes.to_string(),
            s.lines.to_string(),
            s.debug.to_string(),
            s.info.to_string(),
            s.warn.to_string(),
            s.error.to_string(),
            s.skipped.to_string(),
            s.oldest.clone().unwrap_or_else(|| "-".to_owned()),
            s.newest.clone().unwrap_or_else(|| "-".to_owned()),
        ]
    };
    for s in &stats.streams {
        let name = s.stream.map_or("-", Stream::as_str);
        table.rows.push(row(name, s));
    }
    table.rows.push(row("total", &stats.total));
    format!("{}\n{}", stats.dir.display(), table.render())
}

fn verify(dir: &Path, json: bool) -> Result<ExitCode, Failure> {
    match verify_audit_chain(dir) {
        Ok(chain) => {
            let complete = chain.anchor == GENESIS;
            let report = json!({
                "dir": dir.display().to_string(), "verified": true, "entries": chain.entries,
                "files": chain.files, "anchor": chain.anchor, "complete": complete,
                "last_hash": chain.last_hash,
            });
            print(json, &report, || {
                let from = if complete {
                    "complete from its first line".to_owned()
                } else {
                    format!(
                        "from anchor {} (the lines before it were in files pruned since)",
                        chain.anchor
                    )
                };
                format!(
                    "audit chain of {} verifies: {} lines in {} file{}, {from}; last hash {}\n",
                    dir.display(),
                    chain.entries,
                    chain.files,
                    if chain.files == 1 { "" } else { "s" },
                    chain.last_hash
                )
            })
        }
        Err(error) => {
            if json && let AuditChainError::Broken { path, line, reason } = &error {
                let report = json!({
                    "dir": dir.display().to_string(), "verified": false,
                    "broken": {"path": path.display().to_string(), "line": line, "reason": reason},
                });
                print(true, &report, String::new)?;
            }
            Err(Failure::from(error))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_for_people_is_one_line() {
        let line = br#"{"ts":"2026-11-25T10:25:33.730350Z","level":"error","stream":"error","kind":"call","name":"app::parse","duration_ns":3000000,"outcome":"error","error_kind":"E","fields":{"text":"x\n1","attempt":3},"correlation_id":"18d058cf1b8259cb"}"#;
        assert_eq!(
            for_people(line),
            "2026-11-25T10:25:33.730350Z  error  error        call       app::parse  error (E) \
             3.0 ms  text=x\\n1 attempt=3  [18d058cf1b8259cb]"
        );
        let audit = br#"{"ts":"2026-11-25T10:25:35.112000Z","level":"info","stream":"audit","kind":"audit","name":"export","inputs":["a.rs"],"outputs":["a.json"],"actor":"ann"}"#;
        assert!(for_people(audit).ends_with("export  a.rs -> a.json by ann"));
        let copy = br#"{"ts":"2026-11-25T10:25:35.112000Z","level":"info","stream":"audit","kind":"audit","name":"copy","inputs":["in-2"],"outputs":[]}"#;
        assert!(for_people(copy).ends_with("copy  in-2 -> -"));
        // Notice fields keep their order and repeated keys.
        let notice = br#"{"ts":"2026-11-25T10:25:35.112000Z","level":"warn","stream":"error","kind":"notice","name":"h","message":"m","fields":{"z":"1","a":"2","z":"3"}}"#;
        assert!(
            for_people(notice).ends_with("h  m  z=1 a=2 z=3"),
            "{}",
            for_people(notice)
        );
        assert_eq!(for_people(b"not \x07 json"), "not \\u{7} json");
    }

    #[test]
    fn fields_and_ids_are_checked() {
        assert!(matches!(key_value("a=b=c"), Ok(("a", "b=c"))));
        assert!(matches!(key_value("a="), Ok(("a", ""))));
        for bad in ["=b", "ab", ""] {
            let Err(Failure(message)) = key_value(bad) else {
                panic!("{bad} is refused");
            };
            assert!(
                message.starts_with(&format!("invalid --field `{bad}`")),
                "{message}"
            );
        }
        assert_eq!(
            correlation_id("18D058CF1B8259CB").ok().as_deref(),
            Some("18d058cf1b8259cb")
        );
        assert!(correlation_id("18d058cf1b8259c").is_err());
        assert!(correlation_id("18d058cf1b8259cg").is_err());
    }
}
