//! Compression and retention of rotated files, on a thread of their own so that the sink's
//! writes never wait for gzip.
//!
//! Each pass is idempotent and starts from what the directory holds, so a pass finishes what a
//! crash interrupted:
//! 1. a `.gz.tmp` left by an interrupted compression is removed (its plain file is still
//!    there); a plain rotated file whose `.gz` exists is removed (the `.gz` was completed and
//!    synced before it was renamed into place);
//! 2. with gzip on, every plain rotated file is compressed: into `.gz.tmp`, synced, renamed to
//!    `.gz`, the directory synced, and only then the plain file removed;
//! 3. rotated files are pruned: older than the age limit, beyond the count per stream, and,
//!    oldest first across streams, while the directory is over its total size cap. The audit
//!    stream is left out unless its pruning was turned on. Current files are never touched.

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use super::Stream;
use super::files::{Name, Stamp, Unsettled, gz_of};

/// What to keep.
#[derive(Clone, Debug)]
pub(crate) struct Retention {
    pub(crate) keep_files: usize,
    pub(crate) max_total_bytes: Option<u64>,
    pub(crate) max_age: Option<Duration>,
    pub(crate) prune_audit: bool,
    pub(crate) gzip: bool,
}

/// The maintenance thread of one sink.
pub(crate) struct Maintenance {
    wake: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
    /// The latest failure, cleared by a pass without one.
    problem: Arc<Mutex<Option<String>>>,
}

impl Maintenance {
    /// Starts the thread; it runs a first pass at once.
    pub(crate) fn start(
        dir: PathBuf,
        unsettled: Arc<Unsettled>,
        retention: Retention,
    ) -> io::Result<Maintenance> {
        let (wake, woken) = channel();
        let problem = Arc::new(Mutex::new(None));
        let shared = Arc::clone(&problem);
        let thread = std::thread::Builder::new()
            .name("instrument-jsonl-maintenance".into())
            .spawn(move || run(&dir, &unsettled, &retention, &woken, &shared))?;
        let _ = wake.send(());
        Ok(Maintenance {
            wake: Some(wake),
            thread: Some(thread),
            problem,
        })
    }

    /// Asks for a pass (after a rotation, and now and then for the age limit).
    pub(crate) fn wake(&self) {
        if let Some(wake) = &self.wake {
            let _ = wake.send(());
        }
    }

    /// The latest failure, if the last pass had one.
    pub(crate) fn problem(&self) -> Option<String> {
        self.problem
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Runs a last pass and waits for the thread to end.
    pub(crate) fn stop(&mut self) {
        drop(self.wake.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Maintenance {
    fn drop(&mut self) {
        self.stop();
    }
}

fn run(
    dir: &Path,
    unsettled: &Unsettled,
    retention: &Retention,
    woken: &Receiver<()>,
    problem: &Mutex<Option<String>>,
) {
    loop {
        // Gather wake-ups that arrived meanwhile into one pass.
        let closed = match woken.recv_timeout(Duration::from_secs(3600)) {
            Ok(()) | Err(RecvTimeoutError::Timeout) => {
                while woken.try_recv().is_ok() {}
                false
            }
            Err(RecvTimeoutError::Disconnected) => true,
        };
        let result = pass(dir, unsettled, retention, SystemTime::now());
        *problem.lock().unwrap_or_else(PoisonError::into_inner) = result.err();
        if closed {
            return;
        }
    }
}

struct Rotated {
    stream: Stream,
    stamp: Stamp,
    plain: Option<PathBuf>,
    gz: Option<PathBuf>,
    bytes: u64,
}

/// One pass over `dir`; the first failure, naming its file, after doing what it could.
pub(crate) fn pass(
    dir: &Path,
    unsettled: &Unsettled,
    retention: &Retention,
    now: SystemTime,
) -> Result<(), String> {
    let mut errors = Vec::new();
    let (mut rotated, current_bytes) = scan(dir, unsettled, retention, &mut errors)?;
    for file in &mut rotated {
        finish_compression(file, retention.gzip, &mut errors);
    }
    let remove = removals(&rotated, current_bytes, retention, now);
    for (file, _) in rotated.iter().zip(&remove).filter(|(_, gone)| **gone) {
        for path in file.plain.iter().chain(&file.gz) {
            match fs::remove_file(path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => errors.push(format!("cannot remove {}: {e}", path.display())),
            }
        }
    }
    errors.into_iter().next().map_or(Ok(()), Err)
}

/// The settled rotated files of `dir` in rotation order, and the bytes of the current files
/// that count towards the cap. Removes what interrupted compressions left.
fn scan(
    dir: &Path,
    unsettled: &Unsettled,
    retention: &Retention,
    errors: &mut Vec<String>,
) -> Result<(Vec<Rotated>, u64), String> {
    let mut rotated: HashMap<(Stream, Stamp), Rotated> = HashMap::new();
    let mut current_bytes = 0u64;
    let entries: Vec<fs::DirEntry> = fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .flatten()
        .collect();
    // Read after the listing: a file the listing shows was marked before it was renamed into
    // place, and stays marked until its batch is written or undone.
    let unsettled = unsettled
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    for entry in entries {
        let Some(name) = entry.file_name().to_str().and_then(Name::parse) else {
            continue;
        };
        let path = entry.path();
        let bytes = entry.metadata().map_or(0, |m| m.len());
        match name {
            Name::Current(stream) => {
                if retention.prune_audit || stream != Stream::Audit {
                    current_bytes += bytes;
                }
            }
            Name::Partial(_) => {
                if let Err(e) = fs::remove_file(&path) {
                    errors.push(format!("cannot remove {}: {e}", path.display()));
                }
            }
            Name::Rotated { .. } if unsettled.contains(&path) => {}
            Name::Rotated { stream, stamp, gz } => {
                let file = rotated
                    .entry((stream, stamp.clone()))
                    .or_insert_with(|| Rotated {
                        stream,
                        stamp,
                        plain: None,
                        gz: None,
                        bytes: 0,
                    });
                if gz {
                    file.gz = Some(path);
                } else {
                    file.plain = Some(path);
                }
                file.bytes += bytes;
            }
        }
    }
    let mut rotated: Vec<Rotated> = rotated.into_values().collect();
    rotated.sort_by(|a, b| a.stamp.cmp(&b.stamp));
    Ok((rotated, current_bytes))
}

/// Compresses a plain rotated file (with gzip on), or removes the plain file of a compression
/// that finished but for that.
fn finish_compression(file: &mut Rotated, gzip: bool, errors: &mut Vec<String>) {
    match (&file.plain, &file.gz) {
        (Some(plain), Some(_)) => match fs::remove_file(plain) {
            Ok(()) => file.plain = None,
            Err(e) => errors.push(format!("cannot remove {}: {e}", plain.display())),
        },
        (Some(plain), None) if gzip => match compress(plain) {
            Ok(gz) => {
                file.bytes = fs::metadata(&gz).map_or(0, |m| m.len());
                file.gz = Some(gz);
                file.plain = None;
            }
            Err(e) => errors.push(e),
        },
        _ => {}
    }
}

/// Which of `rotated` (in rotation order) to remove: past the age limit, beyond the count per
/// stream, then the oldest while over the total cap.
fn removals(
    rotated: &[Rotated],
    current_bytes: u64,
    retention: &Retention,
    now: SystemTime,
) -> Vec<bool> {
    let prunable = |file: &Rotated| retention.prune_audit || file.stream != Stream::Audit;
    let mut remove = vec![false; rotated.len()];
    if let Some(max_age) = retention.max_age {
        for (gone, file) in remove.iter_mut().zip(rotated) {
            let old = file
                .stamp
                .time()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > max_age);
            *gone |= old && prunable(file);
        }
    }
    for stream in Stream::ALL {
        let mut kept = 0;
        for (gone, file) in remove.iter_mut().zip(rotated).rev() {
            if file.stream != stream || *gone {
                continue;
            }
            kept += 1;
            *gone |= kept > retention.keep_files && prunable(file);
        }
    }
    if let Some(cap) = retention.max_total_bytes {
        let mut total: u64 = current_bytes
            + rotated
                .iter()
                .zip(&remove)
                .filter(|(f, gone)| !**gone && prunable(f))
                .map(|(f, _)| f.bytes)
                .sum::<u64>();
        for (gone, file) in remove.iter_mut().zip(rotated) {
            if total <= cap {
                break;
            }
            if !*gone && prunable(file) {
                *gone = true;
                total -= file.bytes;
            }
        }
    }
    remove
}

/// Compresses `plain` into `plain.gz` without a moment where neither holds every line, then
/// removes `plain`. Returns the `.gz`.
fn compress(plain: &Path) -> Result<PathBuf, String> {
    let gz = gz_of(plain);
    let mut tmp = gz.clone().into_os_string();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let result = (|| -> io::Result<()> {
        let mut input = BufReader::new(File::open(plain)?);
        let output = File::create(&tmp)?;
        let mut encoder = flate2::write::GzEncoder::new(
            BufWriter::with_capacity(256 * 1024, output),
            flate2::Compression::default(),
        );
        io::copy(&mut input, &mut encoder)?;
        let mut output = encoder.finish()?;
        output.flush()?;
        let output = output
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        output.sync_all()?;
        fs::rename(&tmp, &gz)?;
        sync_dir(plain.parent().unwrap_or(Path::new(".")))
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(format!("cannot compress {}: {e}", plain.display()));
    }
    fs::remove_file(plain).map_err(|e| format!("cannot remove {}: {e}", plain.display()))?;
    Ok(gz)
}

/// Makes a rename in `dir` durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}
