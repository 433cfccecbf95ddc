//! Examples, benchmarks and end-to-end tests of the [`instrument`] SDK.
//!
//! This package is not published. It is the workspace root, so that `examples/`, `benches/` and
//! `tests/` can use every crate of the SDK together:
//!
//! - `examples/ast_pipeline.rs`, the main job: reads and parses real Rust sources with `syn` on
//!   every core, under `#[instrument_performance]`, and prints what the pipeline measured.
//! - `benches/`: criterion benchmarks of the SDK's overhead and drain.
//! - `tests/`: end-to-end tests across crates.
//!
//! The library holds the parts of the example's workload that have nothing to do with
//! instrumentation, so that benchmarks and tests can drive the same workload:
//!
//! - [`corpus`] finds `.rs` files: this workspace's sources and the dependency sources Cargo
//!   unpacked under `$CARGO_HOME/registry/src`.
//! - [`ast`] counts what a parsed file contains.
//!
//! ```
//! use instrument_workspace::{ast::AstStats, corpus::Corpus};
//!
//! let mut corpus = Corpus::new(10);
//! corpus.add(env!("CARGO_MANIFEST_DIR").as_ref())?;
//! let source = std::fs::read_to_string(&corpus.files[0])?;
//! let stats = AstStats::of(&syn::parse_file(&source)?);
//! assert!(stats.items > 0);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

/// Finding Rust source files to feed a pipeline.
pub mod corpus {
    use std::io;
    use std::path::{Path, PathBuf};

    /// How many files [`Corpus`] collects by default: enough for a run of several seconds, few
    /// enough that a two-core machine finishes well within a minute.
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

    /// A list of `.rs` files, collected from files and directory trees up to a limit.
    ///
    /// Directories are walked depth-first in name order, so the same trees give the same list.
    /// Hidden entries (`.git`, ...), `target` directories and symbolic links are skipped.
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
            std::fs::read_dir(root)?;
            let mut pending = vec![root.to_owned()];
            while let Some(dir) = pending.pop() {
                if self.is_full() {
                    self.truncated = true;
                    break;
                }
                let mut entries = match std::fs::read_dir(&dir)
                    .and_then(Iterator::collect::<io::Result<Vec<_>>>)
                {
                    Ok(entries) => entries,
                    Err(e) => {
                        self.unreadable.push((dir, e));
                        continue;
                    }
                };
                entries.sort_by_key(std::fs::DirEntry::file_name);
                let mut subdirs = Vec::new();
                for entry in entries {
                    let name = entry.file_name();
                    if name.to_string_lossy().starts_with('.') {
                        continue;
                    }
                    match entry.file_type() {
                        Ok(t) if t.is_dir() && name != "target" => subdirs.push(entry.path()),
                        Ok(t)
                            if t.is_file()
                                && Path::new(&name).extension().is_some_and(|e| e == "rs") =>
                        {
                            self.push(entry.path());
                        }
                        _ => {}
                    }
                }
                // Reversed, so the stack pops them in name order.
                pending.extend(subdirs.into_iter().rev());
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
}

/// Counting what a parsed Rust file contains.
pub mod ast {
    use syn::visit::{self, Visit};

    /// Counts of the syntax a file contains, from a [`syn::visit`] walk of its AST.
    ///
    /// Code inside macro invocations is not counted: it is an opaque token stream until the
    /// compiler expands the macro.
    ///
    /// ```
    /// use instrument_workspace::ast::AstStats;
    ///
    /// let file = syn::parse_file(
    ///     "struct A; impl A { unsafe fn f() { unsafe {} } } async fn g() { let _ = || 1; }",
    /// )?;
    /// let stats = AstStats::of(&file);
    /// assert_eq!((stats.items, stats.structs, stats.impls), (3, 1, 1));
    /// assert_eq!((stats.functions, stats.async_functions, stats.unsafe_functions), (2, 1, 1));
    /// assert_eq!((stats.unsafe_blocks, stats.closures), (1, 1));
    /// # Ok::<(), syn::Error>(())
    /// ```
    #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
    pub struct AstStats {
        /// Items at any depth: functions, types, impls, modules, uses, consts, macros, ...
        pub items: u64,
        /// Free functions, methods and trait methods.
        pub functions: u64,
        /// Of those, `async fn`s.
        pub async_functions: u64,
        /// Of those, `unsafe fn`s.
        pub unsafe_functions: u64,
        /// `unsafe { ... }` blocks.
        pub unsafe_blocks: u64,
        /// `unsafe impl`s.
        pub unsafe_impls: u64,
        /// Structs.
        pub structs: u64,
        /// Enums.
        pub enums: u64,
        /// Traits.
        pub traits: u64,
        /// `impl` blocks.
        pub impls: u64,
        /// `macro_rules!` definitions.
        pub macro_rules: u64,
        /// Macro invocations, in any position.
        pub macro_calls: u64,
        /// Closures.
        pub closures: u64,
    }

    impl AstStats {
        /// Walks `file` and counts.
        #[must_use]
        pub fn of(file: &syn::File) -> Self {
            let mut stats = AstStats::default();
            stats.visit_file(file);
            stats
        }

        fn function(&mut self, sig: &syn::Signature) {
            self.functions += 1;
            self.async_functions += u64::from(sig.asyncness.is_some());
            self.unsafe_functions += u64::from(matches!(sig.safety, syn::Safety::Unsafe(_)));
        }
    }

    impl std::ops::AddAssign for AstStats {
        fn add_assign(&mut self, other: AstStats) {
            self.items += other.items;
            self.functions += other.functions;
            self.async_functions += other.async_functions;
            self.unsafe_functions += other.unsafe_functions;
            self.unsafe_blocks += other.unsafe_blocks;
            self.unsafe_impls += other.unsafe_impls;
            self.structs += other.structs;
            self.enums += other.enums;
            self.traits += other.traits;
            self.impls += other.impls;
            self.macro_rules += other.macro_rules;
            self.macro_calls += other.macro_calls;
            self.closures += other.closures;
        }
    }

    impl<'ast> Visit<'ast> for AstStats {
        fn visit_item(&mut self, item: &'ast syn::Item) {
            self.items += 1;
            match item {
                syn::Item::Struct(_) => self.structs += 1,
                syn::Item::Enum(_) => self.enums += 1,
                syn::Item::Trait(_) => self.traits += 1,
                syn::Item::Impl(i) => {
                    self.impls += 1;
                    self.unsafe_impls += u64::from(i.unsafety.is_some());
                }
                // A `macro_rules!` definition: its body is a token stream, not macro calls.
                syn::Item::Macro(m) if m.ident.is_some() => {
                    self.macro_rules += 1;
                    return;
                }
                _ => {}
            }
            visit::visit_item(self, item);
        }

        fn visit_item_fn(&mut self, f: &'ast syn::ItemFn) {
            self.function(&f.sig);
            visit::visit_item_fn(self, f);
        }

        fn visit_impl_item_fn(&mut self, f: &'ast syn::ImplItemFn) {
            self.function(&f.sig);
            visit::visit_impl_item_fn(self, f);
        }

        fn visit_trait_item_fn(&mut self, f: &'ast syn::TraitItemFn) {
            self.function(&f.sig);
            visit::visit_trait_item_fn(self, f);
        }

        fn visit_expr_unsafe(&mut self, e: &'ast syn::ExprUnsafe) {
            self.unsafe_blocks += 1;
            visit::visit_expr_unsafe(self, e);
        }

        fn visit_expr_closure(&mut self, e: &'ast syn::ExprClosure) {
            self.closures += 1;
            visit::visit_expr_closure(self, e);
        }

        fn visit_macro(&mut self, m: &'ast syn::Macro) {
            self.macro_calls += 1;
            visit::visit_macro(self, m);
        }
    }
}
