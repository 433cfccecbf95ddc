//! The audit hash chain; its canonical form is documented on [`verify_audit_chain`].

use std::io::Write as _;
use std::path::Path;

use rusqlite::{Connection, OpenFlags, OptionalExtension, Row};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::error::{ChainError, SqliteError};

/// The `prev_hash` of the first row.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An audit row's hashed values, as stored: `inputs`, `outputs` and `fields` are their
/// columns' compact JSON text (as `serde_json` writes it).
pub(crate) struct AuditContent<'a> {
    pub(crate) run_id: i64,
    pub(crate) sequence: i64,
    pub(crate) operation: &'a str,
    pub(crate) timestamp_us: i64,
    pub(crate) inputs: &'a str,
    pub(crate) outputs: &'a str,
    pub(crate) actor: Option<&'a str>,
    pub(crate) correlation: Option<&'a str>,
    pub(crate) outcome: Option<&'a str>,
    pub(crate) error_kind: Option<&'a str>,
    pub(crate) duration_ns: Option<i64>,
    pub(crate) fields: &'a str,
    pub(crate) callsite: Option<&'a str>,
}

impl AuditContent<'_> {
    /// Appends the canonical content described in the module docs to `out`: the compact JSON
    /// array `serde_json` writes for these values, written piece by piece rather than through
    /// a `serde_json::Value` (the sink hashes one per audit row).
    fn canonical(&self, out: &mut Vec<u8>) {
        fn text(out: &mut Vec<u8>, value: Option<&str>) {
            match value {
                // Writing into a `Vec` cannot fail.
                Some(value) => serde_json::to_writer(&mut *out, value).unwrap_or(()),
                None => out.extend_from_slice(b"null"),
            }
        }
        fn number(out: &mut Vec<u8>, value: Option<i64>) {
            match value {
                Some(value) => {
                    let _ = write!(out, "{value}");
                }
                None => out.extend_from_slice(b"null"),
            }
        }
        out.push(b'[');
        number(out, Some(self.run_id));
        out.push(b',');
        number(out, Some(self.sequence));
        out.push(b',');
        text(out, Some(self.operation));
        out.push(b',');
        number(out, Some(self.timestamp_us));
        for json in [self.inputs, self.outputs] {
            out.push(b',');
            out.extend_from_slice(json.as_bytes());
        }
        for value in [self.actor, self.correlation, self.outcome, self.error_kind] {
            out.push(b',');
            text(out, value);
        }
        out.push(b',');
        number(out, self.duration_ns);
        out.push(b',');
        out.extend_from_slice(self.fields.as_bytes());
        out.push(b',');
        text(out, self.callsite);
        out.push(b']');
    }

    /// This row's hash, chained to `prev_hash`. `scratch` is reused between rows.
    pub(crate) fn hash(&self, prev_hash: &str, scratch: &mut Vec<u8>) -> String {
        scratch.clear();
        self.canonical(scratch);
        let mut hasher = Sha256::new();
        hasher.update(prev_hash.as_bytes());
        hasher.update(b"\n");
        hasher.update(&scratch);
        hex(&hasher.finalize())
    }
}

/// `bytes` as lower-case hex digits.
pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut hex = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        hex.push(char::from(DIGITS[usize::from(byte >> 4)]));
        hex.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    hex
}

/// Checks the audit hash chain of the store at `path`, opened read-only, from its first row (or
/// the anchor left by pruning) to its last.
///
/// # The chain
/// Each row of `audit` stores `prev_hash`, the `hash` of the row before it in `id` order (64
/// `0`s for the first row), and `hash`, the SHA-256 of:
///
/// ```text
/// prev_hash (64 lower-case hex digits) + "\n" + canonical content
/// ```
///
/// written as 64 lower-case hex digits. The canonical content is the compact JSON array (as
/// `serde_json` writes it: no spaces, strings escaped the JSON way) of the row's stored values,
/// in this order:
///
/// ```text
/// [run_id, sequence, operation, timestamp_us, inputs, outputs, actor, correlation, outcome,
///  error_kind, duration_ns, fields, callsite]
/// ```
///
/// where `inputs` and `outputs` are arrays of strings, `fields` an array of `[key, value]`
/// string pairs in their order (keys may repeat), `callsite` the callsite's name, and absent
/// values `null`. Changing any of these columns, deleting a row, inserting one or moving one
/// makes the chain fail to verify at the first row affected.
///
/// # The anchor
/// When the oldest rows were pruned ([`prune`](super::prune) with an audit retention), the
/// newest row of `audit_anchor` records the last pruned row: its `id`, `run_id`, `sequence`
/// and `hash`. The chain then starts there: the first remaining row must come after `last_id`
/// and its `prev_hash` must be the anchor's `hash`. Pruning always keeps the newest audit row,
/// so an anchor with an empty `audit` table fails too. What the anchor cannot show is whether
/// the pruned rows themselves were genuine (they were checked when pruned), nor a chain that
/// was truncated together with a forged anchor: compare the head with one kept elsewhere, such
/// as a backup's manifest.
///
/// ```
/// # let dir = tempfile::tempdir()?;
/// # let path = dir.path().join("instrument.db");
/// let sink = instrument_sinks::SqliteSink::builder().path(&path).build()?;
/// drop(sink);
/// instrument_sinks::verify_audit_chain(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Errors
/// [`ChainError::Broken`] naming the first row whose stored hashes do not match its content,
/// its predecessor or the anchor; [`ChainError::Anchor`] when an anchor is left without the rows
/// after it; [`ChainError::Open`] or [`ChainError::Read`] when the store cannot be read.
pub fn verify_audit_chain(path: impl AsRef<Path>) -> Result<(), ChainError> {
    let path = path.as_ref();
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|source| SqliteError::Open {
        path: path.to_owned(),
        source,
    })?;
    let version = super::schema::version(&conn, path)?;
    if version > super::schema::SCHEMA_VERSION {
        return Err(SqliteError::NewerSchema {
            path: path.to_owned(),
            found: version,
            supported: super::schema::SCHEMA_VERSION,
        }
        .into());
    }
    verify_chain(&conn, path).map(|_| ())
}

/// The end of a chain that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChainSummary {
    /// The rows in `audit`.
    pub(crate) rows: u64,
    /// The `hash` of the newest row; `None` when the table is empty.
    pub(crate) head: Option<String>,
}

/// The columns [`ChainCheck::check`] reads, in its order.
pub(crate) const AUDIT_COLUMNS: &str = "id, run_id, sequence, operation, timestamp_us, inputs, \
    outputs, actor, correlation, outcome, error_kind, duration_ns, fields, callsite, prev_hash, \
    hash";

/// The newest row of `audit_anchor`; `None` when there is none or the table does not exist yet
/// (a version 1 store).
pub(crate) fn latest_anchor(conn: &Connection) -> rusqlite::Result<Option<Anchor>> {
    let exists: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'audit_anchor')",
        [],
        |row| row.get(0),
    )?;
    if !exists {
        return Ok(None);
    }
    conn.query_row(
        "SELECT last_id, run_id, sequence, hash, total_pruned FROM audit_anchor
         ORDER BY id DESC LIMIT 1",
        [],
        |row| {
            Ok(Anchor {
                last_id: row.get(0)?,
                run_id: row.get(1)?,
                sequence: row.get(2)?,
                hash: row.get(3)?,
                total_pruned: row.get(4)?,
            })
        },
    )
    .optional()
}

/// The last pruned audit row, as `audit_anchor` stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Anchor {
    pub(crate) last_id: i64,
    pub(crate) run_id: i64,
    pub(crate) sequence: i64,
    pub(crate) hash: String,
    pub(crate) total_pruned: i64,
}

/// Checks `audit` rows one at a time, in `id` order, from the anchor (or the genesis).
pub(crate) struct ChainCheck<'a> {
    path: &'a Path,
    expected_prev: String,
    /// The anchor's `last_id`: every remaining row comes after it.
    after_id: Option<i64>,
    /// Whether no row was checked yet (the first one must follow the anchor).
    first: bool,
}

/// A row that [`ChainCheck::check`] accepted.
pub(crate) struct CheckedRow {
    pub(crate) id: i64,
    pub(crate) run_id: i64,
    pub(crate) sequence: i64,
    pub(crate) timestamp_us: i64,
    pub(crate) hash: String,
}

impl<'a> ChainCheck<'a> {
    pub(crate) fn new(path: &'a Path, anchor: Option<&Anchor>) -> Self {
        ChainCheck {
            path,
            expected_prev: anchor.map_or_else(|| GENESIS.to_owned(), |a| a.hash.clone()),
            after_id: anchor.map(|a| a.last_id),
            first: true,
        }
    }

    /// Checks the next row, selected with [`AUDIT_COLUMNS`].
    pub(crate) fn check(&mut self, row: &Row<'_>) -> Result<CheckedRow, ChainError> {
        let read = |source| ChainError::Read {
            path: self.path.to_owned(),
            source,
        };
        let id: i64 = row.get(0).map_err(read)?;
        let run_id: i64 = row.get(1).map_err(read)?;
        let sequence: i64 = row.get(2).map_err(read)?;
        let broken = |reason: String| ChainError::Broken {
            id,
            run_id,
            sequence,
            reason,
        };
        if let Some(after) = self.after_id.filter(|&after| id <= after) {
            return Err(broken(format!(
                "it is at or before row {after}, the last row pruned according to the audit \
                 anchor (a row was inserted)"
            )));
        }
        // The stored JSON is written again compactly, as the sink wrote it: only its values
        // count, not its spelling.
        let json_column = |index: usize, name: &str| -> Result<String, ChainError> {
            let text: String = row.get(index).map_err(read)?;
            serde_json::from_str::<Value>(&text)
                .map(|value| value.to_string())
                .map_err(|e| broken(format!("column `{name}` is not valid JSON: {e}")))
        };
        let text =
            |index: usize| -> Result<Option<String>, ChainError> { row.get(index).map_err(read) };
        let operation: String = row.get(3).map_err(read)?;
        let (inputs, outputs, fields) = (
            json_column(5, "inputs")?,
            json_column(6, "outputs")?,
            json_column(12, "fields")?,
        );
        let (actor, correlation, outcome, error_kind, callsite) =
            (text(7)?, text(8)?, text(9)?, text(10)?, text(13)?);
        let content = AuditContent {
            run_id,
            sequence,
            operation: &operation,
            timestamp_us: row.get(4).map_err(read)?,
            inputs: &inputs,
            outputs: &outputs,
            actor: actor.as_deref(),
            correlation: correlation.as_deref(),
            outcome: outcome.as_deref(),
            error_kind: error_kind.as_deref(),
            duration_ns: row.get(11).map_err(read)?,
            fields: &fields,
            callsite: callsite.as_deref(),
        };
        let prev_hash: String = row.get(14).map_err(read)?;
        let hash: String = row.get(15).map_err(read)?;
        if prev_hash != self.expected_prev {
            let reason = match self.after_id {
                Some(after) if self.first => format!(
                    "its prev_hash {prev_hash} is not the hash {} of row {after}, the last row \
                     pruned according to the audit anchor (a row was deleted, inserted or moved, \
                     or the anchor was changed)",
                    self.expected_prev
                ),
                _ => format!(
                    "its prev_hash {prev_hash} is not the hash {} of the row before it (a row was \
                     deleted, inserted or moved)",
                    self.expected_prev
                ),
            };
            return Err(broken(reason));
        }
        let computed = content.hash(&prev_hash, &mut Vec::new());
        if computed != hash {
            return Err(broken(format!(
                "its content hashes to {computed}, not to the stored {hash} (the row was changed)"
            )));
        }
        self.expected_prev.clone_from(&hash);
        self.first = false;
        Ok(CheckedRow {
            id,
            run_id,
            sequence,
            timestamp_us: content.timestamp_us,
            hash,
        })
    }
}

/// Checks the whole chain of `conn`'s store, from its anchor if it has one.
pub(crate) fn verify_chain(conn: &Connection, path: &Path) -> Result<ChainSummary, ChainError> {
    let read = |source| ChainError::Read {
        path: path.to_owned(),
        source,
    };
    let anchor = latest_anchor(conn).map_err(read)?;
    let mut check = ChainCheck::new(path, anchor.as_ref());
    let mut statement = conn
        .prepare(&format!("SELECT {AUDIT_COLUMNS} FROM audit ORDER BY id"))
        .map_err(read)?;
    let mut rows = statement.query([]).map_err(read)?;
    let mut summary = ChainSummary {
        rows: 0,
        head: None,
    };
    while let Some(row) = rows.next().map_err(read)? {
        let checked = check.check(row)?;
        summary.rows += 1;
        summary.head = Some(checked.hash);
    }
    if let (Some(anchor), None) = (&anchor, &summary.head) {
        return Err(ChainError::Anchor {
            path: path.to_owned(),
            reason: format!(
                "the audit table is empty, but pruning keeps the newest row: the rows after row \
                 {} (run {}, sequence {}) were deleted",
                anchor.last_id, anchor.run_id, anchor.sequence
            ),
        });
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The documented form: the compact JSON array `serde_json` writes for the row's values.
    fn documented(c: &AuditContent<'_>) -> Vec<u8> {
        let parse = |text: &str| serde_json::from_str::<Value>(text).unwrap();
        json!([
            c.run_id,
            c.sequence,
            c.operation,
            c.timestamp_us,
            parse(c.inputs),
            parse(c.outputs),
            c.actor,
            c.correlation,
            c.outcome,
            c.error_kind,
            c.duration_ns,
            parse(c.fields),
            c.callsite,
        ])
        .to_string()
        .into_bytes()
    }

    #[test]
    fn the_canonical_content_is_the_documented_json_array() {
        let inputs =
            serde_json::to_string(&["src/\"quoted\".rs", "sha256:ab\u{e9}\n\t\u{1}"]).unwrap();
        let fields =
            serde_json::to_string(&[("stage", "parse"), ("error", "expected `;`")]).unwrap();
        let full = AuditContent {
            run_id: 3,
            sequence: -1,
            operation: "analyze_file \u{1F600}",
            timestamp_us: 1_764_000_000_000_000,
            inputs: &inputs,
            outputs: "[\"ast_files:7\"]",
            actor: Some("ast_pipeline"),
            correlation: Some("00000000000000ff"),
            outcome: Some("error"),
            error_kind: Some("Syntax"),
            duration_ns: Some(i64::MAX),
            fields: &fields,
            callsite: Some("ast_pipeline::analyze"),
        };
        let empty = AuditContent {
            run_id: 1,
            sequence: 0,
            operation: "",
            timestamp_us: 0,
            inputs: "[]",
            outputs: "[]",
            actor: None,
            correlation: None,
            outcome: None,
            error_kind: None,
            duration_ns: None,
            fields: "[]",
            callsite: None,
        };
        for content in [full, empty] {
            let mut written = Vec::new();
            content.canonical(&mut written);
            assert_eq!(
                String::from_utf8(written).unwrap(),
                String::from_utf8(documented(&content)).unwrap()
            );
            let mut hasher = Sha256::new();
            hasher.update(format!("{GENESIS}\n").as_bytes());
            hasher.update(documented(&content));
            let expected = hasher.finalize().iter().fold(String::new(), |mut hex, b| {
                let _ = std::fmt::Write::write_fmt(&mut hex, format_args!("{b:02x}"));
                hex
            });
            assert_eq!(content.hash(GENESIS, &mut Vec::new()), expected);
        }
    }
}
