//! The store's tables and their forward migrations.
//!
//! Every time column holds UTC microseconds since the Unix epoch as an integer (`*_us`), every
//! duration integer nanoseconds (`*_ns`), and names follow `docs/data-types.md`. `schema_version`
//! lists each migration applied; a database whose highest version is above
//! [`SCHEMA_VERSION`] was written by a newer release and is refused.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use super::error::SqliteError;

/// The schema version this release writes.
pub const SCHEMA_VERSION: i64 = 5;

/// Migration `i` brings a database from version `i` to `i + 1`; each runs in its own transaction.
const MIGRATIONS: &[&str] = &[
    // v1: callsites, events, windows of aggregates, error kinds, counters, gauges, drop markers,
    // runs, audit and notices.
    "
    CREATE TABLE callsites (
        id          INTEGER PRIMARY KEY,
        name        TEXT NOT NULL,
        module      TEXT NOT NULL,
        file        TEXT NOT NULL,
        line        INTEGER NOT NULL,
        kind        TEXT NOT NULL,
        labels      TEXT NOT NULL,
        unit        TEXT,
        description TEXT,
        UNIQUE (name, module, file, line, kind, labels)
    );
    CREATE TABLE events (
        id          INTEGER PRIMARY KEY,
        callsite_id INTEGER NOT NULL REFERENCES callsites(id),
        outcome     TEXT NOT NULL,
        error_kind  TEXT,
        start_us    INTEGER NOT NULL,
        duration_ns INTEGER NOT NULL,
        thread_id   INTEGER NOT NULL,
        thread_name TEXT,
        correlation TEXT,
        reason      TEXT NOT NULL,
        fields      TEXT
    );
    CREATE INDEX events_by_time ON events (start_us);
    CREATE INDEX events_by_callsite ON events (callsite_id, start_us);
    CREATE INDEX events_by_correlation ON events (correlation) WHERE correlation IS NOT NULL;
    CREATE TABLE windows (
        id                INTEGER PRIMARY KEY,
        snapshot_sequence INTEGER NOT NULL,
        reason            TEXT NOT NULL,
        window_start_us   INTEGER NOT NULL,
        window_end_us     INTEGER NOT NULL,
        callsite_id       INTEGER NOT NULL REFERENCES callsites(id),
        outcome           TEXT NOT NULL,
        count             INTEGER NOT NULL,
        timed             INTEGER NOT NULL,
        dropped           INTEGER NOT NULL,
        sum_ns            INTEGER NOT NULL,
        min_ns            INTEGER NOT NULL,
        max_ns            INTEGER NOT NULL,
        p50_ns            INTEGER NOT NULL,
        p90_ns            INTEGER NOT NULL,
        p99_ns            INTEGER NOT NULL,
        p999_ns           INTEGER NOT NULL,
        histogram         BLOB NOT NULL
    );
    CREATE INDEX windows_by_time ON windows (window_start_us);
    CREATE INDEX windows_by_callsite ON windows (callsite_id, window_start_us);
    CREATE TABLE window_errors (
        window_id INTEGER NOT NULL REFERENCES windows(id),
        kind      TEXT NOT NULL,
        count     INTEGER NOT NULL,
        PRIMARY KEY (window_id, kind)
    );
    CREATE TABLE counters (
        id              INTEGER PRIMARY KEY,
        window_start_us INTEGER NOT NULL,
        window_end_us   INTEGER NOT NULL,
        callsite_id     INTEGER NOT NULL REFERENCES callsites(id),
        window          INTEGER NOT NULL,
        total           INTEGER NOT NULL
    );
    CREATE INDEX counters_by_time ON counters (window_start_us);
    CREATE INDEX counters_by_callsite ON counters (callsite_id, window_start_us);
    CREATE TABLE gauges (
        id              INTEGER PRIMARY KEY,
        window_start_us INTEGER NOT NULL,
        window_end_us   INTEGER NOT NULL,
        callsite_id     INTEGER NOT NULL REFERENCES callsites(id),
        value           REAL
    );
    CREATE INDEX gauges_by_time ON gauges (window_start_us);
    CREATE INDEX gauges_by_callsite ON gauges (callsite_id, window_start_us);
    CREATE TABLE drops (
        id          INTEGER PRIMARY KEY,
        callsite_id INTEGER NOT NULL REFERENCES callsites(id),
        count       INTEGER NOT NULL,
        since_us    INTEGER NOT NULL,
        until_us    INTEGER NOT NULL
    );
    CREATE INDEX drops_by_time ON drops (since_us);
    CREATE TABLE runs (
        id           INTEGER PRIMARY KEY,
        pid          INTEGER NOT NULL,
        process_name TEXT NOT NULL,
        hostname     TEXT,
        started_us   INTEGER NOT NULL
    );
    CREATE TABLE audit (
        id           INTEGER PRIMARY KEY,
        run_id       INTEGER NOT NULL REFERENCES runs(id),
        sequence     INTEGER NOT NULL,
        operation    TEXT NOT NULL,
        timestamp_us INTEGER NOT NULL,
        inputs       TEXT NOT NULL,
        outputs      TEXT NOT NULL,
        actor        TEXT,
        correlation  TEXT,
        outcome      TEXT,
        error_kind   TEXT,
        duration_ns  INTEGER,
        fields       TEXT NOT NULL,
        callsite     TEXT,
        prev_hash    TEXT NOT NULL,
        hash         TEXT NOT NULL,
        UNIQUE (run_id, sequence)
    );
    CREATE INDEX audit_by_time ON audit (timestamp_us);
    CREATE INDEX audit_by_correlation ON audit (correlation) WHERE correlation IS NOT NULL;
    CREATE TABLE notices (
        id          INTEGER PRIMARY KEY,
        time_us     INTEGER NOT NULL,
        source      TEXT NOT NULL,
        level       TEXT NOT NULL,
        message     TEXT NOT NULL,
        fields      TEXT NOT NULL,
        correlation TEXT
    );
    CREATE INDEX notices_by_time ON notices (time_us);
    CREATE INDEX notices_by_correlation ON notices (correlation) WHERE correlation IS NOT NULL;
    ",
    // v2: the anchor that pruning the audit table leaves, health changes of components, and
    // alerts.
    "
    CREATE TABLE audit_anchor (
        id           INTEGER PRIMARY KEY,
        last_id      INTEGER NOT NULL,
        run_id       INTEGER NOT NULL,
        sequence     INTEGER NOT NULL,
        hash         TEXT NOT NULL,
        pruned_rows  INTEGER NOT NULL,
        total_pruned INTEGER NOT NULL,
        pruned_us    INTEGER NOT NULL
    );
    CREATE TABLE health (
        id        INTEGER PRIMARY KEY,
        time_us   INTEGER NOT NULL,
        component TEXT NOT NULL,
        status    TEXT NOT NULL,
        reason    TEXT
    );
    CREATE INDEX health_by_time ON health (time_us);
    CREATE INDEX health_by_component ON health (component, time_us);
    CREATE TABLE alerts (
        id          INTEGER PRIMARY KEY,
        rule        TEXT NOT NULL,
        state       TEXT NOT NULL,
        severity    TEXT NOT NULL,
        labels      TEXT NOT NULL,
        message     TEXT NOT NULL,
        value       REAL,
        started_us  INTEGER NOT NULL,
        updated_us  INTEGER NOT NULL,
        resolved_us INTEGER,
        acked_us    INTEGER,
        acked_by    TEXT
    );
    CREATE INDEX alerts_by_time ON alerts (started_us);
    CREATE INDEX alerts_by_resolved ON alerts (resolved_us) WHERE resolved_us IS NOT NULL;
    CREATE INDEX alerts_by_rule ON alerts (rule, state);
    ",
    // v3: what the alert engine's notices carry beyond v2's columns: the alert's fingerprint
    // (an open row is updated by it until the alert resolves), the engine's id, and whether a
    // silence suppressed its notifications.
    "
    ALTER TABLE alerts ADD COLUMN fingerprint TEXT;
    ALTER TABLE alerts ADD COLUMN alert_id INTEGER;
    ALTER TABLE alerts ADD COLUMN silenced INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX alerts_open_by_fingerprint ON alerts (fingerprint) WHERE resolved_us IS NULL;
    ",
    // v4: what operators did to alerts from outside the process (`instrumentctl alerts ack`,
    // `resolve`, `silence`, `expire`), read by the running sink and handed to the alert engine;
    // silences survive restarts here.
    "
    CREATE TABLE alert_actions (
        id          INTEGER PRIMARY KEY,
        time_us     INTEGER NOT NULL,
        action      TEXT NOT NULL,
        alert_row   INTEGER,
        fingerprint TEXT,
        silence_id  INTEGER,
        matchers    TEXT,
        starts_us   INTEGER,
        ends_us     INTEGER,
        actor       TEXT NOT NULL,
        comment     TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX alert_actions_silences ON alert_actions (ends_us) WHERE action = 'silence';
    ",
    // v5: runs as units of comparison. A run records when it ended (its sink shut down), the
    // program's version, a digest of its configuration, and the pipeline's window and tick;
    // windows and events name the run that wrote them (rows written before v5 have none and
    // are attributed by time, see `query::runs`).
    "
    ALTER TABLE runs ADD COLUMN ended_us INTEGER;
    ALTER TABLE runs ADD COLUMN program_version TEXT;
    ALTER TABLE runs ADD COLUMN config_digest TEXT;
    ALTER TABLE runs ADD COLUMN window_ns INTEGER;
    ALTER TABLE runs ADD COLUMN tick_ns INTEGER;
    ALTER TABLE windows ADD COLUMN run_id INTEGER REFERENCES runs(id);
    ALTER TABLE events ADD COLUMN run_id INTEGER REFERENCES runs(id);
    CREATE INDEX windows_by_run ON windows (run_id, callsite_id) WHERE run_id IS NOT NULL;
    ",
];

/// The highest version recorded in `schema_version`, 0 for a database without that table.
/// Reads only, so a file that is not a database (or is corrupt) fails here before anything is
/// written to it.
pub(crate) fn version(conn: &Connection, path: &Path) -> Result<i64, SqliteError> {
    let sql_error = |source| SqliteError::NotADatabase {
        path: path.to_owned(),
        source,
    };
    let has_table: bool = conn
        .query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version')",
            [],
            |row| row.get(0),
        )
        .map_err(sql_error)?;
    if !has_table {
        return Ok(0);
    }
    let version: Option<i64> = conn
        .query_row("SELECT max(version) FROM schema_version", [], |row| {
            row.get(0)
        })
        .optional()
        .map_err(sql_error)?
        .flatten();
    Ok(version.unwrap_or(0))
}

/// Applies the migrations `conn` lacks, each with its `schema_version` row.
pub(crate) fn migrate(conn: &mut Connection, path: &Path, from: i64) -> Result<(), SqliteError> {
    let error = |source| SqliteError::Migrate {
        path: path.to_owned(),
        source,
    };
    if from == 0 {
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS schema_version (
                version    INTEGER PRIMARY KEY,
                applied_us INTEGER NOT NULL
            )",
        )
        .map_err(error)?;
    }
    for (index, sql) in MIGRATIONS
        .iter()
        .enumerate()
        .skip(usize::try_from(from).unwrap_or(0))
    {
        let version = i64::try_from(index + 1).expect("fewer migrations than i64::MAX");
        let tx = conn.transaction().map_err(error)?;
        tx.execute_batch(sql).map_err(error)?;
        tx.execute(
            "INSERT INTO schema_version (version, applied_us) VALUES (?1, ?2)",
            (version, super::micros(std::time::SystemTime::now())),
        )
        .map_err(error)?;
        tx.commit().map_err(error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_migration_list_ends_at_the_current_version() {
        assert_eq!(i64::try_from(MIGRATIONS.len()), Ok(SCHEMA_VERSION));
    }

    fn tables(conn: &Connection) -> Vec<String> {
        conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn a_version_1_store_migrates_to_the_current_version_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v1.db");
        {
            // A store as version 1 wrote it: its own SQL, then rows.
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch(
                "CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_us INTEGER NOT NULL);
                 INSERT INTO schema_version VALUES (1, 1);",
            )
            .unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.execute_batch(
                "INSERT INTO callsites (name, module, file, line, kind, labels)
                     VALUES ('parse', 'm', 'f.rs', 1, 'function', '{}');
                 INSERT INTO events (callsite_id, outcome, start_us, duration_ns, thread_id, reason)
                     VALUES (1, 'error', 10, 5, 1, 'outcome');
                 INSERT INTO runs (pid, process_name, started_us) VALUES (1, 'p', 1);
                 INSERT INTO audit (run_id, sequence, operation, timestamp_us, inputs, outputs,
                                    fields, prev_hash, hash)
                     VALUES (1, 1, 'load', 2, '[]', '[]', '[]', 'p', 'h');",
            )
            .unwrap();
        }
        let mut conn = Connection::open(&path).unwrap();
        assert_eq!(version(&conn, &path).unwrap(), 1);
        let before = tables(&conn);
        assert!(!before.contains(&"audit_anchor".to_owned()));
        migrate(&mut conn, &path, 1).unwrap();
        assert_eq!(version(&conn, &path).unwrap(), SCHEMA_VERSION);
        let after = tables(&conn);
        for table in ["audit_anchor", "health", "alerts", "alert_actions"] {
            assert!(after.contains(&table.to_owned()), "{table} in {after:?}");
        }
        assert!(before.iter().all(|t| after.contains(t)));
        let count = |table: &str| -> i64 {
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                .unwrap()
        };
        assert_eq!(
            (count("callsites"), count("events"), count("audit")),
            (1, 1, 1)
        );
        let versions: Vec<i64> = conn
            .prepare("SELECT version FROM schema_version ORDER BY version")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(versions, [1, 2, 3, 4, 5]);
        // The new tables take rows of the shape later releases write.
        conn.execute_batch(
            "INSERT INTO health (time_us, component, status, reason) VALUES (1, 'sqlite', 'degraded', 'x');
             INSERT INTO alerts (rule, state, severity, labels, message, value, started_us, updated_us,
                                 fingerprint, alert_id, silenced)
                 VALUES ('slow', 'firing', 'warning', '{}', 'slow calls', 1.5, 1, 1, '00ff', 7, 0);
             INSERT INTO alert_actions (time_us, action, matchers, starts_us, ends_us, actor)
                 VALUES (2, 'silence', '{\"alertname\":\"slow\"}', 2, 3, 'alice');",
        )
        .unwrap();
        // v5: the run of v1 has no end, version or digest; the old event no run.
        let (ended, version, run): (Option<i64>, Option<String>, Option<i64>) = conn
            .query_row(
                "SELECT r.ended_us, r.program_version, e.run_id FROM runs r, events e",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((ended, version, run), (None, None, None));
        conn.execute_batch(
            "UPDATE runs SET ended_us = 5, program_version = '1.2.0', config_digest = 'ab',
                             window_ns = 1000000000, tick_ns = 1000000000;
             INSERT INTO windows (snapshot_sequence, reason, window_start_us, window_end_us,
                                  callsite_id, outcome, count, timed, dropped, sum_ns, min_ns,
                                  max_ns, p50_ns, p90_ns, p99_ns, p999_ns, histogram, run_id)
                 VALUES (1, 'window', 0, 1, 1, 'ok', 1, 1, 0, 5, 5, 5, 5, 5, 5, 5, x'7b7d', 1);",
        )
        .unwrap();
    }
}
