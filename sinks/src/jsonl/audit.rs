//! The audit stream's hash chain; its canonical form is documented on [`verify_audit_chain`].

use std::fmt::Write as _;
use std::io::{self, BufRead as _};
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::Stream;
use super::files::{self, LogFile};
use super::line::{self, Line};

/// The `prev_hash` of the first audit line written into an empty directory.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// What ends every audit line before its hash value.
const HASH_KEY: &[u8] = b",\"hash\":\"";

fn hex(digest: &[u8]) -> String {
    let mut out = String::with_capacity(64);
    for byte in digest {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

/// Appends `line` (whose last field is `prev_hash`) with its `hash` and a newline; returns the
/// hash. On a serialization error, `buf` is left as it was.
pub(crate) fn push<F: Serialize>(
    buf: &mut Vec<u8>,
    line: &Line<'_, F>,
) -> Result<String, super::json::Error> {
    let start = buf.len();
    if let Err(error) = line::serialize_into(buf, line) {
        buf.truncate(start);
        return Err(error);
    }
    // Replace the closing brace: the hash covers everything before `,"hash":"`.
    buf.pop();
    let hash = hex(&Sha256::digest(&buf[start..]));
    buf.extend_from_slice(HASH_KEY);
    buf.extend_from_slice(hash.as_bytes());
    buf.extend_from_slice(b"\"}\n");
    Ok(hash)
}

/// The stored hash of an audit line, and its content's hash as computed; `None` when the line
/// does not end with a `hash` field.
fn hashes(line: &[u8]) -> Option<(&str, String)> {
    let at = line.windows(HASH_KEY.len()).rposition(|w| w == HASH_KEY)?;
    let rest = &line[at + HASH_KEY.len()..];
    let stored = rest.strip_suffix(b"\"}")?;
    let stored = std::str::from_utf8(stored).ok()?;
    if stored.len() != 64
        || !stored
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return None;
    }
    Some((stored, hex(&Sha256::digest(&line[..at]))))
}

/// The hash the next audit line in `dir` chains to: the `hash` of the stream's last line, in
/// its current file or, when that is empty, in its newest rotated file; [`GENESIS`] when there
/// is none. `Err` names the file whose last line has no readable hash.
pub(crate) fn head(dir: &Path) -> Result<String, String> {
    let files = match files::log_files(dir, Stream::Audit) {
        Ok(files) => files,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(GENESIS.to_owned()),
        Err(e) => return Err(format!("cannot list {}: {e}", dir.display())),
    };
    for file in files.iter().rev() {
        let last = files::last_line(file)
            .map_err(|e| format!("cannot read {}: {e}", file.path.display()))?;
        if let Some(last) = last {
            return match hashes(&last) {
                Some((stored, _)) => Ok(stored.to_owned()),
                None => Err(format!(
                    "the last line of {} has no audit hash",
                    file.path.display()
                )),
            };
        }
    }
    Ok(GENESIS.to_owned())
}

/// Why [`verify_audit_chain`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditChainError {
    /// A file of the audit stream could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A line was changed, or lines were removed, inserted or reordered before it.
    #[error("audit chain broken at {}:{line}: {reason}", path.display())]
    Broken {
        /// The file.
        path: PathBuf,
        /// The line number in that file, from 1.
        line: u64,
        /// What does not match.
        reason: String,
    },
}

/// What [`verify_audit_chain`] checked.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct AuditChain {
    /// Audit lines verified.
    pub entries: u64,
    /// Files read.
    pub files: usize,
    /// The `prev_hash` of the first line: [`GENESIS`] when the chain is complete from its
    /// start, otherwise the hash of a line in a file pruned since (the chain is verified from
    /// there on).
    pub anchor: String,
    /// The `hash` of the last line ([`GENESIS`] when there are none): kept elsewhere, it lets a
    /// later check prove that nothing was cut from the end.
    pub last_hash: String,
}

/// Checks the hash chain of the audit stream in the log directory `dir`, across its rotated
/// (also gzipped) files and its current file, in order.
///
/// # The chain
/// Every line of the audit stream ends with two fields, `prev_hash` and `hash`, in that order:
///
/// ```text
/// {"ts":"...", ..., "prev_hash":"<64 hex>","hash":"<64 hex>"}
/// ```
///
/// `hash` is the SHA-256, as 64 lower-case hex digits, of the line's bytes exactly as written
/// (UTF-8, `serde_json`'s compact form) from its first byte `{` up to, not including, the
/// `,"hash":"` that precedes the hash. That content includes every other field, `prev_hash`
/// among them, which is the `hash` of the stream's previous line, across rotations and across
/// restarts of the process (the sink reads the last line back when it opens the directory), and
/// [`GENESIS`] (64 `0`s) for the first line ever written into the directory.
///
/// So changing any byte of a line, deleting, inserting or reordering lines makes the check fail
/// at the first line affected. Pruned files are not an error: the first remaining line's
/// `prev_hash` is reported as [`AuditChain::anchor`]. Removing lines from the end is found only
/// against a `last_hash` kept elsewhere. A last line without its newline in the current file
/// is a write in progress (or cut off by a crash, and cut back when the sink next opens the
/// directory) and is not checked.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// use instrument_sinks::jsonl::{JsonlSink, verify_audit_chain, GENESIS};
///
/// let pipeline = instrument::builder()
///     .sink(JsonlSink::builder().dir(dir.path()).build()?)
///     .install()?;
/// instrument::audit(instrument::AuditEntry::new("load").input("a.rs"))?;
/// instrument::audit(instrument::AuditEntry::new("save").output("a.json"))?;
/// pipeline.flush()?;
///
/// let chain = verify_audit_chain(dir.path())?;
/// assert_eq!((chain.entries, chain.anchor.as_str()), (2, GENESIS));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`AuditChainError::Broken`] naming the file and line where the chain breaks;
/// [`AuditChainError::Read`] when a file cannot be read.
pub fn verify_audit_chain(dir: impl AsRef<Path>) -> Result<AuditChain, AuditChainError> {
    let dir = dir.as_ref();
    let files = files::log_files(dir, Stream::Audit).map_err(|source| AuditChainError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let mut chain = AuditChain {
        entries: 0,
        files: files.len(),
        anchor: GENESIS.to_owned(),
        last_hash: GENESIS.to_owned(),
    };
    let mut expected: Option<String> = None;
    for file in &files {
        verify_file(file, &mut chain, &mut expected)?;
    }
    Ok(chain)
}

fn verify_file(
    file: &LogFile,
    chain: &mut AuditChain,
    expected: &mut Option<String>,
) -> Result<(), AuditChainError> {
    let read_error = |source| AuditChainError::Read {
        path: file.path.clone(),
        source,
    };
    let mut reader = file.open().map_err(read_error)?;
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).map_err(read_error)? == 0 {
            return Ok(());
        }
        number += 1;
        if line.pop() != Some(b'\n') {
            if file.current {
                return Ok(());
            }
            return Err(broken(file, number, "the last line has no newline".into()));
        }
        let Some((stored, computed)) = hashes(&line) else {
            return Err(broken(
                file,
                number,
                "the line does not end with a `hash` field".into(),
            ));
        };
        if stored != computed {
            return Err(broken(
                file,
                number,
                format!("the content hashes to {computed}, the line says {stored}"),
            ));
        }
        let value: serde_json::Value = serde_json::from_slice(&line)
            .map_err(|e| broken(file, number, format!("not JSON: {e}")))?;
        let Some(prev) = value.get("prev_hash").and_then(serde_json::Value::as_str) else {
            return Err(broken(file, number, "no `prev_hash`".into()));
        };
        match expected {
            Some(expected) if prev != expected => {
                return Err(broken(
                    file,
                    number,
                    format!("`prev_hash` is {prev}, the previous line's hash is {expected}"),
                ));
            }
            Some(_) => {}
            None => prev.clone_into(&mut chain.anchor),
        }
        *expected = Some(stored.to_owned());
        stored.clone_into(&mut chain.last_hash);
        chain.entries += 1;
    }
}

fn broken(file: &LogFile, line: u64, reason: String) -> AuditChainError {
    AuditChainError::Broken {
        path: file.path.clone(),
        line,
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonl::line::{AuditPart, TsCache};
    use instrument::Level;

    fn audit_line(buf: &mut Vec<u8>, prev: &str, operation: &str) -> String {
        let inputs = ["a.rs".to_owned()];
        let mut line = Line::new(
            TsCache::default().format(std::time::UNIX_EPOCH),
            Level::Info,
            Stream::Audit,
            "audit",
            operation,
        );
        line.audit = Some(AuditPart {
            sequence: 1,
            inputs: &inputs,
            outputs: &[],
            actor: None,
            prev_hash: prev,
        });
        push(buf, &line).unwrap()
    }

    #[test]
    fn the_hash_covers_the_line_before_it() {
        let mut buf = Vec::new();
        let hash = audit_line(&mut buf, GENESIS, "lo\"ad\n");
        let text = std::str::from_utf8(&buf).unwrap();
        assert!(
            text.ends_with(&format!(",\"hash\":\"{hash}\"}}\n")),
            "{text}"
        );
        let content = &text[..text.find(",\"hash\":").unwrap()];
        assert_eq!(hex(&Sha256::digest(content.as_bytes())), hash);
        assert!(content.ends_with(&format!("\"prev_hash\":\"{GENESIS}\"")));
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(value["hash"], hash.as_str());
        assert_eq!(value["name"], "lo\"ad\n");
        let line = &buf[..buf.len() - 1];
        let (stored, computed) = hashes(line).unwrap();
        assert_eq!((stored, computed.as_str()), (hash.as_str(), hash.as_str()));
        let mut changed = line.to_vec();
        let at = changed.iter().position(|&b| b == b'l').unwrap();
        changed[at] = b'L';
        let (stored, computed) = hashes(&changed).unwrap();
        assert_ne!(stored, computed);
    }

    #[test]
    fn a_directory_without_audit_lines_starts_at_genesis() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(head(dir.path()).unwrap(), GENESIS);
        assert_eq!(head(&dir.path().join("missing")).unwrap(), GENESIS);
        std::fs::write(dir.path().join("audit.jsonl"), "{\"not\":\"audit\"}\n").unwrap();
        let err = head(dir.path()).unwrap_err();
        assert!(err.contains("audit.jsonl"), "{err}");
    }
}
