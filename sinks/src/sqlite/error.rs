//! Why a store could not be opened or an audit chain does not verify.

use std::path::PathBuf;

/// Why [`SqliteSinkBuilder::build`](super::SqliteSinkBuilder::build) or
/// [`Store::open`](super::query::Store::open) failed. Each variant names the file; none of them
/// writes to it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SqliteError {
    /// The directory of the database could not be created.
    #[error("cannot create the directory of {path}")]
    CreateDir {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// `SQLite` could not open or configure the file.
    #[error("cannot open the SQLite database {path}")]
    Open {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// The file cannot be written: it, or its file system, is read-only to this process.
    #[error("{path} is read-only (the file, or the file system it is on); nothing was written")]
    ReadOnly {
        /// The database file.
        path: PathBuf,
    },
    /// The path could not be made absolute, or the file examined right after it was opened
    /// (it was deleted meanwhile).
    #[error("cannot examine {path}")]
    Examine {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a `SQLite` database, or is corrupt. It was left as it is.
    #[error("{path} is not a SQLite database or is corrupt; it was left unchanged")]
    NotADatabase {
        /// The file.
        path: PathBuf,
        /// What `SQLite` reported.
        #[source]
        source: rusqlite::Error,
    },
    /// The database was written by a newer release of this crate.
    #[error(
        "{path} has schema version {found}, newer than version {supported} that this release \
         reads; use a newer release or another file"
    )]
    NewerSchema {
        /// The database file.
        path: PathBuf,
        /// The version in the file.
        found: i64,
        /// The newest version this release knows.
        supported: i64,
    },
    /// The file to read does not exist ([`Store::open`](super::query::Store::open) never creates
    /// one).
    #[error("{path} does not exist")]
    NotFound {
        /// The database file.
        path: PathBuf,
    },
    /// The path names a directory, not a database file.
    #[error("{path} is a directory, not a database file")]
    Directory {
        /// The path.
        path: PathBuf,
    },
    /// The file is a `SQLite` database without the store's tables (it has no `schema_version`
    /// rows), so there is nothing to read.
    #[error("{path} is a SQLite database but not an instrument store (it has no schema_version)")]
    NotAStore {
        /// The database file.
        path: PathBuf,
    },
    /// Creating or upgrading the tables failed.
    #[error("cannot create or upgrade the tables of {path}")]
    Migrate {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
}

/// Why [`verify_audit_chain`](super::verify_audit_chain) failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The store could not be opened or read.
    #[error(transparent)]
    Open(#[from] SqliteError),
    /// Reading the audit table failed.
    #[error("cannot read the audit table of {path}")]
    Read {
        /// The database file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// A row does not match the chain: its content was changed, or a row before it was
    /// deleted, inserted or moved.
    #[error("audit row {id} (run {run_id}, sequence {sequence}) breaks the chain: {reason}")]
    Broken {
        /// The row's `id` (its position in the chain).
        id: i64,
        /// Its `run_id`.
        run_id: i64,
        /// Its `sequence`.
        sequence: i64,
        /// What does not match.
        reason: String,
    },
    /// The audit anchor left by pruning does not fit the remaining rows.
    #[error("the audit anchor of {path} does not fit its audit table: {reason}")]
    Anchor {
        /// The database file.
        path: PathBuf,
        /// What does not fit.
        reason: String,
    },
}
