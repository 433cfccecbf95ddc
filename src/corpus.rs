//! Finding Rust source files to feed a pipeline.

use std::io;
use std::path::{Path, PathBuf};

/// How many files a run takes by default: enough for a run of several seconds, few enough that
/// a two-core machine finishes well within a minute.
pub const DEFAULT_MAX_FILES: usize = 20_000;

/// The directory where Cargo unpacks the sources of registry dependencies:
/// `$CARGO_HOME/registry/src`, else `$HOME/.cargo/registry/src`. `None` when it does not
/// exist.
#[must_use]
pub fn registry_sources() -> Option<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| Path::new(&home).join(".cargo")))?;
    let dir = cargo_home.join("registry").join("src");
    dir.is_dir().then_some(dir)
}

/// This workspace's own sources (the directory of the root `Cargo.toml`).
#[must_use]
pub fn workspace_sources() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The default corpus: the local cargo registry's sources ([`registry_sources`]), or, where
/// there is none, this workspace's ([`workspace_sources`]).
#[must_use]
pub fn default_roots() -> Vec<PathBuf> {
    vec![registry_sources().unwrap_or_else(workspace_sources)]
}

/// What one directory holds, as far as a walk for `.rs` files is concerned.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Listing {
    /// Its `.rs` files, in name order.
    pub files: Vec<PathBuf>,
    /// Its subdirectories to walk, in name order.
    pub dirs: Vec<PathBuf>,
}

/// Lists `dir`: its `.rs` files and the subdirectories a walk enters. Hidden entries (`.git`,
/// ...), `target` directories and symbolic links are left out.
///
/// # Errors
/// When `dir` cannot be read.
pub fn list_dir(dir: &Path) -> io::Result<Listing> {
    let mut entries = std::fs::read_dir(dir)?.collect::<io::Result<Vec<_>>>()?;
    entries.sort_by_key(std::fs::DirEntry::file_name);
    let mut listing = Listing::default();
    for entry in entries {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        match entry.file_type() {
            Ok(t) if t.is_dir() && name != "target" => listing.dirs.push(entry.path()),
            Ok(t) if t.is_file() && Path::new(&name).extension().is_some_and(|e| e == "rs") => {
                listing.files.push(entry.path());
            }
            _ => {}
        }
    }
    Ok(listing)
}

/// A list of `.rs` files, collected from files and directory trees up to a limit.
///
/// Directories are walked depth-first in name order, so the same trees give the same list (the
/// order the pipeline's discovery stage follows too).
///
/// ```
/// use instrument_workspace::corpus::Corpus;
///
/// let mut corpus = Corpus::new(3);
/// corpus.add(env!("CARGO_MANIFEST_DIR").as_ref())?;
/// assert_eq!(corpus.files.len(), 3);
/// assert!(corpus.truncated);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Default)]
pub struct Corpus {
    /// The files found, in walk order.
    pub files: Vec<PathBuf>,
    /// Directories below a root that could not be listed, with the reason.
    pub unreadable: Vec<(PathBuf, io::Error)>,
    /// Whether files were left out because the limit was reached.
    pub truncated: bool,
    limit: usize,
}

impl Corpus {
    /// An empty corpus that takes at most `limit` files.
    #[must_use]
    pub fn new(limit: usize) -> Self {
        Corpus {
            limit,
            ..Corpus::default()
        }
    }

    /// Whether the limit is reached.
    #[must_use]
    pub fn is_full(&self) -> bool {
        self.files.len() >= self.limit
    }

    /// Adds `root` if it is a `.rs` file, or the `.rs` files below it if it is a directory,
    /// and returns how many were added.
    ///
    /// # Errors
    /// When `root` itself cannot be read. Unreadable directories below it are recorded in
    /// [`Corpus::unreadable`] instead.
    pub fn add(&mut self, root: &Path) -> io::Result<usize> {
        let before = self.files.len();
        if std::fs::metadata(root)?.is_file() {
            self.push(root.to_owned());
            return Ok(self.files.len() - before);
        }
        let first = list_dir(root)?;
        let mut pending = vec![(root.to_owned(), Some(first))];
        while let Some((dir, listed)) = pending.pop() {
            if self.is_full() {
                self.truncated = true;
                break;
            }
            let listing = match listed.map_or_else(|| list_dir(&dir), Ok) {
                Ok(listing) => listing,
                Err(e) => {
                    self.unreadable.push((dir, e));
                    continue;
                }
            };
            for file in listing.files {
                self.push(file);
            }
            // Reversed, so the stack pops them in name order.
            pending.extend(listing.dirs.into_iter().rev().map(|d| (d, None)));
        }
        Ok(self.files.len() - before)
    }

    fn push(&mut self, file: PathBuf) {
        if self.is_full() {
            self.truncated = true;
        } else {
            self.files.push(file);
        }
    }
}
