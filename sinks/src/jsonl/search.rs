//! Reading a log directory back: [`search`] with filters, in time order across streams and
//! their rotated (also gzipped) files, and [`stats`] per stream.
//!
//! Both stream: a file is read a buffer at a time, a line at a time, and never held whole, so
//! memory stays flat however large the directory (see [`search`] for the bounds).
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! use instrument::{Level, Notice};
//! use instrument_sinks::jsonl::JsonlSink;
//! use instrument_sinks::jsonl::search::{Query, search};
//!
//! let pipeline = instrument::builder()
//!     .sink(JsonlSink::builder().dir(dir.path()).build()?)
//!     .install()?;
//! instrument::publish(Notice::new("health", Level::Warn, "disk 91% full").field("disk", "sda"));
//! instrument::publish(Notice::new("health", Level::Info, "disk 40% full").field("disk", "sdb"));
//! pipeline.flush()?;
//!
//! let mut found = Vec::new();
//! let query = Query::new().level(Level::Warn).field("disk", "sda");
//! let report = search(dir.path(), &query, |hit| {
//!     found.push(String::from_utf8_lossy(hit.line).into_owned());
//!     Ok(())
//! }, |warning| panic!("{warning}"))?;
//! assert_eq!(report.matched, 1);
//! assert!(found[0].contains("disk 91% full"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use crate::calendar::days_from_civil;
use std::borrow::Cow;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use instrument::Level;
use serde::Serialize;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::Stream;
use super::files::{LogFile, Name, Stamp, log_files};

/// A line longer than this is skipped (with a warning) rather than held in memory.
pub(crate) const MAX_LINE: usize = 16 * 1024 * 1024;
/// Matching lines a stream may hold back to put them in time order ([`search`]).
const REORDER_LINES: usize = 4096;
/// Bytes of matching lines a stream may hold back to put them in time order.
const REORDER_BYTES: usize = 4 * 1024 * 1024;
/// The read buffer of a file.
const READ_BUFFER: usize = 256 * 1024;

/// What [`search`] looks for; every condition given must hold. Built with its methods:
/// `Query::new().stream(Stream::Error).level(Level::Warn).grep("timeout")`.
#[derive(Clone, Debug, Default)]
#[must_use = "a query does nothing until passed to `search`"]
pub struct Query {
    streams: Vec<Stream>,
    level: Option<Level>,
    grep: Option<String>,
    fields: Vec<FieldFilter>,
    since_us: Option<i64>,
    until_us: Option<i64>,
    correlation: Option<String>,
    limit: Option<u64>,
}

impl Query {
    /// Every line of every stream.
    pub fn new() -> Self {
        Query::default()
    }

    /// Lines of `stream`; called more than once, of any of the streams given. Default: all.
    pub fn stream(mut self, stream: Stream) -> Self {
        if !self.streams.contains(&stream) {
            self.streams.push(stream);
        }
        self
    }

    /// Lines at `level` or more severe (`Warn`: `warn` and `error` lines).
    pub fn level(mut self, at_least: Level) -> Self {
        self.level = Some(at_least);
        self
    }

    /// Lines whose text, as written, contains `text` (case-sensitive). `text` is escaped the
    /// way the line escapes strings first, so `say "hi"` finds `"message":"say \"hi\""`.
    pub fn grep(mut self, text: &str) -> Self {
        let escaped = serde_json::to_string(text).unwrap_or_else(|_| format!("\"{text}\""));
        self.grep = Some(escaped[1..escaped.len() - 1].to_owned());
        self
    }

    /// Lines where `key` is `value`: a top-level field of the line (`kind`, `name`, `outcome`,
    /// ...), or an entry of its `fields` or `labels`, that is the string `value` or a number or
    /// boolean written as `value` (`attempt=3` finds `"attempt":3`, `ratio=0.5` finds `0.5`).
    /// Called more than once, all must hold.
    pub fn field(mut self, key: &str, value: &str) -> Self {
        self.fields.push(FieldFilter::new(key, value));
        self
    }

    /// Lines with `ts` at or after `time` (to the microsecond).
    pub fn since(mut self, time: SystemTime) -> Self {
        self.since_us = Some(micros(time));
        self
    }

    /// Lines with `ts` before `time` (to the microsecond).
    pub fn until(mut self, time: SystemTime) -> Self {
        self.until_us = Some(micros(time));
        self
    }

    /// Lines with this `correlation_id` (16 hex digits; compared in lower case).
    pub fn correlation(mut self, id: &str) -> Self {
        self.correlation = Some(id.to_ascii_lowercase());
        self
    }

    /// Stops after the first `n` matching lines (in time order).
    pub fn limit(mut self, n: u64) -> Self {
        self.limit = Some(n);
        self
    }

    fn streams(&self) -> Vec<Stream> {
        if self.streams.is_empty() {
            Stream::ALL.to_vec()
        } else {
            let mut streams = self.streams.clone();
            streams.sort();
            streams
        }
    }

    /// Whether a parsed line matches everything but the grep text (checked before parsing).
    fn matches(&self, head: &Head<'_>, time_us: i64, fields: &[bool]) -> bool {
        if self.since_us.is_some_and(|since| time_us < since)
            || self.until_us.is_some_and(|until| time_us >= until)
        {
            return false;
        }
        if let Some(at_least) = self.level
            && head.level < at_least
        {
            return false;
        }
        if let Some(id) = &self.correlation
            && head.correlation.as_deref() != Some(id.as_str())
        {
            return false;
        }
        fields.iter().all(|&matched| matched)
    }
}

/// One `--field KEY=VALUE` condition, with `VALUE` read as the number or boolean it may be.
#[derive(Clone, Debug)]
pub(crate) struct FieldFilter {
    key: String,
    text: String,
    int: Option<i128>,
    float: Option<f64>,
    boolean: Option<bool>,
}

impl FieldFilter {
    fn new(key: &str, value: &str) -> Self {
        FieldFilter {
            key: key.to_owned(),
            text: value.to_owned(),
            int: value.parse().ok(),
            float: value.parse::<f64>().ok().filter(|f| f.is_finite()),
            boolean: value.parse().ok(),
        }
    }

    fn matches(&self, value: &Scalar<'_>) -> bool {
        match value {
            Scalar::Str(s) => s == &self.text,
            Scalar::U64(n) => self.int.map_or_else(
                || self.float == Some(*n as f64),
                |int| int == i128::from(*n),
            ),
            Scalar::I64(n) => self.int.map_or_else(
                || self.float == Some(*n as f64),
                |int| int == i128::from(*n),
            ),
            Scalar::F64(f) => self.float == Some(*f),
            Scalar::Bool(b) => self.boolean == Some(*b),
            Scalar::Other => false,
        }
    }
}

/// A line that [`search`] (or [`tail`](super::tail)) found.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Hit<'a> {
    /// The stream (file) it is in.
    pub stream: Stream,
    /// Its `ts`, in microseconds since the Unix epoch.
    pub time_us: i64,
    /// The line exactly as written, without its newline.
    pub line: &'a [u8],
}

/// Something [`search`], [`stats`] or [`tail`](super::tail) skipped or could not read; the rest
/// goes on.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Warning {
    /// The file concerned.
    pub path: PathBuf,
    /// What happened.
    pub kind: WarningKind,
}

/// Where in a file a [`Warning`] points: a line number (from 1) where the file was read from
/// its start, else the byte offset of the line's first byte.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Position {
    /// Line number, from 1.
    Line(u64),
    /// Byte offset, from 0.
    Byte(u64),
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Position::Line(n) => write!(f, "line {n}"),
            Position::Byte(n) => write!(f, "the line at byte {n}"),
        }
    }
}

/// What a [`Warning`] is about.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WarningKind {
    /// The file's last line has no newline: cut off by a crash in the middle of a write (or,
    /// in a current file, being written). It is skipped.
    TornLine {
        /// The line.
        at: Position,
        /// Its length.
        bytes: u64,
    },
    /// Lines that are not log lines (not a JSON object with a valid `ts` and `level`) were
    /// skipped.
    Unreadable {
        /// How many.
        lines: u64,
        /// The first one.
        first: Position,
        /// Why the first one is not a log line.
        reason: String,
    },
    /// A line longer than 16 MiB was skipped.
    TooLong {
        /// The line.
        at: Position,
        /// Its length.
        bytes: u64,
    },
    /// The file could not be opened or read to its end: lines are missing from the answer.
    ReadFailed {
        /// The last line read before the failure (`Line(0)`: none).
        after: Position,
        /// The cause.
        error: String,
    },
    /// The file was removed (pruned) after it was listed and before it was read: its lines are
    /// missing from the answer.
    Vanished,
}

impl Warning {
    /// Whether lines the answer should have held are missing ([`WarningKind::ReadFailed`],
    /// [`WarningKind::Vanished`]), rather than lines being skipped that are not log lines.
    #[must_use]
    pub fn loses_lines(&self) -> bool {
        matches!(
            self.kind,
            WarningKind::ReadFailed { .. } | WarningKind::Vanished
        )
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.kind {
            WarningKind::TornLine { at, bytes } => write!(
                f,
                "{path}: skipped {at} ({bytes} bytes), which has no newline: cut off by a crash \
                 in the middle of a write, or still being written"
            ),
            WarningKind::Unreadable {
                lines,
                first,
                reason,
            } => write!(
                f,
                "{path}: skipped {lines} line{} that {} not log lines (the first, {first}: \
                 {reason})",
                if *lines == 1 { "" } else { "s" },
                if *lines == 1 { "is" } else { "are" },
            ),
            WarningKind::TooLong { at, bytes } => write!(
                f,
                "{path}: skipped {at}, which is longer than {} MiB ({bytes} bytes)",
                MAX_LINE / (1024 * 1024)
            ),
            WarningKind::ReadFailed {
                after: Position::Line(0),
                error,
            } => write!(
                f,
                "cannot read {path}: {error}; its lines are missing from the answer"
            ),
            WarningKind::ReadFailed { after, error } => write!(
                f,
                "{path}: cannot read after {after}: {error}; the rest of the file is missing \
                 from the answer"
            ),
            WarningKind::Vanished => write!(
                f,
                "{path} was removed (pruned or moved away) before it could be read; its lines \
                 are missing from the answer"
            ),
        }
    }
}

/// Why [`search`], [`stats`] or [`tail`](super::tail) stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The log directory could not be read (it does not exist, is not a directory, ...).
    #[error("cannot read the log directory {}: {source}", path.display())]
    Dir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The caller's output failed (the `hit` callback returned an error).
    #[error("cannot write the output: {0}")]
    Output(#[source] io::Error),
}

/// What a [`search`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SearchReport {
    /// Lines passed to `hit`.
    pub matched: u64,
    /// Whole lines read from the files, log lines or not (a search that reaches its limit
    /// stops reading).
    pub read: u64,
    /// Matching lines passed to `hit` after a later one of the same stream, because a stream
    /// had them more than 4,096 matching lines (or 4 MiB of them) after lines with a later
    /// `ts`; 0 when the output is in time order.
    pub late: u64,
    /// Whether lines are missing from the answer: a warning said so
    /// ([`Warning::loses_lines`]).
    pub incomplete: bool,
}

/// Searches the log directory `dir` (the current and rotated files, gzipped or not, of the
/// streams `query` names), passing each line that matches to `hit` in time order (by `ts`,
/// then stream, then the order written), and what it skips or cannot read to `warning`.
///
/// Each stream's files are read in order, one at a time, a line at a time; the streams are
/// merged by `ts`. Lines within a stream are in the order written, which is not strictly the
/// order of their `ts` (calls of different threads arrive in batches), so each stream holds
/// back up to 4,096 matching lines (at most 4 MiB of them) to put them in order: memory stays
/// within about 30 MiB whatever the size of the directory. A line held back longer than that
/// is passed on late and counted in [`SearchReport::late`].
///
/// The directory is read as it is when each stream's listing is taken: files rotated, gzipped
/// or pruned by a running sink meanwhile are followed (a plain file gzipped since is read from
/// its `.gz`), lines written after the current file is read are not included.
///
/// # Errors
/// [`ReadError::Dir`] when `dir` cannot be listed; [`ReadError::Output`] when `hit` fails
/// (the search stops there).
pub fn search(
    dir: impl AsRef<Path>,
    query: &Query,
    mut hit: impl FnMut(&Hit<'_>) -> io::Result<()>,
    mut warning: impl FnMut(&Warning),
) -> Result<SearchReport, ReadError> {
    let dir = dir.as_ref();
    let mut report = SearchReport::default();
    let mut warn = |w: Warning| {
        report.incomplete |= w.loses_lines();
        warning(&w);
    };
    let mut sources = Vec::new();
    for stream in query.streams() {
        sources.push(Source::new(StreamLines::open(dir, stream)?));
    }
    let limit = query.limit.unwrap_or(u64::MAX);
    let mut scratch = Scratch::default();
    let mut heads: Vec<Option<Pending>> = Vec::with_capacity(sources.len());
    for source in &mut sources {
        heads.push(source.next(query, &mut scratch, &mut warn));
    }
    let mut matched = 0;
    while matched < limit {
        let Some(at) = heads
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.as_ref().map(|h| (i, h)))
            .min_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(&b.0)))
            .map(|(i, _)| i)
        else {
            break;
        };
        let next = sources[at].next(query, &mut scratch, &mut warn);
        let Some(line) = std::mem::replace(&mut heads[at], next) else {
            break;
        };
        hit(&Hit {
            stream: sources[at].lines.stream,
            time_us: line.key,
            line: &line.line,
        })
        .map_err(ReadError::Output)?;
        matched += 1;
    }
    report.matched = matched;
    for source in &sources {
        report.read += source.read;
        report.late += source.late;
    }
    Ok(report)
}

/// A matching line held back to be put in time order.
struct Pending {
    key: i64,
    seq: u64,
    line: Vec<u8>,
}

impl PartialEq for Pending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Pending {}
impl PartialOrd for Pending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Pending {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.key, self.seq).cmp(&(other.key, other.seq))
    }
}

/// Buffers reused from line to line.
#[derive(Default)]
struct Scratch {
    line: Vec<u8>,
    fields: Vec<bool>,
}

/// One stream of a search: its lines, filtered, put in time order within a window.
struct Source {
    lines: StreamLines,
    held: BinaryHeap<Reverse<Pending>>,
    held_bytes: usize,
    done: bool,
    seq: u64,
    last_key: Option<i64>,
    read: u64,
    late: u64,
}

impl Source {
    fn new(lines: StreamLines) -> Self {
        Source {
            lines,
            held: BinaryHeap::new(),
            held_bytes: 0,
            done: false,
            seq: 0,
            last_key: None,
            read: 0,
            late: 0,
        }
    }

    /// The stream's next matching line in time order.
    fn next(
        &mut self,
        query: &Query,
        scratch: &mut Scratch,
        warn: &mut dyn FnMut(Warning),
    ) -> Option<Pending> {
        while !self.done && self.held.len() < REORDER_LINES && self.held_bytes < REORDER_BYTES {
            if self.lines.next_line(&mut scratch.line, warn).is_none() {
                self.done = true;
                break;
            }
            self.read += 1;
            if let Some(grep) = &query.grep {
                match std::str::from_utf8(&scratch.line) {
                    Ok(text) if text.contains(grep.as_str()) => {}
                    Ok(_) => continue,
                    Err(e) => {
                        self.lines.unreadable(|| format!("not UTF-8: {e}"));
                        continue;
                    }
                }
            }
            scratch.fields.clear();
            scratch.fields.resize(query.fields.len(), false);
            let head = match parse_head(&scratch.line, &query.fields, &mut scratch.fields) {
                Ok(head) => head,
                Err(reason) => {
                    self.lines.unreadable(|| reason);
                    continue;
                }
            };
            if !query.matches(&head.head, head.time_us, &scratch.fields) {
                continue;
            }
            let line = scratch.line.clone();
            self.held_bytes += line.len();
            self.seq += 1;
            self.held.push(Reverse(Pending {
                key: head.time_us,
                seq: self.seq,
                line,
            }));
        }
        let Reverse(next) = self.held.pop()?;
        self.held_bytes -= next.line.len();
        if self.last_key.is_some_and(|last| next.key < last) {
            self.late += 1;
        } else {
            self.last_key = Some(next.key);
        }
        Some(next)
    }
}

/// Statistics of one stream's files, from [`stats`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StreamStats {
    /// The stream.
    #[serde(serialize_with = "stream_name")]
    pub stream: Option<Stream>,
    /// Its files, current and rotated.
    pub files: usize,
    /// Those of them gzipped.
    pub compressed_files: usize,
    /// Their size on disk (gzipped files as compressed).
    pub bytes: u64,
    /// Log lines.
    pub lines: u64,
    /// Lines at `debug`.
    pub debug: u64,
    /// Lines at `info`.
    pub info: u64,
    /// Lines at `warn`.
    pub warn: u64,
    /// Lines at `error`.
    pub error: u64,
    /// Lines skipped as not log lines, torn (no newline) or too long (also given as warnings).
    pub skipped: u64,
    /// The earliest `ts`, as written; `None` without lines.
    pub oldest: Option<String>,
    /// The latest `ts`, as written.
    pub newest: Option<String>,
    #[serde(skip)]
    oldest_us: i64,
    #[serde(skip)]
    newest_us: i64,
}

#[expect(
    clippy::trivially_copy_pass_by_ref,
    clippy::ref_option,
    reason = "serde's serialize_with passes a reference to the field"
)]
fn stream_name<S: serde::Serializer>(stream: &Option<Stream>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(stream.map_or("total", Stream::as_str))
}

impl StreamStats {
    fn count(&mut self, level: Level, time_us: i64, ts: &str) {
        self.lines += 1;
        match level {
            Level::Debug => self.debug += 1,
            Level::Info => self.info += 1,
            Level::Warn => self.warn += 1,
            _ => self.error += 1,
        }
        if self.oldest.is_none() || time_us < self.oldest_us {
            self.oldest = Some(ts.to_owned());
            self.oldest_us = time_us;
        }
        if self.newest.is_none() || time_us > self.newest_us {
            self.newest = Some(ts.to_owned());
            self.newest_us = time_us;
        }
    }

    /// Adds `other` into `self` (for a total).
    fn add(&mut self, other: &StreamStats) {
        self.files += other.files;
        self.compressed_files += other.compressed_files;
        self.bytes += other.bytes;
        self.lines += other.lines;
        self.debug += other.debug;
        self.info += other.info;
        self.warn += other.warn;
        self.error += other.error;
        self.skipped += other.skipped;
        if let Some(ts) = &other.oldest
            && (self.oldest.is_none() || other.oldest_us < self.oldest_us)
        {
            self.oldest = Some(ts.clone());
            self.oldest_us = other.oldest_us;
        }
        if let Some(ts) = &other.newest
            && (self.newest.is_none() || other.newest_us > self.newest_us)
        {
            self.newest = Some(ts.clone());
            self.newest_us = other.newest_us;
        }
    }
}

/// Statistics of a log directory, from [`stats`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Stats {
    /// The directory.
    pub dir: PathBuf,
    /// Every stream, in file order (streams without files have zeros).
    pub streams: Vec<StreamStats>,
    /// The sums over the streams (`stream` is `total` in JSON, `None` here).
    pub total: StreamStats,
    /// Whether lines are missing from the counts: a warning said so
    /// ([`Warning::loses_lines`]).
    pub incomplete: bool,
}

/// Reads every file of every stream in `dir` and counts lines per stream and level, with the
/// files' sizes and the oldest and newest `ts`. Memory stays flat like [`search`]'s.
///
/// # Errors
/// [`ReadError::Dir`] when `dir` cannot be listed.
pub fn stats(dir: impl AsRef<Path>, mut warning: impl FnMut(&Warning)) -> Result<Stats, ReadError> {
    let dir = dir.as_ref();
    let mut incomplete = false;
    let mut warn = |w: Warning| {
        incomplete |= w.loses_lines();
        warning(&w);
    };
    let mut streams = Vec::new();
    let mut total = StreamStats::default();
    let mut buf = Vec::new();
    for stream in Stream::ALL {
        let mut lines = StreamLines::open(dir, stream)?;
        let mut stats = StreamStats {
            stream: Some(stream),
            files: lines.files.len(),
            compressed_files: lines.files.iter().filter(|f| f.compressed).count(),
            bytes: lines.bytes(),
            ..StreamStats::default()
        };
        while lines.next_line(&mut buf, &mut warn).is_some() {
            match parse_head(&buf, &[], &mut []) {
                Ok(head) => stats.count(head.head.level, head.time_us, &head.head.ts),
                Err(reason) => lines.unreadable(|| reason),
            }
        }
        stats.skipped = lines.skipped;
        total.add(&stats);
        streams.push(stats);
    }
    Ok(Stats {
        dir: dir.to_owned(),
        streams,
        total,
        incomplete,
    })
}

// ---------------------------------------------------------------------------------------------
// Listing and reading a stream's files.

/// A stream's rotated files with their stamps, in rotation order (gzipped or not).
pub(crate) fn rotated(dir: &Path, stream: Stream) -> io::Result<Vec<(Stamp, LogFile)>> {
    Ok(log_files(dir, stream)?
        .into_iter()
        .filter(|f| !f.current)
        .filter_map(|f| {
            let name = f.path.file_name()?.to_str()?;
            match Name::parse(name)? {
                Name::Rotated { stamp, .. } => Some((stamp, f)),
                _ => None,
            }
        })
        .collect())
}

/// The newest rotation's stamp of `stream`.
pub(crate) fn newest_stamp(dir: &Path, stream: Stream) -> io::Result<Option<Stamp>> {
    Ok(rotated(dir, stream)?.pop().map(|(stamp, _)| stamp))
}

/// A stream's files as of one moment: its rotated files, and its current file, opened, such
/// that the current file comes right after the last rotated one (no rotation happened between
/// the listing and the opening).
pub(crate) struct Snapshot {
    pub(crate) rotated: Vec<(Stamp, LogFile)>,
    pub(crate) current: Option<(LogFile, File)>,
}

impl Snapshot {
    pub(crate) fn take(dir: &Path, stream: Stream) -> io::Result<Snapshot> {
        let path = dir.join(format!("{}.jsonl", stream.as_str()));
        let mut attempts = 0;
        loop {
            let rotated = rotated(dir, stream)?;
            let current = match File::open(&path) {
                Ok(file) => Some((
                    LogFile {
                        path: path.clone(),
                        compressed: false,
                        current: true,
                    },
                    file,
                )),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => return Err(e),
            };
            let after = newest_stamp(dir, stream)?;
            attempts += 1;
            // A rotation in between: the file opened may be the one just rotated.
            if after.as_ref() == rotated.last().map(|(s, _)| s) || attempts >= 100 {
                return Ok(Snapshot { rotated, current });
            }
        }
    }
}

/// How reading one line went.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum LineRead {
    /// A whole line was appended to the buffer (without its newline).
    Line,
    /// The input ended after bytes without a newline, which are in the buffer.
    Partial,
    /// A line longer than [`MAX_LINE`] was skipped, up to and including its newline (or to the
    /// end of the input); the buffer was emptied.
    TooLong(u64),
    /// The input ended; nothing was appended.
    End,
}

/// Appends the next line of `reader` to `buf`, which may already hold the start of that line,
/// reading at most [`MAX_LINE`] bytes of it.
pub(crate) fn read_line(reader: &mut dyn BufRead, buf: &mut Vec<u8>) -> io::Result<LineRead> {
    read_line_max(reader, buf, MAX_LINE)
}

fn read_line_max(reader: &mut dyn BufRead, buf: &mut Vec<u8>, max: usize) -> io::Result<LineRead> {
    let mut skipped: Option<u64> = None;
    loop {
        let available = match reader.fill_buf() {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            return Ok(match skipped {
                Some(n) => LineRead::TooLong(n),
                None if buf.is_empty() => LineRead::End,
                None => LineRead::Partial,
            });
        }
        let newline = available.iter().position(|&b| b == b'\n');
        let take = newline.map_or(available.len(), |at| at + 1);
        let data = newline.map_or(available, |at| &available[..at]);
        if let Some(n) = &mut skipped {
            *n += take as u64;
        } else {
            buf.extend_from_slice(data);
            if buf.len() > max {
                skipped = Some(buf.len() as u64 + u64::from(newline.is_some()));
                buf.clear();
                buf.shrink_to(64 * 1024);
            }
        }
        reader.consume(take);
        if newline.is_some() {
            return Ok(match skipped {
                Some(n) => LineRead::TooLong(n),
                None => LineRead::Line,
            });
        }
    }
}

/// The file being read by a [`StreamLines`].
struct Reading {
    index: usize,
    reader: Box<dyn BufRead + Send>,
    number: u64,
    unreadable: u64,
    first_unreadable: Option<(u64, String)>,
}

/// A stream's lines, file after file in order, as of a [`Snapshot`]. Lines that cannot be
/// lines (torn, too long, unreadable files) are reported as warnings and skipped.
pub(crate) struct StreamLines {
    pub(crate) stream: Stream,
    files: Vec<LogFile>,
    current: Option<File>,
    next: usize,
    reading: Option<Reading>,
    /// Lines skipped so far: unreadable, torn or too long.
    skipped: u64,
}

impl StreamLines {
    /// `stream`'s files in `dir`; the current file is opened now.
    pub(crate) fn open(dir: &Path, stream: Stream) -> Result<StreamLines, ReadError> {
        let snapshot = Snapshot::take(dir, stream).map_err(|source| ReadError::Dir {
            path: dir.to_owned(),
            source,
        })?;
        let mut files: Vec<LogFile> = snapshot.rotated.into_iter().map(|(_, f)| f).collect();
        let current = snapshot.current.map(|(file, open)| {
            files.push(file);
            open
        });
        Ok(StreamLines {
            stream,
            files,
            current,
            next: 0,
            reading: None,
            skipped: 0,
        })
    }

    /// The files' sizes on disk as of now.
    fn bytes(&self) -> u64 {
        self.files
            .iter()
            .map(|f| {
                if f.current
                    && let Some(open) = &self.current
                {
                    return open.metadata().map_or(0, |m| m.len());
                }
                fs::metadata(&f.path)
                    .or_else(|_| fs::metadata(super::files::gz_of(&f.path)))
                    .map_or(0, |m| m.len())
            })
            .sum()
    }

    /// Reads the next whole line into `buf` (emptied first); `None` after the last file.
    pub(crate) fn next_line(
        &mut self,
        buf: &mut Vec<u8>,
        warn: &mut dyn FnMut(Warning),
    ) -> Option<()> {
        loop {
            if self.reading.is_none() {
                let index = self.next;
                let file = self.files.get(index)?;
                self.next += 1;
                let opened = match (file.current, self.current.take()) {
                    (true, Some(open)) => Ok(Box::new(BufReader::with_capacity(READ_BUFFER, open))
                        as Box<dyn BufRead + Send>),
                    _ => file.open(),
                };
                match opened {
                    Ok(reader) => {
                        self.reading = Some(Reading {
                            index,
                            reader,
                            number: 0,
                            unreadable: 0,
                            first_unreadable: None,
                        });
                    }
                    Err(e) => {
                        let kind = if e.kind() == io::ErrorKind::NotFound {
                            WarningKind::Vanished
                        } else {
                            WarningKind::ReadFailed {
                                after: Position::Line(0),
                                error: e.to_string(),
                            }
                        };
                        warn(Warning {
                            path: file.path.clone(),
                            kind,
                        });
                        continue;
                    }
                }
            }
            let reading = self.reading.as_mut()?;
            buf.clear();
            let path = || self.files[reading.index].path.clone();
            match read_line(&mut *reading.reader, buf) {
                Ok(LineRead::Line) => {
                    reading.number += 1;
                    return Some(());
                }
                Ok(LineRead::TooLong(bytes)) => {
                    reading.number += 1;
                    self.skipped += 1;
                    warn(Warning {
                        path: path(),
                        kind: WarningKind::TooLong {
                            at: Position::Line(reading.number),
                            bytes,
                        },
                    });
                }
                Ok(LineRead::Partial) => {
                    reading.number += 1;
                    self.skipped += 1;
                    warn(Warning {
                        path: path(),
                        kind: WarningKind::TornLine {
                            at: Position::Line(reading.number),
                            bytes: buf.len() as u64,
                        },
                    });
                    buf.clear();
                    self.finish(warn);
                }
                Ok(LineRead::End) => self.finish(warn),
                Err(e) => {
                    warn(Warning {
                        path: path(),
                        kind: WarningKind::ReadFailed {
                            after: Position::Line(reading.number),
                            error: e.to_string(),
                        },
                    });
                    self.finish(warn);
                }
            }
        }
    }

    /// Marks the line just read as not a log line.
    pub(crate) fn unreadable(&mut self, reason: impl FnOnce() -> String) {
        self.skipped += 1;
        if let Some(reading) = &mut self.reading {
            reading.unreadable += 1;
            if reading.first_unreadable.is_none() {
                reading.first_unreadable = Some((reading.number, reason()));
            }
        }
    }

    /// Ends the file being read, reporting its unreadable lines.
    fn finish(&mut self, warn: &mut dyn FnMut(Warning)) {
        if let Some(reading) = self.reading.take()
            && let Some((first_line, reason)) = reading.first_unreadable
        {
            warn(Warning {
                path: self.files[reading.index].path.clone(),
                kind: WarningKind::Unreadable {
                    lines: reading.unreadable,
                    first: Position::Line(first_line),
                    reason,
                },
            });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Parsing what a search needs of a line, without building the whole JSON value.

/// The fields of a line a search or the statistics look at.
pub(crate) struct Head<'a> {
    pub(crate) ts: Cow<'a, str>,
    pub(crate) level: Level,
    pub(crate) correlation: Option<Cow<'a, str>>,
}

/// A parsed line's [`Head`] and its `ts` in microseconds.
pub(crate) struct Parsed<'a> {
    pub(crate) head: Head<'a>,
    pub(crate) time_us: i64,
}

/// Parses `line`'s `ts`, `level` and `correlation_id`, and sets `matched[i]` when `wanted[i]`
/// holds. `Err` says why the line is not a log line.
pub(crate) fn parse_head<'a>(
    line: &'a [u8],
    wanted: &[FieldFilter],
    matched: &mut [bool],
) -> Result<Parsed<'a>, String> {
    let mut de = serde_json::Deserializer::from_slice(line);
    let raw = HeadSeed { wanted, matched }
        .deserialize(&mut de)
        .and_then(|head| de.end().map(|()| head))
        .map_err(|e| format!("not a JSON object: {e}"))?;
    let ts = raw.ts.ok_or("no `ts`")?;
    let time_us = ts_micros(&ts).ok_or_else(|| format!("`ts` {ts:?} is not an RFC 3339 time"))?;
    let level = match raw.level.as_deref() {
        Some("debug") => Level::Debug,
        Some("info") => Level::Info,
        Some("warn") => Level::Warn,
        Some("error") => Level::Error,
        Some(other) => return Err(format!("unknown `level` {other:?}")),
        None => return Err("no `level`".to_owned()),
    };
    Ok(Parsed {
        head: Head {
            ts,
            level,
            correlation: raw.correlation,
        },
        time_us,
    })
}

#[derive(Default)]
struct RawHead<'a> {
    ts: Option<Cow<'a, str>>,
    level: Option<Cow<'a, str>>,
    correlation: Option<Cow<'a, str>>,
}

struct HeadSeed<'q> {
    wanted: &'q [FieldFilter],
    matched: &'q mut [bool],
}

impl<'de> DeserializeSeed<'de> for HeadSeed<'_> {
    type Value = RawHead<'de>;

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeadSeed<'_> {
    type Value = RawHead<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut head = RawHead::default();
        let HeadSeed { wanted, matched } = self;
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            let slot = match &*key {
                "ts" => Some(&mut head.ts),
                "level" => Some(&mut head.level),
                "correlation_id" => Some(&mut head.correlation),
                _ => None,
            };
            if let Some(slot) = slot {
                let Text(value) = map.next_value::<Text<'de>>()?;
                let value = Scalar::Str(value);
                mark(wanted, matched, &key, &value);
                let Scalar::Str(value) = value else {
                    unreachable!()
                };
                *slot = Some(value);
            } else if matches!(&*key, "fields" | "labels") && !wanted.is_empty() {
                map.next_value_seed(Pairs {
                    wanted,
                    matched: &mut *matched,
                })?;
            } else if wanted.iter().any(|w| w.key == *key) {
                let value = map.next_value::<Scalar<'de>>()?;
                mark(wanted, matched, &key, &value);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(head)
    }
}

fn mark(wanted: &[FieldFilter], matched: &mut [bool], key: &str, value: &Scalar<'_>) {
    for (want, hit) in wanted.iter().zip(matched.iter_mut()) {
        if want.key == key && want.matches(value) {
            *hit = true;
        }
    }
}

/// The entries of `fields` or `labels`, checked against the wanted fields (a key may repeat).
struct Pairs<'q> {
    wanted: &'q [FieldFilter],
    matched: &'q mut [bool],
}

impl<'de> DeserializeSeed<'de> for Pairs<'_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Pairs<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            if self.wanted.iter().any(|w| w.key == *key) {
                let value = map.next_value::<Scalar<'de>>()?;
                mark(self.wanted, self.matched, &key, &value);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    // Anything else is not what the schema says, but not a reason to drop the line.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
}

/// A JSON string, borrowed from the line where it has no escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Text<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Text<'de>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// A JSON value as a `--field` compares it.
enum Scalar<'a> {
    Str(Cow<'a, str>),
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    /// An object, array or null: never equal to a value given on the command line.
    Other,
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::U64(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::I64(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::F64(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Scalar<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scalar<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

// ---------------------------------------------------------------------------------------------
// Times.

/// `time` in microseconds since the Unix epoch (negative before it), truncated.
pub(crate) fn micros(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
        Err(e) => {
            // Round towards the past, as truncation does after the epoch.
            let d = e.duration();
            let us = i64::try_from(d.as_micros()).unwrap_or(i64::MAX);
            if d.subsec_nanos() % 1000 == 0 {
                -us
            } else {
                -us - 1
            }
        }
    }
}

/// A line's `ts` in microseconds since the Unix epoch: the sink's form
/// (`2026-11-25T10:16:53.123456Z`) read directly, any other RFC 3339 time through `jiff`.
pub(crate) fn ts_micros(ts: &str) -> Option<i64> {
    let b = ts.as_bytes();
    let shape = b.len() == 27
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'.'
        && b[26] == b'Z';
    if shape {
        let num = |range: std::ops::Range<usize>| -> Option<i64> {
            b[range].iter().try_fold(0i64, |n, &d| {
                d.is_ascii_digit().then(|| n * 10 + i64::from(d - b'0'))
            })
        };
        let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
        let (hour, minute, second, micro) =
            (num(11..13)?, num(14..16)?, num(17..19)?, num(20..26)?);
        if (1..=12).contains(&month)
            && (1..=days_in_month(year, month)).contains(&day)
            && hour < 24
            && minute < 60
            && second < 60
        {
            let days = days_from_civil(year, month, day);
            return Some(
                ((days * 24 + hour) * 60 + minute) * 60_000_000 + second * 1_000_000 + micro,
            );
        }
        return None;
    }
    let time: jiff::Timestamp = ts.parse().ok()?;
    Some(time.as_microsecond())
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;
    use std::time::Duration;

    #[test]
    fn sink_times_read_like_humantime_reads_them() {
        for secs in [
            0u64,
            1,
            951_782_400,
            1_709_164_800,
            1_769_336_213,
            253_402_300_799,
        ] {
            for micro in [0u32, 1, 123_456, 999_999] {
                let time = UNIX_EPOCH + Duration::new(secs, micro * 1000);
                let text = humantime::format_rfc3339_micros(time).to_string();
                assert_eq!(ts_micros(&text), Some(micros(time)), "{text}");
            }
        }
        // Other RFC 3339 forms go through jiff.
        assert_eq!(
            ts_micros("2026-01-25T11:16:53.5+01:00"),
            ts_micros("2026-01-25T10:16:53.500000Z")
        );
        for bad in [
            "2026-02-30T10:16:53.000000Z",
            "2026-13-01T10:16:53.000000Z",
            "2026-01-01T24:00:00.000000Z",
            "2026-01-01T10:16:5x.000000Z",
            "yesterday",
            "",
        ] {
            assert_eq!(ts_micros(bad), None, "{bad}");
        }
        assert_eq!(micros(UNIX_EPOCH - Duration::from_nanos(1)), -1);
        assert_eq!(micros(UNIX_EPOCH - Duration::from_micros(2)), -2);
    }

    fn head_of(line: &str, wanted: &[FieldFilter]) -> Result<(i64, Level, Vec<bool>), String> {
        let mut matched = vec![false; wanted.len()];
        let parsed = parse_head(line.as_bytes(), wanted, &mut matched)?;
        Ok((parsed.time_us, parsed.head.level, matched))
    }

    #[test]
    fn fields_match_strings_numbers_booleans_and_repeated_keys() {
        let line = r#"{"ts":"1970-01-01T00:00:01.000002Z","level":"warn","kind":"notice","name":"h\"x","fields":{"disk":"sda","n":3,"ratio":0.5,"ok":true,"disk":"sdb","neg":-4,"big":18446744073709551615,"nested":{"a":1}},"labels":{"zone":"eu"}}"#;
        let wanted = [
            FieldFilter::new("disk", "sda"),
            FieldFilter::new("disk", "sdb"),
            FieldFilter::new("n", "3"),
            FieldFilter::new("ratio", "0.5"),
            FieldFilter::new("ok", "true"),
            FieldFilter::new("neg", "-4"),
            FieldFilter::new("big", "18446744073709551615"),
            FieldFilter::new("zone", "eu"),
            FieldFilter::new("kind", "notice"),
            FieldFilter::new("name", "h\"x"),
            FieldFilter::new("level", "warn"),
            // Never true:
            FieldFilter::new("n", "3.5"),
            FieldFilter::new("disk", "SDA"),
            FieldFilter::new("nested", "{\"a\":1}"),
            FieldFilter::new("missing", ""),
            FieldFilter::new("ok", "1"),
        ];
        let (time, level, matched) = head_of(line, &wanted).unwrap();
        assert_eq!((time, level), (1_000_002, Level::Warn));
        assert_eq!(
            matched,
            [
                true, true, true, true, true, true, true, true, true, true, true, false, false,
                false, false, false
            ]
        );
    }

    #[test]
    fn what_is_not_a_log_line_says_why() {
        for (line, why) in [
            ("not json", "not a JSON object"),
            ("[1,2]", "not a JSON object"),
            (r#"{"level":"info"}"#, "no `ts`"),
            (r#"{"ts":"x","level":"info"}"#, "is not an RFC 3339 time"),
            (
                r#"{"ts":"1970-01-01T00:00:00.000000Z","level":"loud"}"#,
                "unknown `level`",
            ),
            (r#"{"ts":"1970-01-01T00:00:00.000000Z"}"#, "no `level`"),
            (
                r#"{"ts":"1970-01-01T00:00:00.000000Z","level":"info"} x"#,
                "not a JSON",
            ),
        ] {
            let error = head_of(line, &[]).map(|_| ()).unwrap_err();
            assert!(error.contains(why), "{line}: {error}");
        }
    }

    #[test]
    fn lines_are_read_whole_torn_or_skipped_when_too_long() {
        let data = b"ab\n\ncdefghij\nk\nlmn";
        let mut reader = BufReader::with_capacity(3, &data[..]);
        let mut buf = Vec::new();
        let mut read = |buf: &mut Vec<u8>| {
            buf.clear();
            let r = read_line_max(&mut reader, buf, 4).unwrap();
            (r, String::from_utf8(buf.clone()).unwrap())
        };
        assert_eq!(read(&mut buf), (LineRead::Line, "ab".into()));
        assert_eq!(read(&mut buf), (LineRead::Line, String::new()));
        assert_eq!(read(&mut buf), (LineRead::TooLong(9), String::new()));
        assert_eq!(read(&mut buf), (LineRead::Line, "k".into()));
        assert_eq!(read(&mut buf), (LineRead::Partial, "lmn".into()));
        assert_eq!(read(&mut buf), (LineRead::End, String::new()));
        // A partial line is completed by a later read into the same buffer.
        let mut rest = BufReader::new(&b"op\n"[..]);
        let mut partial = b"lmn".to_vec();
        assert_eq!(read_line(&mut rest, &mut partial).unwrap(), LineRead::Line);
        assert_eq!(partial, b"lmnop");
    }

    fn line(ts_us: u64, level: &str, n: u64) -> String {
        let ts = humantime::format_rfc3339_micros(UNIX_EPOCH + Duration::from_micros(ts_us));
        format!(
            r#"{{"ts":"{ts}","level":"{level}","stream":"main","kind":"notice","name":"n","fields":{{"n":{n}}}}}"#
        )
    }

    #[test]
    fn lines_out_of_order_within_a_stream_come_out_in_time_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut file = File::create(dir.path().join("main.jsonl")).unwrap();
        // Written out of order by up to 5 lines; one line 10,000 lines late.
        let mut expected = Vec::new();
        for i in 0..20_000u64 {
            let ts = if i == 15_000 {
                10
            } else {
                1_000 + i + (i % 7) * 3
            };
            writeln!(file, "{}", line(ts, "info", i)).unwrap();
            expected.push(ts);
        }
        drop(file);
        let mut keys = Vec::new();
        let report = search(
            dir.path(),
            &Query::new(),
            |hit| {
                keys.push(hit.time_us as u64);
                Ok(())
            },
            |w| panic!("{w}"),
        )
        .unwrap();
        assert_eq!(report.matched, 20_000);
        assert_eq!(report.read, 20_000);
        assert_eq!(
            report.late, 1,
            "the line 10,000 lines late is passed on late"
        );
        let late_at = keys.iter().position(|&k| k == 10).unwrap();
        let mut rest = keys.clone();
        rest.remove(late_at);
        assert!(rest.is_sorted(), "all but the late line are in time order");
        expected.sort_unstable();
        keys.sort_unstable();
        assert_eq!(keys, expected);
    }

    #[test]
    fn grep_matches_the_line_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let lines = [
            r#"{"ts":"1970-01-01T00:00:01.000000Z","level":"info","name":"say \"hi\"\n"}"#,
            r#"{"ts":"1970-01-01T00:00:02.000000Z","level":"info","name":"say hi"}"#,
        ];
        fs::write(dir.path().join("main.jsonl"), lines.join("\n") + "\n").unwrap();
        let count = |query: &Query| {
            search(dir.path(), query, |_| Ok(()), |w| panic!("{w}"))
                .unwrap()
                .matched
        };
        assert_eq!(count(&Query::new().grep("say \"hi\"\n")), 1);
        assert_eq!(count(&Query::new().grep("say")), 2);
        assert_eq!(count(&Query::new().grep("Say")), 0);
        assert_eq!(count(&Query::new().grep("say").limit(1)), 1);
    }
}
