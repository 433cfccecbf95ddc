//! The files of a log directory: names, listing in order, reading (gzipped too), and the
//! append-only writer of one stream's current file.
//!
//! # Names
//! - `STREAM.jsonl`: the current file of a stream, the only one written to.
//! - `STREAM.YYYYMMDDTHHMMSSZ.jsonl`: a rotated file, named after the UTC second it was rotated
//!   in; `STREAM.YYYYMMDDTHHMMSSZ-N.jsonl` (`N` = 1, 2, ...) for further rotations within the
//!   same second. Names never go backwards: after the clock was set back, the newest name's
//!   second is reused with a higher `N`. So name order (second, then `N`) is rotation order.
//! - `... .jsonl.gz`: a rotated file compressed with gzip. While it is being compressed, the
//!   compressed data goes to `... .jsonl.gz.tmp`; the plain file is removed only after the
//!   `.gz` is complete and synced, so for a moment both exist: readers take the plain one.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Stream;

/// A rotated file's place in its stream's order: the rotation's UTC second, as
/// `YYYYMMDDTHHMMSSZ`, and its number within that second.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Stamp {
    pub(crate) second: String,
    pub(crate) n: u32,
}

impl Stamp {
    /// The stamp of a rotation at `now`, after the stream's newest rotation `last`.
    pub(crate) fn next(now: SystemTime, last: Option<&Stamp>) -> Stamp {
        let second = compact_second(now);
        match last {
            Some(last) if last.second >= second => Stamp {
                second: last.second.clone(),
                n: last.n + 1,
            },
            _ => Stamp { second, n: 0 },
        }
    }

    /// The rotated file name of `stream` with this stamp, without `.gz`.
    pub(crate) fn file_name(&self, stream: Stream) -> String {
        if self.n == 0 {
            format!("{}.{}.jsonl", stream.as_str(), self.second)
        } else {
            format!("{}.{}-{}.jsonl", stream.as_str(), self.second, self.n)
        }
    }

    /// The time of the rotation's second.
    pub(crate) fn time(&self) -> Option<SystemTime> {
        let s = self.second.as_bytes();
        let num = |range: std::ops::Range<usize>| -> Option<i64> {
            std::str::from_utf8(s.get(range)?).ok()?.parse().ok()
        };
        let text = format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            num(0..4)?,
            num(4..6)?,
            num(6..8)?,
            num(9..11)?,
            num(11..13)?,
            num(13..15)?
        );
        humantime::parse_rfc3339(&text).ok()
    }
}

/// `time` as `YYYYMMDDTHHMMSSZ` (UTC; clamped to 1970 ..= 9999).
fn compact_second(time: SystemTime) -> String {
    let secs = time
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
        .min(253_402_300_799);
    let text =
        humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(secs)).to_string();
    text.chars()
        .filter(|c| c.is_ascii_digit() || *c == 'T' || *c == 'Z')
        .collect()
}

/// What a file name in a log directory is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Name {
    /// `STREAM.jsonl`.
    Current(Stream),
    /// `STREAM.STAMP.jsonl`, or with `.gz` when `gz`.
    Rotated {
        stream: Stream,
        stamp: Stamp,
        gz: bool,
    },
    /// `STREAM.STAMP.jsonl.gz.tmp`, a compression in progress or interrupted.
    Partial(Stream),
}

impl Name {
    /// Parses a file name; `None` for files that are not the sink's.
    pub(crate) fn parse(name: &str) -> Option<Name> {
        let (stream, rest) = name.split_once('.')?;
        let stream = Stream::ALL.into_iter().find(|s| s.as_str() == stream)?;
        if rest == "jsonl" {
            return Some(Name::Current(stream));
        }
        let (stamp, ext) = rest.split_once('.')?;
        let gz = match ext {
            "jsonl" => false,
            "jsonl.gz" => true,
            "jsonl.gz.tmp" => return parse_stamp(stamp).map(|_| Name::Partial(stream)),
            _ => return None,
        };
        Some(Name::Rotated {
            stream,
            stamp: parse_stamp(stamp)?,
            gz,
        })
    }
}

fn parse_stamp(text: &str) -> Option<Stamp> {
    let (second, n) = match text.split_once('-') {
        Some((second, n)) => (second, n.parse().ok().filter(|&n| n > 0)?),
        None => (text, 0),
    };
    let b = second.as_bytes();
    let shape = b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit);
    shape.then(|| Stamp {
        second: second.to_owned(),
        n,
    })
}

/// A file of a stream's log, as [`log_files`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LogFile {
    /// The file.
    pub path: PathBuf,
    /// Whether it is gzip-compressed (its name ends in `.gz`).
    pub compressed: bool,
    /// Whether it is the stream's current file, the one being written (always listed last).
    pub current: bool,
}

impl LogFile {
    /// Opens the file for reading lines, decompressing a `.gz` file. A rotated file compressed
    /// and removed since it was listed is opened as its `.gz`.
    ///
    /// # Errors
    /// The file (and its `.gz`) cannot be opened.
    pub fn open(&self) -> io::Result<Box<dyn BufRead + Send>> {
        let plain = |path: &Path| -> io::Result<Box<dyn BufRead + Send>> {
            Ok(Box::new(BufReader::with_capacity(
                256 * 1024,
                File::open(path)?,
            )))
        };
        let gz = |path: &Path| -> io::Result<Box<dyn BufRead + Send>> {
            Ok(Box::new(BufReader::with_capacity(
                256 * 1024,
                flate2::read::MultiGzDecoder::new(BufReader::new(File::open(path)?)),
            )))
        };
        if self.compressed {
            return gz(&self.path);
        }
        match plain(&self.path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && !self.current => {
                let mut with_gz = self.path.clone().into_os_string();
                with_gz.push(".gz");
                gz(Path::new(&with_gz)).map_err(|_| e)
            }
            other => other,
        }
    }
}

/// The files of `stream` in the log directory `dir`, oldest first: rotated files in rotation
/// order (the plain file where both it and its `.gz` exist), then the current file if it exists.
/// Reading them in this order reads the stream's lines in the order they were written.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use instrument_sinks::jsonl::{JsonlSink, Stream, log_files};
///
/// let sink = JsonlSink::builder().dir(dir.path()).build()?;
/// let pipeline = instrument::builder().sink(sink).install()?;
/// instrument::audit(instrument::AuditEntry::new("load").input("a.rs"))?;
/// pipeline.flush()?;
///
/// let files = log_files(dir.path(), Stream::Audit)?;
/// let mut text = String::new();
/// for file in &files {
///     std::io::Read::read_to_string(&mut file.open()?, &mut text)?;
/// }
/// assert!(text.contains(r#""inputs":["a.rs"]"#));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// The directory cannot be read.
pub fn log_files(dir: impl AsRef<Path>, stream: Stream) -> io::Result<Vec<LogFile>> {
    let dir = dir.as_ref();
    let mut rotated: Vec<(Stamp, bool, PathBuf)> = Vec::new();
    let mut current = None;
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().and_then(Name::parse) else {
            continue;
        };
        match name {
            Name::Current(s) if s == stream => current = Some(entry.path()),
            Name::Rotated {
                stream: s,
                stamp,
                gz,
            } if s == stream => {
                rotated.push((stamp, gz, entry.path()));
            }
            _ => {}
        }
    }
    // Plain before gz for the same stamp, then drop the gz twin.
    rotated.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    rotated.dedup_by(|later, earlier| later.0 == earlier.0);
    let mut files: Vec<LogFile> = rotated
        .into_iter()
        .map(|(_, gz, path)| LogFile {
            path,
            compressed: gz,
            current: false,
        })
        .collect();
    if let Some(path) = current {
        files.push(LogFile {
            path,
            compressed: false,
            current: true,
        });
    }
    Ok(files)
}

/// A failed file operation, with the file it concerned.
#[derive(Debug)]
pub(crate) struct FileError {
    pub(crate) message: String,
    pub(crate) source: io::Error,
}

impl FileError {
    pub(crate) fn new(action: &str, path: &Path, source: io::Error) -> Self {
        FileError {
            message: format!("cannot {action} {}: {source}", path.display()),
            source,
        }
    }
}

/// The identity of an open file, to notice when its path names another file (the directory
/// was deleted and made again, or the file was moved away by hand).
#[cfg(unix)]
pub(crate) fn identity(meta: &fs::Metadata) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt as _;
    (meta.dev(), meta.ino())
}

/// Elsewhere, only a file that is missing is noticed.
#[cfg(not(unix))]
pub(crate) fn identity(_: &fs::Metadata) -> (u64, u64) {
    (0, 0)
}

/// The day number (days since the epoch in UTC or local time) a time falls on.
pub(crate) type DayOf = dyn Fn(SystemTime) -> i64 + Send;

/// One stream's current file: an append-only writer of whole lines.
pub(crate) struct StreamFile {
    pub(crate) stream: Stream,
    pub(crate) path: PathBuf,
    file: Option<File>,
    id: (u64, u64),
    /// Bytes of whole lines in `file`: its length, unless a write failed and could not be
    /// undone (then `file` is `None` and the next open cuts the file back).
    pub(crate) size: u64,
    /// The day the file's first line was written on, for daily rotation.
    pub(crate) day: Option<i64>,
    /// The newest rotation's stamp.
    pub(crate) last: Option<Stamp>,
    /// Written since the last `sync_data`.
    pub(crate) unsynced: bool,
    /// Lines of the batch being written.
    pub(crate) buf: Vec<u8>,
}

impl StreamFile {
    /// The stream's writer in `dir`; the file is opened by the first [`StreamFile::open`].
    pub(crate) fn new(dir: &Path, stream: Stream, last: Option<Stamp>) -> Self {
        StreamFile {
            stream,
            path: dir.join(format!("{}.jsonl", stream.as_str())),
            file: None,
            id: (0, 0),
            size: 0,
            day: None,
            last,
            unsynced: false,
            buf: Vec::new(),
        }
    }

    /// Opens the file if it is not open, or reopens it when its path no longer names the open
    /// file. A file found with a torn last line (a crash mid-write) is cut back to its last
    /// whole line.
    pub(crate) fn open(&mut self, day_of: &DayOf) -> Result<(), FileError> {
        if self.file.is_some() {
            match fs::metadata(&self.path) {
                Ok(meta) if identity(&meta) == self.id => return Ok(()),
                _ => self.file = None,
            }
        }
        if let Some(dir) = self.path.parent() {
            fs::create_dir_all(dir)
                .map_err(|e| FileError::new("create the log directory", dir, e))?;
        }
        let mut file = OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .open(&self.path)
            .map_err(|e| FileError::new("open", &self.path, e))?;
        let meta = file
            .metadata()
            .map_err(|e| FileError::new("read", &self.path, e))?;
        let whole = whole_lines_length(&mut file, meta.len())
            .map_err(|e| FileError::new("read", &self.path, e))?;
        if whole < meta.len() {
            file.set_len(whole)
                .map_err(|e| FileError::new("cut the torn last line of", &self.path, e))?;
        }
        self.id = identity(&meta);
        self.size = whole;
        self.day =
            (whole > 0).then(|| day_of(meta.modified().unwrap_or_else(|_| SystemTime::now())));
        self.file = Some(file);
        Ok(())
    }

    /// Appends `bytes`. On failure, cuts the file back to what it held before, so that no
    /// partial line stays; if even that fails, the file is closed and cut back to its last whole
    /// line when it is next opened.
    fn append(&mut self, bytes: &[u8]) -> Result<(), FileError> {
        let before = self.size;
        let Some(file) = &mut self.file else {
            return Err(FileError::new(
                "write",
                &self.path,
                io::Error::other("the file is not open"),
            ));
        };
        match file.write_all(bytes) {
            Ok(()) => {
                self.size += bytes.len() as u64;
                self.unsynced = true;
                Ok(())
            }
            Err(e) => {
                let error = FileError::new("write", &self.path, e);
                self.truncate(before);
                Err(error)
            }
        }
    }

    /// Writes `self.buf` (whole lines) into the current file, rotating first when the day
    /// changed, and between lines whenever the next ones would take the file past `max` bytes
    /// (a file takes at least one line). Records where the bytes went in `segments`, for
    /// [`StreamFile::undo`]. Returns whether it rotated.
    pub(crate) fn write_buf(
        &mut self,
        rotation: &Rotation<'_>,
        segments: &mut Vec<Segment>,
    ) -> Result<bool, FileError> {
        let buf = std::mem::take(&mut self.buf);
        let result = self.write_lines(&buf, rotation, segments);
        self.buf = buf;
        result
    }

    fn write_lines(
        &mut self,
        buf: &[u8],
        rotation: &Rotation<'_>,
        segments: &mut Vec<Segment>,
    ) -> Result<bool, FileError> {
        let mut rotated = false;
        self.open(rotation.day_of)?;
        let today = (rotation.day_of)(rotation.now);
        if rotation.daily && self.size > 0 && self.day.is_some_and(|day| day != today) {
            self.rotate_within(rotation, segments)?;
            rotated = true;
        }
        let mut rest = buf;
        while !rest.is_empty() {
            let room =
                usize::try_from(rotation.max.saturating_sub(self.size)).unwrap_or(usize::MAX);
            let take = if rest.len() <= room {
                rest.len()
            } else {
                match rest[..room].iter().rposition(|&b| b == b'\n') {
                    Some(end) => end + 1,
                    // Not one line fits: a file that has lines is rotated, an empty one takes
                    // the line anyway.
                    None if self.size > 0 => 0,
                    None => rest
                        .iter()
                        .position(|&b| b == b'\n')
                        .map_or(rest.len(), |end| end + 1),
                }
            };
            if take > 0 {
                if self.day.is_none() {
                    self.day = Some(today);
                }
                segments.push(Segment {
                    rotated_to: None,
                    before: self.size,
                });
                self.append(&rest[..take])?;
                rest = &rest[take..];
            }
            if !rest.is_empty() {
                self.rotate_within(rotation, segments)?;
                rotated = true;
            }
        }
        if rotation.sync {
            self.sync()?;
        }
        Ok(rotated)
    }

    /// Rotates while a batch is being written: the rotated file is unsettled (left alone by
    /// the maintenance thread) until the batch is written or undone.
    fn rotate_within(
        &mut self,
        rotation: &Rotation<'_>,
        segments: &mut [Segment],
    ) -> Result<(), FileError> {
        let target = self.rotate(rotation.now, rotation.day_of, rotation.unsettled)?;
        if let Some(last) = segments.last_mut().filter(|s| s.rotated_to.is_none()) {
            last.rotated_to = Some(target);
        }
        self.open(rotation.day_of)
    }

    /// Undoes what `segments` wrote, newest first: the current file is cut back, files rotated
    /// during the batch are cut back to what they held before it, and removed if that is
    /// nothing.
    pub(crate) fn undo(&mut self, segments: Vec<Segment>) {
        for segment in segments.into_iter().rev() {
            match segment.rotated_to {
                None => self.truncate(segment.before),
                Some(path) => {
                    if segment.before == 0 {
                        let _ = fs::remove_file(&path);
                    } else if let Ok(file) = OpenOptions::new().write(true).open(&path) {
                        let _ = file.set_len(segment.before);
                    }
                }
            }
        }
    }

    /// Cuts the file back to `len` bytes (undoing appends of a failed batch).
    pub(crate) fn truncate(&mut self, len: u64) {
        let cut = self.file.as_ref().map(|f| f.set_len(len));
        match cut {
            Some(Ok(())) => self.size = len,
            _ => {
                // Reopened later, which cuts a torn line; whole lines of the failed batch may
                // stay (see docs/logs.md, limits).
                self.file = None;
            }
        }
    }

    /// Makes what was appended durable.
    pub(crate) fn sync(&mut self) -> Result<(), FileError> {
        if !self.unsynced {
            return Ok(());
        }
        if let Some(file) = &self.file {
            file.sync_data()
                .map_err(|e| FileError::new("sync", &self.path, e))?;
        }
        self.unsynced = false;
        Ok(())
    }

    /// Renames the current file to its rotated name (first marking that name unsettled) and
    /// opens a new, empty current file. Returns the rotated file.
    pub(crate) fn rotate(
        &mut self,
        now: SystemTime,
        day_of: &DayOf,
        unsettled: &Unsettled,
    ) -> Result<PathBuf, FileError> {
        self.sync()?;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let mut stamp = Stamp::next(now, self.last.as_ref());
        let mut target = dir.join(stamp.file_name(self.stream));
        // A name taken by a file the sink did not write (copied in by hand) is skipped.
        while target.exists() || gz_of(&target).exists() {
            stamp.n += 1;
            target = dir.join(stamp.file_name(self.stream));
        }
        unsettled
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(target.clone());
        fs::rename(&self.path, &target).map_err(|e| FileError::new("rotate", &self.path, e))?;
        self.last = Some(stamp);
        self.file = None;
        self.size = 0;
        self.day = None;
        // A failure to open the new file is reported by the next write, which retries it.
        let _ = self.open(day_of);
        Ok(target)
    }
}

/// Rotated files that a batch being written may still cut back or remove, which the
/// maintenance thread must not compress or prune yet.
pub(crate) type Unsettled = Mutex<HashSet<PathBuf>>;

/// How a batch is written: the rotation settings and the time.
pub(crate) struct Rotation<'a> {
    pub(crate) max: u64,
    pub(crate) daily: bool,
    pub(crate) sync: bool,
    pub(crate) now: SystemTime,
    pub(crate) day_of: &'a DayOf,
    pub(crate) unsettled: &'a Unsettled,
}

/// Bytes of the batch being written: appended to the current file at length `before`, which
/// has since been rotated to `rotated_to` if that is set.
pub(crate) struct Segment {
    rotated_to: Option<PathBuf>,
    before: u64,
}

/// `path` with `.gz` appended.
pub(crate) fn gz_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".gz");
    PathBuf::from(name)
}

/// The length of `file` (of `len` bytes) up to and including its last newline.
pub(crate) fn whole_lines_length(file: &mut File, len: u64) -> io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let mut end = len;
    let mut chunk = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        chunk.resize((end - start) as usize, 0);
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut chunk)?;
        if let Some(at) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + at as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// The last whole line of the file at `path` (plain or gzip), if any.
pub(crate) fn last_line(file: &LogFile) -> io::Result<Option<Vec<u8>>> {
    if file.compressed {
        let mut last = None;
        let mut reader = file.open()?;
        let mut line = Vec::new();
        loop {
            line.clear();
            if reader.read_until(b'\n', &mut line)? == 0 {
                break;
            }
            if line.last() == Some(&b'\n') {
                last = Some(std::mem::take(&mut line));
            }
        }
        return Ok(last.map(|mut l| {
            l.pop();
            l
        }));
    }
    let mut f = File::open(&file.path)?;
    let len = f.metadata()?.len();
    let whole = whole_lines_length(&mut f, len)?;
    if whole == 0 {
        return Ok(None);
    }
    // Find the newline before the last one.
    let end = whole - 1;
    let start = whole_lines_length(&mut f, end)?;
    let mut line = vec![0; (end - start) as usize];
    f.seek(SeekFrom::Start(start))?;
    f.read_exact(&mut line)?;
    Ok(Some(line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_and_order() {
        assert_eq!(Name::parse("main.jsonl"), Some(Name::Current(Stream::Main)));
        assert_eq!(
            Name::parse("audit.20260125T101653Z-2.jsonl.gz"),
            Some(Name::Rotated {
                stream: Stream::Audit,
                stamp: Stamp {
                    second: "20260125T101653Z".into(),
                    n: 2
                },
                gz: true
            })
        );
        assert_eq!(
            Name::parse("error.20260125T101653Z.jsonl.gz.tmp"),
            Some(Name::Partial(Stream::Error))
        );
        for other in [
            "main.jsonl.bak",
            "other.jsonl",
            "main.2026.jsonl",
            "main.20260125T101653Z-0.jsonl",
            "main.20260125T101653Z-x.jsonl",
            ".lock",
        ] {
            assert_eq!(Name::parse(other), None, "{other}");
        }
        let a = Stamp {
            second: "20260125T101653Z".into(),
            n: 9,
        };
        let b = Stamp {
            second: "20260125T101653Z".into(),
            n: 10,
        };
        assert!(a < b);
    }

    #[test]
    fn stamps_never_go_backwards() {
        let t = UNIX_EPOCH + Duration::from_secs(1_769_336_213);
        let first = Stamp::next(t, None);
        assert_eq!(first.second, "20260125T101653Z");
        assert_eq!(first.file_name(Stream::Main), "main.20260125T101653Z.jsonl");
        let same = Stamp::next(t, Some(&first));
        assert_eq!((same.second.as_str(), same.n), ("20260125T101653Z", 1));
        assert_eq!(
            same.file_name(Stream::Main),
            "main.20260125T101653Z-1.jsonl"
        );
        let earlier = Stamp::next(t - Duration::from_secs(3600), Some(&same));
        assert_eq!(
            (earlier.second.as_str(), earlier.n),
            ("20260125T101653Z", 2)
        );
        let later = Stamp::next(t + Duration::from_secs(1), Some(&earlier));
        assert_eq!((later.second.as_str(), later.n), ("20260125T101654Z", 0));
        assert_eq!(first.time(), Some(t));
    }

    #[test]
    fn torn_tails_are_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        for (content, whole) in [
            (&b""[..], 0),
            (b"{}\n", 3),
            (b"{}\n{\"a", 3),
            (b"{\"a", 0),
            (b"{}\n{}\n", 6),
        ] {
            fs::write(&path, content).unwrap();
            let mut f = File::open(&path).unwrap();
            assert_eq!(
                whole_lines_length(&mut f, content.len() as u64).unwrap(),
                whole
            );
        }
    }
}
