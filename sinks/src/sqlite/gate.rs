//! One lock per database file for the writers of this process.
//!
//! `SQLite` lets one writer at a time into a file in WAL mode. A connection that finds the write
//! lock taken waits in its busy handler, which polls: it sleeps 1 ms, then 2, 5, 10, 15, 20,
//! 25 ms and so on before each new try, so a wait of a few milliseconds often becomes a sleep of
//! tens. In the main job, whose store stage writes its own tables into the sink's file, those
//! oversleeps held the stage up for 159 ms in a run of 4 s while the parsing threads waited
//! for it. Writers in one process that take the file's [`WriteGate`] around each write
//! transaction wait for each other on a lock instead, and the next one goes in as soon as the
//! previous one has committed. Writers in other processes (`instrumentctl`, another program)
//! still meet `SQLite`'s own locking, which stays in force either way.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

/// The gates in use, by the database file's absolute path (its directory's links resolved).
static GATES: Mutex<Option<HashMap<PathBuf, Weak<Mutex<()>>>>> = Mutex::new(None);

/// The in-process write lock of one database file: [`SqliteSink`](super::SqliteSink) takes it
/// around each of its write transactions and checkpoints. Code that writes tables of its own
/// into the sink's file takes it too, around each transaction, and then never waits in
/// `SQLite`'s busy handler for the sink (nor the sink for it).
///
/// Every gate made for the same file (the same path after its directory's links are resolved,
/// relative paths taken from the current directory) is the same lock.
///
/// ```
/// use instrument_sinks::sqlite::WriteGate;
///
/// let dir = std::env::temp_dir().join(format!("write-gate-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let db = dir.join("instrument.db");
/// let conn = rusqlite::Connection::open(&db)?;
/// let gate = WriteGate::for_path(&db);
/// {
///     let _writing = gate.lock();
///     conn.execute_batch("BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS mine (x); COMMIT;")?;
/// }
/// assert!(gate.same_as(&WriteGate::for_path(dir.join(".").join("instrument.db"))));
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug)]
pub struct WriteGate {
    lock: Arc<Mutex<()>>,
}

impl WriteGate {
    /// The gate of the database file at `path` (which need not exist yet).
    #[must_use]
    pub fn for_path(path: impl AsRef<Path>) -> WriteGate {
        let key = key(path.as_ref());
        let mut gates = GATES.lock().unwrap_or_else(PoisonError::into_inner);
        let gates = gates.get_or_insert_with(HashMap::new);
        if let Some(lock) = gates.get(&key).and_then(Weak::upgrade) {
            return WriteGate { lock };
        }
        // Forget the files nobody writes any more, so the map stays as small as the set in use.
        gates.retain(|_, gate| gate.strong_count() > 0);
        let lock = Arc::new(Mutex::new(()));
        gates.insert(key, Arc::downgrade(&lock));
        WriteGate { lock }
    }

    /// Waits until no other writer of this process holds the gate, and holds it until the
    /// guard is dropped. A writer that panicked while holding it does not poison it.
    pub fn lock(&self) -> MutexGuard<'_, ()> {
        self.lock.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether `other` is the same lock (made for the same file).
    #[must_use]
    pub fn same_as(&self, other: &WriteGate) -> bool {
        Arc::ptr_eq(&self.lock, &other.lock)
    }
}

/// `path` made absolute, with its directory's links and `.`/`..` resolved when the directory
/// exists.
fn key(path: &Path) -> PathBuf {
    let absolute = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir().map_or_else(|_| path.to_owned(), |dir| dir.join(path))
    };
    match (absolute.parent(), absolute.file_name()) {
        (Some(dir), Some(name)) => {
            std::fs::canonicalize(dir).map_or_else(|_| absolute.clone(), |dir| dir.join(name))
        }
        _ => absolute,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::time::Duration;

    #[test]
    fn paths_to_one_file_share_a_gate_and_other_files_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("instrument.db");
        let gate = WriteGate::for_path(&db);
        let spelled_otherwise = dir.path().join("sub").join("..").join("instrument.db");
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        assert!(gate.same_as(&WriteGate::for_path(&spelled_otherwise)));
        assert!(!gate.same_as(&WriteGate::for_path(dir.path().join("other.db"))));
        #[cfg(unix)]
        {
            let link = dir.path().join("link");
            std::os::unix::fs::symlink(dir.path(), &link).unwrap();
            assert!(gate.same_as(&WriteGate::for_path(link.join("instrument.db"))));
        }
    }

    #[test]
    fn a_gate_held_on_one_thread_keeps_another_out_until_it_is_released() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("instrument.db");
        let gate = WriteGate::for_path(&db);
        let inside = Arc::new(AtomicBool::new(false));
        let held = gate.lock();
        let waiter = {
            let (gate, inside) = (WriteGate::for_path(&db), Arc::clone(&inside));
            std::thread::spawn(move || {
                let _writing = gate.lock();
                inside.store(true, Ordering::SeqCst);
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        assert!(
            !inside.load(Ordering::SeqCst),
            "went in while the gate was held"
        );
        drop(held);
        waiter.join().unwrap();
        assert!(inside.load(Ordering::SeqCst));
    }

    #[test]
    fn a_file_nobody_holds_a_gate_for_is_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let first = WriteGate::for_path(dir.path().join("a.db"));
        let weak = Arc::downgrade(&first.lock);
        drop(first);
        let _other = WriteGate::for_path(dir.path().join("b.db"));
        assert!(weak.upgrade().is_none());
        let gates = GATES.lock().unwrap();
        assert!(
            !gates
                .as_ref()
                .unwrap()
                .contains_key(&key(&dir.path().join("a.db")))
        );
    }
}
