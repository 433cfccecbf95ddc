//! The audit hash chain; its canonical form is documented on [`verify_audit_chain`].

use std::fmt::Write as _;
use std::path::Path;

use rusqlite::{Connection, OpenFlags};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::error::{ChainError, SqliteError};

/// The `prev_hash` of the first row.
pub(crate) const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// An audit row's hashed values, as stored.
pub(crate) struct AuditContent {
    pub(crate) run_id: i64,
    pub(crate) sequence: i64,
    pub(crate) operation: String,
    pub(crate) timestamp_us: i64,
    pub(crate) inputs: Value,
    pub(crate) outputs: Value,
    pub(crate) actor: Option<String>,
    pub(crate) correlation: Option<String>,
    pub(crate) outcome: Option<String>,
    pub(crate) error_kind: Option<String>,
    pub(crate) duration_ns: Option<i64>,
    pub(crate) fields: Value,
    pub(crate) callsite: Option<String>,
}

impl AuditContent {
    /// The canonical content described in the module docs.
    fn canonical(&self) -> String {
        json!([
            self.run_id,
            self.sequence,
            self.operation,
            self.timestamp_us,
            self.inputs,
            self.outputs,
            self.actor,
            self.correlation,
            self.outcome,
            self.error_kind,
            self.duration_ns,
            self.fields,
            self.callsite,
        ])
        .to_string()
    }

    /// This row's hash, chained to `prev_hash`.
    pub(crate) fn hash(&self, prev_hash: &str) -> String {
        let mut hasher = Sha256::new();
        hasher.update(prev_hash.as_bytes());
        hasher.update(b"\n");
        hasher.update(self.canonical().as_bytes());
        let digest = hasher.finalize();
        let mut hex = String::with_capacity(64);
        for byte in digest {
            let _ = write!(hex, "{byte:02x}");
        }
        hex
    }
}

/// Checks the audit hash chain of the store at `path`, opened read-only, from its first row to
/// its last.
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
/// [`ChainError::Broken`] naming the first row whose stored hashes do not match its content or
/// its predecessor; [`ChainError::Open`] or [`ChainError::Read`] when the store cannot be read.
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
    let read = |source| ChainError::Read {
        path: path.to_owned(),
        source,
    };
    let mut statement = conn
        .prepare(
            "SELECT id, run_id, sequence, operation, timestamp_us, inputs, outputs, actor,
                    correlation, outcome, error_kind, duration_ns, fields, callsite, prev_hash, hash
             FROM audit ORDER BY id",
        )
        .map_err(read)?;
    let mut rows = statement.query([]).map_err(read)?;
    let mut expected_prev = GENESIS.to_owned();
    while let Some(row) = rows.next().map_err(read)? {
        let id: i64 = row.get(0).map_err(read)?;
        let run_id: i64 = row.get(1).map_err(read)?;
        let sequence: i64 = row.get(2).map_err(read)?;
        let broken = |reason: String| ChainError::Broken {
            id,
            run_id,
            sequence,
            reason,
        };
        let json_column = |index: usize, name: &str| -> Result<Value, ChainError> {
            let text: String = row.get(index).map_err(read)?;
            serde_json::from_str(&text)
                .map_err(|e| broken(format!("column `{name}` is not valid JSON: {e}")))
        };
        let content = AuditContent {
            run_id,
            sequence,
            operation: row.get(3).map_err(read)?,
            timestamp_us: row.get(4).map_err(read)?,
            inputs: json_column(5, "inputs")?,
            outputs: json_column(6, "outputs")?,
            actor: row.get(7).map_err(read)?,
            correlation: row.get(8).map_err(read)?,
            outcome: row.get(9).map_err(read)?,
            error_kind: row.get(10).map_err(read)?,
            duration_ns: row.get(11).map_err(read)?,
            fields: json_column(12, "fields")?,
            callsite: row.get(13).map_err(read)?,
        };
        let prev_hash: String = row.get(14).map_err(read)?;
        let hash: String = row.get(15).map_err(read)?;
        if prev_hash != expected_prev {
            return Err(broken(format!(
                "its prev_hash {prev_hash} is not the hash {expected_prev} of the row before it \
                 (a row was deleted, inserted or moved)"
            )));
        }
        let computed = content.hash(&prev_hash);
        if computed != hash {
            return Err(broken(format!(
                "its content hashes to {computed}, not to the stored {hash} (the row was changed)"
            )));
        }
        expected_prev = hash;
    }
    Ok(())
}
