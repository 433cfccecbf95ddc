//! The last lines of a log directory's streams, then the lines written after them, followed
//! across rotations: [`Tail`].
//!
//! ```
//! # let dir = tempfile::tempdir()?;
//! use instrument::{Level, Notice};
//! use instrument_sinks::jsonl::{JsonlSink, Stream};
//! use instrument_sinks::jsonl::tail::Tail;
//!
//! let pipeline = instrument::builder()
//!     .sink(JsonlSink::builder().dir(dir.path()).build()?)
//!     .install()?;
//! let notice = |text: &'static str| instrument::publish(Notice::new("app", Level::Warn, text));
//! notice("one");
//! notice("two");
//! pipeline.flush()?;
//!
//! let mut seen = Vec::new();
//! let mut keep = |hit: &instrument_sinks::jsonl::search::Hit<'_>| {
//!     seen.push(String::from_utf8_lossy(hit.line).into_owned());
//!     Ok(())
//! };
//! // The last line of the error stream, then what is written after it.
//! let mut tail = Tail::open(dir.path(), &[Stream::Error], 1, &mut keep, |w| panic!("{w}"))?;
//! notice("three");
//! pipeline.flush()?;
//! tail.poll(&mut keep, |w| panic!("{w}"))?;
//! assert_eq!(seen.len(), 2);
//! assert!(seen[0].contains("\"two\"") && seen[1].contains("\"three\""));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::VecDeque;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::Stream;
use super::files::{LogFile, Stamp, identity, whole_lines_length};
use super::search::{
    Hit, LineRead, MAX_LINE, Position, ReadError, Snapshot, Warning, WarningKind, newest_stamp,
    parse_head, read_line, rotated,
};

/// Bytes of new lines gathered before they are passed on, in time order, by [`Tail::poll`].
const BATCH_BYTES: usize = 1024 * 1024;

/// The tail of some streams of a log directory, and where to go on reading them.
///
/// [`Tail::open`] passes on the last lines; each [`Tail::poll`] then passes on the lines
/// written since, in the order written (lines of different streams that one poll finds are
/// put in time order). A stream's current file is followed by its identity (device and inode
/// on Unix): when the sink rotates it (renames it and starts a new one), the rest of the
/// renamed file is read, then any file rotated since, gzipped or not, then the new current
/// file, so that no line is passed on twice or missed. A line still being written (no
/// newline yet) waits for its newline.
///
/// A file rotated and pruned before a poll could read it (more rotations within one poll than
/// the sink keeps files) is reported as [`WarningKind::Vanished`]. On systems other than Unix
/// only a removed current file is noticed, not a replaced one.
#[derive(Debug)]
pub struct Tail {
    followers: Vec<Follower>,
}

impl Tail {
    /// Opens the current files of `streams` (all of them when empty) in `dir` and passes the
    /// last `lines` lines of those streams together (from rotated files where the current
    /// ones hold fewer) to `hit`, in time order; what is skipped goes to `warning`.
    ///
    /// # Errors
    /// [`ReadError::Dir`] when `dir` cannot be listed; [`ReadError::Output`] when `hit` fails.
    pub fn open(
        dir: impl AsRef<Path>,
        streams: &[Stream],
        lines: usize,
        mut hit: impl FnMut(&Hit<'_>) -> io::Result<()>,
        mut warning: impl FnMut(&Warning),
    ) -> Result<Tail, ReadError> {
        let dir = dir.as_ref();
        let mut streams = if streams.is_empty() {
            Stream::ALL.to_vec()
        } else {
            streams.to_vec()
        };
        streams.sort();
        streams.dedup();
        let mut followers = Vec::new();
        let mut last: Vec<Line> = Vec::new();
        let mut warnings = Vec::new();
        for stream in streams {
            let (follower, found) =
                Follower::open(dir, stream, lines, &mut warnings).map_err(|source| {
                    ReadError::Dir {
                        path: dir.to_owned(),
                        source,
                    }
                })?;
            last.extend(found);
            followers.push(follower);
        }
        for w in &warnings {
            warning(w);
        }
        last.sort_by_key(|l| (l.key, l.stream, l.seq));
        let skip = last.len().saturating_sub(lines);
        for line in &last[skip..] {
            hit(&line.hit()).map_err(ReadError::Output)?;
        }
        Ok(Tail { followers })
    }

    /// Passes the lines written since the last call (or since [`Tail::open`]) to `hit`,
    /// following rotations; returns how many.
    ///
    /// # Errors
    /// [`ReadError::Output`] when `hit` fails. Files that cannot be read are warnings.
    pub fn poll(
        &mut self,
        mut hit: impl FnMut(&Hit<'_>) -> io::Result<()>,
        mut warning: impl FnMut(&Warning),
    ) -> Result<u64, ReadError> {
        let mut batch = Batch::default();
        let mut count = 0;
        let mut warnings = Vec::new();
        for follower in &mut self.followers {
            let stream = follower.stream;
            let result = follower.poll(
                &mut |line| {
                    let parsed = match parse_head(line, &[], &mut []) {
                        Ok(parsed) => parsed,
                        Err(reason) => return Ok(Some(reason)),
                    };
                    batch.push(Line {
                        key: parsed.time_us,
                        stream,
                        seq: 0,
                        bytes: line.to_vec(),
                    });
                    if batch.bytes >= BATCH_BYTES {
                        count += batch.flush(&mut hit)?;
                    }
                    Ok(None)
                },
                &mut warnings,
            );
            for w in warnings.drain(..) {
                warning(&w);
            }
            result.map_err(ReadError::Output)?;
        }
        count += batch.flush(&mut hit).map_err(ReadError::Output)?;
        Ok(count)
    }
}

/// A log line read by a tail.
struct Line {
    key: i64,
    stream: Stream,
    seq: u64,
    bytes: Vec<u8>,
}

impl Line {
    fn hit(&self) -> Hit<'_> {
        Hit {
            stream: self.stream,
            time_us: self.key,
            line: &self.bytes,
        }
    }
}

/// New lines of one poll, put in time order before they are passed on.
#[derive(Default)]
struct Batch {
    lines: Vec<Line>,
    bytes: usize,
    seq: u64,
}

impl Batch {
    fn push(&mut self, mut line: Line) {
        self.seq += 1;
        line.seq = self.seq;
        self.bytes += line.bytes.len();
        self.lines.push(line);
    }

    fn flush(&mut self, hit: &mut impl FnMut(&Hit<'_>) -> io::Result<()>) -> io::Result<u64> {
        self.lines.sort_by_key(|l| (l.key, l.stream, l.seq));
        let n = self.lines.len() as u64;
        for line in self.lines.drain(..) {
            hit(&line.hit())?;
        }
        self.bytes = 0;
        Ok(n)
    }
}

/// What to do with a line: `Ok(Some(reason))` when it is not a log line.
type OnLine<'a> = dyn FnMut(&[u8]) -> io::Result<Option<String>> + 'a;

/// The current file a [`Follower`] reads.
#[derive(Debug)]
struct Followed {
    reader: BufReader<File>,
    id: (u64, u64),
    /// Where the next line starts.
    offset: u64,
}

/// One stream of a [`Tail`].
#[derive(Debug)]
struct Follower {
    stream: Stream,
    dir: PathBuf,
    path: PathBuf,
    file: Option<Followed>,
    /// The newest rotation read (or present when `file` was opened): the rotation of `file`
    /// will be newer.
    newest: Option<Stamp>,
    /// The start of a line still being written.
    partial: Vec<u8>,
}

impl Follower {
    /// The follower of `stream`, at the end of its current file's whole lines, and its last
    /// `n` log lines.
    fn open(
        dir: &Path,
        stream: Stream,
        n: usize,
        warnings: &mut Vec<Warning>,
    ) -> io::Result<(Follower, Vec<Line>)> {
        let snapshot = Snapshot::take(dir, stream)?;
        let mut found: Vec<Line> = Vec::new();
        let mut follower = Follower {
            stream,
            dir: dir.to_owned(),
            path: dir.join(format!("{}.jsonl", stream.as_str())),
            file: None,
            newest: snapshot.rotated.last().map(|(stamp, _)| stamp.clone()),
            partial: Vec::new(),
        };
        if let Some((log, mut file)) = snapshot.current {
            let len = file.metadata()?.len();
            let end = whole_lines_length(&mut file, len)?;
            let (lines, long) = last_lines(&file, end, n)?;
            let mut newest_first = Vec::new();
            for (at, line) in lines.into_iter().rev() {
                keep(
                    stream,
                    &log.path,
                    Position::Byte(at),
                    line,
                    &mut newest_first,
                    warnings,
                );
            }
            too_long(&log.path, long, warnings);
            found.extend(newest_first);
            file.seek(SeekFrom::Start(end))?;
            follower.file = Some(Followed {
                id: identity(&file.metadata()?),
                reader: BufReader::with_capacity(64 * 1024, file),
                offset: end,
            });
        }
        // Older lines, newest first, until there are `n`.
        for (_, log) in snapshot.rotated.iter().rev() {
            if found.len() >= n {
                break;
            }
            let want = n - found.len();
            let mut newest_first = Vec::new();
            for (at, line) in last_lines_of(log, want, warnings).into_iter().rev() {
                keep(stream, &log.path, at, line, &mut newest_first, warnings);
            }
            found.extend(newest_first);
        }
        found.truncate(n);
        // Newest first: number them oldest first, to keep the written order among equal times.
        let count = found.len() as u64;
        for (i, line) in found.iter_mut().enumerate() {
            line.seq = count - i as u64;
        }
        Ok((follower, found))
    }

    /// Reads what was written since the last poll. `Err` only when `on_line` fails.
    fn poll(&mut self, on_line: &mut OnLine<'_>, warnings: &mut Vec<Warning>) -> io::Result<()> {
        // Each round either returns or moves past a rotation; a directory that rotates faster
        // than it can be listed is read on at the next poll.
        for _ in 0..100 {
            if self.file.is_some() {
                self.read_followed(on_line, warnings)?;
                let still = match (&self.file, fs::metadata(&self.path)) {
                    (Some(file), Ok(meta)) => identity(&meta) == file.id,
                    _ => false,
                };
                if still {
                    return Ok(());
                }
                // Rotated (or removed): whatever was written to it before is there now.
                if !self.after_rotation(on_line, warnings)? {
                    return Ok(());
                }
                continue;
            }
            // Open the current file, making sure no rotation happened in between: the files
            // rotated before it are read first.
            let before = match self.newer_rotated() {
                Ok(newer) => newer,
                Err(e) => {
                    self.dir_warning(&e, warnings);
                    return Ok(());
                }
            };
            let opened = match File::open(&self.path) {
                Ok(file) => Some(file),
                Err(e) if e.kind() == io::ErrorKind::NotFound => None,
                Err(e) => {
                    warnings.push(Warning {
                        path: self.path.clone(),
                        kind: WarningKind::ReadFailed {
                            after: Position::Line(0),
                            error: e.to_string(),
                        },
                    });
                    return Ok(());
                }
            };
            let after = match newest_stamp(&self.dir, self.stream) {
                Ok(after) => after,
                Err(e) => {
                    self.dir_warning(&e, warnings);
                    return Ok(());
                }
            };
            let expected = before
                .last()
                .map(|(stamp, _)| stamp)
                .or(self.newest.as_ref());
            if after
                .as_ref()
                .is_some_and(|after| expected.is_none_or(|expected| after > expected))
            {
                // Rotated in between: the file opened may be the one just rotated.
                continue;
            }
            for (_, log) in &before {
                read_whole(log, on_line, warnings)?;
            }
            if let Some((stamp, _)) = before.last() {
                self.newest = Some(stamp.clone());
            }
            let Some(file) = opened else {
                return Ok(());
            };
            let id = match file.metadata() {
                Ok(meta) => identity(&meta),
                Err(_) => continue,
            };
            self.file = Some(Followed {
                reader: BufReader::with_capacity(64 * 1024, file),
                id,
                offset: 0,
            });
        }
        Ok(())
    }

    /// Finishes the followed file, which is no longer the current file, and reads the files
    /// rotated after it. `Ok(false)` when the directory cannot be listed.
    fn after_rotation(
        &mut self,
        on_line: &mut OnLine<'_>,
        warnings: &mut Vec<Warning>,
    ) -> io::Result<bool> {
        self.read_followed(on_line, warnings)?;
        let Some(followed) = self.file.take() else {
            return Ok(true);
        };
        if !self.partial.is_empty() {
            warnings.push(Warning {
                path: self.path.clone(),
                kind: WarningKind::TornLine {
                    at: Position::Byte(followed.offset),
                    bytes: self.partial.len() as u64,
                },
            });
            self.partial.clear();
        }
        let newer = match self.newer_rotated() {
            Ok(newer) => newer,
            Err(e) => {
                self.dir_warning(&e, warnings);
                return Ok(false);
            }
        };
        // The first rotation after `newest` is the file just read, unless it was removed
        // rather than rotated (then it is not this plain file).
        let skip = newer.first().is_some_and(|(_, log)| {
            log.compressed || fs::metadata(&log.path).map_or(true, |m| identity(&m) == followed.id)
        });
        for (_, log) in newer.iter().skip(usize::from(skip)) {
            read_whole(log, on_line, warnings)?;
        }
        if let Some((stamp, _)) = newer.last() {
            self.newest = Some(stamp.clone());
        }
        Ok(true)
    }

    /// The rotated files newer than the newest one read.
    fn newer_rotated(&self) -> io::Result<Vec<(Stamp, LogFile)>> {
        let mut all = rotated(&self.dir, self.stream)?;
        all.retain(|(stamp, _)| self.newest.as_ref().is_none_or(|newest| stamp > newest));
        Ok(all)
    }

    fn dir_warning(&self, error: &io::Error, warnings: &mut Vec<Warning>) {
        warnings.push(Warning {
            path: self.dir.clone(),
            kind: WarningKind::ReadFailed {
                after: Position::Line(0),
                error: error.to_string(),
            },
        });
    }

    /// Passes on the whole lines of the followed file up to its end; a last line without
    /// newline stays in `partial`.
    fn read_followed(
        &mut self,
        on_line: &mut OnLine<'_>,
        warnings: &mut Vec<Warning>,
    ) -> io::Result<()> {
        let Some(file) = &mut self.file else {
            return Ok(());
        };
        loop {
            let at = file.offset;
            match read_line(&mut file.reader, &mut self.partial) {
                Ok(LineRead::Line) => {
                    file.offset += self.partial.len() as u64 + 1;
                    if let Some(reason) = on_line(&self.partial)? {
                        warnings.push(unreadable(&self.path, Position::Byte(at), reason));
                    }
                    self.partial.clear();
                }
                Ok(LineRead::TooLong(bytes)) => {
                    file.offset += bytes;
                    warnings.push(Warning {
                        path: self.path.clone(),
                        kind: WarningKind::TooLong {
                            at: Position::Byte(at),
                            bytes,
                        },
                    });
                }
                Ok(LineRead::Partial | LineRead::End) => return Ok(()),
                Err(e) => {
                    warnings.push(Warning {
                        path: self.path.clone(),
                        kind: WarningKind::ReadFailed {
                            after: Position::Byte(at),
                            error: e.to_string(),
                        },
                    });
                    return Ok(());
                }
            }
        }
    }
}

/// Adds `line` to `into` if it is a log line, else warns.
fn keep(
    stream: Stream,
    path: &Path,
    at: Position,
    line: Vec<u8>,
    into: &mut Vec<Line>,
    warnings: &mut Vec<Warning>,
) {
    match parse_head(&line, &[], &mut []) {
        Ok(parsed) => {
            let key = parsed.time_us;
            into.push(Line {
                key,
                stream,
                seq: 0,
                bytes: line,
            });
        }
        Err(reason) => warnings.push(unreadable(path, at, reason)),
    }
}

fn unreadable(path: &Path, at: Position, reason: String) -> Warning {
    Warning {
        path: path.to_owned(),
        kind: WarningKind::Unreadable {
            lines: 1,
            first: at,
            reason,
        },
    }
}

fn too_long(path: &Path, offsets: Vec<(u64, u64)>, warnings: &mut Vec<Warning>) {
    for (at, bytes) in offsets {
        warnings.push(Warning {
            path: path.to_owned(),
            kind: WarningKind::TooLong {
                at: Position::Byte(at),
                bytes,
            },
        });
    }
}

/// Passes every line of a rotated file on.
fn read_whole(
    log: &LogFile,
    on_line: &mut OnLine<'_>,
    warnings: &mut Vec<Warning>,
) -> io::Result<()> {
    let mut reader = match log.open() {
        Ok(reader) => reader,
        Err(e) => {
            warnings.push(open_failed(log, &e));
            return Ok(());
        }
    };
    let mut buf = Vec::new();
    let mut number = 0;
    loop {
        buf.clear();
        let read = read_line(&mut *reader, &mut buf);
        let warning = |kind| Warning {
            path: log.path.clone(),
            kind,
        };
        match read {
            Ok(LineRead::Line) => {
                number += 1;
                if let Some(reason) = on_line(&buf)? {
                    warnings.push(unreadable(&log.path, Position::Line(number), reason));
                }
            }
            Ok(LineRead::TooLong(bytes)) => {
                number += 1;
                warnings.push(warning(WarningKind::TooLong {
                    at: Position::Line(number),
                    bytes,
                }));
            }
            Ok(LineRead::Partial) => {
                warnings.push(warning(WarningKind::TornLine {
                    at: Position::Line(number + 1),
                    bytes: buf.len() as u64,
                }));
                return Ok(());
            }
            Ok(LineRead::End) => return Ok(()),
            Err(e) => {
                warnings.push(warning(WarningKind::ReadFailed {
                    after: Position::Line(number),
                    error: e.to_string(),
                }));
                return Ok(());
            }
        }
    }
}

fn open_failed(log: &LogFile, e: &io::Error) -> Warning {
    Warning {
        path: log.path.clone(),
        kind: if e.kind() == io::ErrorKind::NotFound {
            WarningKind::Vanished
        } else {
            WarningKind::ReadFailed {
                after: Position::Line(0),
                error: e.to_string(),
            }
        },
    }
}

/// The last `n` lines of a rotated file, oldest first, with where each starts.
fn last_lines_of(log: &LogFile, n: usize, warnings: &mut Vec<Warning>) -> Vec<(Position, Vec<u8>)> {
    let warning = |kind| Warning {
        path: log.path.clone(),
        kind,
    };
    if !log.compressed
        && let Ok(mut file) = File::open(&log.path)
    {
        let found = file.metadata().and_then(|meta| {
            let end = whole_lines_length(&mut file, meta.len())?;
            if end < meta.len() {
                warnings.push(warning(WarningKind::TornLine {
                    at: Position::Byte(end),
                    bytes: meta.len() - end,
                }));
            }
            last_lines(&file, end, n)
        });
        return match found {
            Ok((lines, skipped)) => {
                too_long(&log.path, skipped, warnings);
                lines
                    .into_iter()
                    .map(|(at, line)| (Position::Byte(at), line))
                    .collect()
            }
            Err(e) => {
                warnings.push(warning(WarningKind::ReadFailed {
                    after: Position::Line(0),
                    error: e.to_string(),
                }));
                Vec::new()
            }
        };
    }
    // Gzipped (or gzipped since it was listed): read through, keeping the last `n`.
    let mut reader = match log.open() {
        Ok(reader) => reader,
        Err(e) => {
            warnings.push(open_failed(log, &e));
            return Vec::new();
        }
    };
    let mut ring: VecDeque<(Position, Vec<u8>)> = VecDeque::with_capacity(n.min(4096));
    let mut number = 0;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match read_line(&mut *reader, &mut buf) {
            Ok(LineRead::Line) => {
                number += 1;
                if n > 0 {
                    if ring.len() == n {
                        ring.pop_front();
                    }
                    ring.push_back((Position::Line(number), buf.clone()));
                }
            }
            Ok(LineRead::TooLong(bytes)) => {
                number += 1;
                warnings.push(warning(WarningKind::TooLong {
                    at: Position::Line(number),
                    bytes,
                }));
            }
            Ok(LineRead::Partial) => {
                warnings.push(warning(WarningKind::TornLine {
                    at: Position::Line(number + 1),
                    bytes: buf.len() as u64,
                }));
                break;
            }
            Ok(LineRead::End) => break,
            Err(e) => {
                warnings.push(warning(WarningKind::ReadFailed {
                    after: Position::Line(number),
                    error: e.to_string(),
                }));
                break;
            }
        }
    }
    ring.into()
}

/// Lines assembled backwards by [`last_lines`].
#[derive(Default)]
struct Backwards {
    /// Lines found, newest first, with their offsets.
    found: Vec<(u64, Vec<u8>)>,
    /// Lines skipped as too long: offset and length.
    long: Vec<(u64, u64)>,
    /// The bytes of the line being assembled read so far, newest chunk first.
    carry: Vec<Vec<u8>>,
    carry_len: u64,
    /// The line being assembled is too long: its bytes are counted, not kept.
    skipping: bool,
}

impl Backwards {
    /// The line being assembled starts at `start` with `head` (followed by what was carried).
    fn line(&mut self, start: u64, head: &[u8]) {
        let len = head.len() as u64 + self.carry_len;
        if self.skipping || len > MAX_LINE as u64 {
            self.long.push((start, len));
        } else {
            let mut line = Vec::with_capacity(len as usize);
            line.extend_from_slice(head);
            for part in self.carry.iter().rev() {
                line.extend_from_slice(part);
            }
            self.found.push((start, line));
        }
        self.carry.clear();
        self.carry_len = 0;
        self.skipping = false;
    }

    /// `part` comes before what was carried, in a line that starts further back.
    fn carry(&mut self, part: &[u8]) {
        self.carry_len += part.len() as u64;
        if !self.skipping {
            self.carry.push(part.to_vec());
            if self.carry_len > MAX_LINE as u64 {
                self.carry.clear();
                self.skipping = true;
            }
        }
    }
}

/// The last `n` lines of `file` before `end` (0, or just after a newline), oldest first, each
/// with its offset; and the offsets and lengths of lines skipped as longer than [`MAX_LINE`].
/// Reads backwards a chunk at a time.
#[expect(
    clippy::type_complexity,
    reason = "two lists of plain tuples, used once"
)]
fn last_lines(
    file: &File,
    end: u64,
    n: usize,
) -> io::Result<(Vec<(u64, Vec<u8>)>, Vec<(u64, u64)>)> {
    const CHUNK: u64 = 64 * 1024;
    let mut back = Backwards::default();
    if n > 0 && end > 0 {
        // Skip the newline that ends the last line.
        let mut pos = end - 1;
        let mut chunk = Vec::new();
        let mut reader = file;
        'read: loop {
            if pos == 0 {
                back.line(0, &[]);
                break;
            }
            let start = pos.saturating_sub(CHUNK);
            chunk.resize((pos - start) as usize, 0);
            reader.seek(SeekFrom::Start(start))?;
            reader.read_exact(&mut chunk)?;
            let mut hi = chunk.len();
            while let Some(at) = chunk[..hi].iter().rposition(|&b| b == b'\n') {
                back.line(start + at as u64 + 1, &chunk[at + 1..hi]);
                hi = at;
                if back.found.len() == n {
                    break 'read;
                }
            }
            back.carry(&chunk[..hi]);
            pos = start;
        }
    }
    back.found.reverse();
    Ok((back.found, back.long))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(text: &str, end: u64, n: usize) -> Vec<(u64, String)> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, text).unwrap();
        let file = File::open(&path).unwrap();
        let (lines, long) = last_lines(&file, end, n).unwrap();
        assert!(long.is_empty());
        lines
            .into_iter()
            .map(|(at, l)| (at, String::from_utf8(l).unwrap()))
            .collect()
    }

    #[test]
    fn last_lines_are_read_backwards_across_chunks() {
        let text = "a\nbb\n\nccc\n";
        assert_eq!(
            lines_of(text, 10, 10),
            [
                (0, "a".into()),
                (2, "bb".into()),
                (5, String::new()),
                (6, "ccc".into())
            ]
        );
        assert_eq!(
            lines_of(text, 10, 2),
            [(5, String::new()), (6, "ccc".into())]
        );
        assert_eq!(lines_of(text, 5, 1), [(2, "bb".into())]);
        assert_eq!(lines_of(text, 0, 3), []);
        assert_eq!(lines_of(text, 10, 0), []);
        // Lines longer than a chunk, and many of them.
        let long: Vec<String> = (0..50)
            .map(|i| format!("{i}:{}", "x".repeat(9_000 + i)))
            .collect();
        let text = long.join("\n") + "\n";
        let got = lines_of(&text, text.len() as u64, 30);
        let expected: Vec<String> = long[20..].to_vec();
        assert_eq!(
            got.iter().map(|(_, l)| l.clone()).collect::<Vec<_>>(),
            expected
        );
        let at = got[0].0 as usize;
        assert!(text[at..].starts_with("20:"));
    }
}
